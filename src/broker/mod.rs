//! A Weir node: the controller (when process.roles has it) and the broker
//! (when it has that): a TCP listener, one task per connection, one handler
//! per Kafka API, the replicas this broker hosts, and its link to the
//! controller quorum.
//!
//! Flow: `connection` reads a frame -> `protocol` decodes its header ->
//! `handlers::dispatch` runs the API's handler against the replicas and the
//! metadata image -> `protocol` encodes the response -> `connection` writes
//! it. A connection answers its requests strictly in order (Kafka's
//! guarantee).
//!
//! Startup: the controller starts first (its raft log replays), then the
//! broker opens its logs, binds its listener and registers with the active
//! controller; `cluster_link` then keeps the image fresh and heartbeats. A
//! single-node server (no controller.quorum.voters) waits in `start` until
//! it is registered, unfenced and has its image, so a client connecting
//! right after `start` returns sees a working broker.

pub mod admin;
pub mod cluster_link;
pub mod connection;
pub mod handlers;
pub mod log_maintenance;
pub mod producer_ids;
pub mod registry;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::controller::client::ControllerClient;
use crate::controller::Controller;
use crate::coordinator::group::{service::TICK_INTERVAL_MS, GroupService};
use crate::env::rng::WeirRng;
use crate::env::time::{now_ms, sleep, Duration};
use crate::env::Disk;
use crate::replica::{endpoint::TcpEndpoints, ReplicaManager, ReplicaSettings};
use cluster_link::{BrokerIdentity, ClusterLink};
use producer_ids::ProducerIdBlock;
use registry::Registry;

/// How long a single-node `start` waits for its own controller to accept it.
const SINGLE_NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shutting-down broker waits for the controller to move its
/// leaderships away before stopping anyway.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by every connection.
pub struct Broker {
    pub config: Arc<ServerConfig>,
    pub registry: Arc<Registry>,
    /// Leader and follower state of every partition this broker hosts.
    pub replicas: Arc<ReplicaManager>,
    /// Registration, heartbeats and the metadata image.
    pub cluster: Arc<ClusterLink>,
    pub producer_ids: Mutex<ProducerIdBlock>,
    /// The consumer group coordinator.
    pub groups: GroupService,
    /// Host and port Metadata and DescribeCluster advertise.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Flips to true when the server shuts down; long polls and connections end.
    pub shutdown: watch::Receiver<bool>,
}

