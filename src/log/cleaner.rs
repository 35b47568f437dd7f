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
//! Phases, so the broker holds the partition lock only briefly:
//! `begin_clean` (under the lock) checks the ratio and snapshots the closed
//! segments below the cleanable end (a [`SegmentReader`] each, on its own
//! file handle: closed segments are immutable) and the tombstone horizons;
//! [`CleanTask::step`] (no lock: the task
//! borrows nothing of the log) builds the offset map, then one
//! `<base>.log.cleaned` per segment, fsynced; `finish_clean` (under the lock)
//! checks the log's layout generation (bumped by truncation, restart-empty
//! and every swap) and that each segment is still there, closed and of the
//! size read, then runs the swap for each (segments retention deleted
//! meanwhile are skipped, a stale pass is dropped whole). An I/O error in
//! the unlocked phase takes the log offline unless a segment it read
//! vanished meanwhile. `clean` runs all three at once.
//!
//! Batches: survivors keep their offsets (gaps allowed). A batch that loses
//! nothing is copied byte for byte; one that loses some records is
//! re-encoded with kafka-protocol in its original codec (batch::reencode);
//! one that loses all is dropped, and a segment left with no batch is
//! deleted, or, if it is the first, swapped for an empty file (see
//! `drop_emptied_segment`). Keyless records are kept.
//!
//! The cleaner never moves the log start offset, as Kafka's never does
//! (only retention and DeleteRecords do): a read at an offset whose records
//! it dropped returns the next surviving batch, and ListOffsets EARLIEST
//! does not change under it.
//!
//! Transactions, as Kafka: the cleanable range ends below the first open
//! transaction (whether its records count is not decided); records of an
//! aborted transaction (the log's aborted index says which) are dropped and
//! never enter the offset map, so they cannot hide a committed record;
//! committed transactional records are cleaned like any others; a marker
//! stays while any record of its transaction survives the pass, then until
//! its segment's tombstone horizon, and then goes.
//!
//! An idempotent producer's recent batches are cleaned like any other. An
//! earlier version kept them whole so producer state rebuilt from the log
//! would keep their sequences, but a superseded record kept that way
//! outlives the tombstone that deleted its key and comes back once the
//! tombstone goes (the simulator's compaction-tombstones scenario found it).
//! Kafka keeps an empty header for a producer's last batch instead; here the
//! producer snapshot written at every roll holds that state, and a
//! re-encoded batch keeps its last offset and last sequence.
//!
//! Crash-safe swap, per segment `B`:
//! 1. write the cleaned batches to `B.log.cleaned`, fsync;
//! 2. rename it to `B.log.swap` (the commit point: complete and durable);
//! 3. remove `B.index` and `B.timeindex`, rename `B.log.swap` over `B.log`;
//! 4. rebuild the indexes by a full recovery scan (gaps allowed).
//!
//! Step 1 happens in the unlocked phase; steps 2-4 under the lock.
//!
//! At open, [`complete_interrupted_swaps`] deletes any `.cleaned` (a swap that
//! never committed: the old segment is intact) and finishes any `.swap` (steps
//! 3-4), so no half-cleaned segment is ever served. The cleaner checkpoint
//! lists the segment as cleaned (may hold gaps) before step 1, so recovery
//! never applies the strict contiguity check to it (it is written in
//! `finish_clean`, under the lock, before the first rename).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::{self, BatchHeader};
use super::segment::{self, Segment, SegmentReader};
use super::txn::{self, AbortedTxn};
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
    /// Aborted transactions below the cleanable end, by first offset.
    aborted: &'a [AbortedTxn],
}

/// Per producer, whether a record of its current transaction (since its
/// last marker) survived this pass so far: its marker must then stay.
type TxnRetained = BTreeMap<i64, bool>;

impl PartitionLog {
    /// Dirty bytes / cleanable bytes, and the cleanable end, for
    /// `last_stable_offset` at `now_ms`. None when nothing is cleanable.
    /// With `horizon_pass`, a range with nothing dirty is cleanable too (a
    /// pass that only drops expired tombstones).
    fn cleanable(
        &self,
        now_ms: i64,
        last_stable_offset: i64,
        horizon_pass: bool,
    ) -> Option<(f64, i64, i64)> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let lag = self.config.min_compaction_lag_ms;
        // Never clean into a transaction still open: whether its records
        // count is not decided yet.
        let last_stable_offset = self
            .first_unstable_offset()
            .map_or(last_stable_offset, |f| f.min(last_stable_offset));
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
        if first_dirty >= end && !horizon_pass {
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
        self.cleanable(now_ms, last_stable_offset, false)
            .map_or(0.0, |(r, _, _)| r)
    }

