//! The metadata quorum: controllers replicate the metadata log with raft-rs
//! and the active one (the raft leader) decides every metadata change.
//!
//! - `api`: the requests brokers send the active controller and its answers.
//! - `codec`: their binary encoding on the controller listener.
//! - `service`: the state machine and the decision shell over `metadata::control`.
//! - `client`: how brokers reach the active controller.
//! - `raft_storage`, `raft_node`: the raft log on the Disk seam and the raft-rs driver.
//! - `transport`, `rpc`: the controller listener (raft messages and RPCs).

pub mod api;
pub mod client;
pub mod codec;
pub mod raft_node;
pub mod raft_storage;
pub mod rpc;
pub mod service;
pub mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::env::rng::WeirRng;
use crate::env::time::Duration;
use crate::env::Disk;
use crate::metadata::control::ControlConfig;
use api::{ControllerResponse, ItemResult};
use raft_node::{RaftConfig, RaftNode};
use service::{ControllerService, MetadataStateMachine};
use transport::RpcCall;

pub use client::{ControllerClient, ControllerError};

/// The metadata log's directory under the first log dir.
pub const METADATA_DIR: &str = "__cluster_metadata-0";
/// Milliseconds per raft tick.
pub const TICK_MS: u64 = 100;
/// The shortest election timeout, in ticks.
pub const ELECTION_TICKS_MIN: u64 = 10;
/// Each voter's election timeout band is this many ticks wide.
const ELECTION_TICKS_BAND: u64 = 3;
/// RPCs queued for the service at most.
const RPC_QUEUE_MAX: usize = 1024;

/// This voter's election timeout in ticks.
///
/// raft-rs would randomise it on every election with an rng the simulator
/// cannot seed, so it gets a one-value range instead (see RaftConfig). Then
/// two voters with the same value campaign in lockstep and split the vote
/// forever; so each voter draws from its own band, by its position among
/// the voters (10..=12, 13..=15, ...), which keeps the values distinct and
/// the jitter seeded.
pub fn election_tick(voters: &[(i32, String)], node_id: i32, rng: &mut WeirRng) -> usize {
    let mut ids: Vec<i32> = voters.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let position = ids.iter().position(|&id| id == node_id).unwrap_or(0) as u64;
    let low = ELECTION_TICKS_MIN + position * ELECTION_TICKS_BAND;
    rng.range_u64(low, low + ELECTION_TICKS_BAND) as usize
}

/// One controller: the raft member, the controller listener (when there
/// are other voters) and the service with its timer.
pub struct Controller {
    raft: RaftNode,
    service: Arc<ControllerService>,
    local_addr: Option<SocketAddr>,
    voters: Vec<(i32, String)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Raft + the controller listener (bound at this node's voter address
    /// when voters are configured) + the service's timer.
    pub async fn start(
        config: Arc<ServerConfig>,
        disk: Arc<dyn Disk>,
        rng: WeirRng,
    ) -> anyhow::Result<Controller> {
        Self::start_with_listener(config, disk, rng, None).await
    }

    /// As `start`, serving the controller listener on `listener` when given
    /// (bound by the caller, e.g. a test that picks free ports first).
    pub async fn start_with_listener(
        config: Arc<ServerConfig>,
        disk: Arc<dyn Disk>,
        mut rng: WeirRng,
        listener: Option<tokio::net::TcpListener>,
    ) -> anyhow::Result<Controller> {
        let node_id = config.node_id;
        let voters = config.voters();
        let own_addr = voters
            .iter()
            .find(|(id, _)| *id == node_id)
            .map(|(_, a)| a.clone())
            .with_context(|| format!("node {node_id} is not among controller.quorum.voters"))?;
        // Bind before raft starts so peers' first messages find us.
        let listener = if listener.is_some() || own_addr.is_empty() {
            listener
        } else {
            Some(
                tokio::net::TcpListener::bind(&own_addr)
                    .await
                    .with_context(|| format!("binding the controller listener {own_addr}"))?,
            )
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());

        let election_tick = election_tick(&voters, node_id, &mut rng);
        let sm = Arc::new(Mutex::new(MetadataStateMachine::default()));
        let raft = RaftNode::start(
            RaftConfig {
                node_id,
                voters: voters.clone(),
                dir: config.data_dir().join(METADATA_DIR),
                tick_ms: TICK_MS,
                election_tick,
                heartbeat_tick: 2,
                snapshot_interval_entries: 1000,
            },
            disk,
            sm.clone(),
        )
        .context("starting the metadata raft")?;
        let service = Arc::new(ControllerService::new(
            node_id,
            Arc::new(raft.clone()),
            sm,
            ControlConfig::from_server(config.clone()),
            Duration::from_millis(config.broker_session_timeout_ms.max(1) as u64),
            WeirRng::from_seed(rng.next_u64()),
        ));

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(service.clone().run_timer(stop_rx.clone()))];
        if let Some(listener) = listener {
            let (rpc_tx, rpc_rx) = mpsc::channel(RPC_QUEUE_MAX);
            tasks.push(tokio::spawn(transport::serve_controller_listener(
                listener,
                raft.clone(),
                rpc_tx,
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(serve_rpcs(service.clone(), rpc_rx)));
        }
        tracing::info!(node_id, ?voters, election_tick, "controller started");
        Ok(Controller {
            raft,
            service,
            local_addr,
            voters,
            stop,
            tasks,
        })
    }

    pub fn service(&self) -> Arc<ControllerService> {
        self.service.clone()
    }

    /// The controller listener, if bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The voters this controller was started with.
    pub fn voters(&self) -> &[(i32, String)] {
        &self.voters
    }

    /// A client of this quorum that calls this node in-process.
    pub fn client(&self) -> ControllerClient {
        ControllerClient::new(
            self.voters.clone(),
            Some((self.service.node_id(), self.service.clone())),
        )
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.raft.shutdown().await;
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
        }
    }
}

impl Drop for Controller {
    /// Dropped without `shutdown` (a killed simulated node, a failed
    /// start): the listener and the timer still stop, rather than watch a
    /// stop channel whose sender is gone.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Answer RPCs from the listener, each in its own task (FetchImage waits).
async fn serve_rpcs(service: Arc<ControllerService>, mut calls: mpsc::Receiver<RpcCall>) {
    while let Some(call) = calls.recv().await {
        let service = service.clone();
        tokio::spawn(async move {
            let resp = match codec::decode_request(&call.request) {
                Ok(req) => service.handle(req).await,
                Err(e) => ControllerResponse::Error(ItemResult {
                    error_code: crate::protocol::error_codes::INVALID_REQUEST,
                    message: Some(format!("undecodable controller request: {e}")),
                }),
            };
            let _ = call.reply.send(codec::encode_response(&resp));
        });
    }
}
