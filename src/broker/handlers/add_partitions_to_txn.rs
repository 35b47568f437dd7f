//! AddPartitionsToTxn v0-v3 (one transaction per request; v4's batched
//! broker form is KIP-890 part 2 and not served). Every partition gets the
//! transaction-level answer, as Kafka does; PRODUCER_FENCED is
//! INVALID_PRODUCER_EPOCH before v2.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use crate::broker::Broker;
use crate::coordinator::txn::codes as ec;

/// First version that knows PRODUCER_FENCED (KIP-588).
const FENCED_VERSION: i16 = 2;

pub async fn handle(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.to_string();
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let image = broker.cluster.image();
    let unknown = partitions.iter().any(|(t, p)| {
        image
            .topic(t)
            .is_none_or(|topic| *p < 0 || *p as usize >= topic.partitions.len())
    });
    let code = if unknown {
        ec::UNKNOWN_TOPIC_OR_PARTITION
    } else {
        broker
            .txns
            .add_partitions(
                &id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &partitions,
            )
            .await
    };
    let code = fenced_code(code, version, FENCED_VERSION);
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let exists = image.topic(t.name.as_str()).is_some();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let c = match (unknown, exists) {
                                (true, false) => ec::UNKNOWN_TOPIC_OR_PARTITION,
                                // Kafka: the others are not attempted.
                                (true, true) => OPERATION_NOT_ATTEMPTED,
                                _ => code,
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

const OPERATION_NOT_ATTEMPTED: i16 = 55;

/// PRODUCER_FENCED did not exist before `since`: older clients get
/// INVALID_PRODUCER_EPOCH.
pub fn fenced_code(code: i16, version: i16, since: i16) -> i16 {
    if code == ec::PRODUCER_FENCED && version < since {
        ec::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}
