//! OffsetDelete: drop committed offsets of partitions the group is not
//! subscribed to (GROUP_SUBSCRIBED_TO_TOPIC for those it is).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let codes = match broker.groups.delete_offsets(
        broker.groups.now_ms(),
        request.group_id.0.as_str(),
        &partitions,
    ) {
        Ok(codes) => codes,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or_default())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
