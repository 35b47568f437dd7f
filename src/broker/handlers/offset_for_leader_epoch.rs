//! OffsetForLeaderEpoch (api key 23): for each partition and leader epoch,
//! the largest epoch <= it this leader knows and where it ended (the start
//! of the next epoch, or the log end for the latest), from the partition's
//! leader epoch cache. Clients use it after a leader change to detect a
//! truncated log (KIP-320); followers in Weir use Fetch's diverging_epoch
//! instead. Answered by the leader only (the ReplicaManager's replica), with
//! epoch fencing. A partition in the image but not hosted here answers
//! NOT_LEADER_OR_FOLLOWER, one not in the image UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::hosted_replica;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    match hosted_replica(broker, t.topic.0.as_str(), p.partition).and_then(|r| {
                        r.end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch)
                    }) {
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
