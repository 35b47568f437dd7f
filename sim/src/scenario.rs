//! A scenario: one TOML file in scenarios/ naming a cluster shape, a topic, a
//! workload, a fault schedule, the simulated durations of the fault and healed
//! phases, and the anomalies the run may (or must) show.
//!
//! ```toml
//! name = "crash-durable"
//! fault_s = 60          # fault phase, simulated seconds
//! heal_s = 20           # healed phase: faults off, the system must make progress
//! [cluster]
//! nodes = 1
//! broker = { "log.flush.interval.messages" = "1" }
//! [topic]
//! partitions = 4
//! replication_factor = 1
//! min_insync_replicas = 1
//! configs = { "flush.messages" = "1" }
//! [workload]
//! kind = "queue"       # or "keyed" (record_keys, records_per_send, probe_probability,
//!                      #   tombstone_probability)
//! producers = 2
//! consumers = 2
//! keys = 4
//! acks = "all"
//! idempotence = true
//! [disk]                # SimDiskOptions for every node
//! lying_fsync = false
//! [faults]
//! interval_ms = [500, 3000]
//! duration_ms = [200, 2000]
//! crash = 1.0           # relative weights of the fault kinds
//! [expect]
//! allowed = []          # anomaly kinds that may appear (Jepsen names)
//! required = []         # anomaly kinds that must appear (teeth tests)
//! ```
//!
//! Every field but `name` has a default, so a scenario says only what it
//! changes. Unknown fields are errors: a typo must not silently fall back to a
//! default and weaken a test.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use weir_jepsen::AnomalyKind;

/// Limits that keep a scenario runnable in seconds of wall time per seed.
pub const NODES_MAX: usize = 9;
pub const KEYS_MAX: u32 = 64;
pub const CLIENTS_MAX: u32 = 32;
/// Record keys per partition of the keyed workload.
pub const RECORD_KEYS_MAX: u32 = 1024;
/// Records one keyed send op queues at once.
pub const RECORDS_PER_SEND_MAX: u32 = 64;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Simulated seconds of the fault phase.
    #[serde(default = "default_fault_s")]
    pub fault_s: u64,
    /// Simulated seconds of the healed phase that follows it.
    #[serde(default = "default_heal_s")]
    pub heal_s: u64,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub topic: TopicSpec,
    #[serde(default)]
    pub workload: WorkloadSpec,
    #[serde(default)]
    pub disk: DiskSpec,
    #[serde(default)]
    pub faults: FaultSpec,
    #[serde(default)]
    pub expect: ExpectSpec,
}

fn default_fault_s() -> u64 {
    30
}
fn default_heal_s() -> u64 {
    10
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// 1, 3 or 5 nodes, node ids 1..=nodes at 10.0.0.<id>.
    pub nodes: usize,
    /// Node ids of the controller quorum (process.roles=broker,controller);
    /// the others are brokers only. Default: every node of a multi-node
    /// cluster; none for one node (single-node mode: no quorum, no
    /// controller listener).
    pub voters: Option<Vec<i32>>,
    /// Broker properties (Kafka names) applied to every node's ServerConfig.
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
    /// Per-node overrides, applied after `broker`:
    /// `[cluster.node.2]` / `"replica.lag.time.max.ms" = "500"`.
    #[serde(default)]
    pub node: BTreeMap<i32, BTreeMap<String, String>>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 1,
            voters: None,
            broker: BTreeMap::new(),
            node: BTreeMap::new(),
        }
    }
}

