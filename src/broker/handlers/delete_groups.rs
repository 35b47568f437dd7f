//! DeleteGroups: only groups without members (NON_EMPTY_GROUP otherwise);
//! their offsets and metadata get tombstones in `__consumer_offsets`.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|g| {
            let code = broker
                .groups
                .delete_group(broker.groups.now_ms(), g.0.as_str());
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
