//! The real-process runner (`weir_sim::real`) against real `weir server`
//! processes. These tests start clusters of real processes, so they need a
//! built broker and are ignored by default; scripts/test runs them:
//!
//! ```text
//! cargo build --release -p weir --bin weir
//! WEIR_BIN=target/release/weir cargo test --release -p weir-sim --test real -- --ignored
//! ```
//!
//! They run on loopback (no network namespaces, so no partitions) and
//! without faults: they test the runner and the checker's teeth on a real
//! history, not Weir under faults (`weir-sim real` does that).
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::path::PathBuf;

use weir_jepsen::{analyze, Key, MicroOp, OpF, OpType, OpValue};
use weir_sim::history::forget_reads_of;
use weir_sim::real::{run, RealOptions};
use weir_sim::scenario::FaultSpec;
use weir_sim::Scenario;

fn weir_bin() -> PathBuf {
    let p = std::env::var_os("WEIR_BIN")
        .map(PathBuf::from)
        .expect("set WEIR_BIN to a built weir binary (cargo build --release -p weir --bin weir)");
    assert!(p.is_file(), "WEIR_BIN={} is not a file", p.display());
    p
}

/// The CI scenario, fault-free and short.
fn quiet_scenario() -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/real/cluster-kill-pause-partition.toml");
    let mut s = Scenario::load(p).unwrap();
    s.fault_s = 6;
    s.heal_s = 3;
    s.faults = FaultSpec::default();
    s
}

fn options(seed: u64) -> RealOptions {
    RealOptions {
        seed,
        weir_bin: weir_bin(),
        namespaces: false,
        keep_dir: false,
    }
}

/// A real cluster's clean history passes; made to forget one acknowledged
/// write (every read of it, the final read's included), it is lost-write.
#[test]
#[ignore = "starts real weir processes: needs WEIR_BIN (scripts/test runs it)"]
fn a_real_history_missing_one_acknowledged_write_is_lost_write() {
    let s = quiet_scenario();
    let o = run(&s, &options(1));
    assert!(
        !o.outcome.failed(),
        "{:?} (run directory {:?})",
        o.outcome.reasons(),
        o.dir
    );
    assert!(o.outcome.acks > 20, "only {} acks", o.outcome.acks);
    let mut history = o.outcome.history.clone();
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
                    key: Key::Int(k),
                    offset: Some(off),
                    value,
                } = m
                {
                    acked.entry(*k).or_default().insert(*off, *value);
                }
            }
        }
    }
    // A write in the middle of a key's log: the final read went past it.
    let (key, by_offset) = acked
        .iter()
        .find(|(_, m)| m.len() > 4)
        .expect("some key got several writes");
    let (_, value) = by_offset.iter().nth(by_offset.len() / 2).unwrap();
    forget_reads_of(&mut history, *key, *value);
    let names = analyze(&history).names();
    assert!(
        names.contains(&"lost-write"),
        "expected lost-write, got {names:?}"
    );
}

/// A broker that cannot start fails the run as a crash on start, with its
/// log, rather than hanging or passing.
#[test]
#[ignore = "starts real weir processes: needs WEIR_BIN (scripts/test runs it)"]
fn a_node_that_cannot_start_fails_the_run() {
    let mut s = quiet_scenario();
    s.cluster.node.insert(
        2,
        [("broker.session.timeout.ms".to_string(), "soon".to_string())].into(),
    );
    let o = run(&s, &options(2));
    // A failed run keeps its directory for a human; this one was expected.
    if let Some(d) = &o.dir {
        let _ = std::fs::remove_dir_all(d);
    }
    let reasons = o.outcome.reasons().join("; ");
    assert!(
        reasons.contains("crash on start") && reasons.contains("n2"),
        "{reasons}"
    );
}
