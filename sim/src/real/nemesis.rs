//! The real runner's nemesis: the simulator's schedule (one fault at a
//! time, a seed-chosen quiet gap before each, kind by the scenario's
//! weights, a seed-chosen node and hold; `crate::nemesis` draws in the same
//! order) applied to OS processes and routes:
//!
//! - kill: kill -9 a random node, restart it after the hold;
//! - kill_leader: kill -9 the leader of a random workload partition (asked
//!   through Metadata, as an operator would), restart it after the hold;
//! - kill_controller: kill -9 the active controller (Metadata's controller_id);
//! - pause: SIGSTOP a random node, SIGCONT after the hold (its sockets stay
//!   open: peers see silence, not a reset);
//! - partition: isolate a random node from the other nodes (blackhole
//!   routes both ways); a seeded coin also cuts it from the clients (its
//!   veth goes down). Needs network namespaces, else skipped and counted;
//! - split: a random minority of the nodes cut from the majority (clients
//!   still reach everyone). Needs namespaces;
//! - orphan_leader: kill a partition leader's followers, hold, restart them
//!   and kill the leader at once, hold, restart it (the unclean-election
//!   trap).
//!
//! Only the choices are seeded: which node leads, what the brokers and
//! clients do in the meantime, and so the history, are up to the machine.
//! While a fault holds, the nemesis reaps nodes that died on their own
//! (`Procs::reap`), so a crash shows up when it happens.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use weir::env::rng::WeirRng;
use weir::env::time::{sleep, Duration};

use crate::ctx::Ctx;
use crate::real::net::Net;
use crate::real::procs::Procs;
use crate::scenario::{pick_weighted, FaultKind, FaultSpec};

const WHO: &str = "nemesis";
/// How often a hold looks for nodes that died on their own.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// The fault kinds this nemesis can inject.
pub const SUPPORTED: &[FaultKind] = &[
    FaultKind::Kill,
    FaultKind::KillLeader,
    FaultKind::KillController,
    FaultKind::Pause,
    FaultKind::Partition,
    FaultKind::Split,
    FaultKind::OrphanLeader,
];

/// A fault kind's scenario name (the key in `[faults]`).
pub fn kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Kill => "kill",
        FaultKind::KillLeader => "kill_leader",
        FaultKind::KillController => "kill_controller",
        FaultKind::Pause => "pause",
        FaultKind::Partition => "partition",
        FaultKind::Split => "split",
        FaultKind::OrphanLeader => "orphan_leader",
        _ => "unsupported",
    }
}

/// What the nemesis did, kept outside it so an interrupted run still
/// reports it.
#[derive(Clone, Debug, Default)]
pub struct FaultTally {
    /// Faults injected, by kind name.
    pub injected: BTreeMap<&'static str, u32>,
    /// Faults skipped (no namespaces, leader unknown), by kind name.
    pub skipped: BTreeMap<&'static str, u32>,
}

pub struct RealNemesis {
    ctx: Arc<Ctx>,
    spec: FaultSpec,
    rng: WeirRng,
    bootstrap: String,
    topic: String,
    partitions: u32,
    tally: Arc<Mutex<FaultTally>>,
}

/// Say it in the trace and on stdout (the run is long enough to watch).
pub fn say(ctx: &Ctx, who: &str, what: impl AsRef<str>) {
    let what = what.as_ref();
    let at = ctx.elapsed_ms();
    println!("[{:>4}.{:03}s] {who}: {what}", at / 1000, at % 1000);
    ctx.trace(who, what);
}

impl RealNemesis {
    pub fn new(
        ctx: Arc<Ctx>,
        spec: FaultSpec,
        seed: u64,
        bootstrap: String,
        topic: String,
        partitions: u32,
        tally: Arc<Mutex<FaultTally>>,
    ) -> RealNemesis {
        RealNemesis {
            ctx,
            spec,
            rng: WeirRng::from_seed(seed),
            bootstrap,
            topic,
            partitions,
            tally,
        }
    }

    fn between(&mut self, r: [u64; 2]) -> u64 {
        self.rng.range_u64(r[0], r[1] + 1)
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.range_u64(0, n as u64) as usize
    }

    /// Sleep `d`, reaping nodes that die on their own meanwhile.
    pub async fn hold(&self, procs: &mut Procs, net: &Net, d: Duration) {
        let end = self.ctx.elapsed_ms() + d.as_millis() as u64;
        loop {
            for crash in procs.reap(net) {
                say(&self.ctx, WHO, format!("CRASH: {crash}"));
            }
            let left = end.saturating_sub(self.ctx.elapsed_ms());
            if left == 0 {
                return;
            }
            sleep(Duration::from_millis(left).min(REAP_EVERY)).await;
        }
    }

