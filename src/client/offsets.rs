//! ListOffsets: earliest, latest and by-timestamp offsets, sent to each
//! partition's leader. Shared by the consumer (seek) and admin.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::error::ClientError;
use crate::env::time::sleep;

/// ListOffsets timestamp meaning "the log start offset".
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset" (high watermark).
pub const LATEST: i64 = -1;

pub type TopicPartition = (String, i32);

/// The offset (and its record's timestamp, -1 when not applicable) for each
/// `(topic, partition, timestamp)` query. A timestamp query past the last
/// record answers offset -1, as Kafka does.
pub async fn list_offsets(
    cluster: &Cluster,
    queries: &[(String, i32, i64)],
) -> Result<BTreeMap<TopicPartition, (i64, i64)>, ClientError> {
    let mut answers = BTreeMap::new();
    let mut pending: Vec<(String, i32, i64)> = queries.to_vec();
    let mut attempt = 0;
    while !pending.is_empty() {
        let mut by_leader: BTreeMap<i32, Vec<(String, i32, i64)>> = BTreeMap::new();
        let mut missing_leader = Vec::new();
        for q in pending.drain(..) {
            match cluster.metadata().leader(&q.0, q.1) {
                Some(l) => by_leader.entry(l).or_default().push(q),
                None => missing_leader.push(q),
            }
        }
        let mut retry = missing_leader;
        let mut last_err = None;
        for (leader, qs) in by_leader {
            match query_leader(cluster, leader, &qs).await {
                Ok(results) => {
                    for (q, r) in qs.into_iter().zip(results) {
                        match r {
                            Ok(v) => {
                                answers.insert((q.0.clone(), q.1), v);
                            }
                            Err(e) if e.is_retriable() => {
                                last_err = Some(e);
                                retry.push(q);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.is_retriable() => {
                    last_err = Some(e);
                    retry.extend(qs);
                }
                Err(e) => return Err(e),
            }
        }
        if retry.is_empty() {
            break;
        }
        attempt += 1;
        if attempt > 10 {
            return Err(last_err
                .unwrap_or_else(|| ClientError::kafka(super::error::codes::LEADER_NOT_AVAILABLE)));
        }
        let topics: Vec<String> = retry.iter().map(|q| q.0.clone()).collect();
        sleep(cluster.config().retry_backoff).await;
        cluster.refresh_metadata(Some(&topics)).await?;
        pending = retry;
    }
    Ok(answers)
}

async fn query_leader(
    cluster: &Cluster,
    leader: i32,
    qs: &[(String, i32, i64)],
) -> Result<Vec<Result<(i64, i64), ClientError>>, ClientError> {
    let conn = cluster.broker_connection(leader).await?;
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (t, p, ts) in qs {
        topics.entry(t).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(*p)
                .with_timestamp(*ts),
        );
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let response = conn.send(&request).await?;
    Ok(qs
        .iter()
        .map(|(t, p, _)| {
            let part = response
                .topics
                .iter()
                .filter(|rt| rt.name.0.as_str() == t)
                .flat_map(|rt| rt.partitions.iter())
                .find(|rp| rp.partition_index == *p)
                .ok_or_else(|| ClientError::Protocol(format!("ListOffsets lacks {t}-{p}")))?;
            ClientError::check(part.error_code)?;
            Ok((part.offset, part.timestamp))
        })
        .collect())
}
