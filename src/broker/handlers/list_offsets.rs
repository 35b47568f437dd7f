//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first
//! offset at/after a timestamp. read_committed answers as read_uncommitted
//! while there are no transactions (LSO = HW). Answered by the partition's
//! leader only (the ReplicaManager's replica): latest = HW, timestamp
//! lookups only below the HW, with KIP-320 epoch fencing. A partition in the
//! image but not hosted here answers NOT_LEADER_OR_FOLLOWER, one not in the
//! image UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::hosted_replica;
use crate::broker::Broker;

/// Version 4 added the leader epoch to each partition's answer.
const LEADER_EPOCH_VERSION: i16 = 4;

pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // isolation_level 1 (read_committed): LATEST is the last stable offset.
    let read_committed = request.isolation_level == 1;
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let found = hosted_replica(broker, t.name.0.as_str(), p.partition_index)
                        .and_then(|r| {
                            r.list_offset(p.timestamp, p.current_leader_epoch, read_committed)
                        });
                    match found {
                        Ok(Some((offset, timestamp, epoch))) => resp
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if version >= LEADER_EPOCH_VERSION {
                                epoch
                            } else {
                                -1
                            }),
                        Ok(None) => resp,
                        Err(code) => resp.with_error_code(code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
