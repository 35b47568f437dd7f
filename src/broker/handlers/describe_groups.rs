//! DescribeGroups: state, protocol and members (with their subscription and
//! assignment bytes once the group is Stable). An unknown group is described
//! as Dead with no error, as Kafka does.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::GroupState;
use crate::protocol::error_codes::AUTHORIZED_OPERATIONS_OMITTED;

pub fn handle(broker: &Broker, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|g| {
            let base = DescribedGroup::default()
                .with_group_id(g.clone())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            if !broker.groups.owns(g.0.as_str()) {
                return base.with_error_code(crate::coordinator::group::codes::NOT_COORDINATOR);
            }
            match broker.groups.describe(g.0.as_str()) {
                None => base
                    .with_group_state(str_bytes(GroupState::Dead.name()))
                    .with_protocol_type(str_bytes(""))
                    .with_protocol_data(str_bytes("")),
                Some(d) => base
                    .with_group_state(str_bytes(d.state.name()))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
