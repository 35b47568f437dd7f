//! The single-node broker: a TCP listener, one task per connection, one
//! handler per Kafka API, and the topic/partition registry.
//!
//! Flow: `connection` reads a frame -> `protocol` decodes its header ->
//! `handlers::dispatch` runs the API's handler against the `Registry` ->
//! `protocol` encodes the response -> `connection` writes it. A connection
//! answers its requests strictly in order (Kafka's guarantee).

pub mod connection;
pub mod handlers;
pub mod log_maintenance;
pub mod producer_ids;
pub mod registry;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::coordinator::group::{service::TICK_INTERVAL_MS, GroupService};
use crate::env::time::{now_ms, sleep, Duration};
use crate::env::Disk;
use producer_ids::ProducerIds;
use registry::Registry;

use crate::replica::{endpoint::TcpEndpoints, NoIsrChannel, ReplicaManager, ReplicaSettings};

/// State shared by every connection.
pub struct Broker {
    pub config: Arc<ServerConfig>,
    pub registry: Arc<Registry>,
    /// Replicated partitions (leader/follower, HW, ISR), driven by images.
    pub replicas: Arc<ReplicaManager>,
    pub producer_ids: Mutex<ProducerIds>,
    /// The consumer group coordinator (every group maps to this broker).
    pub groups: GroupService,
    /// Host and port Metadata and DescribeCluster advertise.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Flips to true when the server shuts down; long polls and connections end.
    pub shutdown: watch::Receiver<bool>,
}

/// A running broker.
pub struct Server {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    flush_task: JoinHandle<()>,
    maintenance_task: JoinHandle<()>,
    group_task: JoinHandle<()>,
}

impl Server {
    /// Open every log, bind the listener and start serving.
    pub async fn start(config: ServerConfig, disk: Arc<dyn Disk>) -> anyhow::Result<Server> {
        let config = Arc::new(config);
        let registry = Arc::new(Registry::open(disk, config.clone(), now_ms())?);
        let replicas = Arc::new(ReplicaManager::new(
            ReplicaSettings::from_config(&config),
            registry.clone(),
            Arc::new(NoIsrChannel),
            Arc::new(TcpEndpoints::default()),
        ));
        let producer_ids = ProducerIds::open(registry.store())?;
        let groups = GroupService::open(&registry, now_ms())?;
        let listener = TcpListener::bind(config.listen_addr()).await?;
        let local_addr = listener.local_addr()?;
        let (advertised_host, advertised_port) = advertised(&config, local_addr);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let broker = Arc::new(Broker {
            config: config.clone(),
            registry,
            replicas,
            producer_ids: Mutex::new(producer_ids),
            groups,
            advertised_host,
            advertised_port,
            shutdown: shutdown_rx.clone(),
        });
        tracing::info!(%local_addr, node_id = config.node_id, "weir broker listening");
        let accept_task = tokio::spawn(accept_loop(listener, broker.clone(), shutdown_rx.clone()));
        let maintenance_task =
            tokio::spawn(log_maintenance::run(broker.clone(), shutdown_rx.clone()));
        let flush_task = tokio::spawn(flush_loop(broker.clone(), shutdown_rx.clone()));
        let group_task = tokio::spawn(group_timer_loop(broker.clone(), shutdown_rx));
        Ok(Server {
            local_addr,
            broker,
            shutdown_tx,
            accept_task,
            flush_task,
            maintenance_task,
            group_task,
        })
    }

    /// The address actually bound (differs from the config when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting, end every connection, then flush and close every log
    /// so the next start needs no recovery.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown_tx.send(true);
        let _ = self.accept_task.await;
        let _ = self.flush_task.await;
        let _ = self.maintenance_task.await;
        let _ = self.group_task.await;
        self.broker.replicas.shutdown().await;
        self.broker.registry.close_all()?;
        tracing::info!(local_addr = %self.local_addr, "weir broker stopped");
        Ok(())
    }
}

/// What to advertise: advertised.listeners, else the bound address (an
/// unspecified bind address is advertised as loopback, reachable locally).
fn advertised(config: &ServerConfig, local: SocketAddr) -> (String, i32) {
    if let Some(hp) = config.advertised_addr() {
        if let Some((h, p)) = hp.rsplit_once(':') {
            if let Ok(port) = p.parse::<u16>() {
                let port = if port == 0 { local.port() } else { port };
                return (h.to_string(), port as i32);
            }
        }
    }
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    (host, local.port() as i32)
}

/// How long to back off after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.retain(|c| !c.is_finished());
                    connections.push(tokio::spawn(connection::serve(broker.clone(), stream, peer)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            },
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    drop(listener);
    for c in connections {
        let _ = c.await;
    }
}

async fn flush_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(broker.config.log_flush_scheduler_interval_ms.max(1) as u64);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = sleep(every) => broker.registry.maybe_flush_all(now_ms()),
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}

/// Drives the group coordinator's timers (sessions, rebalance timeouts,
/// offset retention) from env time.
async fn group_timer_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(TICK_INTERVAL_MS);
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = sleep(every) => broker.groups.tick(&broker.registry, now_ms()),
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}
