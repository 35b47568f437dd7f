//! The raft driver: one task owns a raft-rs `RawNode` over [`RaftStorage`] and
//! does its I/O (ticks, messages, persistence, applying to the state machine).
//!
//! raft-rs is an I/O-free state machine; this module is the thin async shell
//! around it. One task, so raft state is never shared: everything else talks
//! to it through a bounded channel and reads the leader, role and applied
//! index it publishes.
//!
//! Ready handling follows raft-rs's documented order: send the leader's
//! immediate messages, install a snapshot, apply committed entries, persist
//! new entries and the hard state (synced), then send the messages that
//! depend on them, advance, and handle the light ready the same way.
//!
//! Determinism: raft-rs draws election timeouts from rand's unseeded
//! thread-local generator unless the range has one value, so
//! min_election_tick = election_tick and max_election_tick =
//! election_tick + 1, with election_tick drawn by the caller from the
//! seeded rng. raft ids are Kafka node ids + 1 (raft-rs
//! reserves 0); only this module and the transport see raft ids.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole, Storage as _};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::raft_storage::{RaftStorage, RaftStorageError};
use super::transport::{encode_frame, FRAME_BYTES_MAX, FRAME_KIND_RAFT};
use crate::env::disk::Disk;
use crate::env::time::{sleep, timeout, Duration};

/// Inputs (peer messages, proposals, transport feedback) queued for the
/// driver at most; raft messages past it are dropped (raft retransmits).
const INPUT_QUEUE_MAX: usize = 4096;
/// Outbound messages queued per peer at most; more are dropped.
const PEER_QUEUE_MAX: usize = 1024;
/// Largest message batch the driver hands raft per entry.
const MSG_BYTES_MAX: u64 = 1024 * 1024;
/// Appends in flight per follower.
const INFLIGHT_MSGS_MAX: usize = 256;
/// Reconnect backoff to a peer.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// A write to a peer taking longer than this drops the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The replicated state: raft entries are applied to it in order.
pub trait StateMachine: Send + 'static {
    /// A committed normal entry with non-empty data, in index order, exactly
    /// once per process lifetime after the last restore (raft's own empty
    /// entries are not passed).
    fn apply(&mut self, index: u64, data: &[u8]);
    /// The state as of the last applied index (used to compact the raft log).
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the state with a snapshot taken at `index`.
    fn restore(&mut self, index: u64, data: &[u8]);
}

/// How to run one raft member.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// Kafka node id of this member.
    pub node_id: i32,
    /// Kafka node id and "host:port" of each voter's controller listener,
    /// this node included (its own address is never dialled, so a single
    /// voter may leave it empty). Only a fresh log takes its configuration
    /// from here; a restarted node keeps the one in its raft state.
    pub voters: Vec<(i32, String)>,
    /// `<first log dir>/__cluster_metadata-0`.
    pub dir: PathBuf,
    /// Milliseconds per raft tick (100).
    pub tick_ms: u64,
    /// Ticks without a leader before campaigning; drawn by the caller from
    /// the seeded rng (e.g. 10..=20).
    pub election_tick: usize,
    /// Ticks between leader heartbeats (2).
    pub heartbeat_tick: usize,
    /// Compact the raft log after this many applied entries (1000).
    pub snapshot_interval_entries: u64,
}

/// Why a raft member could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error(transparent)]
    Storage(#[from] RaftStorageError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("bad raft configuration: {0}")]
    Config(String),
}

/// Why a proposal did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not (or stopped being) the leader; `leader` is the Kafka
    /// node id of the leader it knows of. A proposal that failed this way
    /// after it was accepted may still commit under the next leader.
    #[error("not the raft leader (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
}

enum Input {
    Step(Message),
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    Unreachable(u64),
    SnapshotStatus(u64, SnapshotStatus),
}

struct Shared {
    raft_id: u64,
    inputs: mpsc::Sender<Input>,
    /// raft id of the known leader, 0 for none.
    leader: AtomicU64,
    /// The current raft term.
    term: AtomicU64,
    is_leader: AtomicBool,
    applied: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A handle on a running raft member; cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &to_node_id(self.shared.raft_id))
            .field("leader", &self.leader())
            .finish()
    }
}

fn to_raft_id(node_id: i32) -> u64 {
    assert!(node_id >= 0, "raft ids: Kafka node ids are non-negative");
    node_id as u64 + 1
}

