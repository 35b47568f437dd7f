//! cleanup.policy=compact: the cleaner keeps each key's latest record at its
//! original offset, honours delete.retention.ms for tombstones, and a crash
//! at any step of its swap leaves a log that serves either the old or the
//! cleaned segment, never half of one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use weir::env::{Disk, RealDisk};
use weir::log::batch::{self, build_batch, BatchProducer, SimpleRecord};
use weir::log::checkpoint::LOG_START_FILE;
use weir::log::{CleanupPolicy, LogConfig, PartitionLog};

fn disk() -> Arc<dyn Disk> {
    Arc::new(RealDisk::new())
}

fn cfg(delete_retention_ms: i64) -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms,
        ..LogConfig::default()
    }
}

/// (key, value) records; value None = tombstone.
fn mk(recs: &[(u8, Option<u32>)], ts: i64) -> Vec<u8> {
    let recs: Vec<SimpleRecord> = recs
        .iter()
        .map(|&(k, v)| SimpleRecord {
            key: Some(format!("key-{k}").into_bytes()),
            value: v.map(|v| format!("value-{v}-{}", "x".repeat(20)).into_bytes()),
            headers: vec![],
            timestamp: ts,
        })
        .collect();
    build_batch(&recs, BatchProducer::default())
}

type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record readable from the log start: (offset, key, value).
fn read_records(log: &PartitionLog) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.log_end_offset() {
        let slice = log.read(off, 1 << 20, true).unwrap();
        if slice.records.is_empty() {
            break;
        }
        for (range, h) in batch::split_batches(&slice.records).unwrap() {
            let b = &slice.records[range];
            for r in batch::decode_records(b).unwrap() {
                out.push((
                    r.offset,
                    r.key.map(|k| k.to_vec()),
                    r.value.map(|v| v.to_vec()),
                ));
            }
            off = h.next_offset();
        }
    }
    out
}

/// Key -> latest value (None = tombstone) by replaying `recs` in order.
fn latest(recs: &[Rec]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let mut m = BTreeMap::new();
    for (_, k, v) in recs {
        m.insert(k.clone().unwrap(), v.clone());
    }
    m
}

fn live(m: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    m.iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

#[test]
fn cleaning_keeps_latest_per_key_at_original_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(i64::MAX / 4), 0).unwrap();
    for i in 0..60u32 {
        log.append(
            &mut mk(
                &[((i % 5) as u8, Some(i)), ((i % 3) as u8, Some(i + 1000))],
                1,
            ),
            0,
            1,
        )
        .unwrap();
    }
    let before = read_records(&log);
    let size_before = log.size_bytes();
    let end = log.log_end_offset();
    let out = log.clean(10, end).unwrap().expect("a pass ran");
    assert!(out.records_removed > 0);
    assert!(log.size_bytes() < size_before);
    let after = read_records(&log);
    assert!(after.len() < before.len());
    assert_eq!(latest(&after), latest(&before));
    // Offsets strictly increase and each survivor is the original record.
    let orig: BTreeMap<i64, &Rec> = before.iter().map(|r| (r.0, r)).collect();
    for w in after.windows(2) {
        assert!(w[0].0 < w[1].0);
    }
    for r in &after {
        assert_eq!(orig[&r.0], r);
    }
    // A second pass with no new dirty data does nothing.
    assert!(log.clean(20, end).unwrap().is_none());
    // Survives a crash reopen and a clean reopen; appends continue at the end.
    drop(log);
    let log = PartitionLog::open(disk(), dir.clone(), cfg(i64::MAX / 4), 0).unwrap();
    assert_eq!(read_records(&log), after);
    log.close().unwrap();
    let mut log = PartitionLog::open(disk(), dir, cfg(i64::MAX / 4), 0).unwrap();
    assert_eq!(read_records(&log), after);
    assert_eq!(
        log.append(&mut mk(&[(1, Some(1))], 1), 0, 1)
            .unwrap()
            .first_offset,
        end
    );
}

