//! DescribeConfigs for topic and broker resources: every config with its
//! value, its source (dynamic topic override, static broker config from the
//! properties file, or built-in default) and whether it can be altered.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One described config.
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub read_only: bool,
    pub source: i8,
    /// (name, value, source), most specific first.
    pub synonyms: Vec<(String, String, i8)>,
}

/// A topic's configs given its overrides.
pub fn topic_config_entries(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    broker
        .config
        .topic_defaults()
        .into_iter()
        .map(|(key, default, broker_key)| {
            let broker_source = if broker.config.explicit.contains(broker_key) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let mut synonyms = Vec::new();
            let (value, source) = match overrides.get(key) {
                Some(v) => {
                    synonyms.push((key.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
                    (v.clone(), SOURCE_DYNAMIC_TOPIC)
                }
                None => (default.clone(), broker_source),
            };
            synonyms.push((broker_key.to_string(), default, broker_source));
            ConfigEntry {
                name: key.to_string(),
                value,
                read_only: false,
                source,
                synonyms,
            }
        })
        .collect()
}

fn broker_config_entries(broker: &Broker) -> Vec<ConfigEntry> {
    broker
        .config
        .broker_configs()
        .into_iter()
        .map(|(name, value, explicit)| {
            let source = if explicit {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            ConfigEntry {
                synonyms: vec![(name.clone(), value.clone(), source)],
                name,
                value,
                // Dynamic broker configs are not supported: every one is read-only.
                read_only: true,
                source,
            }
        })
        .collect()
}

pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let image = broker.cluster.image();
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let name = r.resource_name.as_str();
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match image.topic(name) {
                    Some(t) => topic_config_entries(broker, &t.configs),
                    None => {
                        return result
                            .with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str_bytes(format!("unknown topic {name:?}"))))
                    }
                },
                RESOURCE_BROKER => {
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(ec::INVALID_REQUEST)
                            .with_error_message(Some(str_bytes(format!(
                                "unknown broker {name:?}"
                            ))));
                    }
                    broker_config_entries(broker)
                }
                other => {
                    return result
                        .with_error_code(ec::INVALID_REQUEST)
                        .with_error_message(Some(str_bytes(format!(
                            "resource type {other} is not supported"
                        ))))
                }
            };
            let configs = entries
                .into_iter()
                .filter(|e| match &r.configuration_keys {
                    Some(keys) => keys.iter().any(|k| k.as_str() == e.name),
                    None => true,
                })
                .map(|e| {
                    let synonyms = if request.include_synonyms {
                        e.synonyms
                            .into_iter()
                            .map(|(n, v, s)| {
                                DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(n))
                                    .with_value(Some(str_bytes(v)))
                                    .with_source(s)
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(e.name))
                        .with_value(Some(str_bytes(e.value)))
                        .with_read_only(e.read_only)
                        .with_config_source(e.source)
                        .with_synonyms(synonyms)
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
