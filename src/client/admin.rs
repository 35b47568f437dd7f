//! Admin operations: topics, partitions, configs, cluster description.
//! Topic and config changes go to the controller (Kafka forwards them there
//! anyway); reads go to any broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::{BrokerInfo, ClientConfig, Cluster, TopicInfo};
use super::error::ClientError;

/// Resource type codes of DescribeConfigs / IncrementalAlterConfigs.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    /// Kafka ConfigSource: 1 topic, 4 static broker, 5 default, ...
    pub source: i8,
    pub is_sensitive: bool,
}

impl ConfigEntry {
    /// Set on the resource itself rather than inherited.
    pub fn is_dynamic(&self) -> bool {
        matches!(self.source, 1..=3)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOp {
    Set,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
}

pub struct Admin {
    cluster: Arc<Cluster>,
    /// Broker-side deadline for topic operations.
    timeout_ms: i32,
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    pub fn new(cluster: Arc<Cluster>) -> Admin {
        Admin {
            cluster,
            timeout_ms: 30_000,
        }
    }

    pub async fn connect(bootstrap: &str) -> Result<Admin, ClientError> {
        let mut cc = ClientConfig::new(bootstrap);
        cc.connection.client_id = "weir-admin".to_string();
        Ok(Admin::new(Cluster::connect(cc).await?))
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Create topics; one result per topic, in order.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(name(&t.name)))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(name(k))
                                            .with_value(Some(name(v)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self
            .cluster
            .controller_connection()
            .await?
            .send(&request)
            .await?;
        Ok(topics
            .iter()
            .map(|t| {
                let r = response
                    .topics
                    .iter()
                    .find(|r| r.name.0.as_str() == t.name)
                    .ok_or_else(|| ClientError::Protocol(format!("no result for {}", t.name)))?;
                if r.error_code == 0 {
                    Ok(())
                } else {
                    Err(ClientError::kafka_with_message(
                        r.error_code,
                        r.error_message.as_ref().map(|m| m.to_string()),
                    ))
                }
            })
            .collect())
    }

    pub async fn create_topic(&self, topic: NewTopic) -> Result<(), ClientError> {
        self.create_topics(&[topic]).await?.remove(0)
    }

    pub async fn delete_topics(
        &self,
        topics: &[String],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let conn = self.cluster.controller_connection().await?;
        let version = conn.version_for(kafka_protocol::messages::ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms);
        // v6 names topics through DeleteTopicState; earlier versions by name list.
        if version >= 6 {
            request = request.with_topics(
                topics
                    .iter()
                    .map(|t| DeleteTopicState::default().with_name(Some(TopicName(name(t)))))
                    .collect(),
            );
        } else {
            request = request.with_topic_names(topics.iter().map(|t| TopicName(name(t))).collect());
        }
        let response = conn.send_version(&request, version).await?;
        Ok(topics
            .iter()
            .map(|t| {
                let r = response
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().map(|n| n.0.as_str()) == Some(t.as_str()))
                    .ok_or_else(|| ClientError::Protocol(format!("no result for {t}")))?;
                if r.error_code == 0 {
                    Ok(())
                } else {
                    Err(ClientError::kafka_with_message(
                        r.error_code,
                        r.error_message.as_ref().map(|m| m.to_string()),
                    ))
                }
            })
            .collect())
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        self.delete_topics(&[topic.to_string()]).await?.remove(0)
    }

    /// Topic names, sorted; internal topics only when asked.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<String>, ClientError> {
        let snapshot = self.cluster.refresh_metadata(None).await?;
        Ok(snapshot
            .topics
            .values()
            .filter(|t| t.error_code == 0 && (include_internal || !t.is_internal))
            .map(|t| t.name.clone())
            .collect())
    }

    /// Metadata for the named topics (fails with the topic's error code if
    /// one does not exist).
    pub async fn describe_topics(&self, topics: &[String]) -> Result<Vec<TopicInfo>, ClientError> {
        let snapshot = self.cluster.refresh_metadata(Some(topics)).await?;
        topics
            .iter()
            .map(|t| match snapshot.topics.get(t) {
                Some(info) if info.error_code == 0 => Ok(info.clone()),
                Some(info) => Err(ClientError::kafka(info.error_code)),
                None => Err(ClientError::kafka(
                    super::error::codes::UNKNOWN_TOPIC_OR_PARTITION,
                )),
            })
            .collect()
    }

    /// Grow `topic` to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), ClientError> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(self.timeout_ms)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(name(topic)))
                .with_count(total)
                .with_assignments(None)]);
        let response = self
            .cluster
            .controller_connection()
            .await?
            .send(&request)
            .await?;
        let r = response
            .results
            .iter()
            .find(|r| r.name.0.as_str() == topic)
            .ok_or_else(|| ClientError::Protocol(format!("no result for {topic}")))?;
        if r.error_code != 0 {
            return Err(ClientError::kafka_with_message(
                r.error_code,
                r.error_message.as_ref().map(|m| m.to_string()),
            ));
        }
        Ok(())
    }

    /// Configs of a resource (RESOURCE_TOPIC or RESOURCE_BROKER), sorted by name.
    pub async fn describe_configs(
        &self,
        resource_type: i8,
        resource_name: &str,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(name(resource_name))
                .with_configuration_keys(None),
        ]);
        let conn = if resource_type == RESOURCE_BROKER {
            match resource_name.parse::<i32>() {
                Ok(id) => self.cluster.broker_connection(id).await?,
                Err(_) => self.cluster.any_connection().await?,
            }
        } else {
            self.cluster.any_connection().await?
        };
        let response = conn.send(&request).await?;
        let result =
            response.results.into_iter().next().ok_or_else(|| {
                ClientError::Protocol("empty DescribeConfigs response".to_string())
            })?;
        if result.error_code != 0 {
            return Err(ClientError::kafka_with_message(
                result.error_code,
                result.error_message.map(|m| m.to_string()),
            ));
        }
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                read_only: c.read_only,
                source: c.config_source,
                is_sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Set or delete configs of a resource (IncrementalAlterConfigs).
    pub async fn alter_configs(
        &self,
        resource_type: i8,
        resource_name: &str,
        changes: &[(String, AlterOp, Option<String>)],
    ) -> Result<(), ClientError> {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(name(resource_name))
                .with_configs(
                    changes
                        .iter()
                        .map(|(k, op, v)| {
                            AlterableConfig::default()
                                .with_name(name(k))
                                .with_config_operation(match op {
                                    AlterOp::Set => 0,
                                    AlterOp::Delete => 1,
                                })
                                .with_value(v.as_deref().map(name))
                        })
                        .collect(),
                ),
        ]);
        let response = self
            .cluster
            .controller_connection()
            .await?
            .send(&request)
            .await?;
        for r in &response.responses {
            if r.error_code != 0 {
                return Err(ClientError::kafka_with_message(
                    r.error_code,
                    r.error_message.as_ref().map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Brokers and controller: DescribeCluster when the broker has it,
    /// Metadata otherwise.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        let conn = self.cluster.any_connection().await?;
        if conn
            .versions()
            .version(kafka_protocol::messages::ApiKey::DescribeCluster)
            .is_some()
        {
            let response = conn.send(&DescribeClusterRequest::default()).await?;
            if response.error_code != 0 {
                return Err(ClientError::kafka_with_message(
                    response.error_code,
                    response.error_message.map(|m| m.to_string()),
                ));
            }
            let mut brokers: Vec<BrokerInfo> = response
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
                .collect();
            brokers.sort_by_key(|b| b.id);
            return Ok(ClusterDescription {
                cluster_id: response.cluster_id.to_string(),
                controller_id: response.controller_id.0,
                brokers,
            });
        }
        let snapshot = self.cluster.refresh_metadata(Some(&[])).await?;
        Ok(ClusterDescription {
            cluster_id: snapshot.cluster_id.clone().unwrap_or_default(),
            controller_id: snapshot.controller_id,
            brokers: snapshot.brokers.values().cloned().collect(),
        })
    }

    /// Log start and end offsets per partition of `topic`.
    pub async fn partition_offsets(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<i32, (i64, i64)>, ClientError> {
        let info = self.cluster.topic(topic).await?;
        let mut q = Vec::new();
        for p in &info.partitions {
            q.push((topic.to_string(), p.partition, super::offsets::EARLIEST));
        }
        let start = super::offsets::list_offsets(&self.cluster, &q).await?;
        for e in q.iter_mut() {
            e.2 = super::offsets::LATEST;
        }
        let end = super::offsets::list_offsets(&self.cluster, &q).await?;
        Ok(info
            .partitions
            .iter()
            .map(|p| {
                let tp = (topic.to_string(), p.partition);
                (
                    p.partition,
                    (
                        start.get(&tp).map_or(-1, |v| v.0),
                        end.get(&tp).map_or(-1, |v| v.0),
                    ),
                )
            })
            .collect())
    }
}
