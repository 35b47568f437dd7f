//! One partition replica on this broker: leader or follower state, the
//! high watermark, the ISR as the leader sees it, and follower progress
//! (Kafka's Partition).
//!
//! Locking: `state` (this file) is taken first, the log lock
//! (`PartitionState::with_log`) inside it, never the other way round. Both
//! are short, synchronous critical sections; nothing awaits under them.
//!
//! Invariants:
//! - HW <= LEO on every replica; on the leader the HW never goes back.
//! - The leader computes the HW over the maximal ISR: the committed ISR
//!   plus members an in-flight AlterPartition adds; a shrink counts only
//!   once the controller committed it.
//! - At most one AlterPartition per partition is in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use uuid::Uuid;

use super::codes;
use super::endpoint::{FetchPartition, FetchedPartition};
use crate::broker::registry::{lock_or_recover, PartitionError, PartitionState};
use crate::controller::api::{ControllerRequest, ControllerResponse};
use crate::log::batch::BatchHeader;
use crate::log::epoch_cache::UNDEFINED_OFFSET;
use crate::log::{AppendInfo, LogError};
use crate::metadata::{PartitionRegistration, NO_LEADER};

/// What this replica is for its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Following `leader` (NO_LEADER: offline, waiting for an election).
    Follower {
        leader: i32,
    },
}

/// A follower's progress as the leader tracks it.
#[derive(Clone, Copy, Debug)]
struct FollowerProgress {
    /// Its log end offset (its last fetch offset); -1 until it fetched.
    leo: i64,
    /// Last time it was known to hold everything the leader had.
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's LEO at its last fetch.
    last_fetch_leader_leo: i64,
}

/// The replication state, guarded by `Partition::state`.
#[derive(Debug)]
pub struct ReplicaState {
    pub role: Role,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The ISR committed in the metadata (or confirmed by AlterPartition).
    pub isr: Vec<i32>,
    /// The ISR an in-flight AlterPartition proposes.
    pub pending_isr: Option<Vec<i32>>,
    pub high_watermark: i64,
    /// The LEO when this replica became leader (its epoch's first offset).
    pub leader_epoch_start_offset: i64,
    pub min_insync_replicas: i32,
    pub configs: BTreeMap<String, String>,
    followers: BTreeMap<i32, FollowerProgress>,
}

/// What a consumer's fetch of one partition read.
#[derive(Debug)]
pub struct ConsumerRead {
    pub high_watermark: i64,
    /// The HW, or the first offset of the earliest open transaction if lower.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
    /// read_committed only: aborted transactions the records may hold.
    pub aborted: Vec<crate::log::txn::AbortedTxn>,
}

/// One hosted partition replica.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
    node_id: i32,
    /// The log (shared with the registry) and its append notifier.
    pub log: Arc<PartitionState>,
    state: Mutex<ReplicaState>,
    /// Woken on every HW, ISR or leadership change (delayed produces wait on it).
    changed: Notify,
}

/// An error code for a partition-level failure.
pub type Code = i16;

fn log_code(e: PartitionError) -> Code {
    e.error_code()
}

