//! The async shell around [`TxnCoordinator`]: one lock, appends to
//! `__transaction_state` as that partition's leader (answers wait for the
//! HW to pass the append), loading a partition's transactions when the
//! image makes this broker its leader (finishing Prepare* transactions by
//! resending their markers), dropping them when leadership moves away, and
//! marker sending through a [`MarkerSender`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};

use super::codes as ec;
use super::records;
use super::state::{Effects, InitOutcome, InitRequest, MarkerJob, TxnConfig, TxnCoordinator};
use super::TXN_STATE_TOPIC;
use crate::broker::registry::{lock_or_recover, PartitionState};
use crate::client::connection::{Connection, ConnectionOptions};
use crate::config::ServerConfig;
use crate::coordinator::group::records::partition_for;
use crate::env::time::{sleep, Duration, SteadyWallClock};
use crate::log::batch::{build_batch, split_batches, BatchProducer, SimpleRecord};
use crate::metadata::MetadataImage;
use crate::protocol::error_codes as wire;
use crate::replica::partition::Partition;
use crate::replica::ReplicaManager;

const LOAD_READ_BYTES: usize = 1 << 20;
/// How long an answer waits for its record to reach the ISR.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(30);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One marker to write on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub topic: String,
    pub partition: i32,
}

/// Sends one marker to the partition's current leader; the error code it
/// answered (NONE when written; UNKNOWN_TOPIC_OR_PARTITION counts as done).
pub trait MarkerSender: Send + Sync {
    fn send(&self, marker: Marker) -> BoxFuture<'_, i16>;
}

/// Settings read from the broker config (Kafka key names).
#[derive(Clone, Debug)]
pub struct TxnServiceConfig {
    pub txn: TxnConfig,
    /// transaction.state.log.num.partitions
    pub partitions: i32,
    /// transaction.state.log.replication.factor
    pub replication_factor: i16,
    /// transaction.state.log.min.isr
    pub min_isr: i16,
    /// transaction.state.log.segment.bytes: small, so the cleaner can
    /// compact closed segments and a new coordinator loads little.
    pub segment_bytes: i64,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms
    pub abort_interval_ms: u64,
}

impl TxnServiceConfig {
    pub fn from_server(config: &ServerConfig) -> TxnServiceConfig {
        let get = |key: &str, default: i64| -> i64 {
            match config.extra.get(key).map(|v| v.trim().parse::<i64>()) {
                Some(Ok(v)) if v > 0 => v,
                Some(_) => {
                    tracing::warn!(key, "invalid value, using the default {default}");
                    default
                }
                None => default,
            }
        };
        TxnServiceConfig {
            txn: TxnConfig {
                max_timeout_ms: get("transaction.max.timeout.ms", 900_000).min(i32::MAX as i64)
                    as i32,
                id_expiration_ms: get("transactional.id.expiration.ms", 7 * 24 * 3600 * 1000),
            },
            partitions: get("transaction.state.log.num.partitions", 50).clamp(1, 10_000) as i32,
            replication_factor: get("transaction.state.log.replication.factor", 3)
                .clamp(1, i16::MAX as i64) as i16,
            min_isr: get("transaction.state.log.min.isr", 2).clamp(1, i16::MAX as i64) as i16,
            // segment.bytes' bounds (Kafka 3: at least 14, an int).
            segment_bytes: get("transaction.state.log.segment.bytes", 104_857_600)
                .clamp(14, i32::MAX as i64),
            abort_interval_ms: get(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                10_000,
            ) as u64,
        }
    }
}

struct Inner {
    machine: TxnCoordinator,
    /// Loaded partitions of `__transaction_state` and their leader epoch
    /// (the coordinator epoch of their markers).
    loaded: BTreeMap<i32, i32>,
    partitions: i32,
    /// Each id whose latest record may not be in the ISR yet: the machine
    /// shows its transition, but the log could still lose it.
    unsettled: BTreeMap<String, Durable>,
}

