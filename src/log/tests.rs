//! PartitionLog tests on RealDisk in a tempdir.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::batch::{self, build_batch, BatchHeader, BatchProducer, SimpleRecord};
use super::*;
use crate::env::disk::{DiskFile, OpenMode};
use crate::env::RealDisk;

/// RealDisk that counts fsyncs of files, to check the flush policy.
struct CountingDisk {
    inner: RealDisk,
    syncs: Arc<AtomicU64>,
    fail_sync: Arc<AtomicBool>,
}

struct CountingFile {
    inner: Box<dyn DiskFile>,
    syncs: Arc<AtomicU64>,
    fail_sync: Arc<AtomicBool>,
}

impl DiskFile for CountingFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }
}

impl Disk for CountingDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(CountingFile {
            inner: self.inner.open(path, mode)?,
            syncs: self.syncs.clone(),
            fail_sync: self.fail_sync.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
}

fn file_len(path: &Path) -> u64 {
    disk()
        .open(path, OpenMode::EXISTING)
        .unwrap()
        .len()
        .unwrap()
}

fn disk() -> Arc<dyn Disk> {
    Arc::new(RealDisk::new())
}

/// A batch of `n` records with `value_len`-byte values and timestamps ts, ts+1, ...
fn mk(n: usize, value_len: usize, ts: i64) -> Vec<u8> {
    mk_prod(n, value_len, ts, BatchProducer::default())
}

fn mk_prod(n: usize, value_len: usize, ts: i64, p: BatchProducer) -> Vec<u8> {
    let recs: Vec<SimpleRecord> = (0..n)
        .map(|i| SimpleRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![(i % 251) as u8; value_len]),
            headers: vec![],
            timestamp: ts + i as i64,
        })
        .collect();
    build_batch(&recs, p)
}

