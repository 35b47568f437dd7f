//! Consumer groups in the simulator: the group members of the workload
//! (Jepsen's subscribe mode, with at-least-once commits), an observer that
//! reads the group's committed offsets through the real client, and the
//! hooks the nemesis uses to crash members.
//!
//! What goes into the history, so weir-jepsen's group checkers
//! (`weir_jepsen::groups`) can judge it:
//! - members `subscribe`, `poll` and `commit`; a member commits, after each
//!   poll it recorded, exactly the offsets that poll processed (one past
//!   the last offset, per partition) with a sync commit, and nothing else: auto-commit is
//!   off, so every commit the coordinator sees is in the history;
//! - the `offsets-probe` process reads the committed offsets (OffsetFetch)
//!   every `PROBE_INTERVAL` from a harness node no fault touches, and once
//!   more at the end, after every member has left.
//!
//! Rebalances: the members run the eager `range` assignor, so after every
//! join a member's partitions start at the group's committed offsets (or
//! the log start when none). A poll during which the member's ownership
//! changed (a join, a revocation, a loss) is recorded `info` without its
//! records, its records are given back (the member seeks to the first of
//! them), and the member continues as a fresh process with a new
//! `subscribe`: its first poll of each partition must start at the
//! committed offset (`group-poll-skip` otherwise).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use tokio::task::JoinHandle;
use weir::client::group::{GroupAdmin, GroupConfig, GroupConsumer, RebalanceListener};
use weir::client::offsets::TopicPartition;
use weir::client::{ClientConfig, ClientError, Cluster};
use weir::env::rng::WeirRng;
use weir::env::time::{sleep, timeout, Duration};

use crate::cluster::harness_ip;
use crate::ctx::{Ctx, Phase};
use crate::workload::{as_reads, between, summarize, ClientEnv};

/// The consumer group every member joins.
pub const GROUP_ID: &str = "jepsen";
/// The history's name for the committed-offsets observer.
pub const PROBE_PROCESS: &str = "offsets-probe";
/// How often the observer reads the committed offsets.
const PROBE_INTERVAL: Duration = Duration::from_millis(700);
/// How long one read of the committed offsets may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the final read of the committed offsets may keep retrying.
const FINAL_PROBE_BUDGET: Duration = Duration::from_secs(30);
/// How long a commit may take before the member calls it indeterminate
/// (the coordinator connection's own timeout covers a whole rebalance).
const COMMIT_GUARD: Duration = Duration::from_secs(8);
/// How long one poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Wait before retrying a member that could not join.
const REJOIN_BACKOFF: Duration = Duration::from_millis(300);
/// How long a leaving member may take to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest healed phase in which a group commit must be acknowledged.
const HEALED_PROGRESS_S_MIN: u64 = 12;
/// How long `finish` waits for respawned members to leave.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// OffsetCommit errors the coordinator answers before it writes anything
/// (the generation check, Kafka's ordering too): the commit certainly did
/// not happen. Any other error may follow the append (a replication
/// timeout, a leader change under it), so the commit is indeterminate.
const REFUSED_BEFORE_WRITE: &[i16] = &[
    12, // OFFSET_METADATA_TOO_LARGE
    22, // ILLEGAL_GENERATION
    25, // UNKNOWN_MEMBER_ID
    27, // REBALANCE_IN_PROGRESS
    82, // FENCED_INSTANCE_ID
];

/// The settings of every member: manual commits only, the eager range
/// assignor, and timeouts scaled to runs of tens of simulated seconds.
pub fn group_config(env: &ClientEnv) -> anyhow::Result<GroupConfig> {
    let mut cfg = GroupConfig::new(GROUP_ID);
    let mut set = |k: &str, v: &str| {
        cfg.set(k, v)
            .map_err(|e| anyhow::anyhow!("group consumer property {k}={v}: {e}"))
    };
    set("auto.offset.reset", "earliest")?;
    set("enable.auto.commit", "false")?;
    set("partition.assignment.strategy", "range")?;
    set("session.timeout.ms", "6000")?;
    set("heartbeat.interval.ms", "1000")?;
    set("max.poll.interval.ms", "20000")?;
    cfg.consumer = env.consumer.clone();
    Ok(cfg)
}

/// Counts ownership changes (assigned, revoked, lost): a change inside a
/// poll means the member's positions may have been reset.
struct Moves(Arc<AtomicU64>);

