//! One partition's log: a directory of segments holding RecordBatch v2 bytes
//! exactly as producers sent them (base offset and leader epoch patched in
//! place), with a sparse offset index and a time index per segment.
//!
//! Layers: [`PartitionLog`] (this file: validation, offsets, roll, flush
//! policy, recovery orchestration) -> `segment::Segment` (one `.log` file
//! and its indexes) -> `offset_index` / `time_index`; `producer_state` keeps
//! idempotent-producer state and its snapshots; `batch` knows the
//! RecordBatch v2 header.
//!
//! Log management: `retention` (cleanup.policy=delete, DeleteRecords: the
//! log start offset moves and whole segments below it go), `cleaner`
//! (cleanup.policy=compact: latest record per key, crash-safe segment swap),
//! `validate` (compressed batches checked record by record on append;
//! compression.type conversion), `checkpoint` (the durable log start offset
//! and cleaner progress).
//!
//! Directory layout: `<base>.log`, `<base>.index`, `<base>.timeindex` per
//! segment (base = 20-digit zero-padded base offset), `<offset>.snapshot`
//! producer-state snapshots, `log-start-offset.checkpoint`,
//! `cleaner-offset.checkpoint` and `leader-epoch-checkpoint`
//! (epoch_cache.rs), transient `<base>.log.cleaned` /
//! `<base>.log.swap` during a cleaner swap, and `.weir_clean_shutdown` while
//! the log is closed cleanly.
//!
//! Invariants:
//! - `log/` never reads a clock: time comes in as `now_ms` parameters.
//! - `log/` does all I/O through `env::Disk`.
//! - Offsets only grow; a stored batch never changes after `append` returns,
//!   except that the cleaner may drop records from closed segments (every
//!   survivor keeps its offset).
//! - The log start offset only grows and is durable before anything below it
//!   is deleted; nothing below it is ever served. Only retention and
//!   DeleteRecords (and a follower starting over at its leader's start)
//!   move it, never the cleaner; the first segment starts at or below it.
//! - Appends only write the last (active) segment; every other segment was
//!   fsynced (log and indexes) when it stopped being active, and is only
//!   ever replaced whole by the cleaner's crash-safe swap (or deleted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::env::disk::OpenMode;
use crate::env::Disk;

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod epoch_cache;
pub mod maintenance;
pub mod offset_index;
pub mod producer_state;
pub mod replication;
pub mod retention;
pub mod segment;
pub mod time_index;
pub mod topic_config;
pub mod txn;
pub mod validate;

use batch::BatchHeader;
use checkpoint::CleanerState;
pub use cleaner::{CleanOutcome, CleanTask};
use epoch_cache::LeaderEpochCache;
use producer_state::{ProducerEntry, ProducerStateManager, SequenceCheck};
pub use retention::RetentionOutcome;
use segment::Segment;
pub use topic_config::{ConfigError, MaintenanceConfig};

/// Present in a log directory only between a clean `close` and the next
/// `open`: its presence lets `open` trust the active segment without a scan.
pub const CLEAN_SHUTDOWN_FILE: &str = ".weir_clean_shutdown";

/// Per-partition settings, Kafka's topic configs with their broker defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// segment.bytes (default 1 GiB): roll when the active segment would exceed it.
    pub segment_bytes: u64,
    /// segment.ms (default 7 days): roll when the active segment is older.
    pub segment_ms: i64,
    /// index.interval.bytes (default 4096): bytes between offset-index entries.
    pub index_interval_bytes: u32,
    /// segment.index.bytes (default 10 MiB): offset/time index capacity; roll when full.
    pub segment_index_bytes: u32,
    /// flush.messages (default: never, i.e. u64::MAX): fsync after this many records.
    pub flush_messages: u64,
    /// flush.ms (default: never, i.e. i64::MAX): fsync when the oldest unflushed write is older.
    pub flush_ms: i64,
    /// max.message.bytes (default 1048588): largest batch accepted.
    pub max_message_bytes: u32,
    /// message.timestamp.type: false = CreateTime (default), true = LogAppendTime.
    pub log_append_time: bool,
    /// retention.ms (default 7 days; -1 = unlimited): closed segments whose
    /// newest record is older are deleted (cleanup.policy delete).
    pub retention_ms: i64,
    /// retention.bytes (default -1 = unlimited): closed segments are deleted
    /// from the oldest while the log exceeds this by at least a whole segment.
    pub retention_bytes: i64,
    /// cleanup.policy (default delete).
    pub cleanup_policy: CleanupPolicy,
    /// delete.retention.ms (default 1 day): how long a tombstone survives
    /// after the cleaner first rewrote its segment.
    pub delete_retention_ms: i64,
    /// min.cleanable.dirty.ratio (default 0.5): clean when dirty bytes /
    /// cleanable bytes reach it.
    pub min_cleanable_dirty_ratio: f64,
    /// min.compaction.lag.ms (default 0): a segment is cleanable only once its
    /// newest record is at least this old.
    pub min_compaction_lag_ms: i64,
    /// compression.type (default producer): the codec batches are stored with.
    pub compression_type: CompressionType,
}

