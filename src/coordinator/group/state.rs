//! The classic group protocol as an I/O-free state machine.
//!
//! Every call takes `now_ms`; nothing here reads a clock, touches a socket
//! or a disk. A JoinGroup or SyncGroup may have to wait for other members,
//! so the caller passes a `Waiter` token and gets its answer later in
//! `Effects::replies` (of this call or of a later one, `tick` included).
//! State changes that must be durable come back as `Effects::records`, in the
//! order the shell must append them to `__consumer_offsets`.
//!
//! States follow Kafka's GroupMetadata:
//! Empty -> PreparingRebalance (a member joins) -> CompletingRebalance (all
//! joined, or the rebalance timeout passed; leader chosen, generation + 1)
//! -> Stable (the leader's SyncGroup delivered the assignments). Any member
//! change sends the group back to PreparingRebalance. Dead is a group that
//! was deleted; it is dropped from the map at once.
//!
//! Invariants (checked by `check_invariants` in tests and after each step):
//! the leader is a member; Stable and CompletingRebalance have members;
//! every static instance id maps to a member that carries it.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::codes as ec;
use super::records::{GroupRecord, GroupValue, MemberValue, OffsetValue};

/// A token for a request that waits for its answer.
pub type Waiter = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Coordinator settings, Kafka's names in the field docs.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms
    pub session_timeout_ms_min: i32,
    /// group.max.session.timeout.ms
    pub session_timeout_ms_max: i32,
    /// group.initial.rebalance.delay.ms. Weir's default is 1 s, not Kafka's
    /// 3 s: every member joining during the delay extends it (bounded by the
    /// rebalance timeout), so members starting together still land in one
    /// generation, and a new group gets its first records a good 2 s sooner.
    pub initial_rebalance_delay_ms: i64,
    /// offsets.retention.minutes (in ms)
    pub offsets_retention_ms: i64,
    /// offset.metadata.max.bytes
    pub offset_metadata_bytes_max: usize,
    /// group.max.size
    pub group_members_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 1_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offset_metadata_bytes_max: 4096,
            group_members_max: i32::MAX as usize,
        }
    }
}

/// A JoinGroup, decoded from any version.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
    /// The id a new member gets (the shell draws it from the env rng).
    pub fresh_member_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// v9: a static leader rejoining without change must not reassign.
    pub skip_assignment: bool,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: i16) -> SyncResult {
        SyncResult {
            error,
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join(JoinResult),
    Sync(SyncResult),
}

/// What a step produced: answers for waiting requests and records to persist.
#[derive(Debug, Default)]
pub struct Effects {
    pub replies: Vec<(Waiter, Reply)>,
    pub records: Vec<GroupRecord>,
}

impl Effects {
    fn join(&mut self, w: Waiter, r: JoinResult) {
        self.replies.push((w, Reply::Join(r)));
    }
    fn sync(&mut self, w: Waiter, r: SyncResult) {
        self.replies.push((w, Reply::Sync(r)));
    }
}

/// One partition's committed offset.
pub type CommittedOffset = OffsetValue;

#[derive(Clone, Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<Waiter>,
    sync_waiter: Option<Waiter>,
    last_heartbeat_ms: i64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn alive(&self, now_ms: i64) -> bool {
        self.join_waiter.is_some()
            || self.sync_waiter.is_some()
            || now_ms < self.last_heartbeat_ms + self.session_timeout_ms as i64
    }
}