    /// Run faults until `fault_end_ms` since the run began.
    pub async fn run(&mut self, procs: &mut Procs, net: &mut Net, fault_end_ms: u64) {
        let weights = self.spec.weights();
        loop {
            let now = self.ctx.elapsed_ms();
            if weights.is_empty() {
                let left = fault_end_ms.saturating_sub(now);
                self.hold(procs, net, Duration::from_millis(left)).await;
                return;
            }
            let gap = self.between(self.spec.interval_ms);
            if now + gap >= fault_end_ms {
                let left = fault_end_ms.saturating_sub(now);
                self.hold(procs, net, Duration::from_millis(left)).await;
                return;
            }
            self.hold(procs, net, Duration::from_millis(gap)).await;
            let kind = pick_weighted(&weights, self.rng.next_u64());
            let node = self.pick(procs.nodes.len());
            let left = fault_end_ms.saturating_sub(self.ctx.elapsed_ms());
            let hold = self.between(self.spec.duration_ms).min(left).max(1);
            let done = self
                .inject(procs, net, kind, node, Duration::from_millis(hold))
                .await;
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            let counts = if done {
                &mut tally.injected
            } else {
                &mut tally.skipped
            };
            *counts.entry(kind_name(kind)).or_default() += 1;
        }
    }

    /// Leader of a seed-chosen partition and its other replicas (indices),
    /// or None (traced) when the cluster would not say.
    async fn find_leader(&mut self, procs: &Procs) -> Option<(usize, Vec<usize>)> {
        let partition = self.pick(self.partitions.max(1) as usize);
        let (topic, partitions) = (self.topic.clone(), self.partitions);
        let topics = [topic.clone()];
        let view = crate::probe::metadata(&self.bootstrap, Some(&topics), |m| {
            crate::probe::leaders(m, &topic, partitions)
        })
        .await;
        let index_of = |id: i32| procs.nodes.iter().position(|n| n.id == id);
        let Some((leader, replicas)) = view.and_then(|v| v.get(partition).cloned()) else {
            say(
                &self.ctx,
                WHO,
                format!("leader of partition {partition} unknown (no answer); fault skipped"),
            );
            return None;
        };
        let Some(l) = index_of(leader) else {
            say(
                &self.ctx,
                WHO,
                format!("partition {partition} has no leader ({leader}); fault skipped"),
            );
            return None;
        };
        say(
            &self.ctx,
            WHO,
            format!("leader of partition {partition} is {}", procs.nodes[l].name),
        );
        let others = replicas
            .into_iter()
            .filter(|r| *r != leader)
            .filter_map(index_of)
            .collect();
        Some((l, others))
    }

    async fn find_controller(&mut self, procs: &Procs) -> Option<usize> {
        let id = crate::probe::metadata(&self.bootstrap, Some(&[]), |m| m.controller_id).await;
        let index = id.and_then(|id| procs.nodes.iter().position(|n| n.id == id));
        match index {
            Some(i) => say(
                &self.ctx,
                WHO,
                format!("active controller is {}", procs.nodes[i].name),
            ),
            None => say(
                &self.ctx,
                WHO,
                format!("active controller unknown ({id:?}); fault skipped"),
            ),
        }
        index
    }

    async fn kill_node(&self, procs: &mut Procs, net: &Net, i: usize, hold: Duration) {
        let name = procs.nodes[i].name.clone();
        say(
            &self.ctx,
            WHO,
            format!("kill -9 {name} (down {} ms)", hold.as_millis()),
        );
        procs.kill(i);
        self.hold(procs, net, hold).await;
        self.restart(procs, net, i);
    }

    fn restart(&self, procs: &mut Procs, net: &Net, i: usize) {
        let name = procs.nodes[i].name.clone();
        match procs.spawn(net, i) {
            Ok(()) => say(&self.ctx, WHO, format!("restart {name}")),
            Err(e) => say(&self.ctx, WHO, format!("restart {name} FAILED: {e:#}")),
        }
    }

    fn names(procs: &Procs, nodes: &[usize]) -> String {
        let mut v: Vec<&str> = nodes
            .iter()
            .map(|i| procs.nodes[*i].name.as_str())
            .collect();
        v.sort_unstable();
        format!("{{{}}}", v.join(","))
    }