/// cleanup.policy: `delete`, `compact` or both (`compact,delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Parse Kafka's comma-separated list (`delete`, `compact`, `compact,delete`).
    pub fn parse(s: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return None,
            }
        }
        Some(p)
    }
}

impl std::fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

/// compression.type: keep the producer's codec, or store with this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    pub fn parse(s: &str) -> Option<CompressionType> {
        Some(match s {
            "producer" => CompressionType::Producer,
            "uncompressed" | "none" => CompressionType::Uncompressed,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => return None,
        })
    }

    /// The codec id (batch attribute bits 0-2), None for `producer`.
    pub fn codec(self) -> Option<i16> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }
}

impl std::fmt::Display for CompressionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        })
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            compression_type: CompressionType::Producer,
        }
    }
}

/// Why an append or read failed; each maps to the Kafka error code a client expects.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: u32 },
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("transaction marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    #[error("unknown producer id {0}")]
    UnknownProducerId(i64),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

impl LogError {
    /// The Kafka protocol error code for this failure.
    pub fn error_code(&self) -> i16 {
        match self {
            LogError::CorruptMessage(_) => 2,
            LogError::RecordTooLarge { .. } => 10,
            LogError::InvalidRecord(_) => 87,
            LogError::OffsetOutOfRange { .. } => 1,
            LogError::OutOfOrderSequence { .. } => 45,
            LogError::ProducerFenced { .. } => 47, // INVALID_PRODUCER_EPOCH
            LogError::CoordinatorFenced { .. } => 52, // TRANSACTION_COORDINATOR_FENCED
            LogError::InvalidTxnState(_) => 48,
            LogError::UnknownProducerId(_) => 59,
            LogError::Io(_) => 56, // KAFKA_STORAGE_ERROR
        }
    }
}

/// What an append stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended (or of the original, for a duplicate).
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker time stamped on the batch under LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// True when an idempotent producer retried a batch already stored: nothing
    /// was written and the offsets are those of the stored copy.
    pub duplicate: bool,
}

/// Bytes for a fetch: whole batches, starting with the batch holding the
/// requested offset.
#[derive(Clone, Debug, Default)]
pub struct FetchSlice {
    pub records: Bytes,
}

/// A partition's log on disk.
///
/// Delegates storage to its segments (a `BTreeMap` from base offset, the last
/// one active) and keeps idempotent-producer state. Not internally
/// synchronized: the broker holds it in a lock; `read` takes `&self`.
pub struct PartitionLog {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    /// First offset readers may see: the first segment's base, or above it
    /// after retention or DeleteRecords; durable in checkpoint::LOG_START_FILE.
    /// The cleaner never moves it (an offset whose records it dropped reads
    /// as the next surviving batch), nor the first segment's base.
    log_start_offset: i64,
    /// The cleaner's durable progress (cleanup.policy compact).
    cleaner_state: CleanerState,
    producers: ProducerStateManager,
    /// Records appended since the last fsync (flush.messages).
    unflushed_records: u64,
    /// now_ms of the oldest append not yet fsynced (flush.ms).
    first_unflushed_ms: Option<i64>,
    /// Bytes cut from segment tails by the recovery at open.
    recovery_truncated_bytes: u64,
    /// Set by the first failed write or fsync. After it the page cache may
    /// have dropped data the log believes it holds (fsyncgate), so every
    /// further operation fails until the log is reopened and recovered,
    /// as Kafka takes a log directory offline.
    offline: Option<String>,
    /// Bumped whenever segments are replaced other than by appends and
    /// retention (truncation, restart-empty, a cleaner swap), so a cleaner
    /// pass that ran without the lock knows its snapshot is stale.
    layout_generation: u64,
    /// now_ms of the last cleaner pass begun (i64::MIN since open): a
    /// tombstone horizon passed since then calls for a pass of its own.
    last_clean_pass_ms: i64,
    /// Segments whose first clean was the last pass: their tombstones were
    /// not judged by it (a horizon counts from the first clean).
    first_cleaned_last_pass: std::collections::BTreeSet<i64>,
    /// Aborted transactions, for read_committed fetches and the cleaner.
    aborted: txn::AbortedIndex,
    /// Leader epoch -> first offset (epoch_cache.rs), kept in step with the
    /// log: assigned on append, cut on truncation and start moves.
    epochs: LeaderEpochCache,
}