fn idem(pid: i64, epoch: i16, seq: i32) -> BatchProducer {
    BatchProducer {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        transactional: false,
    }
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

/// Read the whole log from `from` with small fetches, returning the bytes.
fn read_all(log: &PartitionLog, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = from;
    while off < log.log_end_offset() {
        let slice = log.read(off, 1000, true).unwrap();
        assert!(!slice.records.is_empty());
        let parts = batch::split_batches(&slice.records).unwrap();
        off = parts.last().unwrap().1.next_offset();
        out.extend_from_slice(&slice.records);
    }
    out
}

#[test]
fn append_read_roundtrip_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 1000).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.log_start_offset(), 0);
    let mut stored = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..60 {
        let mut b = mk(1 + i % 4, 10 + (i * 37) % 300, 1000 + i as i64 * 10);
        let info = log.append(&mut b, 3, 5000).unwrap();
        assert_eq!(
            info.first_offset,
            offsets.last().map_or(0, |&(_, l): &(i64, i64)| l + 1)
        );
        assert_eq!(info.last_offset - info.first_offset, (i % 4) as i64);
        assert!(!info.duplicate);
        assert_eq!(info.log_append_time_ms, -1);
        let h = batch::validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, info.first_offset);
        assert_eq!(h.partition_leader_epoch, 3);
        offsets.push((info.first_offset, info.last_offset));
        stored.extend_from_slice(&b);
    }
    assert!(log.segment_count() > 3, "segments rolled");
    assert_eq!(read_all(&log, 0), stored);
    // Every offset reads back starting with the batch that holds it.
    for &(first, last) in &offsets {
        for o in first..=last {
            let s = log.read(o, 1, true).unwrap();
            let h = BatchHeader::parse(&s.records).unwrap();
            assert_eq!(h.base_offset, first);
            assert_eq!(s.records.len(), h.total_size(), "one whole batch");
        }
    }
    // Too small without min_one_batch: nothing.
    assert!(log.read(0, 10, false).unwrap().records.is_empty());
    // End: empty; beyond: out of range.
    let end = log.log_end_offset();
    assert!(log.read(end, 1000, true).unwrap().records.is_empty());
    assert!(matches!(
        log.read(end + 1, 1000, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 1000, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Clean reopen and crash reopen both give the same log.
    log.close().unwrap();
    let log = PartitionLog::open(disk(), path.clone(), small_segments(), 2000).unwrap();
    assert!(!disk().exists(&path.join(CLEAN_SHUTDOWN_FILE)));
    assert_eq!(read_all(&log, 0), stored);
    assert_eq!(log.log_end_offset(), end);
    drop(log); // crash
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 3000).unwrap();
    assert_eq!(log.recovery_truncated_bytes(), 0);
    assert_eq!(read_all(&log, 0), stored);
    let info = log.append(&mut mk(1, 5, 0), 4, 3000).unwrap();
    assert_eq!(info.first_offset, end);
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn indexes_rebuilt_after_deletion_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    let mut stored = Vec::new();
    for i in 0..40 {
        let mut b = mk(2, 100, 10_000 + i * 100);
        log.append(&mut b, 0, 0).unwrap();
        stored.extend_from_slice(&b);
    }
    let end = log.log_end_offset();
    let ts_before = log.offset_for_timestamp(10_000 + 1750).unwrap();
    let max_before = log.max_timestamp();
    log.close().unwrap();
    let names = disk().list_dir(&path).unwrap();
    let mut damaged = 0;
    for (i, n) in names.iter().enumerate() {
        if n.ends_with(".index") || n.ends_with(".timeindex") {
            if i % 2 == 0 {
                disk().remove_file(&path.join(n)).unwrap();
            } else {
                // Garbage: a torn last entry.
                let f = disk().open(&path.join(n), OpenMode::EXISTING).unwrap();
                f.write_at(&[1, 2, 3], f.len().unwrap()).unwrap();
            }
            damaged += 1;
        }
    }
    assert!(damaged >= 4);
    let log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0), stored);
    assert_eq!(log.offset_for_timestamp(10_000 + 1750).unwrap(), ts_before);
    assert_eq!(log.max_timestamp(), max_before);
    // Index files exist again.
    for n in disk().list_dir(&path).unwrap() {
        if let Some((base, "log")) = segment::parse_file_name(&n) {
            assert!(disk().exists(&path.join(segment::file_name(base, "index"))));
            assert!(disk().exists(&path.join(segment::file_name(base, "timeindex"))));
        }
    }
}

#[test]
fn timestamps_lookup_and_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(disk(), dir.path().join("p"), small_segments(), 0).unwrap();
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    // Batches of 3 records; batch i has timestamps 100*i + {0,1,2}, except
    // batch 5 which is out of order (older).
    for i in 0..30i64 {
        let ts = if i == 5 { 50 } else { 100 * i };
        log.append(&mut mk(3, 50, ts), 0, 0).unwrap();
    }
    // Record offsets: batch i holds 3i..3i+2.
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
    assert_eq!(log.offset_for_timestamp(2).unwrap(), Some((2, 2)));
    assert_eq!(log.offset_for_timestamp(3).unwrap(), Some((3, 100)));
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((4, 101)));
    assert_eq!(log.offset_for_timestamp(450).unwrap(), Some((18, 600)));
    assert_eq!(log.offset_for_timestamp(2901).unwrap(), Some((88, 2901)));
    assert_eq!(log.offset_for_timestamp(2903).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((2902, 89)));
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        log_append_time: true,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk(), dir.path().join("p"), cfg, 0).unwrap();
    let mut b = mk(3, 10, 5);
    let info = log.append(&mut b, 0, 77_000).unwrap();
    assert_eq!(info.log_append_time_ms, 77_000);
    let s = log.read(0, 1 << 20, true).unwrap();
    let h = batch::validate_batch(&s.records).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 77_000);
    assert_eq!(log.max_timestamp(), Some((77_000, 0)));
    assert_eq!(log.offset_for_timestamp(76_000).unwrap(), Some((0, 77_000)));
}

