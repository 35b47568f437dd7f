//! How a follower reaches its leader (Kafka's LeaderEndpoint split): the
//! fetcher speaks these plain types; `TcpEndpoint` carries them as Kafka
//! Fetch requests (v12: replica id, last fetched epoch, diverging epoch) to
//! another broker, `InProcessEndpoint` calls another ReplicaManager in the
//! same process (tests run whole replica sets on SimDisks this way).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition as KFetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use uuid::Uuid;

use super::{codes, Inner};
use crate::client::connection::{Connection, ConnectionOptions};
use crate::env::time::Duration;
use crate::metadata::MetadataImage;

/// One partition of a follower's fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The leader epoch the follower believes current (fencing).
    pub current_leader_epoch: i32,
    /// The follower's log end offset.
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch (-1: none): the leader checks
    /// its log agrees up to `fetch_offset` in that epoch (KIP-320).
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
    pub max_bytes: i32,
}

/// A follower's fetch from one leader.
#[derive(Clone, Debug)]
pub struct ReplicaFetchRequest {
    pub replica_id: i32,
    pub broker_epoch: i64,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partitions: Vec<FetchPartition>,
}

/// The leader's answer for one partition.
#[derive(Clone, Debug, Default)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The leader's epoch (for NOT_LEADER answers: -1 when unknown).
    pub leader_epoch: i32,
    /// (epoch, end offset) where the follower's log leaves the leader's.
    pub diverging_epoch: Option<(i32, i64)>,
    pub records: Bytes,
}

/// Why a fetch got no answer at all.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("leader {0} unreachable: {1}")]
    Unreachable(i32, String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A follower's connection to one leader broker.
pub trait LeaderEndpoint: Send + Sync + 'static {
    fn fetch(
        &self,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<Vec<FetchedPartition>, EndpointError>>;
}

/// Makes endpoints for leader brokers named in the image.
pub trait EndpointFactory: Send + Sync + 'static {
    fn endpoint(&self, leader: i32, image: &MetadataImage) -> Option<Arc<dyn LeaderEndpoint>>;
}

// ---------------------------------------------------------------------------
// In-process

/// ReplicaManagers of one process by node id, for `InProcessEndpoint`.
#[derive(Clone, Default)]
pub struct InProcessNetwork {
    nodes: Arc<Mutex<BTreeMap<i32, Weak<Inner>>>>,
    /// Node ids whose fetches fail (a cut link, for tests).
    cut: Arc<Mutex<std::collections::BTreeSet<i32>>>,
}

impl InProcessNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn register(&self, node_id: i32, inner: &Arc<Inner>) {
        crate::broker::registry::lock_or_recover(&self.nodes)
            .insert(node_id, Arc::downgrade(inner));
    }

    /// Make every fetch from `follower` fail until `heal` (test fault).
    pub fn cut(&self, follower: i32) {
        crate::broker::registry::lock_or_recover(&self.cut).insert(follower);
    }

    pub fn heal(&self, follower: i32) {
        crate::broker::registry::lock_or_recover(&self.cut).remove(&follower);
    }
}

impl EndpointFactory for InProcessNetwork {
    fn endpoint(&self, leader: i32, _image: &MetadataImage) -> Option<Arc<dyn LeaderEndpoint>> {
        Some(Arc::new(InProcessEndpoint {
            net: self.clone(),
            leader,
        }))
    }
}

/// Calls the leader's ReplicaManager directly.
pub struct InProcessEndpoint {
    net: InProcessNetwork,
    leader: i32,
}