/// A key deleted by a tombstone never comes back, even when its older
/// value sits in an idempotent producer's latest batch (an earlier cleaner
/// kept those batches whole, so the value outlived the tombstone).
#[test]
fn a_deleted_key_stays_deleted_when_its_old_value_is_in_a_producers_last_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(disk(), tmp.path().join("c-0"), cfg(1_000), 0).unwrap();
    let idempotent = |recs: &[(u8, Option<u32>)]| {
        let recs: Vec<SimpleRecord> = recs
            .iter()
            .map(|&(k, v)| SimpleRecord {
                key: Some(format!("key-{k}").into_bytes()),
                value: v.map(|v| format!("value-{v}").into_bytes()),
                headers: vec![],
                timestamp: 1,
            })
            .collect();
        build_batch(
            &recs,
            BatchProducer {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 0,
                transactional: false,
            },
        )
    };
    // Producer 7's one and only batch writes key 1; then key 1 is deleted.
    log.append(&mut idempotent(&[(1, Some(0)), (2, Some(0))]), 0, 1)
        .unwrap();
    log.append(&mut mk(&[(1, None)], 1), 0, 1).unwrap();
    for i in 0..20u32 {
        log.append(&mut mk(&[(3, Some(i))], 1), 0, 1).unwrap();
    }
    log.clean(5_000, log.log_end_offset()).unwrap().unwrap();
    // Past the tombstone's horizon, with new dirty data to trigger a pass.
    for i in 0..20u32 {
        log.append(&mut mk(&[(4, Some(i))], 1), 0, 1).unwrap();
    }
    log.clean(7_000, log.log_end_offset()).unwrap().unwrap();
    let recs = read_records(&log);
    let m = latest(&recs);
    assert!(
        !m.contains_key(b"key-1".as_slice()),
        "key 1 was deleted, yet reads {:?}",
        m.get(b"key-1".as_slice())
    );
    assert!(
        m.contains_key(b"key-2".as_slice()),
        "key 2 was never deleted"
    );
}

/// Keys 1 and 2 written 20 times, key 1 deleted, then 20 values of key 3,
/// so the tombstone's segment is closed.
fn write_key_1_then_its_tombstone(log: &mut PartitionLog) {
    for i in 0..20u32 {
        log.append(&mut mk(&[(1, Some(i)), (2, Some(i))], 1), 0, 1)
            .unwrap();
    }
    log.append(&mut mk(&[(1, None)], 1), 0, 1).unwrap();
    for i in 0..20u32 {
        log.append(&mut mk(&[(3, Some(i))], 1), 0, 1).unwrap();
    }
}

/// A topic that stops receiving writes still loses its tombstones once
/// delete.retention.ms has passed: the horizon itself calls for a pass,
/// whatever the dirty ratio (and only once per horizon).
#[test]
fn an_idle_log_drops_expired_tombstones_without_new_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..cfg(1_000)
    };
    let mut log = PartitionLog::open(disk(), tmp.path().join("c-0"), c, 0).unwrap();
    write_key_1_then_its_tombstone(&mut log);
    let end = log.log_end_offset();
    log.clean(5_000, end).unwrap().unwrap();
    let has_key_1 =
        |log: &PartitionLog| latest(&read_records(log)).contains_key(b"key-1".as_slice());
    assert!(has_key_1(&log), "the tombstone is kept at first");
    // Nothing new to clean and the horizon (6 000) not reached: no pass.
    assert!(log.clean(5_500, end).unwrap().is_none());
    assert!(has_key_1(&log));
    // The horizon passed: a pass runs though nothing is dirty.
    assert!(log.clean(6_000, end).unwrap().is_some());
    assert!(!has_key_1(&log), "the tombstone outlived its horizon");
    assert!(latest(&read_records(&log)).contains_key(b"key-2".as_slice()));
    // That horizon was served: no further pass for it.
    assert!(log.clean(6_100, end).unwrap().is_none());
}

