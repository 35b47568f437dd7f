//! The cleaner off the partition lock: a pass begins under the lock
//! (`begin_clean`), builds its cleaned files on its own handles
//! (`CleanTask::step`, no borrow of the log), and swaps them in under the
//! lock (`finish_clean`). Appends, reads, retention and truncation may run
//! in between; the swap keeps what they did or abandons the pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir::env::{Disk, RealDisk};
use weir::log::batch::{self, build_batch, BatchProducer, SimpleRecord};
use weir::log::{CleanupPolicy, LogConfig, PartitionLog};

fn disk() -> Arc<dyn Disk> {
    Arc::new(RealDisk::new())
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: i64::MAX / 4,
        ..LogConfig::default()
    }
}

fn mk(key: u32, value: u32) -> Vec<u8> {
    build_batch(
        &[SimpleRecord {
            key: Some(format!("key-{key}").into_bytes()),
            value: Some(format!("value-{value}-{}", "x".repeat(20)).into_bytes()),
            headers: vec![],
            timestamp: 1,
        }],
        BatchProducer::default(),
    )
}

/// (offset, key, value) of every record from the log start.
fn read_all(log: &PartitionLog) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.log_end_offset() {
        let slice = log.read(off, 1 << 20, true).unwrap();
        if slice.records.is_empty() {
            break;
        }
        for (range, h) in batch::split_batches(&slice.records).unwrap() {
            for r in batch::decode_records(&slice.records[range]).unwrap() {
                out.push((r.offset, r.key.unwrap().to_vec(), r.value.unwrap().to_vec()));
            }
            off = h.next_offset();
        }
    }
    out
}

/// Key -> (offset, value) of its latest record.
fn latest(recs: &[(i64, Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, (i64, Vec<u8>)> {
    recs.iter()
        .map(|(o, k, v)| (k.clone(), (*o, v.clone())))
        .collect()
}

fn cleaner_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

fn fill(log: &mut PartitionLog, from: u32, n: u32) {
    for i in from..from + n {
        log.append(&mut mk(i % 7, i), 0, 1).unwrap();
    }
}

#[test]
fn appends_and_reads_go_on_while_a_pass_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
    fill(&mut log, 0, 200);
    let before = read_all(&log);
    assert!(log.segment_count() > 5);

    let mut task = log
        .begin_clean(10, log.log_end_offset())
        .unwrap()
        .expect("a pass is due");
    // The task borrows nothing: the log takes appends and reads meanwhile.
    assert!(task.step(), "offset map built, segments to go");
    fill(&mut log, 200, 40);
    assert_eq!(read_all(&log).len(), 240);
    let mut steps = 0;
    while task.step() {
        steps += 1;
        if steps % 2 == 0 {
            fill(&mut log, 240 + steps, 1);
        }
    }
    fill(&mut log, 1000, 10);
    let expected = {
        let mut all = before.clone();
        all.extend(read_all(&log).into_iter().filter(|r| r.0 >= 200));
        all
    };
    let out = log.finish_clean(task).unwrap().expect("the pass applies");
    assert!(out.records_removed > 0);
    assert!(out.segments_rewritten > 0);

    let after = read_all(&log);
    let offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    assert!(after.len() < expected.len(), "something was cleaned");
    assert_eq!(
        latest(&after),
        latest(&expected),
        "latest value per key kept"
    );
    // Everything appended during the pass is still there, untouched.
    let during: Vec<_> = expected.iter().filter(|r| r.0 >= 200).collect();
    for r in during {
        assert!(
            after.contains(r),
            "record appended during the pass lost: {}",
            r.0
        );
    }
    assert!(cleaner_files(&dir).is_empty());

    // The swap is the usual crash-safe one: a reopen serves the same.
    log.close().unwrap();
    let log = PartitionLog::open(disk(), dir, cfg(), 20).unwrap();
    assert_eq!(read_all(&log), after);
}

#[test]
fn retention_during_a_pass_skips_the_deleted_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
    fill(&mut log, 0, 200);
    let mut task = log.begin_clean(10, log.log_end_offset()).unwrap().unwrap();
    task.build();
    // DeleteRecords deletes the first segments while the pass holds
    // cleaned copies of them.
    let end = log.log_end_offset();
    let start = log.delete_records_before(120, end).unwrap();
    assert_eq!(start, 120);
    let remaining: Vec<_> = read_all(&log);
    log.finish_clean(task).unwrap().expect("the pass applies");
    let after = read_all(&log);
    // Only DeleteRecords moved the log start; the cleaner never does.
    assert_eq!(log.log_start_offset(), 120);
    assert!(after.iter().all(|r| r.0 >= 120));
    assert_eq!(latest(&after), latest(&remaining));
    assert!(cleaner_files(&dir).is_empty());
}

#[test]
fn truncation_during_a_pass_abandons_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
    fill(&mut log, 0, 200);
    let mut task = log.begin_clean(10, log.log_end_offset()).unwrap().unwrap();
    task.build();
    log.truncate_to(90).unwrap();
    fill(&mut log, 500, 30);
    let before = read_all(&log);
    assert!(
        log.finish_clean(task).unwrap().is_none(),
        "stale pass dropped"
    );
    assert_eq!(read_all(&log), before, "nothing swapped in");
    assert!(cleaner_files(&dir).is_empty());
    // A fresh pass works on the new layout.
    let out = log.clean(20, log.log_end_offset()).unwrap().unwrap();
    assert!(out.records_removed > 0);
    assert_eq!(latest(&read_all(&log)), latest(&before));
}

