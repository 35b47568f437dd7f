//! Consumer group administration: list, describe, committed offsets, offset
//! resets (simple commits) and deletion. Every request goes to the group's
//! coordinator, found with FindCoordinator.
//!
//! `GroupConsumer` (below) is a group-managed consumer for `weir consume
//! --group`: classic protocol, eager range assignment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::cluster::Cluster;
use super::connection::Connection;
use super::error::ClientError;

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

/// Decode a ConsumerProtocolAssignment (version prefix + body); garbage
/// (another protocol type) decodes to nothing.
pub fn decode_assignment(bytes: &Bytes) -> Vec<(String, Vec<i32>)> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return Vec::new();
    }
    let version = b.get_i16().clamp(0, 3);
    ConsumerProtocolAssignment::decode(&mut b, version)
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions))
                .collect()
        })
        .unwrap_or_default()
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
        self.cluster.connection(&format!("{host}:{port}")).await
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

// ---- Group-managed consumer -------------------------------------------------

/// A consumer in a group (classic protocol, eager "range" assignment): joins,
/// reads from the committed offsets of the partitions it is assigned, commits
/// its positions, heartbeats from a background task and rejoins when the
/// group rebalances. Good enough for `weir consume --group`; not yet a full
/// replacement for a Java consumer (no cooperative protocol, no static
/// membership).
pub struct GroupConsumer {
    consumer: super::Consumer,
    admin: GroupAdmin,
    coordinator: Arc<Connection>,
    group: String,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    earliest_when_uncommitted: bool,
    rejoin: Arc<std::sync::atomic::AtomicBool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

/// Session timeout a GroupConsumer asks for.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// Rebalance timeout a GroupConsumer asks for.
const REBALANCE_TIMEOUT_MS: i32 = 60_000;
/// Heartbeats per session timeout.
const HEARTBEATS_PER_SESSION: i32 = 5;
/// JoinGroup/SyncGroup rounds before giving up.
const JOIN_ATTEMPTS_MAX: u32 = 20;

/// Kafka's range assignor: each topic's partitions split into contiguous
/// ranges over the members subscribed to it, sorted by member id.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, Vec<i32>)>> {
    let mut out: BTreeMap<String, Vec<(String, Vec<i32>)>> = subscriptions
        .keys()
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    for (topic, &n) in partitions {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || n <= 0 {
            continue;
        }
        let k = members.len() as i32;
        let (per, extra) = (n / k, n % k);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let count = per + i32::from((i as i32) < extra);
            if count > 0 {
                let ps: Vec<i32> = (next..next + count).collect();
                out.get_mut(*m)
                    .expect("every subscriber has an entry")
                    .push((topic.clone(), ps));
            }
            next += count;
        }
    }
    out
}

fn encode_subscription(topics: &[String]) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Encodable;
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut b = bytes::BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    // Version 0 of a struct built here always encodes.
    let _ = sub.encode(&mut b, 0);
    b.freeze()
}

fn decode_subscription(bytes: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return Vec::new();
    }
    let version = b.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut b, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as Tp;
    use kafka_protocol::protocol::Encodable;
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                Tp::default()
                    .with_topic(TopicName(s(t)))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    let mut b = bytes::BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    let _ = a.encode(&mut b, 0);
    b.freeze()
}

impl GroupConsumer {
    /// Join `group` subscribed to `topics`. Partitions without a committed
    /// offset start at the log start (`earliest`) or end.
    pub async fn join(
        cluster: Arc<Cluster>,
        config: super::ConsumerConfig,
        group: &str,
        topics: &[String],
        earliest_when_uncommitted: bool,
    ) -> Result<GroupConsumer, ClientError> {
        let admin = GroupAdmin::new(cluster.clone());
        let coordinator = admin.coordinator(group).await?;
        let mut gc = GroupConsumer {
            consumer: super::Consumer::new(cluster, config),
            admin,
            coordinator,
            group: group.to_string(),
            topics: topics.to_vec(),
            member_id: String::new(),
            generation: -1,
            earliest_when_uncommitted,
            rejoin: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            heartbeat: None,
        };
        gc.rejoin_group().await?;
        Ok(gc)
    }

