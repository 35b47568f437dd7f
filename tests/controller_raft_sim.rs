//! The raft members inside madsim: three controller nodes with their own IPs
//! and one SimDisk each owned by the test (so a disk survives its node's
//! kill), under kills, restarts and a clogged leader. The same seed must give
//! the same leader/term history.
#![cfg(madsim)]

mod controller_raft_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use controller_raft_support::*;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use tokio::net::TcpListener;
use weir::controller::raft_node::ProposeError;
use weir::env::sim_disk::SimDisk;

const PORT: u16 = 9093;
const TICK_MS: u64 = 100;
const SNAPSHOT_EVERY: u64 = 50;
const WAIT: Duration = Duration::from_secs(30);

type Slot = Arc<Mutex<Option<TestNode>>>;

/// (virtual ms since start, node, leader it sees, its term)
type History = Vec<(u64, i32, Option<i32>, u64)>;

struct SimCluster {
    handle: Handle,
    nodes: Vec<NodeHandle>,
    disks: Vec<SimDisk>,
    slots: Vec<Slot>,
}

fn ip(id: i32) -> String {
    format!("10.0.1.{}", id + 1)
}

impl SimCluster {
    fn start(seed: u64) -> SimCluster {
        let handle = Handle::current();
        let voters: Vec<(i32, String)> = (0..3).map(|i| (i, format!("{}:{PORT}", ip(i)))).collect();
        let mut nodes = Vec::new();
        let mut disks = Vec::new();
        let mut slots = Vec::new();
        for id in 0..3i32 {
            let disk = new_disk(seed * 10 + id as u64);
            let slot: Slot = Arc::default();
            let mut cfg = config(id, &voters, TICK_MS, SNAPSHOT_EVERY);
            // Distinct per node, permuted by the seed.
            cfg.election_tick = 10 + 3 * ((id as usize + seed as usize) % 3);
            let (d, s) = (disk.clone(), slot.clone());
            let node = handle
                .create_node()
                .name(format!("controller-{id}"))
                .ip(ip(id).parse().unwrap())
                .init(move || {
                    let (disk, slot, cfg) = (d.clone(), s.clone(), cfg.clone());
                    async move {
                        let addr = format!("{}:{PORT}", ip(cfg.node_id));
                        let l = TcpListener::bind(addr.as_str()).await.unwrap();
                        *slot.lock().unwrap() = Some(TestNode::start(l, cfg, disk));
                        // The node's main: when it returns, madsim ends the node.
                        std::future::pending::<()>().await
                    }
                })
                .build();
            nodes.push(node);
            disks.push(disk);
            slots.push(slot);
        }
        SimCluster {
            handle,
            nodes,
            disks,
            slots,
        }
    }

    fn get(&self, id: i32) -> Option<TestNode> {
        self.slots[id as usize].lock().unwrap().clone()
    }

    fn node(&self, id: i32) -> TestNode {
        self.get(id).expect("node is running")
    }

    fn live(&self) -> Vec<TestNode> {
        (0..3).filter_map(|i| self.get(i)).collect()
    }

