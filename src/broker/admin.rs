//! Topic administration forwarded to the active controller.
//!
//! Any broker accepts CreateTopics, DeleteTopics, CreatePartitions and
//! config changes from clients (as Kafka forwards them, KIP-590); the
//! controller decides and commits. Before answering, the broker waits until
//! its own image shows the outcome, so a client that creates a topic and
//! then asks this broker for metadata finds it.

use std::collections::BTreeMap;

use crate::broker::cluster_link::CONTROLLER_CALL_TIMEOUT;
use crate::broker::Broker;
use crate::controller::api::{ControllerRequest, ControllerResponse, CreateTopicSpec, ItemResult};
use crate::metadata::MetadataImage;
use crate::protocol::error_codes as ec;

fn unexpected(resp: &ControllerResponse) -> ItemResult {
    ItemResult {
        error_code: ec::UNKNOWN_SERVER_ERROR,
        message: Some(format!("unexpected controller answer {resp:?}")),
    }
}

/// Per-item results for a request answered with `Items`, one per `names`.
fn items(
    names: &[String],
    answer: Result<ControllerResponse, ItemResult>,
) -> Vec<(String, ItemResult)> {
    let results = match answer {
        Ok(ControllerResponse::Items(r)) if r.len() == names.len() => r,
        Ok(other) => vec![unexpected(&other); names.len()],
        Err(e) => vec![e; names.len()],
    };
    names.iter().cloned().zip(results).collect()
}

/// Create topics; each result is paired with its topic name.
pub async fn create_topics_via_controller(
    broker: &Broker,
    specs: Vec<CreateTopicSpec>,
    validate_only: bool,
) -> Vec<(String, ItemResult)> {
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let req = ControllerRequest::CreateTopics {
        topics: specs,
        validate_only,
    };
    let visible = |img: &MetadataImage, n: &str| validate_only || img.topic(n).is_some();
    call_per_topic(broker, req, names, visible).await
}

/// Delete topics by name.
pub async fn delete_topics_via_controller(
    broker: &Broker,
    names: Vec<String>,
) -> Vec<(String, ItemResult)> {
    let req = ControllerRequest::DeleteTopics {
        names: names.clone(),
    };
    call_per_topic(broker, req, names, |img, n| img.topic(n).is_none()).await
}

/// Send a per-topic request and wait (bounded) until this broker's image
/// shows every topic the controller accepted as `visible` says.
async fn call_per_topic(
    broker: &Broker,
    req: ControllerRequest,
    names: Vec<String>,
    visible: impl Fn(&MetadataImage, &str) -> bool,
) -> Vec<(String, ItemResult)> {
    let results = items(&names, broker.cluster.call(req).await);
    let accepted: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.error_code == ec::NONE)
        .map(|(n, _)| n.as_str())
        .collect();
    broker
        .cluster
        .wait_for_image(
            |img| accepted.iter().all(|n| visible(img, n)),
            CONTROLLER_CALL_TIMEOUT,
        )
        .await;
    results
}

/// Grow a topic to `count` partitions.
pub async fn create_partitions_via_controller(
    broker: &Broker,
    topic: &str,
    count: i32,
    validate_only: bool,
) -> ItemResult {
    let answer = broker
        .cluster
        .call(ControllerRequest::CreatePartitions {
            topic: topic.to_string(),
            count,
            validate_only,
        })
        .await;
    let result = single(answer);
    if result.error_code == ec::NONE && !validate_only {
        broker
            .cluster
            .wait_for_image(
                |img| {
                    img.topic(topic)
                        .is_some_and(|t| t.partitions.len() as i32 >= count)
                },
                CONTROLLER_CALL_TIMEOUT,
            )
            .await;
    }
    result
}

/// Replace a topic's dynamic config overrides.
pub async fn set_topic_configs_via_controller(
    broker: &Broker,
    topic: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> ItemResult {
    let answer = broker
        .cluster
        .call(ControllerRequest::SetTopicConfigs {
            topic: topic.to_string(),
            configs: configs.clone(),
            validate_only,
        })
        .await;
    let result = single(answer);
    if result.error_code == ec::NONE && !validate_only {
        broker
            .cluster
            .wait_for_image(
                |img| img.topic(topic).is_some_and(|t| t.configs == configs),
                CONTROLLER_CALL_TIMEOUT,
            )
            .await;
    }
    result
}

/// The one result of a single-item request (Items of one, or a bare success).
fn single(answer: Result<ControllerResponse, ItemResult>) -> ItemResult {
    match answer {
        Ok(ControllerResponse::Items(mut r)) if r.len() == 1 => r.remove(0),
        Ok(other) => unexpected(&other),
        Err(e) => e,
    }
}