impl Partition {
    pub fn new(
        topic: String,
        index: i32,
        topic_id: Uuid,
        node_id: i32,
        log: Arc<PartitionState>,
        checkpointed_hw: i64,
    ) -> Result<Partition, Code> {
        let leo = log.with_log(|l| Ok(l.log_end_offset())).map_err(log_code)?;
        let start = log
            .with_log(|l| Ok(l.log_start_offset()))
            .map_err(log_code)?;
        Ok(Partition {
            topic,
            index,
            topic_id,
            node_id,
            log,
            state: Mutex::new(ReplicaState {
                role: Role::Follower { leader: NO_LEADER },
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                pending_isr: None,
                // On restart HW = min(checkpoint, LEO) (never below the start).
                high_watermark: checkpointed_hw.clamp(start, leo),
                leader_epoch_start_offset: -1,
                min_insync_replicas: 1,
                configs: BTreeMap::new(),
                followers: BTreeMap::new(),
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplicaState> {
        lock_or_recover(&self.state)
    }

    /// A snapshot of (role, leader epoch, HW, committed ISR).
    pub fn snapshot(&self) -> (Role, i32, i64, Vec<i32>) {
        let st = self.lock();
        (st.role, st.leader_epoch, st.high_watermark, st.isr.clone())
    }

    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }

    pub fn is_leader(&self) -> bool {
        self.lock().role == Role::Leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.lock().leader_epoch
    }

    /// The leader's id (self if leading), NO_LEADER if unknown.
    pub fn leader_id(&self) -> i32 {
        match self.lock().role {
            Role::Leader => self.node_id,
            Role::Follower { leader } => leader,
        }
    }

    fn wake(&self) {
        self.changed.notify_waiters();
        // Long-polling fetches wait on the log's notifier: a HW move makes
        // data visible to consumers without an append.
        self.log.notify_appended();
    }

    /// Apply the image's registration: become leader or follower when the
    /// leader or its epoch changed, else take a newer ISR / replica set.
    /// Every change wakes produce waiters and long-polling fetches.
    pub fn apply_registration(
        &self,
        reg: &PartitionRegistration,
        configs: &BTreeMap<String, String>,
        min_insync_replicas: i32,
        now_ms: i64,
    ) -> Result<(), Code> {
        let mut st = self.lock();
        st.min_insync_replicas = min_insync_replicas;
        st.configs = configs.clone();
        let me_leader = reg.leader == self.node_id;
        let new_epoch = reg.leader_epoch != st.leader_epoch;
        if me_leader && (new_epoch || st.role != Role::Leader) {
            self.become_leader(&mut st, reg, now_ms)?;
        } else if !me_leader && (new_epoch || st.role != (Role::Follower { leader: reg.leader })) {
            self.become_follower(&mut st, reg);
        } else if reg.partition_epoch > st.partition_epoch {
            // Same leadership, newer ISR or replica set.
            st.partition_epoch = reg.partition_epoch;
            st.replicas = reg.replicas.clone();
            st.isr = reg.isr.clone();
            st.pending_isr = None;
            if st.role == Role::Leader {
                self.maybe_increment_hw(&mut st)?;
            }
        } else {
            return Ok(());
        }
        drop(st);
        self.wake();
        Ok(())
    }

    fn become_leader(
        &self,
        st: &mut ReplicaState,
        reg: &PartitionRegistration,
        now_ms: i64,
    ) -> Result<(), Code> {
        let epoch = reg.leader_epoch;
        let leo = self
            .log
            .with_log(|l| {
                let leo = l.log_end_offset();
                l.assign_epoch_start(epoch, leo)?;
                Ok(leo)
            })
            .map_err(log_code)?;
        st.role = Role::Leader;
        st.leader_epoch = epoch;
        st.partition_epoch = reg.partition_epoch;
        st.replicas = reg.replicas.clone();
        st.isr = reg.isr.clone();
        st.pending_isr = None;
        st.leader_epoch_start_offset = leo;
        st.high_watermark = st.high_watermark.min(leo);
        // Followers start unknown; ISR members get the election as their
        // last caught-up time so they are not dropped before a first fetch.
        st.followers = reg
            .replicas
            .iter()
            .filter(|&&r| r != self.node_id)
            .map(|&r| {
                let caught_up = if reg.isr.contains(&r) { now_ms } else { 0 };
                (
                    r,
                    FollowerProgress {
                        leo: -1,
                        last_caught_up_ms: caught_up,
                        last_fetch_ms: 0,
                        last_fetch_leader_leo: -1,
                    },
                )
            })
            .collect();
        tracing::info!(topic = %self.topic, partition = self.index, epoch, leo, hw = st.high_watermark, isr = ?st.isr, "became leader");
        self.maybe_increment_hw(st)?;
        Ok(())
    }

    fn become_follower(&self, st: &mut ReplicaState, reg: &PartitionRegistration) {
        st.role = Role::Follower { leader: reg.leader };
        st.leader_epoch = reg.leader_epoch;
        st.partition_epoch = reg.partition_epoch;
        st.replicas = reg.replicas.clone();
        st.isr = reg.isr.clone();
        st.pending_isr = None;
        st.followers.clear();
        tracing::info!(topic = %self.topic, partition = self.index, epoch = reg.leader_epoch, leader = reg.leader, "became follower");
    }

    /// The ISR the HW is computed over: committed plus members being added.
    fn maximal_isr(st: &ReplicaState) -> Vec<i32> {
        let mut isr = st.isr.clone();
        if let Some(p) = &st.pending_isr {
            for r in p {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// Leader only: HW = min LEO over the maximal ISR, if that is larger.
    /// Returns whether it moved.
    fn maybe_increment_hw(&self, st: &mut ReplicaState) -> Result<bool, Code> {
        if st.role != Role::Leader {
            return Ok(false);
        }
        let leo = self
            .log
            .with_log(|l| Ok(l.log_end_offset()))
            .map_err(log_code)?;
        let mut min = leo;
        for r in Self::maximal_isr(st) {
            if r == self.node_id {
                continue;
            }
            let f = st.followers.get(&r).map_or(-1, |f| f.leo);
            min = min.min(f);
        }
        if min > st.high_watermark {
            st.high_watermark = min;
            assert!(
                st.high_watermark <= leo,
                "replica invariant: the high watermark never passes the log end"
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Leader: append a producer's batches stamped with the leader epoch.
    /// `acks_all` checks min.insync.replicas first. Returns the append and
    /// the epoch it was made in (to wait on).
    pub fn append_as_leader(
        &self,
        batches: &mut [u8],
        acks_all: bool,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32), (Code, String)> {
        let st = self.lock();
        if st.role != Role::Leader {
            return Err((
                codes::NOT_LEADER_OR_FOLLOWER,
                "this broker is not the partition leader".into(),
            ));
        }
        if acks_all && (st.isr.len() as i32) < st.min_insync_replicas {
            return Err((
                codes::NOT_ENOUGH_REPLICAS,
                format!(
                    "ISR {:?} is smaller than min.insync.replicas {}",
                    st.isr, st.min_insync_replicas
                ),
            ));
        }
        self.append_in_epoch(st, |l, epoch| l.append(batches, epoch, now_ms))
    }

    /// Run `append` on the log at the current leader epoch, then move the
    /// HW and wake fetches and acks=all waiters. Returns the append and the
    /// epoch it was made in.
    fn append_in_epoch(
        &self,
        mut st: std::sync::MutexGuard<'_, ReplicaState>,
        append: impl FnOnce(
            &mut crate::log::PartitionLog,
            i32,
        ) -> Result<AppendInfo, crate::log::LogError>,
    ) -> Result<(AppendInfo, i32), (Code, String)> {
        let epoch = st.leader_epoch;
        let info = self
            .log
            .with_log(|l| append(l, epoch))
            .map_err(|e| (e.error_code(), e.to_string()))?;
        let moved = self
            .maybe_increment_hw(&mut st)
            .map_err(|c| (c, "log unavailable".to_string()))?;
        drop(st);
        self.log.notify_appended();
        if moved {
            self.changed.notify_waiters();
        }
        Ok((info, epoch))
    }

    /// Leader: write the marker ending `producer_id`'s transaction here (for
    /// the transaction coordinator's WriteTxnMarkers), stamped with the
    /// leader epoch. Returns the append and its epoch, to wait on the HW as
    /// acks=all does.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: crate::log::txn::TxnMarker,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32), (Code, String)> {
        let st = self.lock();
        if st.role != Role::Leader {
            return Err((
                codes::NOT_LEADER_OR_FOLLOWER,
                "this broker is not the partition leader".into(),
            ));
        }
        self.append_in_epoch(st, |l, epoch| {
            l.append_marker(producer_id, producer_epoch, marker, epoch, now_ms)
        })
    }

    /// acks=all: wait until the HW passes `last_offset` (NONE), the
    /// leadership of `epoch` ends (NOT_LEADER_OR_FOLLOWER), the ISR is
    /// below min.insync.replicas (NOT_ENOUGH_REPLICAS_AFTER_APPEND), or
    /// `timeout` (REQUEST_TIMED_OUT).
    pub async fn wait_for_hw(
        &self,
        last_offset: i64,
        epoch: i32,
        timeout: crate::env::time::Duration,
    ) -> Code {
        let deadline = crate::env::time::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(code) = self.hw_status(last_offset, epoch) {
                return code;
            }
            let remaining = deadline.saturating_duration_since(crate::env::time::now());
            if remaining.is_zero() {
                return codes::REQUEST_TIMED_OUT;
            }
            let _ = crate::env::time::timeout(remaining, notified).await;
        }
    }

    /// What [`Partition::wait_for_hw`] would answer now, or None while it
    /// would still wait.
    pub fn hw_status(&self, last_offset: i64, epoch: i32) -> Option<Code> {
        let st = self.lock();
        if st.role != Role::Leader || st.leader_epoch != epoch {
            return Some(codes::NOT_LEADER_OR_FOLLOWER);
        }
        if (st.isr.len() as i32) < st.min_insync_replicas {
            return Some(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
        }
        (st.high_watermark > last_offset).then_some(codes::NONE)
    }

    /// Leader-side epoch check of a client request (KIP-320): an older
    /// epoch is fenced, a newer one not known here yet.
    fn check_epoch(st: &ReplicaState, current_leader_epoch: i32) -> Result<(), Code> {
        if current_leader_epoch < 0 || current_leader_epoch == st.leader_epoch {
            Ok(())
        } else if current_leader_epoch < st.leader_epoch {
            Err(codes::FENCED_LEADER_EPOCH)
        } else {
            Err(codes::UNKNOWN_LEADER_EPOCH)
        }
    }

    /// Consumer fetch: batches below the HW, or with `read_committed`
    /// below the last stable offset (the HW, or the first offset of the
    /// earliest open transaction if lower), with the aborted transactions
    /// the reader must filter out.
    pub fn read_for_consumer(
        &self,
        fetch_offset: i64,
        current_leader_epoch: i32,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<ConsumerRead, Code> {
        let st = self.lock();
        Self::check_epoch(&st, current_leader_epoch)?;
        if st.role != Role::Leader {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        let hw = st.high_watermark;
        self.log
            .with_log(|l| {
                let lso = l.first_unstable_offset().map_or(hw, |f| f.min(hw));
                let upper = if read_committed { lso } else { hw };
                let slice = l.read_below(fetch_offset, upper, max_bytes, min_one_batch)?;
                let aborted = if read_committed && !slice.records.is_empty() {
                    l.aborted_transactions(fetch_offset, upper)
                } else {
                    Vec::new()
                };
                Ok(ConsumerRead {
                    high_watermark: hw,
                    last_stable_offset: lso,
                    log_start_offset: l.log_start_offset(),
                    records: slice.records,
                    aborted,
                })
            })
            .map_err(log_code)
    }

    /// Leader: serve a follower's fetch. Updates its progress, checks for a
    /// divergent log (KIP-320), reads up to the LEO. Returns the answer and
    /// an AlterPartition to send if the ISR should grow.
    pub fn fetch_from_follower(
        &self,
        replica_id: i32,
        broker_epoch: i64,
        p: &FetchPartition,
        max_bytes: usize,
        min_one_batch: bool,
        now_ms: i64,
    ) -> (FetchedPartition, Option<ControllerRequest>) {
        let mut out = FetchedPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            error_code: codes::NONE,
            high_watermark: -1,
            log_start_offset: -1,
            leader_epoch: -1,
            diverging_epoch: None,
            records: Bytes::new(),
        };
        let mut st = self.lock();
        out.leader_epoch = st.leader_epoch;
        if let Err(c) = Self::check_epoch(&st, p.current_leader_epoch) {
            out.error_code = c;
            return (out, None);
        }
        if st.role != Role::Leader {
            out.error_code = codes::NOT_LEADER_OR_FOLLOWER;
            return (out, None);
        }
        if !st.replicas.contains(&replica_id) {
            out.error_code = codes::NOT_LEADER_OR_FOLLOWER;
            return (out, None);
        }
        let hw = st.high_watermark;
        out.high_watermark = hw;
        let read = self.log.with_log(|l| {
            let leo = l.log_end_offset();
            let start = l.log_start_offset();
            if p.last_fetched_epoch >= 0 {
                let (epoch, end) = l.end_offset_for_epoch(p.last_fetched_epoch);
                if epoch < p.last_fetched_epoch || end < p.fetch_offset {
                    return Ok((leo, start, Some((epoch, end)), Bytes::new()));
                }
            }
            if p.fetch_offset < start || p.fetch_offset > leo {
                return Err(LogError::OffsetOutOfRange {
                    offset: p.fetch_offset,
                    start,
                    end: leo,
                });
            }
            let slice = l.read(p.fetch_offset, max_bytes, min_one_batch)?;
            Ok((leo, start, None, slice.records))
        });
        let (leo, start, diverging, records) = match read {
            Ok(r) => r,
            Err(e) => {
                out.error_code = e.error_code();
                out.log_start_offset = self
                    .log
                    .with_log(|l| Ok(l.log_start_offset()))
                    .unwrap_or(-1);
                return (out, None);
            }
        };
        out.log_start_offset = start;
        if let Some(d) = diverging {
            out.diverging_epoch = Some(d);
            return (out, None);
        }
        out.records = records;
        // Progress: the fetch offset is the follower's LEO.
        if let Some(f) = st.followers.get_mut(&replica_id) {
            if p.fetch_offset >= leo {
                f.last_caught_up_ms = now_ms;
            } else if p.fetch_offset >= f.last_fetch_leader_leo && f.last_fetch_leader_leo >= 0 {
                f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
            }
            f.last_fetch_leader_leo = leo;
            f.last_fetch_ms = now_ms;
            f.leo = p.fetch_offset;
        }
        let moved = self.maybe_increment_hw(&mut st).unwrap_or(false);
        out.high_watermark = st.high_watermark;
        let alter = self.maybe_expand_isr(&mut st, replica_id, broker_epoch);
        drop(st);
        if moved {
            self.wake();
        }
        (out, alter)
    }

    fn maybe_expand_isr(
        &self,
        st: &mut ReplicaState,
        replica_id: i32,
        broker_epoch: i64,
    ) -> Option<ControllerRequest> {
        if st.pending_isr.is_some() || st.isr.contains(&replica_id) {
            return None;
        }
        let f = st.followers.get(&replica_id)?;
        if f.leo < st.high_watermark || f.leo < st.leader_epoch_start_offset {
            return None;
        }
        let new_isr: Vec<i32> = st
            .replicas
            .iter()
            .copied()
            .filter(|r| st.isr.contains(r) || *r == replica_id)
            .collect();
        tracing::info!(topic = %self.topic, partition = self.index, replica_id, ?new_isr, "expanding ISR");
        Some(self.propose_isr(st, new_isr, broker_epoch))
    }

    /// Leader: drop ISR members that have not caught up for `lag_time_max_ms`.
    pub fn maybe_shrink_isr(
        &self,
        now_ms: i64,
        lag_time_max_ms: i64,
        broker_epoch: i64,
    ) -> Option<ControllerRequest> {
        let mut st = self.lock();
        if st.role != Role::Leader || st.pending_isr.is_some() {
            return None;
        }
        let lagging: Vec<i32> = st
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.node_id)
            .filter(|r| {
                st.followers
                    .get(r)
                    .is_none_or(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_time_max_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = st
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        tracing::info!(topic = %self.topic, partition = self.index, ?lagging, ?new_isr, "shrinking ISR");
        Some(self.propose_isr(&mut st, new_isr, broker_epoch))
    }

    fn propose_isr(
        &self,
        st: &mut ReplicaState,
        new_isr: Vec<i32>,
        broker_epoch: i64,
    ) -> ControllerRequest {
        st.pending_isr = Some(new_isr.clone());
        ControllerRequest::AlterPartition {
            broker: self.node_id,
            broker_epoch,
            topic: self.topic.clone(),
            partition: self.index,
            leader_epoch: st.leader_epoch,
            partition_epoch: st.partition_epoch,
            new_isr,
        }
    }

    /// The controller's answer to our AlterPartition (None: no answer).
    pub fn on_alter_response(&self, sent_leader_epoch: i32, resp: Option<ControllerResponse>) {
        let mut st = self.lock();
        if st.leader_epoch != sent_leader_epoch || st.role != Role::Leader {
            return;
        }
        st.pending_isr = None;
        match resp {
            Some(ControllerResponse::Partition(reg)) => {
                if reg.leader_epoch == st.leader_epoch && reg.partition_epoch > st.partition_epoch {
                    st.partition_epoch = reg.partition_epoch;
                    st.replicas = reg.replicas.clone();
                    st.isr = reg.isr.clone();
                    tracing::info!(topic = %self.topic, partition = self.index, isr = ?st.isr, "ISR changed");
                }
            }
            other => {
                tracing::debug!(topic = %self.topic, partition = self.index, resp = ?other, "AlterPartition not applied");
            }
        }
        let _ = self.maybe_increment_hw(&mut st);
        drop(st);
        self.wake();
    }

    /// Follower: what to fetch next (None unless following `leader`).
    pub fn fetch_request(&self, leader: i32, max_bytes: i32) -> Option<FetchPartition> {
        let st = self.lock();
        if st.role != (Role::Follower { leader }) {
            return None;
        }
        let (leo, start, last_epoch) = self
            .log
            .with_log(|l| Ok((l.log_end_offset(), l.log_start_offset(), l.latest_epoch())))
            .ok()?;
        Some(FetchPartition {
            topic: self.topic.clone(),
            topic_id: self.topic_id,
            partition: self.index,
            current_leader_epoch: st.leader_epoch,
            fetch_offset: leo,
            last_fetched_epoch: last_epoch.unwrap_or(-1),
            log_start_offset: start,
            max_bytes,
        })
    }

    /// Follower: apply the leader's answer to `sent`. Returns the error
    /// code that should make the fetcher back off (NONE otherwise).
    pub fn apply_fetched(&self, sent: &FetchPartition, r: &FetchedPartition, now_ms: i64) -> Code {
        let mut st = self.lock();
        if !matches!(st.role, Role::Follower { .. }) || st.leader_epoch != sent.current_leader_epoch
        {
            return codes::NONE; // leadership changed meanwhile: stale answer
        }
        let hw_before = st.high_watermark;
        let result = self.log.with_log(|l| {
            if l.log_end_offset() != sent.fetch_offset {
                return Ok(codes::NONE); // the log changed meanwhile: refetch
            }
            if let Some((epoch, end)) = r.diverging_epoch {
                let target = if end == UNDEFINED_OFFSET {
                    st.high_watermark
                } else {
                    let (fe, fend) = l.end_offset_for_epoch(epoch);
                    if fe == epoch {
                        end.min(fend)
                    } else if fe >= 0 {
                        fend.min(l.log_end_offset())
                    } else {
                        l.log_start_offset()
                    }
                };
                let target = target.max(l.log_start_offset());
                tracing::info!(topic = %self.topic, partition = self.index, epoch, end, target, leo = l.log_end_offset(), "truncating a divergent log suffix");
                l.truncate_to(target)?;
                return Ok(codes::NONE);
            }
            match r.error_code {
                codes::NONE => {
                    if !r.records.is_empty() {
                        // A leader log start inside a batch (DeleteRecords)
                        // hands an empty follower that whole batch: start
                        // over at its base, as Kafka does; the log start
                        // moves up to the leader's just below.
                        let leo = l.log_end_offset();
                        if let Ok(first) = BatchHeader::parse(&r.records) {
                            if leo == l.log_start_offset()
                                && first.base_offset < leo
                                && first.last_offset() >= leo
                            {
                                l.truncate_fully_and_start_at(first.base_offset)?;
                            }
                        }
                        l.append_as_follower(&r.records, now_ms)?;
                    }
                    if r.log_start_offset > l.log_start_offset() {
                        let upto = r.log_start_offset.min(st.high_watermark.max(r.high_watermark).min(l.log_end_offset()));
                        if upto > l.log_start_offset() {
                            l.delete_records_before(upto, upto)?;
                        }
                    }
                    Ok(codes::NONE)
                }
                codes::OFFSET_OUT_OF_RANGE => {
                    if r.log_start_offset >= 0 && sent.fetch_offset < r.log_start_offset {
                        tracing::info!(topic = %self.topic, partition = self.index, start = r.log_start_offset, "behind the leader's log start: starting over there");
                        l.truncate_fully_and_start_at(r.log_start_offset)?;
                    } else if r.high_watermark >= 0
                        && r.high_watermark < l.log_end_offset()
                        && r.high_watermark >= l.log_start_offset()
                    {
                        l.truncate_to(r.high_watermark)?;
                    }
                    Ok(codes::NONE)
                }
                other => Ok(other),
            }
        });
        let code = match result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "applying fetched data failed");
                e.error_code()
            }
        };
        let leo = self.log.with_log(|l| Ok(l.log_end_offset())).unwrap_or(0);
        let leader_hw = if r.error_code == codes::NONE && r.diverging_epoch.is_none() {
            r.high_watermark
        } else {
            -1
        };
        st.high_watermark = st.high_watermark.max(leader_hw).min(leo);
        let moved = st.high_watermark != hw_before;
        drop(st);
        if moved {
            self.wake();
        }
        code
    }

    /// ListOffsets on the leader: LATEST = HW (the last stable offset for
    /// `read_committed`), EARLIEST = log start, timestamps only below the
    /// HW. Returns (offset, timestamp, epoch).
    pub fn list_offset(
        &self,
        timestamp: i64,
        current_leader_epoch: i32,
        read_committed: bool,
    ) -> Result<Option<(i64, i64, i32)>, Code> {
        const LATEST: i64 = -1;
        const EARLIEST: i64 = -2;
        const MAX_TIMESTAMP: i64 = -3;
        let st = self.lock();
        Self::check_epoch(&st, current_leader_epoch)?;
        if st.role != Role::Leader {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        let hw = st.high_watermark;
        self.log
            .with_log(|l| {
                let epoch_of = |off: i64| l.epoch_for_offset(off).unwrap_or(-1);
                let latest = match l.first_unstable_offset() {
                    Some(first) if read_committed => first.min(hw),
                    _ => hw,
                };
                Ok(match timestamp {
                    LATEST => Some((latest, -1, l.latest_epoch().unwrap_or(-1))),
                    EARLIEST => {
                        let start = l.log_start_offset();
                        Some((start, -1, epoch_of(start)))
                    }
                    MAX_TIMESTAMP => l
                        .max_timestamp()
                        .filter(|&(_, off)| off < hw)
                        .map(|(ts, off)| (off, ts, epoch_of(off))),
                    ts if ts >= 0 => l
                        .offset_for_timestamp(ts)?
                        .filter(|&(off, _)| off < hw)
                        .map(|(off, ts)| (off, ts, epoch_of(off))),
                    _ => None,
                })
            })
            .map_err(log_code)
    }

    /// OffsetForLeaderEpoch on the leader: (epoch, end offset) as Kafka.
    pub fn end_offset_for_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), Code> {
        let st = self.lock();
        Self::check_epoch(&st, current_leader_epoch)?;
        if st.role != Role::Leader {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        self.log
            .with_log(|l| Ok(l.end_offset_for_epoch(epoch)))
            .map_err(log_code)
    }

    /// DeleteRecords on the leader, bounded by the HW. Returns the new log
    /// start. (Followers move theirs when they next fetch.)
    pub fn delete_records(&self, offset: i64) -> Result<i64, Code> {
        let st = self.lock();
        if st.role != Role::Leader {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        let hw = st.high_watermark;
        self.log
            .with_log(|l| l.delete_records_before(offset, hw))
            .map_err(log_code)
    }

    /// Wake every waiter (leadership lost: stopping or deleting the replica).
    pub fn stop(&self) {
        let mut st = self.lock();
        st.role = Role::Follower { leader: NO_LEADER };
        st.leader_epoch = i32::MAX;
        drop(st);
        self.wake();
    }

    /// The current state (tests, diagnostics).
    pub fn with_state<R>(&self, f: impl FnOnce(&ReplicaState) -> R) -> R {
        f(&self.lock())
    }
}
