//! JoinGroup: join (or rejoin) a group and wait for the rebalance to form
//! the next generation. The answer may take up to the rebalance timeout.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::state::JoinRequest;

/// v4+: a new member without an id first gets MEMBER_ID_REQUIRED (KIP-394).
const MEMBER_ID_REQUIRED_VERSION: i16 = 4;
/// v9 added SkipAssignment (KIP-814).
const SKIP_ASSIGNMENT_VERSION: i16 = 9;

pub async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance_timeout_ms = if version == 0 {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    };
    let req = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= MEMBER_ID_REQUIRED_VERSION,
        fresh_member_id: String::new(),
    };
    let r = broker
        .groups
        .join(&broker.shutdown, broker.groups.now_ms(), req)
        .await;
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        // Before v7 the name is not nullable: an error answer carries "".
        .with_protocol_name(Some(str_bytes(r.protocol_name.unwrap_or_default())))
        .with_leader(str_bytes(r.leader))
        // Before v9 a static leader rejoining gets the member list and may
        // reassign; its SyncGroup in the Stable group returns the stored one.
        .with_skip_assignment(r.skip_assignment && version >= SKIP_ASSIGNMENT_VERSION)
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.instance_id.map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
