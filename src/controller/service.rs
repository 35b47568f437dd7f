//! The controller service: the thin async shell around `metadata::control`.
//!
//! - The raft state machine (`MetadataStateMachine`) folds committed
//!   entries (encoded `Vec<MetadataRecord>`) into the `MetadataImage`; its
//!   snapshot is the encoded image.
//! - `ControllerService::handle` answers brokers. Only the active controller
//!   (the raft leader) answers; the others say `NotController { leader }`.
//!   Decisions are serialised by one async mutex: read the image, decide
//!   the records, propose them, wait until they are applied. So a decision
//!   always sees every earlier one.
//! - A timer (`run_timer`) on the active controller fences brokers whose
//!   heartbeats lapsed for broker.session.timeout.ms and retries leader
//!   elections for leaderless partitions.
//!
//! Heartbeat times live in memory only: a controller that becomes active
//! gives every broker a full session from that moment, so a failover never
//! fences brokers that were heartbeating the previous controller.
//!
//! The service knows nothing of raft-rs or sockets: it talks to the quorum
//! through the `Quorum` trait (implemented by `RaftNode`, and by a local
//! in-memory quorum in tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use super::api::{ControllerRequest, ControllerResponse, ItemResult};
use super::raft_node::{ProposeError, RaftNode, StateMachine};
use crate::env::rng::WeirRng;
use crate::env::time::{now, sleep, timeout, Duration, Instant};
use crate::metadata::codec::{decode_image, decode_records, encode_image, encode_records};
use crate::metadata::control::{self, codes, ControlConfig, ControlError, Registration};
use crate::metadata::{MetadataImage, MetadataRecord};

/// How often the active controller checks sessions and leaderless partitions.
pub const TIMER_INTERVAL: Duration = Duration::from_millis(100);
/// The longest FetchImage wait honoured.
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;

/// The metadata image as the raft state machine.
#[derive(Debug, Default)]
pub struct MetadataStateMachine {
    pub image: MetadataImage,
}

impl MetadataStateMachine {
    /// A committed entry. It was encoded by an active controller of this
    /// cluster and checksummed by the raft storage: one that does not decode
    /// is a bug (or an incompatible version), and applying around it would
    /// let controllers diverge, so it stops the process.
    pub fn apply_entry(&mut self, index: u64, data: &[u8]) {
        let records = decode_records(data).unwrap_or_else(|e| {
            panic!("metadata invariant: committed entry {index} decodes ({e})")
        });
        self.image.apply_entry(index, &records);
    }

    pub fn snapshot_bytes(&self) -> Vec<u8> {
        encode_image(&self.image)
    }

    pub fn restore_bytes(&mut self, index: u64, data: &[u8]) {
        let image = decode_image(data).unwrap_or_else(|e| {
            panic!("metadata invariant: the snapshot at {index} decodes ({e})")
        });
        assert!(
            image.offset <= index,
            "metadata invariant: a snapshot's image is not ahead of its index"
        );
        self.image = image;
        // Entries up to the snapshot index are in the image even when the
        // last of them carried no records.
        self.image.offset = index;
    }
}

/// Why a proposal failed: this node is not the leader (the one it knows of).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotLeader {
    pub leader: Option<i32>,
}

/// What the service needs of the metadata quorum.
pub trait Quorum: Send + Sync + 'static {
    /// Resolves once the entry is committed and applied here; its index.
    fn propose(
        &self,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, NotLeader>> + Send + '_>>;
    fn leader(&self) -> Option<i32>;
    fn is_leader(&self) -> bool;
    /// The current raft term: a new leadership has a new term.
    fn term(&self) -> u64;
    /// The last applied raft index.
    fn applied(&self) -> watch::Receiver<u64>;
}

/// State only the decision path touches (under the async mutex).
struct Decider {
    rng: WeirRng,
    /// The term in which a barrier entry of our own applied: from then on
    /// the image holds everything committed before this leadership.
    /// Deciding on an image missing a previous leader's last entries could,
    /// say, create a topic twice.
    caught_up_term: Option<u64>,
}

/// Liveness bookkeeping (in memory, active controller only).
#[derive(Default)]
struct Sessions {
    /// Last heartbeat per broker id, with the epoch it came with.
    last: BTreeMap<i32, (i64, Instant)>,
    /// When this node became the active controller, and in which term.
    leader_since: Option<(u64, Instant)>,
}