fn to_node_id(raft_id: u64) -> Option<i32> {
    if raft_id == 0 {
        None
    } else {
        Some((raft_id - 1) as i32)
    }
}

fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl RaftNode {
    /// Open storage (recovering after a crash), start the tick/ready loop and
    /// peer senders. Must be called inside a tokio runtime.
    pub fn start<S: StateMachine>(
        cfg: RaftConfig,
        disk: Arc<dyn Disk>,
        sm: Arc<Mutex<S>>,
    ) -> Result<RaftNode, RaftError> {
        let raft_id = to_raft_id(cfg.node_id);
        let mut voter_ids: Vec<u64> = cfg.voters.iter().map(|(id, _)| to_raft_id(*id)).collect();
        voter_ids.sort_unstable();
        voter_ids.dedup();
        if voter_ids.len() != cfg.voters.len() {
            return Err(RaftError::Config("duplicate voter id".into()));
        }
        if !voter_ids.contains(&raft_id) {
            return Err(RaftError::Config(format!(
                "node {} is not among the voters",
                cfg.node_id
            )));
        }
        if cfg.tick_ms == 0 || cfg.election_tick <= cfg.heartbeat_tick {
            return Err(RaftError::Config(
                "need tick_ms > 0 and election_tick > heartbeat_tick".into(),
            ));
        }

        let storage = RaftStorage::open(disk, &cfg.dir, &voter_ids)?;
        let snap = storage.stored_snapshot().clone();
        let snap_index = snap.get_metadata().index;
        if snap_index > 0 {
            lock(&sm).restore(snap_index, &snap.data);
        }
        let raft_cfg = raft::Config {
            id: raft_id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            min_election_tick: cfg.election_tick,
            max_election_tick: cfg.election_tick + 1,
            applied: snap_index,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: MSG_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_MSGS_MAX,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let mut raw = RawNode::new(&raft_cfg, storage, &discard_logger())?;
        let single_voter = voter_ids.len() == 1;
        if single_voter {
            // A one-voter group elects itself at once.
            raw.campaign()?;
        }

        let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_QUEUE_MAX);
        let (applied_tx, applied_rx) = watch::channel(snap_index);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            raft_id,
            inputs: inputs_tx.clone(),
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            applied: applied_rx,
            stop: stop_tx,
            tasks: Mutex::new(Vec::new()),
        });

        let mut tasks = Vec::new();
        let mut peers = BTreeMap::new();
        let mut voters = cfg.voters.clone();
        voters.sort();
        for (node_id, addr) in voters {
            let id = to_raft_id(node_id);
            if id == raft_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            peers.insert(id, tx);
            tasks.push(tokio::spawn(peer_sender(id, addr, rx, inputs_tx.clone())));
        }
        drop(inputs_tx);

        let driver = Driver {
            raw,
            sm,
            shared: shared.clone(),
            peers,
            pending: BTreeMap::new(),
            applied_tx,
            tick: Duration::from_millis(cfg.tick_ms),
            snapshot_interval_entries: cfg.snapshot_interval_entries.max(1),
            role: (StateRole::Follower, 0),
        };
        tasks.push(tokio::spawn(driver.run(inputs_rx, stop_rx)));
        *lock(&shared.tasks) = tasks;
        Ok(RaftNode { shared })
    }

    /// Resolves once the entry is committed AND applied to the state machine;
    /// returns its index. Err(NotLeader) if this node is not (or stops being)
    /// the leader before that.
    pub async fn propose(&self, data: Vec<u8>) -> Result<u64, ProposeError> {
        let (reply, rx) = oneshot::channel();
        let not_leader = || ProposeError::NotLeader {
            leader: self.leader().filter(|_| !*self.shared.stop.borrow()),
        };
        if self
            .shared
            .inputs
            .send(Input::Propose { data, reply })
            .await
            .is_err()
        {
            return Err(not_leader());
        }
        rx.await.unwrap_or_else(|_| Err(not_leader()))
    }

    /// Kafka node id of the known leader.
    pub fn leader(&self) -> Option<i32> {
        to_node_id(self.shared.leader.load(Ordering::Acquire))
    }

    /// The current raft term (an addition to the cluster.md interface: a
    /// leader's term orders its decisions, and tests record elections).
    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Acquire)
    }

    /// Whether this node is the raft leader now.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader.load(Ordering::Acquire)
    }

    /// The last applied index, updated after each applied batch.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.clone()
    }

    /// Deliver a raft message received from a peer (called by the
    /// transport). Dropped if the driver is backed up: raft retransmits.
    pub fn step(&self, msg: raft::eraftpb::Message) {
        if msg.to != self.shared.raft_id {
            return;
        }
        let _ = self.shared.inputs.try_send(Input::Step(msg));
    }

    /// Stop the driver and the peer senders; pending proposals fail with
    /// NotLeader. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.shared.stop.send(true);
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        // The driver is last; wait for it so its storage is closed, then
        // stop the senders.
        let mut tasks = tasks;
        if let Some(driver) = tasks.pop() {
            let _ = driver.await;
        }
        for t in tasks {
            t.abort();
        }
        self.shared.is_leader.store(false, Ordering::Release);
        self.shared.leader.store(0, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Driver<S: StateMachine> {
    raw: RawNode<RaftStorage>,
    sm: Arc<Mutex<S>>,
    shared: Arc<Shared>,
    peers: BTreeMap<u64, mpsc::Sender<Message>>,
    /// Accepted proposals by log index: the term they were proposed in and
    /// the caller waiting for them.
    pending: BTreeMap<u64, (u64, oneshot::Sender<Result<u64, ProposeError>>)>,
    applied_tx: watch::Sender<u64>,
    tick: Duration,
    snapshot_interval_entries: u64,
    /// Role and term last published.
    role: (StateRole, u64),
}

impl<S: StateMachine> Driver<S> {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.raw.has_ready() {
                if let Err(e) = self.on_ready() {
                    // A failed write or sync leaves the log unknown (see
                    // env::disk): stop this member; a restart recovers.
                    tracing::error!(error = %e, "raft storage failure: stopping this raft member");
                    break;
                }
            }
            self.publish_role();
            if *stop.borrow() {
                break;
            }
            // Biased: a fixed branch order keeps runs reproducible, and a
            // tick (due once per tick_ms) is never starved by a busy queue.
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                _ = ticker.tick() => {
                    self.raw.tick();
                }
                input = inputs.recv() => {
                    let Some(input) = input else { break };
                    self.on_input(input);
                    // Take what else is queued before the next ready, so a
                    // burst costs one fsync.
                    for _ in 0..INPUT_QUEUE_MAX {
                        match inputs.try_recv() {
                            Ok(input) => self.on_input(input),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        // Stopped (or failed): this member leads nothing any more.
        self.shared.is_leader.store(false, Ordering::Release);
        let leader = self
            .leader_hint()
            .filter(|l| to_raft_id(*l) != self.shared.raft_id);
        self.shared
            .leader
            .store(leader.map_or(0, to_raft_id), Ordering::Release);
        self.fail_pending(leader);
        inputs.close();
        while let Ok(input) = inputs.try_recv() {
            if let Input::Propose { reply, .. } = input {
                let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            }
        }
    }

    fn leader_hint(&self) -> Option<i32> {
        to_node_id(self.raw.raft.leader_id)
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Step(msg) => {
                // Errors are messages from unknown peers or stale terms.
                let _ = self.raw.step(msg);
            }
            Input::Propose { data, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let leader = self.leader_hint();
                    let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                    return;
                }
                match self.raw.propose(Vec::new(), data) {
                    Ok(()) => {
                        let index = self.raw.raft.raft_log.last_index();
                        let term = self.raw.raft.term;
                        self.pending.insert(index, (term, reply));
                    }
                    Err(_) => {
                        let leader = self.leader_hint();
                        let _ = reply.send(Err(ProposeError::NotLeader { leader }));
                    }
                }
            }
            Input::Unreachable(id) => self.raw.report_unreachable(id),
            Input::SnapshotStatus(id, status) => self.raw.report_snapshot(id, status),
        }
    }

    /// Publish leader and role; fail proposals when leadership or term changed.
    fn publish_role(&mut self) {
        let now = (self.raw.raft.state, self.raw.raft.term);
        if now != self.role {
            if self.role.0 == StateRole::Leader {
                let leader = self.leader_hint();
                self.fail_pending(leader);
            }
            tracing::info!(
                node = ?to_node_id(self.shared.raft_id),
                role = ?now.0,
                term = now.1,
                leader = ?self.leader_hint(),
                "raft role changed"
            );
            self.role = now;
        }
        self.shared
            .leader
            .store(self.raw.raft.leader_id, Ordering::Release);
        self.shared.term.store(now.1, Ordering::Release);
        self.shared
            .is_leader
            .store(now.0 == StateRole::Leader, Ordering::Release);
    }

    fn fail_pending(&mut self, leader: Option<i32>) {
        for (_, (_, reply)) in std::mem::take(&mut self.pending) {
            let _ = reply.send(Err(ProposeError::NotLeader { leader }));
        }
    }

    fn on_ready(&mut self) -> Result<(), RaftError> {
        let mut rd = self.raw.ready();
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let index = snap.get_metadata().index;
            self.raw.mut_store().apply_snapshot(snap.clone())?;
            lock(&self.sm).restore(index, &snap.data);
            // Proposals at or below it are covered by the snapshot, so their
            // fate is unknown to this node.
            let later = self.pending.split_off(&(index + 1));
            let covered = std::mem::replace(&mut self.pending, later);
            let leader = self.leader_hint();
            for (_, (_, reply)) in covered {
                let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            }
            self.applied_tx.send_replace(index);
        }
        self.apply(rd.take_committed_entries());
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries())?;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone())?;
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        self.maybe_compact()?;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        {
            let mut sm = lock(&self.sm);
            for e in &entries {
                if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                    sm.apply(e.index, &e.data);
                }
            }
        }
        for e in &entries {
            if let Some((term, reply)) = self.pending.remove(&e.index) {
                let result = if term == e.term {
                    Ok(e.index)
                } else {
                    Err(ProposeError::NotLeader {
                        leader: self.leader_hint(),
                    })
                };
                let _ = reply.send(result);
            }
        }
        self.applied_tx.send_replace(last);
    }

    fn maybe_compact(&mut self) -> Result<(), RaftError> {
        let applied = self.raw.raft.raft_log.applied();
        let snap_index = self.raw.store().first_index()? - 1;
        if applied >= snap_index + self.snapshot_interval_entries {
            let data = lock(&self.sm).snapshot();
            self.raw.mut_store().compact(applied, data)?;
        }
        Ok(())
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let Some(peer) = self.peers.get(&to) else {
                continue;
            };
            if peer.try_send(m).is_err() {
                self.raw.report_unreachable(to);
                if is_snapshot {
                    self.raw.report_snapshot(to, SnapshotStatus::Failure);
                }
            }
        }
    }
}

