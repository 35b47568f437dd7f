//! The raft driver, storage and transport on real tokio: three members over
//! loopback TCP, each with its own in-memory disk that survives a restart.
#![cfg(not(madsim))]

mod controller_raft_support;

use std::time::Duration;

use controller_raft_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::controller::raft_node::ProposeError;
use weir::controller::rpc::RpcClient;
use weir::env::sim_disk::SimDisk;

const TICK_MS: u64 = 50;
const WAIT: Duration = Duration::from_secs(15);

struct Cluster {
    voters: Vec<(i32, String)>,
    disks: Vec<SimDisk>,
    nodes: Vec<Option<TestNode>>,
    snapshot_every: u64,
}

impl Cluster {
    async fn start(snapshot_every: u64) -> Cluster {
        let mut listeners = Vec::new();
        let mut voters = Vec::new();
        for id in 0..3 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            voters.push((id, l.local_addr().unwrap().to_string()));
            listeners.push(l);
        }
        let disks: Vec<SimDisk> = (0..3).map(|i| new_disk(100 + i)).collect();
        let mut nodes = Vec::new();
        for (id, l) in listeners.into_iter().enumerate() {
            let cfg = config(id as i32, &voters, TICK_MS, snapshot_every);
            nodes.push(Some(TestNode::start(l, cfg, disks[id].clone())));
        }
        Cluster {
            voters,
            disks,
            nodes,
            snapshot_every,
        }
    }

    fn live(&self) -> Vec<&TestNode> {
        self.nodes.iter().flatten().collect()
    }

    fn node(&self, id: i32) -> &TestNode {
        self.nodes[id as usize].as_ref().expect("node is running")
    }

    async fn stop(&mut self, id: i32) {
        let n = self.nodes[id as usize].take().expect("node is running");
        n.shutdown().await;
    }

    /// Restart from the same disk (after a crash of its unsynced writes).
    async fn restart(&mut self, id: i32) {
        assert!(self.nodes[id as usize].is_none());
        self.disks[id as usize].crash();
        let addr = &self.voters[id as usize].1;
        let mut tries = 0;
        let l = loop {
            match TcpListener::bind(addr.as_str()).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("rebind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        let cfg = config(id, &self.voters, TICK_MS, self.snapshot_every);
        self.nodes[id as usize] = Some(TestNode::start(l, cfg, self.disks[id as usize].clone()));
    }

    /// `count` proposals one after another; returns the last index.
    async fn propose_all(&self, leader: i32, from: u32, count: u32) -> u64 {
        let raft = &self.node(leader).raft;
        let mut last = 0;
        for i in from..from + count {
            let index = raft
                .propose(format!("p{i}").into_bytes())
                .await
                .expect("proposal through the leader commits");
            assert!(index > last, "proposals complete at increasing indexes");
            last = index;
        }
        last
    }

    /// `count` proposals in flight at once; returns the highest index.
    async fn propose_concurrently(&self, leader: i32, tag: &str, count: u32) -> u64 {
        let mut handles = Vec::new();
        for i in 0..count {
            let raft = self.node(leader).raft.clone();
            let data = format!("{tag}{i}").into_bytes();
            handles.push(tokio::spawn(async move { raft.propose(data).await }));
        }
        let mut indexes = Vec::new();
        for h in handles {
            indexes.push(
                h.await
                    .unwrap()
                    .expect("proposal through the leader commits"),
            );
        }
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), count as usize, "one index per proposal");
        *indexes.last().unwrap()
    }

    async fn check_same_logs(&self, index: u64) {
        let live = self.live();
        for n in &live {
            n.wait_applied(index, WAIT).await;
        }
        let first = live[0].payloads();
        for n in &live[1..] {
            assert_eq!(n.payloads(), first, "node {} applied a different log", n.id);
        }
    }
}

fn expected(count: u32) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!("p{i}").into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_fail_over_and_catch_up() {
    let mut c = Cluster::start(10_000).await;
    let leader = wait_leader(&c.live(), WAIT).await;
    let follower = (leader + 1) % 3;

    let err = c
        .node(follower)
        .raft
        .propose(b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader: Some(leader)
        }
    );

    let last = c.propose_all(leader, 0, 100).await;
    c.check_same_logs(last).await;
    assert_eq!(c.node(leader).payloads(), expected(100));

    // Many in flight at once: batched into fewer fsyncs, same order everywhere.
    let last = c.propose_concurrently(leader, "c", 200).await;
    c.check_same_logs(last).await;

    // The leader goes away: the other two elect a new one and go on.
    c.stop(leader).await;
    let start = tokio::time::Instant::now();
    let new_leader = wait_leader(&c.live(), WAIT).await;
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} after {:?}", start.elapsed());
    let last = c.propose_all(new_leader, 100, 20).await;
    c.check_same_logs(last).await;

    // The old leader comes back from its disk and catches up.
    c.restart(leader).await;
    let last = c.propose_all(new_leader, 120, 5).await;
    c.check_same_logs(last).await;
    let payloads = c.node(leader).payloads();
    assert_eq!(payloads.len(), 325);
    assert_eq!(payloads[..100], expected(100)[..]);
    for id in 0..3 {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(20).await;
    let leader = wait_leader(&c.live(), WAIT).await;
    let follower = (leader + 1) % 3;
    let last = c.propose_all(leader, 0, 10).await;
    c.check_same_logs(last).await;

    c.stop(follower).await;
    // Far past the compaction interval: the leader's log no longer holds
    // what the follower misses.
    let last = c.propose_all(leader, 10, 100).await;
    c.check_same_logs(last).await;

    c.restart(follower).await;
    c.check_same_logs(last).await;
    let n = c.node(follower);
    assert_eq!(n.payloads(), expected(110));
    assert!(
        n.sm.lock().unwrap().restores >= 1,
        "the follower caught up by installing a snapshot"
    );
    // And it keeps following afterwards.
    let last = c.propose_all(leader, 110, 5).await;
    c.check_same_logs(last).await;
    for id in 0..3 {
        c.stop(id).await;
    }
}

