//! cleanup.policy=compact: the log cleaner keeps the latest record per key.
//!
//! One pass (`PartitionLog::clean`), as Kafka's LogCleaner for one log:
//! 1. The cleanable range ends at the first uncleanable offset: the active
//!    segment's base, the caller's last stable offset (the high watermark
//!    without transactions), or the first segment whose newest record is
//!    younger than min.compaction.lag.ms, whichever comes first.
//! 2. Dirty = from the first dirty offset (checkpoint) to that end. The pass
//!    runs only when dirty bytes / (clean + dirty) bytes >=
//!    min.cleanable.dirty.ratio.
//! 3. A key -> latest offset map is built from the dirty range (at most
//!    [`CLEANER_KEYS_MAX`] keys; a pass covers fewer segments rather than
//!    exceed it).
//! 4. Every closed segment below the end is rewritten without the records a
//!    later record of the same key supersedes, and without tombstones (null
//!    value) whose segment was first cleaned delete.retention.ms ago or
//!    more (the tombstone horizon: KIP-534's "delete horizon", kept per
//!    segment in the cleaner checkpoint instead of in batch headers).
//!    Segments stay one to one (no merging of small segments yet).
//!
//! Batches: survivors keep their offsets (gaps allowed). A batch that loses
//! nothing is copied byte for byte; one that loses some records is
//! re-encoded with kafka-protocol in its original codec (batch::reencode);
//! one that loses all is dropped, and a segment left with no batch is
//! deleted (moving the log start if it was the first). Left untouched and never used to supersede
//! other records: control batches and transactional batches (without a
//! transaction index the cleaner cannot tell aborted data from committed, and
//! an aborted record must never hide a committed one), and the batches still
//! in an idempotent producer's dedupe window (its last five), so producer
//! state rebuilt from the log keeps the sequence numbers that detect retries.
//! Kafka keeps only an empty header for such a batch; keeping the records
//! costs a little space and changes nothing a reader sees at the end.
//! Keyless records are kept.
//!
//! Crash-safe swap, per segment `B`:
//! 1. write the cleaned batches to `B.log.cleaned`, fsync;
//! 2. rename it to `B.log.swap` (the commit point: complete and durable);
//! 3. remove `B.index` and `B.timeindex`, rename `B.log.swap` over `B.log`;
//! 4. rebuild the indexes by a full recovery scan (gaps allowed).
//!
//! At open, [`complete_interrupted_swaps`] deletes any `.cleaned` (a swap that
//! never committed: the old segment is intact) and finishes any `.swap` (steps
//! 3-4), so no half-cleaned segment is ever served. The cleaner checkpoint
//! lists the segment as cleaned (may hold gaps) before step 1, so recovery
//! never applies the strict contiguity check to it.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use super::batch::{self, BatchHeader};
use super::checkpoint;
use super::segment::{self, Segment};
use super::{LogError, PartitionLog};
use crate::env::disk::{Disk, OpenMode};

/// Most distinct keys one pass holds in its offset map (each costs the key's
/// bytes plus ~50 bytes); a pass stops at a segment boundary once above it.
pub const CLEANER_KEYS_MAX: usize = 4 << 20;

/// Bytes buffered before a write to the `.cleaned` file.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// What one cleaning pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanOutcome {
    /// Closed segments examined.
    pub segments_examined: usize,
    /// Segments rewritten (the others lost nothing).
    pub segments_rewritten: usize,
    /// Bytes of the examined segments.
    pub bytes_read: u64,
    /// Bytes of the examined segments after cleaning.
    pub bytes_written: u64,
    /// Records dropped (superseded values and expired tombstones).
    pub records_removed: u64,
    /// The dirty ratio that triggered the pass.
    pub dirty_ratio: f64,
    /// The first dirty offset after the pass.
    pub first_dirty_offset: i64,
}

/// Finish or undo cleaner swaps a crash interrupted (see the module doc).
pub fn complete_interrupted_swaps(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    if !disk.is_dir(dir) {
        return Ok(());
    }
    for name in disk.list_dir(dir)? {
        if name.ends_with(".cleaned") {
            disk.remove_file(&dir.join(&name))?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".swap") else {
            continue;
        };
        let Some((base, "log")) = segment::parse_file_name(stem) else {
            continue;
        };
        tracing::warn!(dir = %dir.display(), base, "completing an interrupted cleaner swap");
        finish_swap(disk, dir, base)?;
    }
    Ok(())
}