impl RebalanceListener for Moves {
    fn on_partitions_revoked(&mut self, _: &[TopicPartition]) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn on_partitions_assigned(&mut self, _: &[TopicPartition]) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn on_partitions_lost(&mut self, _: &[TopicPartition]) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn cluster_config(env: &ClientEnv, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new(&env.bootstrap);
    cc.connection.client_id = client_id.to_string();
    cc.connection.request_timeout = env.consumer.request_timeout + env.consumer.fetch_max_wait;
    cc.retry_backoff = env.consumer.retry_backoff;
    cc
}

struct Member {
    consumer: GroupConsumer,
    moves: Arc<AtomicU64>,
    /// `moves` when this process began.
    seen: u64,
}

async fn join_group(env: &ClientEnv, who: &str) -> Option<Member> {
    let cfg = match group_config(env) {
        Ok(c) => c,
        Err(e) => {
            env.ctx.trace(who, format!("bad group config: {e:#}"));
            return None;
        }
    };
    let moves = Arc::new(AtomicU64::new(0));
    let listener = Box::new(Moves(moves.clone()));
    let topics = [env.scenario.topic.name.clone()];
    let joined = async {
        let cluster = Cluster::connect(cluster_config(env, "jepsen-group")).await?;
        GroupConsumer::subscribe_with_listener(cluster, cfg, &topics, listener).await
    };
    match joined.await {
        Ok(consumer) => Some(Member {
            consumer,
            moves,
            seen: 0,
        }),
        Err(e) => {
            env.ctx.trace(who, format!("subscribe failed: {e}"));
            None
        }
    }
}

/// Commit what one recorded poll processed, recording the op.
async fn commit_processed(
    ctx: &Ctx,
    who: &str,
    process: i64,
    g: &mut GroupConsumer,
    topic: &str,
    reads: &BTreeMap<i64, Vec<(i64, i64)>>,
) {
    let offsets: BTreeMap<i64, i64> = reads
        .iter()
        .filter_map(|(k, rs)| rs.last().map(|(o, _)| (*k, o + 1)))
        .collect();
    if offsets.is_empty() {
        return;
    }
    let tps: BTreeMap<TopicPartition, i64> = offsets
        .iter()
        .map(|(k, o)| ((topic.to_string(), *k as i32), *o))
        .collect();
    ctx.history(|h, t| h.commit_invoke(process, &offsets, t));
    let result = match timeout(COMMIT_GUARD, g.commit_sync(&tps)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((e.to_string(), refused_before_write(&e))),
        Err(_) => Err((
            "harness: no answer within the guard time".to_string(),
            false,
        )),
    };
    match &result {
        Ok(()) => ctx.trace(who, format!("commit {offsets:?} ok")),
        Err((e, true)) => ctx.trace(who, format!("commit {offsets:?} fail: {e}")),
        Err((e, false)) => ctx.trace(who, format!("commit {offsets:?} info: {e}")),
    }
    ctx.history(|h, t| h.commit_complete(process, &offsets, result, t));
}

/// One group member: subscribe, poll, commit what it polled; a fresh
/// process after every ownership change or failed poll (see the module
/// doc). Runs until the stop phase, then leaves the group.
pub async fn member_loop(env: ClientEnv, first_process: i64, seed: u64) {
    let ctx = env.ctx.clone();
    let w = &env.scenario.workload;
    let topic = env.scenario.topic.name.clone();
    let keys: Vec<i64> = (0..w.keys as i64).collect();
    let mut rng = WeirRng::from_seed(seed);
    let mut process = first_process;
    let mut member: Option<Member> = None;
    while !ctx.stopping() {
        let who = format!("g{process}");
        let Some(m) = member.as_mut() else {
            match join_group(&env, &who).await {
                Some(m) => {
                    ctx.history(|h, t| h.subscribe(process, &keys, t));
                    ctx.trace(&who, "subscribed");
                    member = Some(m);
                }
                None => sleep(REJOIN_BACKOFF).await,
            }
            continue;
        };
        ctx.history(|h, t| h.poll_invoke(process, t));
        let polled = m.consumer.poll(POLL_WAIT).await;
        ctx.polls.fetch_add(1, Ordering::Relaxed);
        let moved = m.moves.load(Ordering::Relaxed) != m.seen;
        if let (true, Ok(records)) = (moved, &polled) {
            // Give back what this poll returned: the next process reads it
            // again from where the join put the member.
            let mut first: BTreeMap<i32, i64> = BTreeMap::new();
            for r in records {
                first.entry(r.partition).or_insert(r.offset);
            }
            for (p, o) in first {
                if let Err(e) = m.consumer.seek(&(topic.clone(), p), o) {
                    ctx.trace(&who, format!("seek back failed: {e}"));
                }
            }
        }
        let result = match polled {
            Err(e) => Err(e.to_string()),
            Ok(_) if moved => Err(format!(
                "ownership changed (generation {}): reads given back",
                m.consumer.generation()
            )),
            Ok(records) => as_reads(&records).inspect_err(|e| {
                ctx.garbage.fetch_add(1, Ordering::Relaxed);
                ctx.trace(&who, format!("GARBAGE: {e}"));
            }),
        };
        match &result {
            Ok(reads) if reads.is_empty() => ctx.trace(&who, "poll: nothing"),
            Ok(reads) => ctx.trace(&who, format!("poll: {}", summarize(reads))),
            Err(e) => ctx.trace(&who, format!("poll info: {e}")),
        }
        let failed = result.is_err() && !moved;
        ctx.history(|h, t| h.poll_complete(process, result.clone(), t));
        if failed {
            if let Some(m) = member.take() {
                let _ = timeout(CLOSE_TIMEOUT, m.consumer.close()).await;
            }
            process = ctx.fresh_process();
        } else if moved {
            m.seen = m.moves.load(Ordering::Relaxed);
            let assigned: Vec<String> = m
                .consumer
                .assignment()
                .iter()
                .map(|(_, p)| p.to_string())
                .collect();
            process = ctx.fresh_process();
            ctx.history(|h, t| h.subscribe(process, &keys, t));
            ctx.trace(
                &format!("g{process}"),
                format!(
                    "generation {}: partitions [{}]",
                    m.consumer.generation(),
                    assigned.join(" ")
                ),
            );
        } else if let Ok(reads) = &result {
            commit_processed(&ctx, &who, process, &mut m.consumer, &topic, reads).await;
        }
        sleep(between(&mut rng, w.poll_interval_ms)).await;
    }
    if let Some(m) = member {
        // Leave, so the final phase does not wait out a session.
        let _ = timeout(CLOSE_TIMEOUT, m.consumer.close()).await;
    }
}

/// The group's side of a run: the committed-offsets observer and the
/// member nodes the nemesis may crash.
pub struct GroupHarness {
    env: ClientEnv,
    /// The nodes running group members, in worker order.
    members: Vec<NodeId>,
    /// Members started again after a crash (drained by `finish`).
    respawned: Mutex<Vec<JoinHandle<()>>>,
    /// The observer's node and its periodic reads.
    node: NodeHandle,
    probe: Mutex<Option<JoinHandle<()>>>,
    /// Simulated ms when the observer first saw the healed phase.
    healed_at_ns: Arc<AtomicU64>,
}

impl GroupHarness {
    /// Start the observer on a harness node of its own; None when the
    /// workload has no group members.
    pub fn start(env: &ClientEnv, members: Vec<NodeId>) -> Option<Arc<GroupHarness>> {
        if members.is_empty() {
            return None;
        }
        let node = Handle::current()
            .create_node()
            .name(PROBE_PROCESS)
            .ip(harness_ip(3))
            .build();
        let healed_at_ns = Arc::new(AtomicU64::new(u64::MAX));
        let task = node.spawn(probe_loop(env.clone(), healed_at_ns.clone()));
        Some(Arc::new(GroupHarness {
            env: env.clone(),
            members,
            respawned: Mutex::new(Vec::new()),
            node,
            probe: Mutex::new(Some(task)),
            healed_at_ns,
        }))
    }

    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// A fresh member process on member node `i` (restarted after a crash).
    pub fn respawn(&self, i: usize, seed: u64) {
        let Some(node) = Handle::current().get_node(self.members[i]) else {
            return;
        };
        let process = self.env.ctx.fresh_process();
        self.env
            .ctx
            .trace("nemesis", format!("member node {i} restarts as g{process}"));
        let task = node.spawn(member_loop(self.env.clone(), process, seed));
        self.respawned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// After the workers stopped: wait for respawned members to leave, read
    /// the committed offsets a last time. Returns liveness findings.
    pub async fn finish(&self) -> Vec<String> {
        let mut findings = Vec::new();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.respawned.lock().unwrap_or_else(|e| e.into_inner()));
        let drained = timeout(DRAIN_TIMEOUT, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        if drained.is_err() {
            findings.push("restarted group members did not stop".to_string());
        }
        let probe = self.probe.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = probe {
            let _ = p.await;
        }
        let read = self.node.spawn(final_probe(self.env.clone())).await;
        if !matches!(read, Ok(true)) {
            findings.push(format!(
                "the committed offsets could not be read within {} simulated s after the run",
                FINAL_PROBE_BUDGET.as_secs()
            ));
        }
        let healed_ns = self.healed_at_ns.load(Ordering::Relaxed);
        let healed_commits = {
            let mut n = 0;
            self.env.ctx.history(|h, _| {
                n = h
                    .ops()
                    .iter()
                    .filter(|op| {
                        op.f == weir_jepsen::OpF::Commit
                            && op.kind == weir_jepsen::OpType::Ok
                            && op.time >= healed_ns
                    })
                    .count()
            });
            n
        };
        // A healed phase shorter than a session timeout plus a rebalance
        // may legitimately end before a member that the faults fenced has
        // rejoined (the short test runs), so progress is asked of long
        // healed phases only.
        let expect_progress = self.env.scenario.workload.producers > 0
            && self.env.scenario.heal_s >= HEALED_PROGRESS_S_MIN;
        if expect_progress && healed_commits == 0 {
            findings.push("no group commit was acknowledged in the healed phase".to_string());
        }
        findings
    }
}

/// Read the committed offsets once, recording the op.
async fn probe_once(env: &ClientEnv, cluster: &mut Option<Arc<Cluster>>) -> bool {
    let ctx = &env.ctx;
    let topic = env.scenario.topic.name.clone();
    let partitions: Vec<i32> = (0..env.scenario.workload.keys as i32).collect();
    ctx.history(|h, t| h.committed_invoke(PROBE_PROCESS, t));
    let read = async {
        if cluster.is_none() {
            let mut cc = cluster_config(env, PROBE_PROCESS);
            cc.connection.request_timeout = Duration::from_secs(1);
            cc.connection.connect_timeout = Duration::from_secs(1);
            *cluster = Some(Cluster::connect(cc).await?);
        }
        let c = cluster.clone().expect("connected above");
        GroupAdmin::new(c)
            .committed(GROUP_ID, Some((&topic, &partitions)))
            .await
    };
    let result: Result<BTreeMap<i64, i64>, String> = match timeout(PROBE_TIMEOUT, read).await {
        Ok(Ok(m)) => Ok(m
            .into_iter()
            .filter(|((t, _), _)| *t == topic)
            .map(|((_, p), o)| (p as i64, o))
            .collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("harness: no answer within the probe time".to_string()),
    };
    let ok = result.is_ok();
    match &result {
        Ok(m) => ctx.trace(PROBE_PROCESS, format!("committed {m:?}")),
        Err(e) => {
            ctx.trace(PROBE_PROCESS, format!("committed read failed: {e}"));
            // A new connection next time: the coordinator may have moved.
            *cluster = None;
        }
    }
    ctx.history(|h, t| h.committed_complete(PROBE_PROCESS, result, t));
    ok
}

fn is_stopping(ctx: &Ctx) -> bool {
    ctx.phase() == Phase::Stop
}

/// Read the committed offsets every `PROBE_INTERVAL` until the stop phase.
async fn probe_loop(env: ClientEnv, healed_at_ns: Arc<AtomicU64>) {
    let ctx = env.ctx.clone();
    let mut cluster: Option<Arc<Cluster>> = None;
    while !is_stopping(&ctx) {
        if ctx.phase() == Phase::Healed && healed_at_ns.load(Ordering::Relaxed) == u64::MAX {
            let mut at = 0;
            ctx.history(|_, t| at = t);
            healed_at_ns.store(at, Ordering::Relaxed);
        }
        probe_once(&env, &mut cluster).await;
        sleep(PROBE_INTERVAL).await;
    }
}

/// Once every member has left: read the committed offsets until a read
/// succeeds (true) or the budget is spent.
async fn final_probe(env: ClientEnv) -> bool {
    let mut cluster: Option<Arc<Cluster>> = None;
    let last = async {
        while !probe_once(&env, &mut cluster).await {
            sleep(PROBE_INTERVAL).await;
        }
    };
    timeout(FINAL_PROBE_BUDGET, last).await.is_ok()
}

/// Whether a client error is the coordinator refusing before any write.
pub fn refused_before_write(e: &ClientError) -> bool {
    e.code().is_some_and(|c| REFUSED_BEFORE_WRITE.contains(&c))
}