#[test]
fn tombstones_live_for_delete_retention_after_their_segment_is_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(disk(), tmp.path().join("c-0"), cfg(1_000), 0).unwrap();
    write_key_1_then_its_tombstone(&mut log);
    let end = log.log_end_offset();
    log.clean(5_000, end).unwrap().unwrap();
    let recs = read_records(&log);
    let m = latest(&recs);
    assert_eq!(
        m[&b"key-1".to_vec()],
        None,
        "the tombstone is kept at first"
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r.1.as_deref() == Some(b"key-1"))
            .count(),
        1
    );
    // New dirty data, and a pass before the horizon: still there.
    for i in 0..20u32 {
        log.append(&mut mk(&[(4, Some(i))], 1), 0, 1).unwrap();
    }
    log.clean(5_500, log.log_end_offset()).unwrap().unwrap();
    assert!(latest(&read_records(&log)).contains_key(b"key-1".as_slice()));
    // After delete.retention.ms since its segment was first cleaned: gone.
    for i in 0..20u32 {
        log.append(&mut mk(&[(5, Some(i))], 1), 0, 1).unwrap();
    }
    log.clean(6_000, log.log_end_offset()).unwrap().unwrap();
    let recs = read_records(&log);
    assert!(!latest(&recs).contains_key(b"key-1".as_slice()));
    assert!(latest(&recs).contains_key(b"key-2".as_slice()));
}

fn c_ratio() -> LogConfig {
    LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..cfg(60_000)
    }
}

#[test]
fn dirty_ratio_and_compaction_lag_gate_the_pass() {
    let tmp = tempfile::tempdir().unwrap();
    // (A delete.retention.ms of 0 would earn a follow-up pass for the
    // tombstones of segments just cleaned for the first time.)
    let c = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 1_000,
        ..cfg(60_000)
    };
    let mut log = PartitionLog::open(disk(), tmp.path().join("c-0"), c, 0).unwrap();
    for i in 0..40u32 {
        log.append(&mut mk(&[(1, Some(i))], 100), 0, 100).unwrap();
    }
    let end = log.log_end_offset();
    // Records at 100 ms are younger than the lag at 500 ms.
    assert!(log.clean(500, end).unwrap().is_none());
    assert!(log.dirty_ratio(2_000, end) > 0.99);
    // Nothing cleanable above the last stable offset.
    assert!(log.clean(2_000, 0).unwrap().is_none());
    assert!(log.clean(2_000, end).unwrap().is_some());
    assert!(
        log.clean(2_000, end).unwrap().is_none(),
        "nothing new is dirty"
    );
    // Distinct keys: cleaning keeps everything, so a little new dirt stays
    // below the ratio.
    let mut keep = PartitionLog::open(disk(), tmp.path().join("k-0"), c_ratio(), 0).unwrap();
    for i in 0..200u32 {
        keep.append(&mut mk(&[((i % 250) as u8, Some(i))], 100), 0, 100)
            .unwrap();
    }
    let out = keep.clean(2_000, keep.log_end_offset()).unwrap().unwrap();
    assert_eq!(out.records_removed, 0);
    let segs = keep.segment_count();
    while keep.segment_count() < segs + 2 {
        keep.append(&mut mk(&[(251, Some(1))], 100), 0, 100)
            .unwrap();
    }
    let r = keep.dirty_ratio(2_000, keep.log_end_offset());
    assert!(r > 0.0 && r < 0.5, "{r}");
    assert!(keep.clean(2_000, keep.log_end_offset()).unwrap().is_none());
    // Under cleanup.policy=delete the cleaner never runs.
    let mut del =
        PartitionLog::open(disk(), tmp.path().join("d-0"), LogConfig::default(), 0).unwrap();
    del.append(&mut mk(&[(1, Some(1))], 1), 0, 1).unwrap();
    assert!(del.clean(0, 1).unwrap().is_none());
}

#[test]
fn idempotent_producer_state_survives_cleaning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(0), 0).unwrap();
    let p = |seq| BatchProducer {
        producer_id: 9,
        producer_epoch: 0,
        base_sequence: seq,
        transactional: false,
    };
    let rec = |v: u32| SimpleRecord {
        key: Some(b"same".to_vec()),
        value: Some(format!("{v:0>40}").into_bytes()),
        headers: vec![],
        timestamp: 1,
    };
    for i in 0..30 {
        log.append(
            &mut build_batch(&[rec(i), rec(i + 100)], p(2 * i as i32)),
            0,
            1,
        )
        .unwrap();
    }
    // Finish with plain records so the producer's batches are all closed.
    for i in 0..10 {
        log.append(&mut mk(&[(7, Some(i))], 1), 0, 1).unwrap();
    }
    log.clean(10, log.log_end_offset()).unwrap().unwrap();
    drop(log);
    // Lose the producer snapshots: state must come back from the cleaned log.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut log = PartitionLog::open(disk(), dir, cfg(0), 0).unwrap();
    // A retry of the last batch is a duplicate; the next sequence appends.
    let dup = log
        .append(&mut build_batch(&[rec(29), rec(129)], p(58)), 0, 1)
        .unwrap();
    assert!(dup.duplicate);
    let next = log
        .append(&mut build_batch(&[rec(30)], p(60)), 0, 1)
        .unwrap();
    assert!(!next.duplicate);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Crash at each step of the swap: `.cleaned` left (discarded), `.swap`
