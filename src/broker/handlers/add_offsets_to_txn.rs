//! AddOffsetsToTxn v0-v3: adds the group's `__consumer_offsets` partition
//! to the transaction (the TxnOffsetCommit that follows goes to the group
//! coordinator).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::add_partitions_to_txn::fenced_code;
use crate::broker::Broker;
use crate::coordinator::group::records::partition_for;
use crate::coordinator::group::OFFSETS_TOPIC;
use crate::coordinator::txn::codes as ec;

pub async fn handle(
    broker: &Broker,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let count = broker
        .cluster
        .image()
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .unwrap_or(0);
    let code = if count <= 0 {
        ec::COORDINATOR_NOT_AVAILABLE
    } else {
        let p = partition_for(request.group_id.as_str(), count);
        broker
            .txns
            .add_partitions(
                request.transactional_id.as_str(),
                request.producer_id.0,
                request.producer_epoch,
                &[(OFFSETS_TOPIC.to_string(), p)],
            )
            .await
    };
    AddOffsetsToTxnResponse::default().with_error_code(fenced_code(code, version, 2))
}
