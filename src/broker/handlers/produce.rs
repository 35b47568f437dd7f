//! Produce: append each partition's record batches to its log.
//!
//! Hot path, no per-record work and no copy of the records: the request is
//! decoded once to learn where each partition's records sit inside the frame
//! (the codec's `Bytes` are slices of it), the decoded request is dropped,
//! the frame is taken back as a unique mutable buffer, and each partition's
//! byte range is handed (through the replica's `append_as_leader`) to
//! `PartitionLog::append`, which validates the batches and patches offsets
//! in place. If the frame is somehow shared, it
//! is copied once (not per record).
//!
//! acks=0 gets no response; acks=1 answers after the leader's local
//! append. Partitions come from the metadata image and are served by the
//! ReplicaManager: only the leader appends, stamping batches with its leader
//! epoch; a partition in the image whose replica is not here answers
//! NOT_LEADER_OR_FOLLOWER, one not in the image UNKNOWN_TOPIC_OR_PARTITION.
//! acks=all first needs |ISR| >= min.insync.replicas (NOT_ENOUGH_REPLICAS),
//! then waits, after every partition's append, until the HW passes the
//! batch (NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER or
//! REQUEST_TIMED_OUT otherwise). A one-replica partition is its own whole
//! ISR: there acks=1 and acks=all are the same.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

use super::{hosted_replica, str_bytes};
use crate::broker::Broker;
use crate::env::time::{now_ms, Duration};
use crate::log::batch::HEADER_BYTES;
use crate::protocol::error_codes as ec;
use crate::protocol::RequestError;

/// RecordBatch attributes bit marking a transactional batch.
const ATTR_TRANSACTIONAL: i16 = 0x10;
/// RecordBatch attributes bit marking a control batch (only brokers write those).
const ATTR_CONTROL: i16 = 0x20;
const ATTRIBUTES_AT: usize = 21;
const BATCH_LENGTH_AT: usize = 8;
/// Bytes before a batch's length field and the field itself (baseOffset + batchLength).
const LOG_OVERHEAD_BYTES: usize = 12;
const INVALID_RECORD: i16 = 87;

/// Produce requests whose frame had to be copied because it was shared
/// (expected to stay 0: the connection reads each frame into its own buffer).
pub static FRAME_COPIES: AtomicU64 = AtomicU64::new(0);

struct PartitionPlan {
    index: i32,
    records: Option<Range<usize>>,
}

struct TopicPlan {
    name: TopicName,
    partitions: Vec<PartitionPlan>,
}

