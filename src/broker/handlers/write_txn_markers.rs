//! WriteTxnMarkers (API 27): the transaction coordinator asks each
//! partition leader to end a transaction by appending a marker (a control
//! batch: COMMIT or ABORT, with the coordinator epoch).
//!
//! Per marker and partition: the replica must lead (else
//! NOT_LEADER_OR_FOLLOWER; unknown partitions UNKNOWN_TOPIC_OR_PARTITION);
//! the marker is appended stamped with the leader epoch, checked as the
//! log checks markers (older producer epoch: INVALID_PRODUCER_EPOCH, older
//! coordinator epoch: TRANSACTION_COORDINATOR_FENCED), then the handler
//! waits until the HW passes it (acks=all; the request has no timeout, so
//! [`MARKER_WAIT_MS_MAX`] bounds the wait and REQUEST_TIMED_OUT makes the
//! coordinator retry). Only then, for `__consumer_offsets` partitions, the
//! group coordinator applies or drops the transaction's offset commits.
//! Errors are per partition; nothing here panics on input.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::hosted_replica;
use crate::broker::Broker;
use crate::coordinator::group::service::OFFSETS_TOPIC;
use crate::env::time::{now, now_ms, Duration};
use crate::log::txn::TxnMarker;
use crate::protocol::error_codes as ec;

/// Longest wait for the ISR to hold a marker before answering
/// REQUEST_TIMED_OUT (Kafka uses the coordinator's request.timeout.ms,
/// 30 s by default).
pub const MARKER_WAIT_MS_MAX: u64 = 30_000;

pub async fn handle(broker: &Broker, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let deadline = now() + Duration::from_millis(MARKER_WAIT_MS_MAX);
    let mut results = Vec::with_capacity(request.markers.len());
    // (marker slot, topic slot, partition slot, replica, last offset, epoch, producer id, commit)
    let mut waits = Vec::new();
    for marker in &request.markers {
        let pid = marker.producer_id.0;
        let commit = marker.transaction_result;
        let mut topics = Vec::with_capacity(marker.topics.len());
        for t in &marker.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &index in &t.partition_indexes {
                let code = match hosted_replica(broker, t.name.0.as_str(), index) {
                    Err(code) => code,
                    Ok(replica) => match replica.append_marker(
                        pid,
                        marker.producer_epoch,
                        TxnMarker {
                            commit,
                            coordinator_epoch: marker.coordinator_epoch,
                        },
                        now_ms(),
                    ) {
                        Ok((info, epoch)) => {
                            waits.push((
                                results.len(),
                                topics.len(),
                                partitions.len(),
                                replica.clone(),
                                info.last_offset,
                                epoch,
                                pid,
                                commit,
                            ));
                            ec::NONE
                        }
                        Err((code, msg)) => {
                            tracing::debug!(topic = %t.name.0, partition = index, pid, code, msg, "marker refused");
                            code
                        }
                    },
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    for (m, t, p, replica, last_offset, epoch, pid, commit) in waits {
        let remaining = deadline.saturating_duration_since(now());
        let code = replica.wait_for_hw(last_offset, epoch, remaining).await;
        if code == ec::NONE && replica.topic == OFFSETS_TOPIC {
            broker
                .groups
                .complete_transaction(replica.index, pid, commit)
                .await;
        }
        results[m].topics[t].partitions[p].error_code = code;
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