impl Inner {
    fn partition_of(&self, id: &str) -> Option<i32> {
        (self.partitions > 0).then(|| partition_for(id, self.partitions))
    }
    fn owns(&self, id: &str) -> bool {
        self.partition_of(id)
            .is_some_and(|p| self.loaded.contains_key(&p))
    }
    /// Whether `id`'s state may be answered from: its latest record is in
    /// the ISR. Until then the answer is CONCURRENT_TRANSACTIONS (Kafka's
    /// answer while a transition is pending), which clients retry: a
    /// request answered from an unsettled state could be told NONE for a
    /// change a failover then loses (an AddPartitionsToTxn retried onto
    /// the partitions its lost first attempt had added, after which EndTxn
    /// wrote no marker to them).
    fn settle(&mut self, id: &str) -> Result<(), i16> {
        let Some(d) = self.unsettled.get(id) else {
            return Ok(());
        };
        // Committed is the HW past the record in the leadership that wrote
        // it, whatever the ISR's size now.
        match d.partition.hw_status(d.last_offset, d.epoch) {
            Some(wire::NOT_LEADER_OR_FOLLOWER) => Err(ec::NOT_COORDINATOR),
            _ if d.partition.high_watermark() > d.last_offset => {
                self.unsettled.remove(id);
                Ok(())
            }
            _ => Err(ec::CONCURRENT_TRANSACTIONS),
        }
    }

    /// Forget the transactions of partition `index` (leadership moved, or
    /// about to be reloaded from its log).
    fn forget(&mut self, index: i32) {
        let count = self.partitions;
        self.machine.retain(|id| partition_for(id, count) != index);
        self.unsettled
            .retain(|id, _| partition_for(id, count) != index);
    }

    /// Whether `job`'s markers are still this coordinator's to write: its
    /// partition is loaded at `coordinator_epoch` (a newer epoch resent the
    /// job itself, and the old epoch's markers would only be fenced) and
    /// the transaction is still in the job's Prepare* state.
    fn job_due(&self, job: &MarkerJob, coordinator_epoch: i32) -> bool {
        let loaded_at = self
            .partition_of(&job.transactional_id)
            .and_then(|p| self.loaded.get(&p));
        loaded_at == Some(&coordinator_epoch) && self.machine.is_preparing(job)
    }
}

/// The transaction coordinator of this broker.
pub struct TxnService {
    inner: Mutex<Inner>,
    config: TxnServiceConfig,
    replicas: Arc<ReplicaManager>,
    sender: Arc<dyn MarkerSender>,
    clock: SteadyWallClock,
}

/// Records appended whose commit an answer waits for.
#[derive(Clone)]
struct Durable {
    partition: Arc<Partition>,
    last_offset: i64,
    epoch: i32,
}

impl TxnService {
    pub fn open(
        server: &ServerConfig,
        replicas: Arc<ReplicaManager>,
        sender: Arc<dyn MarkerSender>,
    ) -> Arc<TxnService> {
        let config = TxnServiceConfig::from_server(server);
        Arc::new(TxnService {
            inner: Mutex::new(Inner {
                machine: TxnCoordinator::new(config.txn.clone()),
                loaded: BTreeMap::new(),
                partitions: 0,
                unsettled: BTreeMap::new(),
            }),
            config,
            replicas,
            sender,
            clock: SteadyWallClock::new(),
        })
    }

