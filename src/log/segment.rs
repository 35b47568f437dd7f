//! One log segment: `<base offset, 20 digits>.log` plus its `.index` and
//! `.timeindex` (see offset_index.rs and time_index.rs).
//!
//! Layout: the `.log` file is RecordBatch v2 batches back to back, exactly as
//! stored by `PartitionLog::append` (base offset and leader epoch patched in),
//! with no framing of our own: a fetch returns a byte range of it verbatim.
//!
//! Crash story: appends land in the page cache; the file is fsynced when the
//! flush policy says so, when the segment rolls and on close. A crash may
//! leave the tail torn (a partial batch) or garbage after the durable point;
//! [`Segment::recover`] scans from the start, checks each header, length, CRC
//! and that offsets are contiguous (or, in a segment that may hold gaps, only
//! strictly increasing), truncates at the first bad byte and rebuilds both
//! indexes from what remains.
//!
//! Gaps: the cleaner (cleaner.rs) drops records but keeps every survivor's
//! offset, so a cleaned segment's offsets strictly increase with gaps.
//!
//! Invariants: base offset <= the base offset of every batch in the segment;
//! batch offsets strictly increase; `size` is the end of the last whole batch;
//! `next_offset` is one past the last batch's last offset (or the base when
//! empty).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::offset_index::{self, OffsetIndex};
use super::time_index::{self, TimeIndex};
use super::LogError;
use crate::env::disk::{Disk, DiskFile, OpenMode};

/// Chunk read at a time when a scan must see every byte (CRC checks).
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Kafka's "no timestamp" value.
pub const NO_TIMESTAMP: i64 = -1;

/// File name of a segment artifact: 20-digit zero-padded base offset + extension.
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parse a segment artifact name back into (base offset, extension).
pub fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// How a scan over a segment's bytes ended.
#[derive(Debug)]
pub struct ScanEnd {
    /// End of the last whole, valid batch.
    pub valid_end: u64,
    /// Why the scan stopped before the end of the range, if it did.
    pub problem: Option<String>,
}

/// A closed segment's `.log` file, read on its own handle (see
/// [`Segment::reader`]); `size` is the segment's size when it was opened.
pub struct SegmentReader {
    base_offset: i64,
    log_path: PathBuf,
    log: Box<dyn DiskFile>,
    size: u64,
}

impl SegmentReader {
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Visit every batch (bytes included), as [`Segment::for_each_batch`].
    pub fn for_each_batch(
        &self,
        f: impl FnMut(u64, &BatchHeader, Vec<u8>) -> Result<bool, LogError>,
    ) -> Result<(), LogError> {
        for_each_batch_in(self.log.as_ref(), &self.log_path, self.size, f)
    }
}

/// Visit every batch of `log` in `[0, size)` with its bytes, no CRC check;
/// `f` returns false to stop. A scan that stops early on its own found
/// damage at rest: reported as CorruptMessage rather than silently serving less.
fn for_each_batch_in(
    log: &dyn DiskFile,
    path: &Path,
    size: u64,
    mut f: impl FnMut(u64, &BatchHeader, Vec<u8>) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let mut stopped = false;
    let end = scan_batches(log, 0, size, false, |pos, h| {
        let mut bytes = vec![0u8; h.total_size()];
        log.read_exact_at(&mut bytes, pos)?;
        let more = f(pos, h, bytes)?;
        stopped = !more;
        Ok(more)
    })?;
    if stopped {
        return Ok(());
    }
    match end.problem {
        None => Ok(()),
        Some(why) => Err(LogError::CorruptMessage(format!(
            "{}: {why}",
            path.display()
        ))),
    }
}

