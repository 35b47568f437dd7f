//! The classic group protocol's requests, free of consumer state: one
//! JoinGroup/SyncGroup round (with the leader's assignment), the heartbeat
//! loop, OffsetCommit and OffsetFetch. `GroupConsumer` decides when to
//! call them; these only speak to the coordinator.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use bytes::Bytes;

use crate::client::assignor::{protocol, Assignor, RebalanceProtocol, Subscription};
use crate::client::cluster::Cluster;
use crate::client::connection::Connection;
use crate::client::error::ClientError;
use crate::client::offsets::TopicPartition;
use crate::env::time::{now, sleep, Duration, Instant};

/// Kafka error codes of the group protocol.
pub mod codes {
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

/// JoinGroup/SyncGroup rounds within one join before giving up.
const JOIN_ROUNDS_MAX: u32 = 20;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Whether an error means this member is no longer in the group (its
/// partitions are lost, it must join again as a new member or generation).
pub fn is_fenced(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(codes::UNKNOWN_MEMBER_ID | codes::ILLEGAL_GENERATION)
    )
}

/// Whether an error means the coordinator moved or is not ready.
pub fn is_coordinator_error(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            codes::COORDINATOR_LOAD_IN_PROGRESS
                | codes::COORDINATOR_NOT_AVAILABLE
                | codes::NOT_COORDINATOR
        )
    ) || matches!(
        e,
        ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout { .. }
    )
}

/// Everything a join needs; shared by the consumer and its join tasks.
pub struct Member {
    pub cluster: Arc<Cluster>,
    pub group: String,
    pub instance_id: Option<String>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub assignors: Vec<Arc<dyn Assignor>>,
    pub rebalance: RebalanceProtocol,
    pub topics: Vec<String>,
    pub retry_backoff: Duration,
}

/// The outcome of a completed join.
#[derive(Debug, Clone)]
pub struct Joined {
    pub member_id: String,
    pub generation: i32,
    pub protocol: String,
    pub assignment: Vec<TopicPartition>,
}

impl Member {
    /// Join (or rejoin) the group and sync: returns this member's share.
    /// `owned` and `generation` go into the subscription (KIP-429).
    /// Fenced errors (unknown member) are returned so the caller can treat
    /// its partitions as lost.
    pub async fn join(
        &self,
        conn: Arc<Connection>,
        mut member_id: String,
        owned: Vec<TopicPartition>,
        generation: i32,
    ) -> Result<Joined, ClientError> {
        // Each assignor gets its own metadata: under the eager protocol a
        // member owns nothing when it joins, and the sticky assignor
        // carries the previous assignment in its user data instead.
        let cooperative = self.rebalance == RebalanceProtocol::Cooperative;
        let metadata: Vec<Bytes> = self
            .assignors
            .iter()
            .map(|a| {
                // Eager subscriptions carry no generation either, so a
                // static member restarting sends the very same metadata and
                // gets its assignment back without a rebalance (KIP-345).
                protocol::encode_subscription(&Subscription {
                    owned_partitions: if cooperative {
                        owned.clone()
                    } else {
                        Vec::new()
                    },
                    generation: if cooperative { generation } else { -1 },
                    user_data: a.subscription_user_data(&owned, generation),
                    ..Subscription::new(&self.topics)
                })
            })
            .collect();
        for _ in 0..JOIN_ROUNDS_MAX {
            let join = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&member_id))
                .with_group_instance_id(self.instance_id.as_deref().map(s))
                .with_session_timeout_ms(self.session_timeout_ms)
                .with_rebalance_timeout_ms(self.rebalance_timeout_ms)
                .with_protocol_type(s("consumer"))
                .with_protocols(
                    self.assignors
                        .iter()
                        .zip(&metadata)
                        .map(|(a, m)| {
                            JoinGroupRequestProtocol::default()
                                .with_name(s(a.name()))
                                .with_metadata(m.clone())
                        })
                        .collect(),
                );
            let r = conn.send(&join).await?;
            match r.error_code {
                0 => {}
                codes::MEMBER_ID_REQUIRED => {
                    member_id = r.member_id.to_string();
                    continue;
                }
                codes::REBALANCE_IN_PROGRESS => continue,
                codes::COORDINATOR_LOAD_IN_PROGRESS => {
                    sleep(self.retry_backoff).await;
                    continue;
                }
                code => return Err(ClientError::kafka(code)),
            }
            member_id = r.member_id.to_string();
            let generation = r.generation_id;
            let protocol_name = r
                .protocol_name
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let assignments = if r.leader == r.member_id && !r.skip_assignment {
                let members: BTreeMap<String, Subscription> = r
                    .members
                    .iter()
                    .map(|m| {
                        let sub = protocol::decode_subscription(&m.metadata).unwrap_or_default();
                        (m.member_id.to_string(), sub)
                    })
                    .collect();
                self.lead(&protocol_name, &members)
                    .await?
                    .into_iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(&m))
                            .with_assignment(protocol::encode_assignment(&a))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut sync = SyncGroupRequest::default()
                .with_group_id(GroupId(s(&self.group)))
                .with_member_id(s(&member_id))
                .with_group_instance_id(self.instance_id.as_deref().map(s))
                .with_generation_id(generation)
                .with_assignments(assignments);
            // v5 names the protocol (the coordinator checks it).
            if conn.version_for(ApiKey::SyncGroup)? >= 5 {
                sync = sync
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s(&protocol_name)));
            }
            let sr = conn.send(&sync).await?;
            match sr.error_code {
                0 => {}
                codes::REBALANCE_IN_PROGRESS => continue,
                code => return Err(ClientError::kafka(code)),
            }
            let assignment = protocol::decode_assignment(&sr.assignment)
                .ok_or_else(|| {
                    ClientError::Protocol("undecodable consumer protocol assignment".into())
                })?
                .partitions;
            return Ok(Joined {
                member_id,
                generation,
                protocol: protocol_name,
                assignment,
            });
        }
        Err(ClientError::Protocol(format!(
            "group {} did not settle after {JOIN_ROUNDS_MAX} join rounds",
            self.group
        )))
    }

    /// The leader's job: run the selected assignor over every member.
    async fn lead(
        &self,
        protocol_name: &str,
        members: &BTreeMap<String, Subscription>,
    ) -> Result<BTreeMap<String, crate::client::assignor::Assignment>, ClientError> {
        let assignor = self
            .assignors
            .iter()
            .find(|a| a.name() == protocol_name)
            .ok_or_else(|| {
                ClientError::Protocol(format!(
                    "coordinator selected assignor '{protocol_name}' this member did not offer"
                ))
            })?;
        let wanted: BTreeSet<&String> = members.values().flat_map(|s| s.topics.iter()).collect();
        let names: Vec<String> = wanted.iter().map(|t| t.to_string()).collect();
        let snapshot = self.cluster.refresh_metadata(Some(&names)).await?;
        let counts: BTreeMap<String, i32> = wanted
            .into_iter()
            .filter_map(|t| {
                snapshot
                    .topics
                    .get(t.as_str())
                    .filter(|info| info.error_code == 0)
                    .map(|info| (t.clone(), info.partitions.len() as i32))
            })
            .collect();
        let out = assignor.assign(&counts, members);
        tracing::debug!(group = %self.group, assignor = protocol_name, ?out, "assigned");
        Ok(out)
    }
}

