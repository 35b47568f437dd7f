//! The nemesis: during the fault phase it injects one fault at a time,
//! chosen by the seed from the scenario's weighted kinds, holds it for a
//! seed-chosen window and heals it. At the end of the phase `heal_all`
//! undoes anything still in force, so the healed phase starts clean.
//!
//! One fault at a time, on one node, is the rule that keeps a cluster of
//! three or more recoverable (SimDisk's fault model assumes a majority always
//! holds a good copy). On today's single node there is no good copy to fall
//! back on, which is why the scenarios that destroy synced data (bit rot,
//! lying fsync) allow loss or exist to show it.
//!
//! Faults and what they model:
//! - crash: machine crash (power loss). Kill, `SimDisk::crash()`, restart.
//! - kill: process crash. Kill and restart; the page cache (SimDisk's
//!   current bytes) survives, so nothing written is lost.
//! - pause: the process stops (GC, SIGSTOP) with its connections open.
//! - partition: the node is cut from everyone (madsim clog_node).
//! - clog_link: one client's link to one node, one or both directions.
//! - latency / loss: network-wide spikes.
//! - sync_error, write_error, enospc, read_corruption: disk fault windows
//!   (SimDisk options), optionally followed by a process restart.
//! - bitrot: a bit flips at rest in a log file; a process restart makes
//!   recovery read it.
//! - kill_leader / crash_leader: the current leader of a random workload
//!   partition (asked of the cluster through Metadata, as an operator would)
//!   is killed, or loses power, and comes back after the down time.
//! - kill_controller: the active controller (Metadata's controller_id).
//! - split: the brokers fall into a minority and a majority that cannot
//!   talk to each other; clients still reach everyone.
//! - one_way: one broker's packets to another are dropped; the reverse
//!   direction still works.
//! - bridge: two halves that only talk through one node in the middle.
//! - flap: one broker's links to the other brokers go down and up again
//!   every `flap_ms` for the window.
//! - power_loss: every node dies at once and every SimDisk crashes
//!   (unsynced writes are lost on every replica), then all restart.
//! - power_cut: one node loses power at the n-th mutating disk operation
//!   from now (`weir::env::sim_disk::SimDisk::cut_power_after`): that
//!   operation fails, the node is killed and its disk crashed, so the crash
//!   point can fall between two synchronous steps no kill could separate.
//! - clock_jump: one node's wall clock steps by a seed-chosen amount in
//!   `clock_jump_ms` (forward or back; an NTP step, a VM migration) for the
//!   window, then steps back (itself a jump the other way). madsim has one
//!   clock, so this is `weir::env::time::sim_set_wall_offset` on that
//!   node: record timestamps, LogAppendTime, retention and segment.ms see
//!   the jump; monotonic time (timeouts, sleeps, ISR lag, sessions) does
//!   not. The probe samples the ISRs every 250 ms from the jump until 2 s
//!   after the step back, and a replica missing from an ISR it was in
//!   before the jump is traced ("ISR shrank during the clock jump"): with
//!   no other fault running a jump must never cause one.
//!
//! - kill_coordinator / crash_coordinator: the consumer group's coordinator
//!   (FindCoordinator from the probe node) is killed or loses power.
//! - crash_consumer: a group member's node is killed (no LeaveGroup, no
//!   last commit); after the down time a fresh member process subscribes.
//! - pause_consumer: a group member stops with its connections open; past
//!   the session timeout it resumes as a zombie the group has fenced.
//! - isolate_consumer: a group member is cut from every broker.
//! - cut_consumer_coordinator: a group member's links to the coordinator
//!   only are cut, both ways: it can still fetch, but neither heartbeat
//!   nor commit.
//!
//! Broker-to-broker cuts use madsim link clogs, which hold bytes rather
//! than drop them: an established connection resumes after the heal, so
//! what a cut tests is timeouts and failover, not lost packets.

use std::path::Path;
use std::sync::Arc;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use weir::client::cluster::MetadataSnapshot;
use weir::client::group::GroupAdmin;
use weir::client::{ClientConfig, Cluster as ClientCluster};
use weir::env::disk::OpenMode;
use weir::env::rng::WeirRng;
use weir::env::sim_disk::{CrashOutcome, SimDisk};
use weir::env::time::{sim_clear_wall_offsets, sim_set_wall_offset, sleep, timeout, Duration};
use weir::env::Disk;

