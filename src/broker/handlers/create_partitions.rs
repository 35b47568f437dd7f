//! CreatePartitions: grow a topic to a larger partition count, decided and
//! placed by the controller. Explicit replica assignments are refused.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::admin::create_partitions_via_controller;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            results.push(
                result
                    .with_error_code(ec::INVALID_REPLICA_ASSIGNMENT)
                    .with_error_message(Some(str_bytes(
                        "explicit assignments for new partitions are not supported; the controller places them",
                    ))),
            );
            continue;
        }
        let r = create_partitions_via_controller(
            broker,
            t.name.0.as_str(),
            t.count,
            request.validate_only,
        )
        .await;
        results.push(if r.error_code == ec::NONE {
            result
        } else {
            result
                .with_error_code(r.error_code)
                .with_error_message(r.message.map(str_bytes))
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