/// A running node.
pub struct Server {
    local_addr: SocketAddr,
    controller: Option<Controller>,
    broker: Option<Arc<Broker>>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Start the controller and/or the broker, as process.roles says.
    pub async fn start(config: ServerConfig, disk: Arc<dyn Disk>) -> anyhow::Result<Server> {
        let config = Arc::new(config);
        let mut rng = WeirRng::from_env();
        let controller = if config.is_controller() {
            let seed = rng.next_u64();
            Some(Controller::start(config.clone(), disk.clone(), WeirRng::from_seed(seed)).await?)
        } else {
            None
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        if !config.is_broker() {
            let local_addr = controller
                .as_ref()
                .and_then(|c| c.local_addr())
                .ok_or_else(|| anyhow::anyhow!("a controller-only node needs a controller listener in `listeners` and itself in controller.quorum.voters"))?;
            tracing::info!(%local_addr, node_id = config.node_id, "weir controller listening");
            return Ok(Server {
                local_addr,
                controller,
                broker: None,
                shutdown_tx,
                tasks: Vec::new(),
            });
        }
        let registry = Arc::new(Registry::open(disk, config.clone())?);
        let listener = TcpListener::bind(config.listen_addr()).await?;
        let local_addr = listener.local_addr()?;
        let (advertised_host, advertised_port) = advertised(&config, local_addr);
        let local_controller = controller.as_ref().map(|c| (config.node_id, c.service()));
        let client = ControllerClient::new(config.voters(), local_controller);
        let incarnation = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
        let identity = BrokerIdentity {
            node_id: config.node_id,
            host: advertised_host.clone(),
            port: advertised_port,
            rack: config.broker_rack.clone(),
        };
        let cluster = Arc::new(ClusterLink::new(identity, incarnation, client));
        let replicas = Arc::new(ReplicaManager::new(
            ReplicaSettings::from_config(&config),
            registry.clone(),
            Arc::new(cluster_link::IsrViaController(cluster.clone())),
            Arc::new(TcpEndpoints::default()),
        ));
        let groups = GroupService::open(&config, replicas.clone());
        let broker = Arc::new(Broker {
            config: config.clone(),
            registry,
            replicas,
            cluster: cluster.clone(),
            producer_ids: Mutex::new(ProducerIdBlock::default()),
            groups,
            advertised_host,
            advertised_port,
            shutdown: shutdown_rx.clone(),
        });
        tracing::info!(%local_addr, node_id = config.node_id, "weir broker listening");
        let mut tasks = vec![
            tokio::spawn(accept_loop(listener, broker.clone(), shutdown_rx.clone())),
            tokio::spawn(log_maintenance::run(broker.clone(), shutdown_rx.clone())),
            tokio::spawn(flush_loop(broker.clone(), shutdown_rx.clone())),
            tokio::spawn(group_timer_loop(broker.clone(), shutdown_rx.clone())),
        ];
        tasks.push(tokio::spawn(run_cluster_link(
            broker.clone(),
            shutdown_rx.clone(),
        )));
        let server = Server {
            local_addr,
            controller,
            broker: Some(broker.clone()),
            shutdown_tx,
            tasks,
        };
        if config.controller_quorum_voters.is_empty()
            && !server.wait_until_serving(SINGLE_NODE_READY_TIMEOUT).await
        {
            {
                server.shutdown().await?;
                anyhow::bail!("the single-node controller did not accept this broker within {SINGLE_NODE_READY_TIMEOUT:?}");
            }
        }
        Ok(server)
    }

    /// Wait until the controller has accepted this broker (registered,
    /// unfenced, image applied); false after `timeout`. A multi-node
    /// `start` returns before that, since the quorum may not exist yet.
    pub async fn wait_until_serving(&self, timeout: Duration) -> bool {
        let Some(broker) = &self.broker else {
            return true;
        };
        let me = broker.config.node_id;
        broker
            .cluster
            .wait_for_image(
                |img| img.brokers.get(&me).is_some_and(|b| !b.fenced),
                timeout,
            )
            .await
    }

    /// The broker listener's address (the controller listener's on a
    /// controller-only node). Differs from the config when port 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The controller listener's address, if this node runs one.
    pub fn controller_addr(&self) -> Option<SocketAddr> {
        self.controller.as_ref().and_then(|c| c.local_addr())
    }

    /// Controlled shutdown (leaderships move away first), then stop
    /// accepting, end every connection, flush and close every log so the
    /// next start needs no recovery, and stop the controller.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(broker) = &self.broker {
            if !broker.config.controller_quorum_voters.is_empty() {
                broker
                    .cluster
                    .controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT)
                    .await;
            }
        }
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut result = Ok(());
        if let Some(broker) = &self.broker {
            broker.replicas.shutdown().await;
            result = broker.registry.close_all();
        }
        if let Some(c) = self.controller {
            c.shutdown().await;
        }
        tracing::info!(local_addr = %self.local_addr, "weir node stopped");
        result
    }
}

/// Register, then keep the image fresh and heartbeat until shutdown.
async fn run_cluster_link(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let cluster = broker.cluster.clone();
    if cluster.register(&shutdown).await.is_none() {
        return;
    }
    let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms.max(1) as u64);
    // In a cluster, a broker whose log dir failed goes silent so its
    // leaderships move to healthy replicas; a single node has nowhere to
    // move them, so it stays and answers KAFKA_STORAGE_ERROR.
    let in_cluster = !broker.config.controller_quorum_voters.is_empty();
    let registry = broker.registry.clone();
    let heartbeats = tokio::spawn(cluster.clone().run_heartbeat_loop(
        interval,
        // Any failed dir: Weir cannot yet tell the controller which
        // replicas went with it, so the whole broker steps aside, as a
        // KRaft broker before Kafka 3.7 halts on a log dir failure.
        move || in_cluster && registry.any_log_dir_offline(),
        shutdown.clone(),
    ));
    let b = broker.clone();
    cluster
        .run_image_loop(
            move |image, epoch| {
                b.replicas.apply_image(image, epoch);
                b.groups
                    .on_image(image, b.config.node_id, b.groups.now_ms());
            },
            shutdown,
        )
        .await;
    let _ = heartbeats.await;
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
    // Like Kafka's broker, take no client request before the controller has
    // unfenced this broker: until then it has no image, leads nothing and
    // would answer with errors. Connections wait in the listen backlog.
    let me = broker.config.node_id;
    let mut images = broker.cluster.subscribe();
    loop {
        if images
            .borrow_and_update()
            .brokers
            .get(&me)
            .is_some_and(|b| !b.fenced)
        {
            break;
        }
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
        }
    }
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
            _ = sleep(every) => broker.groups.tick(broker.groups.now_ms()),
            changed = shutdown.changed() => if changed.is_err() { return },
        }
    }
}