/// left with or without the old indexes (completed), both kinds at once.
#[test]
fn crash_during_cleaning_serves_old_or_cleaned_never_half() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("orig");
    let mut log = PartitionLog::open(disk(), orig.clone(), cfg(i64::MAX / 4), 0).unwrap();
    for i in 0..40u32 {
        // The first records' keys are never overwritten: segment 0 keeps
        // some records after cleaning.
        let k = if i < 3 { 50 + i as u8 } else { (i % 4) as u8 };
        log.append(&mut mk(&[(k, Some(i))], 1), 0, 1).unwrap();
    }
    let end = log.log_end_offset();
    let before = read_records(&log);
    let mut bases: Vec<i64> = std::fs::read_dir(&orig)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    let seg1 = bases[1];
    drop(log);
    // The cleaned result, made in a copy.
    let cleaned = tmp.path().join("cleaned");
    copy_dir(&orig, &cleaned);
    let mut log = PartitionLog::open(disk(), cleaned.clone(), cfg(i64::MAX / 4), 0).unwrap();
    log.clean(10, end).unwrap().unwrap();
    let after = read_records(&log);
    drop(log);
    assert_ne!(before, after);
    let seg0 = format!("{:020}", 0);
    for case in 0..4 {
        let dir = tmp.path().join(format!("case{case}"));
        copy_dir(&orig, &dir);
        let cleaned0 = std::fs::read(cleaned.join(format!("{seg0}.log"))).unwrap();
        match case {
            // Crash while writing `.cleaned`: a torn prefix.
            0 => std::fs::write(dir.join(format!("{seg0}.log.cleaned")), &cleaned0[..7]).unwrap(),
            // Crash right after the rename to `.swap`.
            1 => std::fs::write(dir.join(format!("{seg0}.log.swap")), &cleaned0).unwrap(),
            // Crash after the old indexes went, before the final rename.
            2 => {
                std::fs::write(dir.join(format!("{seg0}.log.swap")), &cleaned0).unwrap();
                std::fs::remove_file(dir.join(format!("{seg0}.index"))).unwrap();
                std::fs::remove_file(dir.join(format!("{seg0}.timeindex"))).unwrap();
            }
            // Both at once on different segments.
            _ => {
                std::fs::write(dir.join(format!("{seg0}.log.swap")), &cleaned0).unwrap();
                std::fs::write(dir.join(format!("{seg1:020}.log.cleaned")), b"torn").unwrap();
            }
        }
        let log = PartitionLog::open(disk(), dir.clone(), cfg(i64::MAX / 4), 0).unwrap();
        let got = read_records(&log);
        assert_eq!(latest(&got), latest(&before), "case {case}");
        if case == 0 {
            assert_eq!(got, before, "an uncommitted swap changes nothing");
        } else {
            let seg0_after: Vec<_> = after.iter().filter(|r| r.0 < seg1).cloned().collect();
            let seg0_got: Vec<_> = got.iter().filter(|r| r.0 < seg1).cloned().collect();
            assert!(!seg0_got.is_empty());
            assert_eq!(
                seg0_got, seg0_after,
                "case {case}: the committed swap is served"
            );
        }
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .count();
        assert_eq!(leftovers, 0, "case {case}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<(u8, Option<u32>)>),
    Clean,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u8..12, prop::option::weighted(0.85, 0u32..1000)), 1..5)
            .prop_map(Op::Append),
        1 => Just(Op::Clean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random keyed appends with tombstones over many segments, cleaned at
    /// random moments: readers from the start end with each key's latest
    /// value; survivors keep their original offsets; tombstones stay while
    /// delete.retention.ms has not passed.
    #[test]
    fn cleaner_preserves_latest_values(
        ops in prop::collection::vec(op(), 1..80),
        expire in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p-0");
        let retention = if expire { 0 } else { i64::MAX / 4 };
        let mut log = PartitionLog::open(disk(), dir.clone(), cfg(retention), 0).unwrap();
        let mut all: Vec<Rec> = Vec::new();
        let mut now = 0;
        for op in &ops {
            now += 10;
            match op {
                Op::Append(recs) => {
                    let info = log.append(&mut mk(recs, now), 0, now).unwrap();
                    for (i, (k, v)) in recs.iter().enumerate() {
                        let b = mk(&[(*k, *v)], now);
                        let r = batch::decode_records(&b).unwrap().remove(0);
                        all.push((info.first_offset + i as i64, r.key.map(|k| k.to_vec()), r.value.map(|v| v.to_vec())));
                    }
                }
                Op::Clean => {
                    let end = log.log_end_offset();
                    log.clean(now, end).unwrap();
                }
            }
        }
        let end = log.log_end_offset();
        log.clean(now + 10, end).unwrap();
        let got = read_records(&log);
        let orig: BTreeMap<i64, &Rec> = all.iter().map(|r| (r.0, r)).collect();
        for w in got.windows(2) {
            prop_assert!(w[0].0 < w[1].0, "offsets strictly increase");
        }
        for r in &got {
            prop_assert_eq!(orig[&r.0], r, "a survivor is the original record");
        }
        // The snapshot a reader from 0 ends with equals the latest values.
        prop_assert_eq!(live(&latest(&got)), live(&latest(&all)));
        // The cleaner never moves the log start.
        prop_assert_eq!(log.log_start_offset(), 0);
        if !expire {
            // Never expiring: every key whose latest record is a tombstone
            // still has it.
            prop_assert_eq!(latest(&got), latest(&all));
        }
        // And all of it survives a crash reopen.
        drop(log);
        let log = PartitionLog::open(disk(), dir, cfg(retention), 0).unwrap();
        prop_assert_eq!(log.log_start_offset(), 0);
        prop_assert_eq!(read_records(&log), got);
    }
}

