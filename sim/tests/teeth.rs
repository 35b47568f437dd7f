//! Teeth: a deliberately broken guarantee must fail a run with the right
//! anomaly named. Simulator build only.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use weir_jepsen::{analyze, MicroOp, OpF, OpType, OpValue};
use weir_sim::history::forget_reads_of;
use weir_sim::{run_seed, Scenario};

fn load(rel: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(rel);
    let mut s = Scenario::load(p).unwrap();
    // Keep the first assignment: reassigning trips a known client bug
    // (CONSUMER_PANIC in tests/scenarios.rs) that is not what these test.
    s.workload.reassign_probability = 0.0;
    s
}

/// SimDisk's lying fsync under fsync-per-batch and machine crashes: the
/// scenario claims no loss, so the run must fail and name lost-write.
#[test]
fn lying_fsync_with_crashes_is_reported_as_lost_write() {
    let mut s = load("teeth/lying-fsync.toml");
    s.fault_s = 10;
    s.heal_s = 4;
    let mut named = Vec::new();
    for seed in 0..3 {
        let o = run_seed(&s, seed, false);
        assert!(o.failed(), "seed {seed}: a lying fsync went unnoticed");
        named.extend(o.anomaly_names());
    }
    assert!(
        named.contains(&"lost-write"),
        "lost-write not named; found {named:?}"
    );
}

/// The same scenario with an honest disk passes: the failure above comes
/// from the lie, not from the harness.
#[test]
fn honest_fsync_with_crashes_passes() {
    let mut s = load("teeth/lying-fsync.toml");
    s.fault_s = 10;
    s.heal_s = 4;
    s.disk.lying_fsync = false;
    // Plain (non-idempotent) producers may duplicate a record on a retry
    // after a crash; that is Kafka's contract too, not a loss.
    s.expect.allowed = vec!["duplicate".to_string()];
    let o = run_seed(&s, 0, false);
    assert!(!o.failed(), "{:?}", o.reasons());
}

/// Take a clean history and make the consumers forget one acknowledged
/// write that later records follow: the checker must call it lost-write.
#[test]
fn a_history_missing_one_acknowledged_write_is_lost_write() {
    // No faults: a clean history is the point of departure.
    let mut s = load("crash-durable.toml");
    s.fault_s = 5;
    s.heal_s = 3;
    s.faults = weir_sim::scenario::FaultSpec::default();
    let o = run_seed(&s, 1, false);
    assert!(!o.failed(), "{:?}", o.reasons());
    let mut history = o.history.clone();
    assert!(analyze(&history).valid);
    // The acknowledged sends per key, by offset.
    let mut acked: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for op in &history {
        if op.f != OpF::Send || op.kind != OpType::Ok {
            continue;
        }
        if let OpValue::Mops(mops) = &op.value {
            for m in mops {
                if let MicroOp::Send {
                    key: weir_jepsen::Key::Int(k),
                    offset: Some(off),
                    value,
                } = m
                {
                    acked.entry(*k).or_default().insert(*off, *value);
                }
            }
        }
    }
    // A write in the middle of a key's log, so later writes were read past it.
    let (key, by_offset) = acked
        .iter()
        .find(|(_, m)| m.len() > 4)
        .expect("some key got several writes");
    let (_, value) = by_offset.iter().nth(by_offset.len() / 2).unwrap();
    forget_reads_of(&mut history, *key, *value);
    let report = analyze(&history);
    assert!(
        report.names().contains(&"lost-write"),
        "expected lost-write, got {:?}",
        report.names()
    );
}

/// Take a clean consumer-group history and make the observer's last read
/// of the committed offsets show one partition lower than an earlier
/// read: the checker must name nonmonotonic-commit (and lost-commit, as an
/// acknowledged commit now reads lower).
#[test]
fn a_committed_offset_going_back_is_nonmonotonic_commit() {
    let mut s = load("group-coordinator-failover.toml");
    s.fault_s = 6;
    s.heal_s = 4;
    s.faults = weir_sim::scenario::FaultSpec::default();
    let o = run_seed(&s, 1, false);
    assert!(!o.failed(), "{:?}", o.reasons());
    let mut history = o.history.clone();
    assert!(analyze(&history).valid);
    let last = history
        .iter()
        .rposition(|op| {
            op.f == OpF::Committed && op.kind == OpType::Ok && op.offsets().values().any(|o| *o > 0)
        })
        .expect("the observer read some committed offset");
    if let OpValue::Offsets(offsets) = &mut history[last].value {
        let (_, o) = offsets
            .iter_mut()
            .find(|(_, o)| **o > 0)
            .expect("found above");
        *o = 0;
    }
    let names = analyze(&history).names();
    assert!(
        names.contains(&"nonmonotonic-commit") && names.contains(&"lost-commit"),
        "expected nonmonotonic-commit and lost-commit, got {names:?}"
    );
}
