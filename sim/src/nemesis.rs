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

use std::path::Path;
use std::sync::Arc;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use weir::env::disk::OpenMode;
use weir::env::rng::WeirRng;
use weir::env::time::{sleep, Duration};
use weir::env::Disk;

use crate::cluster::{list_files, Cluster, DATA_DIR};
use crate::ctx::Ctx;
use crate::scenario::{FaultKind, FaultSpec};

const WHO: &str = "nemesis";

pub struct Nemesis {
    ctx: Arc<Ctx>,
    spec: FaultSpec,
    rng: WeirRng,
    clients: Vec<NodeHandle>,
    default_net: (f64, std::ops::Range<Duration>),
}

impl Nemesis {
    pub fn new(ctx: Arc<Ctx>, spec: FaultSpec, seed: u64, clients: Vec<NodeHandle>) -> Nemesis {
        let mut default_net = (0.0, Duration::ZERO..Duration::ZERO);
        NetSim::current().update_config(|c| {
            default_net = (c.packet_loss_rate, c.send_latency.clone());
        });
        Nemesis {
            ctx,
            spec,
            rng: WeirRng::from_seed(seed),
            clients,
            default_net,
        }
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
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        loop {
            let gap = self.between(self.spec.interval_ms);
            let now = self.ctx.elapsed_ms();
            if now + gap >= fault_end_ms {
                sleep(Duration::from_millis(fault_end_ms.saturating_sub(now))).await;
                return;
            }
            sleep(Duration::from_millis(gap)).await;
            // Pick a kind by weight with 53 bits of the seeded stream.
            let mut x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut kind = weights[weights.len() - 1].0;
            for (k, w) in &weights {
                if x < *w {
                    kind = *k;
                    break;
                }
                x -= w;
            }
            let node = self.rng.range_u64(0, cluster.brokers.len() as u64) as usize;
            let left = fault_end_ms.saturating_sub(self.ctx.elapsed_ms());
            let hold = self.between(self.spec.duration_ms).min(left).max(1);
            self.inject(cluster, kind, node, Duration::from_millis(hold))
                .await;
        }
    }

    async fn inject(&mut self, cluster: &Cluster, kind: FaultKind, i: usize, hold: Duration) {
        let handle = Handle::current();
        let b = &cluster.brokers[i];
        let id = b.node.id();
        let name = b.name.clone();
        let hold_ms = hold.as_millis();
        match kind {
            FaultKind::Crash => {
                handle.kill(id);
                let report = b.disk.crash();
                let mut kept = 0;
                let mut dropped = 0;
                let mut torn = 0;
                for (_, outcome) in &report.files {
                    match outcome {
                        weir::env::sim_disk::CrashOutcome::Kept => kept += 1,
                        weir::env::sim_disk::CrashOutcome::Dropped => dropped += 1,
                        _ => torn += 1,
                    }
                }
                self.ctx.trace(
                    WHO,
                    format!(
                        "crash {name} (down {hold_ms} ms): unsynced files kept {kept}, dropped \
                         {dropped}, torn {torn}; corrupted {}; dir ops kept {}/{}",
                        report.corrupted.len(),
                        report.dir_ops_kept,
                        report.dir_ops_unsynced
                    ),
                );
                sleep(hold).await;
                self.ctx.trace(WHO, format!("restart {name}"));
                handle.restart(id);
            }
            FaultKind::Kill => {
                self.ctx
                    .trace(WHO, format!("kill {name} (down {hold_ms} ms)"));
                handle.kill(id);
                sleep(hold).await;
                self.ctx.trace(WHO, format!("restart {name}"));
                handle.restart(id);
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
        for b in &cluster.brokers {
            NetSim::current().unclog_node(b.node.id());
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

/// A process restart of a live node. madsim's `restart` alone keeps the
/// node's sockets bound (the new broker could not listen), so kill first:
/// kill resets the node's network state, as a dead process's sockets close.
fn restart_process(handle: &Handle, id: madsim::task::NodeId) {
    handle.kill(id);
    handle.restart(id);
}