/// Steps 3 of the swap: stale indexes go first, then the atomic rename.
fn finish_swap(disk: &dyn Disk, dir: &Path, base: i64) -> Result<(), LogError> {
    for ext in ["index", "timeindex"] {
        match disk.remove_file(&dir.join(segment::file_name(base, ext))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    disk.rename(
        &dir.join(segment::file_name(base, "log.swap")),
        &dir.join(segment::file_name(base, "log")),
    )?;
    Ok(())
}

/// The fate of one batch.
enum Fate {
    Keep,
    Drop(u64),
    Rewrite(Vec<u8>, u64),
}

/// Inputs of one pass shared by every segment.
struct PassContext<'a> {
    latest: &'a HashMap<Bytes, i64>,
    /// (producer id, last offset) of batches in producers' dedupe windows.
    protected: &'a std::collections::BTreeSet<(i64, i64)>,
}

impl PartitionLog {
    /// Dirty bytes / cleanable bytes, and the cleanable end, for
    /// `last_stable_offset` at `now_ms`. None when nothing is cleanable.
    fn cleanable(&self, now_ms: i64, last_stable_offset: i64) -> Option<(f64, i64, i64)> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let lag = self.config.min_compaction_lag_ms;
        let mut end = None;
        for w in bases.windows(2) {
            let seg = &self.segments[&w[0]];
            if w[1] > last_stable_offset {
                break;
            }
            if lag > 0 {
                if let Some((ts, _)) = seg.max_timestamp() {
                    if ts >= 0 && now_ms.saturating_sub(ts) < lag {
                        break;
                    }
                }
            }
            end = Some(w[1]);
        }
        let end = end?;
        let first_dirty = self
            .cleaner_state
            .first_dirty_offset
            .max(self.log_start_offset);
        if first_dirty >= end {
            return None;
        }
        let (mut clean, mut dirty) = (0u64, 0u64);
        for w in bases.windows(2).take_while(|w| w[1] <= end) {
            let size = self.segments[&w[0]].size();
            if w[1] <= first_dirty {
                clean += size;
            } else {
                dirty += size;
            }
        }
        if clean + dirty == 0 {
            return None;
        }
        Some((dirty as f64 / (clean + dirty) as f64, first_dirty, end))
    }

    /// The dirty ratio the next pass would see (0 when nothing is cleanable).
    pub fn dirty_ratio(&self, now_ms: i64, last_stable_offset: i64) -> f64 {
        self.cleanable(now_ms, last_stable_offset)
            .map_or(0.0, |(r, _, _)| r)
    }

    /// One cleaning pass when cleanup.policy includes compact and the dirty
    /// ratio is reached (see the module doc); None when there was nothing to
    /// do. `last_stable_offset` bounds what may be cleaned (pass the high
    /// watermark, or the log end where no replication applies).
    pub fn clean(
        &mut self,
        now_ms: i64,
        last_stable_offset: i64,
    ) -> Result<Option<CleanOutcome>, LogError> {
        self.ensure_online()?;
        if !self.config.cleanup_policy.compact {
            return Ok(None);
        }
        let Some((ratio, first_dirty, end)) = self.cleanable(now_ms, last_stable_offset) else {
            return Ok(None);
        };
        if ratio < self.config.min_cleanable_dirty_ratio {
            return Ok(None);
        }
        let r = self.clean_inner(now_ms, ratio, first_dirty, end);
        self.note_io(r).map(Some)
    }

    fn clean_inner(
        &mut self,
        now_ms: i64,
        ratio: f64,
        first_dirty: i64,
        end: i64,
    ) -> Result<CleanOutcome, LogError> {
        let (latest, end) = self.build_offset_map(first_dirty, end)?;
        let mut protected = std::collections::BTreeSet::new();
        for (pid, entry) in self.producers.iter() {
            for m in &entry.batches {
                protected.insert((pid, m.last_offset));
            }
        }
        let bases: Vec<i64> = self
            .segments
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .windows(2)
            .take_while(|w| w[1] <= end)
            .map(|w| w[0])
            .collect();
        // Tombstone horizons are judged by the state before this pass; then
        // every examined segment is listed as cleaned (durably, before any
        // swap: see the module doc).
        let horizons: Vec<bool> = bases
            .iter()
            .map(|b| {
                self.cleaner_state
                    .first_cleaned_ms
                    .get(b)
                    .is_some_and(|&t| now_ms.saturating_sub(t) >= self.config.delete_retention_ms)
            })
            .collect();
        for &b in &bases {
            self.cleaner_state
                .first_cleaned_ms
                .entry(b)
                .or_insert(now_ms);
        }
        self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
        let ctx = PassContext {
            latest: &latest,
            protected: &protected,
        };
        let mut out = CleanOutcome {
            dirty_ratio: ratio,
            ..Default::default()
        };
        for (&base, &drop_tombstones) in bases.iter().zip(&horizons) {
            let seg = &self.segments[&base];
            out.segments_examined += 1;
            out.bytes_read += seg.size();
            let (removed, written) = self.clean_segment(base, &ctx, drop_tombstones)?;
            out.records_removed += removed;
            out.bytes_written += written;
            if removed > 0 {
                out.segments_rewritten += 1;
            }
        }
        let segments = &self.segments;
        self.cleaner_state
            .first_cleaned_ms
            .retain(|b, _| segments.contains_key(b));
        self.cleaner_state.first_dirty_offset = end;
        self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
        out.first_dirty_offset = end;
        tracing::info!(
            dir = %self.dir.display(),
            segments = out.segments_rewritten,
            removed = out.records_removed,
            "cleaned log"
        );
        Ok(out)
    }

    /// Key -> offset of its latest record in `[first_dirty, end)`, and the
    /// end actually covered (lower when the map would outgrow its limit).
    fn build_offset_map(
        &self,
        first_dirty: i64,
        end: i64,
    ) -> Result<(HashMap<Bytes, i64>, i64), LogError> {
        let mut map: HashMap<Bytes, i64> = HashMap::new();
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut covered = first_dirty;
        for w in bases.windows(2) {
            let (base, upper) = (w[0], w[1]);
            if upper <= first_dirty {
                continue;
            }
            if upper > end {
                break;
            }
            if map.len() > CLEANER_KEYS_MAX && covered > first_dirty {
                break;
            }
            self.segments[&base].for_each_batch(|_, h, bytes| {
                if h.is_control() || h.is_transactional() || h.last_offset() < first_dirty {
                    return Ok(true);
                }
                for r in batch::decode_records(&bytes)? {
                    if r.offset < first_dirty {
                        continue;
                    }
                    if let Some(k) = r.key {
                        // Copy: a slice would pin the whole batch buffer.
                        map.insert(Bytes::copy_from_slice(&k), r.offset);
                    }
                }
                Ok(true)
            })?;
            covered = upper;
        }
        Ok((map, covered))
    }

    /// What cleaning does to one batch.
    fn batch_fate(
        h: &BatchHeader,
        bytes: &[u8],
        ctx: &PassContext<'_>,
        drop_tombstones: bool,
    ) -> Result<Fate, LogError> {
        if h.is_control() || h.is_transactional() {
            return Ok(Fate::Keep);
        }
        if h.has_producer_id() && ctx.protected.contains(&(h.producer_id, h.last_offset())) {
            return Ok(Fate::Keep);
        }
        let records = batch::decode_records(bytes)?;
        let total = records.len();
        let kept: Vec<_> = records
            .into_iter()
            .filter(|r| {
                let Some(k) = &r.key else {
                    return true;
                };
                if ctx.latest.get(k).is_some_and(|&o| o > r.offset) {
                    return false;
                }
                !(r.value.is_none() && drop_tombstones)
            })
            .collect();
        let removed = (total - kept.len()) as u64;
        Ok(if removed == 0 {
            Fate::Keep
        } else if kept.is_empty() {
            Fate::Drop(removed)
        } else {
            Fate::Rewrite(batch::reencode(h, &kept, h.compression())?, removed)
        })
    }

    /// Delete closed segment `base`, every record of which the cleaner
    /// dropped. The first segment takes the log start offset up with it
    /// (durably, first), so the log still starts at its first segment.
    /// Crash story: indexes go before the log, and a crash part way leaves
    /// the old, whole segment, which the next pass cleans again.
    fn delete_emptied_segment(&mut self, base: i64) -> Result<(), LogError> {
        let next = self
            .segments
            .range(base + 1..)
            .next()
            .map(|(b, _)| *b)
            .expect("cleaner invariant: a cleaned segment is never the active one");
        if self.segments.keys().next() == Some(&base) && self.log_start_offset < next {
            checkpoint::write_log_start(self.disk.as_ref(), &self.dir, next)?;
            self.log_start_offset = next;
        }
        let seg = self.segments.remove(&base).expect("segment being cleaned");
        seg.delete_files(self.disk.as_ref(), &self.dir)?;
        Ok(())
    }

    /// Clean segment `base`; returns (records removed, bytes after). A
    /// segment that loses nothing is left as it is; one that loses
    /// everything is deleted.
    fn clean_segment(
        &mut self,
        base: i64,
        ctx: &PassContext<'_>,
        drop_tombstones: bool,
    ) -> Result<(u64, u64), LogError> {
        let cleaned_path = self.dir.join(segment::file_name(base, "log.cleaned"));
        let mut file = None;
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0u64;
        let mut removed = 0u64;
        let disk = self.disk.clone();
        let seg = &self.segments[&base];
        let flush = |pending: &mut Vec<u8>,
                     file: &mut Option<Box<dyn crate::env::DiskFile>>,
                     written: &mut u64|
         -> Result<(), LogError> {
            let f = match file {
                Some(f) => f,
                None => file.insert(disk.open(&cleaned_path, OpenMode::CREATE_NEW_EMPTY)?),
            };
            f.write_at(pending, *written)?;
            *written += pending.len() as u64;
            pending.clear();
            Ok(())
        };
        seg.for_each_batch(|_, h, bytes| {
            match Self::batch_fate(h, &bytes, ctx, drop_tombstones)? {
                Fate::Keep => pending.extend_from_slice(&bytes),
                Fate::Drop(n) => removed += n,
                Fate::Rewrite(new, n) => {
                    removed += n;
                    pending.extend_from_slice(&new);
                }
            }
            if pending.len() >= WRITE_CHUNK_BYTES {
                flush(&mut pending, &mut file, &mut written)?;
            }
            Ok(true)
        })?;
        if removed == 0 {
            if file.is_some() {
                drop(file);
                disk.remove_file(&cleaned_path)?;
            }
            return Ok((0, seg.size()));
        }
        if written == 0 && pending.is_empty() {
            // Nothing survives: delete the segment rather than keep an empty
            // one (each costs three files, forever, in a compacted log).
            drop(file);
            if disk.exists(&cleaned_path) {
                disk.remove_file(&cleaned_path)?;
            }
            self.delete_emptied_segment(base)?;
            return Ok((removed, 0));
        }
        flush(&mut pending, &mut file, &mut written)?;
        let f = file.expect("flushed above");
        f.sync_data()?;
        drop(f);
        // Commit point.
        disk.rename(
            &cleaned_path,
            &self.dir.join(segment::file_name(base, "log.swap")),
        )?;
        let old = self.segments.remove(&base).expect("segment being cleaned");
        drop(old);
        finish_swap(disk.as_ref(), &self.dir, base)?;
        let (new, cut) = Segment::recover(
            disk.as_ref(),
            &self.dir,
            base,
            self.config.index_interval_bytes,
            0,
            true,
        )?;
        let size = new.size();
        self.segments.insert(base, new);
        if cut > 0 || size != written {
            // The bytes read back differ from those fsynced: a disk fault.
            // Take the log offline; reopening recovers it.
            return Err(LogError::Io(std::io::Error::other(format!(
                "cleaned segment {base} read back as {size} of {written} bytes"
            ))));
        }
        Ok((removed, written))
    }
}
