//! The simulated cluster: each Weir node is a madsim node with its own IP,
//! started through the production entry point `Server::start(config, disk)`.
//! The harness owns each node's SimDisk, so the disk outlives a kill: a
//! crash is `kill` + `SimDisk::crash()` + `restart`, and the restarted broker
//! recovers from what the disk kept.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use madsim::runtime::{Handle, NodeHandle};
use weir::broker::Server;
use weir::config::ServerConfig;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::time::{sleep, Duration};
use weir::env::Disk;

use crate::ctx::Ctx;
use crate::props::{node_properties, NodeAddr};
use crate::scenario::Scenario;

pub const BROKER_PORT: u16 = 9092;
/// The controller listener of a voter (raft messages and broker RPCs).
pub const CONTROLLER_PORT: u16 = 9093;
pub const DATA_DIR: &str = "/data";
/// How long a broker whose start failed waits before trying again.
const START_RETRY: Duration = Duration::from_millis(500);

pub struct BrokerNode {
    /// Kafka node id (index + 1).
    pub id: i32,
    pub name: String,
    pub ip: IpAddr,
    pub node: NodeHandle,
    pub disk: SimDisk,
    /// The options the scenario gives this disk; fault windows return to them.
    pub base_options: SimDiskOptions,
}

impl BrokerNode {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, BROKER_PORT)
    }
}

pub struct Cluster {
    pub brokers: Vec<BrokerNode>,
}

pub fn broker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + i as u8))
}

/// Workload client `i` (producers, then consumers).
pub fn client_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8))
}

/// The harness's own client nodes: 0 creates the topic, 1 does the final read.
pub fn harness_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1 + i as u8))
}

pub fn disk_options(s: &Scenario) -> SimDiskOptions {
    let d = &s.disk;
    SimDiskOptions {
        lying_fsync: d.lying_fsync,
        lose_unsynced_dir_ops: d.lose_unsynced_dir_ops,
        read_corruption_probability: d.read_corruption_probability,
        read_error_probability: d.read_error_probability,
        write_error_probability: d.write_error_probability,
        sync_error_probability: d.sync_error_probability,
        crash_corruption_probability: d.crash_corruption_probability,
        ..SimDiskOptions::default()
    }
}

/// The ServerConfig of node `i` (node id i + 1), exactly as a production
/// node would get it from its server.properties.
pub fn server_config(s: &Scenario, i: usize) -> anyhow::Result<ServerConfig> {
    let nodes: Vec<NodeAddr> = (0..s.cluster.nodes)
        .map(|j| NodeAddr {
            host: broker_ip(j).to_string(),
            broker_port: BROKER_PORT,
            controller_port: CONTROLLER_PORT,
        })
        .collect();
    let mut cfg = ServerConfig::default_single_node();
    for (k, v) in node_properties(s, i, &nodes, DATA_DIR) {
        cfg.set(&k, &v)
            .map_err(|e| anyhow::anyhow!("broker property {k}={v}: {e}"))?;
    }
    Ok(cfg)
}

impl Cluster {
    /// Create every broker node; each starts serving at once.
    pub fn start(s: &Scenario, ctx: &Arc<Ctx>, disk_seeds: &[u64]) -> anyhow::Result<Cluster> {
        let handle = Handle::current();
        let mut brokers = Vec::new();
        for (i, seed) in disk_seeds.iter().enumerate().take(s.cluster.nodes) {
            let name = format!("n{}", i + 1);
            let base_options = disk_options(s);
            let disk = SimDisk::new(*seed, base_options.clone());
            let config = server_config(s, i)?;
            let (d, c, x, n) = (disk.clone(), config, ctx.clone(), name.clone());
            let node = handle
                .create_node()
                .name(name.clone())
                .ip(broker_ip(i))
                .init(move || serve(c.clone(), d.clone(), x.clone(), n.clone()))
                .build();
            brokers.push(BrokerNode {
                id: i as i32 + 1,
                name,
                ip: broker_ip(i),
                node,
                disk,
                base_options,
            });
        }
        Ok(Cluster { brokers })
    }

    /// The broker with Kafka node id `id`.
    pub fn by_id(&self, id: i32) -> Option<&BrokerNode> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// Every broker in the bootstrap list: clients try each in turn.
    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(BrokerNode::addr)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A broker node's life: start the server and keep it until the node is
/// killed. A start that fails (a disk fault during recovery, say) is traced
/// and retried, as a supervisor would restart the process.
async fn serve(config: ServerConfig, disk: SimDisk, ctx: Arc<Ctx>, name: String) {
    loop {
        match Server::start(config.clone(), Arc::new(disk.clone())).await {
            Ok(server) => {
                ctx.trace(&name, format!("broker up at {}", server.local_addr()));
                // The server lives until madsim kills the node: dropping it
                // would be a clean shutdown, which is not what a crash is.
                std::future::pending::<()>().await;
                drop(server);
            }
            Err(e) => {
                ctx.trace(&name, format!("broker start failed: {e:#}"));
                sleep(START_RETRY).await;
            }
        }
    }
}

/// Every regular file under `dir` on `disk`, sorted (the seed picks among them).
pub fn list_files(disk: &SimDisk, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(mut names) = disk.list_dir(&d) else {
            continue;
        };
        names.sort();
        for n in names {
            let p = d.join(n);
            if disk.is_dir(&p) {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
