//! SyncGroup: the leader hands in the assignments; every member waits for
//! its own. Answers once the leader's SyncGroup arrives.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::state::SyncRequest;

pub async fn handle(broker: &Broker, request: SyncGroupRequest) -> SyncGroupResponse {
    let req = SyncRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let r = broker
        .groups
        .sync(&broker.shutdown, broker.groups.now_ms(), req)
        .await;
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(r.protocol_name.map(str_bytes))
        .with_assignment(r.assignment)
}
