//! DescribeCluster: the live brokers and the active controller, from the
//! metadata image.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

/// DescribeCluster endpoint_type for broker listeners (2 is controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(broker: &Broker, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_authorized_operations(ec::AUTHORIZED_OPERATIONS_OMITTED);
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS && request.endpoint_type != 0 {
        return resp
            .with_error_code(ec::UNSUPPORTED_VERSION)
            .with_error_message(Some(str_bytes("only broker endpoints are served")));
    }
    let image = broker.cluster.image();
    let brokers = image
        .live_brokers()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    resp.with_cluster_id(str_bytes(broker.config.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.cluster.controller_id().unwrap_or(-1)))
        .with_brokers(brokers)
}
