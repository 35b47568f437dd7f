//! DeleteRecords (api key 21): move each partition's log start offset
//! forward (offset -1 = the high watermark) and delete the segments wholly
//! below it; answer with the new low watermark. One node: the high
//! watermark is the log end offset, and the change is durable (the log start
//! checkpoint is fsynced) before the response, so timeout_ms never expires.

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
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return resp.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION);
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
