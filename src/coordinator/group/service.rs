//! The thin async shell around [`GroupCoordinator`]: it owns the lock, the
//! waiting requests (oneshot senders keyed by `Waiter`), the clock and the
//! rng, and persists what the state machine asks for in `__consumer_offsets`
//! through the broker's ordinary partition logs.
//!
//! Durability order: records are appended under the coordinator lock, so
//! their order in the log is the order of the state changes. An offset
//! commit is appended first and applied only when the append succeeded
//! (validate, persist, apply). Group metadata written after a rebalance is
//! best effort: a failed append is logged, and the group works on in
//! memory; after a restart its members rejoin, as after a Kafka failover.
//!
//! Ownership: a group belongs to the partition of `__consumer_offsets` its
//! id hashes to, and its coordinator is that partition's leader. When the
//! metadata image makes this broker the leader of a partition, `on_image`
//! replays it from its start (offsets and group metadata survive restarts
//! and failovers); when leadership moves away, its groups are dropped here
//! and their members find the new coordinator (NOT_COORDINATOR).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::codes as ec;
use super::records::{partition_for, GroupRecord};
use super::state::{
    CommittedOffset, Effects, GroupConfig, GroupCoordinator, GroupDescription, GroupState,
    JoinRequest, JoinResult, LeavingMember, Reply, SyncRequest, SyncResult, Waiter,
};
use crate::broker::registry::{lock_or_recover, PartitionState};
use crate::config::ServerConfig;
use crate::env::rng::WeirRng;
use crate::env::time::SteadyWallClock;
use crate::log::batch::{build_batch, split_batches, BatchProducer, SimpleRecord};
use crate::metadata::MetadataImage;
use crate::replica::partition::Partition;
use crate::replica::ReplicaManager;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often session and rebalance timers are checked.
pub const TICK_INTERVAL_MS: u64 = 100;
/// Bytes read per step while loading `__consumer_offsets`.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Settings read from the broker config (Kafka key names).
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// offsets.topic.num.partitions
    pub offsets_partitions: i32,
}

impl CoordinatorConfig {
    /// Coordinator keys are not modelled by `ServerConfig`; they arrive in
    /// its `extra` map. A bad value falls back to the default with a warning.
    pub fn from_server(config: &ServerConfig) -> CoordinatorConfig {
        let get = |key: &str, default: i64| -> i64 {
            match config.extra.get(key).map(|v| v.trim().parse::<i64>()) {
                Some(Ok(v)) if v >= 0 => v,
                Some(_) => {
                    tracing::warn!(key, "invalid value, using the default {default}");
                    default
                }
                None => default,
            }
        };
        let d = GroupConfig::default();
        CoordinatorConfig {
            group: GroupConfig {
                session_timeout_ms_min: get(
                    "group.min.session.timeout.ms",
                    d.session_timeout_ms_min as i64,
                ) as i32,
                session_timeout_ms_max: get(
                    "group.max.session.timeout.ms",
                    d.session_timeout_ms_max as i64,
                ) as i32,
                initial_rebalance_delay_ms: get(
                    "group.initial.rebalance.delay.ms",
                    d.initial_rebalance_delay_ms,
                ),
                offsets_retention_ms: get(
                    "offsets.retention.minutes",
                    d.offsets_retention_ms / 60_000,
                )
                .saturating_mul(60_000),
                offset_metadata_bytes_max: get(
                    "offset.metadata.max.bytes",
                    d.offset_metadata_bytes_max as i64,
                ) as usize,
                group_members_max: get("group.max.size", d.group_members_max as i64) as usize,
            },
            offsets_partitions: get("offsets.topic.num.partitions", 50).clamp(1, 10_000) as i32,
        }
    }
}

/// Why persisting failed.
#[derive(Debug, thiserror::Error)]
#[error("writing {OFFSETS_TOPIC} failed: {message} (error {code})")]
pub struct PersistError {
    pub code: i16,
    pub message: String,
}