pub struct ControllerService {
    node_id: i32,
    quorum: Arc<dyn Quorum>,
    sm: Arc<Mutex<MetadataStateMachine>>,
    cfg: ControlConfig,
    session_timeout: Duration,
    decider: tokio::sync::Mutex<Decider>,
    sessions: Mutex<Sessions>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn error(e: ControlError) -> ControllerResponse {
    ControllerResponse::Error(e.into())
}

/// A decision's outcome before proposing.
type Decided = Result<(Vec<MetadataRecord>, Answer), ControllerResponse>;

/// How to answer once the records (if any) are applied at `index`.
enum Answer {
    Now(ControllerResponse),
    Registered,
    Heartbeat { id: i32, want_shutdown: bool },
}

impl ControllerService {
    pub fn new(
        node_id: i32,
        quorum: Arc<dyn Quorum>,
        sm: Arc<Mutex<MetadataStateMachine>>,
        cfg: ControlConfig,
        session_timeout: Duration,
        rng: WeirRng,
    ) -> Self {
        ControllerService {
            node_id,
            quorum,
            sm,
            cfg,
            session_timeout,
            decider: tokio::sync::Mutex::new(Decider {
                rng,
                caught_up_term: None,
            }),
            sessions: Mutex::new(Sessions::default()),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// A copy of the committed image as applied on this node (followers may lag).
    pub fn image(&self) -> MetadataImage {
        lock(&self.sm).image.clone()
    }

    pub fn is_active(&self) -> bool {
        self.quorum.is_leader()
    }

    pub fn leader(&self) -> Option<i32> {
        self.quorum.leader()
    }

    fn not_controller(&self) -> ControllerResponse {
        ControllerResponse::NotController {
            leader: self.quorum.leader().filter(|&l| l != self.node_id),
        }
    }

    pub async fn handle(&self, req: ControllerRequest) -> ControllerResponse {
        if !self.quorum.is_leader() {
            return self.not_controller();
        }
        match req {
            ControllerRequest::FetchImage {
                have_offset,
                max_wait_ms,
            } => self.fetch_image(have_offset, max_wait_ms).await,
            ControllerRequest::Heartbeat { id, epoch, .. } => {
                // Remember the heartbeat before deciding: even one that
                // waits on the mutex shows the broker is alive.
                if lock(&self.sm).image.brokers.get(&id).map(|b| b.epoch) == Some(epoch) {
                    lock(&self.sessions).last.insert(id, (epoch, now()));
                }
                self.decide(req).await
            }
            req => self.decide(req).await,
        }
    }

    async fn fetch_image(&self, have_offset: u64, max_wait_ms: u32) -> ControllerResponse {
        let deadline = now() + Duration::from_millis(max_wait_ms.min(FETCH_WAIT_MS_MAX) as u64);
        let mut applied = self.quorum.applied();
        loop {
            {
                let sm = lock(&self.sm);
                if sm.image.offset > have_offset {
                    return ControllerResponse::Image(Some(encode_image(&sm.image)));
                }
            }
            if !self.quorum.is_leader() {
                return self.not_controller();
            }
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return ControllerResponse::Image(None);
            }
            // Wake on every applied index (or the deadline) and look again.
            match timeout(left, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return self.not_controller(),
                Err(_) => return ControllerResponse::Image(None),
            }
        }
    }

    /// Decide under the mutex, propose, answer on the image after apply.
    async fn decide(&self, req: ControllerRequest) -> ControllerResponse {
        let mut decider = self.decider.lock().await;
        if let Err(resp) = self.catch_up(&mut decider).await {
            return resp;
        }
        // Decisions are synchronous: decide under the image lock, no copy.
        let decided = {
            let sm = lock(&self.sm);
            self.decide_on(&sm.image, &mut decider.rng, req)
        };
        let (records, answer) = match decided {
            Ok(d) => d,
            Err(resp) => return resp,
        };
        let index = if records.is_empty() {
            None
        } else {
            match self.propose(&mut decider, &records).await {
                Ok(i) => Some(i),
                Err(resp) => return resp,
            }
        };
        match answer {
            Answer::Now(resp) => resp,
            Answer::Registered => match index {
                Some(epoch) => ControllerResponse::Registered {
                    epoch: epoch as i64,
                },
                None => ControllerResponse::Error(ItemResult {
                    error_code: codes::UNKNOWN_SERVER_ERROR,
                    message: Some("registration produced no entry".into()),
                }),
            },
            Answer::Heartbeat { id, want_shutdown } => {
                let (fenced, shutdown_ready) =
                    control::heartbeat_state(&lock(&self.sm).image, id, want_shutdown);
                ControllerResponse::Heartbeat {
                    fenced,
                    shutdown_ready,
                }
            }
        }
    }

    /// Propose a barrier once per leadership so the image holds everything
    /// committed before it.
    async fn catch_up(&self, decider: &mut Decider) -> Result<(), ControllerResponse> {
        // Read the term before the barrier: if leadership changes meanwhile
        // the barrier fails or the next decision barriers again.
        let term = self.quorum.term();
        if decider.caught_up_term == Some(term) {
            return Ok(());
        }
        self.propose(decider, &[]).await?;
        decider.caught_up_term = Some(term);
        Ok(())
    }

    /// Propose and wait until the entry applied. Cancel-safe: a caller may
    /// drop this future (the broker's local shortcut times out and retries)
    /// while the entry is still in the raft log, where it may yet commit.
    /// Until it resolves the image is not caught up, so the next decision
    /// barriers first instead of deciding on an image that misses it (two
    /// changes to one partition from the same state would break the
    /// partition epoch invariant).
    async fn propose(
        &self,
        decider: &mut Decider,
        records: &[MetadataRecord],
    ) -> Result<u64, ControllerResponse> {
        let caught_up = decider.caught_up_term.take();
        match self.quorum.propose(encode_records(records)).await {
            Ok(index) => {
                decider.caught_up_term = caught_up;
                Ok(index)
            }
            Err(NotLeader { leader }) => Err(ControllerResponse::NotController {
                leader: leader.filter(|&l| l != self.node_id),
            }),
        }
    }

    fn decide_on(&self, img: &MetadataImage, rng: &mut WeirRng, req: ControllerRequest) -> Decided {
        let cfg = &self.cfg;
        let now_answer = |records, resp| Ok((records, Answer::Now(resp)));
        match req {
            ControllerRequest::FetchImage { .. } => unreachable!("answered without deciding"),
            ControllerRequest::RegisterBroker {
                id,
                incarnation,
                host,
                port,
                rack,
            } => match control::register_broker(img, cfg, id, incarnation, host, port, rack) {
                Ok(Registration::Existing { epoch }) => {
                    now_answer(vec![], ControllerResponse::Registered { epoch })
                }
                Ok(Registration::New(records)) => Ok((records, Answer::Registered)),
                Err(e) => Err(error(e)),
            },
            ControllerRequest::Heartbeat {
                id,
                epoch,
                metadata_offset,
                want_shutdown,
            } => {
                let records =
                    control::heartbeat(img, cfg, id, epoch, metadata_offset, want_shutdown)
                        .map_err(error)?;
                Ok((records, Answer::Heartbeat { id, want_shutdown }))
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => {
                let (records, items) = control::create_topics(img, cfg, &topics, rng);
                let records = if validate_only { vec![] } else { records };
                now_answer(records, ControllerResponse::Items(items))
            }
            ControllerRequest::DeleteTopics { names } => {
                let (records, items) = control::delete_topics(img, &names);
                now_answer(records, ControllerResponse::Items(items))
            }
            ControllerRequest::CreatePartitions {
                topic,
                count,
                validate_only,
            } => {
                let records = control::create_partitions(img, &topic, count, rng).map_err(error)?;
                let records = if validate_only { vec![] } else { records };
                now_answer(
                    records,
                    ControllerResponse::Items(vec![ItemResult::default()]),
                )
            }
            ControllerRequest::SetTopicConfigs {
                topic,
                configs,
                validate_only,
            } => {
                let records =
                    control::set_topic_configs(img, cfg, &topic, &configs).map_err(error)?;
                let records = if validate_only { vec![] } else { records };
                now_answer(
                    records,
                    ControllerResponse::Items(vec![ItemResult::default()]),
                )
            }
            ControllerRequest::AlterPartition {
                broker,
                broker_epoch,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                let (records, state) = control::alter_partition(
                    img,
                    broker,
                    broker_epoch,
                    &topic,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    &new_isr,
                )
                .map_err(error)?;
                now_answer(records, ControllerResponse::Partition(state))
            }
            ControllerRequest::AllocateProducerIds {
                broker,
                broker_epoch,
            } => {
                let (records, first, count) =
                    control::allocate_producer_ids(img, broker, broker_epoch).map_err(error)?;
                now_answer(records, ControllerResponse::ProducerIds { first, count })
            }
        }
    }

    /// One timer round: on the active controller fence brokers whose
    /// session lapsed and elect leaders where possible.
    pub async fn tick(&self) {
        if !self.quorum.is_leader() {
            lock(&self.sessions).leader_since = None;
            return;
        }
        let t = now();
        let term = self.quorum.term();
        let leader_since = {
            let mut sessions = lock(&self.sessions);
            match sessions.leader_since {
                Some((since_term, since)) if since_term == term => since,
                _ => {
                    // A new leadership: every broker gets a full session.
                    sessions.leader_since = Some((term, t));
                    t
                }
            }
        };
        let mut decider = self.decider.lock().await;
        if self.catch_up(&mut decider).await.is_err() {
            return;
        }
        let records = {
            // Decide under the image lock, without copying the image unless
            // a broker is to be fenced.
            let sm = lock(&self.sm);
            let img = &sm.image;
            let expired: Vec<(i32, i64)> = {
                let sessions = lock(&self.sessions);
                img.brokers
                    .values()
                    .filter(|b| !b.fenced)
                    .filter(|b| {
                        let heard = match sessions.last.get(&b.id) {
                            Some(&(epoch, at)) if epoch == b.epoch => at.max(leader_since),
                            _ => leader_since,
                        };
                        t.saturating_duration_since(heard) > self.session_timeout
                    })
                    .map(|b| (b.id, b.epoch))
                    .collect()
            };
            if expired.is_empty() {
                control::elect_leaders(img, &self.cfg)
            } else {
                let mut work = img.clone();
                let mut records = Vec::new();
                for (id, epoch) in expired {
                    tracing::info!(broker = id, epoch, "fencing broker: session expired");
                    let recs = control::fence_broker(&work, &self.cfg, id, epoch);
                    // Later decisions in this round see this one.
                    let index = work.offset + 1;
                    work.apply_entry(index, &recs);
                    records.extend(recs);
                }
                records.extend(control::elect_leaders(&work, &self.cfg));
                records
            }
        };
        if !records.is_empty() {
            let _ = self.propose(&mut decider, &records).await;
        }
    }

    /// Run `tick` every `TIMER_INTERVAL` until `stop` turns true.
    pub async fn run_timer(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = sleep(TIMER_INTERVAL) => self.tick().await,
                changed = stop.changed() => {
                    // The sender is gone: the controller was dropped.
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl StateMachine for MetadataStateMachine {
    fn apply(&mut self, index: u64, data: &[u8]) {
        self.apply_entry(index, data);
    }
    fn snapshot(&self) -> Vec<u8> {
        self.snapshot_bytes()
    }
    fn restore(&mut self, index: u64, data: &[u8]) {
        self.restore_bytes(index, data);
    }
}

impl Quorum for RaftNode {
    fn propose(
        &self,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, NotLeader>> + Send + '_>> {
        Box::pin(async move {
            RaftNode::propose(self, data)
                .await
                .map_err(|ProposeError::NotLeader { leader }| NotLeader { leader })
        })
    }
    fn leader(&self) -> Option<i32> {
        RaftNode::leader(self)
    }
    fn is_leader(&self) -> bool {
        RaftNode::is_leader(self)
    }
    fn term(&self) -> u64 {
        RaftNode::term(self)
    }
    fn applied(&self) -> watch::Receiver<u64> {
        RaftNode::applied(self)
    }
}

/// An entry a held `LocalQuorum` has not committed, with its proposer.
type HeldProposal = (Vec<u8>, oneshot::Sender<u64>);

/// An in-process quorum of one with no log: proposals apply at once. For
/// tests of the service and of code above it that needs no durability.
pub struct LocalQuorum {
    node_id: i32,
    sm: Arc<Mutex<MetadataStateMachine>>,
    next: Mutex<u64>,
    applied_tx: watch::Sender<u64>,
    applied_rx: watch::Receiver<u64>,
    leader: std::sync::atomic::AtomicBool,
    term: Mutex<u64>,
    /// While held, proposals wait here uncommitted, in order, as in a slow
    /// quorum; a proposer that gives up leaves its entry in the queue (it
    /// is in the log and commits on release, as raft would do).
    held: Mutex<Option<Vec<HeldProposal>>>,
}

impl LocalQuorum {
    pub fn new(node_id: i32, sm: Arc<Mutex<MetadataStateMachine>>) -> Self {
        let start = lock(&sm).image.offset;
        let (applied_tx, applied_rx) = watch::channel(start);
        LocalQuorum {
            node_id,
            sm,
            next: Mutex::new(start + 1),
            applied_tx,
            applied_rx,
            leader: std::sync::atomic::AtomicBool::new(true),
            term: Mutex::new(1),
            held: Mutex::new(None),
        }
    }

    /// Stop committing: proposals queue until `release`.
    pub fn hold(&self) {
        lock(&self.held).get_or_insert_with(Vec::new);
    }

    /// Commit and apply every queued proposal in order, then commit at once
    /// again.
    pub fn release(&self) {
        for (data, reply) in lock(&self.held).take().unwrap_or_default() {
            let _ = reply.send(self.commit(&data));
        }
    }

    fn commit(&self, data: &[u8]) -> u64 {
        let index = {
            let mut next = lock(&self.next);
            let i = *next;
            *next += 1;
            lock(&self.sm).apply_entry(i, data);
            i
        };
        let _ = self.applied_tx.send(index);
        index
    }

    /// Pretend to lose (or regain) the lead.
    pub fn set_leader(&self, leader: bool) {
        if leader && !self.is_leader() {
            *lock(&self.term) += 1;
        }
        self.leader
            .store(leader, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Quorum for LocalQuorum {
    fn propose(
        &self,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, NotLeader>> + Send + '_>> {
        Box::pin(async move {
            if !self.is_leader() {
                return Err(NotLeader { leader: None });
            }
            let queued = {
                let mut held = lock(&self.held);
                held.as_mut().map(|queue| {
                    let (reply, rx) = oneshot::channel();
                    queue.push((data.clone(), reply));
                    rx
                })
            };
            match queued {
                Some(rx) => rx.await.map_err(|_| NotLeader { leader: None }),
                None => Ok(self.commit(&data)),
            }
        })
    }

    fn leader(&self) -> Option<i32> {
        self.is_leader().then_some(self.node_id)
    }

    fn is_leader(&self) -> bool {
        self.leader.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn term(&self) -> u64 {
        *lock(&self.term)
    }

    fn applied(&self) -> watch::Receiver<u64> {
        self.applied_rx.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::controller::api::CreateTopicSpec;
    use uuid::Uuid;

    fn service() -> (Arc<ControllerService>, Arc<LocalQuorum>) {
        let sm = Arc::new(Mutex::new(MetadataStateMachine::default()));
        let q = Arc::new(LocalQuorum::new(1, sm.clone()));
        let cfg = ControlConfig::from_server(Arc::new(ServerConfig::default()));
        let svc = ControllerService::new(
            1,
            q.clone(),
            sm,
            cfg,
            Duration::from_millis(1000),
            WeirRng::from_seed(5),
        );
        (Arc::new(svc), q)
    }

    async fn register(svc: &ControllerService, id: i32) -> i64 {
        match svc
            .handle(ControllerRequest::RegisterBroker {
                id,
                incarnation: Uuid::from_u128(id as u128),
                host: "h".into(),
                port: 1,
                rack: None,
            })
            .await
        {
            ControllerResponse::Registered { epoch } => epoch,
            other => panic!("{other:?}"),
        }
    }

    async fn heartbeat(svc: &ControllerService, id: i32, epoch: i64) -> ControllerResponse {
        svc.handle(ControllerRequest::Heartbeat {
            id,
            epoch,
            metadata_offset: svc.image().offset,
            want_shutdown: false,
        })
        .await
    }

    #[tokio::test]
    async fn register_heartbeat_unfence_and_session_fencing() {
        let (svc, q) = service();
        // The first tick starts this leadership's sessions.
        svc.tick().await;
        let e = register(&svc, 1).await;
        assert_eq!(register(&svc, 1).await, e, "retry is idempotent");
        assert_eq!(
            heartbeat(&svc, 1, e).await,
            ControllerResponse::Heartbeat {
                fenced: false,
                shutdown_ready: false
            }
        );
        // Silence past the session: fenced by the timer.
        sleep(Duration::from_millis(1200)).await;
        svc.tick().await;
        assert!(svc.image().brokers[&1].fenced);
        // Not the leader: NotController, no timer work.
        q.set_leader(false);
        assert_eq!(
            heartbeat(&svc, 1, e).await,
            ControllerResponse::NotController { leader: None }
        );
    }

    #[tokio::test]
    async fn fetch_image_long_polls() {
        let (svc, _q) = service();
        let resp = svc
            .handle(ControllerRequest::FetchImage {
                have_offset: 0,
                max_wait_ms: 10,
            })
            .await;
        assert_eq!(resp, ControllerResponse::Image(None));
        let waiter = {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.handle(ControllerRequest::FetchImage {
                    have_offset: 0,
                    max_wait_ms: 5000,
                })
                .await
            })
        };
        sleep(Duration::from_millis(10)).await;
        register(&svc, 1).await;
        assert!(matches!(
            waiter.await.unwrap(),
            ControllerResponse::Image(Some(_))
        ));
        let resp = svc
            .handle(ControllerRequest::FetchImage {
                have_offset: svc.image().offset - 1,
                max_wait_ms: 0,
            })
            .await;
        match resp {
            ControllerResponse::Image(Some(bytes)) => {
                assert_eq!(decode_image(&bytes).unwrap(), svc.image());
            }
            other => panic!("{other:?}"),
        }
    }

    /// A caller that gives up on a decision (the broker's local shortcut
    /// times out under a slow quorum) leaves its entry in the log. The next
    /// decision must see it: deciding on the image without it would commit
    /// two changes from one partition state, and applying the second breaks
    /// the partition epoch invariant (a sim sweep found this as a panic).
    #[tokio::test]
    async fn abandoned_proposal_is_seen_by_the_next_decision() {
        let (svc, q) = service();
        svc.tick().await;
        for id in 1..=3 {
            let e = register(&svc, id).await;
            heartbeat(&svc, id, e).await;
        }
        let created = svc
            .handle(ControllerRequest::CreateTopics {
                topics: vec![CreateTopicSpec {
                    name: "t".into(),
                    partitions: 1,
                    replication_factor: 3,
                    assignments: vec![],
                    configs: BTreeMap::new(),
                }],
                validate_only: false,
            })
            .await;
        assert!(matches!(created, ControllerResponse::Items(ref i) if i[0].error_code == 0));
        let before = svc.image().topic("t").unwrap().partitions[0].clone();
        let leader = before.leader;
        let follower = *before.isr.iter().find(|&&b| b != leader).unwrap();
        let alter = |isr: Vec<i32>| ControllerRequest::AlterPartition {
            broker: leader,
            broker_epoch: svc.image().brokers[&leader].epoch,
            topic: "t".into(),
            partition: 0,
            leader_epoch: before.leader_epoch,
            partition_epoch: before.partition_epoch,
            new_isr: isr,
        };
        let shrink: Vec<i32> = before
            .isr
            .iter()
            .copied()
            .filter(|&b| b != follower)
            .collect();
        q.hold();
        let gave_up = timeout(Duration::from_millis(50), svc.handle(alter(shrink.clone()))).await;
        assert!(gave_up.is_err(), "the held quorum cannot answer");
        // A retry of the same change, decided while the first is in flight.
        let retry = {
            let (svc, req) = (svc.clone(), alter(vec![leader]));
            tokio::spawn(async move { svc.handle(req).await })
        };
        sleep(Duration::from_millis(50)).await;
        q.release();
        let retried = timeout(Duration::from_secs(5), retry)
            .await
            .expect("the retry answers once the quorum commits")
            .unwrap();
        let after = svc.image().topic("t").unwrap().partitions[0].clone();
        assert_eq!(after.isr, shrink, "the abandoned change committed");
        assert_eq!(after.partition_epoch, before.partition_epoch + 1);
        assert!(
            matches!(retried, ControllerResponse::Error(ref e) if e.error_code != 0),
            "the retry carries a stale partition epoch and is refused: {retried:?}"
        );
    }
}
