//! IncrementalAlterConfigs for topics: SET / DELETE / APPEND / SUBTRACT on
//! topic overrides, validated as a whole, then committed by the controller
//! (brokers apply them to their logs from the image). Broker configs are static (from the properties file).

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::admin::set_topic_configs_via_controller;
use crate::broker::registry::TopicError;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        responses.push({
            let resp = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let outcome = match r.resource_type {
                RESOURCE_TOPIC => {
                    alter_topic(
                        broker,
                        r.resource_name.as_str(),
                        &r.configs,
                        request.validate_only,
                    )
                    .await
                }
                RESOURCE_BROKER => Err(TopicError::new(
                    ec::INVALID_REQUEST,
                    "dynamic broker configs are not supported; set them in server.properties",
                )),
                other => Err(TopicError::new(
                    ec::INVALID_REQUEST,
                    format!("resource type {other} is not supported"),
                )),
            };
            match outcome {
                Ok(()) => resp,
                Err(e) => resp
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter_topic(
    broker: &Broker,
    name: &str,
    ops: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), TopicError> {
    let image = broker.cluster.image();
    let Some(topic) = image.topic(name) else {
        return Err(TopicError::new(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            format!("unknown topic {name:?}"),
        ));
    };
    let mut configs: BTreeMap<String, String> = topic.configs.clone();
    let defaults: BTreeMap<&str, String> = broker
        .config
        .topic_defaults()
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    for op in ops {
        let key = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string());
        let invalid = |why: &str| TopicError::new(ec::INVALID_CONFIG, format!("{key}: {why}"));
        if !defaults.contains_key(key.as_str()) {
            return Err(invalid("unknown topic config"));
        }
        match op.config_operation {
            OP_SET => {
                let v = value.ok_or_else(|| invalid("SET needs a value"))?;
                configs.insert(key, v);
            }
            OP_DELETE => {
                configs.remove(&key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if key != "cleanup.policy" {
                    return Err(invalid("APPEND/SUBTRACT apply to list configs only"));
                }
                let v = value.ok_or_else(|| invalid("needs a value"))?;
                let current = configs
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| defaults[key.as_str()].clone());
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if op.config_operation == OP_APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                configs.insert(key, items.join(","));
            }
            other => return Err(invalid(&format!("unknown operation {other}"))),
        }
    }
    for (k, v) in &configs {
        broker
            .config
            .validate_topic_config(k, v)
            .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
    }
    let r = set_topic_configs_via_controller(broker, name, configs, validate_only).await;
    if r.error_code != ec::NONE {
        return Err(TopicError::new(r.error_code, r.message.unwrap_or_default()));
    }
    Ok(())
}