    /// Whether a cleaned segment's tombstone horizon (first cleaned +
    /// delete.retention.ms) passed since the last pass began: its
    /// tombstones may go now. As Kafka's cleaner does for a log whose
    /// delete horizon passed, such a log gets a pass even below
    /// min.cleanable.dirty.ratio, or a topic that stops receiving writes
    /// would keep its tombstones forever.
    fn tombstone_horizon_due(&self, now_ms: i64) -> bool {
        let retention = self.config.delete_retention_ms;
        let active = self.segments.keys().next_back().copied();
        self.cleaner_state
            .first_cleaned_ms
            .iter()
            .filter(|(base, _)| Some(**base) != active && self.segments.contains_key(base))
            .any(|(base, &t)| {
                // The last pass dropped this segment's expired tombstones
                // unless the horizon came later, or that very pass was the
                // segment's first clean (horizons are judged by the state
                // before a pass).
                let horizon = t.saturating_add(retention);
                horizon <= now_ms
                    && (horizon > self.last_clean_pass_ms
                        || self.first_cleaned_last_pass.contains(base))
            })
    }

    /// One cleaning pass when cleanup.policy includes compact and the dirty
    /// ratio is reached (see the module doc); None when there was nothing to
    /// do. `last_stable_offset` bounds what may be cleaned (pass the high
    /// watermark, or the log end where no replication applies).
    ///
    /// All three phases at once, for callers that hold the log exclusively;
    /// the broker runs [`CleanTask::step`] without the partition lock.
    pub fn clean(
        &mut self,
        now_ms: i64,
        last_stable_offset: i64,
    ) -> Result<Option<CleanOutcome>, LogError> {
        let Some(mut task) = self.begin_clean(now_ms, last_stable_offset)? else {
            return Ok(None);
        };
        task.build();
        self.finish_clean(task)
    }

    /// Phase 1 (under the lock, cheap): decide whether a pass is due and
    /// snapshot what it needs: a reader per closed segment below the
    /// cleanable end, the tombstone horizons.
    pub fn begin_clean(
        &mut self,
        now_ms: i64,
        last_stable_offset: i64,
    ) -> Result<Option<CleanTask>, LogError> {
        self.ensure_online()?;
        if !self.config.cleanup_policy.compact {
            return Ok(None);
        }
        let horizon_pass = self.tombstone_horizon_due(now_ms);
        let Some((ratio, first_dirty, end)) =
            self.cleanable(now_ms, last_stable_offset, horizon_pass)
        else {
            return Ok(None);
        };
        if ratio < self.config.min_cleanable_dirty_ratio && !horizon_pass {
            return Ok(None);
        }
        self.last_clean_pass_ms = now_ms;
        let bases: Vec<(i64, i64)> = self
            .segments
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .windows(2)
            .take_while(|w| w[1] <= end)
            .map(|w| (w[0], w[1]))
            .collect();
        let mut segments = Vec::with_capacity(bases.len());
        for (base, upper) in bases {
            // Tombstone horizons are judged by the state before this pass.
            let drop_tombstones = self
                .cleaner_state
                .first_cleaned_ms
                .get(&base)
                .is_some_and(|&t| now_ms.saturating_sub(t) >= self.config.delete_retention_ms);
            let r = self.segments[&base].reader(self.disk.as_ref());
            let reader = self.note_io(r)?;
            segments.push(Snapshot {
                upper,
                drop_tombstones,
                reader,
            });
        }
        Ok(Some(CleanTask {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            generation: self.layout_generation,
            now_ms,
            ratio,
            first_dirty,
            end,
            segments,
            latest: None,
            aborted: self.aborted.overlapping(self.log_start_offset, end),
            retained: TxnRetained::new(),
            next: 0,
            results: Vec::new(),
            failed: None,
        }))
    }

