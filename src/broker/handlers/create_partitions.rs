//! CreatePartitions: grow a topic to a larger partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::env::time::now_ms;
use crate::protocol::error_codes as ec;

pub fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node = broker.config.node_id;
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            if let Some(assignments) = &t.assignments {
                if assignments
                    .iter()
                    .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
                {
                    return result
                        .with_error_code(ec::INVALID_REPLICA_ASSIGNMENT)
                        .with_error_message(Some(str_bytes(format!(
                            "this cluster has one broker ({node})"
                        ))));
                }
            }
            match broker.registry.add_partitions(
                t.name.0.as_str(),
                t.count,
                request.validate_only,
                now_ms(),
            ) {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
