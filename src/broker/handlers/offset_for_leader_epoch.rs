//! OffsetForLeaderEpoch (api key 23): for each partition and leader epoch,
//! the largest epoch <= it this leader knows and where it ended (the start
//! of the next epoch, or the log end for the latest), from the partition's
//! leader epoch cache. Clients use it after a leader change to detect a
//! truncated log (KIP-320); followers in Weir use Fetch's diverging_epoch
//! instead. Answered by the leader only, with epoch fencing.
//!
//! Single-node partitions are led at epoch 0 by this broker forever.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::protocol::error_codes as ec;
use crate::replica::codes;

/// The leader epoch of single-node partitions (see produce.rs).
const SINGLE_NODE_EPOCH: i32 = 0;

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let legacy = broker.registry.get(&name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let answer = if let Some(replica) = broker.replicas.get(&name, p.partition) {
                        replica.end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch)
                    } else if let Some(partition) =
                        legacy.as_ref().and_then(|l| l.partition(p.partition))
                    {
                        if p.current_leader_epoch > SINGLE_NODE_EPOCH {
                            Err(codes::UNKNOWN_LEADER_EPOCH)
                        } else {
                            partition
                                .with_log(|l| Ok(l.end_offset_for_epoch(p.leader_epoch)))
                                .map_err(|e| e.error_code())
                        }
                    } else if broker.replicas.image_leader(&name, p.partition).is_some() {
                        Err(ec::NOT_LEADER_OR_FOLLOWER)
                    } else {
                        Err(ec::UNKNOWN_TOPIC_OR_PARTITION)
                    };
                    match answer {
                        Ok((epoch, end)) => resp.with_leader_epoch(epoch).with_end_offset(end),
                        Err(code) => resp.with_error_code(code),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
