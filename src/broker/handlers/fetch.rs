//! Fetch: read stored batches back, long-polling until `min_bytes` are
//! available or `max_wait_ms` passes.
//!
//! Waiting is event driven: before each read pass the handler registers on
//! every fetched partition's append notifier (`Notified::enable`), so an
//! append landing between the read and the wait still wakes it. No polling.
//!
//! Limits, as Kafka: each partition gets at most `partition_max_bytes`, the
//! response at most `max_bytes`, except that the first partition with data
//! returns at least one whole batch even if it is larger (so a consumer
//! always progresses). Fetch sessions (KIP-227) are not kept: session id 0
//! in the response tells the client every fetch is a full fetch.
//!
//! Partitions come from the metadata image and are served by the
//! ReplicaManager. A consumer reads from the leader only, below the high
//! watermark, or with isolation_level 1 (read_committed) below the last
//! stable offset with the aborted transactions to filter, with KIP-320 epoch
//! fencing (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). A partition in the
//! image but not led or not hosted here answers NOT_LEADER_OR_FOLLOWER
//! naming the current leader (v12+); one not in the image answers
//! UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_ID for a topic id the image
//! lacks, v13+). A follower's fetch (replica id >= 0) goes to
//! `ReplicaManager::fetch_as_leader`, which reads up to the LEO, tracks the
//! follower and answers `diverging_epoch` when its log left the leader's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::futures::Notified;

use super::hosted_replica;
use crate::broker::Broker;
use crate::env::time::{now, timeout, Duration};
use crate::protocol::error_codes as ec;
use crate::replica::endpoint::{FetchPartition as ReplicaFetchPartition, ReplicaFetchRequest};
use crate::replica::partition::Partition;

/// First version that names topics by id instead of by name.
const TOPIC_ID_VERSION: i16 = 13;
/// First version whose answers name the current leader (KIP-951 hints came
/// later; v12 has current_leader and diverging_epoch).
const CURRENT_LEADER_VERSION: i16 = 12;
/// First version carrying the replica id in `replica_state`.
const REPLICA_STATE_VERSION: i16 = 15;
/// Upper bound on a long poll, whatever the client asks (named limit; Kafka
/// has none, but a client bug must not pin a connection for days).
const FETCH_WAIT_MS_MAX: i32 = 5 * 60 * 1000;

