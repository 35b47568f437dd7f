//! DeleteTopics, by name (v1-5) or by name or topic id (v6), decided by the
//! controller; every broker deletes its replicas when it sees the image.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str_bytes;
use crate::broker::admin::delete_topics_via_controller;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

/// Version 6 names topics with (name or id) structs.
const TOPIC_STATE_VERSION: i16 = 6;

pub async fn handle(
    broker: &Broker,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
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
    let image = broker.cluster.image();
    let resolved: Vec<Option<String>> = wanted
        .iter()
        .map(|(name, id)| match name {
            Some(n) => Some(n.0.to_string()),
            None => image.topic_by_id(*id).map(|t| t.name.clone()),
        })
        .collect();
    let names: Vec<String> = resolved.iter().flatten().cloned().collect();
    let mut decided = delete_topics_via_controller(broker, names)
        .await
        .into_iter();
    let responses = wanted
        .into_iter()
        .zip(resolved)
        .map(|((name, id), resolved)| {
            let result = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let Some(resolved) = resolved else {
                return result
                    .with_error_code(ec::UNKNOWN_TOPIC_ID)
                    .with_error_message(Some(str_bytes("unknown topic id")));
            };
            let (_, r) = decided
                .next()
                .expect("one controller result per resolved topic");
            if r.error_code != ec::NONE {
                return result
                    .with_error_code(r.error_code)
                    .with_error_message(r.message.map(str_bytes));
            }
            let id = image.topic(&resolved).map_or(id, |t| t.id);
            result
                .with_name(Some(TopicName(str_bytes(resolved))))
                .with_topic_id(id)
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
