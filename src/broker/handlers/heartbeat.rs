//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells
//! it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let code = broker.groups.heartbeat(
        broker.groups.now_ms(),
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}