    /// Phase 3 (under the lock, short): check the log still holds the
    /// segments the task read, then swap the cleaned ones in (crash-safe
    /// protocol of the module doc). None when the log changed under the
    /// task (truncation, another swap): its files are removed and a later
    /// pass starts over. Segments retention deleted meanwhile are skipped.
    pub fn finish_clean(&mut self, mut task: CleanTask) -> Result<Option<CleanOutcome>, LogError> {
        if self.offline.is_some() || task.generation != self.layout_generation {
            task.abandon();
            self.ensure_online()?;
            return Ok(None);
        }
        if let Some(e) = task.failed.take() {
            // A read or write of the task failed. If retention deleted a
            // segment it was reading, that explains it; otherwise the disk
            // failed and the log goes offline as for any I/O failure.
            let vanished = task
                .results_bases()
                .chain(task.segments.iter().map(|s| s.reader.base_offset()))
                .any(|b| !self.unchanged(b, &task));
            task.abandon();
            if vanished {
                return Ok(None);
            }
            return self.note_io(Err(e));
        }
        let r = self.swap_in(&mut task);
        let r = self.note_io(r);
        task.abandon();
        r.map(Some)
    }

    /// Whether closed segment `base` is still the one `task` read.
    fn unchanged(&self, base: i64, task: &CleanTask) -> bool {
        let Some(snap) = task.snapshot(base) else {
            return false;
        };
        let active = self.active().base_offset();
        self.segments
            .get(&base)
            .is_some_and(|seg| base != active && seg.size() == snap.reader.size())
    }

    fn swap_in(&mut self, task: &mut CleanTask) -> Result<CleanOutcome, LogError> {
        self.layout_generation += 1;
        let covered = task.covered();
        let results = std::mem::take(&mut task.results);
        // Every examined segment is listed as cleaned (durably, before any
        // swap: see the module doc).
        self.first_cleaned_last_pass.clear();
        for (base, _) in &results {
            if !self.cleaner_state.first_cleaned_ms.contains_key(base) {
                self.cleaner_state
                    .first_cleaned_ms
                    .insert(*base, task.now_ms);
                self.first_cleaned_last_pass.insert(*base);
            }
        }
        self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
        let mut out = CleanOutcome {
            dirty_ratio: task.ratio,
            ..Default::default()
        };
        for (base, result) in results {
            if !self.unchanged(base, task) {
                // Retention deleted it meanwhile (its .cleaned goes in abandon).
                continue;
            }
            out.segments_examined += 1;
            out.bytes_read += self.segments[&base].size();
            match result {
                SegmentResult::Unchanged => out.bytes_written += self.segments[&base].size(),
                SegmentResult::Emptied { removed } => {
                    out.records_removed += removed;
                    out.segments_rewritten += 1;
                    self.drop_emptied_segment(base)?;
                }
                SegmentResult::Cleaned { removed, written } => {
                    out.records_removed += removed;
                    out.segments_rewritten += 1;
                    out.bytes_written += written;
                    self.swap_segment(base, written)?;
                    self.prune_aborted_index(base)?;
                }
            }
        }
        let segments = &self.segments;
        self.cleaner_state
            .first_cleaned_ms
            .retain(|b, _| segments.contains_key(b));
        self.cleaner_state.first_dirty_offset = covered.max(self.cleaner_state.first_dirty_offset);
        self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
        out.first_dirty_offset = self.cleaner_state.first_dirty_offset;
        tracing::info!(
            dir = %self.dir.display(),
            segments = out.segments_rewritten,
            removed = out.records_removed,
            "cleaned log"
        );
        Ok(out)
    }

