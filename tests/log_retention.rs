//! cleanup.policy=delete and DeleteRecords: the log start offset moves, reads
//! below it fail, it survives reopen (clean or crash), and a deletion cut
//! short by a crash is finished at open.

use std::path::Path;
use std::sync::Arc;

use weir::env::{Disk, RealDisk};
use weir::log::batch::{self, build_batch, BatchProducer, SimpleRecord};
use weir::log::{checkpoint, LogConfig, LogError, PartitionLog};

fn disk() -> Arc<dyn Disk> {
    Arc::new(RealDisk::new())
}

/// One batch of 4 records of 200 bytes, all stamped `ts`.
fn mk(ts: i64) -> Vec<u8> {
    let recs: Vec<SimpleRecord> = (0..4)
        .map(|i| SimpleRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![i as u8; 200]),
            headers: vec![],
            timestamp: ts,
        })
        .collect();
    build_batch(&recs, BatchProducer::default())
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 2000, // two ~900-byte batches per segment
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

/// A log with `n` batches, batch i stamped i * 1000 ms.
fn filled(dir: &Path, cfg: LogConfig, n: i64) -> PartitionLog {
    let mut log = PartitionLog::open(disk(), dir.to_path_buf(), cfg, 0).unwrap();
    for i in 0..n {
        log.append(&mut mk(i * 1000), 0, i * 1000).unwrap();
    }
    log
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

fn assert_out_of_range(log: &PartitionLog, offset: i64) {
    match log.read(offset, 10_000, true) {
        Err(e @ LogError::OffsetOutOfRange { .. }) => assert_eq!(e.error_code(), 1),
        other => panic!("read at {offset} below log start: {other:?}"),
    }
}

#[test]
fn retention_by_time_deletes_old_closed_segments_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let cfg = LogConfig {
        retention_ms: 20_000,
        ..cfg()
    };
    let mut log = filled(&dir, cfg.clone(), 20);
    let segs = log.segment_count();
    assert!(segs >= 9, "{segs} segments");
    let end = log.log_end_offset();
    // Nothing is old enough yet.
    let out = log.apply_retention(10_000, end).unwrap();
    assert_eq!(out.deleted_segments, 0);
    // At 25s, segments whose newest record is more than 20s old go: the
    // first two (batches 0-3, newest at 3s); batch 4 (offset 16) is at 5s.
    let out = log.apply_retention(25_000, end).unwrap();
    assert!(out.deleted_segments > 0);
    let start = log.log_start_offset();
    assert_eq!(out.log_start_offset, start);
    assert!(start > 0);
    assert_eq!(log.segment_count(), segs - out.deleted_segments);
    assert_eq!(start, 16);
    assert_eq!(out.deleted_segments, 2);
    assert_out_of_range(&log, start - 1);
    assert_out_of_range(&log, 0);
    assert!(!log.read(start, 10_000, true).unwrap().records.is_empty());
    // A second pass finds nothing more; the active segment is never deleted
    // even when everything is expired.
    let out = log.apply_retention(1_000_000, end).unwrap();
    assert_eq!(log.segment_count(), 1, "{out:?}");
    let start = log.log_start_offset();
    // Clean reopen and crash reopen both keep the start.
    log.close().unwrap();
    let log = PartitionLog::open(disk(), dir.clone(), cfg.clone(), 0).unwrap();
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), end);
    assert_out_of_range(&log, start - 1);
    drop(log);
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg, 0).unwrap();
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.append(&mut mk(0), 0, 0).unwrap().first_offset, end);
}

#[test]
fn retention_by_bytes_keeps_the_log_within_one_segment_of_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let cfg = LogConfig {
        retention_bytes: 5_000,
        retention_ms: -1,
        ..cfg()
    };
    let mut log = filled(&dir, cfg, 20);
    let before = log.size_bytes();
    let out = log.apply_retention(0, log.log_end_offset()).unwrap();
    assert!(out.deleted_segments > 0);
    assert_eq!(log.size_bytes(), before - out.deleted_bytes);
    assert!(log.size_bytes() >= 5_000 - 2_000, "{}", log.size_bytes());
    assert!(log.size_bytes() < 5_000 + 2_000, "{}", log.size_bytes());
    assert_eq!(segment_files(&dir), log.segment_count());
    assert_out_of_range(&log, log.log_start_offset() - 1);
}

