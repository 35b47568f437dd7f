//! The shared client core: bootstrap, one connection per broker, and the
//! metadata cache that maps topic partitions to leaders.
//!
//! Producer, consumer and admin each hold an `Arc<Cluster>`. Metadata is an
//! immutable snapshot swapped on refresh, so readers never block a refresh
//! and a refresh never tears what a reader sees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::connection::{Connection, ConnectionOptions};
use super::error::ClientError;
use crate::env::time::{sleep, Duration};

/// Settings shared by producer, consumer and admin.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` list (Kafka's bootstrap.servers).
    pub bootstrap_servers: Vec<String>,
    pub connection: ConnectionOptions,
    /// Wait between retries of a failed metadata fetch (retry.backoff.ms).
    pub retry_backoff: Duration,
    /// Ask the broker to create topics on first use (allow.auto.create.topics).
    pub allow_auto_topic_creation: bool,
}

impl ClientConfig {
    pub fn new(bootstrap: &str) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            connection: ConnectionOptions::default(),
            retry_backoff: Duration::from_millis(100),
            allow_auto_topic_creation: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub error_code: i16,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Raw UUID bytes; all zero when the broker sends none.
    pub topic_id: [u8; 16],
    pub error_code: i16,
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionInfo>,
}

/// One consistent view of the cluster.
#[derive(Debug, Clone, Default)]
pub struct MetadataSnapshot {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
}

impl MetadataSnapshot {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        self.topics
            .get(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)
    }

    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self.partition(topic, partition)?;
        (p.leader >= 0).then_some(p.leader)
    }

    /// The leader epoch the metadata names for a partition (-1 if unknown),
    /// sent as current_leader_epoch so a broker can tell whose view is stale.
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> i32 {
        self.partition(topic, partition)
            .map_or(-1, |p| p.leader_epoch)
    }
}

pub struct Cluster {
    config: ClientConfig,
    connections: tokio::sync::Mutex<BTreeMap<String, Arc<Connection>>>,
    metadata: RwLock<Arc<MetadataSnapshot>>,
    /// Where the next metadata fetch starts in its candidate list: moves on
    /// at every fetch, so neither a dead broker nor one with a stale view is
    /// asked first again and again.
    metadata_cursor: AtomicUsize,
    /// A background refresh (`refresh_soon`) is under way.
    refreshing: AtomicBool,
}

impl Cluster {
    /// Bootstrap: fetch the broker list from the first reachable server.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>, ClientError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ClientError::Config("no bootstrap servers".to_string()));
        }
        let cluster = Arc::new(Cluster {
            config,
            connections: tokio::sync::Mutex::new(BTreeMap::new()),
            metadata: RwLock::new(Arc::new(MetadataSnapshot::default())),
            metadata_cursor: AtomicUsize::new(0),
            refreshing: AtomicBool::new(false),
        });
        cluster.refresh_metadata(Some(&[])).await?;
        Ok(cluster)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current metadata snapshot (may be stale; refresh on errors).
    pub fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.metadata.read().expect("metadata lock").clone()
    }

    /// A live connection to `addr`, reusing the cached one.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(addr) {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(Connection::connect(addr, self.config.connection.clone()).await?);
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A connection to broker `id` as named in the metadata.
    pub async fn broker_connection(&self, id: i32) -> Result<Arc<Connection>, ClientError> {
        let addr = self
            .metadata()
            .brokers
            .get(&id)
            .map(|b| b.addr())
            .ok_or_else(|| ClientError::kafka(super::error::codes::LEADER_NOT_AVAILABLE))?;
        self.connection(&addr).await
    }

    /// Every address worth asking for metadata: known brokers (by id), then
    /// bootstrap servers not among them, without repeats.
    fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = self.metadata().brokers.values().map(|b| b.addr()).collect();
        for addr in &self.config.bootstrap_servers {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    /// A connection to any broker: known brokers first, then bootstrap servers.
    pub async fn any_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut last = ClientError::Config("no bootstrap servers".to_string());
        for addr in self.candidates() {
            match self.connection(&addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Refresh metadata for `topics` in the background, unless a background
    /// refresh is already under way (many failing requests after a leader
    /// change ask at once; one refresh answers them all).
    pub fn refresh_soon(self: &Arc<Self>, topics: Vec<String>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let cluster = self.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.refresh_metadata(Some(&topics)).await {
                tracing::debug!(error = %e, "background metadata refresh failed");
            }
            cluster.refreshing.store(false, Ordering::Release);
        });
    }

    /// A connection to the controller (for admin requests), or any broker.
    pub async fn controller_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let controller = self.metadata().controller_id;
        if controller >= 0 {
            if let Ok(c) = self.broker_connection(controller).await {
                return Ok(c);
            }
        }
        self.any_connection().await
    }

    /// Fetch metadata for `topics` (`None` = every topic, `Some(&[])` =
    /// brokers only) and merge it into the cache. Retries retriable failures
    /// a few times with backoff.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Arc<MetadataSnapshot>, ClientError> {
        let mut attempt = 0;
        loop {
            match self.fetch_metadata(topics).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_retriable() && attempt < 5 => {
                    attempt += 1;
                    sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ask the candidates in turn, starting at the cursor, until one
    /// answers: in a cluster any live broker will do, and one that is dead
    /// or cut off must not stall the client (its connect fails, or its
    /// request times out and closes the connection).
    async fn fetch_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Arc<MetadataSnapshot>, ClientError> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Err(ClientError::Config("no bootstrap servers".to_string()));
        }
        // Each refresh starts one broker further on: a refresh usually
        // follows an error that the last answer did not explain (it named a
        // deposed leader), so ask someone else this time.
        let start = self.metadata_cursor.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..candidates.len() {
            let addr = &candidates[(start + i) % candidates.len()];
            match self.fetch_metadata_from(addr, topics).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(%addr, error = %e, "metadata from this broker failed");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one candidate was tried"))
    }

    async fn fetch_metadata_from(
        &self,
        addr: &str,
        topics: Option<&[String]>,
    ) -> Result<Arc<MetadataSnapshot>, ClientError> {
        let conn = self.connection(addr).await?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(self.config.allow_auto_topic_creation);
        let response = conn.send(&request).await?;
        let mut fresh = MetadataSnapshot {
            cluster_id: response.cluster_id.as_ref().map(|s| s.to_string()),
            controller_id: response.controller_id.0,
            ..Default::default()
        };
        for b in &response.brokers {
            fresh.brokers.insert(
                b.node_id.0,
                BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                },
            );
        }
        for t in &response.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            fresh.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    topic_id: *t.topic_id.as_bytes(),
                    error_code: t.error_code,
                    is_internal: t.is_internal,
                    partitions,
                },
            );
        }
        let mut guard = self.metadata.write().expect("metadata lock");
        keep_newer_leaders(&mut fresh, &guard);
        if topics.is_some() {
            // A partial answer: keep cached topics that were not asked about.
            let old = guard.clone();
            for (name, info) in &old.topics {
                if !fresh.topics.contains_key(name)
                    && !topics.is_some_and(|ts| ts.iter().any(|t| t == name))
                {
                    fresh.topics.insert(name.clone(), info.clone());
                }
            }
        }
        let snapshot = Arc::new(fresh);
        *guard = snapshot.clone();
        Ok(snapshot)
    }

    /// Metadata for one topic; refreshes when it is not cached or has errors.
    /// Fails with the topic's Kafka error when it does not exist.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        if let Some(t) = self.metadata().topics.get(name) {
            if t.error_code == 0 && !t.partitions.is_empty() {
                return Ok(t.clone());
            }
        }
        let mut attempt = 0;
        loop {
            let snapshot = self.refresh_metadata(Some(&[name.to_string()])).await?;
            let err = match snapshot.topics.get(name) {
                Some(t) if t.error_code == 0 && !t.partitions.is_empty() => return Ok(t.clone()),
                Some(t) if t.error_code != 0 => ClientError::kafka(t.error_code),
                _ => ClientError::kafka(super::error::codes::UNKNOWN_TOPIC_OR_PARTITION),
            };
            // LEADER_NOT_AVAILABLE right after auto-creation is transient.
            if attempt < 10 && err.code() == Some(super::error::codes::LEADER_NOT_AVAILABLE) {
                attempt += 1;
                sleep(self.config.retry_backoff).await;
                continue;
            }
            return Err(err);
        }
    }
}