/// Heartbeat outcome the background task reports to the consumer.
pub const SIGNAL_NONE: u8 = 0;
/// The group is rebalancing (or the coordinator is unreachable): rejoin.
pub const SIGNAL_REJOIN: u8 = 1;
/// This member is unknown to the coordinator: its partitions are lost and
/// it joins again as a new member.
pub const SIGNAL_FENCED: u8 = 2;
/// This member's generation is stale: its partitions are lost; it rejoins
/// under its member id.
pub const SIGNAL_STALE: u8 = 3;

/// Everything the heartbeat task needs.
pub struct Heartbeat {
    pub conn: Arc<Connection>,
    pub req: HeartbeatRequest,
    pub every: Duration,
    /// When the application's last poll returned (`None`: polling now).
    pub last_poll: Arc<Mutex<Option<Instant>>>,
    /// max.poll.interval.ms: a member not polled for this long leaves.
    pub poll_interval_max: Duration,
    /// Sent when the poll interval is exceeded (None: a static member,
    /// which stays until its session expires).
    pub leave: Option<LeaveGroupRequest>,
    pub signal: Arc<AtomicU8>,
}

/// Heartbeat every `every` until the coordinator says otherwise, or until
/// the application stops polling for longer than max.poll.interval.ms (a
/// stuck consumer must not hold its partitions: it leaves, and its next
/// poll finds them lost). The reason to stop lands in `signal`.
pub async fn heartbeat_loop(hb: Heartbeat) {
    loop {
        sleep(hb.every).await;
        let last_poll = *hb.last_poll.lock().expect("last poll lock");
        let idle = last_poll.map_or(Duration::ZERO, |at| now().saturating_duration_since(at));
        if idle > hb.poll_interval_max {
            tracing::warn!(
                idle_ms = idle.as_millis() as u64,
                "poll not called within max.poll.interval.ms; leaving the group"
            );
            if let Some(leave) = &hb.leave {
                let _ = hb.conn.send(leave).await;
            }
            hb.signal.store(SIGNAL_FENCED, Ordering::SeqCst);
            return;
        }
        let code = match hb.conn.send(&hb.req).await {
            Ok(r) => r.error_code,
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                hb.signal.store(SIGNAL_REJOIN, Ordering::SeqCst);
                return;
            }
        };
        match code {
            0 => {}
            codes::UNKNOWN_MEMBER_ID | codes::FENCED_INSTANCE_ID => {
                hb.signal.store(SIGNAL_FENCED, Ordering::SeqCst);
                return;
            }
            codes::ILLEGAL_GENERATION => {
                hb.signal.store(SIGNAL_STALE, Ordering::SeqCst);
                return;
            }
            _ => {
                hb.signal.store(SIGNAL_REJOIN, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// A LeaveGroup for one member, in the form the connection's version takes.
pub fn leave_request(
    conn: &Connection,
    group: &str,
    member_id: &str,
    instance_id: Option<&str>,
) -> LeaveGroupRequest {
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(group)));
    // v3 moved the member into a batch.
    if conn.version_for(ApiKey::LeaveGroup).is_ok_and(|v| v >= 3) {
        leave.with_members(vec![MemberIdentity::default()
            .with_member_id(s(member_id))
            .with_group_instance_id(instance_id.map(s))])
    } else {
        leave.with_member_id(s(member_id))
    }
}

/// An OffsetCommit of `offsets` (next offset to read per partition).
pub fn commit_request(
    group: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        by_topic.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance_id.map(s))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// The first partition error of a commit response.
pub fn commit_result(r: &OffsetCommitResponse) -> Result<(), ClientError> {
    for t in &r.topics {
        for p in &t.partitions {
            ClientError::check(p.error_code)?;
        }
    }
    Ok(())
}

/// Committed offsets of `partitions` (absent: never committed).
pub async fn fetch_committed(
    conn: &Connection,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let r = conn
        .send(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(
                    by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(s(t)))
                                .with_partition_indexes(ps)
                        })
                        .collect(),
                )),
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