#[test]
fn retention_never_passes_the_high_watermark_nor_runs_under_compact() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 0,
        ..cfg()
    };
    let mut log = filled(&tmp.path().join("a"), cfg.clone(), 20);
    // HW inside the second segment: only the first may go.
    let out = log.apply_retention(1_000_000, 9).unwrap();
    assert_eq!(out.deleted_segments, 1);
    let mut compact = LogConfig {
        cleanup_policy: weir::log::CleanupPolicy::COMPACT,
        ..cfg
    };
    compact.retention_bytes = 0;
    let mut log = filled(&tmp.path().join("b"), compact, 20);
    let out = log
        .apply_retention(1_000_000, log.log_end_offset())
        .unwrap();
    assert_eq!(out.deleted_segments, 0);
}

#[test]
fn delete_records_moves_the_start_and_deletes_segments_below() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = filled(&dir, cfg(), 20);
    let end = log.log_end_offset();
    let hw = end - 8;
    // Above the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
    let e = log.delete_records_before(hw + 1, hw).unwrap_err();
    assert_eq!(e.error_code(), 1);
    assert_eq!(log.log_start_offset(), 0);
    // Inside a segment (batch of offsets 20..24): the start moves there.
    let segs = log.segment_count();
    assert_eq!(log.delete_records_before(22, hw).unwrap(), 22);
    assert_eq!(log.log_start_offset(), 22);
    assert!(log.segment_count() < segs);
    assert_out_of_range(&log, 21);
    // The read at the start returns the batch holding it, as Kafka does.
    let got = log.read(22, 10_000, true).unwrap().records;
    let first = batch::split_batches(&got).unwrap()[0].1;
    assert_eq!(first.base_offset, 20);
    // Lower than the start: a no-op answering the current start.
    assert_eq!(log.delete_records_before(5, hw).unwrap(), 22);
    // -1 means the high watermark.
    assert_eq!(log.delete_records_before(-1, hw).unwrap(), hw);
    assert_eq!(segment_files(&dir), log.segment_count());
    drop(log); // crash
    let log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
    assert_eq!(log.log_start_offset(), hw);
    assert_out_of_range(&log, hw - 1);
    // ListOffsets by timestamp never answers below the start.
    let (off, _) = log.offset_for_timestamp(0).unwrap().unwrap();
    assert!(off >= hw);
}

#[test]
fn crash_during_segment_deletion_is_finished_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = filled(&dir, cfg(), 20);
    let end = log.log_end_offset();
    drop(log);
    // The checkpoint was written, then the crash came after deleting only
    // segment 0's offset index (indexes go before the log).
    let d = RealDisk::new();
    checkpoint::write_log_start(&d, &dir, 41).unwrap();
    std::fs::remove_file(dir.join(format!("{:020}.index", 0))).unwrap();
    // And a checkpoint temp file the crash left behind.
    std::fs::write(dir.join("log-start-offset.checkpoint.tmp"), b"junk").unwrap();
    let log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
    assert_eq!(log.log_start_offset(), 41);
    assert_eq!(log.log_end_offset(), end);
    let first_base = 40; // the segment holding 41 starts at batch 10
    assert!(!dir.join(format!("{:020}.log", 0)).exists());
    assert!(dir.join(format!("{first_base:020}.log")).exists());
    assert_eq!(segment_files(&dir), log.segment_count());
    assert!(!dir.join("log-start-offset.checkpoint.tmp").exists());
    assert_out_of_range(&log, 40);
}

#[test]
fn log_start_above_a_lost_tail_restarts_the_log_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = filled(&dir, cfg(), 4);
    drop(log);
    // The start was recorded at 100 but the records up to it were lost.
    checkpoint::write_log_start(&RealDisk::new(), &dir, 100).unwrap();
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
    assert_eq!(log.log_start_offset(), 100);
    assert_eq!(log.log_end_offset(), 100);
    assert_eq!(log.append(&mut mk(0), 0, 0).unwrap().first_offset, 100);
    assert_eq!(segment_files(&dir), 1);
}
