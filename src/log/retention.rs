//! cleanup.policy=delete and DeleteRecords: moving the log start offset
//! forward and deleting whole segments below it.
//!
//! As Kafka's UnifiedLog: three reasons retire a prefix of closed segments,
//! each only for segments wholly below the high watermark (records a
//! follower may still need, or a consumer has not been allowed to see, are
//! never deleted by retention):
//! - retention.ms: the segment's newest record timestamp (its largest
//!   timestamp, so a late-arriving old record cannot expire new ones) is
//!   older than `now_ms - retention.ms`. A segment whose records carry no
//!   timestamp (-1) never expires by time (Kafka falls back to the file's
//!   mtime, which a clock-free log does not have). An empty segment (the
//!   first one, which the cleaner emptied under compact,delete) does not
//!   shield the segments after it, but does not expire on its own either:
//!   it goes with the first expired segment after it.
//! - retention.bytes: while the log's size minus the oldest segment's size
//!   is still >= retention.bytes.
//! - log start: segments wholly below the log start offset (after a
//!   DeleteRecords), whatever the policy.
//!
//! The active segment is never deleted.
//!
//! Crash story: the new log start offset is made durable first (checkpoint,
//! written temp + fsync + rename), then segments are deleted, each index
//! before its log. A crash in between leaves segments (or a `.log` without
//! indexes) below the recorded start; `open` deletes them. Readers never see
//! below the recorded start, so a half-finished deletion is invisible.

use super::checkpoint;
use super::{LogError, PartitionLog};

/// What one retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes of the deleted segments.
    pub deleted_bytes: u64,
    /// The log start offset after the pass.
    pub log_start_offset: i64,
}

impl PartitionLog {
    /// Apply retention.ms and retention.bytes (when cleanup.policy includes
    /// delete) and drop segments wholly below the log start offset. Only
    /// segments that end at or below `high_watermark` are candidates; pass
    /// the log end offset where no replication applies. Called periodically
    /// by the broker (log.retention.check.interval.ms).
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<RetentionOutcome, LogError> {
        self.ensure_online()?;
        let r = self.apply_retention_inner(now_ms, high_watermark);
        self.note_io(r)
    }

    fn apply_retention_inner(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<RetentionOutcome, LogError> {
        // Closed segments as (base, size, newest timestamp, upper bound),
        // oldest first; the upper bound is the next segment's base.
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let closed: Vec<(i64, u64, i64, i64)> = bases
            .windows(2)
            .map(|w| {
                let seg = &self.segments[&w[0]];
                let ts = seg.max_timestamp().map_or(-1, |(ts, _)| ts);
                (w[0], seg.size(), ts, w[1])
            })
            .take_while(|&(_, _, _, upper)| upper <= high_watermark)
            .collect();
        let cfg = &self.config;
        let mut count = 0;
        if cfg.cleanup_policy.delete && cfg.retention_ms >= 0 {
            let mut expired = closed
                .iter()
                .take_while(|&&(_, size, ts, _)| {
                    // An empty segment (the cleaner emptied it) holds nothing
                    // to keep and must not shield the ones after it.
                    size == 0 || (ts >= 0 && now_ms.saturating_sub(ts) > cfg.retention_ms)
                })
                .count();
            // But it has no timestamp to expire by (Kafka dates it by the
            // original file's mtime), and deleting it alone would move the
            // log start for nothing but the cleaner's work, sending a
            // consumer positioned in the emptied range OFFSET_OUT_OF_RANGE.
            // It goes with the first expired segment after it: later than
            // Kafka, never earlier.
            while expired > 0 && closed[expired - 1].1 == 0 {
                expired -= 1;
            }
            count = count.max(expired);
        }
        if cfg.cleanup_policy.delete && cfg.retention_bytes >= 0 {
            let total: u64 = self.segments.values().map(|s| s.size()).sum();
            let mut excess = total as i64 - cfg.retention_bytes;
            let mut n = 0;
            for &(_, size, _, _) in &closed {
                if excess < size as i64 {
                    break;
                }
                excess -= size as i64;
                n += 1;
            }
            count = count.max(n);
        }
        let below_start = closed
            .iter()
            .take_while(|&&(_, _, _, upper)| upper <= self.log_start_offset)
            .count();
        count = count.max(below_start);
        if count == 0 {
            return Ok(RetentionOutcome {
                log_start_offset: self.log_start_offset,
                ..Default::default()
            });
        }
        let new_start = closed[count - 1].3.max(self.log_start_offset);
        let deleted_bytes = closed[..count].iter().map(|c| c.1).sum();
        tracing::info!(dir = %self.dir.display(), segments = count, new_start, "retention: deleting segments");
        self.set_log_start(new_start)?;
        let deleted_segments = self.delete_segments_below_start()?;
        Ok(RetentionOutcome {
            deleted_segments,
            deleted_bytes,
            log_start_offset: self.log_start_offset,
        })
    }

    /// DeleteRecords: move the log start offset to `offset` (-1 = the high
    /// watermark) and delete the segments wholly below it. `offset` above
    /// the high watermark (or below -1) is OFFSET_OUT_OF_RANGE; an offset at
    /// or below the current start changes nothing. Returns the new log start
    /// offset (the partition's low watermark).
    pub fn delete_records_before(
        &mut self,
        offset: i64,
        high_watermark: i64,
    ) -> Result<i64, LogError> {
        self.ensure_online()?;
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark || high_watermark > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: high_watermark,
            });
        }
        if target <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        let r = self
            .set_log_start(target)
            .and_then(|()| self.delete_segments_below_start().map(|_| ()));
        self.note_io(r)?;
        Ok(self.log_start_offset)
    }

    /// Durably record a new (higher) log start offset.
    fn set_log_start(&mut self, offset: i64) -> Result<(), LogError> {
        assert!(
            offset >= self.log_start_offset,
            "log invariant: the log start offset only grows"
        );
        assert!(
            offset <= self.log_end_offset(),
            "log invariant: the log start offset is at most the log end"
        );
        checkpoint::write_log_start(self.disk.as_ref(), &self.dir, offset)?;
        self.log_start_offset = offset;
        self.epochs
            .truncate_from_start(self.disk.as_ref(), offset)?;
        Ok(())
    }

    /// Delete closed segments wholly below the log start offset (the next
    /// segment starts at or below it). Returns how many went.
    pub(crate) fn delete_segments_below_start(&mut self) -> Result<usize, LogError> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let doomed: Vec<i64> = bases
            .windows(2)
            .take_while(|w| w[1] <= self.log_start_offset)
            .map(|w| w[0])
            .collect();
        for &base in &doomed {
            let seg = self.segments.remove(&base).expect("listed above");
            seg.delete_files(self.disk.as_ref(), &self.dir)?;
        }
        if let Some(&first) = self.segments.keys().next() {
            // Their aborted-transaction entries went with their files.
            self.aborted.forget_segment(i64::MIN, first);
        }
        if !doomed.is_empty() {
            let before = self.cleaner_state.clone();
            self.cleaner_state
                .first_cleaned_ms
                .retain(|&b, _| b >= *self.segments.keys().next().expect("active remains"));
            if self.cleaner_state != before {
                self.cleaner_state.write(self.disk.as_ref(), &self.dir)?;
            }
        }
        assert!(
            !self.segments.is_empty(),
            "log invariant: the active segment is never deleted"
        );
        Ok(doomed.len())
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }
}