/// Segment 0 holds only key 1 (superseded later) and key 3 with its
/// tombstone (key 3 is never written again); the next segments hold key 1
/// and key 2. After a pass and another past delete.retention.ms nothing of
/// segment 0 survives. Returns the base of segment 1.
fn empty_the_first_segment(log: &mut PartitionLog, retention_ms: i64) -> i64 {
    log.append(&mut mk(&[(3, Some(0))], 1), 0, 1).unwrap();
    log.append(&mut mk(&[(3, None)], 1), 0, 1).unwrap();
    while log.segment_count() < 2 {
        log.append(&mut mk(&[(1, Some(0))], 1), 0, 1).unwrap();
    }
    let seg1 = log.log_end_offset() - 1;
    for i in 0..30u32 {
        log.append(&mut mk(&[(1, Some(i)), (2, Some(i))], 1), 0, 1)
            .unwrap();
    }
    let end = log.log_end_offset();
    log.clean(5_000, end).unwrap().unwrap();
    assert!(
        latest(&read_records(log)).contains_key(b"key-3".as_slice()),
        "the tombstone is kept at first"
    );
    log.clean(5_000 + retention_ms, end).unwrap().unwrap();
    let recs = read_records(log);
    assert!(
        recs.iter().all(|r| r.0 >= seg1),
        "segment 0 is emptied: {:?}",
        recs.first()
    );
    seg1
}

