//! What replication needs from a partition log: appends of batches a leader
//! already numbered (the follower path), reads bounded by the high
//! watermark (consumers never see what the ISR does not hold), and the
//! leader epoch cache (epoch_cache.rs) for divergence checks.
//!
//! The high watermark itself is not the log's: the replica layer
//! (src/replica/) computes it and passes it in, as Kafka's Partition does
//! for UnifiedLog.

use bytes::Bytes;

use super::batch::{self, BatchHeader};
use super::epoch_cache::EpochEntry;
use super::{AppendInfo, FetchSlice, LogError, PartitionLog};

impl PartitionLog {
    /// Append batches exactly as the leader stored them (offsets, leader
    /// epochs, timestamps and compression untouched). Offsets must continue
    /// from the log end and strictly increase; a gap (the leader's cleaner
    /// removed whole batches of a compacted topic) is allowed and marks the
    /// active segment as one that may hold gaps, as a cleaned segment is, so
    /// recovery accepts it. Each batch's header and CRC are checked. Producer state follows the batches without sequence checks
    /// (the leader made them), and each new, larger leader epoch is recorded
    /// in the epoch cache at its first batch (a batch of an older epoch than
    /// the cache's latest is stored but changes nothing there, as in Kafka).
    pub fn append_as_follower(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.ensure_online()?;
        let split = batch::split_batches(batches)?;
        if split.is_empty() {
            return Err(LogError::InvalidRecord("no record batches".into()));
        }
        let mut next = self.log_end_offset();
        let mut headers: Vec<(std::ops::Range<usize>, BatchHeader)> =
            Vec::with_capacity(split.len());
        let mut records = 0u64;
        let mut gaps = false;
        // Each marker's record, read before anything is written.
        let mut markers = Vec::new();
        for (range, h) in split {
            let checked = batch::validate_batch(&batches[range.clone()])?;
            checked.validate_fields()?;
            if checked.is_control() {
                markers.push(super::txn::parse_marker(&batches[range.clone()])?);
            }
            if checked.base_offset < next {
                return Err(LogError::InvalidRecord(format!(
                    "follower append at {} is below the log end {next}",
                    checked.base_offset
                )));
            }
            gaps |= checked.base_offset > next;
            next = h.next_offset();
            records += h.record_count as u64;
            headers.push((range, checked));
        }
        let first_offset = headers[0].1.base_offset;
        let last_offset = next - 1;
        if self.should_roll(batches.len() as u64, headers.len(), last_offset, now_ms) {
            let r = self.roll(now_ms);
            self.note_io(r)?;
        }
        let active_base = self.active().base_offset();
        if gaps && !self.cleaner_state.may_have_gaps(active_base) {
            // Durable before the gapped batches are, so recovery never
            // cuts the segment at a gap.
            self.cleaner_state
                .first_cleaned_ms
                .insert(active_base, now_ms);
            let r = self.cleaner_state.write(self.disk.as_ref(), &self.dir);
            self.note_io(r)?;
        }
        for (_, h) in &headers {
            let r = self
                .epochs
                .assign(self.disk.as_ref(), h.partition_leader_epoch, h.base_offset);
            self.note_io(r)?;
        }
        let interval = self.config.index_interval_bytes;
        let r = self
            .active_mut()
            .append(batches, &headers, interval, now_ms);
        self.note_io(r)?;
        let mut markers = markers.into_iter();
        for (_, h) in &headers {
            if h.is_control() {
                let marker = markers.next().expect("one marker read per control batch");
                self.apply_marker(h, marker)?;
            } else if h.has_producer_id() {
                self.producers.replay(h);
            }
        }
        assert!(
            self.log_end_offset() == last_offset + 1,
            "log invariant: log end follows the last appended offset"
        );
        self.note_appended(records, now_ms)?;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// As [`PartitionLog::read`], but only whole batches whose last offset is
    /// below `max_offset` (the high watermark, for consumers). An offset in
    /// `[max_offset, log end]` reads nothing; above the log end it is out of
    /// range.
    pub fn read_below(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchSlice, LogError> {
        if offset >= max_offset
            && offset <= self.log_end_offset()
            && offset >= self.log_start_offset()
        {
            return Ok(FetchSlice::default());
        }
        let slice = self.read(offset, max_bytes, min_one_batch)?;
        Ok(FetchSlice {
            records: cut_at(slice.records, max_offset),
        })
    }

    /// Record that `epoch` starts at `offset` (a replica becoming leader
    /// records its epoch at its log end before any append).
    pub fn assign_epoch_start(&mut self, epoch: i32, offset: i64) -> Result<(), LogError> {
        self.ensure_online()?;
        let r = self.epochs.assign(self.disk.as_ref(), epoch, offset);
        self.note_io(r).map(|_| ())
    }

    /// Kafka's endOffsetForEpoch over this log's epoch cache.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs
            .end_offset_for_epoch(epoch, self.log_end_offset())
    }

    /// The newest leader epoch in the log's cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader epoch of the batch holding `offset`, per the cache.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epochs.epoch_for_offset(offset)
    }