#[test]
fn invalid_batches_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let cfg = LogConfig {
        max_message_bytes: 2000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk(), path.clone(), cfg, 0).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
    let log_file = path.join(segment::file_name(0, "log"));
    let size = file_len(&log_file);
    let good = mk(2, 10, 0);
    // Second batch corrupt: the first must not be stored either.
    let mut bad = mk(2, 10, 0);
    let n = bad.len();
    bad[n - 1] ^= 0x40;
    let mut buf = [good.clone(), bad].concat();
    assert_eq!(log.append(&mut buf, 0, 0).unwrap_err().error_code(), 2);
    // Too large.
    let mut buf = [good.clone(), mk(1, 3000, 0)].concat();
    assert_eq!(log.append(&mut buf, 0, 0).unwrap_err().error_code(), 10);
    // Truncated buffer.
    let mut buf = good[..good.len() - 3].to_vec();
    assert_eq!(log.append(&mut buf, 0, 0).unwrap_err().error_code(), 2);
    // Empty.
    assert_eq!(log.append(&mut [], 0, 0).unwrap_err().error_code(), 87);
    // Wrong magic.
    let mut buf = good.clone();
    buf[16] = 1;
    assert_eq!(log.append(&mut buf, 0, 0).unwrap_err().error_code(), 87);
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(file_len(&log_file), size);
    // Several good batches in one append.
    let mut buf = [good.clone(), good.clone()].concat();
    let info = log.append(&mut buf, 0, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (1, 4));
    let parts = batch::split_batches(&buf).unwrap();
    assert_eq!(parts[1].1.base_offset, 3);
}

#[test]
fn idempotent_producer_rules_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    let mut b0 = mk_prod(3, 10, 0, idem(7, 0, 0));
    let retry0 = b0.clone();
    let i0 = log.append(&mut b0, 0, 0).unwrap();
    assert_eq!((i0.first_offset, i0.last_offset), (0, 2));
    // Retry: duplicate, nothing written.
    let d = log.append(&mut retry0.clone(), 0, 0).unwrap();
    assert!(d.duplicate);
    assert_eq!((d.first_offset, d.last_offset), (0, 2));
    assert_eq!(log.log_end_offset(), 3);
    // Gap.
    let e = log
        .append(&mut mk_prod(1, 10, 0, idem(7, 0, 4)), 0, 0)
        .unwrap_err();
    assert!(matches!(
        e,
        LogError::OutOfOrderSequence {
            expected: 3,
            got: 4,
            ..
        }
    ));
    assert_eq!(e.error_code(), 45);
    // Next.
    let mut b1 = mk_prod(2, 10, 0, idem(7, 0, 3));
    let retry1 = b1.clone();
    log.append(&mut b1, 0, 0).unwrap();
    // Unknown producer with seq != 0: accepted.
    log.append(&mut mk_prod(1, 10, 0, idem(8, 0, 42)), 0, 0)
        .unwrap();
    // Two batches of one producer in one request are checked in order.
    let mut two = [
        mk_prod(1, 10, 0, idem(9, 0, 0)),
        mk_prod(1, 10, 0, idem(9, 0, 1)),
    ]
    .concat();
    log.append(&mut two, 0, 0).unwrap();
    let mut wrong_two = [
        mk_prod(1, 10, 0, idem(9, 0, 2)),
        mk_prod(1, 10, 0, idem(9, 0, 4)),
    ]
    .concat();
    let end = log.log_end_offset();
    assert!(log.append(&mut wrong_two, 0, 0).is_err());
    assert_eq!(log.log_end_offset(), end);

    // Crash (no close), then reopen: still a duplicate.
    drop(log);
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    let d = log.append(&mut retry1.clone(), 0, 0).unwrap();
    assert!(d.duplicate);
    assert_eq!((d.first_offset, d.last_offset), (3, 4));
    assert!(log.append(&mut retry0.clone(), 0, 0).unwrap().duplicate);
    // Epoch bump: must start at 0; then the old epoch is fenced.
    assert!(matches!(
        log.append(&mut mk_prod(1, 10, 0, idem(7, 1, 5)), 0, 0),
        Err(LogError::OutOfOrderSequence { expected: 0, .. })
    ));
    log.append(&mut mk_prod(1, 10, 0, idem(7, 1, 0)), 0, 0)
        .unwrap();
    let fenced = log
        .append(&mut mk_prod(1, 10, 0, idem(7, 0, 5)), 0, 0)
        .unwrap_err();
    assert_eq!(fenced.error_code(), 47);

    // Roll many segments (snapshots at each roll), clean close, reopen.
    let mut seq = 1;
    for _ in 0..50 {
        log.append(&mut mk_prod(2, 200, 0, idem(7, 1, seq)), 0, 0)
            .unwrap();
        seq += 2;
    }
    let last = mk_prod(2, 200, 0, idem(7, 1, seq - 2));
    assert!(log.segment_count() > 3);
    log.close().unwrap();
    let snapshots = disk()
        .list_dir(&path)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".snapshot"))
        .count();
    assert!(snapshots <= 2 && snapshots > 0);
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    assert!(log.append(&mut last.clone(), 0, 0).unwrap().duplicate);
    log.append(&mut mk_prod(1, 10, 0, idem(7, 1, seq)), 0, 0)
        .unwrap();
    // Crash after the close+reopen; snapshot at the old end plus replay.
    drop(log);
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    assert!(
        log.append(&mut mk_prod(1, 10, 0, idem(7, 1, seq)), 0, 0)
            .unwrap()
            .duplicate
    );
    // Without any snapshot: replay of all segments still knows the producer.
    drop(log);
    for n in disk().list_dir(&path).unwrap() {
        if n.ends_with(".snapshot") {
            disk().remove_file(&path.join(n)).unwrap();
        }
    }
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    assert_eq!(
        log.append(&mut retry0.clone(), 0, 0)
            .unwrap_err()
            .error_code(),
        47
    );
    assert!(
        log.append(&mut mk_prod(1, 10, 0, idem(7, 1, seq)), 0, 0)
            .unwrap()
            .duplicate
    );
}