    async fn wait_started(&self) {
        for _ in 0..1000 {
            if self.slots.iter().all(|s| s.lock().unwrap().is_some()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nodes did not start");
    }

    async fn leader_of(&self, ids: &[i32]) -> i32 {
        let nodes: Vec<TestNode> = ids.iter().map(|i| self.node(*i)).collect();
        let refs: Vec<&TestNode> = nodes.iter().collect();
        wait_leader(&refs, WAIT).await
    }

    fn kill(&self, id: i32) {
        self.handle.kill(self.nodes[id as usize].id());
        self.slots[id as usize].lock().unwrap().take();
        self.disks[id as usize].crash();
    }

    async fn restart(&self, id: i32) {
        self.handle.restart(self.nodes[id as usize].id());
        self.wait_started().await;
    }

    async fn propose_all(&self, leader: i32, from: u32, count: u32) -> u64 {
        let raft = self.node(leader).raft;
        let mut last = 0;
        for i in from..from + count {
            last = raft
                .propose(format!("p{i}").into_bytes())
                .await
                .expect("proposal through the leader commits");
        }
        last
    }

    async fn check_same_logs(&self, index: u64) {
        let live = self.live();
        for n in &live {
            n.wait_applied(index, WAIT).await;
        }
        for n in &live[1..] {
            assert_eq!(n.payloads(), live[0].payloads(), "node {} diverged", n.id);
        }
    }
}

/// Record every change of (leader, term) any live node reports.
fn record_history(slots: Vec<Slot>) -> (Arc<Mutex<History>>, tokio::task::JoinHandle<()>) {
    let history: Arc<Mutex<History>> = Arc::default();
    let h = history.clone();
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(async move {
        let mut last: Vec<Option<(Option<i32>, u64)>> = vec![None; slots.len()];
        loop {
            for (i, slot) in slots.iter().enumerate() {
                let seen = slot
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|n| (n.raft.leader(), n.raft.term()));
                if let Some(seen) = seen {
                    if last[i] != Some(seen) {
                        last[i] = Some(seen);
                        let ms = start.elapsed().as_millis() as u64;
                        h.lock().unwrap().push((ms, i as i32, seen.0, seen.1));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (history, task)
}

async fn scenario(seed: u64) -> History {
    let c = SimCluster::start(seed);
    c.wait_started().await;
    let (history, recorder) = record_history(c.slots.clone());

    let leader = c.leader_of(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    assert_eq!(
        c.node(follower).raft.propose(b"x".to_vec()).await,
        Err(ProposeError::NotLeader {
            leader: Some(leader)
        })
    );
    let last = c.propose_all(leader, 0, 100).await;
    c.check_same_logs(last).await;

    // Kill the leader (its disk loses what it never synced).
    c.kill(leader);
    let rest: Vec<i32> = (0..3).filter(|i| *i != leader).collect();
    let leader2 = c.leader_of(&rest).await;
    // Past several compactions: the dead node will need a snapshot.
    let last = c.propose_all(leader2, 100, 120).await;
    c.check_same_logs(last).await;

    c.restart(leader).await;
    let last = c.propose_all(leader2, 220, 5).await;
    c.check_same_logs(last).await;
    assert_eq!(c.node(leader).payloads().len(), 225);

    // Clog the leader: the others elect a new one, the old one steps down
    // (check_quorum) and its proposals fail; after the heal it rejoins
    // without disrupting the new leader (pre_vote).
    let net = NetSim::current();
    net.clog_node(c.nodes[leader2 as usize].id());
    let stale = c.node(leader2).raft;
    let stale_proposal = tokio::spawn(async move { stale.propose(b"lost?".to_vec()).await });
    let rest: Vec<i32> = (0..3).filter(|i| *i != leader2).collect();
    let leader3 = c.leader_of(&rest).await;
    assert_ne!(leader3, leader2);
    let r = tokio::time::timeout(WAIT, stale_proposal)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(r, Err(ProposeError::NotLeader { .. })), "{r:?}");
    for _ in 0..100 {
        if !c.node(leader2).raft.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !c.node(leader2).raft.is_leader(),
        "a cut-off leader steps down"
    );
    let last = c.propose_all(leader3, 225, 10).await;
    let term3 = c.node(leader3).raft.term();
    net.unclog_node(c.nodes[leader2 as usize].id());
    c.check_same_logs(last).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.leader_of(&[0, 1, 2]).await, leader3);
    assert_eq!(
        c.node(leader3).raft.term(),
        term3,
        "the healed node did not force an election"
    );
    // Never replicated from the cut-off leader: overwritten, never applied.
    for n in c.live() {
        assert!(!n.payloads().contains(&b"lost?".to_vec()));
    }

    recorder.abort();
    let h = history.lock().unwrap().clone();
    h
}

#[tokio::test]
async fn three_controllers_survive_kills_restarts_and_a_clogged_leader() {
    let seed = Handle::current().seed();
    let history = scenario(seed).await;
    assert!(history.len() >= 6, "{history:?}");
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let run = |seed: u64| {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(scenario(seed))
    };
    for seed in [1u64, 2] {
        let a = run(seed);
        let b = run(seed);
        assert_eq!(
            a, b,
            "seed {seed}: leader/term history differs between runs"
        );
    }
}

#[tokio::test]
async fn rpc_calls_cross_simulated_nodes_and_survive_a_clog() {
    let handle = Handle::current();
    let c = SimCluster::start(handle.seed());
    c.wait_started().await;
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.2.1".parse().unwrap())
        .build();
    let server = c.nodes[0].id();
    client_node
        .spawn(async move {
            let client = weir::controller::rpc::RpcClient::default();
            let addr = format!("{}:{PORT}", ip(0));
            let r = client
                .call(&addr, b"hello".to_vec(), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r, b"olleh");
            // A clogged server: the call times out, and the same client
            // works again once the network heals.
            NetSim::current().clog_node(server);
            let err = client
                .call(&addr, b"x".to_vec(), Duration::from_secs(2))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
            NetSim::current().unclog_node(server);
            let r = client
                .call(&addr, b"ab".to_vec(), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(r, b"ba");
        })
        .await
        .unwrap();
}