/// A batch that passed validation, staged for the write.
struct StagedBatch {
    range: std::ops::Range<usize>,
    header: BatchHeader,
}

impl PartitionLog {
    /// Open (or create) the log in `dir`, recovering after a crash: validate the
    /// active segment's tail, truncate a torn or corrupt tail, rebuild missing
    /// or damaged indexes, rebuild idempotent-producer state.
    ///
    /// Without the clean-shutdown marker the last segment is scanned in full
    /// (header, length, CRC, increasing offsets) and cut at the first bad
    /// byte; earlier segments were fsynced at roll, so only their indexes and
    /// tails are checked (a failed check falls back to the same full scan).
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        disk.create_dir_all(&dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = disk.exists(&marker);
        // A cleaner swap or a segment deletion cut short by a crash is
        // finished or undone before anything is read (see cleaner.rs).
        cleaner::complete_interrupted_swaps(disk.as_ref(), &dir)?;
        let cleaner_state = CleanerState::read(disk.as_ref(), &dir)?;
        let mut bases = Vec::new();
        for name in disk.list_dir(&dir)? {
            if name.ends_with(".tmp") {
                // A snapshot or checkpoint write cut short by a crash: never
                // renamed in.
                disk.remove_file(&dir.join(&name))?;
                continue;
            }
            if let Some((base, "log")) = segment::parse_file_name(&name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut truncated_total = 0;
        let interval = config.index_interval_bytes;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            // Offsets are contiguous in a segment the cleaner never rewrote
            // and that is the active one; everywhere else they may have gaps
            // (see Segment::recover for what still catches a bad baseOffset).
            let gaps = if active {
                cleaner_state.may_have_gaps(base)
            } else {
                true
            };
            let (seg, truncated) = if active && !clean {
                Segment::recover(disk.as_ref(), &dir, base, interval, now_ms, gaps)?
            } else {
                Segment::open(disk.as_ref(), &dir, base, interval, now_ms, gaps)?
            };
            truncated_total += truncated;
            if let Some((_, prev)) = segments.last_key_value() {
                let prev: &Segment = prev;
                if base < prev.next_offset() {
                    return Err(LogError::CorruptMessage(format!(
                        "segment {base} overlaps the previous one ending at {}",
                        prev.next_offset()
                    )));
                }
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(disk.as_ref(), &dir, 0)?);
        }
        let first_base = *segments.keys().next().expect("inserted above");
        let log_start_offset = checkpoint::read_log_start(disk.as_ref(), &dir)?
            .unwrap_or(first_base)
            .max(first_base);
        let mut log = PartitionLog {
            disk,
            dir,
            config,
            segments,
            log_start_offset,
            cleaner_state,
            producers: ProducerStateManager::new(),
            unflushed_records: 0,
            first_unflushed_ms: None,
            recovery_truncated_bytes: truncated_total,
            offline: None,
            layout_generation: 0,
            last_clean_pass_ms: i64::MIN,
            first_cleaned_last_pass: Default::default(),
            aborted: txn::AbortedIndex::default(),
            epochs: LeaderEpochCache::empty(Path::new("")),
        };
        if log.log_start_offset > log.log_end_offset() {
            // The log start was recorded durably but the records up to it
            // were not (lost unflushed tail): nothing below it may be served
            // again, so start over, empty, at the recorded start, as Kafka does.
            log.restart_empty_at(log.log_start_offset)?;
        }
        // Finish a retention deletion a crash interrupted.
        log.delete_segments_below_start()?;
        let bases: Vec<i64> = log.segments.keys().copied().collect();
        log.aborted = txn::AbortedIndex::load(log.disk.as_ref(), &log.dir, &bases)?;
        log.rebuild_producer_state()?;
        // A crash between a cleaner swap that removed markers and the
        // rewrite of that segment's index leaves entries without markers.
        for base in bases {
            log.prune_aborted_index(base)?;
        }
        log.load_epoch_cache()?;
        if clean {
            // From here on a crash must trigger recovery again.
            log.disk.remove_file(&marker)?;
        }
        Ok(log)
    }

    /// Delete every segment and start an empty one at `offset`.
    fn restart_empty_at(&mut self, offset: i64) -> Result<(), LogError> {
        tracing::warn!(dir = %self.dir.display(), offset, "log end below log start: restarting the log empty");
        self.layout_generation += 1;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let seg = Segment::create(self.disk.as_ref(), &self.dir, offset)?;
        for base in bases {
            if base == offset {
                continue; // replaced (emptied) by create above
            }
            let old = self.segments.remove(&base).expect("listed above");
            old.delete_files(self.disk.as_ref(), &self.dir)?;
        }
        self.segments.insert(offset, seg);
        self.aborted.clear();
        self.cleaner_state = CleanerState {
            first_dirty_offset: offset,
            ..Default::default()
        };
        self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
        self.epochs.clear(self.disk.as_ref())?;
        Ok(())
    }

    /// Load the leader epoch cache, or rebuild it from the batch headers
    /// when its file is missing or damaged; then drop what the recovered
    /// log no longer holds (entries may run ahead of lost unflushed data).
    fn load_epoch_cache(&mut self) -> Result<(), LogError> {
        let disk = self.disk.clone();
        let loaded = LeaderEpochCache::load(disk.as_ref(), &self.dir)?;
        let mut cache = match loaded {
            Some(c) => c,
            None => {
                let mut c = LeaderEpochCache::empty(&self.dir);
                let start = self.log_start_offset;
                let mut seen: Vec<(i32, i64)> = Vec::new();
                for seg in self.segments.values() {
                    seg.for_each_header(start, |h| {
                        if seen
                            .last()
                            .is_none_or(|&(e, _)| h.partition_leader_epoch > e)
                        {
                            seen.push((h.partition_leader_epoch, h.base_offset.max(start)));
                        }
                        Ok(())
                    })?;
                }
                for (e, o) in seen {
                    c.assign(disk.as_ref(), e, o)?;
                }
                c
            }
        };
        cache.truncate_from_end(disk.as_ref(), self.log_end_offset())?;
        cache.truncate_from_start(disk.as_ref(), self.log_start_offset)?;
        self.epochs = cache;
        Ok(())
    }

    /// Load the newest usable producer snapshot and replay the batch headers
    /// stored after it. Aborted transactions whose markers lie in the
    /// replayed range are cut from the index first and recorded again by
    /// the replay (a marker is read whole: its header does not say whether
    /// it commits or aborts).
    fn rebuild_producer_state(&mut self) -> Result<(), LogError> {
        let end = self.log_end_offset();
        let (mut state, from) =
            ProducerStateManager::load_snapshot(self.disk.as_ref(), &self.dir, end)?;
        let from = from.unwrap_or_else(|| self.log_start_offset());
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        self.aborted
            .truncate_from(self.disk.as_ref(), &self.dir, &bases, from)?;
        let mut aborted = Vec::new();
        for seg in self.segments.values() {
            if seg.next_offset() <= from {
                continue;
            }
            seg.for_each_header_at(from, |pos, h| {
                if h.base_offset < from {
                    return Ok(());
                }
                if !h.is_control() {
                    state.replay(h);
                    return Ok(());
                }
                // Markers are rare: read the record that says commit or abort.
                let marker = txn::parse_marker(&seg.read_batch(pos, h)?)?;
                if let Some(first) = state.replay_marker(h, marker) {
                    if !marker.commit {
                        aborted.push((seg.base_offset(), h.producer_id, first, h.base_offset));
                    }
                }
                Ok(())
            })?;
        }
        self.producers = state;
        for (base, producer_id, first_offset, last_offset) in aborted {
            self.record_abort(base, producer_id, first_offset, last_offset)?;
        }
        Ok(())
    }

    /// Forget the aborted transactions of segment `base` whose ABORT marker
    /// is no longer there (the cleaner removed it once the transaction's
    /// records were gone and its horizon passed). A reader that meets such
    /// an entry without its marker would treat the producer's later
    /// transactions as aborted too, as Kafka's consumer does.
    pub(crate) fn prune_aborted_index(&mut self, base: i64) -> Result<(), LogError> {
        let upper = self
            .segments
            .range(base + 1..)
            .next()
            .map_or(i64::MAX, |(b, _)| *b);
        let Some(seg) = self.segments.get(&base) else {
            return Ok(());
        };
        let mut gone = Vec::new();
        for t in self.aborted.in_range(base, upper) {
            let marker_there = match seg.find_batch(t.last_offset)? {
                Some((_, h)) => {
                    h.base_offset == t.last_offset
                        && h.is_control()
                        && h.producer_id == t.producer_id
                }
                None => false,
            };
            if !marker_there {
                gone.push(t.last_offset);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        self.aborted
            .remove_and_rewrite(self.disk.as_ref(), &self.dir, base, upper, &gone)
    }

    /// Index an aborted transaction whose ABORT marker is at `last_offset`
    /// in segment `base`.
    fn record_abort(
        &mut self,
        base: i64,
        producer_id: i64,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<(), LogError> {
        let lso = self
            .producers
            .first_unstable_offset()
            .unwrap_or(last_offset + 1);
        let t = txn::AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: lso,
        };
        self.aborted.append(self.disk.as_ref(), &self.dir, base, t)
    }

    /// First offset of the earliest transaction still open in this log: a
    /// read_committed reader stops below it (and below the high watermark).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// The aborted transactions a read of `[from, upper)` may meet (what
    /// Fetch returns as aborted_transactions), by first offset.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<txn::AbortedTxn> {
        self.aborted.overlapping(from, upper)
    }

    /// Fail if an earlier I/O error took the log offline.
    fn ensure_online(&self) -> Result<(), LogError> {
        match &self.offline {
            None => Ok(()),
            Some(why) => Err(LogError::Io(std::io::Error::other(format!(
                "log {} is offline after an I/O failure ({why}); reopen it to recover",
                self.dir.display()
            )))),
        }
    }

    /// Take the log offline if `r` is an I/O failure.
    fn note_io<T>(&mut self, r: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(LogError::Io(e)) = &r {
            tracing::error!(dir = %self.dir.display(), error = %e, "log I/O failure: taking the log offline");
            self.offline = Some(e.to_string());
        }
        r
    }

    /// Whether an I/O failure took the log offline.
    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("log invariant: there is always an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("log invariant: there is always an active segment")
    }

    /// Append one or more RecordBatch v2 batches as received from a producer.
    /// Validates each batch (magic 2, length, CRC32C, size limit, idempotent
    /// sequence), assigns offsets in place (base offset, leader epoch), and
    /// writes them; rolls segments by size and age; flushes by flush.messages /
    /// flush.ms. Validation happens before anything is written: on error,
    /// nothing is stored.
    ///
    /// If any batch is a retry of a stored idempotent batch, nothing is
    /// written and the stored batch's offsets come back with `duplicate`
    /// (as Kafka does; producers send one batch per partition per request).
    /// Control batches are accepted: rejecting them from clients is the
    /// produce handler's job.
    ///
    /// Compressed batches are decompressed and checked record by record
    /// (validate.rs); uncompressed ones only by header and CRC. Under a
    /// compression.type naming a codec, batches in another codec are
    /// re-encoded to it first (offsets and producer fields preserved).
    pub fn append(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.ensure_online()?;
        if let Some(codec) = self.config.compression_type.codec() {
            if let Some(mut converted) = self.maybe_convert(batches, codec)? {
                return self.append_validated(&mut converted, leader_epoch, now_ms);
            }
        }
        self.append_validated(batches, leader_epoch, now_ms)
    }

    /// `batches` re-encoded to `codec`, or None if every batch already uses it.
    fn maybe_convert(&self, batches: &[u8], codec: i16) -> Result<Option<Vec<u8>>, LogError> {
        let split = batch::split_batches(batches)?;
        let mut out: Option<Vec<u8>> = None;
        for (i, (range, h)) in split.iter().enumerate() {
            h.validate_fields()?;
            let b = &batches[range.clone()];
            match validate::maybe_recompress(b, h, codec)? {
                Some(new) => {
                    let buf = out.get_or_insert_with(|| {
                        let mut v = Vec::with_capacity(batches.len());
                        for (r, _) in &split[..i] {
                            v.extend_from_slice(&batches[r.clone()]);
                        }
                        v
                    });
                    buf.extend_from_slice(&new);
                }
                None => {
                    if let Some(buf) = out.as_mut() {
                        buf.extend_from_slice(b);
                    }
                }
            }
        }
        Ok(out)
    }

    fn append_validated(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        // 1. Validate everything, staging offsets and producer state.
        let split = batch::split_batches(batches)?;
        if split.is_empty() {
            return Err(LogError::InvalidRecord("no record batches".into()));
        }
        if batches.len() > i32::MAX as usize {
            return Err(LogError::RecordTooLarge {
                size: batches.len(),
                max: self.config.max_message_bytes,
            });
        }
        let mut next = self.log_end_offset();
        let mut staged_producers: BTreeMap<i64, ProducerEntry> = BTreeMap::new();
        let mut staged = Vec::with_capacity(split.len());
        let mut records = 0u64;
        for (range, mut h) in split {
            if range.len() > self.config.max_message_bytes as usize {
                return Err(LogError::RecordTooLarge {
                    size: range.len(),
                    max: self.config.max_message_bytes,
                });
            }
            h.validate_fields()?;
            if h.is_control() {
                // Markers come from the transaction coordinator through
                // append_marker, never from a producer.
                return Err(LogError::InvalidRecord(
                    "control batches are written by the broker, not produced".into(),
                ));
            }
            let bytes = &batches[range.clone()];
            if h.compression() != 0 {
                let records = validate::validate_compressed(bytes, &h)?;
                if self.config.cleanup_policy.compact {
                    validate::require_keys(&h, &records)?;
                }
            } else if self.config.cleanup_policy.compact {
                // Only compacted topics pay for a record walk here.
                validate::require_keys(&h, &batch::decode_records(bytes)?)?;
            }
            h.base_offset = next;
            if h.has_producer_id() {
                let current = staged_producers
                    .get(&h.producer_id)
                    .or_else(|| self.producers.get(h.producer_id));
                match producer_state::check_batch(current, &h)? {
                    SequenceCheck::Duplicate(m) => {
                        return Ok(AppendInfo {
                            first_offset: m.first_offset,
                            last_offset: m.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: self.log_start_offset(),
                            duplicate: true,
                        });
                    }
                    SequenceCheck::Append => {
                        let mut entry = current.cloned().unwrap_or_default();
                        producer_state::apply_batch(&mut entry, &h);
                        staged_producers.insert(h.producer_id, entry);
                    }
                }
            }
            next = h.next_offset();
            records += h.record_count as u64;
            staged.push(StagedBatch { range, header: h });
        }
        let first_offset = staged[0].header.base_offset;
        let last_offset = next - 1;

        // 2. Roll if this append does not belong in the active segment.
        if self.should_roll(batches.len() as u64, staged.len(), last_offset, now_ms) {
            let r = self.roll(now_ms);
            self.note_io(r)?;
        }

        // 3. Assign offsets in place; stamp LogAppendTime.
        let mut headers = Vec::with_capacity(staged.len());
        for s in &staged {
            let b = &mut batches[s.range.clone()];
            batch::set_base_offset(b, s.header.base_offset);
            batch::set_partition_leader_epoch(b, leader_epoch);
            if self.config.log_append_time {
                batch::set_log_append_time(b, now_ms);
            }
            headers.push((s.range.clone(), BatchHeader::parse(b)?));
        }

        // 4. Record the epoch's start (durable before the batches, so a
        // crash leaves the cache ahead of the log, which open trims), write,
        // then commit producer state.
        let r = self
            .epochs
            .assign(self.disk.as_ref(), leader_epoch, first_offset);
        self.note_io(r)?;
        let interval = self.config.index_interval_bytes;
        let r = self
            .active_mut()
            .append(batches, &headers, interval, now_ms);
        self.note_io(r)?;
        self.producers.commit(staged_producers);
        assert!(
            self.log_end_offset() == last_offset + 1,
            "log invariant: log end follows the last appended offset"
        );

        // 5. Flush policy.
        self.note_appended(records, now_ms)?;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time_ms: if self.config.log_append_time {
                now_ms
            } else {
                -1
            },
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// Leader: write the marker that ends `producer_id`'s transaction here
    /// (WriteTxnMarkers), stamped with `leader_epoch`. Refused when the
    /// producer epoch or the coordinator epoch is older than this log has
    /// seen (a zombie producer's or a deposed coordinator's marker). An
    /// ABORT that closes a transaction indexes it as aborted.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: txn::TxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.ensure_online()?;
        let mut b = txn::build_marker(producer_id, producer_epoch, marker, now_ms);
        let offset = self.log_end_offset();
        batch::set_base_offset(&mut b, offset);
        batch::set_partition_leader_epoch(&mut b, leader_epoch);
        let h = BatchHeader::parse(&b)?;
        producer_state::check_marker(self.producers.get(producer_id), &h, marker)?;
        if self.should_roll(b.len() as u64, 1, offset, now_ms) {
            let r = self.roll(now_ms);
            self.note_io(r)?;
        }
        let r = self.epochs.assign(self.disk.as_ref(), leader_epoch, offset);
        self.note_io(r)?;
        let interval = self.config.index_interval_bytes;
        let r = self
            .active_mut()
            .append(&b, &[(0..b.len(), h)], interval, now_ms);
        self.note_io(r)?;
        self.apply_marker(&h, marker)?;
        self.note_appended(1, now_ms)?;
        Ok(AppendInfo {
            first_offset: offset,
            last_offset: offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// Producer state and the aborted index after a stored marker.
    fn apply_marker(&mut self, h: &BatchHeader, marker: txn::TxnMarker) -> Result<(), LogError> {
        let closed = self.producers.replay_marker(h, marker);
        if let (Some(first), false) = (closed, marker.commit) {
            let base = self.active().base_offset();
            let r = self.record_abort(base, h.producer_id, first, h.base_offset);
            self.note_io(r)?;
        }
        Ok(())
    }

    /// Whether an append of `bytes` in `batch_count` batches ending at
    /// `last_offset` needs a new segment: size, age, index capacity, or
    /// relative offsets/positions that would not fit u32.
    fn should_roll(&self, bytes: u64, batch_count: usize, last_offset: i64, now_ms: i64) -> bool {
        let seg = self.active();
        if seg.is_empty() {
            return false;
        }
        let too_big = seg.size() + bytes > self.config.segment_bytes;
        let too_old = seg
            .created_ms()
            .is_some_and(|c| now_ms.saturating_sub(c) > self.config.segment_ms);
        let index_full = seg.index_nearly_full(self.config.segment_index_bytes, batch_count);
        let offsets_overflow = last_offset - seg.base_offset() > u32::MAX as i64;
        let position_overflow = seg.size() + bytes > u32::MAX as u64;
        too_big || too_old || index_full || offsets_overflow || position_overflow
    }

    /// Seal the active segment (final time-index entry, fsync of log and
    /// indexes), start a new one at the log end, and snapshot producer state
    /// there so a restart replays only the new segment.
    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let base = self.log_end_offset();
        self.active_mut().seal()?;
        let sealed = self.active().base_offset();
        self.aborted.sync(self.disk.as_ref(), &self.dir, sealed)?;
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        let seg = Segment::create(self.disk.as_ref(), &self.dir, base)?;
        tracing::debug!(dir = %self.dir.display(), base, now_ms, "rolled log segment");
        self.segments.insert(base, seg);
        self.producers
            .write_snapshot(self.disk.as_ref(), &self.dir, base)?;
        Ok(())
    }

    /// Read whole batches starting at the batch that holds `offset`, up to
    /// `max_bytes` (but at least one whole batch when `min_one_batch`, as
    /// Kafka returns an oversized first batch so consumers make progress).
    /// `offset == log_end_offset` returns an empty slice. An offset the
    /// cleaner dropped (a gap, or a whole emptied segment, even the first)
    /// reads from the next surviving batch, as Kafka's. Reads come from one
    /// segment, in one `read_at` (plus a few header reads to find the start).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchSlice, LogError> {
        self.ensure_online()?;
        let start = self.log_start_offset();
        let end = self.log_end_offset();
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        if offset == end {
            return Ok(FetchSlice::default());
        }
        let first = *self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| b)
            .expect("log invariant: the first segment starts at or below the log start");
        for seg in self.segments.range(first..).map(|(_, s)| s) {
            if let Some((pos, h)) = seg.find_batch(offset)? {
                let records = seg.read_from(pos, &h, max_bytes, min_one_batch)?;
                return Ok(FetchSlice { records });
            }
        }
        Ok(FetchSlice::default())
    }

    /// Remove every batch whose last offset is >= `offset` (a follower
    /// truncating to the leader's log). A batch holding `offset` in its middle
    /// goes too, so the new log end may be below `offset`, as in Kafka.
    /// Later segments are deleted, the cut segment's indexes rebuilt, and
    /// producer state rebuilt from a snapshot at or below the new end.
    ///
    /// Crash story: later segments are deleted before the cut, each step
    /// durable; a crash in between can leave batches that were meant to go,
    /// which the replication protocol truncates again after restart.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.ensure_online()?;
        let start = self.log_start_offset();
        let end = self.log_end_offset();
        if offset >= end {
            // Nothing to cut, but an epoch this replica recorded when it
            // became leader and never wrote in may sit at the end: drop it,
            // or the follower keeps presenting it to the new leader.
            let r = self.epochs.truncate_from_end(self.disk.as_ref(), offset);
            return self.note_io(r);
        }
        if offset < start {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let r = self.truncate_inner(offset);
        self.note_io(r)
    }

    fn truncate_inner(&mut self, offset: i64) -> Result<(), LogError> {
        self.layout_generation += 1;
        let keep = *self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| b)
            .expect("log invariant: the first segment starts at or below the log start");
        let later: Vec<i64> = self.segments.range(keep + 1..).map(|(b, _)| *b).collect();
        for base in later.into_iter().rev() {
            let seg = self.segments.remove(&base).expect("listed above");
            seg.delete_files(self.disk.as_ref(), &self.dir)?;
        }
        let seg = self.segments.remove(&keep).expect("listed above");
        let pos = match seg.find_batch(offset)? {
            Some((pos, _)) => pos,
            None => seg.size(),
        };
        let interval = self.config.index_interval_bytes;
        let gaps = self.cleaner_state.may_have_gaps(keep);
        let seg = seg.truncate_to_position(self.disk.as_ref(), &self.dir, pos, interval, gaps)?;
        self.segments.insert(keep, seg);
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        if self.log_end_offset() < self.log_start_offset {
            // The cut emptied the first segment, whose base lies below the
            // log start (DeleteRecords, or the cleaner dropped the records
            // between them): the log end may not fall below its start, so
            // start over empty there, as Kafka truncates fully and starts at.
            self.restart_empty_at(self.log_start_offset)?;
            return self.rebuild_producer_state();
        }
        if self.cleaner_state.first_dirty_offset > self.log_end_offset() {
            // Offsets above the new end will be written again: dirty.
            self.cleaner_state.first_dirty_offset = self.log_end_offset();
            self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
        }
        assert!(
            self.log_end_offset() <= offset,
            "truncation invariant: nothing at or above the target remains"
        );
        self.epochs
            .truncate_from_end(self.disk.as_ref(), self.log_end_offset())?;
        self.rebuild_producer_state()
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// The earliest offset whose record timestamp is >= `timestamp_ms`, with
    /// that record's timestamp, via the time index; None if no such record.
    /// Returns `(offset, timestamp)`.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        for seg in self.segments.values() {
            if let Some((off, ts)) = seg.find_offset_by_timestamp(timestamp_ms)? {
                if off < self.log_start_offset {
                    // Below the start (DeleteRecords inside a segment): the
                    // first visible record is the earliest candidate left.
                    return Ok(Some((self.log_start_offset, ts)));
                }
                return Ok(Some((off, ts)));
            }
        }
        Ok(None)
    }

