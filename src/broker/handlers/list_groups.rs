//! ListGroups: every group, optionally filtered by state (v4+) and type (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

/// The group type of every group here (KIP-848's "classic").
const GROUP_TYPE: &str = "classic";

pub fn handle(broker: &Broker, request: ListGroupsRequest) -> ListGroupsResponse {
    // Kafka matches state names case-insensitively.
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.name().to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == GROUP_TYPE))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state.name()))
                .with_group_type(str_bytes(GROUP_TYPE))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
