//! One partition's log: a directory of segments holding RecordBatch v2 bytes
//! exactly as producers sent them (base offset and leader epoch patched in
//! place), with a sparse offset index and a time index per segment.
//!
//! CONTRACT (fixed so the broker can be written against it; the bodies are
//! filled in by the log work):
//! - `log/` never reads a clock: time comes in as `now_ms` parameters.
//! - `log/` does all I/O through `env::Disk`.
//! - Offsets only grow; a stored batch never changes after `append` returns.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::env::Disk;

pub mod batch;

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
pub struct PartitionLog {
    _private: (),
}

impl PartitionLog {
    /// Open (or create) the log in `dir`, recovering after a crash: validate the
    /// active segment's tail, truncate a torn or corrupt tail, rebuild missing
    /// or damaged indexes, rebuild idempotent-producer state.
    pub fn open(
        _disk: Arc<dyn Disk>,
        _dir: PathBuf,
        _config: LogConfig,
        _now_ms: i64,
    ) -> Result<Self, LogError> {
        todo!("log work")
    }

    /// Append one or more RecordBatch v2 batches as received from a producer.
    /// Validates each batch (magic 2, length, CRC32C, size limit, idempotent
    /// sequence), assigns offsets in place (base offset, leader epoch), and
    /// writes them; rolls segments by size and age; flushes by flush.messages /
    /// flush.ms. Validation happens before anything is written: on error,
    /// nothing is stored.
    pub fn append(
        &mut self,
        _batches: &mut [u8],
        _leader_epoch: i32,
        _now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        todo!("log work")
    }

    /// Read whole batches starting at the batch that holds `offset`, up to
    /// `max_bytes` (but at least one whole batch when `min_one_batch`, as
    /// Kafka returns an oversized first batch so consumers make progress).
    /// `offset == log_end_offset` returns an empty slice.
    pub fn read(
        &self,
        _offset: i64,
        _max_bytes: usize,
        _min_one_batch: bool,
    ) -> Result<FetchSlice, LogError> {
        todo!("log work")
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        todo!("log work")
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        todo!("log work")
    }

    /// The earliest offset whose record timestamp is >= `timestamp_ms`, with
    /// that record's timestamp, via the time index; None if no such record.
    pub fn offset_for_timestamp(&self, _timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        todo!("log work")
    }

    /// The largest record timestamp and its offset (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        todo!("log work")
    }

    /// fsync everything written so far.
    pub fn flush(&mut self) -> Result<(), LogError> {
        todo!("log work")
    }

    /// Flush if flush.ms has elapsed since the oldest unflushed write; the
    /// broker calls this periodically.
    pub fn maybe_flush(&mut self, _now_ms: i64) -> Result<(), LogError> {
        todo!("log work")
    }

    /// Apply changed topic configs (segment size, flush policy, limits).
    pub fn set_config(&mut self, _config: LogConfig) {
        todo!("log work")
    }

    /// Flush and write clean-shutdown state so the next open skips recovery.
    pub fn close(self) -> Result<(), LogError> {
        todo!("log work")
    }

    /// Remove the log's directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        todo!("log work")
    }
}