    pub fn assignment(&self) -> Vec<super::offsets::TopicPartition> {
        self.consumer.assignment()
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    async fn rejoin_group(&mut self) -> Result<(), ClientError> {
        use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
        use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
        use kafka_protocol::messages::{JoinGroupRequest, SyncGroupRequest};
        use std::sync::atomic::Ordering;
        self.stop_heartbeat();
        let subscription = encode_subscription(&self.topics);
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let join = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&self.member_id))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(subscription.clone())]);
            let r = self.coordinator.send(&join).await?;
            match r.error_code {
                0 => {}
                // MEMBER_ID_REQUIRED: retry with the id the broker handed out.
                79 => {
                    self.member_id = r.member_id.to_string();
                    continue;
                }
                // UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION: start over as new.
                25 | 22 => {
                    self.member_id.clear();
                    continue;
                }
                27 => continue,
                code => return Err(ClientError::kafka(code)),
            }
            self.member_id = r.member_id.to_string();
            self.generation = r.generation_id;
            let assignments = if r.leader == r.member_id {
                let subs: BTreeMap<String, Vec<String>> = r
                    .members
                    .iter()
                    .map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata)))
                    .collect();
                let wanted: BTreeSet<String> = subs.values().flatten().cloned().collect();
                let mut counts = BTreeMap::new();
                for t in wanted {
                    if let Ok(info) = self.consumer.cluster().topic(&t).await {
                        counts.insert(t, info.partitions.len() as i32);
                    }
                }
                range_assign(&subs, &counts)
                    .into_iter()
                    .map(|(m, parts)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(&m))
                            .with_assignment(encode_assignment(&parts))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut sync = SyncGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&self.member_id))
                .with_generation_id(self.generation)
                .with_assignments(assignments);
            // v5 names the protocol (the broker checks it).
            if self.coordinator.version_for(ApiKey::SyncGroup)? >= 5 {
                sync = sync
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            let sr = self.coordinator.send(&sync).await?;
            match sr.error_code {
                0 => {}
                27 => continue,
                25 | 22 => {
                    self.member_id.clear();
                    continue;
                }
                code => return Err(ClientError::kafka(code)),
            }
            let parts: Vec<super::offsets::TopicPartition> = decode_assignment(&sr.assignment)
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect();
            self.consumer.assign(&parts);
            let committed = self.admin.committed(&self.group, None).await?;
            let mut uncommitted = Vec::new();
            for tp in &parts {
                match committed.get(tp) {
                    Some(&o) => self.consumer.seek(tp, o)?,
                    None => uncommitted.push(tp.clone()),
                }
            }
            if !uncommitted.is_empty() {
                if self.earliest_when_uncommitted {
                    self.consumer.seek_to_beginning(&uncommitted).await?;
                } else {
                    self.consumer.seek_to_end(&uncommitted).await?;
                }
            }
            self.rejoin.store(false, Ordering::SeqCst);
            self.start_heartbeat();
            return Ok(());
        }
        Err(ClientError::Protocol(format!(
            "group {} did not settle after {JOIN_ATTEMPTS_MAX} join attempts",
            self.group
        )))
    }

    fn start_heartbeat(&mut self) {
        use kafka_protocol::messages::HeartbeatRequest;
        use std::sync::atomic::Ordering;
        let conn = self.coordinator.clone();
        let rejoin = self.rejoin.clone();
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_member_id(s(&self.member_id))
            .with_generation_id(self.generation);
        let every = crate::env::time::Duration::from_millis(
            (SESSION_TIMEOUT_MS / HEARTBEATS_PER_SESSION) as u64,
        );
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                crate::env::time::sleep(every).await;
                match conn.send(&req).await {
                    Ok(r) if r.error_code == 0 => {}
                    // A rebalance, a fenced generation or a lost connection:
                    // the next poll rejoins.
                    _ => {
                        rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }));
    }

    /// Records from the assigned partitions; rejoins first when the group
    /// is rebalancing (committing what was consumed so far).
    pub async fn poll(
        &mut self,
        wait: crate::env::time::Duration,
    ) -> Result<Vec<super::ConsumerRecord>, ClientError> {
        use std::sync::atomic::Ordering;
        if self.rejoin.load(Ordering::SeqCst) {
            // Best effort: a fenced generation cannot commit any more.
            let _ = self.commit().await;
            self.rejoin_group().await?;
        }
        self.consumer.poll(wait).await
    }

    /// Commit the current positions of every assigned partition.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let positions: BTreeMap<super::offsets::TopicPartition, i64> = self
            .consumer
            .assignment()
            .into_iter()
            .filter_map(|tp| self.consumer.position(&tp).map(|p| (tp, p)))
            .collect();
        self.commit_offsets(&positions).await
    }

    /// Commit explicit offsets (the next offset to read, per partition).
    pub async fn commit_offsets(
        &mut self,
        offsets: &BTreeMap<super::offsets::TopicPartition, i64>,
    ) -> Result<(), ClientError> {
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic.entry(topic.clone()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        if by_topic.is_empty() {
            return Ok(());
        }
        let r = self
            .coordinator
            .send(
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(&self.group)))
                    .with_generation_id_or_member_epoch(self.generation)
                    .with_member_id(s(&self.member_id))
                    .with_topics(
                        by_topic
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetCommitRequestTopic::default()
                                    .with_name(TopicName(s(&t)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    ),
            )
            .await?;
        for t in r.topics {
            for p in t.partitions {
                ClientError::check(p.error_code)?;
            }
        }
        Ok(())
    }

    /// Commit the positions, then leave the group so its partitions move at once.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.stop_heartbeat();
        let committed = self.commit().await;
        self.leave().await;
        committed
    }

    /// Leave the group without committing.
    pub async fn leave(mut self) {
        use kafka_protocol::messages::leave_group_request::MemberIdentity;
        use kafka_protocol::messages::LeaveGroupRequest;
        self.stop_heartbeat();
        let mut leave = LeaveGroupRequest::default().with_group_id(GroupId(s(&self.group)));
        if self
            .coordinator
            .version_for(ApiKey::LeaveGroup)
            .is_ok_and(|v| v >= 3)
        {
            leave = leave.with_members(vec![
                MemberIdentity::default().with_member_id(s(&self.member_id))
            ]);
        } else {
            leave = leave.with_member_id(s(&self.member_id));
        }
        let _ = self.coordinator.send(&leave).await;
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;

    #[test]
    fn range_assignor_matches_kafka() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("b".to_string(), vec!["t".to_string()]),
        ]
        .into();
        let counts: BTreeMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)].into();
        let got = range_assign(&subs, &counts);
        assert_eq!(
            got["a"],
            vec![
                ("t".to_string(), vec![0, 1, 2]),
                ("u".to_string(), vec![0, 1])
            ]
        );
        assert_eq!(got["b"], vec![("t".to_string(), vec![3, 4])]);
        let sub = encode_subscription(&["t".to_string()]);
        assert_eq!(decode_subscription(&sub), vec!["t".to_string()]);
        let asg = encode_assignment(&got["b"]);
        assert_eq!(decode_assignment(&asg), got["b"]);
    }
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
