//! OffsetCommit: group commits are checked against the member and the
//! generation; simple commits (generation -1, assign-only consumers) are
//! allowed while the group has no members. Offsets are durable in
//! `__consumer_offsets` before the response.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::coordinator::group::codes as ec;
use crate::coordinator::group::records::OffsetValue;
use crate::coordinator::group::service::Committer;
use crate::coordinator::group::OffsetToCommit;

/// How long a commit waits for its offsets partition's ISR (Kafka's
/// offsets.commit.timeout.ms).
const COMMIT_TIMEOUT: crate::env::time::Duration = crate::env::time::Duration::from_secs(5);

pub async fn handle(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = broker.groups.now_ms();
    let group = request.group_id.0.to_string();
    // Partitions of unknown topics are answered, not committed.
    let mut to_commit = Vec::new();
    let mut known = Vec::new();
    let image = broker.cluster.image();
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
        generation: request.generation_id_or_member_epoch,
    };
    // Answer (and apply) once the commit is in the ISR of its offsets
    // partition, so an acknowledged or visible commit survives a
    // coordinator failover.
    let result = match broker.groups.commit(now, &who, to_commit) {
        Ok((codes, pending)) => match broker.groups.finish_commit(pending, COMMIT_TIMEOUT).await {
            ec::NONE => Ok(codes),
            code => Err(code),
        },
        Err(code) => Err(code),
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
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
