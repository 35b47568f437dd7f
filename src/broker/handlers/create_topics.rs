//! CreateTopics: check each topic's form here (duplicates, assignments,
//! null configs), then let the controller validate and create the rest
//! (name, partitions, replication factor against the live brokers,
//! configs) in one batch.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::{topic_config_entries, ConfigEntry};
use super::str_bytes;
use crate::broker::admin::create_topics_via_controller;
use crate::broker::registry::TopicError;
use crate::broker::Broker;
use crate::controller::api::CreateTopicSpec;
use crate::protocol::error_codes as ec;

/// Version 5 added partitions, replication factor and configs to the result.
const DETAILS_VERSION: i16 = 5;

pub async fn handle(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = BTreeMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_insert(0) += 1;
    }
    // Refuse malformed items here; send the rest to the controller as one batch.
    let mut results: Vec<Option<TopicError>> = Vec::with_capacity(request.topics.len());
    let mut specs = Vec::new();
    for t in &request.topics {
        if seen.get(t.name.0.as_str()).copied().unwrap_or(0) > 1 {
            results.push(Some(TopicError::new(
                ec::INVALID_REQUEST,
                "topic named more than once in the request",
            )));
            continue;
        }
        match spec(t) {
            Ok(s) => {
                specs.push(s);
                results.push(None);
            }
            Err(e) => results.push(Some(e)),
        }
    }
    let mut decided = create_topics_via_controller(broker, specs, request.validate_only)
        .await
        .into_iter();
    let image = broker.cluster.image();
    let topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(t, refused)| {
            let result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let outcome = match refused {
                Some(e) => e,
                None => {
                    let (_, r) = decided
                        .next()
                        .expect("one controller result per forwarded topic");
                    TopicError::new(r.error_code, r.message.unwrap_or_default())
                }
            };
            if outcome.code != ec::NONE {
                return result
                    .with_error_code(outcome.code)
                    .with_error_message(Some(str_bytes(outcome.message)));
            }
            let Some(created) = image.topic(t.name.0.as_str()) else {
                // validate_only: report what would be created.
                if request.validate_only && version >= DETAILS_VERSION {
                    let (partitions, rf) = if t.assignments.is_empty() {
                        (
                            if t.num_partitions == -1 {
                                broker.config.num_partitions
                            } else {
                                t.num_partitions
                            },
                            if t.replication_factor == -1 {
                                broker.config.default_replication_factor
                            } else {
                                t.replication_factor
                            },
                        )
                    } else {
                        (
                            t.assignments.len() as i32,
                            t.assignments[0].broker_ids.len() as i16,
                        )
                    };
                    return result
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf);
                }
                return result;
            };
            let mut r = result.with_topic_id(created.id);
            if version >= DETAILS_VERSION {
                let rf = created.partitions.first().map_or(0, |p| p.replicas.len());
                r = r
                    .with_num_partitions(created.partitions.len() as i32)
                    .with_replication_factor(rf as i16)
                    .with_configs(Some(
                        topic_config_entries(broker, &created.configs)
                            .into_iter()
                            .map(to_creatable)
                            .collect(),
                    ));
            }
            r
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

/// The controller's view of one requested topic, or why it is malformed.
fn spec(t: &CreatableTopic) -> Result<CreateTopicSpec, TopicError> {
    let mut assignments = Vec::new();
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(TopicError::new(
                ec::INVALID_REQUEST,
                "give either assignments or partitions/replication factor, not both",
            ));
        }
        let mut by_index: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for a in &t.assignments {
            by_index.insert(
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect(),
            );
        }
        if by_index.len() != t.assignments.len()
            || by_index.keys().enumerate().any(|(i, &p)| p != i as i32)
        {
            return Err(TopicError::new(
                ec::INVALID_REPLICA_ASSIGNMENT,
                "assignments must cover partitions 0..n exactly once",
            ));
        }
        assignments = by_index.into_values().collect();
    }
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
    Ok(CreateTopicSpec {
        name: t.name.0.to_string(),
        partitions: t.num_partitions,
        replication_factor: t.replication_factor,
        assignments,
        configs,
    })
}