#[tokio::test]
async fn single_voter_leads_at_once() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters = vec![(7, l.local_addr().unwrap().to_string())];
    let disk = new_disk(7);
    let n = TestNode::start(l, config(7, &voters, TICK_MS, 5), disk.clone());
    for i in 0..12 {
        n.raft.propose(format!("p{i}").into_bytes()).await.unwrap();
    }
    assert!(n.raft.is_leader());
    assert_eq!(n.raft.leader(), Some(7));
    assert_eq!(n.payloads(), expected(12));
    n.shutdown().await;
    assert_eq!(
        n.raft.propose(b"late".to_vec()).await,
        Err(ProposeError::NotLeader { leader: None })
    );

    // Restart from disk: the snapshot and the log rebuild the same state.
    disk.crash();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let n = TestNode::start(l, config(7, &voters, TICK_MS, 5), disk);
    n.raft.propose(b"p12".to_vec()).await.unwrap();
    assert_eq!(n.payloads(), expected(13));
    n.shutdown().await;
}

#[tokio::test]
async fn a_failed_fsync_stops_the_member_and_a_restart_recovers() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters = vec![(3, String::new())];
    let disk = new_disk(3);
    let n = TestNode::start(l, config(3, &voters, TICK_MS, 1000), disk.clone());
    for i in 0..5 {
        n.raft.propose(format!("p{i}").into_bytes()).await.unwrap();
    }
    let healthy = disk.options();
    disk.set_options(weir::env::sim_disk::SimDiskOptions {
        sync_error_probability: 1.0,
        ..healthy.clone()
    });
    assert_eq!(
        n.raft.propose(b"never".to_vec()).await,
        Err(ProposeError::NotLeader { leader: None })
    );
    assert!(!n.raft.is_leader());
    n.shutdown().await;

    disk.set_options(healthy);
    disk.crash();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let n = TestNode::start(l, config(3, &voters, TICK_MS, 1000), disk);
    n.raft.propose(b"p5".to_vec()).await.unwrap();
    assert_eq!(n.payloads(), expected(6));
    n.shutdown().await;
}

#[tokio::test]
async fn a_real_disk_keeps_the_log_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters = vec![(0, String::new())];
    let mut cfg = config(0, &voters, TICK_MS, 4);
    cfg.dir = tmp.path().join("__cluster_metadata-0");
    let n = TestNode::start(l, cfg.clone(), weir::env::RealDisk::new());
    for i in 0..10 {
        n.raft.propose(format!("p{i}").into_bytes()).await.unwrap();
    }
    n.shutdown().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let n = TestNode::start(l, cfg, weir::env::RealDisk::new());
    n.raft.propose(b"p10".to_vec()).await.unwrap();
    assert_eq!(n.payloads(), expected(11));
    n.shutdown().await;
}

#[tokio::test]
async fn rpc_round_trips_and_bad_frames_close_only_their_connection() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let voters = vec![(0, addr.to_string())];
    let n = TestNode::start(l, config(0, &voters, TICK_MS, 100), new_disk(1));
    let client = RpcClient::default();
    let a = addr.to_string();
    let mut calls = Vec::new();
    for i in 0..50u32 {
        let client = client.clone();
        let a = a.clone();
        calls.push(tokio::spawn(async move {
            client
                .call(&a, i.to_be_bytes().to_vec(), Duration::from_secs(5))
                .await
                .map(|r| (i, r))
        }));
    }
    for c in calls {
        let (i, r) = c.await.unwrap().unwrap();
        let mut want = i.to_be_bytes().to_vec();
        want.reverse();
        assert_eq!(r, want);
    }

    // A frame of an unknown kind closes that connection...
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(&[0, 0, 0, 2, 9, 0]).await.unwrap();
    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "bad frame closes: {closed:?}"
    );
    // ...and so does an oversized length, while other clients carry on.
    let mut big = TcpStream::connect(addr).await.unwrap();
    big.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), big.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "oversized frame closes: {closed:?}"
    );
    let r = client
        .call(&a, b"abc".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r, b"cba");

    // A dead address fails within the timeout.
    n.shutdown().await;
    let err = client
        .call("127.0.0.1:1", b"x".to_vec(), Duration::from_secs(2))
        .await
        .unwrap_err();
    eprintln!("dead address: {err}");
}