impl ClusterSpec {
    /// The controller quorum's node ids, sorted; empty in single-node mode.
    pub fn voter_ids(&self) -> Vec<i32> {
        let mut v = match &self.voters {
            Some(v) => v.clone(),
            None if self.nodes > 1 => (1..=self.nodes as i32).collect(),
            None => Vec::new(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }

    /// A multi-node cluster: a raft quorum and replication between nodes.
    pub fn is_multi_node(&self) -> bool {
        self.nodes > 1 || !self.voter_ids().is_empty()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSpec {
    #[serde(default = "default_topic_name")]
    pub name: String,
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    #[serde(default = "one_i16")]
    pub replication_factor: i16,
    #[serde(default = "one_i32")]
    pub min_insync_replicas: i32,
    /// unclean.leader.election.enable for this topic.
    #[serde(default)]
    pub unclean: bool,
    /// Topic properties (Kafka names: flush.messages, segment.bytes, ...).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

fn default_topic_name() -> String {
    "jepsen".to_string()
}
fn default_partitions() -> u32 {
    4
}
fn one_i16() -> i16 {
    1
}
fn one_i32() -> i32 {
    1
}

impl Default for TopicSpec {
    fn default() -> Self {
        TopicSpec {
            name: default_topic_name(),
            partitions: default_partitions(),
            replication_factor: 1,
            min_insync_replicas: 1,
            unclean: false,
            configs: BTreeMap::new(),
        }
    }
}

/// Which workload the clients run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// Jepsen's Kafka queue workload (sim/src/workload.rs): unique values,
    /// key k is partition k, checked for loss by every offset.
    #[default]
    Queue,
    /// Record keys within partitions (sim/src/keyed_workload.rs), for
    /// compacted and retention-limited topics, where the queue workload's
    /// loss checker cannot judge: weir_jepsen::keyed checks it.
    Keyed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// "queue" (default) or "keyed".
    pub kind: WorkloadKind,
    /// Keyed workload: record keys per partition (each send picks one).
    pub record_keys: u32,
    /// Keyed workload: chance, before each poll, that a consumer probes its
    /// partitions' log start and end offsets (ListOffsets) into the history.
    pub probe_probability: f64,
    /// Keyed workload: records one send op queues at once to one partition
    /// (drawn uniformly from [min, max]); with linger.ms above 0 they share
    /// a batch.
    pub records_per_send: [u32; 2],
    /// Keyed workload: chance that a record sent is a tombstone (a null
    /// value deleting its record key), so compaction's delete.retention.ms
    /// and tombstone removal are exercised.
    pub tombstone_probability: f64,
    pub producers: u32,
    /// Consumers that assign themselves keys (Jepsen's `assign`).
    pub consumers: u32,
    /// Consumers in one consumer group, subscribed to the topic (Jepsen's
    /// `subscribe`): the coordinator assigns them partitions and moves them
    /// on rebalances; they auto-commit.
    pub group_consumers: u32,
    /// Keys of the Jepsen queue workload. Key k is partition k of the topic,
    /// so a key's version order is exactly its partition's offsets.
    pub keys: u32,
    /// "0", "1" or "all".
    pub acks: String,
    pub idempotence: bool,
    /// Queue workload: producers run transactions (transactional.id
    /// `jepsen-p<process>`) of `txn_sends` sends over random keys, recorded
    /// as `txn` ops; consumers read committed.
    pub transactional: bool,
    /// Transactional workload: sends per transaction, drawn uniformly.
    pub txn_sends: [u32; 2],
    /// Transactional workload: chance a transaction is aborted on purpose.
    pub abort_probability: f64,
    /// Simulated pause between one producer's sends, drawn uniformly.
    pub send_interval_ms: [u64; 2],
    /// Simulated pause between one consumer's polls, drawn uniformly.
    pub poll_interval_ms: [u64; 2],
    /// Chance, before each poll, that a consumer reassigns itself a new
    /// random subset of keys.
    pub reassign_probability: f64,
    /// Extra producer properties (Kafka names), applied last.
    pub producer: BTreeMap<String, String>,
    /// Extra consumer properties (Kafka names), applied last.
    pub consumer: BTreeMap<String, String>,
    /// Simulated seconds the final read may take to reach every partition's end.
    pub final_read_s: u64,
    /// Keyed workload: simulated ms between the last write and the final
    /// read, for background work to finish (the cleaner dropping tombstones
    /// past delete.retention.ms, retention deleting segments).
    pub final_read_delay_ms: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            kind: WorkloadKind::Queue,
            record_keys: 8,
            probe_probability: 0.1,
            records_per_send: [1, 1],
            tombstone_probability: 0.0,
            producers: 2,
            consumers: 2,
            group_consumers: 0,
            keys: 4,
            acks: "all".to_string(),
            idempotence: false,
            transactional: false,
            txn_sends: [1, 4],
            abort_probability: 0.2,
            send_interval_ms: [5, 40],
            poll_interval_ms: [5, 40],
            reassign_probability: 0.05,
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
            final_read_s: 30,
            final_read_delay_ms: 0,
        }
    }
}

/// SimDisk options for every node (see weir::env::sim_disk for the fault
/// model). Always on for the whole run; the nemesis adds timed windows.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpec {
    pub lying_fsync: bool,
    pub lose_unsynced_dir_ops: bool,
    pub read_corruption_probability: f64,
    pub read_error_probability: f64,
    pub write_error_probability: f64,
    pub sync_error_probability: f64,
    pub crash_corruption_probability: f64,
    pub write_latency_us: [u64; 2],
    pub sync_latency_us: [u64; 2],
}

/// The nemesis schedule: one fault at a time, separated by quiet gaps. Each
/// kind's number is a relative weight (0 = never).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Quiet time before each fault, simulated ms.
    pub interval_ms: [u64; 2],
    /// How long a timed fault lasts (down time of a crash, length of a
    /// partition, a pause, a spike or a disk fault window), simulated ms.
    pub duration_ms: [u64; 2],
    /// Machine crash: kill the node, SimDisk::crash() (unsynced writes may be
    /// lost or torn), restart it after the down time.
    pub crash: f64,
    /// Process kill: kill and restart, the disk keeps every write (page cache
    /// survives a process crash).
    pub kill: f64,
    /// Pause the node (a long GC or SIGSTOP), then resume it.
    pub pause: f64,
    /// Isolate a node from everyone (madsim clog_node).
    pub partition: f64,
    /// Clog the links between one client and one node, one or both ways.
    pub clog_link: f64,
    /// Raise network latency to `latency_ms` for the window.
    pub latency: f64,
    /// Raise packet loss to `loss_rate` for the window.
    pub loss: f64,
    /// Failed fsyncs with probability `sync_error_probability` for the window.
    pub sync_error: f64,
    /// Write EIO with probability `write_error_probability` for the window.
    pub write_error: f64,
    /// Disk full: capacity set just above what is used, for the window.
    pub enospc: f64,
    /// Corrupted reads with probability `read_corruption_probability`.
    pub read_corruption: f64,
    /// Bit rot at rest: flip a bit in a random log file, then crash and
    /// restart the node so recovery reads it.
    pub bitrot: f64,
    /// Process kill of the current leader of a random partition (found
    /// through Metadata), restarted after the down time.
    pub kill_leader: f64,
    /// Machine crash (unsynced writes lost) of a partition's current leader.
    pub crash_leader: f64,
    /// Process kill of the active controller (Metadata's controller_id).
    pub kill_controller: f64,
    /// Cut the brokers into a minority and a majority that cannot talk
    /// (clients still reach every node).
    pub split: f64,
    /// One broker-to-broker link dropped in one direction only.
    pub one_way: f64,
    /// Two halves that talk only through one bridge node.
    pub bridge: f64,
    /// A broker's links to the other brokers go down and up every
    /// `flap_ms` for the window.
    pub flap: f64,
    /// Whole-cluster power loss: every node killed at once, every SimDisk
    /// crashed (unsynced writes lost), all restarted after the down time.
    pub power_loss: f64,
    /// Machine crash at one disk operation: the power goes at the n-th
    /// mutating disk operation of one node from now (n drawn from
    /// `power_cut_ops`), which fails with everything after it; the node is
    /// then killed and its SimDisk crashed. Unlike `crash`, this lands
    /// between two synchronous steps (inside a segment swap, between a
    /// checkpoint's write and rename).
    pub power_cut: f64,
    /// How many mutating disk operations from now a power cut comes.
    pub power_cut_ops: [u64; 2],
    /// Leave a partition's leader alone in its ISR, then take it away:
    /// kill every other replica, hold (the ISR shrinks to the leader, which
    /// acknowledges writes alone when min.insync.replicas allows), restart
    /// them and kill the leader at once, hold, restart it. With unclean
    /// election on, a replica that missed those writes may lead (loss);
    /// with it off the partition must wait for the old leader.
    pub orphan_leader: f64,
    /// Step one node's wall clock by a seed-chosen amount in `clock_jump_ms`
    /// (an NTP step, a VM migration) for the window, then step it back.
    /// Monotonic time (timeouts, sleeps) does not move.
    pub clock_jump: f64,
    /// How far a clock jump moves the wall clock, ms (negative: back).
    pub clock_jump_ms: [i64; 2],
    /// Process kill of the consumer group's coordinator (the leader of its
    /// `__consumer_offsets` partition, found through FindCoordinator),
    /// restarted after the down time.
    pub kill_coordinator: f64,
    /// Machine crash (unsynced writes lost) of the group's coordinator.
    pub crash_coordinator: f64,
    /// A group member's process dies (its node is killed: no LeaveGroup,
    /// no commit); after the down time a fresh process subscribes on it.
    pub crash_consumer: f64,
    /// A group member stops (GC, SIGSTOP) for the window with its
    /// connections open: past the session timeout it comes back a zombie.
    pub pause_consumer: f64,
    /// A group member is cut from every broker for the window.
    pub isolate_consumer: f64,
    /// A group member's links to the group coordinator only are cut both
    /// ways (it still fetches from partition leaders).
    pub cut_consumer_coordinator: f64,
    /// How long each state of a flapping link lasts, simulated ms.
    pub flap_ms: [u64; 2],
    pub latency_ms: [u64; 2],
    pub loss_rate: f64,
    pub sync_error_probability: f64,
    pub write_error_probability: f64,
    pub read_corruption_probability: f64,
    /// After a disk fault window, restart the node (a log dir taken offline
    /// after an I/O error needs a restart, as in Kafka).
    pub restart_after_disk_fault: bool,
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            interval_ms: [1000, 4000],
            duration_ms: [200, 3000],
            crash: 0.0,
            kill: 0.0,
            pause: 0.0,
            partition: 0.0,
            clog_link: 0.0,
            latency: 0.0,
            loss: 0.0,
            sync_error: 0.0,
            write_error: 0.0,
            enospc: 0.0,
            read_corruption: 0.0,
            bitrot: 0.0,
            kill_leader: 0.0,
            crash_leader: 0.0,
            kill_controller: 0.0,
            split: 0.0,
            one_way: 0.0,
            bridge: 0.0,
            flap: 0.0,
            power_loss: 0.0,
            power_cut: 0.0,
            power_cut_ops: [0, 300],
            orphan_leader: 0.0,
            clock_jump: 0.0,
            clock_jump_ms: [-3_600_000, 3_600_000],
            kill_coordinator: 0.0,
            crash_coordinator: 0.0,
            crash_consumer: 0.0,
            pause_consumer: 0.0,
            isolate_consumer: 0.0,
            cut_consumer_coordinator: 0.0,
            flap_ms: [100, 1000],
            latency_ms: [50, 400],
            loss_rate: 0.2,
            sync_error_probability: 0.3,
            write_error_probability: 0.2,
            read_corruption_probability: 0.1,
            restart_after_disk_fault: true,
        }
    }
}