#[test]
fn flush_policy() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicU64::new(0));
    let d: Arc<dyn Disk> = Arc::new(CountingDisk {
        inner: RealDisk::new(),
        syncs: syncs.clone(),
        fail_sync: Arc::new(AtomicBool::new(false)),
    });
    // The first batch of a leader epoch makes the epoch cache durable
    // (one checkpoint write); measure from after it.
    let warm_up = |log: &mut PartitionLog| {
        log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
        log.flush().unwrap();
    };
    // Default: no fsync per append.
    let mut log =
        PartitionLog::open(d.clone(), dir.path().join("a"), LogConfig::default(), 0).unwrap();
    warm_up(&mut log);
    let before = syncs.load(Ordering::SeqCst);
    for _ in 0..20 {
        log.append(&mut mk(4, 16 * 1024 / 4, 0), 0, 0).unwrap();
    }
    log.maybe_flush(1_000_000).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), before, "no fsync by default");
    log.flush().unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), before + 1);

    // flush.messages = 5: fsync once 5 records accumulated.
    let cfg = LogConfig {
        flush_messages: 5,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(d.clone(), dir.path().join("b"), cfg, 0).unwrap();
    warm_up(&mut log);
    let base = syncs.load(Ordering::SeqCst);
    log.append(&mut mk(2, 10, 0), 0, 0).unwrap();
    log.append(&mut mk(2, 10, 0), 0, 0).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base);
    log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base + 1);

    // flush.ms = 100: maybe_flush honours it, and so does append.
    let cfg = LogConfig {
        flush_ms: 100,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(d.clone(), dir.path().join("c"), cfg, 0).unwrap();
    warm_up(&mut log);
    let base = syncs.load(Ordering::SeqCst);
    log.append(&mut mk(1, 10, 0), 0, 1000).unwrap();
    log.maybe_flush(1050).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base);
    log.maybe_flush(1100).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base + 1);
    log.maybe_flush(5000).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base + 1, "nothing unflushed");
    log.append(&mut mk(1, 10, 0), 0, 6000).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 6200).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base + 2);
}