#[derive(Clone, Debug)]
struct Group {
    id: String,
    state: GroupState,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    statics: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED -> when they expire.
    pending: BTreeMap<String, i64>,
    /// When PreparingRebalance or CompletingRebalance gives up waiting.
    rebalance_deadline_ms: i64,
    /// The initial delay of a rebalance from Empty: join completes no earlier.
    join_not_before_ms: i64,
    state_since_ms: i64,
    /// group.initial.rebalance.delay.ms, copied at creation.
    initial_delay_ms: i64,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    fn new(id: &str, now_ms: i64, initial_delay_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            statics: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            join_not_before_ms: 0,
            state_since_ms: now_ms,
            initial_delay_ms,
            offsets: BTreeMap::new(),
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// The protocols every member supports, in the order Kafka votes: each
    /// member votes for its most preferred candidate; most votes wins; a tie
    /// goes to the candidate the leader (else the first member) prefers.
    fn select_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        let preference = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .unwrap_or(first);
        preference
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|n| votes.get(n) == Some(&best))
            .cloned()
    }

    /// Whether a member with these protocols could join: same type, and at
    /// least one protocol every current member also supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(n, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(m.session_timeout_ms) as i64)
            .max()
            .unwrap_or(0)
    }

    fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self
                        .protocol
                        .as_deref()
                        .map(|p| m.metadata(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn metadata_record(&self) -> GroupRecord {
        GroupRecord::Group {
            group: self.id.clone(),
            value: Some(self.to_value()),
        }
    }

    fn check_invariants(&self) {
        if let Some(l) = &self.leader {
            assert!(
                self.members.contains_key(l),
                "group invariant: the leader is a member"
            );
        }
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            assert!(
                !self.members.is_empty(),
                "group invariant: a Stable or CompletingRebalance group has members"
            );
        }
        for (instance, member) in &self.statics {
            let m = self.members.get(member);
            assert!(
                m.is_some(),
                "group invariant: a static instance maps to a member"
            );
            assert!(
                m.and_then(|m| m.instance_id.as_ref()) == Some(instance),
                "group invariant: a static member carries its instance id"
            );
        }
    }
}