/// KIP-320's guard against going back in time: a broker that has not yet
/// seen the latest leader election (one cut off from the controller, or
/// slow to apply the image) answers with an older leader epoch. Keep the
/// cached partition where it has a newer epoch than the answer, so the
/// client does not return to a deposed leader. A topic whose id changed was
/// deleted and recreated: its epochs start over and the answer wins.
fn keep_newer_leaders(fresh: &mut MetadataSnapshot, cached: &MetadataSnapshot) {
    for (name, topic) in fresh.topics.iter_mut() {
        let Some(old) = cached.topics.get(name) else {
            continue;
        };
        if old.topic_id != topic.topic_id || topic.error_code != 0 {
            continue;
        }
        for p in topic.partitions.iter_mut() {
            let Some(known) = old.partitions.iter().find(|o| o.partition == p.partition) else {
                continue;
            };
            if known.leader_epoch > p.leader_epoch {
                *p = known.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(leader: i32, epoch: i32, id: u8) -> MetadataSnapshot {
        let mut s = MetadataSnapshot::default();
        s.topics.insert(
            "t".to_string(),
            TopicInfo {
                name: "t".to_string(),
                topic_id: [id; 16],
                error_code: 0,
                is_internal: false,
                partitions: vec![PartitionInfo {
                    partition: 0,
                    error_code: 0,
                    leader,
                    leader_epoch: epoch,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                }],
            },
        );
        s
    }

    #[test]
    fn an_older_leader_epoch_does_not_replace_a_newer_one() {
        let cached = snapshot(2, 5, 1);
        let mut stale = snapshot(1, 4, 1);
        keep_newer_leaders(&mut stale, &cached);
        assert_eq!(stale.leader("t", 0), Some(2));
        let mut newer = snapshot(3, 6, 1);
        keep_newer_leaders(&mut newer, &cached);
        assert_eq!(newer.leader("t", 0), Some(3));
        // Same epoch: the answer wins (it may carry a new ISR).
        let mut same = snapshot(-1, 5, 1);
        keep_newer_leaders(&mut same, &cached);
        assert_eq!(same.leader("t", 0), None);
    }

    #[test]
    fn a_recreated_topic_starts_its_epochs_over() {
        let cached = snapshot(2, 5, 1);
        let mut recreated = snapshot(1, 0, 2);
        keep_newer_leaders(&mut recreated, &cached);
        assert_eq!(recreated.leader("t", 0), Some(1));
    }
}
