//! DeleteTopics, by name (v1-5) or by name or topic id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

/// Version 6 names topics with (name or id) structs.
const TOPIC_STATE_VERSION: i16 = 6;

pub fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= TOPIC_STATE_VERSION {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let result = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let resolved = match &name {
                Some(n) => Some(n.0.to_string()),
                None => broker.registry.get_by_id(id).map(|t| t.name.clone()),
            };
            let Some(resolved) = resolved else {
                return result
                    .with_error_code(ec::UNKNOWN_TOPIC_ID)
                    .with_error_message(Some(str_bytes("unknown topic id")));
            };
            match broker.registry.delete(&resolved) {
                Ok(t) => result
                    .with_name(Some(TopicName(str_bytes(t.name.clone()))))
                    .with_topic_id(t.id),
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