/// What DescribeGroups reports about one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// What DescribeGroups reports about one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// A member named in a LeaveGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeavingMember {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// Every group this coordinator owns.
#[derive(Debug, Default)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    // ---- JoinGroup ------------------------------------------------------

    pub fn join(&mut self, now_ms: i64, waiter: Waiter, req: JoinRequest) -> Effects {
        let mut fx = Effects::default();
        if let Err(code) = self.validate_join(&req) {
            fx.join(waiter, JoinResult::error(code, &req.member_id));
            return fx;
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                fx.join(
                    waiter,
                    JoinResult::error(ec::UNKNOWN_MEMBER_ID, &req.member_id),
                );
                return fx;
            }
            self.groups.insert(
                req.group_id.clone(),
                Group::new(
                    &req.group_id,
                    now_ms,
                    self.config.initial_rebalance_delay_ms,
                ),
            );
        }
        let config = self.config.clone();
        let group = self
            .groups
            .get_mut(&req.group_id)
            .expect("coordinator invariant: the group was just found or created");
        if req.member_id.is_empty() {
            join_unknown_member(group, &config, now_ms, waiter, req, &mut fx);
        } else {
            join_known_member(group, now_ms, waiter, req, &mut fx);
        }
        maybe_complete_join(group, now_ms, &mut fx);
        group.check_invariants();
        fx
    }

    fn validate_join(&self, req: &JoinRequest) -> Result<(), i16> {
        if req.group_id.is_empty() {
            return Err(ec::INVALID_GROUP_ID);
        }
        if req.session_timeout_ms < self.config.session_timeout_ms_min
            || req.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return Err(ec::INVALID_SESSION_TIMEOUT);
        }
        if let Some(group) = self.groups.get(&req.group_id) {
            if !group.supports(&req.protocol_type, &req.protocols) {
                return Err(ec::INCONSISTENT_GROUP_PROTOCOL);
            }
        } else if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return Err(ec::INCONSISTENT_GROUP_PROTOCOL);
        }
        Ok(())
    }

    // ---- SyncGroup ------------------------------------------------------

    pub fn sync(&mut self, now_ms: i64, waiter: Waiter, req: SyncRequest) -> Effects {
        let mut fx = Effects::default();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            fx.sync(waiter, SyncResult::error(ec::UNKNOWN_MEMBER_ID));
            return fx;
        };
        if let Err(code) = check_member(group, &req.member_id, req.instance_id.as_deref()) {
            fx.sync(waiter, SyncResult::error(code));
            return fx;
        }
        if req.generation != group.generation {
            fx.sync(waiter, SyncResult::error(ec::ILLEGAL_GENERATION));
            return fx;
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol.as_ref());
        if type_mismatch || name_mismatch {
            fx.sync(waiter, SyncResult::error(ec::INCONSISTENT_GROUP_PROTOCOL));
            return fx;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                fx.sync(waiter, SyncResult::error(ec::UNKNOWN_MEMBER_ID));
            }
            GroupState::PreparingRebalance => {
                fx.sync(waiter, SyncResult::error(ec::REBALANCE_IN_PROGRESS));
            }
            GroupState::CompletingRebalance => {
                let member = group
                    .members
                    .get_mut(&req.member_id)
                    .expect("checked above");
                member.last_heartbeat_ms = now_ms;
                if let Some(old) = member.sync_waiter.replace(waiter) {
                    fx.sync(old, SyncResult::error(ec::REBALANCE_IN_PROGRESS));
                }
                if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assignments: BTreeMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    for m in group.members.values_mut() {
                        m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                    }
                    group.set_state(GroupState::Stable, now_ms);
                    fx.records.push(group.metadata_record());
                    answer_syncs(group, &mut fx);
                }
            }
            GroupState::Stable => {
                let member = group
                    .members
                    .get_mut(&req.member_id)
                    .expect("checked above");
                member.last_heartbeat_ms = now_ms;
                fx.sync(
                    waiter,
                    SyncResult {
                        error: ec::NONE,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol.clone(),
                        assignment: member.assignment.clone(),
                    },
                );
            }
        }
        group.check_invariants();
        fx
    }

    // ---- Heartbeat ------------------------------------------------------

    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return ec::UNKNOWN_MEMBER_ID;
        };
        if let Err(code) = check_member(group, member_id, instance_id) {
            return code;
        }
        if group.state == GroupState::Empty {
            return ec::UNKNOWN_MEMBER_ID;
        }
        if generation != group.generation {
            return ec::ILLEGAL_GENERATION;
        }
        let member = group.members.get_mut(member_id).expect("checked above");
        member.last_heartbeat_ms = now_ms;
        match group.state {
            GroupState::PreparingRebalance => ec::REBALANCE_IN_PROGRESS,
            _ => ec::NONE,
        }
    }

    // ---- LeaveGroup -----------------------------------------------------

    /// Remove members; one error code per member, in request order.
    pub fn leave(
        &mut self,
        now_ms: i64,
        group_id: &str,
        leaving: &[LeavingMember],
    ) -> (Vec<i16>, Effects) {
        let mut fx = Effects::default();
        let Some(group) = self.groups.get_mut(group_id) else {
            return (vec![ec::UNKNOWN_MEMBER_ID; leaving.len()], fx);
        };
        let mut codes = Vec::with_capacity(leaving.len());
        for l in leaving {
            let member_id = match (&l.instance_id, l.member_id.is_empty()) {
                // A static member may leave by instance id alone (KIP-345).
                (Some(i), true) => match group.statics.get(i) {
                    Some(m) => m.clone(),
                    None => {
                        codes.push(ec::UNKNOWN_MEMBER_ID);
                        continue;
                    }
                },
                _ => l.member_id.clone(),
            };
            if group.pending.remove(&member_id).is_some() {
                codes.push(ec::NONE);
                continue;
            }
            match check_member(group, &member_id, l.instance_id.as_deref()) {
                Ok(()) => {
                    remove_member(group, &member_id, now_ms, &mut fx);
                    codes.push(ec::NONE);
                }
                Err(code) => codes.push(code),
            }
        }
        maybe_complete_join(group, now_ms, &mut fx);
        group.check_invariants();
        (codes, fx)
    }

    // ---- Timers ---------------------------------------------------------

    /// Expire sessions and pending member ids, finish rebalances whose
    /// timeout passed, finish initial delays, expire offsets of empty groups.
    pub fn tick(&mut self, now_ms: i64) -> Effects {
        let mut fx = Effects::default();
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for group in self.groups.values_mut() {
            group.pending.retain(|_, deadline| *deadline > now_ms);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !m.alive(now_ms))
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group.id, member = %id, "member session expired");
                remove_member(group, &id, now_ms, &mut fx);
            }
            match group.state {
                GroupState::PreparingRebalance if now_ms >= group.rebalance_deadline_ms => {
                    // Members that did not rejoin in time are dropped (static
                    // ones keep their place, as in Kafka, and will be fenced by
                    // generation when they come back).
                    let late: Vec<String> = group
                        .members
                        .values()
                        .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in late {
                        remove_member_quietly(group, &id, &mut fx);
                    }
                    complete_join(group, now_ms, &mut fx);
                }
                GroupState::CompletingRebalance if now_ms >= group.rebalance_deadline_ms => {
                    // The leader never sent its assignment, or followers never
                    // asked: drop who did not sync and start over.
                    let late: Vec<String> = group
                        .members
                        .values()
                        .filter(|m| m.sync_waiter.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in late {
                        remove_member_quietly(group, &id, &mut fx);
                    }
                    prepare_rebalance(group, now_ms, &mut fx);
                }
                _ => maybe_complete_join(group, now_ms, &mut fx),
            }
            if group.state == GroupState::Empty {
                let since = group.state_since_ms;
                let before = group.offsets.len();
                let gid = group.id.clone();
                group.offsets.retain(|(topic, partition), o| {
                    let keep = o.commit_timestamp_ms.max(since) + retention > now_ms;
                    if !keep {
                        fx.records.push(GroupRecord::Offset {
                            group: gid.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                            value: None,
                        });
                    }
                    keep
                });
                if before > 0 && group.offsets.is_empty() {
                    dead.push(group.id.clone());
                }
            }
            group.check_invariants();
        }
        for id in dead {
            self.groups.remove(&id);
            fx.records.push(GroupRecord::Group {
                group: id,
                value: None,
            });
        }
        fx
    }

    // ---- Offsets --------------------------------------------------------

    /// Check a group's right to commit. `generation < 0` is a simple
    /// (assign-only) commit, allowed only while the group has no members.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if group_id.is_empty() {
            return ec::INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get(group_id) else {
            return if generation < 0 {
                ec::NONE
            } else {
                ec::ILLEGAL_GENERATION
            };
        };
        if generation < 0 && group.state == GroupState::Empty {
            return ec::NONE;
        }
        if let Err(code) = check_member(group, member_id, instance_id) {
            return code;
        }
        if group.state == GroupState::CompletingRebalance {
            return ec::REBALANCE_IN_PROGRESS;
        }
        if generation != group.generation {
            return ec::ILLEGAL_GENERATION;
        }
        ec::NONE
    }

    /// Whether a partition's offset metadata is acceptable.
    pub fn metadata_ok(&self, metadata: &str) -> bool {
        metadata.len() <= self.config.offset_metadata_bytes_max
    }

    /// Apply committed offsets (after they were persisted).
    pub fn apply_offsets(
        &mut self,
        now_ms: i64,
        group_id: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) {
        let delay = self.config.initial_rebalance_delay_ms;
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms, delay));
        for (t, p, o) in offsets {
            group.offsets.insert((t, p), o);
        }
    }

    /// The committed offset of one partition.
    pub fn committed(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&CommittedOffset> {
        self.groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_string(), partition))
    }

    /// Every committed offset of a group, sorted by topic and partition.
    pub fn all_committed(&self, group_id: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.groups
            .get(group_id)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), o)| (t.clone(), *p, o.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// OffsetDelete: tombstones for the partitions, or a group-level error.
    /// A partition of a topic the group is subscribed to gets
    /// GROUP_SUBSCRIBED_TO_TOPIC (per partition, as Kafka).
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: impl Fn(&[u8], &str) -> bool,
    ) -> Result<(Vec<i16>, Effects), i16> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(ec::GROUP_ID_NOT_FOUND);
        };
        let mut fx = Effects::default();
        let mut codes = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let is_subscribed = group.state != GroupState::Empty
                && group.protocol.as_deref().is_some_and(|p| {
                    group
                        .members
                        .values()
                        .any(|m| subscribed(&m.metadata(p), topic))
                });
            if is_subscribed {
                codes.push(ec::GROUP_SUBSCRIBED_TO_TOPIC);
                continue;
            }
            if group.offsets.remove(&(topic.clone(), *partition)).is_some() {
                fx.records.push(GroupRecord::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                });
            }
            codes.push(ec::NONE);
        }
        Ok((codes, fx))
    }

    // ---- Admin ----------------------------------------------------------

    /// (group id, protocol type, state) of every group, sorted by id.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.groups
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let show_protocol = g.state == GroupState::Stable;
        Some(GroupDescription {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if show_protocol {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if show_protocol {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if show_protocol {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// Check that a group may be deleted (it exists and has no members).
    pub fn validate_delete(&self, group_id: &str) -> i16 {
        match self.groups.get(group_id) {
            None => ec::GROUP_ID_NOT_FOUND,
            Some(g) if g.state != GroupState::Empty => ec::NON_EMPTY_GROUP,
            Some(_) => ec::NONE,
        }
    }

    /// The tombstones that delete a group (offsets, then metadata).
    pub fn delete_records(&self, group_id: &str) -> Vec<GroupRecord> {
        let mut records: Vec<GroupRecord> = self
            .all_committed(group_id)
            .into_iter()
            .map(|(topic, partition, _)| GroupRecord::Offset {
                group: group_id.to_string(),
                topic,
                partition,
                value: None,
            })
            .collect();
        records.push(GroupRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
        records
    }

    /// Drop a group (after its tombstones were persisted).
    pub fn remove_group(&mut self, group_id: &str) {
        self.groups.remove(group_id);
    }

    // ---- Loading --------------------------------------------------------

    /// Apply one record replayed from `__consumer_offsets` at startup.
    /// Restored members get a fresh session from `now_ms`: they keep their
    /// assignment if they heartbeat in time, as after a Kafka failover.
    pub fn replay(&mut self, now_ms: i64, record: GroupRecord) {
        let delay = self.config.initial_rebalance_delay_ms;
        match record {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => match value {
                Some(v) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms, delay))
                        .offsets
                        .insert((topic, partition), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            },
            GroupRecord::Group { group, value } => match value {
                None => {
                    self.groups.remove(&group);
                }
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms, delay));
                    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
                    g.generation = v.generation;
                    g.protocol = v.protocol.clone();
                    g.members.clear();
                    g.statics.clear();
                    g.pending.clear();
                    for m in v.members {
                        let protocols = match &v.protocol {
                            Some(p) => vec![(p.clone(), m.subscription.clone())],
                            None => Vec::new(),
                        };
                        if let Some(i) = &m.instance_id {
                            g.statics.insert(i.clone(), m.member_id.clone());
                        }
                        g.members.insert(
                            m.member_id.clone(),
                            Member {
                                id: m.member_id,
                                instance_id: m.instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                session_timeout_ms: m.session_timeout_ms,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                protocols,
                                assignment: m.assignment,
                                join_waiter: None,
                                sync_waiter: None,
                                last_heartbeat_ms: now_ms,
                            },
                        );
                    }
                    g.leader = v.leader.filter(|l| g.members.contains_key(l));
                    if g.leader.is_none() {
                        g.leader = g.members.keys().next().cloned();
                    }
                    let state = if g.members.is_empty() {
                        GroupState::Empty
                    } else {
                        GroupState::Stable
                    };
                    g.set_state(state, now_ms);
                }
            },
        }
    }

    /// Panics if any group breaks an invariant (tests and debugging).
    pub fn check_invariants(&self) {
        for g in self.groups.values() {
            g.check_invariants();
        }
    }

    /// The state of a group, if it exists.
    pub fn state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// The generation of a group, if it exists.
    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }
}