/// Walk the batches of `log` in `[start, end)`, calling `f(position, header)`
/// for each valid one. With `check_crc` every byte is read and CRC-checked;
/// without, only the 61-byte headers are read. Stops (without error) at the
/// first torn, corrupt or rejected (`f` returns false) batch; I/O errors are
/// returned.
pub fn scan_batches(
    log: &dyn DiskFile,
    start: u64,
    end: u64,
    check_crc: bool,
    mut f: impl FnMut(u64, &BatchHeader) -> Result<bool, LogError>,
) -> Result<ScanEnd, LogError> {
    let chunk = if check_crc {
        SCAN_CHUNK_BYTES
    } else {
        HEADER_BYTES
    };
    let mut win: Vec<u8> = Vec::new();
    let mut win_start = start;
    let mut pos = start;
    // Make sure win covers [at, at + n): refill from `at` when it does not.
    let ensure = |win: &mut Vec<u8>, win_start: &mut u64, at: u64, n: u64| {
        if at >= *win_start && at + n <= *win_start + win.len() as u64 {
            return Ok::<(), LogError>(());
        }
        let len = (chunk as u64).max(n).min(end - at) as usize;
        win.clear();
        win.resize(len, 0);
        log.read_exact_at(win, at)?;
        *win_start = at;
        Ok(())
    };
    let stop = |pos: u64, why: String| ScanEnd {
        valid_end: pos,
        problem: Some(why),
    };
    while pos < end {
        let remaining = end - pos;
        if remaining < HEADER_BYTES as u64 {
            return Ok(stop(
                pos,
                format!("torn header: {remaining} bytes at {pos}"),
            ));
        }
        ensure(&mut win, &mut win_start, pos, HEADER_BYTES as u64)?;
        let off = (pos - win_start) as usize;
        let header = match BatchHeader::parse(&win[off..]) {
            Ok(h) => h,
            Err(e) => return Ok(stop(pos, format!("bad header at {pos}: {e}"))),
        };
        let size = header.total_size() as u64;
        if size > remaining {
            return Ok(stop(
                pos,
                format!("torn batch at {pos}: {size} bytes claimed, {remaining} left"),
            ));
        }
        if header.last_offset_delta < 0 {
            return Ok(stop(pos, format!("negative lastOffsetDelta at {pos}")));
        }
        if check_crc {
            ensure(&mut win, &mut win_start, pos, size)?;
            let off = (pos - win_start) as usize;
            if let Err(e) = batch::validate_batch(&win[off..off + size as usize]) {
                return Ok(stop(pos, format!("batch at {pos}: {e}")));
            }
        }
        if !f(pos, &header)? {
            return Ok(stop(pos, format!("batch at {pos} rejected")));
        }
        pos += size;
    }
    Ok(ScanEnd {
        valid_end: pos,
        problem: None,
    })
}

pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    log: Box<dyn DiskFile>,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    next_offset: i64,
    max_timestamp: i64,
    /// Last offset of the batch carrying `max_timestamp` (first such batch).
    offset_of_max_timestamp: i64,
    /// now_ms of the first append (or of open, for a non-empty segment
    /// found on disk), for segment.ms.
    created_ms: Option<i64>,
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base, "log")),
            dir.join(file_name(base, "index")),
            dir.join(file_name(base, "timeindex")),
        )
    }

    /// Create a new empty segment (replacing any files of that name).
    pub fn create(disk: &dyn Disk, dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        let (lp, ip, tp) = Self::paths(dir, base_offset);
        // An aborted-transaction index of an earlier segment at this base
        // (a log restarted empty) describes records that are gone.
        let txn_path = dir.join(file_name(base_offset, "txnindex"));
        if disk.exists(&txn_path) {
            disk.remove_file(&txn_path)?;
        }
        let log = disk.open(&lp, OpenMode::CREATE_NEW_EMPTY)?;
        Ok(Segment {
            base_offset,
            log_path: lp,
            log,
            size: 0,
            offset_index: OffsetIndex::create(disk, &ip, base_offset)?,
            time_index: TimeIndex::create(disk, &tp, base_offset)?,
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            created_ms: None,
        })
    }

    /// Open a segment written before a clean shutdown (or rolled, hence
    /// fsynced): trust the log, load the indexes, and find the end by scanning
    /// headers from the last index entry. Falls back to [`Segment::recover`]
    /// when an index is missing or invalid or the tail does not scan cleanly.
    /// Returns the segment and how many bytes recovery truncated.
    pub fn open(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        now_ms: i64,
        allow_gaps: bool,
    ) -> Result<(Segment, u64), LogError> {
        let (lp, ip, tp) = Self::paths(dir, base_offset);
        let log = disk.open(&lp, OpenMode::EXISTING)?;
        let size = log.len()?;
        let recover = || {
            Self::recover(
                disk,
                dir,
                base_offset,
                index_interval_bytes,
                now_ms,
                allow_gaps,
            )
        };
        let Some(offset_index) = OffsetIndex::load(disk, &ip, base_offset, size)? else {
            return recover();
        };
        let (start_offset, start_pos) = offset_index.last_entry().unwrap_or((base_offset, 0));
        let mut next_offset = base_offset;
        let mut max_ts = NO_TIMESTAMP;
        let mut off_of_max = -1;
        let mut bytes_since = 0u64;
        let mut first = true;
        let end = scan_batches(log.as_ref(), start_pos as u64, size, false, |pos, h| {
            if first && pos > 0 && h.base_offset != start_offset {
                return Ok(false); // the index points at the wrong batch
            }
            if h.base_offset < next_offset {
                return Ok(false);
            }
            // The batch at the last index entry reset the count to zero
            // before adding its own size, so the count is the scanned bytes.
            bytes_since += h.total_size() as u64;
            first = false;
            next_offset = h.next_offset();
            if h.max_timestamp > max_ts {
                max_ts = h.max_timestamp;
                off_of_max = h.last_offset();
            }
            Ok(true)
        })?;
        if end.problem.is_some() {
            return recover();
        }
        let Some(time_index) = TimeIndex::load(disk, &tp, base_offset, next_offset)? else {
            return recover();
        };
        if let Some((ts, off)) = time_index.last_entry() {
            if ts >= max_ts {
                max_ts = ts;
                off_of_max = off;
            }
        }
        Ok((
            Segment {
                base_offset,
                log_path: lp,
                log,
                size,
                offset_index,
                time_index,
                bytes_since_index: bytes_since,
                next_offset,
                max_timestamp: max_ts,
                offset_of_max_timestamp: off_of_max,
                created_ms: (size > 0).then_some(now_ms),
            },
            0,
        ))
    }

    /// Open a segment that may have been cut by a crash: scan every batch
    /// from the start (header, length, CRC, increasing offsets), truncate the
    /// log at the first bad byte, and rebuild both indexes. Returns the
    /// segment and how many bytes were truncated.
    ///
    /// `allow_gaps`: the segment may have been cleaned, so batch offsets need
    /// only strictly increase (each batch's base offset >= the previous
    /// batch's last offset + 1, and >= the segment's base) instead of being
    /// contiguous. The CRC does not cover baseOffset; what still catches a
    /// damaged one there: a base below the previous batch's end or below the
    /// segment base stops the scan here, and a base pushed past the next
    /// segment's base fails the log's overlap check at open. A damaged base
    /// that stays strictly inside its gap is not detectable from the bytes
    /// alone (Kafka has the same limit for compacted segments); the active
    /// segment of a never-cleaned log keeps the strict contiguity check.
    pub fn recover(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        now_ms: i64,
        allow_gaps: bool,
    ) -> Result<(Segment, u64), LogError> {
        let (lp, ip, tp) = Self::paths(dir, base_offset);
        let log = disk.open(&lp, OpenMode::EXISTING)?;
        let file_size = log.len()?;
        let mut seg = Segment {
            base_offset,
            log_path: lp,
            log,
            size: 0,
            offset_index: OffsetIndex::create(disk, &ip, base_offset)?,
            time_index: TimeIndex::create(disk, &tp, base_offset)?,
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            created_ms: None,
        };
        let mut headers = Vec::new();
        let mut next = base_offset;
        // Without compaction offsets are contiguous, and this catches a
        // damaged baseOffset, which the CRC does not cover.
        let end = scan_batches(seg.log.as_ref(), 0, file_size, true, |pos, h| {
            let in_order = if allow_gaps {
                h.base_offset >= next
            } else {
                h.base_offset == next
            };
            if !in_order {
                return Ok(false);
            }
            next = h.next_offset();
            headers.push((pos, *h));
            Ok(true)
        })?;
        for (pos, h) in &headers {
            seg.index_batch(*pos, h, index_interval_bytes)?;
        }
        seg.size = end.valid_end;
        let truncated = file_size - end.valid_end;
        if truncated > 0 {
            tracing::warn!(
                segment = %seg.log_path.display(),
                truncated,
                problem = end.problem.as_deref().unwrap_or(""),
                "truncating log segment after unclean shutdown"
            );
            seg.log.set_len(end.valid_end)?;
            seg.log.sync_data()?;
        }
        if seg.size > 0 {
            seg.created_ms = Some(now_ms);
        }
        Ok((seg, truncated))
    }

    /// Update in-memory state and indexes for a batch now stored at `pos`.
    fn index_batch(
        &mut self,
        pos: u64,
        h: &BatchHeader,
        index_interval_bytes: u32,
    ) -> Result<(), LogError> {
        assert!(
            h.base_offset >= self.next_offset,
            "segment invariant: batch offsets increase"
        );
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        if self.bytes_since_index > index_interval_bytes as u64 {
            self.offset_index.append(h.base_offset, pos as u32)?;
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_size() as u64;
        self.next_offset = h.next_offset();
        self.size = pos + h.total_size() as u64;
        Ok(())
    }

    /// Append already validated and offset-assigned batches (`buf` holds
    /// them back to back; `headers` are their ranges and headers). One write.
    pub fn append(
        &mut self,
        buf: &[u8],
        headers: &[(std::ops::Range<usize>, BatchHeader)],
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let start = self.size;
        assert!(
            start + buf.len() as u64 <= u32::MAX as u64,
            "segment invariant: positions fit u32"
        );
        if let Err(e) = self.log.write_at(buf, start) {
            // Leave no partial batch behind for readers; recovery would cut
            // it anyway.
            let _ = self.log.set_len(start);
            return Err(e.into());
        }
        for (range, h) in headers {
            self.index_batch(start + range.start as u64, h, index_interval_bytes)?;
        }
        if self.created_ms.is_none() {
            self.created_ms = Some(now_ms);
        }
        Ok(())
    }

    /// The batch holding `offset` (the first with last offset >= `offset`),
    /// as (position, header); None if the segment has no such batch.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let start = self.offset_index.lookup(offset) as u64;
        let mut found = None;
        // Base offsets are outside the CRC: a header whose offsets go
        // backwards or leave this segment is damage, not data to serve.
        let mut next_min = self.base_offset;
        let end = scan_batches(self.log.as_ref(), start, self.size, false, |pos, h| {
            if h.base_offset < next_min || h.last_offset() >= self.next_offset {
                return Ok(false);
            }
            next_min = h.last_offset() + 1;
            if h.last_offset() >= offset {
                found = Some((pos, *h));
                return Ok(false);
            }
            Ok(true)
        })?;
        if found.is_none() {
            self.corrupt_at_rest(&end)?;
        }
        Ok(found)
    }

    /// Whole batches starting at `pos` (where `first` starts), up to
    /// `max_bytes`, but the first batch whole when `min_one_batch`.
    pub fn read_from(
        &self,
        pos: u64,
        first: &BatchHeader,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        let avail = self.size - pos;
        let first_size = first.total_size() as u64;
        let want = if max_bytes as u64 >= first_size {
            (max_bytes as u64).min(avail)
        } else if min_one_batch {
            first_size
        } else {
            return Ok(Bytes::new());
        };
        let mut buf = vec![0u8; want as usize];
        self.log.read_exact_at(&mut buf, pos)?;
        let end = self.whole_sane_batches(&buf, first);
        if end == 0 {
            // The header read moments ago said otherwise: the disk returned
            // different bytes this time (a corrupted read), or the batch is
            // damaged where its CRC does not look.
            return Err(LogError::CorruptMessage(format!(
                "{}: batch at {pos} changed between reads",
                self.log_path.display()
            )));
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }

    /// Length of the prefix of `buf` made of whole batches whose headers are
    /// sane: the first is the batch the index scan found, and base offsets
    /// strictly grow and stay inside this segment. The CRC does not cover a
    /// batch's base offset, so without this a bit flipped there (at rest or
    /// by a bad read) would hand consumers records at offsets where they are
    /// not. Consumers check each batch's CRC for the rest. Header fields
    /// only: no per-record work on the fetch path.
    fn whole_sane_batches(&self, buf: &[u8], first: &BatchHeader) -> usize {
        let mut end = 0;
        let mut next_min = first.base_offset;
        while let Some(n) = batch::batch_size_at(&buf[end..]) {
            if end + n > buf.len() {
                break;
            }
            let Ok(h) = BatchHeader::parse(&buf[end..end + n]) else {
                break;
            };
            let expected_first = end > 0 || h.base_offset == first.base_offset;
            if !expected_first
                || h.base_offset < next_min
                || h.base_offset < self.base_offset
                || h.last_offset_delta < 0
                || h.last_offset() >= self.next_offset
            {
                break;
            }
            next_min = h.last_offset() + 1;
            end += n;
        }
        end
    }

    /// Read one whole batch at `pos`.
    pub fn read_batch(&self, pos: u64, h: &BatchHeader) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; h.total_size()];
        self.log.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Earliest (offset, timestamp) with timestamp >= `ts` in this segment.
    pub fn find_offset_by_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let start = match self.time_index.lookup_below(ts) {
            Some((_, off)) => self.offset_index.lookup(off) as u64,
            None => 0,
        };
        let mut candidate = None;
        let end = scan_batches(self.log.as_ref(), start, self.size, false, |pos, h| {
            if h.max_timestamp >= ts {
                candidate = Some((pos, *h));
                return Ok(false);
            }
            Ok(true)
        })?;
        if candidate.is_none() {
            self.corrupt_at_rest(&end)?;
        }
        let Some((pos, h)) = candidate else {
            return Ok(None);
        };
        let bytes = self.read_batch(pos, &h)?;
        let found = batch::record_timestamps(&bytes)?
            .into_iter()
            .find(|&(_, t)| t >= ts);
        // A batch whose maxTimestamp says a record qualifies but whose records
        // disagree is corrupt-ish; answer with the batch itself.
        Ok(Some(found.unwrap_or((h.base_offset, h.max_timestamp))))
    }

    /// Visit every batch from the start with its position, header and whole
    /// bytes, stopping early when `f` returns false. Damage at rest is an error.
    pub fn for_each_batch(
        &self,
        f: impl FnMut(u64, &BatchHeader, Vec<u8>) -> Result<bool, LogError>,
    ) -> Result<(), LogError> {
        for_each_batch_in(self.log.as_ref(), &self.log_path, self.size, f)
    }

    /// This segment's log file on a handle of its own, for reading without
    /// the partition's lock. Only for closed segments: they never change
    /// until the cleaner swaps them or retention deletes them, which the
    /// reader's user must detect (see cleaner.rs).
    pub fn reader(&self, disk: &dyn Disk) -> Result<SegmentReader, LogError> {
        assert!(
            self.next_offset > self.base_offset || self.size == 0,
            "segment invariant: a non-empty segment holds offsets"
        );
        Ok(SegmentReader {
            base_offset: self.base_offset,
            log_path: self.log_path.clone(),
            log: disk.open(&self.log_path, OpenMode::EXISTING)?,
            size: self.size,
        })
    }

    /// As [`Segment::for_each_header`], with each batch's file position.
    pub fn for_each_header_at(
        &self,
        from_offset: i64,
        mut f: impl FnMut(u64, &BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let start = self.offset_index.lookup(from_offset) as u64;
        let end = scan_batches(self.log.as_ref(), start, self.size, false, |pos, h| {
            if h.last_offset() >= from_offset {
                f(pos, h)?;
            }
            Ok(true)
        })?;
        self.corrupt_at_rest(&end)
    }

    /// Visit every batch header from `from_offset` on (no CRC check).
    pub fn for_each_header(
        &self,
        from_offset: i64,
        mut f: impl FnMut(&BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        self.for_each_header_at(from_offset, |_, h| f(h))
    }

    /// A scan of stored bytes that stopped early found damage at rest (the
    /// bytes were whole when written or recovered): report it rather than
    /// silently serving less.
    fn corrupt_at_rest(&self, end: &ScanEnd) -> Result<(), LogError> {
        match &end.problem {
            None => Ok(()),
            Some(why) => Err(LogError::CorruptMessage(format!(
                "{}: {why}",
                self.log_path.display()
            ))),
        }
    }

    /// The segment stops being active (roll, close): record its max
    /// timestamp in the time index and make log and indexes durable.
    pub fn seal(&mut self) -> Result<(), LogError> {
        if self.max_timestamp != NO_TIMESTAMP && self.offset_of_max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
        }
        self.log.sync_data()?;
        self.offset_index.sync()?;
        self.time_index.sync()?;
        Ok(())
    }

    /// Cut the log at `pos` (a batch boundary), make that durable, and
    /// rebuild the indexes and in-memory state by rescanning what remains.
    pub fn truncate_to_position(
        self,
        disk: &dyn Disk,
        dir: &Path,
        pos: u64,
        index_interval_bytes: u32,
        allow_gaps: bool,
    ) -> Result<Segment, LogError> {
        assert!(pos <= self.size, "truncation only removes bytes");
        let base = self.base_offset;
        let created = self.created_ms;
        self.log.set_len(pos)?;
        self.log.sync_data()?;
        drop(self);
        let (mut seg, cut) =
            Segment::recover(disk, dir, base, index_interval_bytes, 0, allow_gaps)?;
        if cut > 0 {
            tracing::warn!(
                base,
                cut,
                "truncated segment did not rescan cleanly; cut further"
            );
        }
        seg.created_ms = if seg.size > 0 { created } else { None };
        Ok(seg)
    }

    /// Remove the segment's files (the segment is dropped first so no handle
    /// stays open). Indexes go first: a crash part way leaves a `.log`
    /// without indexes, which open rebuilds (and, below the log start,
    /// deletes again), never an index without its log.
    pub fn delete_files(self, disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
        let base = self.base_offset;
        drop(self);
        for ext in ["index", "timeindex", "txnindex", "log"] {
            let path = dir.join(file_name(base, ext));
            match disk.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// fsync the log file.
    pub fn flush(&self) -> Result<(), LogError> {
        Ok(self.log.sync_data()?)
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn created_ms(&self) -> Option<i64> {
        self.created_ms
    }
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        (self.offset_of_max_timestamp >= 0)
            .then_some((self.max_timestamp, self.offset_of_max_timestamp))
    }
    /// Whether either index has fewer than `more` free entries within
    /// `index_bytes` (segment.index.bytes).
    pub fn index_nearly_full(&self, index_bytes: u32, more: usize) -> bool {
        let off_cap = index_bytes as usize / offset_index::ENTRY_BYTES;
        let time_cap = index_bytes as usize / time_index::ENTRY_BYTES;
        self.offset_index.len() + more > off_cap || self.time_index.len() + more + 1 > time_cap
    }
}
