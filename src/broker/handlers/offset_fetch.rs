//! OffsetFetch: committed offsets of a group (v1-v7) or of several groups
//! (v8+); a null topic list means every partition the group committed.
//! A partition without a committed offset answers offset -1, no error.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::group::codes::NOT_COORDINATOR;
use crate::coordinator::group::records::OffsetValue;

const BATCHED_VERSION: i16 = 8;

type Fetched = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

fn fetch(broker: &Broker, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    let rows = broker.groups.fetch_offsets(group, topics.as_deref());
    let mut out: Fetched = Vec::new();
    for (t, p, o) in rows {
        match out.last_mut() {
            Some((last, ps)) if *last == t => ps.push((p, o)),
            _ => out.push((t, vec![(p, o)])),
        }
    }
    // Topics asked for with no partitions still get their (empty) entry.
    if let Some(asked) = topics {
        for (t, ps) in asked {
            if ps.is_empty() && !out.iter().any(|(n, _)| *n == t) {
                out.push((t, Vec::new()));
            }
        }
    }
    out
}

fn fields(o: &Option<OffsetValue>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

pub fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= BATCHED_VERSION {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                if !broker.groups.owns(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(g.group_id.0))
                        .with_error_code(NOT_COORDINATOR);
                }
                let asked = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = fetch(broker, g.group_id.0.as_str(), asked)
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(
                                ps.iter()
                                    .map(|(p, o)| {
                                        let (offset, epoch, meta) = fields(o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(str_bytes(meta)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(g.group_id.0))
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if !broker.groups.owns(request.group_id.0.as_str()) {
        return OffsetFetchResponse::default().with_error_code(NOT_COORDINATOR);
    }
    let asked = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = fetch(broker, request.group_id.0.as_str(), asked)
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(
                    ps.iter()
                        .map(|(p, o)| {
                            let (offset, epoch, meta) = fields(o);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(str_bytes(meta)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
