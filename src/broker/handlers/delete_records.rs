//! DeleteRecords (api key 21): move each partition's log start offset
//! forward (offset -1 = the high watermark) and delete the segments wholly
//! below it; answer with the new low watermark. Answered by the partition's
//! leader only (the ReplicaManager's replica), bounded by its high
//! watermark; followers move their log start when they next fetch (Kafka's
//! wait for every replica's low watermark is not implemented: the answer
//! comes once the leader's move is durable). The change is durable (the log
//! start checkpoint is fsynced) before the response, so timeout_ms never
//! expires. A partition in the image but not hosted here answers
//! NOT_LEADER_OR_FOLLOWER, one not in the image UNKNOWN_TOPIC_OR_PARTITION.
//! As in Kafka, a topic whose cleanup.policy lacks `delete` (compact only)
//! refuses with POLICY_VIOLATION and keeps its log start: its records go
//! only by compaction.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::hosted_replica;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;
use crate::replica::partition::Partition;

pub fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    match hosted_replica(broker, t.name.0.as_str(), p.partition_index).and_then(
                        |r| {
                            check_policy(&r)?;
                            r.delete_records(p.offset)
                        },
                    ) {
                        Ok(low) => resp.with_low_watermark(low),
                        Err(code) => resp.with_error_code(code),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The leader's log must allow deletion (cleanup.policy includes delete).
/// Leadership is checked first, as Kafka does, so a follower still answers
/// NOT_LEADER_OR_FOLLOWER; the policy is the one the log enforces.
fn check_policy(replica: &Partition) -> Result<(), i16> {
    if !replica.is_leader() {
        return Err(ec::NOT_LEADER_OR_FOLLOWER);
    }
    let policy = replica
        .log
        .with_log(|l| Ok(l.config().cleanup_policy))
        .map_err(|e| e.error_code())?;
    if !policy.delete {
        return Err(ec::POLICY_VIOLATION);
    }
    Ok(())
}
