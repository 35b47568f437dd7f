//! CreateTopics: validate each topic independently (name, partitions,
//! replication factor, assignments, configs), then create it unless
//! validate_only. One node: replication factor 1 is the only valid one.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::{topic_config_entries, ConfigEntry};
use super::str_bytes;
use crate::broker::registry::TopicError;
use crate::broker::Broker;
use crate::env::time::now_ms;
use crate::protocol::error_codes as ec;

/// Version 5 added partitions, replication factor and configs to the result.
const DETAILS_VERSION: i16 = 5;

pub fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut seen = BTreeMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_insert(0) += 1;
    }
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            if seen.get(t.name.0.as_str()).copied().unwrap_or(0) > 1 {
                return result
                    .with_error_code(ec::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes(
                        "topic named more than once in the request",
                    )));
            }
            match create_one(broker, &t, request.validate_only) {
                Ok((partitions, id, configs)) => {
                    let mut r = result.with_topic_id(id);
                    if version >= DETAILS_VERSION {
                        r = r
                            .with_num_partitions(partitions)
                            .with_replication_factor(1)
                            .with_configs(Some(
                                topic_config_entries(broker, &configs)
                                    .into_iter()
                                    .map(to_creatable)
                                    .collect(),
                            ));
                    }
                    r
                }
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn to_creatable(e: ConfigEntry) -> CreatableTopicConfigs {
    CreatableTopicConfigs::default()
        .with_name(str_bytes(e.name))
        .with_value(Some(str_bytes(e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
}

fn create_one(
    broker: &Broker,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<(i32, uuid::Uuid, BTreeMap<String, String>), TopicError> {
    let name = t.name.0.as_str();
    let node = broker.config.node_id;
    let partitions = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(TopicError::new(
                ec::INVALID_REQUEST,
                "give either assignments or partitions/replication factor, not both",
            ));
        }
        let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err(TopicError::new(
                ec::INVALID_REPLICA_ASSIGNMENT,
                "assignments must cover partitions 0..n exactly once",
            ));
        }
        for a in &t.assignments {
            if a.broker_ids.len() != 1 || a.broker_ids[0].0 != node {
                return Err(TopicError::new(
                    ec::INVALID_REPLICA_ASSIGNMENT,
                    format!("this cluster has one broker ({node}): every partition's replicas must be [{node}]"),
                ));
            }
        }
        t.assignments.len() as i32
    } else {
        let rf = if t.replication_factor == -1 {
            broker.config.default_replication_factor
        } else {
            t.replication_factor
        };
        if rf != 1 {
            return Err(TopicError::new(
                ec::INVALID_REPLICATION_FACTOR,
                format!("replication factor {rf} is larger than the 1 available broker"),
            ));
        }
        if t.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            t.num_partitions
        }
    };
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        match &c.value {
            Some(v) => {
                configs.insert(c.name.to_string(), v.to_string());
            }
            None => {
                return Err(TopicError::new(
                    ec::INVALID_CONFIG,
                    format!("config {} has a null value", c.name.as_str()),
                ))
            }
        }
    }
    if validate_only {
        broker
            .registry
            .validate_create(name, partitions, &configs)?;
        return Ok((partitions, uuid::Uuid::nil(), configs));
    }
    let topic = broker
        .registry
        .create(name, partitions, configs.clone(), now_ms())?;
    Ok((partitions, topic.id, configs))
}
