//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first
//! offset at/after a timestamp. read_committed answers as read_uncommitted
//! while there are no transactions (LSO = HW). Replicated partitions answer
//! on the leader only: latest = HW, timestamp lookups only below the HW,
//! with KIP-320 epoch fencing. Single-node partitions: HW = LEO.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::protocol::error_codes as ec;

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Version 4 added the leader epoch to each partition's answer.
const LEADER_EPOCH_VERSION: i16 = 4;

pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let leader_epoch = if version >= LEADER_EPOCH_VERSION {
        0
    } else {
        -1
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.registry.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    if let Some(replica) = broker.replicas.get(t.name.0.as_str(), p.partition_index)
                    {
                        return match replica.list_offset(p.timestamp, p.current_leader_epoch) {
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
                        };
                    }
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        let code = if broker
                            .replicas
                            .image_leader(t.name.0.as_str(), p.partition_index)
                            .is_some()
                        {
                            ec::NOT_LEADER_OR_FOLLOWER
                        } else {
                            ec::UNKNOWN_TOPIC_OR_PARTITION
                        };
                        return resp.with_error_code(code);
                    };
                    let found = partition.with_log(|log| {
                        Ok(match p.timestamp {
                            LATEST_TIMESTAMP => Some((log.log_end_offset(), -1)),
                            EARLIEST_TIMESTAMP => Some((log.log_start_offset(), -1)),
                            MAX_TIMESTAMP => log.max_timestamp().map(|(ts, off)| (off, ts)),
                            ts if ts >= 0 => log.offset_for_timestamp(ts)?,
                            _ => None,
                        })
                    });
                    match found {
                        Ok(Some((offset, timestamp))) => resp
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(leader_epoch),
                        Ok(None) => resp,
                        Err(e) => resp.with_error_code(e.error_code()),
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
