//! DeleteRecords (api key 21): move each partition's log start offset
//! forward (offset -1 = the high watermark) and delete the segments wholly
//! below it; answer with the new low watermark. Replicated partitions: on
//! the leader only, bounded by its high watermark; followers move their
//! log start when they next fetch (Kafka's wait for every replica's low
//! watermark is not implemented: the answer comes once the leader's move is
//! durable). Single node: the high watermark is the log end offset. The
//! change is durable (the log start checkpoint is fsynced) before the
//! response, so timeout_ms never expires.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::protocol::error_codes as ec;

pub fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.registry.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if let Some(replica) = broker.replicas.get(t.name.0.as_str(), p.partition_index)
                    {
                        return match replica.delete_records(p.offset) {
                            Ok(low) => resp.with_low_watermark(low),
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
                    let r = partition.with_log(|log| {
                        let hw = log.log_end_offset();
                        log.delete_records_before(p.offset, hw)
                    });
                    match r {
                        Ok(low) => resp.with_low_watermark(low),
                        Err(e) => resp.with_error_code(e.error_code()),
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