/// The member exists and its instance id (if any) is the one registered.
fn check_member(group: &Group, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
    if let Some(i) = instance_id {
        if let Some(owner) = group.statics.get(i) {
            if owner != member_id {
                return Err(ec::FENCED_INSTANCE_ID);
            }
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(ec::UNKNOWN_MEMBER_ID);
    }
    Ok(())
}

fn new_member(req: &JoinRequest, id: String, now_ms: i64, waiter: Waiter) -> Member {
    Member {
        id,
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocols: req.protocols.clone(),
        assignment: Bytes::new(),
        join_waiter: Some(waiter),
        sync_waiter: None,
        last_heartbeat_ms: now_ms,
    }
}

fn join_unknown_member(
    group: &mut Group,
    config: &GroupConfig,
    now_ms: i64,
    waiter: Waiter,
    req: JoinRequest,
    fx: &mut Effects,
) {
    let new_id = req.fresh_member_id.clone();
    if let Some(instance) = &req.instance_id {
        if let Some(old_id) = group.statics.get(instance).cloned() {
            rejoin_static_member(group, now_ms, waiter, req, old_id, fx);
            return;
        }
    } else if req.require_known_member_id {
        // KIP-394: hand out the id first, so a client that times out and
        // retries does not leave ghost members behind.
        let session = req.session_timeout_ms as i64;
        group.pending.insert(new_id.clone(), now_ms + session);
        fx.join(waiter, JoinResult::error(ec::MEMBER_ID_REQUIRED, &new_id));
        return;
    }
    if group.members.len() >= config.group_members_max {
        fx.join(waiter, JoinResult::error(ec::GROUP_MAX_SIZE_REACHED, ""));
        return;
    }
    add_member_and_rebalance(group, now_ms, waiter, &req, new_id, fx);
}

fn add_member_and_rebalance(
    group: &mut Group,
    now_ms: i64,
    waiter: Waiter,
    req: &JoinRequest,
    id: String,
    fx: &mut Effects,
) {
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    if let Some(i) = &req.instance_id {
        group.statics.insert(i.clone(), id.clone());
    }
    group
        .members
        .insert(id.clone(), new_member(req, id.clone(), now_ms, waiter));
    if group.leader.is_none() {
        group.leader = Some(id);
    }
    if group.state == GroupState::PreparingRebalance && group.join_not_before_ms > now_ms {
        // A member joining during the initial delay pushes it out, bounded
        // by the rebalance timeout (Kafka's InitialDelayedJoin).
        group.join_not_before_ms =
            (now_ms + group.initial_delay_ms).min(group.rebalance_deadline_ms);
    }
    maybe_prepare_rebalance(group, now_ms, fx);
}

fn join_known_member(
    group: &mut Group,
    now_ms: i64,
    waiter: Waiter,
    req: JoinRequest,
    fx: &mut Effects,
) {
    if group.pending.remove(&req.member_id).is_some() {
        add_member_and_rebalance(group, now_ms, waiter, &req, req.member_id.clone(), fx);
        return;
    }
    if let Err(code) = check_member(group, &req.member_id, req.instance_id.as_deref()) {
        fx.join(waiter, JoinResult::error(code, &req.member_id));
        return;
    }
    let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
    let member = group
        .members
        .get_mut(&req.member_id)
        .expect("checked above");
    let unchanged = member.protocols == req.protocols;
    member.last_heartbeat_ms = now_ms;
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.protocols = req.protocols.clone();
    if let Some(old) = member.join_waiter.replace(waiter) {
        fx.join(
            old,
            JoinResult::error(ec::REBALANCE_IN_PROGRESS, &req.member_id),
        );
    }
    match group.state {
        GroupState::PreparingRebalance => {}
        GroupState::CompletingRebalance | GroupState::Stable
            if unchanged && !(is_leader && group.state == GroupState::Stable) =>
        {
            // Nothing changed: answer with the current generation at once.
            let member = group.members.get_mut(&req.member_id).expect("checked");
            let w = member.join_waiter.take().expect("just set");
            let r = join_result(group, &req.member_id);
            fx.join(w, r);
        }
        _ => prepare_rebalance(group, now_ms, fx),
    }
}

fn rejoin_static_member(
    group: &mut Group,
    now_ms: i64,
    waiter: Waiter,
    req: JoinRequest,
    old_id: String,
    fx: &mut Effects,
) {
    let new_id = req.fresh_member_id.clone();
    let mut member = group
        .members
        .remove(&old_id)
        .expect("group invariant: a static instance maps to a member");
    // The old incarnation is fenced: its waiting requests end now.
    if let Some(w) = member.join_waiter.take() {
        fx.join(w, JoinResult::error(ec::FENCED_INSTANCE_ID, &old_id));
    }
    if let Some(w) = member.sync_waiter.take() {
        fx.sync(w, SyncResult::error(ec::FENCED_INSTANCE_ID));
    }
    let unchanged = member.protocols == req.protocols;
    member.id = new_id.clone();
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.protocols = req.protocols.clone();
    member.last_heartbeat_ms = now_ms;
    member.join_waiter = Some(waiter);
    group.members.insert(new_id.clone(), member);
    group.statics.insert(
        req.instance_id
            .clone()
            .expect("static rejoin has an instance id"),
        new_id.clone(),
    );
    let was_leader = group.leader.as_deref() == Some(old_id.as_str());
    if was_leader {
        group.leader = Some(new_id.clone());
    }
    match group.state {
        GroupState::Stable if unchanged => {
            // KIP-345: same instance, same subscription: keep the assignment,
            // no rebalance. The new id is made durable at once.
            let m = group.members.get_mut(&new_id).expect("just inserted");
            let w = m.join_waiter.take().expect("just set");
            let mut r = join_result(group, &new_id);
            if was_leader {
                r.skip_assignment = true;
                r.members = group_members(group);
            }
            fx.join(w, r);
            fx.records.push(group.metadata_record());
        }
        GroupState::PreparingRebalance => {}
        _ => prepare_rebalance(group, now_ms, fx),
    }
}

fn maybe_prepare_rebalance(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.state != GroupState::PreparingRebalance {
        prepare_rebalance(group, now_ms, fx);
    }
}

/// Enter PreparingRebalance: pending syncs are told to rejoin; the join
/// phase lasts until every member rejoined or the longest rebalance timeout.
fn prepare_rebalance(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.members.is_empty() {
        to_empty(group, now_ms, fx);
        return;
    }
    if group.state == GroupState::CompletingRebalance {
        for m in group.members.values_mut() {
            m.assignment = Bytes::new();
        }
    }
    for m in group.members.values_mut() {
        if let Some(w) = m.sync_waiter.take() {
            fx.sync(w, SyncResult::error(ec::REBALANCE_IN_PROGRESS));
        }
    }
    let from_empty = group.state == GroupState::Empty;
    group.set_state(GroupState::PreparingRebalance, now_ms);
    group.rebalance_deadline_ms = now_ms + group.max_rebalance_timeout_ms();
    group.join_not_before_ms = if from_empty {
        (now_ms + group.initial_delay_ms).min(group.rebalance_deadline_ms)
    } else {
        now_ms
    };
}

fn to_empty(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    let was = group.state;
    group.leader = None;
    group.protocol = None;
    group.generation += 1;
    group.set_state(GroupState::Empty, now_ms);
    if was != GroupState::Empty {
        fx.records.push(group.metadata_record());
    }
}

/// Complete the join phase when everyone is in and any initial delay passed.
fn maybe_complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let all_joined = group.members.values().all(|m| m.join_waiter.is_some());
    if all_joined && group.pending.is_empty() && now_ms >= group.join_not_before_ms {
        complete_join(group, now_ms, fx);
    }
}