impl LeaderEndpoint for InProcessEndpoint {
    fn fetch(
        &self,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<Vec<FetchedPartition>, EndpointError>> {
        Box::pin(async move {
            let cut = crate::broker::registry::lock_or_recover(&self.net.cut)
                .contains(&request.replica_id);
            let target = crate::broker::registry::lock_or_recover(&self.net.nodes)
                .get(&self.leader)
                .and_then(Weak::upgrade);
            match target {
                Some(inner) if !cut => Ok(super::fetch_as_leader(&inner, request).await),
                _ => {
                    // As a refused connection: a short pause, then an error.
                    crate::env::time::sleep(Duration::from_millis(50)).await;
                    Err(EndpointError::Unreachable(
                        self.leader,
                        "not reachable".into(),
                    ))
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------
// TCP

/// The Fetch version followers speak: v12 has replica id, last fetched
/// epoch and diverging epoch, and still names topics (no id lookup needed).
pub const REPLICA_FETCH_VERSION: i16 = 12;

/// Makes `TcpEndpoint`s from the brokers' registered host:port.
#[derive(Clone, Default)]
pub struct TcpEndpoints {
    pub options: ConnectionOptions,
}

impl EndpointFactory for TcpEndpoints {
    fn endpoint(&self, leader: i32, image: &MetadataImage) -> Option<Arc<dyn LeaderEndpoint>> {
        let b = image.brokers.get(&leader)?;
        Some(Arc::new(TcpEndpoint {
            leader,
            addr: format!("{}:{}", b.host, b.port),
            options: self.options.clone(),
            conn: tokio::sync::Mutex::new(None),
        }))
    }
}

/// Fetch over one cached Kafka connection to the leader.
pub struct TcpEndpoint {
    leader: i32,
    addr: String,
    options: ConnectionOptions,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl TcpEndpoint {
    async fn connection(&self) -> Result<Arc<Connection>, EndpointError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        let c = Connection::connect(&self.addr, self.options.clone())
            .await
            .map_err(|e| EndpointError::Unreachable(self.leader, e.to_string()))?;
        let c = Arc::new(c);
        *guard = Some(c.clone());
        Ok(c)
    }
}

impl LeaderEndpoint for TcpEndpoint {
    fn fetch(
        &self,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<Vec<FetchedPartition>, EndpointError>> {
        Box::pin(async move {
            let conn = self.connection().await?;
            let mut topics: Vec<FetchTopic> = Vec::new();
            for p in &request.partitions {
                let kp = KFetchPartition::default()
                    .with_partition(p.partition)
                    .with_current_leader_epoch(p.current_leader_epoch)
                    .with_fetch_offset(p.fetch_offset)
                    .with_last_fetched_epoch(p.last_fetched_epoch)
                    .with_log_start_offset(p.log_start_offset)
                    .with_partition_max_bytes(p.max_bytes);
                match topics.iter_mut().find(|t| t.topic.0.as_str() == p.topic) {
                    Some(t) => t.partitions.push(kp),
                    None => topics.push(
                        FetchTopic::default()
                            .with_topic(TopicName(super::str_bytes(&p.topic)))
                            .with_topic_id(p.topic_id)
                            .with_partitions(vec![kp]),
                    ),
                }
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(request.replica_id))
                .with_max_wait_ms(request.max_wait_ms)
                .with_min_bytes(request.min_bytes)
                .with_max_bytes(request.max_bytes)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(topics);
            let resp = conn
                .send_version(&req, REPLICA_FETCH_VERSION)
                .await
                .map_err(|e| EndpointError::Unreachable(self.leader, e.to_string()))?;
            if resp.error_code != codes::NONE {
                return Err(EndpointError::Unreachable(
                    self.leader,
                    format!("fetch failed with error {}", resp.error_code),
                ));
            }
            let mut out = Vec::new();
            for t in resp.responses {
                for p in t.partitions {
                    let diverging = (p.diverging_epoch.epoch >= 0
                        || p.diverging_epoch.end_offset >= 0)
                        .then_some((p.diverging_epoch.epoch, p.diverging_epoch.end_offset));
                    out.push(FetchedPartition {
                        topic: t.topic.0.to_string(),
                        partition: p.partition_index,
                        error_code: p.error_code,
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                        leader_epoch: p.current_leader.leader_epoch,
                        diverging_epoch: diverging,
                        records: p.records.unwrap_or_default(),
                    });
                }
            }
            Ok(out)
        })
    }
}
