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

// Failures these scenarios found, now fixed and guarded by the tests below:
// - PRODUCER_WEDGE: after a crash lost an idempotent producer's acknowledged
//   tail, its sends failed with OUT_OF_ORDER_SEQUENCE_NUMBER for the rest of
//   the run; the producer now takes a new producer id (KIP-360,
//   src/client/producer/mod.rs). torn_tail guards it.

#[test]
fn crash_fsync_acks1() {
    check("crash-fsync-acks1", 0..2);
}

#[test]
fn crash_default_flush() {
    check("crash-default-flush", 0..2);
}

#[test]
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

/// Group consumers (Jepsen's subscribe mode) through machine crashes of
/// the only node: the coordinator comes back from __consumer_offsets.
#[test]
fn group_consumers_one_node() {
    let mut s = short("crash-durable");
    s.workload.group_consumers = 2;
    // The topic's flush.messages=1 does not cover __consumer_offsets: on
    // one node a power loss would lose acknowledged commits (lost-commit,
    // as in Kafka with default flushing), so flush every log here.
    s.cluster
        .broker
        .insert("log.flush.interval.messages".to_string(), "1".to_string());
    for seed in 0..2 {
        let o = run_seed(&s, seed, true);
        assert!(!o.failed(), "seed {seed}: {:?}", o.reasons());
        assert!(
            o.trace
                .iter()
                .any(|l| l.contains("] g") && l.contains(": poll: ") && !l.ends_with("nothing")),
            "seed {seed}: a group consumer read something"
        );
    }
}

/// The nemesis's cluster-aware faults on a single node: the probe
/// finds the partition leader and the active controller through Metadata
/// (both are node 1), and a power loss crashes every disk at once. With
/// flush.messages=1 none of it may lose an acknowledged write.
#[test]
fn probe_driven_faults_on_one_node() {
    let mut s = short("crash-durable");
    s.faults = Default::default();
    s.faults.interval_ms = [300, 1500];
    s.faults.duration_ms = [100, 1500];
    s.faults.kill_leader = 1.0;
    s.faults.crash_leader = 1.0;
    s.faults.kill_controller = 1.0;
    s.faults.power_loss = 1.0;
    for seed in 0..2 {
        let o = run_seed(&s, seed, true);
        assert!(!o.failed(), "seed {seed}: {:?}", o.reasons());
        let found = o
            .trace
            .iter()
            .filter(|l| l.contains(" is n1") || l.contains("power loss"))
            .count();
        assert!(found > 0, "seed {seed}: the probe found nobody");
        assert!(
            !o.trace.iter().any(|l| l.contains("fault skipped")),
            "seed {seed}: the probe failed to find a leader or controller"
        );
    }
}

// Multi-node scenarios (issue #4): the controller quorum, replication,
// ISR and leader elections under the nemesis's cluster faults.

fn check_cluster(name: &str, seeds: std::ops::Range<u64>) {
    check(name, seeds);
}

#[test]
fn leader_crash_acks_all() {
    check_cluster("leader-crash-acks-all", 0..2);
}

#[test]
fn controller_crash() {
    check_cluster("controller-crash", 0..2);
}

#[test]
fn minority_majority() {
    check_cluster("minority-majority", 0..2);
}

#[test]
fn flapping_links() {
    check_cluster("flapping-links", 0..2);
}

#[test]
fn follower_lag_isr() {
    check_cluster("follower-lag-isr", 0..2);
}

#[test]
fn cluster_restart_lost_unsynced() {
    check_cluster("cluster-restart-lost-unsynced", 0..2);
}

#[test]
fn min_insync_violated() {
    check_cluster("min-insync-violated", 0..2);
}

#[test]
fn unclean_off() {
    check_cluster("unclean-off", 0..2);
}

/// Unclean election on: every seed must pass its allowed set, and the
/// sweep must show lost-write somewhere (`expect.must_show`).
#[test]
fn unclean_on_shows_lost_write() {
    // Longer than `short`: one orphan_leader takes up to 16 s, and a seed
    // needs a few of them for an unclean election to cost a write.
    let mut s = short("unclean-on");
    s.fault_s = 40;
    let mut shown = false;
    for seed in 0..10 {
        let o = run_seed(&s, seed, false);
        assert!(!o.failed(), "unclean-on seed {seed}: {:?}", o.reasons());
        shown |= o.anomaly_names().contains(&"lost-write");
        if shown {
            break;
        }
    }
    assert!(shown, "unclean-on: no seed showed lost-write");
}

/// One seed's trace hash and a hash of its history, as a fresh process
/// computes them (this test binary, re-run for one seed).
fn fingerprint_in_child(seed: u64) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "same_seed_same_trace_and_history",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_SEED, seed.to_string())
        .output()
        .expect("run this test binary");
    let text = String::from_utf8_lossy(&out.stdout);
    // libtest prints the test's name on the same line, before our output.
    text.lines()
        .find_map(|l| l.split_once("FINGERPRINT ").map(|(_, f)| f.trim()))
        .unwrap_or_else(|| panic!("child printed no fingerprint:\n{text}"))
        .to_string()
}

const CHILD_SEED: &str = "WEIR_SIM_FINGERPRINT_SEED";

fn fingerprint(seed: u64) -> (String, u64) {
    let o = run_seed(&short("crash-default-flush"), seed, false);
    assert!(o.trace_events > 100, "the run did something");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&format!("{:?}", o.history), &mut h);
    let history = std::hash::Hasher::finish(&h);
    (format!("{:#x} {history:#x}", o.trace_hash), o.trace_hash)
}

/// A seed replays bit for bit in a fresh process (what `replay` relies on):
/// the same trace and the same history, and another seed differs.
#[test]
fn same_seed_same_trace_and_history() {
    if let Ok(seed) = std::env::var(CHILD_SEED) {
        let (f, _) = fingerprint(seed.parse().unwrap());
        println!("FINGERPRINT {f}");
        return;
    }
    let a = fingerprint_in_child(7);
    let b = fingerprint_in_child(7);
    assert_eq!(a, b, "seed 7 gave two runs (trace hash, history hash)");
    let c = fingerprint_in_child(8);
    assert_ne!(a, c, "different seeds, different runs");
}

/// The same, twice in one process. Known to fail since the cluster merge:
/// a broker restart (1 node, no clients, one kill) diverges when a seed runs
/// a second time in the same process (madsim's check_determinism flags the
/// restart), though every fresh process agrees. So a seed that fails in a
/// long `run` sweep may replay differently; re-run it alone with
/// `run --seeds S..S+1` first. Ignored until the process-global state
/// behind it is found.
#[test]
#[ignore = "in-process non-determinism after a broker restart (see the comment)"]
fn same_seed_twice_in_one_process() {
    let (a, _) = fingerprint(7);
    let (b, _) = fingerprint(7);
    assert_eq!(a, b, "seed 7 gave two runs in one process");
}

// Consumer-group scenarios (issue #5): commits recorded in the history, an
// observer reading the committed offsets, weir-jepsen's group checkers.

#[test]
fn group_coordinator_failover() {
    check("group-coordinator-failover", 0..2);
}

#[test]
fn group_consumer_crash() {
    check("group-consumer-crash", 0..2);
}

#[test]
fn group_rebalance_partition() {
    check("group-rebalance-partition", 0..2);
}