#[derive(Clone, Debug)]
enum Op {
    Append(u32),
    DeleteRecords(u8),
    Truncate(u8),
    Begin,
    Step,
    Finish,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0u32..12).prop_map(Op::Append),
        1 => any::<u8>().prop_map(Op::DeleteRecords),
        1 => any::<u8>().prop_map(Op::Truncate),
        2 => Just(Op::Begin),
        3 => Just(Op::Step),
        2 => Just(Op::Finish),
    ]
}

/// Offset `frac`/255 of the way from the log start to its end.
fn between(log: &PartitionLog, frac: u8) -> i64 {
    let (s, e) = (log.log_start_offset(), log.log_end_offset());
    s + (e - s) * frac as i64 / 255
}

/// The log holds a subset of `model`, in offset order, at or above its
/// start, with each key's latest record from where reads begin; then
/// `model` becomes what the log holds (the cleaner's removals are final:
/// a later truncation may legitimately expose an older value as latest).
fn check_and_sync(
    log: &PartitionLog,
    model: &mut BTreeMap<i64, (Vec<u8>, Vec<u8>)>,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let got = read_all(log);
    let start = log.log_start_offset();
    proptest::prop_assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    for (o, k, v) in &got {
        proptest::prop_assert!(*o >= start);
        proptest::prop_assert_eq!(model.get(o), Some(&(k.clone(), v.clone())), "offset {}", o);
    }
    // The cleaner only moves the start over records something later
    // superseded, so every key's latest record from the first one read on
    // survives.
    let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (o, (k, _)) in model.range(got.first().map_or(i64::MAX, |r| r.0)..) {
        want.insert(k.clone(), *o);
    }
    let have: BTreeMap<Vec<u8>, i64> = got.iter().map(|(o, k, _)| (k.clone(), *o)).collect();
    proptest::prop_assert_eq!(have, want);
    let present: std::collections::BTreeSet<i64> = got.iter().map(|r| r.0).collect();
    model.retain(|o, _| present.contains(o));
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// Whatever runs between a pass's begin and finish (appends,
    /// DeleteRecords, truncation, more steps), each pass leaves the log
    /// holding a subset of what was written, in offset order, with each
    /// key's latest record.
    #[test]
    fn interleaved_passes_keep_the_latest_record_per_key(
        ops in proptest::collection::vec(op(), 1..150)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p-0");
        let mut log = PartitionLog::open(disk(), dir.clone(), cfg(), 0).unwrap();
        // Every record the log stored and may still hold: offset -> (key, value).
        let mut model: BTreeMap<i64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
        let mut task = None;
        let mut value = 0u32;
        let mut now = 10;
        for op in ops {
            now += 1;
            match op {
                Op::Append(k) => {
                    value += 1;
                    let info = log.append(&mut mk(k, value), 0, now).unwrap();
                    let key = format!("key-{k}").into_bytes();
                    let v = format!("value-{value}-{}", "x".repeat(20)).into_bytes();
                    model.insert(info.first_offset, (key, v));
                }
                Op::DeleteRecords(f) => {
                    let target = between(&log, f);
                    log.delete_records_before(target, log.log_end_offset()).unwrap();
                }
                Op::Truncate(f) => {
                    log.truncate_to(between(&log, f)).unwrap();
                    proptest::prop_assert!(log.log_start_offset() <= log.log_end_offset());
                    let end = log.log_end_offset();
                    model.retain(|&o, _| o < end);
                }
                Op::Begin => {
                    if task.is_none() {
                        task = log.begin_clean(now, log.log_end_offset()).unwrap();
                    }
                }
                Op::Step => {
                    if let Some(t) = task.as_mut() {
                        t.step();
                    }
                }
                Op::Finish => {
                    if let Some(mut t) = task.take() {
                        t.build();
                        log.finish_clean(t).unwrap();
                        check_and_sync(&log, &mut model)?;
                    }
                }
            }
        }
        if let Some(mut t) = task.take() {
            t.build();
            log.finish_clean(t).unwrap();
        }
        check_and_sync(&log, &mut model)?;
        proptest::prop_assert!(cleaner_files(&dir).is_empty());
        // And a reopen serves the same.
        let before = read_all(&log);
        drop(log);
        let log = PartitionLog::open(disk(), dir, cfg(), now + 1).unwrap();
        proptest::prop_assert_eq!(read_all(&log), before);
    }
}