/// Returns None for acks=0 (no response is sent).
pub async fn handle(
    broker: &Broker,
    body: Bytes,
    version: i16,
) -> Result<Option<ProduceResponse>, RequestError> {
    let base = body.as_ptr() as usize;
    let mut request = ProduceRequest::decode_from(&mut body.clone(), version)?;
    let acks = request.acks;
    let timeout_ms = request.timeout_ms.max(0) as u64;
    let transactional = request.transactional_id.is_some();
    let mut plans = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data.iter_mut() {
        let partitions = topic
            .partition_data
            .iter_mut()
            .map(|p| PartitionPlan {
                index: p.index,
                records: p.records.take().map(|r| {
                    let start = r.as_ptr() as usize - base;
                    start..start + r.len()
                }),
            })
            .collect();
        // Topic names are slices of the frame too: own them before releasing it.
        plans.push(TopicPlan {
            name: TopicName(str_bytes(topic.name.0.as_str())),
            partitions,
        });
    }
    drop(request);
    let mut frame: BytesMut = body.try_into_mut().unwrap_or_else(|shared| {
        FRAME_COPIES.fetch_add(1, Ordering::Relaxed);
        tracing::trace!("produce frame shared; copying it once");
        BytesMut::from(&shared[..])
    });

    let mut responses = Vec::with_capacity(plans.len());
    // acks=all appends to replicated partitions: (topic slot, partition
    // slot, replica, last offset, leader epoch), waited on once all are in.
    let mut waits = Vec::new();
    for plan in plans {
        let mut partition_responses = Vec::with_capacity(plan.partitions.len());
        for p in plan.partitions {
            let resp = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let error = |code: i16, msg: &str| {
                resp.clone()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(msg)))
            };
            let r = if !(acks == 0 || acks == 1 || acks == -1) {
                error(ec::INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1")
            } else {
                match (
                    hosted_replica(broker, plan.name.0.as_str(), p.index),
                    p.records,
                ) {
                    (Err(code), _) => error(code, not_hosted_message(code)),
                    (Ok(_), None) => error(INVALID_RECORD, "no records"),
                    (Ok(_), Some(range)) if range.is_empty() => error(INVALID_RECORD, "no records"),
                    (Ok(replica), Some(range)) => {
                        let batches = &mut frame[range];
                        if let Some((code, msg)) = reject_batches(batches, transactional) {
                            error(code, msg)
                        } else {
                            match replica.append_as_leader(batches, acks == -1, now_ms()) {
                                Ok((info, epoch)) => {
                                    if acks == -1 {
                                        waits.push((
                                            responses.len(),
                                            partition_responses.len(),
                                            replica.clone(),
                                            info.last_offset,
                                            epoch,
                                        ));
                                    }
                                    resp.with_base_offset(info.first_offset)
                                        .with_log_append_time_ms(info.log_append_time_ms)
                                        .with_log_start_offset(info.log_start_offset)
                                }
                                Err((code, msg)) => {
                                    tracing::debug!(topic = %replica.topic, partition = p.index, code, msg, "append rejected");
                                    error(code, &msg)
                                }
                            }
                        }
                    }
                }
            };
            partition_responses.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(plan.name)
                .with_partition_responses(partition_responses),
        );
    }
    let deadline = crate::env::time::now() + Duration::from_millis(timeout_ms);
    for (t, i, replica, last_offset, epoch) in waits {
        let remaining = deadline.saturating_duration_since(crate::env::time::now());
        let code = replica.wait_for_hw(last_offset, epoch, remaining).await;
        if code != ec::NONE {
            let r: &mut PartitionProduceResponse = &mut responses[t].partition_responses[i];
            r.error_code = code;
            r.error_message = Some(str_bytes(match code {
                ec::NOT_LEADER_OR_FOLLOWER => "leadership changed before the write was replicated",
                ec::REQUEST_TIMED_OUT => "timed out waiting for the in-sync replicas",
                _ => "the ISR shrank below min.insync.replicas before the write was replicated",
            }));
        }
    }
    if acks == 0 {
        return Ok(None);
    }
    Ok(Some(ProduceResponse::default().with_responses(responses)))
}

fn not_hosted_message(code: i16) -> &'static str {
    if code == ec::NOT_LEADER_OR_FOLLOWER {
        "this broker hosts no replica of the partition"
    } else {
        "unknown topic or partition"
    }
}

/// Batches the broker refuses before the log sees them: control batches
/// (only a partition leader writes those, on WriteTxnMarkers), and a
/// mismatch between the request's transactional id and the batches'
/// transactional bit (as Kafka: a transactional batch needs a
/// transactional id, and a request with one carries only transactional
/// batches). Malformed framing is left to the log, which reports
/// CORRUPT_MESSAGE.
fn reject_batches(batches: &[u8], transactional_request: bool) -> Option<(i16, &'static str)> {
    let mut pos = 0usize;
    while pos + HEADER_BYTES <= batches.len() {
        let len_bytes: [u8; 4] = batches[pos + BATCH_LENGTH_AT..pos + BATCH_LENGTH_AT + 4]
            .try_into()
            .ok()?;
        let attrs = i16::from_be_bytes([
            batches[pos + ATTRIBUTES_AT],
            batches[pos + ATTRIBUTES_AT + 1],
        ]);
        if attrs & ATTR_CONTROL != 0 {
            return Some((INVALID_RECORD, "clients may not write control batches"));
        }
        let batch_transactional = attrs & ATTR_TRANSACTIONAL != 0;
        if batch_transactional && !transactional_request {
            return Some((
                INVALID_RECORD,
                "a transactional batch needs the request's transactional id",
            ));
        }
        if !batch_transactional && transactional_request {
            return Some((
                INVALID_RECORD,
                "a request with a transactional id carries only transactional batches",
            ));
        }
        let len = i32::from_be_bytes(len_bytes);
        if len <= 0 {
            return None;
        }
        pos += LOG_OVERHEAD_BYTES + len as usize;
    }
    None
}

trait DecodeFrom: Sized {
    fn decode_from(body: &mut Bytes, version: i16) -> Result<Self, RequestError>;
}

impl DecodeFrom for ProduceRequest {
    fn decode_from(body: &mut Bytes, version: i16) -> Result<Self, RequestError> {
        <ProduceRequest as kafka_protocol::protocol::Decodable>::decode(body, version)
            .map_err(|e| RequestError::Malformed(e.to_string()))
    }
}