use crate::cluster::{list_files, Cluster, DATA_DIR};
use crate::ctx::Ctx;
use crate::group::{GroupHarness, GROUP_ID};
use crate::probe::PROBE_TIMEOUT;
use crate::scenario::{pick_weighted, FaultKind, FaultSpec};

const WHO: &str = "nemesis";
/// How long a power cut waits for its disk operation before it takes the
/// node down wherever it is, and how often it looks.
const POWER_CUT_WAIT: Duration = Duration::from_secs(2);
const POWER_CUT_POLL: Duration = Duration::from_millis(1);

pub struct Nemesis {
    ctx: Arc<Ctx>,
    spec: FaultSpec,
    rng: WeirRng,
    clients: Vec<NodeHandle>,
    default_net: (f64, std::ops::Range<Duration>),
    /// Asks the cluster who leads what (a harness node no fault touches).
    probe: Option<Probe>,
    /// The workload's consumer group, when it has members.
    group: Option<Arc<GroupHarness>>,
}

/// The nemesis's window on the cluster: Metadata through the real client,
/// from a node of its own.
pub struct Probe {
    pub node: NodeHandle,
    pub bootstrap: String,
    pub topic: String,
    /// Partitions the workload uses (the seed picks among them).
    pub partitions: u32,
}

impl Probe {
    /// (partition -> (leader id, replicas), active controller id) as some
    /// live broker sees them; None when no broker answered in time.
    async fn view(&self) -> Option<(Vec<(i32, Vec<i32>)>, i32)> {
        self.metadata(|m, topic, partitions| {
            (crate::probe::leaders(m, topic, partitions), m.controller_id)
        })
        .await
    }

    /// (partition, ISR) of every workload partition, sorted, as some live
    /// broker sees them; None when no broker answered in time.
    async fn isrs(&self) -> Option<Vec<(i32, Vec<i32>)>> {
        self.metadata(crate::probe::isrs).await
    }

    /// Fresh Metadata for the workload topic, asked from the probe node
    /// (a harness node no fault touches) and read by `read` with the topic
    /// and its partition count; None when no broker answered in time.
    async fn metadata<T: Send + 'static>(
        &self,
        read: impl FnOnce(&MetadataSnapshot, &str, u32) -> T + Send + 'static,
    ) -> Option<T> {
        let bootstrap = self.bootstrap.clone();
        let topic = self.topic.clone();
        let partitions = self.partitions;
        let task = self.node.spawn(async move {
            let topics = std::slice::from_ref(&topic);
            crate::probe::metadata(&bootstrap, Some(topics), |m| read(m, &topic, partitions)).await
        });
        task.await.ok().flatten()
    }

    /// `host:port` of the consumer group's coordinator (FindCoordinator),
    /// as some live broker sees it; None when no broker answered in time.
    async fn coordinator(&self) -> Option<String> {
        let bootstrap = self.bootstrap.clone();
        let task = self.node.spawn(async move {
            let mut cc = ClientConfig::new(&bootstrap);
            cc.connection.request_timeout = Duration::from_secs(1);
            cc.connection.connect_timeout = Duration::from_secs(1);
            cc.connection.client_id = "nemesis".to_string();
            let query = async {
                let cluster = ClientCluster::connect(cc).await.ok()?;
                GroupAdmin::new(cluster)
                    .coordinator_addr(GROUP_ID)
                    .await
                    .ok()
            };
            timeout(PROBE_TIMEOUT, query).await.ok().flatten()
        });
        task.await.ok().flatten()
    }
}

/// How often a clock jump samples the ISRs.
const ISR_SAMPLE: Duration = Duration::from_millis(250);
/// How long it keeps watching after the clock steps back in line.
const JUMP_SETTLE: Duration = Duration::from_secs(2);

/// The trace line that marks an ISR shrink a clock jump caused (tests look
/// for it).
pub const ISR_SHRANK_DURING_JUMP: &str = "ISR shrank during the clock jump";

impl Nemesis {
    pub fn new(ctx: Arc<Ctx>, spec: FaultSpec, seed: u64, clients: Vec<NodeHandle>) -> Nemesis {
        let mut default_net = (0.0, Duration::ZERO..Duration::ZERO);
        NetSim::current().update_config(|c| {
            default_net = (c.packet_loss_rate, c.send_latency.clone());
        });
        // Wall-clock offsets belong to one run; a previous run on this
        // thread (a test running two) must not leave one behind.
        sim_clear_wall_offsets();
        Nemesis {
            ctx,
            spec,
            rng: WeirRng::from_seed(seed),
            clients,
            default_net,
            probe: None,
            group: None,
        }
    }