/// The cleaner never moves the log start offset (as Kafka's: only
/// retention and DeleteRecords do). A first segment it empties entirely
/// leaves the start where it was, through a clean and a crash reopen
/// (without a log-start checkpoint: none was ever written); a read at the
/// start returns the first surviving batch, where a consumer whose
/// position lies in the emptied range continues.
#[test]
fn emptying_the_first_segment_leaves_the_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(1_000), 0).unwrap();
    let seg1 = empty_the_first_segment(&mut log, 1_000);
    let survivors = read_records(&log);
    let first_survivor = survivors[0].0;
    assert!(first_survivor >= seg1);
    let check = |log: &PartitionLog, when: &str| {
        // ListOffsets EARLIEST answers the log start.
        assert_eq!(log.log_start_offset(), 0, "{when}: log start moved");
        for offset in [0, 1, seg1 - 1, first_survivor] {
            let slice = log.read(offset, 1 << 20, true).unwrap();
            let (_, h) = batch::split_batches(&slice.records).unwrap()[0].clone();
            assert!(
                h.base_offset <= first_survivor && h.last_offset() >= first_survivor,
                "{when}: a read at {offset} starts with the first survivor"
            );
        }
        // ListOffsets by timestamp finds the first survivor.
        assert_eq!(
            log.offset_for_timestamp(0).unwrap().map(|(o, _)| o),
            Some(first_survivor),
            "{when}"
        );
        assert_eq!(read_records(log), survivors, "{when}");
    };
    check(&log, "after cleaning");
    // More passes (nothing new, then new data) leave it too.
    for i in 0..10u32 {
        log.append(&mut mk(&[(1, Some(100 + i))], 1), 0, 1).unwrap();
    }
    log.clean(10_000, log.log_end_offset()).unwrap();
    let survivors = read_records(&log);
    assert_eq!(log.log_start_offset(), 0);
    // No log-start checkpoint was ever written: open takes the start from
    // the first segment's base, which the cleaner kept.
    assert!(!dir.join(LOG_START_FILE).exists());
    // Crash reopen: no clean-shutdown marker.
    drop(log);
    let log = PartitionLog::open(disk(), dir.clone(), cfg(1_000), 0).unwrap();
    assert_eq!(log.log_start_offset(), 0, "after a crash reopen");
    assert_eq!(read_records(&log), survivors);
    // Clean reopen.
    log.close().unwrap();
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(1_000), 0).unwrap();
    assert_eq!(log.log_start_offset(), 0, "after a clean reopen");
    assert_eq!(read_records(&log), survivors);
    // DeleteRecords into the emptied range moves the start there, and only
    // there; a reopen keeps the checkpointed value.
    let end = log.log_end_offset();
    assert_eq!(log.delete_records_before(1, end).unwrap(), 1);
    drop(log);
    let log = PartitionLog::open(disk(), dir, cfg(1_000), 0).unwrap();
    assert_eq!(log.log_start_offset(), 1);
    assert_eq!(read_records(&log), survivors);
}

/// A follower truncating into the range the cleaner emptied (its leader's
/// log diverged there) keeps its log start and appends on.
#[test]
fn truncation_into_the_emptied_range_keeps_the_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(1_000), 0).unwrap();
    let seg1 = empty_the_first_segment(&mut log, 1_000);
    log.truncate_to(seg1 - 1).unwrap();
    assert_eq!(log.log_start_offset(), 0);
    assert!(log.log_end_offset() < seg1);
    assert!(read_records(&log).is_empty());
    let end = log.log_end_offset();
    let info = log.append(&mut mk(&[(9, Some(9))], 1), 0, 1).unwrap();
    assert_eq!(info.first_offset, end);
    drop(log);
    let log = PartitionLog::open(disk(), dir, cfg(1_000), 0).unwrap();
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(read_records(&log).len(), 1);
}

