//! Metadata: the live brokers, the active controller and the requested
//! topics (all when none are named), from this broker's metadata image.
//! Missing topics are auto-created through the controller when
//! auto.create.topics.enable and the request allow it (the internal topics
//! with their own configs, as FindCoordinator creates them).

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::find_coordinator::{ensure_offsets_topic, ensure_txn_state_topic};
use super::str_bytes;
use crate::broker::admin::create_topics_via_controller;
use crate::broker::registry::validate_topic_name;
use crate::broker::Broker;
use crate::controller::api::CreateTopicSpec;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::coordinator::txn::TXN_STATE_TOPIC;
use crate::metadata::{MetadataImage, TopicImage, NO_LEADER};
use crate::protocol::error_codes as ec;

/// Version 4 added the request's allow_auto_topic_creation flag.
const AUTO_CREATE_FLAG_VERSION: i16 = 4;

pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let allow_auto_create = broker.config.auto_create_topics_enable
        && (version < AUTO_CREATE_FLAG_VERSION || request.allow_auto_topic_creation);
    let all_topics = match &request.topics {
        None => true,
        // v0 has no null array: an empty list means every topic.
        Some(t) => t.is_empty() && version == 0,
    };
    let mut image = broker.cluster.image();
    if !all_topics && allow_auto_create {
        let missing: Vec<String> = request
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .filter(|n| image.topic(n).is_none() && validate_topic_name(n).is_ok())
            .collect();
        if !missing.is_empty() {
            auto_create(broker, missing).await;
            image = broker.cluster.image();
        }
    }
    let mut topics = Vec::new();
    if all_topics {
        for t in image.topics.values() {
            topics.push(topic_entry(broker, &image, t));
        }
    } else {
        for wanted in request.topics.unwrap_or_default() {
            topics.push(match &wanted.name {
                Some(name) => by_name(broker, &image, name, allow_auto_create),
                None => by_id(broker, &image, wanted.topic_id),
            });
        }
    }
    MetadataResponse::default()
        .with_brokers(brokers(&image))
        .with_cluster_id(Some(str_bytes(broker.config.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.cluster.controller_id().unwrap_or(-1)))
        .with_topics(topics)
        .with_cluster_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED)
}

/// Every live (unfenced) broker, as clients should connect to them.
pub fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .live_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}

async fn auto_create(broker: &Broker, names: Vec<String>) {
    // The internal topics are created with their own partition counts and
    // configs (compacted, ...), as Kafka's AutoTopicCreationManager does: a
    // Metadata request must not make `__consumer_offsets` a plain topic
    // whose retention would delete committed offsets.
    let (internal, names): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| n == OFFSETS_TOPIC || n == TXN_STATE_TOPIC);
    for name in internal {
        if name == OFFSETS_TOPIC {
            ensure_offsets_topic(broker).await;
        } else {
            ensure_txn_state_topic(broker).await;
        }
    }
    if names.is_empty() {
        return;
    }
    let specs = names
        .into_iter()
        .map(|name| CreateTopicSpec {
            name,
            partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        })
        .collect();
    for (name, result) in create_topics_via_controller(broker, specs, false).await {
        if result.error_code != ec::NONE && result.error_code != ec::TOPIC_ALREADY_EXISTS {
            tracing::warn!(topic = %name, code = result.error_code, message = ?result.message, "auto-creating topic failed");
        }
    }
}

fn by_name(
    broker: &Broker,
    image: &MetadataImage,
    name: &TopicName,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    let name_str = name.0.as_str();
    if let Some(t) = image.topic(name_str) {
        return topic_entry(broker, image, t);
    }
    let code = match validate_topic_name(name_str) {
        Err(e) => e.code,
        // Created, but this broker has not seen the image yet: retriable.
        Ok(()) if allow_auto_create => ec::LEADER_NOT_AVAILABLE,
        Ok(()) => ec::UNKNOWN_TOPIC_OR_PARTITION,
    };
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(name.clone()))
        .with_topic_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED)
}

fn by_id(broker: &Broker, image: &MetadataImage, id: Uuid) -> MetadataResponseTopic {
    match image.topic_by_id(id) {
        Some(t) => topic_entry(broker, image, t),
        None => MetadataResponseTopic::default()
            .with_error_code(ec::UNKNOWN_TOPIC_ID)
            .with_topic_id(id)
            .with_topic_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED),
    }
}

fn topic_entry(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    let me = broker.config.node_id;
    let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let index = index as i32;
            // A replica is offline when its broker is fenced or gone, or
            // (for this broker) when its log dir failed.
            let mut offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .collect();
            let local_dir_failed = p.replicas.contains(&me)
                && broker
                    .registry
                    .get(&topic.name, index)
                    .is_some_and(|s| s.is_offline());
            if local_dir_failed && !offline.contains(&me) {
                offline.push(me);
            }
            let leader = if local_dir_failed && p.leader == me {
                NO_LEADER
            } else {
                p.leader
            };
            let error = if local_dir_failed && p.leader == me {
                ec::KAFKA_STORAGE_ERROR
            } else if leader == NO_LEADER {
                ec::LEADER_NOT_AVAILABLE
            } else {
                ec::NONE
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(matches!(
            topic.name.as_str(),
            "__consumer_offsets" | "__transaction_state"
        ))
        .with_partitions(partitions)
        .with_topic_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED)
}