    /// Let the nemesis crash, pause and cut the workload's group members.
    pub fn with_group(mut self, group: Arc<GroupHarness>) -> Nemesis {
        self.group = Some(group);
        self
    }

    /// Index of the broker coordinating the workload's group, traced
    /// either way.
    async fn find_coordinator(&mut self, cluster: &Cluster) -> Option<usize> {
        let Some(probe) = &self.probe else {
            self.ctx.trace(WHO, "no probe: cannot find the coordinator");
            return None;
        };
        let addr = probe.coordinator().await;
        let index = addr
            .as_ref()
            .and_then(|a| cluster.brokers.iter().position(|b| b.addr() == *a));
        match index {
            Some(i) => self.ctx.trace(
                WHO,
                format!("group coordinator is {}", cluster.brokers[i].name),
            ),
            None => self.ctx.trace(
                WHO,
                format!("group coordinator unknown ({addr:?}); fault skipped"),
            ),
        }
        index
    }

    /// A seed-chosen group member: (its index, its node).
    fn pick_member(&mut self) -> Option<(usize, NodeId)> {
        let members = self.group.as_ref()?.members().to_vec();
        if members.is_empty() {
            return None;
        }
        let i = self.pick(members.len());
        Some((i, members[i]))
    }

    /// Consumer-group faults; false when `kind` is not one.
    async fn inject_group(&mut self, cluster: &Cluster, kind: FaultKind, hold: Duration) -> bool {
        let handle = Handle::current();
        let hold_ms = hold.as_millis();
        match kind {
            FaultKind::KillCoordinator | FaultKind::CrashCoordinator => {
                if let Some(c) = self.find_coordinator(cluster).await {
                    if kind == FaultKind::KillCoordinator {
                        self.kill_node(cluster, c, hold).await;
                    } else {
                        self.crash_node(cluster, c, hold).await;
                    }
                }
            }
            FaultKind::CrashConsumer => {
                let Some((i, node)) = self.pick_member() else {
                    return true;
                };
                self.ctx.trace(
                    WHO,
                    format!("crash group member node {i} (down {hold_ms} ms)"),
                );
                handle.kill(node);
                sleep(hold).await;
                handle.restart(node);
                let seed = self.rng.next_u64();
                if let Some(g) = &self.group {
                    g.respawn(i, seed);
                }
            }
            FaultKind::PauseConsumer => {
                let Some((i, node)) = self.pick_member() else {
                    return true;
                };
                self.ctx
                    .trace(WHO, format!("pause group member node {i} for {hold_ms} ms"));
                handle.pause(node);
                sleep(hold).await;
                self.ctx.trace(WHO, format!("resume group member node {i}"));
                handle.resume(node);
            }
            FaultKind::IsolateConsumer => {
                let Some((i, node)) = self.pick_member() else {
                    return true;
                };
                self.ctx.trace(
                    WHO,
                    format!("isolate group member node {i} for {hold_ms} ms"),
                );
                let links = self.member_links(cluster, node, None);
                sleep(hold).await;
                Self::unclog(&links);
                self.ctx
                    .trace(WHO, format!("reconnect group member node {i}"));
            }
            FaultKind::CutConsumerCoordinator => {
                let Some((i, node)) = self.pick_member() else {
                    return true;
                };
                let Some(c) = self.find_coordinator(cluster).await else {
                    return true;
                };
                self.ctx.trace(
                    WHO,
                    format!(
                        "cut group member node {i} from the coordinator {} for {hold_ms} ms",
                        cluster.brokers[c].name
                    ),
                );
                let links = self.member_links(cluster, node, Some(c));
                sleep(hold).await;
                Self::unclog(&links);
                self.ctx.trace(WHO, format!("uncut group member node {i}"));
            }
            _ => return false,
        }
        true
    }

    /// Clog both directions between a member node and every broker (or
    /// broker `only`); returns the links, for `unclog`.
    fn member_links(
        &self,
        cluster: &Cluster,
        member: NodeId,
        only: Option<usize>,
    ) -> Vec<(NodeId, NodeId)> {
        let net = NetSim::current();
        let mut links = Vec::new();
        for (j, b) in cluster.brokers.iter().enumerate() {
            if only.is_some_and(|o| o != j) {
                continue;
            }
            links.push((member, b.node.id()));
            links.push((b.node.id(), member));
        }
        for (s, d) in &links {
            net.clog_link(*s, *d);
        }
        links
    }

