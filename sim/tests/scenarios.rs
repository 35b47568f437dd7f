//! A couple of seeds of every scenario in scenarios/, shortened so the whole
//! file takes seconds, plus a determinism check. Runs only in the simulator
//! build: `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo test -p weir-sim`.
#![cfg(madsim)]

use std::path::PathBuf;

use weir_sim::{run_seed, Scenario};

/// Simulated seconds of each phase in these tests (the files say more).
const FAULT_S: u64 = 8;
const HEAL_S: u64 = 4;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"))
}

pub fn short(name: &str) -> Scenario {
    let mut s = Scenario::load(path(name)).unwrap();
    s.fault_s = FAULT_S;
    s.heal_s = HEAL_S;
    // Faults come often enough that a short run still sees several.
    s.faults.interval_ms = [
        s.faults.interval_ms[0].min(500),
        s.faults.interval_ms[1].min(2000),
    ];
    s
}

fn check(name: &str, seeds: std::ops::Range<u64>) {
    let s = short(name);
    for seed in seeds {
        let o = run_seed(&s, seed, false);
        assert!(
            !o.failed(),
            "{name} seed {seed} failed: {:?}\nreplay (full length): cargo run --release -p weir-sim -- replay scenarios/{name}.toml --seed {seed} --trace",
            o.reasons()
        );
        assert!(o.acks > 0, "{name} seed {seed}: no send was acknowledged");
    }
}

#[test]
fn crash_durable() {
    check("crash-durable", 0..2);
}

// Known failures found by these scenarios, in other components; run them
// with `-- --ignored` once fixed:
// - PRODUCER_WEDGE: after a crash loses an idempotent producer's acknowledged
//   tail, its sends fail with OUT_OF_ORDER_SEQUENCE_NUMBER or time out for
//   the rest of the run (no epoch bump / sequence reset), so the healed
//   phase makes no progress.

#[test]
fn crash_fsync_acks1() {
    check("crash-fsync-acks1", 0..2);
}

#[test]
fn crash_default_flush() {
    check("crash-default-flush", 0..2);
}

#[test]
#[ignore = "PRODUCER_WEDGE (idempotent producer never recovers from a lost tail, see above)"]
fn torn_tail() {
    check("torn-tail", 0..2);
}

#[test]
fn segment_roll_crash() {
    check("segment-roll-crash", 0..2);
}

#[test]
fn enospc() {
    check("enospc", 0..2);
}

#[test]
fn fsync_failure() {
    check("fsync-failure", 0..2);
}

#[test]
fn bitrot() {
    check("bitrot", 0..2);
}

#[test]
fn network() {
    check("network", 0..2);
}

#[test]
fn mixed() {
    check("mixed", 0..2);
}

/// Corrupted reads once flipped a batch's baseOffset (outside the CRC) and
/// the broker served it, so consumers saw records at offsets where they were
/// not; the log now checks every header it serves.
#[test]
fn read_corruption() {
    check("read-corruption", 0..2);
}

/// Jepsen's consumers reassign themselves at random; often, the crash
/// scenario must pass too. (It once tripped the consumer: a partition dropped
/// and assigned again reused epoch 0, so a fetch sent before the drop was
/// accepted after it and its records landed behind newer ones.)
#[test]
fn consumer_reassign() {
    let mut s = short("crash-durable");
    s.workload.reassign_probability = 0.5;
    for seed in 0..8 {
        let o = run_seed(&s, seed, false);
        assert!(!o.failed(), "seed {seed}: {:?}", o.reasons());
    }
}

#[test]
fn same_seed_same_trace_and_history() {
    let s = short("crash-default-flush");
    let a = run_seed(&s, 7, false);
    let b = run_seed(&s, 7, false);
    assert!(a.trace_events > 100, "the run did something");
    assert_eq!(a.trace_hash, b.trace_hash, "seed 7 gave two traces");
    assert_eq!(a.history, b.history, "seed 7 gave two histories");
    let c = run_seed(&s, 8, false);
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "different seeds, different runs"
    );
}