    /// Inject one fault; false when it was skipped.
    async fn inject(
        &mut self,
        procs: &mut Procs,
        net: &mut Net,
        kind: FaultKind,
        i: usize,
        hold: Duration,
    ) -> bool {
        let hold_ms = hold.as_millis();
        let name = procs.nodes[i].name.clone();
        match kind {
            FaultKind::Kill => self.kill_node(procs, net, i, hold).await,
            FaultKind::KillLeader => {
                let Some((l, _)) = self.find_leader(procs).await else {
                    return false;
                };
                self.kill_node(procs, net, l, hold).await;
            }
            FaultKind::KillController => {
                let Some(c) = self.find_controller(procs).await else {
                    return false;
                };
                self.kill_node(procs, net, c, hold).await;
            }
            FaultKind::Pause => {
                say(&self.ctx, WHO, format!("SIGSTOP {name} for {hold_ms} ms"));
                procs.pause(i);
                self.hold(procs, net, hold).await;
                say(&self.ctx, WHO, format!("SIGCONT {name}"));
                procs.resume(i);
            }
            FaultKind::Partition => {
                let cut_clients = self.rng.chance(0.5);
                if let Some(why) = net.partitions_unavailable() {
                    say(
                        &self.ctx,
                        WHO,
                        format!("partition of {name} SKIPPED: {why}"),
                    );
                    return false;
                }
                let others: Vec<usize> = (0..procs.nodes.len()).filter(|j| *j != i).collect();
                let result = if cut_clients {
                    say(
                        &self.ctx,
                        WHO,
                        format!("isolate {name} from everyone, clients too (veth down) for {hold_ms} ms"),
                    );
                    net.unplug(i)
                } else {
                    say(
                        &self.ctx,
                        WHO,
                        format!(
                            "isolate {name} from {} (blackhole routes both ways; clients still reach it) for {hold_ms} ms",
                            Self::names(procs, &others)
                        ),
                    );
                    net.cut(&[i], &others)
                };
                if let Err(e) = result {
                    say(&self.ctx, WHO, format!("partition FAILED: {e}"));
                }
                self.hold(procs, net, hold).await;
                self.heal_net(net);
            }
            FaultKind::Split => {
                let n = procs.nodes.len();
                let mut order: Vec<usize> = (0..n).collect();
                for k in (1..n).rev() {
                    let j = self.pick(k + 1);
                    order.swap(k, j);
                }
                let minority = 1 + self.pick((n - 1) / 2);
                if let Some(why) = net.partitions_unavailable() {
                    say(&self.ctx, WHO, format!("split SKIPPED: {why}"));
                    return false;
                }
                let (a, b) = order.split_at(minority);
                say(
                    &self.ctx,
                    WHO,
                    format!(
                        "split {} | {} for {hold_ms} ms",
                        Self::names(procs, a),
                        Self::names(procs, b)
                    ),
                );
                if let Err(e) = net.cut(a, b) {
                    say(&self.ctx, WHO, format!("split FAILED: {e}"));
                }
                self.hold(procs, net, hold).await;
                self.heal_net(net);
            }
            FaultKind::OrphanLeader => {
                let Some((l, followers)) = self.find_leader(procs).await else {
                    return false;
                };
                let lname = procs.nodes[l].name.clone();
                say(
                    &self.ctx,
                    WHO,
                    format!(
                        "orphan {lname}: kill -9 its followers {} for {hold_ms} ms",
                        Self::names(procs, &followers)
                    ),
                );
                for f in &followers {
                    procs.kill(*f);
                }
                self.hold(procs, net, hold).await;
                say(
                    &self.ctx,
                    WHO,
                    format!("restart the followers; kill -9 {lname} for {hold_ms} ms"),
                );
                procs.kill(l);
                for f in &followers {
                    self.restart(procs, net, *f);
                }
                self.hold(procs, net, hold).await;
                self.restart(procs, net, l);
            }
            other => unreachable!("{other:?} is not a real fault (checked at load)"),
        }
        true
    }

    fn heal_net(&self, net: &mut Net) {
        let errors = net.heal();
        if errors.is_empty() {
            say(&self.ctx, WHO, "network healed");
        } else {
            say(
                &self.ctx,
                WHO,
                format!("network heal FAILED: {}", errors.join("; ")),
            );
        }
    }

    /// Undo everything still in force: resume paused nodes, start dead
    /// ones, heal the network. Faults heal themselves as they end, so this
    /// is a safety net for the phase boundary.
    pub fn heal_all(&self, procs: &mut Procs, net: &mut Net) {
        for i in 0..procs.nodes.len() {
            if procs.nodes[i].is_paused() {
                procs.resume(i);
            }
            if !procs.nodes[i].is_running() {
                self.restart(procs, net, i);
            }
        }
        let errors = net.heal();
        if !errors.is_empty() {
            say(
                &self.ctx,
                WHO,
                format!("network heal FAILED: {}", errors.join("; ")),
            );
        }
        say(&self.ctx, WHO, "healed everything");
    }
}