#[test]
fn rolls_by_age_and_index_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk(), dir.path().join("a"), cfg, 0).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 10_000).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 10_900).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&mut mk(1, 10, 0), 0, 11_001).unwrap();
    assert_eq!(log.segment_count(), 2);
    // The new segment's age starts at its first append.
    log.append(&mut mk(1, 10, 0), 0, 11_900).unwrap();
    assert_eq!(log.segment_count(), 2);

    // A tiny index (2 offset entries, 2 time entries at 24 bytes / 12).
    let cfg = LogConfig {
        segment_index_bytes: 24,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk(), dir.path().join("b"), cfg, 0).unwrap();
    for i in 0..10 {
        log.append(&mut mk(1, 10, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() >= 3);
    assert_eq!(read_all(&log, 0).len(), 10 * mk(1, 10, 0).len());
}

#[test]
fn failed_fsync_takes_the_log_offline_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let fail = Arc::new(AtomicBool::new(false));
    let d: Arc<dyn Disk> = Arc::new(CountingDisk {
        inner: RealDisk::new(),
        syncs: Arc::new(AtomicU64::new(0)),
        fail_sync: fail.clone(),
    });
    let mut log = PartitionLog::open(d.clone(), path.clone(), LogConfig::default(), 0).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
    fail.store(true, Ordering::SeqCst);
    assert_eq!(log.flush().unwrap_err().error_code(), 56);
    assert!(log.is_offline());
    fail.store(false, Ordering::SeqCst);
    assert_eq!(
        log.append(&mut mk(1, 10, 0), 0, 0)
            .unwrap_err()
            .error_code(),
        56
    );
    assert!(log.read(0, 100, true).is_err());
    drop(log);
    let mut log = PartitionLog::open(d, path, LogConfig::default(), 0).unwrap();
    assert!(!log.is_offline());
    assert_eq!(log.log_end_offset(), 1);
    log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
}

#[test]
fn damage_at_rest_in_a_sealed_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    for i in 0..30 {
        log.append(&mut mk(2, 200, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 1);
    log.close().unwrap();
    // Break the length field of the first batch of segment 0.
    let f = disk()
        .open(&path.join(segment::file_name(0, "log")), OpenMode::EXISTING)
        .unwrap();
    f.write_at(&0x7fff_0000i32.to_be_bytes(), 8).unwrap();
    drop(f);
    let log = PartitionLog::open(disk(), path, small_segments(), 0).unwrap();
    assert!(matches!(
        log.read(0, 1000, true),
        Err(LogError::CorruptMessage(_))
    ));
    // Later segments still read.
    let second = log.read(log.log_end_offset() - 1, 1000, true).unwrap();
    assert!(!second.records.is_empty());
}

/// A batch's base offset is outside its CRC. A bit flipped there while the
/// log is open (rot at rest, or a bad read) must never put records at offsets
/// where they are not: reads stop before the damaged batch, and a read of it
/// is CORRUPT_MESSAGE.
#[test]
fn a_damaged_base_offset_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let mut log = PartitionLog::open(disk(), path.clone(), LogConfig::default(), 0).unwrap();
    let first_len = mk(2, 50, 0).len() as u64;
    for i in 0..3 {
        log.append(&mut mk(2, 50, i), 0, 0).unwrap(); // offsets 0-1, 2-3, 4-5
    }
    // The second batch now claims base offset 1 (it holds 2-3).
    let f = disk()
        .open(&path.join(segment::file_name(0, "log")), OpenMode::EXISTING)
        .unwrap();
    f.write_at(&1i64.to_be_bytes(), first_len).unwrap();
    let served = log.read(0, 1 << 20, true).unwrap();
    let parts = batch::split_batches(&served.records).unwrap();
    assert_eq!(parts.len(), 1, "only the batch before the damage");
    assert_eq!(parts[0].1.base_offset, 0);
    for offset in [2, 3, 4] {
        assert!(
            matches!(
                log.read(offset, 1 << 20, true),
                Err(LogError::CorruptMessage(_))
            ),
            "read at {offset}"
        );
    }
    // Claiming an offset beyond the segment's end is caught the same way.
    f.write_at(&2i64.to_be_bytes(), first_len).unwrap();
    f.write_at(&99i64.to_be_bytes(), 2 * first_len).unwrap();
    let parts = batch::split_batches(&log.read(0, 1 << 20, true).unwrap().records).unwrap();
    assert_eq!(parts.len(), 2, "the first two batches are whole again");
    assert!(matches!(
        log.read(4, 1 << 20, true),
        Err(LogError::CorruptMessage(_))
    ));
}

