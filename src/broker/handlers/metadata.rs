//! Metadata: this node, and the requested topics (all when none are named),
//! auto-creating missing topics when auto.create.topics.enable and the
//! request allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::registry::{validate_topic_name, TopicState};
use crate::broker::Broker;
use crate::env::time::now_ms;
use crate::protocol::error_codes as ec;

/// Version 4 added the request's allow_auto_topic_creation flag.
const AUTO_CREATE_FLAG_VERSION: i16 = 4;

pub fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(broker.config.node_id);
    let allow_auto_create = broker.config.auto_create_topics_enable
        && (version < AUTO_CREATE_FLAG_VERSION || request.allow_auto_topic_creation);
    let all_topics = match &request.topics {
        None => true,
        // v0 has no null array: an empty list means every topic.
        Some(t) => t.is_empty() && version == 0,
    };
    let mut topics = Vec::new();
    if all_topics {
        for t in broker.registry.list() {
            topics.push(topic_entry(broker, &t));
        }
    } else {
        for wanted in request.topics.unwrap_or_default() {
            topics.push(match &wanted.name {
                Some(name) => by_name(broker, name, allow_auto_create),
                None => by_id(broker, wanted.topic_id),
            });
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(str_bytes(broker.advertised_host.clone()))
            .with_port(broker.advertised_port)])
        .with_cluster_id(Some(str_bytes(broker.config.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED)
}

fn by_name(broker: &Broker, name: &TopicName, allow_auto_create: bool) -> MetadataResponseTopic {
    let name_str = name.0.as_str();
    if let Some(t) = broker.registry.get(name_str) {
        return topic_entry(broker, &t);
    }
    let error = |code| {
        MetadataResponseTopic::default()
            .with_error_code(code)
            .with_name(Some(name.clone()))
            .with_topic_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED)
    };
    if let Err(e) = validate_topic_name(name_str) {
        return error(e.code);
    }
    if !allow_auto_create {
        return error(ec::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let partitions = broker.config.num_partitions;
    match broker
        .registry
        .create(name_str, partitions, Default::default(), now_ms())
    {
        Ok(t) => topic_entry(broker, &t),
        // Lost a race with another creator: report what exists now.
        Err(e) if e.code == ec::TOPIC_ALREADY_EXISTS => match broker.registry.get(name_str) {
            Some(t) => topic_entry(broker, &t),
            None => error(ec::LEADER_NOT_AVAILABLE),
        },
        Err(e) => {
            tracing::warn!(topic = name_str, error = %e, "auto-creating topic failed");
            error(e.code)
        }
    }
}

fn by_id(broker: &Broker, id: Uuid) -> MetadataResponseTopic {
    match broker.registry.get_by_id(id) {
        Some(t) => topic_entry(broker, &t),
        None => MetadataResponseTopic::default()
            .with_error_code(ec::UNKNOWN_TOPIC_ID)
            .with_topic_id(id)
            .with_topic_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED),
    }
}

fn topic_entry(broker: &Broker, topic: &TopicState) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let entry = MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node]);
            if p.is_offline() {
                // Its log dir failed: the only replica is offline, so
                // there is no leader until the broker restarts.
                entry
                    .with_error_code(ec::KAFKA_STORAGE_ERROR)
                    .with_leader_id(BrokerId(-1))
                    .with_isr_nodes(Vec::new())
                    .with_offline_replicas(vec![node])
            } else {
                entry.with_leader_id(node).with_isr_nodes(vec![node])
            }
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