/// A fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Crash,
    Kill,
    Pause,
    Partition,
    ClogLink,
    Latency,
    Loss,
    SyncError,
    WriteError,
    Enospc,
    ReadCorruption,
    Bitrot,
    KillLeader,
    CrashLeader,
    KillController,
    Split,
    OneWay,
    Bridge,
    Flap,
    PowerLoss,
    PowerCut,
    OrphanLeader,
    ClockJump,
    KillCoordinator,
    CrashCoordinator,
    CrashConsumer,
    PauseConsumer,
    IsolateConsumer,
    CutConsumerCoordinator,
}

impl FaultKind {
    /// Faults that only make sense between several brokers.
    pub fn needs_cluster(self) -> bool {
        matches!(
            self,
            FaultKind::Split
                | FaultKind::OneWay
                | FaultKind::Bridge
                | FaultKind::Flap
                | FaultKind::OrphanLeader
        )
    }

    /// Faults aimed at the workload's group members.
    pub fn needs_group(self) -> bool {
        matches!(
            self,
            FaultKind::CrashConsumer
                | FaultKind::PauseConsumer
                | FaultKind::IsolateConsumer
                | FaultKind::CutConsumerCoordinator
        )
    }
}

impl FaultSpec {
    /// Kinds with a positive weight, in a fixed order (the seed picks among them).
    pub fn weights(&self) -> Vec<(FaultKind, f64)> {
        [
            (FaultKind::Crash, self.crash),
            (FaultKind::Kill, self.kill),
            (FaultKind::Pause, self.pause),
            (FaultKind::Partition, self.partition),
            (FaultKind::ClogLink, self.clog_link),
            (FaultKind::Latency, self.latency),
            (FaultKind::Loss, self.loss),
            (FaultKind::SyncError, self.sync_error),
            (FaultKind::WriteError, self.write_error),
            (FaultKind::Enospc, self.enospc),
            (FaultKind::ReadCorruption, self.read_corruption),
            (FaultKind::Bitrot, self.bitrot),
            (FaultKind::KillLeader, self.kill_leader),
            (FaultKind::CrashLeader, self.crash_leader),
            (FaultKind::KillController, self.kill_controller),
            (FaultKind::Split, self.split),
            (FaultKind::OneWay, self.one_way),
            (FaultKind::Bridge, self.bridge),
            (FaultKind::Flap, self.flap),
            (FaultKind::PowerLoss, self.power_loss),
            (FaultKind::PowerCut, self.power_cut),
            (FaultKind::OrphanLeader, self.orphan_leader),
            (FaultKind::ClockJump, self.clock_jump),
            (FaultKind::KillCoordinator, self.kill_coordinator),
            (FaultKind::CrashCoordinator, self.crash_coordinator),
            (FaultKind::CrashConsumer, self.crash_consumer),
            (FaultKind::PauseConsumer, self.pause_consumer),
            (FaultKind::IsolateConsumer, self.isolate_consumer),
            (
                FaultKind::CutConsumerCoordinator,
                self.cut_consumer_coordinator,
            ),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .collect()
    }
}

/// The kind a fault schedule injects next, chosen by weight with the top 53
/// bits of `draw` (one value of the seeded stream). `weights` is
/// `FaultSpec::weights()`, non-empty.
pub fn pick_weighted(weights: &[(FaultKind, f64)], draw: u64) -> FaultKind {
    assert!(!weights.is_empty(), "a fault schedule needs a kind to pick");
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = (draw >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (k, w) in weights {
        if x < *w {
            return *k;
        }
        x -= w;
    }
    weights[weights.len() - 1].0
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpectSpec {
    /// Anomaly kinds (Jepsen names) this scenario may show; any other fails.
    pub allowed: Vec<String>,
    /// Anomaly kinds that must show in every seed (teeth tests). Implied allowed.
    pub required: Vec<String>,
    /// Anomaly kinds that must show in at least one seed of a sweep (`run`
    /// fails otherwise): a guarantee the scenario switches off on purpose,
    /// e.g. lost-write with unclean leader election. Implied allowed.
    pub must_show: Vec<String>,
    /// Require the healed phase to make progress (an acknowledged send and a
    /// final read that reaches every partition's end). Off only for
    /// scenarios that break the system on purpose.
    pub liveness: bool,
}

impl Default for ExpectSpec {
    fn default() -> Self {
        ExpectSpec {
            allowed: Vec::new(),
            required: Vec::new(),
            must_show: Vec::new(),
            liveness: true,
        }
    }
}

impl Scenario {
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Scenario> {
        let path = path.as_ref();
        // std::fs is fine here: sim/ is the harness, outside the env seam.
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let w = &self.workload;
        let c = &self.cluster;
        anyhow::ensure!(
            (1..=NODES_MAX).contains(&c.nodes) && c.nodes % 2 == 1,
            "cluster.nodes must be odd, 1..={NODES_MAX} (1, 3 or 5)"
        );
        let voters = c.voter_ids();
        for id in voters.iter().chain(c.node.keys()) {
            anyhow::ensure!(
                (1..=c.nodes as i32).contains(id),
                "node id {id} is not one of the cluster's nodes 1..={}",
                c.nodes
            );
        }
        anyhow::ensure!(
            c.nodes == 1 || !voters.is_empty(),
            "a multi-node cluster needs at least one voter"
        );
        anyhow::ensure!(
            (1..=c.nodes as i16).contains(&self.topic.replication_factor),
            "topic.replication_factor must be 1..=cluster.nodes"
        );
        anyhow::ensure!(
            self.topic.min_insync_replicas >= 1,
            "topic.min_insync_replicas must be >= 1"
        );
        if c.nodes == 1 {
            for (kind, _) in self.faults.weights() {
                anyhow::ensure!(!kind.needs_cluster(), "fault {kind:?} needs several nodes");
            }
        }
        for (kind, _) in self.faults.weights() {
            anyhow::ensure!(
                !kind.needs_group() || w.group_consumers > 0,
                "fault {kind:?} needs workload.group_consumers > 0"
            );
        }
        anyhow::ensure!(
            (1..=KEYS_MAX).contains(&w.keys),
            "workload.keys must be 1..={KEYS_MAX}"
        );
        anyhow::ensure!(
            w.keys <= self.topic.partitions,
            "workload.keys ({}) must not exceed topic.partitions ({}): key k is partition k",
            w.keys,
            self.topic.partitions
        );
        anyhow::ensure!(
            w.producers + w.consumers + w.group_consumers <= CLIENTS_MAX,
            "at most {CLIENTS_MAX} clients"
        );
        if w.kind == WorkloadKind::Keyed {
            anyhow::ensure!(
                (1..=RECORD_KEYS_MAX).contains(&w.record_keys),
                "workload.record_keys must be 1..={RECORD_KEYS_MAX}"
            );
            let [least, most] = w.records_per_send;
            anyhow::ensure!(
                1 <= least && least <= most && most <= RECORDS_PER_SEND_MAX,
                "workload.records_per_send must be [min, max] within 1..={RECORDS_PER_SEND_MAX}"
            );
            anyhow::ensure!(
                w.group_consumers == 0,
                "the keyed workload has no group consumers (workload.group_consumers = 0)"
            );
            anyhow::ensure!(
                weir_jepsen::CleanupPolicy::parse(&self.cleanup_policy()).is_some(),
                "cleanup.policy '{}' is not delete, compact or compact,delete",
                self.cleanup_policy()
            );
        }
        anyhow::ensure!(
            (0.0..=1.0).contains(&w.tombstone_probability),
            "workload.tombstone_probability must be 0..=1"
        );
        anyhow::ensure!(
            w.tombstone_probability == 0.0 || w.kind == WorkloadKind::Keyed,
            "workload.tombstone_probability needs the keyed workload (kind = \"keyed\")"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&w.probe_probability),
            "workload.probe_probability must be 0..=1"
        );
        anyhow::ensure!(
            ["0", "1", "all", "-1"].contains(&w.acks.as_str()),
            "workload.acks must be 0, 1 or all"
        );
        for r in [&w.send_interval_ms, &w.poll_interval_ms] {
            anyhow::ensure!(r[0] <= r[1], "interval ranges must be [min, max]");
        }
        for r in [&self.faults.interval_ms, &self.faults.duration_ms] {
            anyhow::ensure!(r[0] <= r[1], "fault ranges must be [min, max]");
        }
        anyhow::ensure!(
            self.faults.interval_ms[1] > 0,
            "faults.interval_ms must be > 0"
        );
        let f = &self.faults;
        anyhow::ensure!(
            f.flap_ms[0] <= f.flap_ms[1],
            "fault ranges must be [min, max]"
        );
        anyhow::ensure!(f.flap_ms[0] > 0, "faults.flap_ms must be > 0");
        anyhow::ensure!(
            f.clock_jump_ms[0] <= f.clock_jump_ms[1],
            "faults.clock_jump_ms must be [min, max]"
        );
        let e = &self.expect;
        for name in e.allowed.iter().chain(&e.required).chain(&e.must_show) {
            anyhow::ensure!(
                AnomalyKind::from_name(name).is_some(),
                "unknown anomaly kind '{name}'"
            );
        }
        Ok(())
    }

    /// Anomaly kinds that may appear (allowed, required and must_show).
    pub fn allowed_kinds(&self) -> Vec<AnomalyKind> {
        self.expect
            .allowed
            .iter()
            .chain(&self.expect.required)
            .chain(&self.expect.must_show)
            .filter_map(|n| AnomalyKind::from_name(n))
            .collect()
    }

    pub fn required_kinds(&self) -> Vec<AnomalyKind> {
        self.expect
            .required
            .iter()
            .filter_map(|n| AnomalyKind::from_name(n))
            .collect()
    }

    pub fn must_show_kinds(&self) -> Vec<AnomalyKind> {
        self.expect
            .must_show
            .iter()
            .filter_map(|n| AnomalyKind::from_name(n))
            .collect()
    }

    /// The topic's cleanup.policy: its own config, else the brokers'
    /// log.cleanup.policy, else Kafka's default (delete).
    pub fn cleanup_policy(&self) -> String {
        self.topic
            .configs
            .get("cleanup.policy")
            .or_else(|| self.cluster.broker.get("log.cleanup.policy"))
            .cloned()
            .unwrap_or_else(|| "delete".to_string())
    }

    /// Total simulated seconds the run is planned to take (without the final read).
    pub fn planned_s(&self) -> u64 {
        self.fault_s + self.heal_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_scenario_takes_defaults() {
        let s = Scenario::parse("name = \"x\"").unwrap();
        assert_eq!(s.cluster.nodes, 1);
        assert_eq!(s.workload.keys, 4);
        assert!(s.faults.weights().is_empty());
        assert!(s.expect.liveness);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(Scenario::parse("name = \"x\"\nfault_secs = 3").is_err());
        assert!(Scenario::parse("name = \"x\"\n[expect]\nallowed = [\"lost-writes\"]").is_err());
        assert!(Scenario::parse("name = \"x\"\n[workload]\nkeys = 9").is_err());
    }

    #[test]
    fn keyed_workload_fields() {
        let s = Scenario::parse(
            "name = \"x\"\n[topic]\nconfigs = { \"cleanup.policy\" = \"compact\" }\n[workload]\nkind = \"keyed\"\nrecord_keys = 16",
        )
        .unwrap();
        assert_eq!(s.workload.kind, WorkloadKind::Keyed);
        assert_eq!(s.workload.record_keys, 16);
        assert_eq!(s.cleanup_policy(), "compact");
        assert_eq!(
            Scenario::parse("name = \"x\"").unwrap().workload.kind,
            WorkloadKind::Queue
        );
        let bad = [
            "[workload]\nkind = \"keyd\"",
            "[workload]\nkind = \"keyed\"\nrecord_keys = 0",
            "[workload]\nkind = \"keyed\"\ngroup_consumers = 1",
            "[workload]\nkind = \"keyed\"\n[topic]\nconfigs = { \"cleanup.policy\" = \"trim\" }",
        ];
        for b in bad {
            assert!(
                Scenario::parse(&format!("name = \"x\"\n{b}")).is_err(),
                "{b}"
            );
        }
    }

    #[test]
    fn cluster_shape_and_overrides() {
        let s = Scenario::parse(
            "name = \"x\"\n[cluster]\nnodes = 3\n[cluster.node.2]\n\"replica.lag.time.max.ms\" = \"500\"\n[topic]\nreplication_factor = 3\nunclean = true\n[faults]\nsplit = 1.0\n[expect]\nmust_show = [\"lost-write\"]",
        )
        .unwrap();
        assert_eq!(s.cluster.voter_ids(), vec![1, 2, 3]);
        assert_eq!(s.cluster.node[&2]["replica.lag.time.max.ms"], "500");
        assert!(s.topic.unclean);
        assert!(s
            .allowed_kinds()
            .contains(&AnomalyKind::from_name("lost-write").unwrap()));
        assert_eq!(s.must_show_kinds().len(), 1);
        let bad = [
            "[cluster]\nnodes = 2",
            "[cluster]\nnodes = 3\nvoters = [4]",
            "[cluster]\nnodes = 3\nvoters = []",
            "[topic]\nreplication_factor = 3",
            "[faults]\nsplit = 1.0",
            "[cluster]\nnodes = 3\n[cluster.node.7]\n\"a\" = \"b\"",
            "[faults]\nclock_jump = 1.0\nclock_jump_ms = [10, -10]",
        ];
        for b in bad {
            assert!(
                Scenario::parse(&format!("name = \"x\"\n{b}")).is_err(),
                "{b}"
            );
        }
        let jumps =
            Scenario::parse("name = \"x\"\n[faults]\nclock_jump = 1.0\nclock_jump_ms = [-5, 7]")
                .unwrap();
        assert_eq!(jumps.faults.clock_jump_ms, [-5, 7]);
        assert_eq!(jumps.faults.weights(), vec![(FaultKind::ClockJump, 1.0)]);
        let one = Scenario::parse("name = \"x\"").unwrap();
        assert!(one.cluster.voter_ids().is_empty());
        assert!(!one.cluster.is_multi_node());
    }

    #[test]
    fn every_scenario_file_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for dir in [root.clone(), root.join("teeth"), root.join("real")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    Scenario::load(&path).unwrap();
                    n += 1;
                }
            }
        }
        assert!(n > 0, "scenarios/ holds no scenario");
    }
}
