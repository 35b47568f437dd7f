//! Teeth for the keyed workload's checkers: take a real, clean history of a
//! compacted (or retention-limited) topic, break one guarantee in it the way
//! a broker bug would, and the checker must name exactly that. Simulator
//! build only.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use weir_jepsen::{analyze, AnomalyKind, Key, MicroOp, Op, OpType, OpValue, Process};
use weir_sim::{run_seed, Scenario};

fn clean_history(name: &str) -> Vec<Op> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    let mut s = Scenario::load(p).unwrap();
    s.fault_s = 6;
    s.heal_s = 3;
    let o = run_seed(&s, 3, false);
    assert!(!o.failed(), "{name}: {:?}", o.reasons());
    let report = analyze(&o.history);
    assert!(report.valid, "{}", report.to_json());
    o.history
}

fn mops_mut(op: &mut Op) -> &mut [MicroOp] {
    match &mut op.value {
        OpValue::Mops(m) => m,
        _ => &mut [],
    }
}

/// The final reader's process and the index of its `final-read` op.
fn final_reader(history: &[Op]) -> (Process, u64) {
    history
        .iter()
        .rev()
        .find(|op| {
            op.kind == OpType::Ok
                && op
                    .mops()
                    .iter()
                    .any(|m| matches!(m, MicroOp::FinalRead { .. }))
        })
        .map(|op| (op.process.clone(), op.index))
        .expect("the history has a final read")
}

/// Per (partition, record key), the records of the final read by offset.
fn final_records(history: &[Op]) -> BTreeMap<(Key, Key), BTreeMap<i64, i64>> {
    let (reader, from) = final_reader(history);
    let mut out: BTreeMap<(Key, Key), BTreeMap<i64, i64>> = BTreeMap::new();
    for op in history
        .iter()
        .filter(|op| op.process == reader && op.index > from)
    {
        for m in op.mops() {
            if let MicroOp::KeyedPoll(reads) = m {
                for (p, records) in reads {
                    for r in records {
                        out.entry((p.clone(), r.record_key.clone()))
                            .or_default()
                            .insert(r.offset, r.value);
                    }
                }
            }
        }
    }
    out
}

/// Remove `(partition, value)` from every poll of the final reader.
fn drop_from_final_read(history: &mut [Op], partition: &Key, value: i64) {
    let (reader, from) = final_reader(history);
    for op in history
        .iter_mut()
        .filter(|op| op.process == reader && op.index > from)
    {
        for m in mops_mut(op) {
            if let MicroOp::KeyedPoll(reads) = m {
                if let Some(records) = reads.get_mut(partition) {
                    records.retain(|r| r.value != value);
                }
            }
        }
    }
}

/// The compaction checker names a missing latest value `lost-latest`.
#[test]
fn a_final_read_missing_a_keys_latest_value_is_lost_latest() {
    let mut history = clean_history("compaction-crash");
    let records = final_records(&history);
    let ((partition, _), by_offset) = records
        .iter()
        .find(|(_, r)| !r.is_empty())
        .expect("the final read read something");
    let (_, &latest) = by_offset.last_key_value().unwrap();
    drop_from_final_read(&mut history, &partition.clone(), latest);
    let report = analyze(&history);
    assert_eq!(report.names(), vec!["lost-latest"], "{}", report.to_json());
}

/// A log that holds an older value of a key above a newer one (what a
/// half-cleaned segment served, or a cleaned-away value brought back,
/// shows): swap the two values' places everywhere in the history, acks and
/// reads alike, so the log is self-consistent but out of send order.
#[test]
fn an_older_value_above_a_newer_one_is_stale_value() {
    let mut history = clean_history("compaction-crash");
    // Two acknowledged sends to one key, the second begun after the first
    // ended: values (a, b) at offsets (oa < ob).
    let mut acked: BTreeMap<(Key, Key), Vec<(i64, i64)>> = BTreeMap::new();
    for op in history.iter().filter(|op| op.kind == OpType::Ok) {
        for m in op.mops() {
            if let MicroOp::KeyedSend {
                key,
                record_key,
                offset: Some(o),
                value,
                ..
            } = m
            {
                acked
                    .entry((key.clone(), record_key.clone()))
                    .or_default()
                    .push((*o, *value));
            }
        }
    }
    let sends = acked.values().find(|v| v.len() > 3).expect("a busy key");
    // The key's first and last acknowledged sends of the run: the last
    // began seconds after the first was acknowledged.
    let (oa, a) = sends[0];
    let (ob, b) = *sends.last().unwrap();
    assert!(oa < ob && a < b);
    for op in history.iter_mut() {
        for m in mops_mut(op) {
            match m {
                MicroOp::KeyedSend { offset, value, .. } => {
                    if *value == a {
                        *offset = offset.map(|_| ob);
                    } else if *value == b {
                        *offset = offset.map(|_| oa);
                    }
                }
                MicroOp::KeyedPoll(reads) => {
                    for records in reads.values_mut() {
                        for r in records.iter_mut() {
                            if r.value == a {
                                r.value = b;
                            } else if r.value == b {
                                r.value = a;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let report = analyze(&history);
    assert!(
        report.kinds().contains(&AnomalyKind::StaleValue),
        "{}",
        report.to_json()
    );
    assert_eq!(report.names(), vec!["stale-value"], "{}", report.to_json());
}

/// Under retention, a committed record at or above the final log start
/// missing from the final read is `lost-retained`; a log start probed lower
/// after a higher one was seen is `log-start-regression`.
#[test]
fn retention_teeth_lost_retained_and_log_start_regression() {
    let clean = clean_history("retention-crash");
    let mut history = clean.clone();
    let records = final_records(&history);
    let ((partition, _), by_offset) = records
        .iter()
        .find(|(_, r)| r.len() > 1)
        .expect("the final read read something");
    let (_, &first) = by_offset.first_key_value().unwrap();
    drop_from_final_read(&mut history, &partition.clone(), first);
    let report = analyze(&history);
    assert_eq!(
        report.names(),
        vec!["lost-retained"],
        "{}",
        report.to_json()
    );

    // The last probe before the final read sees the log start at 0 again.
    let mut history = clean;
    let (_, from) = final_reader(&history);
    let probe = history
        .iter_mut()
        .rev()
        .filter(|op| op.index < from && op.kind == OpType::Ok)
        .find_map(|op| {
            mops_mut(op).iter_mut().find_map(|m| match m {
                MicroOp::Bounds(b) if b.values().any(|(s, _)| *s > 0) => Some(b),
                _ => None,
            })
        })
        .expect("a probe saw the log start move");
    for bound in probe.values_mut() {
        bound.0 = 0;
    }
    let report = analyze(&history);
    assert_eq!(
        report.names(),
        vec!["log-start-regression"],
        "{}",
        report.to_json()
    );
}