#[test]
fn partition_log_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PartitionLog>();
}

#[test]
fn truncate_to_removes_the_tail_and_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    let mut stored = Vec::new();
    let mut retries = Vec::new();
    for i in 0..30 {
        let b = mk_prod(2, 300, i, idem(5, 0, 2 * i as i32));
        retries.push(b.clone());
        let mut b = b;
        log.append(&mut b, 0, 0).unwrap();
        stored.push(b);
    }
    assert!(log.segment_count() > 3);
    log.close().unwrap(); // leaves a snapshot at the end, above the cut
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    // Offset 21 is the middle of batch 10 (offsets 20, 21): it goes too.
    log.truncate_to(21).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(read_all(&log, 0), stored[..10].concat());
    assert!(matches!(
        log.read(21, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Truncating at or past the end is a no-op; below the start an error.
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert!(log.truncate_to(-1).is_err());
    // Producer state: batch 9 is still a duplicate, batch 10 is new again.
    assert!(log.append(&mut retries[9].clone(), 0, 0).unwrap().duplicate);
    let info = log.append(&mut retries[10].clone(), 0, 0).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.first_offset, 20);
    // The state survives a crash.
    drop(log);
    let mut log = PartitionLog::open(disk(), path.clone(), small_segments(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 22);
    assert!(
        log.append(&mut retries[10].clone(), 0, 0)
            .unwrap()
            .duplicate
    );
    // Truncate into the first segment, then to the very start.
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.segment_count(), 1);
    let info = log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
    assert_eq!(info.first_offset, 0);
}

// ---- A wall clock that jumps (the broker passes its wall clock as now_ms) ----

/// LogAppendTime with a clock that steps back an hour mid-stream (and then
/// forward again): offsets keep growing, the log's max timestamp and the
/// time index only move forward, a lookup still finds the first record at
/// or after a time, and a reopen (recovery) agrees.
#[test]
fn log_append_time_survives_a_clock_that_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        log_append_time: true,
        segment_bytes: 600,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    const HOUR: i64 = 3_600_000;
    let t0 = 1_700_000_000_000;
    // Wall time of each append: forward, an hour back, forward again.
    let times: Vec<i64> = (0..10)
        .map(|i| t0 + i)
        .chain((0..10).map(|i| t0 - HOUR + i))
        .chain((0..10).map(|i| t0 + 100 + i))
        .collect();
    let path = dir.path().join("p");
    let mut log = PartitionLog::open(disk(), path.clone(), cfg.clone(), 0).unwrap();
    let mut last = -1;
    for &now in &times {
        let info = log.append(&mut mk(2, 20, 5), 0, now).unwrap();
        assert!(info.first_offset > last, "offsets only grow");
        last = info.last_offset;
        assert_eq!(
            info.log_append_time_ms, now,
            "stamped with the clock as it is"
        );
    }
    assert!(log.segment_count() > 3, "the test spans several segments");
    // The max only grows: the step back did not lower it.
    assert_eq!(log.max_timestamp().map(|m| m.0), Some(t0 + 109));
    // The first batch stamped at or after t0 - HOUR is batch 0 (t0 > it).
    assert_eq!(log.offset_for_timestamp(t0 - HOUR).unwrap(), Some((0, t0)));
    assert_eq!(
        log.offset_for_timestamp(t0 + 50).unwrap(),
        Some((40, t0 + 100))
    );
    assert_eq!(log.offset_for_timestamp(t0 + 110).unwrap(), None);
    drop(log);
    let log = PartitionLog::open(disk(), path, cfg, 0).unwrap();
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.max_timestamp().map(|m| m.0), Some(t0 + 109));
    assert_eq!(
        log.offset_for_timestamp(t0 + 50).unwrap(),
        Some((40, t0 + 100))
    );
}