struct Inner {
    machine: GroupCoordinator,
    /// Partitions of `__consumer_offsets` this broker leads and has loaded.
    loaded: BTreeSet<i32>,
    /// The partition count of `__consumer_offsets` (0 until it exists).
    offsets_partitions: i32,
    waiters: BTreeMap<Waiter, oneshot::Sender<Reply>>,
    next_waiter: Waiter,
    rng: WeirRng,
    /// For each committed offset applied since its group loaded: the
    /// `__consumer_offsets` log offset of the record that carried it, so a
    /// commit whose replication finishes late never overwrites a newer one.
    /// Keyed (offsets partition, group, topic, partition).
    applied_at: BTreeMap<(i32, String, String, i32), i64>,
    /// Transactional offset commits (TxnOffsetCommit) waiting for their
    /// producer's marker, keyed (offsets partition, producer id).
    txn_pending: BTreeMap<(i32, i64), Vec<TxnOffset>>,
    /// The producer epoch and next sequence of this coordinator's
    /// transactional appends, keyed (offsets partition, producer id): the
    /// partition log checks them like any idempotent producer's.
    txn_seq: BTreeMap<(i32, i64), (i16, i32)>,
}

/// One offset committed inside a transaction, not visible yet.
#[derive(Clone, Debug)]
struct TxnOffset {
    group: String,
    topic: String,
    partition: i32,
    offset: CommittedOffset,
    /// Where its record is in `__consumer_offsets`.
    log_offset: i64,
}

/// The group coordinator of this broker.
pub struct GroupService {
    inner: Mutex<Inner>,
    config: CoordinatorConfig,
    /// The `__consumer_offsets` replicas: loaded where this broker leads,
    /// appended to as their leader.
    replicas: Arc<ReplicaManager>,
    /// Time for every call into the machine (see [`GroupService::now_ms`]).
    clock: SteadyWallClock,
}

/// Who commits: the group and, for group commits, the member and its
/// generation (-1 for a simple commit).
#[derive(Clone, Copy, Debug)]
pub struct Committer<'a> {
    pub group: &'a str,
    pub member: &'a str,
    pub instance: Option<&'a str>,
    pub generation: i32,
}

/// An offset to commit, as the handler decoded it.
#[derive(Clone, Debug)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

impl GroupService {
    /// A transaction marker for `producer_id` is in the ISR of partition
    /// `offsets_partition` of `__consumer_offsets`: the offsets that producer
    /// committed inside the transaction (TxnOffsetCommit) become visible on
    /// commit and are discarded on abort. Called by the WriteTxnMarkers
    /// handler once the marker is in the ISR.
    pub async fn complete_transaction(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
    ) {
        let now_ms = self.now_ms();
        let mut inner = lock_or_recover(&self.inner);
        let Some(pending) = inner.txn_pending.remove(&(offsets_partition, producer_id)) else {
            return;
        };
        if commit {
            apply_txn_offsets(&mut inner, offsets_partition, now_ms, pending);
        }
    }

