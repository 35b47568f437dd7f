//! Shared pieces of the raft tests: a tiny state machine (the list of applied
//! payloads) and a test node that runs a RaftNode behind its controller
//! listener.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use weir::controller::raft_node::{RaftConfig, RaftNode, StateMachine};
use weir::controller::transport::{serve_controller_listener, RpcCall};
use weir::env::sim_disk::SimDisk;
use weir::env::Disk;

/// The applied payloads in order, with the index each was applied at.
#[derive(Default, Debug)]
pub struct LogSm {
    pub applied: Vec<(u64, Vec<u8>)>,
    pub restores: u64,
}

impl LogSm {
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.applied.iter().map(|(_, d)| d.clone()).collect()
    }
}

impl StateMachine for LogSm {
    fn apply(&mut self, index: u64, data: &[u8]) {
        if let Some((last, _)) = self.applied.last() {
            assert!(index > *last, "entries are applied in index order");
        }
        self.applied.push((index, data.to_vec()));
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, d) in &self.applied {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(&(d.len() as u32).to_be_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    fn restore(&mut self, _index: u64, data: &[u8]) {
        self.restores += 1;
        self.applied.clear();
        let mut pos = 0;
        while pos < data.len() {
            let i = u64::from_be_bytes(data[pos..pos + 8].try_into().unwrap());
            let len = u32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
            self.applied
                .push((i, data[pos + 12..pos + 12 + len].to_vec()));
            pos += 12 + len;
        }
    }
}

/// One running member: raft, its listener and an echo RPC service.
#[derive(Clone)]
pub struct TestNode {
    pub id: i32,
    pub raft: RaftNode,
    pub sm: Arc<Mutex<LogSm>>,
    pub addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
}

pub fn config(id: i32, voters: &[(i32, String)], tick_ms: u64, snapshot_every: u64) -> RaftConfig {
    RaftConfig {
        node_id: id,
        voters: voters.to_vec(),
        dir: PathBuf::from("/data/__cluster_metadata-0"),
        tick_ms,
        // Distinct per node so first elections do not split forever.
        election_tick: 10 + 3 * id as usize,
        heartbeat_tick: 2,
        snapshot_interval_entries: snapshot_every,
    }
}

pub fn new_disk(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed, Default::default());
    disk.create_dir_all(std::path::Path::new("/data")).unwrap();
    disk
}

impl TestNode {
    /// Start a member on an already bound listener.
    pub fn start(listener: TcpListener, cfg: RaftConfig, disk: impl Disk) -> TestNode {
        let addr = listener.local_addr().unwrap();
        let sm = Arc::new(Mutex::new(LogSm::default()));
        let id = cfg.node_id;
        let raft = RaftNode::start(cfg, Arc::new(disk), sm.clone()).expect("raft starts");
        let (stop, stop_rx) = watch::channel(false);
        let (rpc_tx, mut rpc_rx) = mpsc::channel::<RpcCall>(64);
        tokio::spawn(serve_controller_listener(
            listener,
            raft.clone(),
            rpc_tx,
            stop_rx,
        ));
        // Echo service: the request reversed.
        tokio::spawn(async move {
            while let Some(call) = rpc_rx.recv().await {
                let mut r = call.request;
                r.reverse();
                let _ = call.reply.send(r);
            }
        });
        TestNode {
            id,
            raft,
            sm,
            addr,
            stop: Arc::new(stop),
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.raft.shutdown().await;
    }

    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.sm.lock().unwrap().payloads()
    }

    pub async fn wait_applied(&self, index: u64, within: Duration) {
        let mut rx = self.raft.applied();
        let r = tokio::time::timeout(within, rx.wait_for(|a| *a >= index))
            .await
            .map(|_| ());
        assert!(
            r.is_ok(),
            "node {} applied {} < {index} after {within:?}",
            self.id,
            *rx.borrow()
        );
    }
}

/// The leader every given node agrees on, waiting up to `within`.
pub async fn wait_leader(nodes: &[&TestNode], within: Duration) -> i32 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let leaders: Vec<Option<i32>> = nodes.iter().map(|n| n.raft.leader()).collect();
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l))
                && nodes.iter().any(|n| n.id == *l && n.raft.is_leader())
            {
                return *l;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader within {within:?}: {leaders:?}, terms {:?}, applied {:?}",
            nodes.iter().map(|n| n.raft.term()).collect::<Vec<_>>(),
            nodes
                .iter()
                .map(|n| *n.raft.applied().borrow())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