    /// The epoch cache entries (tests, diagnostics).
    pub fn epoch_entries(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    /// Drop everything and continue empty at `offset` (a follower whose log
    /// ends below the leader's log start), as Kafka's truncateFullyAndStartAt.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        self.ensure_online()?;
        let r = (|| {
            self.restart_empty_at(offset)?;
            super::checkpoint::write_log_start(self.disk.as_ref(), &self.dir, offset)?;
            self.log_start_offset = offset;
            self.unflushed_records = 0;
            self.first_unflushed_ms = None;
            self.rebuild_producer_state()
        })();
        self.note_io(r)
    }
}

/// The prefix of `records` made of batches whose last offset is below `max_offset`.
fn cut_at(records: Bytes, max_offset: i64) -> Bytes {
    let mut end = 0usize;
    while let Some(n) = batch::batch_size_at(&records[end..]) {
        if end + n > records.len() {
            break;
        }
        let Ok(h) = BatchHeader::parse(&records[end..end + n]) else {
            break;
        };
        if h.last_offset() >= max_offset {
            break;
        }
        end += n;
    }
    records.slice(..end)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::super::batch::{build_batch, BatchProducer, SimpleRecord};
    use super::super::epoch_cache::EPOCH_FILE;
    use super::super::{LogConfig, LogError, PartitionLog};
    use crate::env::sim_disk::{SimDisk, SimDiskOptions};
    use crate::env::Disk;

    fn batch(n: usize) -> Vec<u8> {
        let recs: Vec<SimpleRecord> = (0..n)
            .map(|i| SimpleRecord {
                key: Some(vec![i as u8]),
                value: Some(vec![7; 20]),
                timestamp: 100 + i as i64,
                ..Default::default()
            })
            .collect();
        build_batch(&recs, BatchProducer::default())
    }

    fn setup() -> (Arc<SimDisk>, Arc<dyn Disk>, PathBuf) {
        let sim = Arc::new(SimDisk::new(9, SimDiskOptions::default()));
        let disk: Arc<dyn Disk> = sim.clone();
        (sim, disk, PathBuf::from("/data/t-0"))
    }

    fn open(disk: &Arc<dyn Disk>, dir: &std::path::Path) -> PartitionLog {
        PartitionLog::open(disk.clone(), dir.to_path_buf(), LogConfig::default(), 0).unwrap()
    }

    fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    fn all_bytes(log: &PartitionLog) -> Vec<u8> {
        log.read(log.log_start_offset(), usize::MAX / 2, true)
            .unwrap()
            .records
            .to_vec()
    }

    #[test]
    fn epoch_cache_follows_appends_truncation_and_start_moves() {
        let (_, disk, dir) = setup();
        let mut log = open(&disk, &dir);
        log.append(&mut batch(3), 0, 0).unwrap();
        log.append(&mut batch(2), 0, 0).unwrap();
        log.append(&mut batch(2), 2, 0).unwrap();
        assert_eq!(epochs(&log), vec![(0, 0), (2, 5)]);
        assert_eq!(log.end_offset_for_epoch(0), (0, 5));
        assert_eq!(log.end_offset_for_epoch(1), (0, 5));
        assert_eq!(log.end_offset_for_epoch(2), (2, 7));
        assert_eq!(log.end_offset_for_epoch(3), (-1, -1));
        // A new leader records its epoch at its LEO before appending.
        log.assign_epoch_start(3, 7).unwrap();
        assert_eq!(log.end_offset_for_epoch(2), (2, 7));
        // A truncation at the log end still drops an epoch that never wrote.
        log.truncate_to(7).unwrap();
        assert_eq!(epochs(&log), vec![(0, 0), (2, 5)]);
        log.truncate_to(5).unwrap();
        assert_eq!(epochs(&log), vec![(0, 0)]);
        assert_eq!(log.delete_records_before(2, 5).unwrap(), 2);
        assert_eq!(epochs(&log), vec![(0, 2)]);
        drop(log);
        let log = open(&disk, &dir);
        assert_eq!(epochs(&log), vec![(0, 2)]);
    }

    #[test]
    fn crash_drops_epochs_beyond_the_recovered_log_end() {
        let (sim, disk, dir) = setup();
        let mut log = open(&disk, &dir);
        log.append(&mut batch(3), 0, 0).unwrap();
        log.flush().unwrap();
        // Epoch 3's cache entry is durable, its batch is not.
        log.append(&mut batch(2), 3, 0).unwrap();
        assert_eq!(epochs(&log), vec![(0, 0), (3, 3)]);
        drop(log);
        sim.crash();
        let log = open(&disk, &dir);
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(epochs(&log), vec![(0, 0)]);
    }

    #[test]
    fn a_missing_cache_is_rebuilt_from_batch_headers() {
        let (_, disk, dir) = setup();
        let mut log = open(&disk, &dir);
        log.append(&mut batch(3), 0, 0).unwrap();
        log.append(&mut batch(1), 4, 0).unwrap();
        log.append(&mut batch(1), 4, 0).unwrap();
        log.close().unwrap();
        disk.remove_file(&dir.join(EPOCH_FILE)).unwrap();
        let log = open(&disk, &dir);
        assert_eq!(epochs(&log), vec![(0, 0), (4, 3)]);
    }

    #[test]
    fn follower_append_continues_exactly_at_the_log_end() {
        let (_, disk, _) = setup();
        let mut leader = open(&disk, &PathBuf::from("/l/t-0"));
        let mut follower = open(&disk, &PathBuf::from("/f/t-0"));
        leader.append(&mut batch(3), 1, 0).unwrap();
        leader.append(&mut batch(2), 5, 0).unwrap();
        let bytes = all_bytes(&leader);
        let info = follower.append_as_follower(&bytes, 0).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (0, 4));
        assert_eq!(all_bytes(&follower), bytes);
        assert_eq!(epochs(&follower), vec![(1, 0), (5, 3)]);
        // Again: the batches no longer continue the log end.
        assert!(matches!(
            follower.append_as_follower(&bytes, 0),
            Err(LogError::InvalidRecord(_))
        ));
        // A corrupted batch is refused whole.
        leader.append(&mut batch(1), 5, 0).unwrap();
        let mut next = leader.read(5, 1 << 20, true).unwrap().records.to_vec();
        let last = next.len() - 1;
        next[last] ^= 0xff;
        assert!(matches!(
            follower.append_as_follower(&next, 0),
            Err(LogError::CorruptMessage(_))
        ));
        assert_eq!(follower.log_end_offset(), 5);
        // A follower restarts at a leader's later log start.
        follower.truncate_fully_and_start_at(42).unwrap();
        assert_eq!(
            (follower.log_start_offset(), follower.log_end_offset()),
            (42, 42)
        );
        assert!(epochs(&follower).is_empty());
        drop(follower);
        let follower = open(&disk, &PathBuf::from("/f/t-0"));
        assert_eq!(
            (follower.log_start_offset(), follower.log_end_offset()),
            (42, 42)
        );
    }

    #[test]
    fn follower_append_accepts_gaps_of_a_compacted_leader_and_recovers_them() {
        let (sim, disk, dir) = setup();
        let mut follower = open(&disk, &dir);
        let mut leader = open(&disk, &PathBuf::from("/l/t-0"));
        // A cleaned leader's view: batches 0..2 and 5..7 left (2..5 cleaned).
        leader.append(&mut batch(2), 0, 0).unwrap();
        leader.append(&mut batch(3), 0, 0).unwrap();
        leader.append(&mut batch(2), 0, 0).unwrap();
        let first = leader.read(0, 1, true).unwrap().records.to_vec();
        let mut gapped = leader.read(5, 1 << 20, true).unwrap().records.to_vec();
        follower.append_as_follower(&first, 0).unwrap();
        assert!(matches!(
            follower.append_as_follower(&first, 0),
            Err(LogError::InvalidRecord(_))
        ));
        follower.append_as_follower(&gapped, 0).unwrap();
        assert_eq!(follower.log_end_offset(), 7);
        // Flush, crash, reopen (full recovery scan): the gap is accepted.
        follower.flush().unwrap();
        drop(follower);
        sim.crash();
        let follower = open(&disk, &dir);
        assert_eq!(follower.log_end_offset(), 7);
        assert_eq!(
            follower.read(3, 1 << 20, true).unwrap().records.to_vec(),
            std::mem::take(&mut gapped)
        );
    }

    #[test]
    fn reads_below_the_high_watermark_stop_at_whole_batches() {
        let (_, disk, dir) = setup();
        let mut log = open(&disk, &dir);
        for _ in 0..3 {
            log.append(&mut batch(2), 0, 0).unwrap();
        }
        let two = log.read_below(0, 4, 1 << 20, true).unwrap().records;
        assert_eq!(two.len(), all_bytes(&log).len() * 2 / 3);
        // A HW inside a batch hides the whole batch.
        let one = log.read_below(0, 3, 1 << 20, true).unwrap().records;
        assert_eq!(one.len(), all_bytes(&log).len() / 3);
        assert!(log
            .read_below(4, 4, 1 << 20, true)
            .unwrap()
            .records
            .is_empty());
        assert!(log
            .read_below(5, 4, 1 << 20, true)
            .unwrap()
            .records
            .is_empty());
        assert!(matches!(
            log.read_below(7, 4, 1 << 20, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            log.read_below(0, 6, 1 << 20, true).unwrap().records.len(),
            all_bytes(&log).len()
        );
    }
}
