//! `GroupConsumer`: a member of a consumer group on the classic protocol.
//!
//! The consumer is driven by `poll`, as Kafka's is: each call handles what
//! the heartbeat task reported, drives a join that is under way, commits
//! on the auto-commit interval, and returns records of the partitions it
//! owns. Joins run as a background task on a dedicated coordinator
//! connection (fetches never delay group requests), so `poll` keeps
//! returning records while the group rebalances.
//!
//! Rebalance protocols (`GroupConfig::rebalance_protocol`):
//! - eager: before rejoining, the member commits (auto-commit) and revokes
//!   every partition; it consumes nothing until the new assignment arrives.
//! - cooperative (KIP-429): the member rejoins owning its partitions and
//!   keeps consuming them. When the assignment arrives it revokes only the
//!   partitions it lost (committing them first), then rejoins at once so
//!   the follow-up rebalance hands them to their new owner.
//!
//! Commit ordering: every commit goes over the one coordinator connection,
//! written in call order (`commit_async` returns only after its request is
//! written), the broker handles one request per connection at a time, and
//! async commits are never retried, so a later commit is never overwritten
//! by an earlier one. Before the connection is replaced, commits still in
//! flight on the old one are awaited.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::{GroupId, HeartbeatRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use super::admin::GroupAdmin;
use super::config::GroupConfig;
use super::listener::{NoopListener, RebalanceListener};
use super::membership::{self, Joined, Member};
use crate::client::assignor::RebalanceProtocol;
use crate::client::cluster::Cluster;
use crate::client::connection::Connection;
use crate::client::consumer::{Consumer, OffsetReset};
use crate::client::error::ClientError;
use crate::client::offsets::TopicPartition;
use crate::client::records::ConsumerRecord;
use crate::env::time::{now, sleep, Duration, Instant};

/// Failed joins in a row (coordinator moving, connection lost) before poll
/// gives up and returns the error.
const JOIN_FAILURES_MAX: u32 = 10;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The result of a `commit_async`, to await or drop.
pub struct CommitHandle(JoinHandle<Result<(), ClientError>>);

