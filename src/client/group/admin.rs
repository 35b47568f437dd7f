//! Consumer group administration: list, describe, committed offsets, offset
//! resets (simple commits) and deletion. Every request goes to the group's
//! coordinator, found with FindCoordinator.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::cluster::Cluster;
use crate::client::connection::Connection;
use crate::client::error::ClientError;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

/// One member as DescribeGroups reports it, its assignment decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partitions) from the consumer protocol assignment.
    pub assignment: Vec<(String, Vec<i32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

/// Decode a ConsumerProtocolAssignment (version prefix + body) into
/// (topic, partitions) pairs; garbage (another protocol type) decodes to
/// nothing.
pub fn decode_assignment(bytes: &Bytes) -> Vec<(String, Vec<i32>)> {
    let Some(a) = crate::client::assignor::protocol::decode_assignment(bytes) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, partition) in a.partitions {
        match out.last_mut() {
            Some((t, ps)) if *t == topic => ps.push(partition),
            _ => out.push((topic, vec![partition])),
        }
    }
    out
}

/// Group operations against a cluster.
pub struct GroupAdmin {
    cluster: Arc<Cluster>,
}

impl GroupAdmin {
    pub fn new(cluster: Arc<Cluster>) -> GroupAdmin {
        GroupAdmin { cluster }
    }

    /// The connection to `group`'s coordinator.
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>, ClientError> {
        let addr = self.coordinator_addr(group).await?;
        self.cluster.connection(&addr).await
    }

    /// `host:port` of `group`'s coordinator (FindCoordinator).
    pub async fn coordinator_addr(&self, group: &str) -> Result<String, ClientError> {
        let any = self.cluster.any_connection().await?;
        // v4 moved the key into a batch; earlier versions name one key.
        let req = if any.version_for(ApiKey::FindCoordinator)? >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s(group)])
        } else {
            FindCoordinatorRequest::default().with_key(s(group))
        };
        let r = any.send(&req).await?;
        let (code, host, port) = match r.coordinators.first() {
            Some(c) => (c.error_code, c.host.to_string(), c.port),
            None => (r.error_code, r.host.to_string(), r.port),
        };
        ClientError::check(code)?;
        Ok(format!("{host}:{port}"))
    }

    /// Every group of every broker, sorted by id.
    pub async fn list(&self) -> Result<Vec<GroupListing>, ClientError> {
        let snapshot = self.cluster.refresh_metadata(Some(&[])).await?;
        let mut out = Vec::new();
        for id in snapshot.brokers.keys() {
            let conn = self.cluster.broker_connection(*id).await?;
            let r = conn.send(&ListGroupsRequest::default()).await?;
            ClientError::check(r.error_code)?;
            out.extend(r.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    pub async fn describe(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let conn = self.coordinator(group).await?;
        let r = conn
            .send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]))
            .await?;
        let g = r
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeGroups response".into()))?;
        ClientError::check(g.error_code)?;
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: decode_assignment(&m.member_assignment),
                })
                .collect(),
        })
    }

    /// Committed offsets: every partition the group committed, or those of
    /// `topic`. Map (topic, partition) -> offset.
    pub async fn committed(
        &self,
        group: &str,
        topic: Option<(&str, &[i32])>,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let conn = self.coordinator(group).await?;
        let topics = topic.map(|(t, ps)| {
            vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(t)))
                .with_partition_indexes(ps.to_vec())]
        });
        let r = conn
            .send(
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_topics(topics),
            )
            .await?;
        ClientError::check(r.error_code)?;
        let mut out = BTreeMap::new();
        for t in r.topics {
            for p in t.partitions {
                ClientError::check(p.error_code)?;
                if p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commit offsets outside group management (generation -1): the broker
    /// accepts this only while the group has no members.
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<(), ClientError> {
        let conn = self.coordinator(group).await?;
        let partitions = offsets
            .iter()
            .map(|(p, o)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1)
            })
            .collect();
        let r = conn
            .send(
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id_or_member_epoch(-1)
                    .with_member_id(s(""))
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(partitions)]),
            )
            .await?;
        for t in r.topics {
            for p in t.partitions {
                ClientError::check(p.error_code)?;
            }
        }
        Ok(())
    }

    /// Delete a group (only an empty one: NON_EMPTY_GROUP otherwise).
    pub async fn delete(&self, group: &str) -> Result<(), ClientError> {
        let conn = self.coordinator(group).await?;
        let r = conn
            .send(&DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]))
            .await?;
        for res in r.results {
            ClientError::check(res.error_code)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignment_roundtrip_and_garbage() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut b = bytes::BytesMut::new();
        b.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut b, 1).unwrap();
        assert_eq!(
            decode_assignment(&b.freeze()),
            vec![("t".to_string(), vec![0, 2])]
        );
        assert!(decode_assignment(&Bytes::from_static(b"\x00")).is_empty());
        assert!(decode_assignment(&Bytes::from_static(b"\x00\x00\xff\xff\xff")).is_empty());
    }
}
