//! LeaveGroup: v0-v2 one member by id; v3+ a batch of members, static ones
//! possibly by instance id alone. The group rebalances without them.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::codes as ec;
use crate::coordinator::group::state::LeavingMember;

const BATCH_VERSION: i16 = 3;

pub fn handle(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    let leaving: Vec<LeavingMember> = if version >= BATCH_VERSION {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            instance_id: None,
        }]
    };
    let codes = broker
        .groups
        .leave(broker.groups.now_ms(), &group, &leaving);
    if version >= BATCH_VERSION {
        let members = leaving
            .into_iter()
            .zip(codes)
            .map(|(l, code)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(l.member_id))
                    .with_group_instance_id(l.instance_id.map(str_bytes))
                    .with_error_code(code)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    } else {
        LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(ec::NONE))
    }
}
