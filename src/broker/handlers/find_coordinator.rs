//! FindCoordinator: every group's coordinator is this broker (one node).
//! v0-v3 ask for one key, v4+ for a batch of `coordinator_keys`. Transaction
//! coordinators (key type 1) are not served yet: COORDINATOR_NOT_AVAILABLE.
//! The first group lookup creates `__consumer_offsets`, as Kafka does.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::codes as ec;
use crate::env::time::now_ms;

/// v4 moved the answer into a list of coordinators.
const BATCHED_VERSION: i16 = 4;
const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let code = if request.key_type != KEY_TYPE_GROUP {
        ec::COORDINATOR_NOT_AVAILABLE
    } else {
        match broker
            .groups
            .ensure_offsets_topic(&broker.registry, now_ms())
        {
            Ok(_) => ec::NONE,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the offsets topic");
                ec::COORDINATOR_NOT_AVAILABLE
            }
        }
    };
    let (node, host, port) = if code == ec::NONE {
        (
            broker.config.node_id,
            broker.advertised_host.clone(),
            broker.advertised_port,
        )
    } else {
        (-1, String::new(), -1)
    };
    if version >= BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host.clone()))
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port)
    }
}