    /// TxnOffsetCommit: validate (generation and member when given), append
    /// the offsets as a transactional batch of `producer_id`/`epoch` and keep
    /// them pending until that producer's marker. Returns per-offset codes
    /// and what to wait on for the append to be in the ISR.
    pub fn txn_commit(
        &self,
        now_ms: i64,
        who: &Committer<'_>,
        producer_id: i64,
        producer_epoch: i16,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<(Vec<i16>, Vec<Durable>), i16> {
        let group = who.group;
        let mut guard = lock_or_recover(&self.inner);
        let inner = &mut *guard;
        if !inner.owns(group) {
            return Err(ec::NOT_COORDINATOR);
        }
        if who.generation >= 0 || !who.member.is_empty() {
            let code =
                inner
                    .machine
                    .validate_commit(group, who.member, who.instance, who.generation);
            if code != ec::NONE {
                return Err(code);
            }
        }
        let p = partition_for(group, inner.offsets_partitions);
        let mut codes = Vec::with_capacity(offsets.len());
        let mut recs = Vec::new();
        let mut accepted = Vec::new();
        for o in offsets {
            if !inner.machine.metadata_ok(&o.offset.metadata) {
                codes.push(ec::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            codes.push(ec::NONE);
            let r = GroupRecord::Offset {
                group: group.to_string(),
                topic: o.topic.clone(),
                partition: o.partition,
                value: Some(o.offset.clone()),
            };
            recs.push(SimpleRecord {
                key: Some(r.key().to_vec()),
                value: r.value().map(|v| v.to_vec()),
                headers: Vec::new(),
                timestamp: now_ms,
            });
            accepted.push(o);
        }
        if recs.is_empty() {
            return Ok((codes, Vec::new()));
        }
        let partition = self
            .replicas
            .get(OFFSETS_TOPIC, p)
            .ok_or(ec::NOT_COORDINATOR)?;
        let seq = match inner.txn_seq.get(&(p, producer_id)) {
            Some(&(e, next)) if e == producer_epoch => next,
            Some(&(e, _)) if e > producer_epoch => return Err(PRODUCER_FENCED),
            _ => 0,
        };
        let mut batch = build_batch(
            &recs,
            BatchProducer {
                producer_id,
                producer_epoch,
                base_sequence: seq,
                transactional: true,
            },
        );
        let (info, epoch) = partition
            .append_as_leader(&mut batch, true, now_ms)
            .map_err(|(code, message)| {
                tracing::warn!(
                    group,
                    code,
                    message,
                    "transactional offset commit not persisted"
                );
                match code {
                    ec::NOT_LEADER_OR_FOLLOWER => ec::NOT_COORDINATOR,
                    // The producer's epoch is stale.
                    PRODUCER_FENCED | INVALID_PRODUCER_EPOCH => PRODUCER_FENCED,
                    _ => ec::COORDINATOR_NOT_AVAILABLE,
                }
            })?;
        inner.txn_seq.insert(
            (p, producer_id),
            (
                producer_epoch,
                crate::log::batch::increment_sequence(seq, recs.len() as i32),
            ),
        );
        let first = info.last_offset - recs.len() as i64 + 1;
        let pending = inner.txn_pending.entry((p, producer_id)).or_default();
        for (i, o) in accepted.into_iter().enumerate() {
            pending.push(TxnOffset {
                group: group.to_string(),
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                log_offset: first + i as i64,
            });
        }
        Ok((
            codes,
            vec![Durable {
                partition,
                partition_index: p,
                last_offset: info.last_offset,
                epoch,
            }],
        ))
    }

    /// Build the coordinator; partitions load as the image assigns them.
    pub fn open(server: &ServerConfig, replicas: Arc<ReplicaManager>) -> GroupService {
        let config = CoordinatorConfig::from_server(server);
        let machine = GroupCoordinator::new(config.group.clone());
        GroupService {
            inner: Mutex::new(Inner {
                machine,
                loaded: BTreeSet::new(),
                offsets_partitions: 0,
                waiters: BTreeMap::new(),
                next_waiter: 1,
                rng: WeirRng::from_env(),
                applied_at: BTreeMap::new(),
                txn_pending: BTreeMap::new(),
                txn_seq: BTreeMap::new(),
            }),
            config,
            replicas,
            clock: SteadyWallClock::new(),
        }
    }

    /// The coordinator's clock, to pass as `now_ms` to every call: it reads
    /// like the wall clock (commit timestamps, offsets retention and the
    /// group's state timestamp are persisted) but never jumps, so a
    /// wall-clock step cannot expire live sessions or stretch a rebalance
    /// deadline (see `SteadyWallClock` for the trade-off).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Load the `__consumer_offsets` partitions this broker now leads and
    /// drop the groups of those it no longer leads.
    pub fn on_image(&self, image: &MetadataImage, me: i32, now_ms: i64) {
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return;
        };
        let count = topic.partitions.len() as i32;
        let mut inner = lock_or_recover(&self.inner);
        inner.offsets_partitions = count;
        for (index, p) in topic.partitions.iter().enumerate() {
            let index = index as i32;
            let leads = p.leader == me;
            if leads && !inner.loaded.contains(&index) {
                let Some(partition) = self.replicas.get(OFFSETS_TOPIC, index) else {
                    continue;
                };
                match load(&partition.log, &mut inner, index, now_ms) {
                    Ok(n) => {
                        tracing::info!(
                            partition = index,
                            records = n,
                            "loaded {OFFSETS_TOPIC} partition"
                        );
                        inner.loaded.insert(index);
                    }
                    Err(e) => {
                        tracing::error!(partition = index, error = %e, "loading {OFFSETS_TOPIC} failed; its groups stay unavailable")
                    }
                }
            } else if !leads && inner.loaded.remove(&index) {
                let gone: Vec<String> = inner
                    .machine
                    .list()
                    .into_iter()
                    .map(|(g, _, _)| g)
                    .filter(|g| partition_for(g, count) == index)
                    .collect();
                for g in &gone {
                    inner.machine.remove_group(g);
                }
                inner.applied_at.retain(|(p, ..), _| *p != index);
                inner.txn_pending.retain(|(p, _), _| *p != index);
                inner.txn_seq.retain(|(p, _), _| *p != index);
                tracing::info!(
                    partition = index,
                    groups = gone.len(),
                    "no longer coordinator for {OFFSETS_TOPIC} partition"
                );
            }
        }
        inner.machine.check_invariants();
    }

    /// Whether this broker coordinates `group` (leads and has loaded its partition).
    pub fn owns(&self, group: &str) -> bool {
        lock_or_recover(&self.inner).owns(group)
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub async fn join(
        &self,
        shutdown: &watch::Receiver<bool>,
        now_ms: i64,
        mut req: JoinRequest,
    ) -> JoinResult {
        let member_id = req.member_id.clone();
        let group = req.group_id.clone();
        tracing::debug!(%group, member = %member_id, instance = ?req.instance_id, "join");
        let rx = {
            let mut inner = lock_or_recover(&self.inner);
            if !inner.owns(&group) {
                return JoinResult {
                    error: ec::NOT_COORDINATOR,
                    generation: -1,
                    member_id,
                    ..Default::default()
                };
            }
            let (waiter, rx) = inner.register();
            let a = inner.rng.next_u64();
            let b = inner.rng.next_u64();
            req.fresh_member_id = format!(
                "{}-{}",
                req.client_id,
                uuid::Uuid::from_u64_pair(a, b).hyphenated()
            );
            let fx = inner.machine.join(now_ms, waiter, req);
            self.finish(&mut inner, now_ms, fx);
            rx
        };
        match wait(rx, shutdown).await {
            Some(Reply::Join(r)) => {
                tracing::debug!(%group, member = %r.member_id, error = r.error, generation = r.generation, leader = %r.leader, "join answered");
                r
            }
            _ => JoinResult {
                error: ec::COORDINATOR_NOT_AVAILABLE,
                generation: -1,
                member_id,
                ..Default::default()
            },
        }
    }

    pub async fn sync(
        &self,
        shutdown: &watch::Receiver<bool>,
        now_ms: i64,
        req: SyncRequest,
    ) -> SyncResult {
        let (group, member) = (req.group_id.clone(), req.member_id.clone());
        tracing::debug!(%group, %member, generation = req.generation, "sync");
        let rx = {
            let mut inner = lock_or_recover(&self.inner);
            if !inner.owns(&group) {
                return SyncResult {
                    error: ec::NOT_COORDINATOR,
                    ..Default::default()
                };
            }
            let (waiter, rx) = inner.register();
            let fx = inner.machine.sync(now_ms, waiter, req);
            self.finish(&mut inner, now_ms, fx);
            rx
        };
        match wait(rx, shutdown).await {
            Some(Reply::Sync(r)) => {
                tracing::debug!(%group, %member, error = r.error, "sync answered");
                r
            }
            _ => SyncResult {
                error: ec::COORDINATOR_NOT_AVAILABLE,
                ..Default::default()
            },
        }
    }

    pub fn heartbeat(
        &self,
        now_ms: i64,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut inner = lock_or_recover(&self.inner);
        let code = if inner.owns(group) {
            inner
                .machine
                .heartbeat(now_ms, group, member, instance, generation)
        } else {
            ec::NOT_COORDINATOR
        };
        tracing::debug!(group, member, generation, code, "heartbeat");
        code
    }

    pub fn leave(&self, now_ms: i64, group: &str, members: &[LeavingMember]) -> Vec<i16> {
        let mut inner = lock_or_recover(&self.inner);
        if !inner.owns(group) {
            return vec![ec::NOT_COORDINATOR; members.len().max(1)];
        }
        let (codes, fx) = inner.machine.leave(now_ms, group, members);
        tracing::debug!(group, ?members, ?codes, "leave");
        self.finish(&mut inner, now_ms, fx);
        codes
    }

    /// Run the timers.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = lock_or_recover(&self.inner);
        let fx = inner.machine.tick(now_ms);
        self.finish(&mut inner, now_ms, fx);
    }

    /// OffsetCommit: group-level check and persist. Returns the group
    /// error, or per-offset codes in input order (metadata too large gets
    /// OFFSET_METADATA_TOO_LARGE, the rest are written) and the commit to
    /// finish with [`GroupService::finish_commit`]. Nothing is applied yet:
    /// as in Kafka, a commit stays pending (OffsetFetch does not see it)
    /// until its record is in the ISR, because a coordinator cut off from
    /// its followers may lose it in the failover.
    pub fn commit(
        &self,
        now_ms: i64,
        who: &Committer<'_>,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<(Vec<i16>, PendingCommit), i16> {
        let group = who.group;
        let inner = lock_or_recover(&self.inner);
        if !inner.owns(group) {
            return Err(ec::NOT_COORDINATOR);
        }
        let code = inner
            .machine
            .validate_commit(group, who.member, who.instance, who.generation);
        if code != ec::NONE {
            return Err(code);
        }
        let mut codes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        let mut records = Vec::new();
        for o in offsets {
            if !inner.machine.metadata_ok(&o.offset.metadata) {
                codes.push(ec::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            codes.push(ec::NONE);
            records.push(GroupRecord::Offset {
                group: group.to_string(),
                topic: o.topic.clone(),
                partition: o.partition,
                value: Some(o.offset.clone()),
            });
            accepted.push((o.topic, o.partition, o.offset));
        }
        let durable = match self.persist(&inner, now_ms, &records) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(group, error = %e, "offset commit not persisted");
                return Err(e.code);
            }
        };
        Ok((
            codes,
            PendingCommit {
                group: group.to_string(),
                offsets: accepted,
                durable,
            },
        ))
    }

    /// Wait until a pending commit is in the ISR of its offsets partition,
    /// then apply it (unless a commit appended after it was applied first).
    /// NONE once applied; otherwise the error the committer sees, and the
    /// commit stays unapplied here (a later coordinator may still load it
    /// from the log, as with any commit whose answer was an error).
    pub async fn finish_commit(
        &self,
        pending: PendingCommit,
        timeout: crate::env::time::Duration,
    ) -> i16 {
        let mut log_offset = -1;
        let mut offsets_partition = -1;
        for d in pending.durable {
            log_offset = log_offset.max(d.last_offset);
            offsets_partition = d.partition_index;
            let code = d.wait(timeout).await;
            if code != ec::NONE {
                return code;
            }
        }
        let now_ms = self.now_ms();
        let mut inner = lock_or_recover(&self.inner);
        if !inner.owns(&pending.group) {
            return ec::NOT_COORDINATOR;
        }
        let mut newer = Vec::with_capacity(pending.offsets.len());
        for (topic, partition, offset) in pending.offsets {
            let key = (
                offsets_partition,
                pending.group.clone(),
                topic.clone(),
                partition,
            );
            if inner
                .applied_at
                .get(&key)
                .is_some_and(|&at| at > log_offset)
            {
                continue;
            }
            inner.applied_at.insert(key, log_offset);
            newer.push((topic, partition, offset));
        }
        inner.machine.apply_offsets(now_ms, &pending.group, newer);
        ec::NONE
    }

    /// Committed offsets of the given partitions (None = every partition).
    pub fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let inner = lock_or_recover(&self.inner);
        match partitions {
            None => inner
                .machine
                .all_committed(group)
                .into_iter()
                .map(|(t, p, o)| (t, p, Some(o)))
                .collect(),
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
                .map(|(t, p)| (t.clone(), p, inner.machine.committed(group, t, p).cloned()))
                .collect(),
        }
    }

    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        lock_or_recover(&self.inner).machine.list()
    }

    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        lock_or_recover(&self.inner).machine.describe(group)
    }

    /// DeleteGroups for one group.
    pub fn delete_group(&self, now_ms: i64, group: &str) -> i16 {
        let mut inner = lock_or_recover(&self.inner);
        if !inner.owns(group) {
            return ec::NOT_COORDINATOR;
        }
        let code = inner.machine.validate_delete(group);
        if code != ec::NONE {
            return code;
        }
        let records = inner.machine.delete_records(group);
        if let Err(e) = self.persist(&inner, now_ms, &records) {
            return e.code;
        }
        inner.machine.remove_group(group);
        ec::NONE
    }

    /// OffsetDelete: per-partition codes, or a group-level error.
    pub fn delete_offsets(
        &self,
        now_ms: i64,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let mut inner = lock_or_recover(&self.inner);
        if !inner.owns(group) {
            return Err(ec::NOT_COORDINATOR);
        }
        let (codes, fx) =
            inner
                .machine
                .delete_offsets(group, partitions, subscription_names_topic)?;
        if let Err(e) = self.persist(&inner, now_ms, &fx.records) {
            return Err(e.code);
        }
        Ok(codes)
    }

    /// Deliver replies and persist records a step produced.
    fn finish(&self, inner: &mut Inner, now_ms: i64, fx: Effects) {
        if !fx.records.is_empty() {
            if let Err(e) = self.persist(inner, now_ms, &fx.records) {
                tracing::error!(error = %e, "group metadata not persisted");
            }
        }
        for (w, reply) in fx.replies {
            if let Some(tx) = inner.waiters.remove(&w) {
                // The requester may be gone (connection closed): nothing to do.
                let _ = tx.send(reply);
            }
        }
    }

    /// Append records to their groups' partitions of `__consumer_offsets`
    /// as their leader. Returns what to wait on for the records to be
    /// committed (in the ISR) rather than only written here.
    fn persist(
        &self,
        inner: &Inner,
        now_ms: i64,
        records: &[GroupRecord],
    ) -> Result<Vec<Durable>, PersistError> {
        let mut durable = Vec::new();
        if records.is_empty() {
            return Ok(durable);
        }
        let partitions = inner.offsets_partitions;
        if partitions <= 0 {
            return Err(PersistError {
                code: ec::NOT_COORDINATOR,
                message: format!("{OFFSETS_TOPIC} is not hosted here"),
            });
        }
        let mut by_partition: BTreeMap<i32, Vec<SimpleRecord>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(partition_for(r.group(), partitions))
                .or_default()
                .push(SimpleRecord {
                    key: Some(r.key().to_vec()),
                    value: r.value().map(|v| v.to_vec()),
                    headers: Vec::new(),
                    timestamp: now_ms,
                });
        }
        for (p, recs) in by_partition {
            let partition = self
                .replicas
                .get(OFFSETS_TOPIC, p)
                .ok_or_else(|| PersistError {
                    code: ec::NOT_COORDINATOR,
                    message: format!("{OFFSETS_TOPIC}-{p} is not hosted here"),
                })?;
            let mut batch = build_batch(&recs, BatchProducer::default());
            let (info, epoch) = partition
                .append_as_leader(&mut batch, true, now_ms)
                .map_err(|(code, message)| PersistError {
                    code: match code {
                        // The client looks the coordinator up again.
                        ec::NOT_LEADER_OR_FOLLOWER => ec::NOT_COORDINATOR,
                        _ => ec::COORDINATOR_NOT_AVAILABLE,
                    },
                    message,
                })?;
            durable.push(Durable {
                partition,
                partition_index: p,
                last_offset: info.last_offset,
                epoch,
            });
        }
        Ok(durable)
    }
}

