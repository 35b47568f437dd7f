//! The shared client core: bootstrap, one connection per broker, and the
//! metadata cache that maps topic partitions to leaders.
//!
//! Producer, consumer and admin each hold an `Arc<Cluster>`. Metadata is an
//! immutable snapshot swapped on refresh, so readers never block a refresh
//! and a refresh never tears what a reader sees.

use std::collections::BTreeMap;
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
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let t = self.topics.get(topic)?;
        let p = t.partitions.iter().find(|p| p.partition == partition)?;
        (p.leader >= 0).then_some(p.leader)
    }
}

pub struct Cluster {
    config: ClientConfig,
    connections: tokio::sync::Mutex<BTreeMap<String, Arc<Connection>>>,
    metadata: RwLock<Arc<MetadataSnapshot>>,
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

    /// A connection to any broker: known brokers first, then bootstrap servers.
    pub async fn any_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut candidates: Vec<String> =
            self.metadata().brokers.values().map(|b| b.addr()).collect();
        candidates.extend(self.config.bootstrap_servers.iter().cloned());
        let mut last = ClientError::Config("no bootstrap servers".to_string());
        for addr in candidates {
            match self.connection(&addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
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

    async fn fetch_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Arc<MetadataSnapshot>, ClientError> {
        let conn = self.any_connection().await?;
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