    /// Steps 2-4 of the swap for segment `base`, whose `.cleaned` file is
    /// complete and fsynced (`written` bytes).
    fn swap_segment(&mut self, base: i64, written: u64) -> Result<(), LogError> {
        let disk = self.disk.clone();
        // Commit point.
        disk.rename(
            &self.dir.join(segment::file_name(base, "log.cleaned")),
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
        Ok(())
    }

    /// What cleaning does to one batch. Kafka's rules for transactions:
    /// an aborted transaction's records go; a committed one's are cleaned
    /// like any others; a marker stays while a record of its transaction
    /// does, and then until its segment's tombstone horizon, as a
    /// tombstone would.
    fn batch_fate(
        h: &BatchHeader,
        bytes: &[u8],
        ctx: &PassContext<'_>,
        retained: &mut TxnRetained,
        drop_tombstones: bool,
    ) -> Result<Fate, LogError> {
        if h.is_control() {
            let data_left = retained.insert(h.producer_id, false).unwrap_or(false);
            return Ok(if data_left || !drop_tombstones {
                Fate::Keep
            } else {
                Fate::Drop(1)
            });
        }
        if txn::is_aborted(h, ctx.aborted) {
            return Ok(Fate::Drop(h.record_count.max(0) as u64));
        }
        let fate = Self::record_fate(h, bytes, ctx, drop_tombstones)?;
        if h.is_transactional() && !matches!(fate, Fate::Drop(_)) {
            retained.insert(h.producer_id, true);
        }
        Ok(fate)
    }

    /// What cleaning does to the records of a data batch.
    fn record_fate(
        h: &BatchHeader,
        bytes: &[u8],
        ctx: &PassContext<'_>,
        drop_tombstones: bool,
    ) -> Result<Fate, LogError> {
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

    /// Closed segment `base` lost every record. A segment after the first
    /// is deleted (an empty one costs three files, forever, in a compacted
    /// log); the first is swapped for an empty file, so it keeps its base.
    /// Either way the log start offset stays where it is: the cleaner never
    /// moves it (Kafka's never does; only retention and DeleteRecords do),
    /// so a consumer whose position lies in the emptied range reads on from
    /// the next surviving batch instead of getting OFFSET_OUT_OF_RANGE.
    ///
    /// Why keep the first segment rather than delete it and leave the log
    /// start below the first base: everything that reads the layout (read,
    /// truncation, the start recovered at open with or without its
    /// checkpoint, retention, the epoch cache) relies on the first segment
    /// starting at or below the log start, as Kafka's does (its cleaner
    /// gives a cleaned group the first segment's base, empty or not, and
    /// its loader takes the start up to the first base). The cost is one
    /// empty segment at most, and only at the front.
    ///
    /// Crash story: the first is replaced through the usual swap (an empty
    /// `.cleaned`, fsynced, then the renames), so a crash leaves the old
    /// segment or the empty one; a deletion goes indexes first, and a crash
    /// part way leaves the old, whole segment, which the next pass cleans
    /// again.
    fn drop_emptied_segment(&mut self, base: i64) -> Result<(), LogError> {
        let next = self
            .segments
            .range(base + 1..)
            .next()
            .map(|(b, _)| *b)
            .expect("cleaner invariant: a cleaned segment is never the active one");
        if self.segments.keys().next() == Some(&base) {
            let path = self.dir.join(segment::file_name(base, "log.cleaned"));
            let file = self.disk.open(&path, OpenMode::CREATE_NEW_EMPTY)?;
            file.sync_data()?;
            drop(file);
            self.swap_segment(base, 0)?;
            return self.prune_aborted_index(base);
        }
        let seg = self.segments.remove(&base).expect("segment being cleaned");
        seg.delete_files(self.disk.as_ref(), &self.dir)?;
        self.aborted.forget_segment(base, next);
        Ok(())
    }
}

/// One closed segment as a [`CleanTask`] saw it.
struct Snapshot {
    /// The next segment's base: every offset here is below it.
    upper: i64,
    drop_tombstones: bool,
    reader: SegmentReader,
}

/// What phase 2 made of one segment.
enum SegmentResult {
    /// Nothing to drop: the segment stays as it is.
    Unchanged,
    /// Every record dropped: the segment is deleted at the swap.
    Emptied { removed: u64 },
    /// `<base>.log.cleaned` holds the survivors, fsynced.
    Cleaned { removed: u64, written: u64 },
}

/// A cleaning pass in progress, holding no borrow of the log: phase 2
/// ([`CleanTask::step`]: the offset map, then one cleaned file per segment)
/// reads the closed segments on handles of its own and writes only
/// `<base>.log.cleaned` files, which nothing else reads or writes, so it
/// needs no lock. Appends, fetches and retention go on meanwhile;
/// [`PartitionLog::finish_clean`] detects what changed. Dropping a task
/// without finishing it leaves `.cleaned` files that the next open removes;
/// `abandon` removes them at once.
pub struct CleanTask {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// The log's layout generation when the task began.
    generation: u64,
    now_ms: i64,
    ratio: f64,
    first_dirty: i64,
    /// The cleanable end; the map may cover less (see `covered`).
    end: i64,
    /// Closed segments below `end`, oldest first; cut to those the offset
    /// map covers once it is built.
    segments: Vec<Snapshot>,
    /// Key -> latest offset in the dirty range, and the end it covers.
    latest: Option<(HashMap<Bytes, i64>, i64)>,
    /// Aborted transactions below `end`, by first offset.
    aborted: Vec<AbortedTxn>,
    /// Carried from segment to segment (see [`TxnRetained`]).
    retained: TxnRetained,
    /// Index into `segments` of the next one to clean.
    next: usize,
    results: Vec<(i64, SegmentResult)>,
    failed: Option<LogError>,
}

impl CleanTask {
    /// Do the next piece of work: the offset map first, then one segment
    /// per call. Returns false once everything is built (or a step failed:
    /// `finish_clean` reports it). Call between steps what should not wait
    /// (the broker yields to other tasks).
    pub fn step(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let r = self.step_inner();
        match r {
            Ok(more) => more,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    /// Every step at once.
    pub fn build(&mut self) {
        while self.step() {}
    }

    fn step_inner(&mut self) -> Result<bool, LogError> {
        if self.latest.is_none() {
            let (map, covered) = self.build_offset_map()?;
            self.segments.retain(|s| s.upper <= covered);
            self.latest = Some((map, covered));
            return Ok(!self.segments.is_empty());
        }
        let Some(snap) = self.segments.get(self.next) else {
            return Ok(false);
        };
        let mut retained = std::mem::take(&mut self.retained);
        let result = self.clean_segment(snap, &mut retained);
        self.retained = retained;
        let result = result?;
        self.results.push((snap.reader.base_offset(), result));
        self.next += 1;
        Ok(self.next < self.segments.len())
    }

    /// The end of the range the pass cleaned up to (its new first dirty offset).
    fn covered(&self) -> i64 {
        self.latest.as_ref().map_or(self.first_dirty, |(_, c)| *c)
    }

    fn snapshot(&self, base: i64) -> Option<&Snapshot> {
        self.segments
            .iter()
            .find(|s| s.reader.base_offset() == base)
    }

    fn results_bases(&self) -> impl Iterator<Item = i64> + '_ {
        self.results.iter().map(|(b, _)| *b)
    }

    /// Remove whatever `.cleaned` files the task left (best effort: the
    /// next open removes any that remain).
    fn abandon(&mut self) {
        for s in &self.segments {
            let path = self
                .dir
                .join(segment::file_name(s.reader.base_offset(), "log.cleaned"));
            if self.disk.exists(&path) {
                if let Err(e) = self.disk.remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing a cleaner file failed");
                }
            }
        }
        self.segments.clear();
        self.results.clear();
    }

    /// Key -> offset of its latest record in `[first_dirty, end)`, and the
    /// end actually covered (lower when the map would outgrow its limit).
    fn build_offset_map(&self) -> Result<(HashMap<Bytes, i64>, i64), LogError> {
        let first_dirty = self.first_dirty;
        let mut map: HashMap<Bytes, i64> = HashMap::new();
        let mut covered = first_dirty;
        for snap in &self.segments {
            if snap.upper <= first_dirty {
                continue;
            }
            if snap.upper > self.end {
                break;
            }
            if map.len() > CLEANER_KEYS_MAX && covered > first_dirty {
                break;
            }
            snap.reader.for_each_batch(|_, h, bytes| {
                let skip = h.is_control() || txn::is_aborted(h, &self.aborted);
                if skip || h.last_offset() < first_dirty {
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
            covered = snap.upper;
        }
        Ok((map, covered))
    }

    /// Write the survivors of one segment to `<base>.log.cleaned` and fsync
    /// it, unless nothing or everything goes.
    fn clean_segment(
        &self,
        snap: &Snapshot,
        retained: &mut TxnRetained,
    ) -> Result<SegmentResult, LogError> {
        let (latest, _) = self.latest.as_ref().expect("offset map built first");
        let ctx = PassContext {
            latest,
            aborted: &self.aborted,
        };
        let base = snap.reader.base_offset();
        let cleaned_path = self.dir.join(segment::file_name(base, "log.cleaned"));
        let mut file = None;
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0u64;
        let mut removed = 0u64;
        let disk = self.disk.as_ref();
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
        snap.reader.for_each_batch(|_, h, bytes| {
            match PartitionLog::batch_fate(h, &bytes, &ctx, retained, snap.drop_tombstones)? {
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
        if removed == 0 || (written == 0 && pending.is_empty()) {
            if file.is_some() {
                drop(file);
                disk.remove_file(&cleaned_path)?;
            }
            return Ok(if removed == 0 {
                SegmentResult::Unchanged
            } else {
                // Nothing survives: delete the segment rather than keep an
                // empty one (each costs three files, forever, in a compacted log).
                SegmentResult::Emptied { removed }
            });
        }
        flush(&mut pending, &mut file, &mut written)?;
        let f = file.expect("flushed above");
        f.sync_data()?;
        Ok(SegmentResult::Cleaned { removed, written })
    }
}