/// An offset commit written to `__consumer_offsets`, not yet applied.
pub struct PendingCommit {
    group: String,
    offsets: Vec<(String, i32, CommittedOffset)>,
    durable: Vec<Durable>,
}

/// Records appended to `__consumer_offsets` whose commit (HW past them) an
/// OffsetCommit answer waits for, as Kafka's offsets.commit.required.acks=-1.
pub struct Durable {
    partition: Arc<Partition>,
    /// Which partition of `__consumer_offsets`.
    partition_index: i32,
    last_offset: i64,
    epoch: i32,
}

impl Durable {
    /// NONE once in the ISR; otherwise the error the committer should see.
    pub async fn wait(self, timeout: crate::env::time::Duration) -> i16 {
        match self
            .partition
            .wait_for_hw(self.last_offset, self.epoch, timeout)
            .await
        {
            ec::NONE => ec::NONE,
            ec::NOT_LEADER_OR_FOLLOWER => ec::NOT_COORDINATOR,
            ec::REQUEST_TIMED_OUT => ec::REQUEST_TIMED_OUT,
            _ => ec::COORDINATOR_NOT_AVAILABLE,
        }
    }
}

impl Inner {
    fn owns(&self, group: &str) -> bool {
        self.offsets_partitions > 0
            && self
                .loaded
                .contains(&partition_for(group, self.offsets_partitions))
    }

