//! TxnOffsetCommit v0-v3: offsets committed inside a transaction. The group
//! coordinator appends them as a transactional batch of the producer and
//! keeps them invisible to OffsetFetch until the producer's COMMIT marker
//! lands on the offsets partition (dropped on ABORT). v3 carries the
//! member and generation, checked when given.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::add_partitions_to_txn::fenced_code;
use crate::broker::Broker;
use crate::coordinator::group::codes as ec;
use crate::coordinator::group::records::OffsetValue;
use crate::coordinator::group::service::Committer;
use crate::coordinator::group::OffsetToCommit;

const COMMIT_TIMEOUT: crate::env::time::Duration = crate::env::time::Duration::from_secs(5);
/// PRODUCER_FENCED is known from v3 (KIP-588).
const FENCED_VERSION: i16 = 3;

pub async fn handle(
    broker: &Broker,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let now = broker.groups.now_ms();
    let group = request.group_id.0.to_string();
    let image = broker.cluster.image();
    let mut to_commit = Vec::new();
    let mut known = Vec::new();
    for t in &request.topics {
        let topic = image.topic(t.name.0.as_str());
        for p in &t.partitions {
            let exists = topic.is_some_and(|tp| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < tp.partitions.len())
            });
            known.push(exists);
            if exists {
                to_commit.push(OffsetToCommit {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp_ms: now,
                    },
                });
            }
        }
    }
    let who = Committer {
        group: &group,
        member: request.member_id.as_str(),
        instance: request.group_instance_id.as_ref().map(|s| s.as_str()),
        generation: request.generation_id,
    };
    let result = match broker.groups.txn_commit(
        now,
        &who,
        request.producer_id.0,
        request.producer_epoch,
        to_commit,
    ) {
        Ok((codes, durable)) => {
            let mut code = ec::NONE;
            for d in durable {
                code = d.wait(COMMIT_TIMEOUT).await;
                if code != ec::NONE {
                    break;
                }
            }
            if code == ec::NONE {
                Ok(codes)
            } else {
                Err(code)
            }
        }
        Err(code) => Err(fenced_code(code, version, FENCED_VERSION)),
    };
    let mut codes = match &result {
        Ok(codes) => codes.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let mut known = known.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let exists = known.next().unwrap_or(false);
                    let code = match (&result, exists) {
                        (Err(code), _) => *code,
                        (Ok(_), false) => ec::UNKNOWN_TOPIC_OR_PARTITION,
                        (Ok(_), true) => codes.next().unwrap_or(ec::NONE),
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