/// flush.ms with a wall clock that went back past the oldest unflushed
/// write: it cannot tell how long that write has waited, so it flushes at
/// once rather than an hour later. Without flush.ms nothing changes.
#[test]
fn flush_ms_with_a_clock_that_went_back_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicU64::new(0));
    let d: Arc<dyn Disk> = Arc::new(CountingDisk {
        inner: RealDisk::new(),
        syncs: syncs.clone(),
        fail_sync: Arc::new(AtomicBool::new(false)),
    });
    let cfg = LogConfig {
        flush_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(d.clone(), dir.path().join("a"), cfg, 0).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
    log.flush().unwrap();
    let base = syncs.load(Ordering::SeqCst);
    log.append(&mut mk(1, 10, 0), 0, 10_000_000).unwrap();
    log.maybe_flush(10_000_500).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base, "not due yet");
    log.maybe_flush(10_000_500 - 3_600_000).unwrap();
    assert_eq!(
        syncs.load(Ordering::SeqCst),
        base + 1,
        "clock went back: flushed"
    );
    // The next write starts a new interval on the new clock.
    log.append(&mut mk(1, 10, 0), 0, 6_400_600).unwrap();
    log.maybe_flush(6_401_000).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base + 1);
    // An append seeing the clock behind the oldest unflushed write flushes too.
    log.append(&mut mk(1, 10, 0), 0, 6_000_000).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base + 2);

    // Default flush.ms (never): a clock going back does not fsync.
    let mut log =
        PartitionLog::open(d.clone(), dir.path().join("b"), LogConfig::default(), 0).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 0).unwrap();
    log.flush().unwrap();
    let base = syncs.load(Ordering::SeqCst);
    log.append(&mut mk(1, 10, 0), 0, 10_000_000).unwrap();
    log.maybe_flush(1_000).unwrap();
    log.append(&mut mk(1, 10, 0), 0, 2_000).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst), base);
}

/// Retention by time with records stamped in the future (a clock that was
/// ahead, then stepped back): their age is negative, never past
/// retention.ms, so nothing is deleted; once the clock passes them by
/// retention.ms they go.
#[test]
fn retention_keeps_records_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        log_append_time: true,
        segment_bytes: 300,
        retention_ms: 86_400_000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk(), dir.path().join("p"), cfg, 0).unwrap();
    let t0 = 1_700_000_000_000;
    for i in 0..20 {
        log.append(&mut mk(2, 20, 5), 0, t0 + 3_600_000 + i)
            .unwrap();
    }
    let end = log.log_end_offset();
    let segments = log.segment_count();
    assert!(segments > 2);
    let r = log.apply_retention(t0, end).unwrap();
    assert_eq!(r.deleted_segments, 0);
    assert_eq!(log.log_start_offset(), 0);
    let r = log
        .apply_retention(t0 + 3_600_000 + 86_400_100, end)
        .unwrap();
    assert!(r.deleted_segments > 0, "past retention: deleted");
}