fn complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.members.is_empty() {
        to_empty(group, now_ms, fx);
        return;
    }
    group.generation += 1;
    group.protocol = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.set_state(GroupState::CompletingRebalance, now_ms);
    group.rebalance_deadline_ms = now_ms + group.max_rebalance_timeout_ms();
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for id in ids {
        let result = join_result(group, &id);
        let m = group.members.get_mut(&id).expect("listed");
        m.last_heartbeat_ms = now_ms;
        if let Some(w) = m.join_waiter.take() {
            fx.join(w, result);
        }
    }
}

fn group_members(group: &Group) -> Vec<JoinedMember> {
    let protocol = group.protocol.clone().unwrap_or_default();
    group
        .members
        .values()
        .map(|m| JoinedMember {
            member_id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            metadata: m.metadata(&protocol),
        })
        .collect()
}

fn join_result(group: &Group, member_id: &str) -> JoinResult {
    let leader = group.leader.clone().unwrap_or_default();
    JoinResult {
        error: ec::NONE,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        members: if leader == member_id {
            group_members(group)
        } else {
            Vec::new()
        },
        leader,
        member_id: member_id.to_string(),
        skip_assignment: false,
    }
}

fn answer_syncs(group: &mut Group, fx: &mut Effects) {
    for m in group.members.values_mut() {
        if let Some(w) = m.sync_waiter.take() {
            fx.sync(
                w,
                SyncResult {
                    error: ec::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: m.assignment.clone(),
                },
            );
        }
    }
}

/// Remove a member (left or expired) and rebalance what remains.
fn remove_member(group: &mut Group, member_id: &str, now_ms: i64, fx: &mut Effects) {
    remove_member_quietly(group, member_id, fx);
    match group.state {
        GroupState::PreparingRebalance => maybe_complete_join(group, now_ms, fx),
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(group, now_ms, fx)
        }
        GroupState::Empty | GroupState::Dead => {}
    }
}

fn remove_member_quietly(group: &mut Group, member_id: &str, fx: &mut Effects) {
    let Some(m) = group.members.remove(member_id) else {
        return;
    };
    if let Some(w) = m.join_waiter {
        fx.join(w, JoinResult::error(ec::UNKNOWN_MEMBER_ID, member_id));
    }
    if let Some(w) = m.sync_waiter {
        fx.sync(w, SyncResult::error(ec::UNKNOWN_MEMBER_ID));
    }
    if let Some(i) = &m.instance_id {
        if group.statics.get(i).map(String::as_str) == Some(member_id) {
            group.statics.remove(i);
        }
    }
    if group.leader.as_deref() == Some(member_id) {
        group.leader = group.members.keys().next().cloned();
    }
}