/// One peer's outbound connection: raft messages as kind-1 frames. While
/// the peer is unreachable, queued messages are dropped (raft retransmits)
/// and raft is told, so it probes instead of streaming.
async fn peer_sender(
    peer: u64,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    inputs: mpsc::Sender<Input>,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let report = |m: &Message, ok: bool| {
        if m.get_msg_type() == MessageType::MsgSnapshot {
            let status = if ok {
                SnapshotStatus::Finish
            } else {
                SnapshotStatus::Failure
            };
            let _ = inputs.try_send(Input::SnapshotStatus(peer, status));
        }
        if !ok {
            let _ = inputs.try_send(Input::Unreachable(peer));
        }
    };
    loop {
        // Connect only when there is something to send.
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                backoff = RECONNECT_BACKOFF_MIN;
                s
            }
            _ => {
                report(&first, false);
                while let Ok(m) = rx.try_recv() {
                    report(&m, false);
                }
                sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        let mut batch = vec![first];
        loop {
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut bytes = Vec::new();
            batch.retain(|m| {
                let payload = m.write_to_bytes().expect("protobuf encode to memory");
                if payload.len() >= FRAME_BYTES_MAX {
                    // Only a snapshot can grow this big; the peer cannot
                    // take it, so it stays behind (loudly) rather than the
                    // sender failing.
                    tracing::error!(
                        peer = ?to_node_id(peer),
                        bytes = payload.len(),
                        "raft message over the frame limit: dropped"
                    );
                    report(m, false);
                    return false;
                }
                bytes.extend_from_slice(&encode_frame(FRAME_KIND_RAFT, &payload));
                true
            });
            // Flush: a simulated stream sends only on flush. A write that
            // hangs (a peer gone without a reset) counts as a failure, so a
            // half-open connection is replaced instead of blocking forever.
            let write = async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            };
            let ok = matches!(timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())));
            for m in &batch {
                report(m, ok);
            }
            if !ok {
                break;
            }
            batch.clear();
            match rx.recv().await {
                Some(m) => batch.push(m),
                None => return,
            }
        }
    }
}