    fn register(&mut self) -> (Waiter, oneshot::Receiver<Reply>) {
        let w = self.next_waiter;
        self.next_waiter += 1;
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(w, tx);
        (w, rx)
    }
}

async fn wait(rx: oneshot::Receiver<Reply>, shutdown: &watch::Receiver<bool>) -> Option<Reply> {
    let mut shutdown = shutdown.clone();
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        r = rx => r.ok(),
        _ = shutdown.changed() => None,
    }
}

/// Whether a consumer-protocol subscription (ConsumerProtocolSubscription,
/// any version) names `topic`. Undecodable metadata names nothing.
fn subscription_names_topic(metadata: &[u8], topic: &str) -> bool {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = Bytes::copy_from_slice(metadata);
    if buf.len() < 2 {
        return false;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    let version = version.clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.iter().any(|t| t.as_str() == topic))
        .unwrap_or(false)
}

/// Replay one partition of `__consumer_offsets` into `machine`.
fn load(
    partition: &PartitionState,
    inner: &mut Inner,
    index: i32,
    now_ms: i64,
) -> anyhow::Result<u64> {
    inner.txn_pending.retain(|(p, _), _| *p != index);
    inner.txn_seq.retain(|(p, _), _| *p != index);
    let mut count = 0u64;
    {
        let (mut offset, end) = partition
            .with_log(|log| Ok((log.log_start_offset(), log.log_end_offset())))
            .map_err(|e| anyhow::anyhow!("{OFFSETS_TOPIC}-{}: {e}", partition.index))?;
        while offset < end {
            let slice = partition
                .with_log(|log| log.read(offset, LOAD_READ_BYTES, true))
                .map_err(|e| anyhow::anyhow!("{OFFSETS_TOPIC}-{}: {e}", partition.index))?;
            if slice.records.is_empty() {
                break;
            }
            let batches = split_batches(&slice.records)
                .map_err(|e| anyhow::anyhow!("{OFFSETS_TOPIC}-{}: {e}", partition.index))?;
            if batches.is_empty() {
                break;
            }
            for (range, header) in batches {
                let next = header.next_offset();
                if header.is_control() {
                    // A transaction marker: the producer's pending offsets
                    // apply on COMMIT and are dropped on ABORT.
                    if header.is_transactional() {
                        match crate::log::txn::parse_marker(&slice.records[range.clone()]) {
                            Ok(m) => {
                                if let Some(pending) =
                                    inner.txn_pending.remove(&(index, header.producer_id))
                                {
                                    if m.commit {
                                        apply_txn_offsets(inner, index, now_ms, pending);
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!(partition = partition.index, offset, error = %e, "skipping undecodable marker")
                            }
                        }
                    }
                    offset = next;
                    continue;
                }
                let txn = header.is_transactional().then_some(header.producer_id);
                if txn.is_some() {
                    inner.txn_seq.insert(
                        (index, header.producer_id),
                        (
                            header.producer_epoch,
                            crate::log::batch::increment_sequence(header.last_sequence(), 1),
                        ),
                    );
                }
                let mut bytes = slice.records.slice(range);
                match kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
                    Ok(set) => {
                        for r in set.records {
                            if r.offset < offset {
                                continue;
                            }
                            match GroupRecord::decode(r.key.as_deref(), r.value.as_deref()) {
                                Ok(GroupRecord::Offset {
                                    group,
                                    topic,
                                    partition: p,
                                    value: Some(v),
                                }) if txn.is_some() => {
                                    let pid = txn.unwrap_or(-1);
                                    inner.txn_pending.entry((index, pid)).or_default().push(
                                        TxnOffset {
                                            group,
                                            topic,
                                            partition: p,
                                            offset: v,
                                            log_offset: r.offset,
                                        },
                                    );
                                    count += 1;
                                }
                                Ok(rec) => {
                                    replay_plain(inner, index, r.offset, now_ms, rec);
                                    count += 1;
                                }
                                Err(e) => tracing::warn!(
                                    partition = partition.index,
                                    offset = r.offset,
                                    error = %e,
                                    "skipping undecodable {OFFSETS_TOPIC} record"
                                ),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        partition = partition.index,
                        offset,
                        error = %e,
                        "skipping undecodable {OFFSETS_TOPIC} batch"
                    ),
                }
                offset = next;
            }
        }
    }
    Ok(count)
}

/// Replay a non-transactional record, remembering where each offset came
/// from so a transactional commit appended earlier never overwrites it.
fn replay_plain(inner: &mut Inner, index: i32, log_offset: i64, now_ms: i64, rec: GroupRecord) {
    if let GroupRecord::Offset {
        group,
        topic,
        partition,
        value: Some(_),
    } = &rec
    {
        inner.applied_at.insert(
            (index, group.clone(), topic.clone(), *partition),
            log_offset,
        );
    }
    inner.machine.replay(now_ms, rec);
}

/// Committed transactional offsets become visible, unless a commit
/// appended after them already applied.
fn apply_txn_offsets(inner: &mut Inner, index: i32, now_ms: i64, pending: Vec<TxnOffset>) {
    let mut by_group: BTreeMap<String, Vec<(String, i32, CommittedOffset)>> = BTreeMap::new();
    for o in pending {
        let key = (index, o.group.clone(), o.topic.clone(), o.partition);
        if inner
            .applied_at
            .get(&key)
            .is_some_and(|&at| at > o.log_offset)
        {
            continue;
        }
        inner.applied_at.insert(key, o.log_offset);
        by_group
            .entry(o.group)
            .or_default()
            .push((o.topic, o.partition, o.offset));
    }
    for (group, offsets) in by_group {
        inner.machine.apply_offsets(now_ms, &group, offsets);
    }
}

const INVALID_PRODUCER_EPOCH: i16 = 47;
const PRODUCER_FENCED: i16 = 90;