    pub fn config(&self) -> &TxnServiceConfig {
        &self.config
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Whether this broker coordinates `transactional_id` now.
    pub fn owns(&self, transactional_id: &str) -> bool {
        lock_or_recover(&self.inner).owns(transactional_id)
    }

    /// Load the partitions this broker now leads (resending the markers of
    /// their Prepare* transactions) and drop those it no longer leads.
    pub fn on_image(self: &Arc<Self>, image: &MetadataImage, me: i32) {
        let Some(topic) = image.topic(TXN_STATE_TOPIC) else {
            return;
        };
        let count = topic.partitions.len() as i32;
        let mut resend = Vec::new();
        {
            let mut inner = lock_or_recover(&self.inner);
            inner.partitions = count;
            for (index, p) in topic.partitions.iter().enumerate() {
                let index = index as i32;
                let leads = p.leader == me;
                let loaded_epoch = inner.loaded.get(&index).copied();
                if leads && loaded_epoch != Some(p.leader_epoch) {
                    if self.replicas.get(TXN_STATE_TOPIC, index).is_none() {
                        continue;
                    }
                    inner.loaded.insert(index, p.leader_epoch);
                    self.reload(&mut inner, index);
                    if inner.loaded.contains_key(&index) {
                        tracing::info!(partition = index, "loaded {TXN_STATE_TOPIC} partition");
                        let jobs = inner
                            .machine
                            .pending_markers(|id| partition_for(id, count) == index);
                        resend.extend(jobs.into_iter().map(|j| (j, p.leader_epoch)));
                    }
                } else if !leads && inner.loaded.remove(&index).is_some() {
                    inner.forget(index);
                }
            }
        }
        for (job, epoch) in resend {
            self.spawn_markers(job, epoch);
        }
    }

    /// InitProducerId with a transactional id. `allocate` yields a fresh
    /// producer id (from the controller's blocks) when the machine needs one.
    pub async fn init_producer_id<F, Fut>(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: F,
    ) -> Result<(i64, i16), i16>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<i64, i16>>,
    {
        let req = InitRequest {
            transactional_id,
            timeout_ms,
            expected,
        };
        let mut fresh = None;
        let mut allocate = Some(allocate);
        loop {
            let (outcome, durable) = {
                let mut inner = lock_or_recover(&self.inner);
                if !inner.owns(transactional_id) {
                    return Err(ec::NOT_COORDINATOR);
                }
                inner.settle(transactional_id)?;
                let outcome = inner
                    .machine
                    .init_producer_id(req.clone(), fresh, self.now_ms());
                let fx = match &outcome {
                    InitOutcome::Ok { effects, .. } | InitOutcome::Err(_, effects) => {
                        effects.clone()
                    }
                    InitOutcome::NeedProducerId => Effects::default(),
                };
                let durable = self.apply(&mut inner, fx);
                (outcome, durable)
            };
            match outcome {
                InitOutcome::NeedProducerId => match allocate.take() {
                    Some(f) => fresh = Some(f().await?),
                    None => return Err(ec::COORDINATOR_NOT_AVAILABLE),
                },
                InitOutcome::Ok {
                    producer_id,
                    producer_epoch,
                    ..
                } => {
                    wait_all(durable?).await?;
                    return Ok((producer_id, producer_epoch));
                }
                InitOutcome::Err(code, _) => {
                    // The abort it started finishes in the background.
                    drop(durable);
                    return Err(code);
                }
            }
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn.
    pub async fn add_partitions(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> i16 {
        let durable = {
            let mut inner = lock_or_recover(&self.inner);
            if !inner.owns(transactional_id) {
                return ec::NOT_COORDINATOR;
            }
            if let Err(code) = inner.settle(transactional_id) {
                return code;
            }
            match inner.machine.add_partitions(
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                self.now_ms(),
            ) {
                Ok(fx) => self.apply(&mut inner, fx),
                Err(code) => return code,
            }
        };
        match durable {
            Ok(d) => wait_all(d).await.err().unwrap_or(ec::NONE),
            Err(code) => code,
        }
    }

    /// EndTxn: answers once Prepare* is durable; markers go out after.
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> i16 {
        let durable = {
            let mut inner = lock_or_recover(&self.inner);
            if !inner.owns(transactional_id) {
                return ec::NOT_COORDINATOR;
            }
            if let Err(code) = inner.settle(transactional_id) {
                return code;
            }
            match inner.machine.end_txn(
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                self.now_ms(),
            ) {
                Ok(fx) => self.apply(&mut inner, fx),
                Err(code) => return code,
            }
        };
        match durable {
            Ok(d) => wait_all(d).await.err().unwrap_or(ec::NONE),
            Err(code) => code,
        }
    }

    /// Timer: abort timed-out transactions, expire idle ids.
    pub fn tick(self: &Arc<Self>) {
        let inner = &mut *lock_or_recover(&self.inner);
        let fx = inner.machine.tick(self.now_ms());
        if let Err(code) = self.apply(inner, fx) {
            tracing::warn!(code, "timed-out transaction aborts not persisted");
        }
    }

    /// The transactions this broker coordinates (DescribeTransactions,
    /// ListTransactions).
    pub fn snapshot(&self) -> Vec<super::TxnMetadata> {
        let inner = lock_or_recover(&self.inner);
        inner
            .machine
            .all()
            .filter(|m| inner.owns(&m.transactional_id))
            .cloned()
            .collect()
    }

    /// Persist `fx.records` (under the caller's lock, so log order is
    /// transition order) and start the markers of `fx.markers` once their
    /// Prepare* record is durable.
    ///
    /// The machine applied the transition in memory already. Where an
    /// append fails, nothing reached that partition's log, so its
    /// transactions are reloaded from the log: memory then holds exactly
    /// what was persisted, and the client's retry finds the state it left
    /// (without this, an EndTxn whose Prepare* append was refused left the
    /// transaction in Prepare* with no record and no markers, answering
    /// CONCURRENT_TRANSACTIONS for as long as this broker led).
    fn apply(self: &Arc<Self>, inner: &mut Inner, fx: Effects) -> Result<Vec<Durable>, i16> {
        let (durable, failed) = self.persist(inner, &fx.records);
        for &(index, _) in &failed {
            self.reload(inner, index);
        }
        for (id, _) in &fx.records {
            let index = inner.partition_of(id);
            if let Some(d) = durable.iter().find(|d| Some(d.partition.index) == index) {
                inner.unsettled.insert(id.clone(), d.clone());
            }
        }
        for job in fx.markers {
            let Some(index) = inner.partition_of(&job.transactional_id) else {
                continue;
            };
            let Some(&coordinator_epoch) = inner.loaded.get(&index) else {
                continue;
            };
            if let Some(d) = durable.iter().find(|d| d.partition.index == index) {
                let wait = (d.partition.clone(), d.last_offset, d.epoch);
                let me = self.clone();
                tokio::spawn(async move {
                    if me.await_prepared(wait).await {
                        me.send_markers(job, coordinator_epoch).await;
                    }
                });
            }
        }
        match failed.first() {
            Some(&(_, code)) => Err(code),
            None => Ok(durable),
        }
    }

    /// Wait until a Prepare* record is in the ISR (true), or until this
    /// broker's leadership of its partition at the append's epoch ends
    /// (false: the next leader, perhaps this broker again, loads the log and
    /// finishes the transaction). An ISR below min.insync.replicas or a slow
    /// follower only delays the markers: the decision is made and the record
    /// stays in the log, so giving up here would strand the transaction in
    /// Prepare* (EndTxn retries answered CONCURRENT_TRANSACTIONS forever).
    async fn await_prepared(
        &self,
        (partition, last_offset, epoch): (Arc<Partition>, i64, i32),
    ) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match partition
                .wait_for_hw(last_offset, epoch, DURABLE_TIMEOUT)
                .await
            {
                ec::NONE => return true,
                wire::NOT_ENOUGH_REPLICAS_AFTER_APPEND | wire::REQUEST_TIMED_OUT => {
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                _ => return false,
            }
        }
    }

    /// Replace the transactions of `__transaction_state` partition `index`
    /// with what its log holds.
    fn reload(&self, inner: &mut Inner, index: i32) {
        inner.forget(index);
        let Some(partition) = self.replicas.get(TXN_STATE_TOPIC, index) else {
            inner.loaded.remove(&index);
            return;
        };
        if let Err(e) = load(&partition.log, &mut inner.machine) {
            tracing::error!(partition = index, error = %e, "reloading {TXN_STATE_TOPIC} failed");
            inner.loaded.remove(&index);
        }
    }

    fn spawn_markers(self: &Arc<Self>, job: MarkerJob, coordinator_epoch: i32) {
        let me = self.clone();
        tokio::spawn(async move { me.send_markers(job, coordinator_epoch).await });
    }

    /// Send every marker of `job` until each is written, then persist
    /// Complete*. Stops if this broker stops coordinating the id.
    async fn send_markers(self: Arc<Self>, job: MarkerJob, coordinator_epoch: i32) {
        let mut left: BTreeSet<(String, i32)> = job.partitions.iter().cloned().collect();
        let mut backoff = Duration::from_millis(20);
        while !left.is_empty() {
            if !lock_or_recover(&self.inner).job_due(&job, coordinator_epoch) {
                return;
            }
            let mut done = Vec::new();
            for (topic, partition) in &left {
                let code = self
                    .sender
                    .send(Marker {
                        producer_id: job.producer_id,
                        producer_epoch: job.producer_epoch,
                        commit: job.commit,
                        coordinator_epoch,
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .await;
                if code == ec::NONE || code == ec::UNKNOWN_TOPIC_OR_PARTITION {
                    done.push((topic.clone(), *partition));
                } else {
                    tracing::debug!(topic, partition, code, "marker not written yet; retrying");
                }
            }
            for d in done {
                left.remove(&d);
            }
            if !left.is_empty() {
                sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        // Every marker is written: persist Complete*. A refused append left
        // the transaction in Prepare* (reloaded from the log), so try again
        // until it sticks or the transaction is no longer ours.
        let mut backoff = Duration::from_millis(50);
        loop {
            {
                let inner = &mut *lock_or_recover(&self.inner);
                if !inner.job_due(&job, coordinator_epoch) {
                    return;
                }
                let fx = inner.machine.markers_written(&job, self.now_ms());
                match self.apply(inner, fx) {
                    Ok(_) => return,
                    Err(code) => {
                        tracing::debug!(
                            code,
                            id = job.transactional_id,
                            "Complete* not persisted; retrying"
                        )
                    }
                }
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Append `recs` to their `__transaction_state` partitions: what was
    /// appended (to wait for), and the partitions whose append failed with
    /// the code to answer.
    fn persist(
        &self,
        inner: &Inner,
        recs: &[(String, Option<super::TxnMetadata>)],
    ) -> (Vec<Durable>, Vec<(i32, i16)>) {
        let mut by_partition: BTreeMap<i32, Vec<SimpleRecord>> = BTreeMap::new();
        let now_ms = self.now_ms();
        for (id, value) in recs {
            let p = inner
                .partition_of(id)
                .expect("txn invariant: a transition only touches ids this broker owns");
            by_partition.entry(p).or_default().push(SimpleRecord {
                key: Some(records::encode_key(id).to_vec()),
                value: value.as_ref().map(|m| records::encode_value(m).to_vec()),
                headers: Vec::new(),
                timestamp: now_ms,
            });
        }
        let mut durable = Vec::new();
        let mut failed = Vec::new();
        for (p, recs) in by_partition {
            let Some(partition) = self.replicas.get(TXN_STATE_TOPIC, p) else {
                failed.push((p, ec::NOT_COORDINATOR));
                continue;
            };
            let mut batch = build_batch(&recs, BatchProducer::default());
            match partition.append_as_leader(&mut batch, true, now_ms) {
                Ok((info, epoch)) => durable.push(Durable {
                    partition,
                    last_offset: info.last_offset,
                    epoch,
                }),
                Err((code, message)) => {
                    tracing::warn!(code, message, "appending to {TXN_STATE_TOPIC} failed");
                    failed.push((
                        p,
                        match code {
                            wire::NOT_LEADER_OR_FOLLOWER => ec::NOT_COORDINATOR,
                            _ => ec::COORDINATOR_NOT_AVAILABLE,
                        },
                    ));
                }
            }
        }
        (durable, failed)
    }
}

async fn wait_all(durable: Vec<Durable>) -> Result<(), i16> {
    for d in durable {
        match d
            .partition
            .wait_for_hw(d.last_offset, d.epoch, DURABLE_TIMEOUT)
            .await
        {
            ec::NONE => {}
            wire::NOT_LEADER_OR_FOLLOWER => return Err(ec::NOT_COORDINATOR),
            _ => return Err(ec::COORDINATOR_NOT_AVAILABLE),
        }
    }
    Ok(())
}

/// Replay one partition of `__transaction_state`.
fn load(partition: &PartitionState, machine: &mut TxnCoordinator) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let (mut offset, end) = partition
        .with_log(|log| Ok((log.log_start_offset(), log.log_end_offset())))
        .map_err(|e| anyhow::anyhow!("{TXN_STATE_TOPIC}-{}: {e}", partition.index))?;
    while offset < end {
        let slice = partition
            .with_log(|log| log.read(offset, LOAD_READ_BYTES, true))
            .map_err(|e| anyhow::anyhow!("{TXN_STATE_TOPIC}-{}: {e}", partition.index))?;
        if slice.records.is_empty() {
            break;
        }
        let batches = split_batches(&slice.records)
            .map_err(|e| anyhow::anyhow!("{TXN_STATE_TOPIC}-{}: {e}", partition.index))?;
        if batches.is_empty() {
            break;
        }
        for (range, header) in batches {
            let next = header.next_offset();
            if !header.is_control() {
                let mut bytes = slice.records.slice(range);
                if let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
                    for r in set.records {
                        if r.offset < offset {
                            continue;
                        }
                        match records::decode(r.key.as_deref(), r.value.as_deref()) {
                            Ok((id, v)) => {
                                machine.replay(id, v);
                                count += 1;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "skipping undecodable {TXN_STATE_TOPIC} record")
                            }
                        }
                    }
                }
            }
            offset = next;
        }
    }
    Ok(count)
}

/// The production [`MarkerSender`]: WriteTxnMarkers (v1) to the partition's
/// current leader, looked up in the latest image for every attempt.
pub struct TcpMarkerSender {
    image: Box<dyn Fn() -> Arc<MetadataImage> + Send + Sync>,
    conns: tokio::sync::Mutex<BTreeMap<String, Arc<Connection>>>,
}

impl TcpMarkerSender {
    pub fn new(image: impl Fn() -> Arc<MetadataImage> + Send + Sync + 'static) -> TcpMarkerSender {
        TcpMarkerSender {
            image: Box::new(image),
            conns: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }
}

impl MarkerSender for TcpMarkerSender {
    fn send(&self, m: Marker) -> BoxFuture<'_, i16> {
        Box::pin(async move {
            let image = (self.image)();
            let Some(topic) = image.topic(&m.topic) else {
                return ec::UNKNOWN_TOPIC_OR_PARTITION;
            };
            let Some(p) = usize::try_from(m.partition)
                .ok()
                .and_then(|i| topic.partitions.get(i))
            else {
                return ec::UNKNOWN_TOPIC_OR_PARTITION;
            };
            let Some(b) = image.brokers.get(&p.leader).filter(|b| !b.fenced) else {
                return ec::COORDINATOR_NOT_AVAILABLE;
            };
            let addr = format!("{}:{}", b.host, b.port);
            let conn = {
                let mut conns = self.conns.lock().await;
                match conns.get(&addr).filter(|c| c.is_alive()) {
                    Some(c) => c.clone(),
                    None => match Connection::connect(&addr, ConnectionOptions::default()).await {
                        Ok(c) => {
                            let c = Arc::new(c);
                            conns.insert(addr.clone(), c.clone());
                            c
                        }
                        Err(e) => {
                            tracing::debug!(addr, error = %e, "marker connection failed");
                            return ec::COORDINATOR_NOT_AVAILABLE;
                        }
                    },
                }
            };
            let request =
                WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_transaction_result(m.commit)
                    .with_coordinator_epoch(m.coordinator_epoch)
                    .with_topics(vec![WritableTxnMarkerTopic::default()
                        .with_name(TopicName(m.topic.clone().into()))
                        .with_partition_indexes(vec![m.partition])])]);
            match conn.send_version(&request, 1).await {
                Ok(resp) => resp
                    .markers
                    .iter()
                    .flat_map(|r| r.topics.iter())
                    .flat_map(|t| t.partitions.iter())
                    .map(|p| p.error_code)
                    .find(|c| *c != ec::NONE)
                    .unwrap_or(ec::NONE),
                Err(e) => {
                    tracing::debug!(error = %e, "WriteTxnMarkers failed");
                    ec::COORDINATOR_NOT_AVAILABLE
                }
            }
        })
    }
}