impl CommitHandle {
    pub async fn wait(self) -> Result<(), ClientError> {
        self.0
            .await
            .unwrap_or_else(|e| Err(ClientError::Protocol(format!("commit task failed: {e}"))))
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Marks the consumer as inside poll until dropped (also when the poll
/// future is cancelled), then stamps the time poll returned.
struct PollMark(Arc<std::sync::Mutex<Option<Instant>>>);

impl PollMark {
    fn enter(last_poll: Arc<std::sync::Mutex<Option<Instant>>>) -> PollMark {
        *last_poll.lock().expect("last poll lock") = None;
        PollMark(last_poll)
    }
}

impl Drop for PollMark {
    fn drop(&mut self) {
        *self.0.lock().expect("last poll lock") = Some(now());
    }
}

pub struct GroupConsumer {
    config: GroupConfig,
    member: Arc<Member>,
    consumer: Consumer,
    admin: GroupAdmin,
    coordinator: Arc<Connection>,
    member_id: String,
    generation: i32,
    /// The assignor the coordinator selected in the last completed join.
    selected: Option<String>,
    /// What this member held last generation (sticky user data, eager).
    previous: Vec<TopicPartition>,
    listener: Box<dyn RebalanceListener>,
    /// Set by the heartbeat task (membership::SIGNAL_*).
    signal: Arc<AtomicU8>,
    heartbeat: Option<JoinHandle<()>>,
    join: Option<JoinHandle<Result<Joined, ClientError>>>,
    join_failures: u32,
    next_auto_commit: Instant,
    /// Async commits not yet known to be finished.
    commits_in_flight: Vec<CommitHandle>,
    /// When the last poll returned; `None` while inside poll (the
    /// heartbeat task enforces max.poll.interval.ms with it).
    last_poll: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl GroupConsumer {
    /// Subscribe to `topics` in `config.group_id`; the first poll completes
    /// the join.
    pub async fn subscribe(
        cluster: Arc<Cluster>,
        config: GroupConfig,
        topics: &[String],
    ) -> Result<GroupConsumer, ClientError> {
        Self::subscribe_with_listener(cluster, config, topics, Box::new(NoopListener)).await
    }

    pub async fn subscribe_with_listener(
        cluster: Arc<Cluster>,
        mut config: GroupConfig,
        topics: &[String],
        listener: Box<dyn RebalanceListener>,
    ) -> Result<GroupConsumer, ClientError> {
        if config.group_id.is_empty() {
            return Err(ClientError::Config("group.id is empty".to_string()));
        }
        if topics.is_empty() {
            return Err(ClientError::Config(
                "subscribe to at least one topic".into(),
            ));
        }
        if config.assignors.is_empty() {
            return Err(ClientError::Config(
                "partition.assignment.strategy names no assignor".into(),
            ));
        }
        // Out-of-range positions follow the same policy as missing commits.
        config.consumer.auto_offset_reset = config.auto_offset_reset;
        let admin = GroupAdmin::new(cluster.clone());
        let coordinator = Self::connect_coordinator(&admin, &cluster, &config).await?;
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let member = Arc::new(Member {
            cluster: cluster.clone(),
            group: config.group_id.clone(),
            instance_id: config.group_instance_id.clone(),
            session_timeout_ms: config.session_timeout.as_millis().min(i32::MAX as u128) as i32,
            rebalance_timeout_ms: config.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
            assignors: config.assignors.clone(),
            rebalance: config.rebalance_protocol(),
            topics,
            retry_backoff: config.consumer.retry_backoff,
        });
        let mut gc = GroupConsumer {
            consumer: Consumer::new(cluster, config.consumer.clone()),
            next_auto_commit: now() + config.auto_commit_interval,
            config,
            member,
            admin,
            coordinator,
            member_id: String::new(),
            generation: -1,
            selected: None,
            previous: Vec::new(),
            listener,
            signal: Arc::new(AtomicU8::new(membership::SIGNAL_NONE)),
            heartbeat: None,
            join: None,
            join_failures: 0,
            commits_in_flight: Vec::new(),
            last_poll: Arc::new(std::sync::Mutex::new(Some(now()))),
        };
        gc.start_join();
        Ok(gc)
    }

    /// A dedicated connection to the coordinator: not the cluster's shared
    /// one, where a long fetch would hold up heartbeats and commits.
    async fn connect_coordinator(
        admin: &GroupAdmin,
        cluster: &Cluster,
        config: &GroupConfig,
    ) -> Result<Arc<Connection>, ClientError> {
        let addr = admin.coordinator_addr(&config.group_id).await?;
        let mut options = cluster.config().connection.clone();
        // A JoinGroup may be held for the whole rebalance timeout.
        options.request_timeout = options
            .request_timeout
            .max(config.rebalance_timeout + Duration::from_secs(5));
        Ok(Arc::new(Connection::connect(&addr, options).await?))
    }

    /// Partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The assignor the group runs (after the first completed join).
    pub fn assignor(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.member.rebalance
    }

    /// Whether enable.auto.commit is on.
    pub fn auto_commit(&self) -> bool {
        self.config.enable_auto_commit
    }

    /// Whether a join is under way.
    pub fn is_rebalancing(&self) -> bool {
        self.join.is_some()
    }

    /// The next offset poll returns for `tp`.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.consumer.position(tp)
    }

    /// Read `tp` from `offset` next.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ClientError> {
        self.consumer.seek(tp, offset)
    }

    /// Records of the owned partitions within `wait` (empty when none came).
    /// Also drives the group: rejoins when the group rebalances, finishes
    /// joins, calls the listener and auto-commits.
    pub async fn poll(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = now() + wait;
        // Inside poll the member is not idle, however long it waits.
        let _polling = PollMark::enter(self.last_poll.clone());
        self.reap_commits();
        self.handle_signal().await;
        self.maybe_auto_commit().await;
        loop {
            let remaining = deadline.saturating_duration_since(now());
            let Some(join) = self.join.as_mut() else {
                return self.consumer.poll(remaining).await;
            };
            // Owned partitions keep flowing while the join is under way
            // (cooperative; eager members own nothing by now).
            let finished = tokio::select! {
                biased;
                r = join => r,
                records = self.consumer.poll(remaining) => return records,
            };
            self.join = None;
            let joined = finished
                .unwrap_or_else(|e| Err(ClientError::Protocol(format!("join task failed: {e}"))));
            self.finish_join(joined).await?;
            if deadline.saturating_duration_since(now()).is_zero() {
                return Ok(Vec::new());
            }
        }
    }

    /// Poll until a join completed and this member holds an assignment
    /// (possibly empty), discarding nothing: records polled meanwhile are
    /// returned.
    pub async fn poll_until_joined(
        &mut self,
        limit: Duration,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = now() + limit;
        let mut out = Vec::new();
        while self.join.is_some() || self.generation < 0 {
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Err(ClientError::Timeout {
                    what: format!("joining group {}", self.config.group_id),
                    ms: limit.as_millis() as u64,
                });
            }
            out.extend(self.poll(left.min(Duration::from_millis(100))).await?);
        }
        Ok(out)
    }

    /// React to what the heartbeat task reported.
    async fn handle_signal(&mut self) {
        if self.join.is_some() {
            return;
        }
        match self.signal.swap(membership::SIGNAL_NONE, Ordering::SeqCst) {
            membership::SIGNAL_NONE => {}
            membership::SIGNAL_FENCED => {
                self.lose_all();
                if self.config.group_instance_id.is_none() {
                    self.member_id.clear();
                }
                self.generation = -1;
                self.start_join();
            }
            membership::SIGNAL_STALE => {
                self.lose_all();
                self.generation = -1;
                self.start_join();
            }
            _ => {
                if self.member.rebalance == RebalanceProtocol::Eager {
                    let owned = self.consumer.assignment();
                    self.revoke(&owned).await;
                }
                self.start_join();
            }
        }
    }

    /// Begin a join in the background with what this member owns now.
    fn start_join(&mut self) {
        self.stop_heartbeat();
        self.signal.store(membership::SIGNAL_NONE, Ordering::SeqCst);
        let owned = match self.member.rebalance {
            RebalanceProtocol::Cooperative => self.consumer.assignment(),
            RebalanceProtocol::Eager => self.previous.clone(),
        };
        let member = self.member.clone();
        let conn = self.coordinator.clone();
        let member_id = self.member_id.clone();
        let generation = self.generation;
        self.join = Some(tokio::spawn(async move {
            member.join(conn, member_id, owned, generation).await
        }));
    }

    async fn finish_join(
        &mut self,
        joined: Result<Joined, ClientError>,
    ) -> Result<(), ClientError> {
        let joined = match joined {
            Ok(j) => j,
            Err(e) if membership::is_fenced(&e) => {
                tracing::info!(group = %self.config.group_id, error = %e, "fenced while joining");
                self.lose_all();
                if e.code() == Some(membership::codes::UNKNOWN_MEMBER_ID)
                    && self.config.group_instance_id.is_none()
                {
                    self.member_id.clear();
                }
                self.generation = -1;
                self.start_join();
                return Ok(());
            }
            Err(e) if membership::is_coordinator_error(&e) || e.is_retriable() => {
                self.join_failures += 1;
                if self.join_failures > JOIN_FAILURES_MAX {
                    return Err(e);
                }
                tracing::info!(group = %self.config.group_id, error = %e, "join failed; retrying");
                sleep(self.config.consumer.retry_backoff).await;
                if let Err(e) = self.reconnect_coordinator().await {
                    tracing::info!(error = %e, "coordinator lookup failed");
                }
                self.start_join();
                return Ok(());
            }
            Err(e) => {
                // Reported now; the next poll tries again (and reports
                // again if nothing changed), as Kafka's consumer does.
                self.signal
                    .store(membership::SIGNAL_REJOIN, Ordering::SeqCst);
                return Err(e);
            }
        };
        self.join_failures = 0;
        self.member_id = joined.member_id;
        self.generation = joined.generation;
        self.selected = Some(joined.protocol);
        let owned: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let assigned: BTreeSet<TopicPartition> = joined.assignment.iter().cloned().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
        let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
        if !revoked.is_empty() {
            // Only under the cooperative protocol (eager revoked it all
            // before joining): give up what moves, then rejoin so the
            // follow-up rebalance hands it over.
            self.revoke(&revoked).await;
        }
        self.consumer.assign(&joined.assignment);
        self.previous = joined.assignment;
        // Whatever a commit reported during the join is about the old
        // generation.
        self.signal.store(membership::SIGNAL_NONE, Ordering::SeqCst);
        self.start_heartbeat();
        let positioned = self.position_new(&added).await;
        self.listener.on_partitions_assigned(&added);
        tracing::info!(
            group = %self.config.group_id,
            member = %self.member_id,
            generation = self.generation,
            ?revoked,
            ?added,
            "joined"
        );
        if !revoked.is_empty() && self.member.rebalance == RebalanceProtocol::Cooperative {
            self.start_join();
        }
        positioned
    }

    /// Start newly assigned partitions at the group's committed offsets,
    /// or where auto.offset.reset says.
    async fn position_new(&mut self, added: &[TopicPartition]) -> Result<(), ClientError> {
        if added.is_empty() {
            return Ok(());
        }
        let committed =
            membership::fetch_committed(&self.coordinator, &self.config.group_id, added).await?;
        let mut uncommitted = Vec::new();
        for tp in added {
            match committed.get(tp) {
                Some(&o) => self.consumer.seek(tp, o)?,
                None => uncommitted.push(tp.clone()),
            }
        }
        if uncommitted.is_empty() {
            return Ok(());
        }
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => self.consumer.seek_to_beginning(&uncommitted).await,
            OffsetReset::Latest => self.consumer.seek_to_end(&uncommitted).await,
            OffsetReset::None => Err(ClientError::NoOffsetForPartition {
                topic: uncommitted[0].0.clone(),
                partition: uncommitted[0].1,
            }),
        }
    }