    /// The largest record timestamp and its offset (ListOffsets MAX_TIMESTAMP),
    /// as `(timestamp, offset)`: the first record carrying that timestamp.
    /// None for an empty log (or one whose records all lack timestamps).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<(&Segment, i64, i64)> = None;
        for seg in self.segments.values() {
            if let Some((ts, off)) = seg.max_timestamp() {
                if best.is_none_or(|(_, b, _)| ts > b) {
                    best = Some((seg, ts, off));
                }
            }
        }
        let (seg, ts, batch_last_offset) = best?;
        if ts < 0 {
            return None;
        }
        // Pin down the exact record; on a read error fall back to the batch.
        match seg.find_offset_by_timestamp(ts) {
            Ok(Some((off, _))) => Some((ts, off)),
            _ => Some((ts, batch_last_offset)),
        }
    }

    /// Count appended records for flush.messages / flush.ms and fsync when
    /// either says so (leader and follower appends alike).
    fn note_appended(&mut self, records: u64, now_ms: i64) -> Result<(), LogError> {
        self.unflushed_records += records;
        let first_unflushed = *self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_records >= self.config.flush_messages
            || self.flush_ms_due(first_unflushed, now_ms)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// fsync everything written so far.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.ensure_online()?;
        let r = self.active().flush();
        self.note_io(r)?;
        let base = self.active().base_offset();
        let r = self.aborted.sync(self.disk.as_ref(), &self.dir, base);
        self.note_io(r)?;
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Flush if flush.ms has elapsed since the oldest unflushed write; the
    /// broker calls this periodically.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), LogError> {
        if let Some(first) = self.first_unflushed_ms {
            if self.flush_ms_due(first, now_ms) {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Whether flush.ms has passed since `first_unflushed_ms`. The times
    /// are wall clock (they come with the append); a clock that went back
    /// past the oldest unflushed write cannot say how long that write has
    /// waited, so it counts as due: one early fsync is cheap, and waiting
    /// until the wall clock catches up (an hour after a one-hour step back)
    /// would leave acknowledged data unsynced that long.
    fn flush_ms_due(&self, first_unflushed_ms: i64, now_ms: i64) -> bool {
        let waited = now_ms.saturating_sub(first_unflushed_ms);
        waited >= self.config.flush_ms || (waited < 0 && self.config.flush_ms != i64::MAX)
    }

    /// Apply changed topic configs (segment size, flush policy, limits).
    /// They take effect from the next append; existing segments stay as they are.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The config in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes the recovery at open cut from torn or corrupt segment tails.
    pub fn recovery_truncated_bytes(&self) -> u64 {
        self.recovery_truncated_bytes
    }

    /// The directory holding this log.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Flush and write clean-shutdown state so the next open skips recovery.
    pub fn close(mut self) -> Result<(), LogError> {
        self.ensure_online()?;
        self.active_mut().seal()?;
        let end = self.log_end_offset();
        self.producers
            .write_snapshot(self.disk.as_ref(), &self.dir, end)?;
        let marker = self
            .disk
            .open(&self.dir.join(CLEAN_SHUTDOWN_FILE), OpenMode::CREATE)?;
        marker.sync_data()?;
        Ok(())
    }

    /// Remove the log's directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let PartitionLog {
            disk,
            dir,
            segments,
            ..
        } = self;
        drop(segments);
        disk.remove_dir_all(&dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