/// Segments the cleaner empties are deleted, except the first, which stays
/// as an empty file so the log start does not move. Under compact,delete
/// that empty segment does not shield the ones after it from retention, nor
/// expire on its own: only retention moves the start, once a segment after
/// it holding records expires.
#[test]
fn segments_the_cleaner_empties_are_deleted_but_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let c = LogConfig {
        cleanup_policy: CleanupPolicy {
            compact: true,
            delete: true,
        },
        retention_ms: 1_000,
        ..cfg(0)
    };
    let mut log = PartitionLog::open(disk(), tmp.path().join("c-0"), c, 0).unwrap();
    // Segment 0: only key 1, all superseded later. Its records are as young
    // as the rest.
    while log.segment_count() < 2 {
        log.append(&mut mk(&[(1, Some(0))], 5_000), 0, 5_000)
            .unwrap();
    }
    let seg1 = log.log_end_offset() - 1;
    // The survivors (the last batches) are younger than the rest.
    for i in 0..30u32 {
        let ts = if i >= 20 { 20_000 } else { 5_000 };
        log.append(&mut mk(&[(1, Some(i)), (2, Some(i))], ts), 0, ts)
            .unwrap();
    }
    let end = log.log_end_offset();
    let segs = log.segment_count();
    log.clean(5_000, end).unwrap().unwrap();
    let recs = read_records(&log);
    assert!(recs.iter().all(|r| r.0 >= seg1), "segment 0 was emptied");
    assert!(log.segment_count() < segs, "emptied segments are deleted");
    assert_eq!(log.log_start_offset(), 0, "the cleaner moved the log start");
    // Every record is younger than retention.ms: retention deletes nothing,
    // not even the empty first segment.
    let out = log.apply_retention(5_500, end).unwrap();
    assert_eq!(out.deleted_segments, 0, "{out:?}");
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(latest(&read_records(&log)).len(), 2);
    // Alone it never expires, though older than retention.ms.
    let out = log.apply_retention(10_000, end).unwrap();
    assert_eq!(out.deleted_segments, 0, "{out:?}");
    assert_eq!(log.log_start_offset(), 0);
    // Once a segment after it holding records expires, retention takes the
    // empty one with it, and the start moves.
    let segs = log.segment_count();
    while log.segment_count() < segs + 1 {
        log.append(&mut mk(&[(3, Some(0))], 20_000), 0, 20_000)
            .unwrap();
    }
    let out = log.apply_retention(30_000, log.log_end_offset()).unwrap();
    assert!(out.deleted_segments >= 2, "{out:?}");
    assert!(log.log_start_offset() > seg1);
}

/// Batches the cleaner partly empties are re-encoded in their own codec,
/// keep their last offset, producer fields and LogAppendTime stamp.
#[test]
fn rewritten_batches_keep_codec_offsets_and_header_fields() {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    for (codec, id) in [
        (Compression::None, 0),
        (Compression::Gzip, 1),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let c = LogConfig {
            log_append_time: true,
            segment_bytes: 2_000,
            ..cfg(0)
        };
        let mut log = PartitionLog::open(disk(), tmp.path().join("c-0"), c, 0).unwrap();
        let mut seq = 0;
        for round in 0..6u32 {
            // Keys a, b, c, d: "a" and "b" are overwritten every round.
            let recs: Vec<SimpleRecord> = ["a", "b", &format!("c{round}"), &format!("d{round}")]
                .iter()
                .map(|k| SimpleRecord {
                    key: Some(k.as_bytes().to_vec()),
                    value: Some(format!("{k}-{round}-{}", "x".repeat(200)).into_bytes()),
                    headers: vec![],
                    timestamp: 7,
                })
                .collect();
            let plain = build_batch(
                &recs,
                BatchProducer {
                    producer_id: 4,
                    producer_epoch: 0,
                    base_sequence: seq,
                    transactional: false,
                },
            );
            seq += 4;
            let records = batch::decode_records(&plain).unwrap();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: codec,
                },
            )
            .unwrap();
            log.append(&mut buf.to_vec(), 3, 1_000 + round as i64)
                .unwrap();
        }
        // Plain records after, so the producer's last batches are closed
        // but still protected (its dedupe window holds five batches).
        for i in 0..20u32 {
            log.append(&mut mk(&[(9, Some(i))], 1), 3, 2_000).unwrap();
        }
        let before = read_records(&log);
        log.clean(10, log.log_end_offset()).unwrap().unwrap();
        let after = read_records(&log);
        assert!(after.len() < before.len(), "{codec:?}");
        assert_eq!(latest(&after), latest(&before), "{codec:?}");
        let slice = log.read(0, 1 << 20, true).unwrap().records;
        let first = batch::split_batches(&slice).unwrap()[0].1;
        // The first batch lost "a" and "b" (offsets 0, 1): re-encoded.
        assert_eq!(first.compression(), id, "{codec:?}");
        assert_eq!(first.base_offset, 2, "{codec:?}");
        assert_eq!(first.last_offset(), 3, "{codec:?}: last offset kept");
        assert_eq!(first.record_count, 2);
        assert_eq!((first.producer_id, first.producer_epoch), (4, 0));
        assert_eq!(
            first.base_sequence, 2,
            "{codec:?}: sequence follows the offset"
        );
        assert_eq!(first.last_sequence(), 3);
        assert!(first.is_log_append_time());
        assert_eq!(first.max_timestamp, 1_000, "{codec:?}: append time kept");
        assert_eq!(first.partition_leader_epoch, 3);
    }
}