    /// Give up `partitions` in an orderly way: commit their positions
    /// (auto-commit), tell the listener, stop fetching them.
    async fn revoke(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        if self.config.enable_auto_commit {
            let offsets = self.positions(partitions);
            if let Err(e) = self.commit_sync(&offsets).await {
                tracing::warn!(group = %self.config.group_id, error = %e, "commit before revocation failed");
            }
        }
        self.listener.on_partitions_revoked(partitions);
        let keep: Vec<TopicPartition> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| !partitions.contains(tp))
            .collect();
        self.consumer.assign(&keep);
    }

    /// Drop every partition without committing: this member was fenced.
    fn lose_all(&mut self) {
        let owned = self.consumer.assignment();
        if !owned.is_empty() {
            self.listener.on_partitions_lost(&owned);
        }
        self.consumer.assign(&[]);
        self.previous.clear();
    }

    fn positions(&self, partitions: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
        partitions
            .iter()
            .filter_map(|tp| self.consumer.position(tp).map(|p| (tp.clone(), p)))
            .collect()
    }

    /// The position of every owned partition (what the next poll returns
    /// from): what an auto-commit commits.
    pub fn current_positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.positions(&self.consumer.assignment())
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.join.is_some() || self.generation < 0 {
            return;
        }
        if now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = now() + self.config.auto_commit_interval;
        let offsets = self.current_positions();
        if offsets.is_empty() {
            return;
        }
        match self.commit_async(&offsets).await {
            Ok(h) => self.commits_in_flight.push(h),
            Err(e) => {
                tracing::warn!(group = %self.config.group_id, error = %e, "auto-commit failed")
            }
        }
    }

    /// Forget finished async commits (their results went to whoever held
    /// the handle; auto-commit results are best effort).
    fn reap_commits(&mut self) {
        self.commits_in_flight.retain(|h| !h.is_finished());
    }

    /// Commit the positions of every owned partition and wait.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let offsets = self.current_positions();
        self.commit_sync(&offsets).await
    }

    /// Commit `offsets` (next offset to read per partition) and wait for
    /// the coordinator's answer. Under a rebalance the coordinator refuses
    /// (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION); a fenced member then
    /// rejoins on the next poll.
    pub async fn commit_sync(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ClientError> {
        let h = self.commit_async(offsets).await?;
        h.wait().await
    }

    /// Send a commit of `offsets` and return once it is written; the handle
    /// gives its result. Commits reach the coordinator in call order.
    pub async fn commit_async(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<CommitHandle, ClientError> {
        if offsets.is_empty() {
            return Ok(CommitHandle(tokio::spawn(async { Ok(()) })));
        }
        if self.generation < 0 {
            // Not in the group yet (or fenced): a commit now would be a
            // generation -1 "simple" commit, which is not what the caller means.
            return Err(ClientError::kafka(membership::codes::UNKNOWN_MEMBER_ID));
        }
        let req = membership::commit_request(
            &self.config.group_id,
            &self.member_id,
            self.config.group_instance_id.as_deref(),
            self.generation,
            offsets,
        );
        let pending = self.coordinator.start(&req).await?;
        let signal = self.signal.clone();
        let handle = CommitHandle(tokio::spawn(async move {
            let r = pending.wait().await?;
            let result = membership::commit_result(&r);
            if let Err(e) = &result {
                if e.code() == Some(membership::codes::UNKNOWN_MEMBER_ID) {
                    let _ = signal.compare_exchange(
                        membership::SIGNAL_NONE,
                        membership::SIGNAL_FENCED,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
            }
            result
        }));
        Ok(handle)
    }

    /// Commits written before this call are answered.
    async fn flush_commits(&mut self) {
        for h in self.commits_in_flight.drain(..) {
            let _ = h.wait().await;
        }
    }

    /// Find the coordinator again and open a new connection to it.
    async fn reconnect_coordinator(&mut self) -> Result<(), ClientError> {
        // Commits on the old connection finish first, so none lands after
        // a later one sent on the new connection.
        self.flush_commits().await;
        self.coordinator =
            Self::connect_coordinator(&self.admin, self.consumer.cluster(), &self.config).await?;
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        self.stop_heartbeat();
        let instance_id = self.config.group_instance_id.as_deref();
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(instance_id.map(s))
            .with_generation_id(self.generation);
        let leave = instance_id.is_none().then(|| {
            membership::leave_request(
                &self.coordinator,
                &self.config.group_id,
                &self.member_id,
                None,
            )
        });
        self.heartbeat = Some(tokio::spawn(membership::heartbeat_loop(
            membership::Heartbeat {
                conn: self.coordinator.clone(),
                req,
                every: self.config.heartbeat_interval,
                last_poll: self.last_poll.clone(),
                poll_interval_max: self.config.rebalance_timeout,
                leave,
                signal: self.signal.clone(),
            },
        )));
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Leave the group: commit the positions (auto-commit), revoke every
    /// partition through the listener, and send LeaveGroup so the
    /// partitions move at once (a static member stays until its session
    /// expires, as in Kafka).
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.stop_heartbeat();
        if let Some(join) = self.join.take() {
            // Our JoinGroup holds the coordinator connection until the
            // rebalance ends; leave on a fresh one.
            join.abort();
            self.reconnect_coordinator().await?;
        }
        let owned = self.consumer.assignment();
        let committed = if self.config.enable_auto_commit && self.generation >= 0 {
            let offsets = self.positions(&owned);
            self.commit_sync(&offsets).await
        } else {
            Ok(())
        };
        self.flush_commits().await;
        if !owned.is_empty() {
            self.listener.on_partitions_revoked(&owned);
        }
        self.consumer.assign(&[]);
        // A static member does not leave: restarting within the session
        // timeout gets its partitions back without a rebalance (KIP-345).
        if self.config.group_instance_id.is_none() {
            self.send_leave().await;
        }
        committed
    }

    /// Leave the group without committing or calling the listener.
    pub async fn leave(mut self) {
        self.stop_heartbeat();
        if let Some(join) = self.join.take() {
            join.abort();
            if self.reconnect_coordinator().await.is_err() {
                return;
            }
        }
        self.send_leave().await;
    }

    async fn send_leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let leave = membership::leave_request(
            &self.coordinator,
            &self.config.group_id,
            &self.member_id,
            self.config.group_instance_id.as_deref(),
        );
        if let Err(e) = self.coordinator.send(&leave).await {
            tracing::info!(group = %self.config.group_id, error = %e, "LeaveGroup failed");
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}