/// One fetched partition, resolved.
struct Target {
    topic_slot: usize,
    partition_index: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    /// This broker's replica of the partition, or the error for one it does
    /// not host (set once, at resolution).
    replica: Result<Arc<Partition>, i16>,
    current_leader_epoch: i32,
    /// The image's (leader, epoch), for NOT_LEADER_OR_FOLLOWER answers.
    leader_hint: Option<(i32, i32)>,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let replica_id = if version >= REPLICA_STATE_VERSION {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    if replica_id >= 0 {
        return handle_replica_fetch(broker, request, version, replica_id).await;
    }
    let (topics, targets) = resolve(broker, &request.topics, version);
    let read_committed = request.isolation_level == 1;
    let wait_ms = request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX);
    let deadline = now() + Duration::from_millis(wait_ms as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };
    let mut shutdown = broker.shutdown.clone();
    loop {
        // Register for appends before reading, so none slips between the two.
        let mut waits: Vec<Pin<Box<Notified<'_>>>> = targets
            .iter()
            .filter_map(|t| t.replica.as_ref().ok())
            .map(|r| Box::pin(r.log.appended()))
            .collect();
        for w in waits.iter_mut() {
            w.as_mut().enable();
        }
        let (datas, bytes, any_error) = read_all(&targets, max_bytes, version, read_committed);
        let remaining = deadline.saturating_duration_since(now());
        if bytes >= min_bytes
            || any_error
            || remaining.is_zero()
            || waits.is_empty()
            || *shutdown.borrow()
        {
            return build_response(topics, datas, version);
        }
        let any_append = std::future::poll_fn(|cx| {
            for w in waits.iter_mut() {
                if w.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        tokio::select! {
            _ = timeout(remaining, any_append) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn resolve(
    broker: &Broker,
    request_topics: &[FetchTopic],
    version: i16,
) -> (Vec<(TopicName, uuid::Uuid)>, Vec<Target>) {
    let mut topics = Vec::with_capacity(request_topics.len());
    let mut targets = Vec::new();
    for (slot, t) in request_topics.iter().enumerate() {
        let name: Option<String> = if version >= TOPIC_ID_VERSION {
            broker.replicas.topic_name(t.topic_id)
        } else {
            Some(t.topic.0.to_string())
        };
        topics.push((t.topic.clone(), t.topic_id));
        for p in &t.partitions {
            let (replica, leader_hint) = match name.as_deref() {
                Some(n) => (
                    hosted_replica(broker, n, p.partition),
                    broker.replicas.image_leader(n, p.partition),
                ),
                // Only fetches by id can name a topic the image lacks.
                None => (Err(ec::UNKNOWN_TOPIC_ID), None),
            };
            targets.push(Target {
                topic_slot: slot,
                partition_index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                replica,
                current_leader_epoch: p.current_leader_epoch,
                leader_hint,
            });
        }
    }
    (topics, targets)
}

/// One read pass over every target: (per-target data, total bytes, any error).
fn read_all(
    targets: &[Target],
    max_bytes: usize,
    version: i16,
    read_committed: bool,
) -> (Vec<(usize, PartitionData)>, usize, bool) {
    let mut out = Vec::with_capacity(targets.len());
    let mut total = 0usize;
    let mut any_error = false;
    for t in targets {
        let data = PartitionData::default()
            .with_partition_index(t.partition_index)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(BrokerId(-1));
        let with_leader = |d: PartitionData, hint: Option<(i32, i32)>| match hint
            .filter(|_| version >= CURRENT_LEADER_VERSION)
        {
            Some((leader, epoch)) => d.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch),
            ),
            None => d,
        };
        let replica = match &t.replica {
            Ok(replica) => replica,
            Err(code) => {
                any_error = true;
                let d = data.with_error_code(*code);
                out.push((t.topic_slot, with_leader(d, t.leader_hint)));
                continue;
            }
        };
        let limit = (t.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
        let min_one_batch = total == 0;
        match replica.read_for_consumer(
            t.fetch_offset,
            t.current_leader_epoch,
            limit,
            min_one_batch,
            read_committed,
        ) {
            Ok(r) => {
                total += r.records.len();
                let aborted = r
                    .aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect();
                out.push((
                    t.topic_slot,
                    data.with_high_watermark(r.high_watermark)
                        .with_last_stable_offset(r.last_stable_offset)
                        .with_log_start_offset(r.log_start_offset)
                        .with_aborted_transactions(Some(aborted))
                        .with_records(Some(r.records)),
                ));
            }
            Err(code) => {
                any_error = true;
                let hint = Some((replica.leader_id(), replica.leader_epoch()));
                let d = data.with_error_code(code).with_records(Some(Bytes::new()));
                out.push((t.topic_slot, with_leader(d, hint)));
            }
        }
    }
    (out, total, any_error)
}

/// A follower's fetch: every partition goes to the ReplicaManager's leader side.
async fn handle_replica_fetch(
    broker: &Broker,
    request: FetchRequest,
    version: i16,
    replica_id: i32,
) -> FetchResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut partitions = Vec::new();
    let mut slots = Vec::new();
    for (slot, t) in request.topics.iter().enumerate() {
        let name = if version >= TOPIC_ID_VERSION {
            broker.replicas.topic_name(t.topic_id).unwrap_or_default()
        } else {
            t.topic.0.to_string()
        };
        topics.push((t.topic.clone(), t.topic_id));
        for p in &t.partitions {
            slots.push(slot);
            partitions.push(ReplicaFetchPartition {
                topic: name.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                current_leader_epoch: p.current_leader_epoch,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: p.last_fetched_epoch,
                log_start_offset: p.log_start_offset,
                max_bytes: p.partition_max_bytes,
            });
        }
    }
    let req = ReplicaFetchRequest {
        replica_id,
        broker_epoch: request.replica_state.replica_epoch,
        max_wait_ms: request.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX),
        min_bytes: request.min_bytes,
        max_bytes: if request.max_bytes <= 0 {
            i32::MAX
        } else {
            request.max_bytes
        },
        partitions,
    };
    let answers = broker.replicas.fetch_as_leader(req).await;
    let datas = answers
        .into_iter()
        .zip(slots)
        .map(|(a, slot)| {
            let mut d = PartitionData::default()
                .with_partition_index(a.partition)
                .with_error_code(a.error_code)
                .with_high_watermark(a.high_watermark)
                .with_last_stable_offset(a.high_watermark)
                .with_log_start_offset(a.log_start_offset)
                .with_preferred_read_replica(BrokerId(-1))
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(a.records));
            if let Some((epoch, end)) = a.diverging_epoch {
                d = d.with_diverging_epoch(
                    EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end),
                );
            }
            if a.error_code == ec::NOT_LEADER_OR_FOLLOWER {
                if let Some((leader, epoch)) = broker.replicas.image_leader(&a.topic, a.partition) {
                    d = d.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch),
                    );
                }
            }
            (slot, d)
        })
        .collect();
    build_response(topics, datas, version)
}

fn build_response(
    topics: Vec<(TopicName, uuid::Uuid)>,
    datas: Vec<(usize, PartitionData)>,
    version: i16,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, id)| {
            let r = FetchableTopicResponse::default();
            if version >= TOPIC_ID_VERSION {
                r.with_topic_id(id)
            } else {
                r.with_topic(name)
            }
        })
        .collect();
    for (slot, data) in datas {
        responses[slot].partitions.push(data);
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(responses)
}
