//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells
//! it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::env::time::now_ms;

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let code = broker.groups.heartbeat(
        now_ms(),
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}