    /// Let the nemesis ask the cluster who leads (needed by kill_leader,
    /// crash_leader and kill_controller).
    pub fn with_probe(mut self, probe: Probe) -> Nemesis {
        self.probe = Some(probe);
        self
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.range_u64(0, n as u64) as usize
    }

    /// 0..n in a seed-chosen order (Fisher-Yates).
    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.pick(i + 1);
            v.swap(i, j);
        }
        v
    }

    /// Index of the broker the probe names for `what`, traced either way.
    async fn find(&mut self, cluster: &Cluster, what: Target) -> Option<usize> {
        self.find_with_replicas(cluster, what).await.map(|(i, _)| i)
    }

    /// `find`, plus the indices of the partition's other replicas (for a
    /// leader).
    async fn find_with_replicas(
        &mut self,
        cluster: &Cluster,
        what: Target,
    ) -> Option<(usize, Vec<usize>)> {
        let Some(probe) = &self.probe else {
            self.ctx.trace(WHO, "no probe: cannot find a leader");
            return None;
        };
        let partition = self.rng.range_u64(0, probe.partitions.max(1) as u64) as usize;
        let view = probe.view().await;
        let mut replicas = Vec::new();
        let found = match (&view, what) {
            (Some((leaders, _)), Target::Leader) => leaders.get(partition).map(|(l, r)| {
                replicas = r.clone();
                *l
            }),
            (Some((_, controller)), Target::Controller) => Some(*controller),
            (None, _) => None,
        };
        let index_of = |id: i32| cluster.brokers.iter().position(|b| b.id == id);
        let index = found.and_then(index_of);
        let label = match what {
            Target::Leader => format!("leader of partition {partition}"),
            Target::Controller => "active controller".to_string(),
        };
        match index {
            Some(i) => self
                .ctx
                .trace(WHO, format!("{label} is {}", cluster.brokers[i].name)),
            None => self
                .ctx
                .trace(WHO, format!("{label} unknown ({found:?}); fault skipped")),
        }
        let others = replicas
            .into_iter()
            .filter(|r| Some(*r) != found)
            .filter_map(index_of)
            .collect();
        index.map(|i| (i, others))
    }

    /// Clog both directions between every node of `a` and every node of
    /// `b`; returns the links, for `unclog`.
    fn cut(&self, cluster: &Cluster, a: &[usize], b: &[usize]) -> Vec<(NodeId, NodeId)> {
        let net = NetSim::current();
        let mut links = Vec::new();
        for &x in a {
            for &y in b {
                let (nx, ny) = (cluster.brokers[x].node.id(), cluster.brokers[y].node.id());
                links.push((nx, ny));
                links.push((ny, nx));
            }
        }
        for (s, d) in &links {
            net.clog_link(*s, *d);
        }
        links
    }

    fn unclog(links: &[(NodeId, NodeId)]) {
        let net = NetSim::current();
        for (s, d) in links {
            net.unclog_link(*s, *d);
        }
    }

    fn names(cluster: &Cluster, nodes: &[usize]) -> String {
        let mut v: Vec<&str> = nodes
            .iter()
            .map(|i| cluster.brokers[*i].name.as_str())
            .collect();
        v.sort_unstable();
        format!("{{{}}}", v.join(","))
    }

    /// Machine crash of broker `i`: kill, crash its disk, hold, restart.
    async fn crash_node(&self, cluster: &Cluster, i: usize, hold: Duration) {
        let handle = Handle::current();
        let b = &cluster.brokers[i];
        handle.kill(b.node.id());
        let summary = crash_disk(&b.disk);
        self.ctx.trace(
            WHO,
            format!("crash {} (down {} ms): {summary}", b.name, hold.as_millis()),
        );
        sleep(hold).await;
        self.ctx.trace(WHO, format!("restart {}", b.name));
        handle.restart(b.node.id());
    }

    /// Broker `i` loses power at a seed-chosen disk operation (or, when it
    /// does no such I/O for a while, wherever it is then), and comes back
    /// after `hold`.
    async fn power_cut_node(&mut self, cluster: &Cluster, i: usize, hold: Duration) {
        let b = &cluster.brokers[i];
        let ops = self.between(self.spec.power_cut_ops);
        b.disk.cut_power_after(ops);
        let mut waited = Duration::ZERO;
        while b.disk.power_cut_at().is_none() && waited < POWER_CUT_WAIT {
            sleep(POWER_CUT_POLL).await;
            waited += POWER_CUT_POLL;
        }
        let at = b.disk.power_cut_at().map_or_else(
            || format!("no disk operation {ops} within {POWER_CUT_WAIT:?}"),
            |what| format!("at {what}"),
        );
        let handle = Handle::current();
        handle.kill(b.node.id());
        let summary = crash_disk(&b.disk);
        self.ctx.trace(
            WHO,
            format!(
                "power cut {} {at} (down {} ms): {summary}",
                b.name,
                hold.as_millis()
            ),
        );
        sleep(hold).await;
        self.ctx.trace(WHO, format!("restart {}", b.name));
        handle.restart(b.node.id());
    }

    /// Process kill of broker `i`, restarted after `hold`.
    async fn kill_node(&self, cluster: &Cluster, i: usize, hold: Duration) {
        let handle = Handle::current();
        let b = &cluster.brokers[i];
        self.ctx.trace(
            WHO,
            format!("kill {} (down {} ms)", b.name, hold.as_millis()),
        );
        handle.kill(b.node.id());
        sleep(hold).await;
        self.ctx.trace(WHO, format!("restart {}", b.name));
        handle.restart(b.node.id());
    }

    fn between(&mut self, r: [u64; 2]) -> u64 {
        self.rng.range_u64(r[0], r[1] + 1)
    }

    /// Run faults until `fault_ms` of simulated time since the run began.
    pub async fn run(&mut self, cluster: &Cluster, fault_end_ms: u64) {
        let weights = self.spec.weights();
        if weights.is_empty() {
            let now = self.ctx.elapsed_ms();
            sleep(Duration::from_millis(fault_end_ms.saturating_sub(now))).await;
            return;
        }
        loop {
            let gap = self.between(self.spec.interval_ms);
            let now = self.ctx.elapsed_ms();
            if now + gap >= fault_end_ms {
                sleep(Duration::from_millis(fault_end_ms.saturating_sub(now))).await;
                return;
            }
            sleep(Duration::from_millis(gap)).await;
            let kind = pick_weighted(&weights, self.rng.next_u64());
            let node = self.rng.range_u64(0, cluster.brokers.len() as u64) as usize;
            let left = fault_end_ms.saturating_sub(self.ctx.elapsed_ms());
            let hold = self.between(self.spec.duration_ms).min(left).max(1);
            self.inject(cluster, kind, node, Duration::from_millis(hold))
                .await;
        }
    }

    async fn inject(&mut self, cluster: &Cluster, kind: FaultKind, i: usize, hold: Duration) {
        if self.inject_group(cluster, kind, hold).await {
            return;
        }
        let handle = Handle::current();
        let b = &cluster.brokers[i];
        let id = b.node.id();
        let name = b.name.clone();
        let hold_ms = hold.as_millis();
        match kind {
            FaultKind::Crash => self.crash_node(cluster, i, hold).await,
            FaultKind::PowerCut => self.power_cut_node(cluster, i, hold).await,
            FaultKind::Kill => self.kill_node(cluster, i, hold).await,
            FaultKind::KillLeader | FaultKind::CrashLeader => {
                if let Some(l) = self.find(cluster, Target::Leader).await {
                    if kind == FaultKind::KillLeader {
                        self.kill_node(cluster, l, hold).await;
                    } else {
                        self.crash_node(cluster, l, hold).await;
                    }
                }
            }
            FaultKind::OrphanLeader => {
                let Some((l, followers)) = self.find_with_replicas(cluster, Target::Leader).await
                else {
                    return;
                };
                let lname = cluster.brokers[l].name.clone();
                self.ctx.trace(
                    WHO,
                    format!(
                        "orphan {lname}: kill its followers {} for {hold_ms} ms",
                        Self::names(cluster, &followers)
                    ),
                );
                for f in &followers {
                    handle.kill(cluster.brokers[*f].node.id());
                }
                sleep(hold).await;
                self.ctx.trace(
                    WHO,
                    format!("restart the followers; kill {lname} for {hold_ms} ms"),
                );
                handle.kill(cluster.brokers[l].node.id());
                for f in &followers {
                    handle.restart(cluster.brokers[*f].node.id());
                }
                sleep(hold).await;
                self.ctx.trace(WHO, format!("restart {lname}"));
                handle.restart(cluster.brokers[l].node.id());
            }
            FaultKind::KillController => {
                if let Some(c) = self.find(cluster, Target::Controller).await {
                    self.kill_node(cluster, c, hold).await;
                }
            }
            FaultKind::PowerLoss => {
                self.ctx
                    .trace(WHO, format!("power loss: every node down for {hold_ms} ms"));
                for b in &cluster.brokers {
                    handle.kill(b.node.id());
                }
                for b in &cluster.brokers {
                    let summary = crash_disk(&b.disk);
                    self.ctx.trace(WHO, format!("{}: {summary}", b.name));
                }
                sleep(hold).await;
                self.ctx.trace(WHO, "power back: restart every node");
                for b in &cluster.brokers {
                    handle.restart(b.node.id());
                }
            }
            FaultKind::Split => {
                let n = cluster.brokers.len();
                let order = self.shuffled(n);
                let minority = 1 + self.pick((n - 1) / 2);
                let (a, b) = order.split_at(minority);
                self.ctx.trace(
                    WHO,
                    format!(
                        "split {} | {} for {hold_ms} ms",
                        Self::names(cluster, a),
                        Self::names(cluster, b)
                    ),
                );
                let links = self.cut(cluster, a, b);
                sleep(hold).await;
                Self::unclog(&links);
                self.ctx.trace(WHO, "split healed");
            }
            FaultKind::Bridge => {
                let n = cluster.brokers.len();
                let order = self.shuffled(n);
                let (bridge, rest) = order.split_first().expect("a cluster has nodes");
                let (a, b) = rest.split_at(rest.len() / 2);
                self.ctx.trace(
                    WHO,
                    format!(
                        "bridge: {} | {} only through {} for {hold_ms} ms",
                        Self::names(cluster, a),
                        Self::names(cluster, b),
                        cluster.brokers[*bridge].name
                    ),
                );
                let links = self.cut(cluster, a, b);
                sleep(hold).await;
                Self::unclog(&links);
                self.ctx.trace(WHO, "bridge healed");
            }
            FaultKind::OneWay => {
                let n = cluster.brokers.len();
                let from = i;
                let to = (from + 1 + self.pick(n - 1)) % n;
                let (s, d) = (
                    cluster.brokers[from].node.id(),
                    cluster.brokers[to].node.id(),
                );
                self.ctx.trace(
                    WHO,
                    format!(
                        "one-way: {} -> {} dropped for {hold_ms} ms",
                        cluster.brokers[from].name, cluster.brokers[to].name
                    ),
                );
                NetSim::current().clog_link(s, d);
                sleep(hold).await;
                NetSim::current().unclog_link(s, d);
                self.ctx.trace(WHO, "one-way link healed");
            }
            FaultKind::Flap => {
                let others: Vec<usize> = (0..cluster.brokers.len()).filter(|j| *j != i).collect();
                self.ctx.trace(
                    WHO,
                    format!("flap {}'s broker links for {hold_ms} ms", name),
                );
                let end = self.ctx.elapsed_ms() + hold_ms as u64;
                let mut flips = 0u32;
                while self.ctx.elapsed_ms() < end {
                    let left = end.saturating_sub(self.ctx.elapsed_ms());
                    let down = self.between(self.spec.flap_ms).min(left).max(1);
                    let links = self.cut(cluster, &[i], &others);
                    sleep(Duration::from_millis(down)).await;
                    Self::unclog(&links);
                    let left = end.saturating_sub(self.ctx.elapsed_ms());
                    let up = self.between(self.spec.flap_ms).min(left);
                    sleep(Duration::from_millis(up)).await;
                    flips += 1;
                }
                self.ctx
                    .trace(WHO, format!("flapping stopped after {flips} cuts"));
            }
            FaultKind::ClockJump => {
                let [lo, hi] = self.spec.clock_jump_ms;
                let span = hi.abs_diff(lo).saturating_add(1);
                let jump = lo.saturating_add(self.rng.range_u64(0, span) as i64);
                let before = match &self.probe {
                    Some(p) => p.isrs().await,
                    None => None,
                };
                let dir = if jump < 0 { "back" } else { "forward" };
                self.ctx.trace(
                    WHO,
                    format!("clock jump: {name}'s wall clock {jump:+} ms ({dir}) for {hold_ms} ms"),
                );
                sim_set_wall_offset(id, jump);
                let mut shrunk = self.watch_isrs(before.as_deref(), hold).await;
                sim_set_wall_offset(id, 0);
                self.ctx.trace(
                    WHO,
                    format!("clock of {name} stepped back in line ({:+} ms)", -jump),
                );
                // Stepping back is a jump too: watch a little longer.
                if shrunk.is_none() {
                    shrunk = self.watch_isrs(before.as_deref(), JUMP_SETTLE).await;
                }
                if let Some(what) = shrunk {
                    self.ctx
                        .trace(WHO, format!("{ISR_SHRANK_DURING_JUMP}: {what}"));
                }
            }
            FaultKind::Pause => {
                self.ctx
                    .trace(WHO, format!("pause {name} for {hold_ms} ms"));
                handle.pause(id);
                sleep(hold).await;
                self.ctx.trace(WHO, format!("resume {name}"));
                handle.resume(id);
            }
            FaultKind::Partition => {
                self.ctx
                    .trace(WHO, format!("isolate {name} for {hold_ms} ms"));
                NetSim::current().clog_node(id);
                sleep(hold).await;
                self.ctx.trace(WHO, format!("reconnect {name}"));
                NetSim::current().unclog_node(id);
            }
            FaultKind::ClogLink => {
                if self.clients.is_empty() {
                    return;
                }
                let c = self.rng.range_u64(0, self.clients.len() as u64) as usize;
                let cid = self.clients[c].id();
                let way = self.rng.range_u64(0, 3);
                let links: Vec<_> = match way {
                    0 => vec![(cid, id)],
                    1 => vec![(id, cid)],
                    _ => vec![(cid, id), (id, cid)],
                };
                let dir = ["client->node", "node->client", "both ways"][way as usize];
                self.ctx.trace(
                    WHO,
                    format!("clog link client {c} / {name} {dir} for {hold_ms} ms"),
                );
                for (s, d) in &links {
                    NetSim::current().clog_link(*s, *d);
                }
                sleep(hold).await;
                for (s, d) in &links {
                    NetSim::current().unclog_link(*s, *d);
                }
                self.ctx
                    .trace(WHO, format!("unclog link client {c} / {name}"));
            }
            FaultKind::Latency => {
                let lo = self.between(self.spec.latency_ms);
                let hi = self.between([lo, self.spec.latency_ms[1].max(lo)]) + 1;
                self.ctx
                    .trace(WHO, format!("latency {lo}..{hi} ms for {hold_ms} ms"));
                NetSim::current().update_config(|c| {
                    c.send_latency = Duration::from_millis(lo)..Duration::from_millis(hi)
                });
                sleep(hold).await;
                self.restore_net();
                self.ctx.trace(WHO, "latency restored");
            }
            FaultKind::Loss => {
                let rate = self.spec.loss_rate;
                self.ctx
                    .trace(WHO, format!("packet loss {rate} for {hold_ms} ms"));
                NetSim::current().update_config(|c| c.packet_loss_rate = rate);
                sleep(hold).await;
                self.restore_net();
                self.ctx.trace(WHO, "packet loss restored");
            }
            FaultKind::SyncError
            | FaultKind::WriteError
            | FaultKind::Enospc
            | FaultKind::ReadCorruption => {
                let mut o = b.base_options.clone();
                let what = match kind {
                    FaultKind::SyncError => {
                        o.sync_error_probability = self.spec.sync_error_probability;
                        format!("failing fsync p={}", o.sync_error_probability)
                    }
                    FaultKind::WriteError => {
                        o.write_error_probability = self.spec.write_error_probability;
                        format!("write EIO p={}", o.write_error_probability)
                    }
                    FaultKind::Enospc => {
                        let slack = self.rng.range_u64(0, 4096);
                        o.capacity_bytes_max = b.disk.used_bytes() + slack;
                        format!("disk full at {} bytes", o.capacity_bytes_max)
                    }
                    _ => {
                        o.read_corruption_probability = self.spec.read_corruption_probability;
                        format!("corrupted reads p={}", o.read_corruption_probability)
                    }
                };
                self.ctx
                    .trace(WHO, format!("{name}: {what} for {hold_ms} ms"));
                b.disk.set_options(o);
                sleep(hold).await;
                b.disk.set_options(b.base_options.clone());
                let stats = b.disk.stats();
                self.ctx
                    .trace(WHO, format!("{name}: disk healed; stats {stats:?}"));
                if self.spec.restart_after_disk_fault {
                    self.ctx.trace(WHO, format!("restart {name} (process)"));
                    restart_process(&handle, id);
                }
            }
            // Handled by inject_group above.
            FaultKind::KillCoordinator
            | FaultKind::CrashCoordinator
            | FaultKind::CrashConsumer
            | FaultKind::PauseConsumer
            | FaultKind::IsolateConsumer
            | FaultKind::CutConsumerCoordinator => {}
            FaultKind::Bitrot => {
                let files: Vec<_> = list_files(&b.disk, Path::new(DATA_DIR))
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .filter_map(|p| {
                        let len = b.disk.open(&p, OpenMode::EXISTING).ok()?.len().ok()?;
                        (len > 0).then_some((p, len))
                    })
                    .collect();
                if files.is_empty() {
                    self.ctx
                        .trace(WHO, format!("{name}: bitrot skipped, no data yet"));
                    return;
                }
                let (path, len) = &files[self.rng.range_u64(0, files.len() as u64) as usize];
                let offset = self.rng.range_u64(0, *len);
                let r = b.disk.corrupt_at_rest(path, offset);
                self.ctx.trace(
                    WHO,
                    format!(
                        "{name}: bit rot in {} at byte {offset} of {len}: {r:?}; restart",
                        path.display()
                    ),
                );
                restart_process(&handle, id);
                sleep(hold).await;
            }
        }
    }

    /// Sample the ISRs every `ISR_SAMPLE` for `window`; the first sample in
    /// which a replica of `before` is missing, described. Without a probe or
    /// a `before`, just waits.
    async fn watch_isrs(
        &self,
        before: Option<&[(i32, Vec<i32>)]>,
        window: Duration,
    ) -> Option<String> {
        let end = self.ctx.elapsed_ms() + window.as_millis() as u64;
        let (Some(probe), Some(before)) = (&self.probe, before) else {
            sleep(window).await;
            return None;
        };
        loop {
            let left = end.saturating_sub(self.ctx.elapsed_ms());
            if left == 0 {
                return None;
            }
            sleep(Duration::from_millis(left).min(ISR_SAMPLE)).await;
            let Some(now) = probe.isrs().await else {
                continue;
            };
            let shrunk: Vec<String> = before
                .iter()
                .zip(&now)
                .filter(|((_, b), (_, a))| b.iter().any(|r| !a.contains(r)))
                .map(|((p, b), (_, a))| format!("p{p} {b:?} -> {a:?}"))
                .collect();
            if !shrunk.is_empty() {
                // Let the window run out: the fault keeps its length.
                let left = end.saturating_sub(self.ctx.elapsed_ms());
                sleep(Duration::from_millis(left)).await;
                return Some(shrunk.join(", "));
            }
        }
    }

    fn restore_net(&self) {
        let (loss, latency) = self.default_net.clone();
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = loss;
            c.send_latency = latency;
        });
    }

    /// Undo every fault still in force. Faults are sequential and each one
    /// heals itself before the next, so this is a safety net for the phase
    /// boundary, not the main healing path.
    pub fn heal_all(&self, cluster: &Cluster) {
        self.restore_net();
        sim_clear_wall_offsets();
        for b in &cluster.brokers {
            NetSim::current().unclog_node(b.node.id());
            for other in &cluster.brokers {
                NetSim::current().unclog_link(b.node.id(), other.node.id());
            }
            for c in &self.clients {
                NetSim::current().unclog_link(c.id(), b.node.id());
                NetSim::current().unclog_link(b.node.id(), c.id());
            }
            if b.disk.options() != b.base_options {
                b.disk.set_options(b.base_options.clone());
            }
        }
        self.ctx.trace(WHO, "healed everything");
    }
}

#[derive(Clone, Copy)]
enum Target {
    Leader,
    Controller,
}

/// Crash a disk (the node must be dead) and summarise what it kept.
fn crash_disk(disk: &SimDisk) -> String {
    let report = disk.crash();
    let (mut kept, mut dropped, mut torn) = (0, 0, 0);
    for (_, outcome) in &report.files {
        match outcome {
            CrashOutcome::Kept => kept += 1,
            CrashOutcome::Dropped => dropped += 1,
            _ => torn += 1,
        }
    }
    format!(
        "unsynced files kept {kept}, dropped {dropped}, torn {torn}; corrupted {}; dir ops kept {}/{}",
        report.corrupted.len(),
        report.dir_ops_kept,
        report.dir_ops_unsynced
    )
}

/// A process restart of a live node. madsim's `restart` alone keeps the
/// node's sockets bound (the new broker could not listen), so kill first:
/// kill resets the node's network state, as a dead process's sockets close.
fn restart_process(handle: &Handle, id: madsim::task::NodeId) {
    handle.kill(id);
    handle.restart(id);
}
