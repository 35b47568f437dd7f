//! The producer: `send` appends a record to a per-partition batch and hands
//! back a future for its offset; a background sender task drains ready
//! batches into Produce requests, keeps many in flight, and retries.
//!
//! Idempotence follows Kafka: one InitProducerId at start, a sequence per
//! partition assigned when a batch is first sent, at most 5 batches in flight
//! per partition, and retries that resend the same sequence in the original
//! order (see accumulator.rs for the ordering invariant).
//!
//! Recovery when the broker lost acknowledged data (KIP-360, as the Java
//! producer does for a non-transactional idempotent producer): a batch that is
//! its partition's first unacknowledged one and gets
//! OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID cannot be explained by
//! an earlier batch's failure, so the broker's producer state ends before
//! what it acknowledged. Retrying the same sequence would be refused forever.
//! That batch fails to the user with the broker's error, and the producer
//! takes a new identity (`reset_identity`); every partition's sequences
//! restart at 0. The same reset follows any stamped batch that fails for good
//! (expiry, retries exhausted), because the gap it leaves would wedge its
//! successors the same way.
//!
//! Our broker answers every InitProducerId with a fresh producer id (it does
//! not implement the v3+ epoch bump), so we always ask for a fresh id rather
//! than sending our current id and epoch. The old identity stays valid on the
//! broker, which is what lets batches stamped with it be retried unchanged.
//!
//! Batches caught by a reset, and why no record can be duplicated by it:
//! - never sent: stamped with the new identity when drained;
//! - stamped with the old identity and acknowledged (also a
//!   DUPLICATE_SEQUENCE_NUMBER answer): complete normally;
//! - stamped with the old identity, refused with a retriable error: retried
//!   under the old identity (a partition that lost nothing accepts it);
//! - stamped with the old identity and refused with OUT_OF_ORDER_SEQUENCE /
//!   UNKNOWN_PRODUCER_ID: the broker has no copy under that identity, so it is
//!   re-stamped and resent, unless some earlier attempt ended without an
//!   answer (`maybe_written`: lost connection, timeout, REQUEST_TIMED_OUT):
//!   then a copy may exist the broker can no longer match, and resending it
//!   under a new identity could write it twice, so it fails to the user
//!   instead (an indeterminate error, as a timeout is);
//! - ordering: a partition stamps no batch with the new identity while any of
//!   its batches with an older one is in flight (accumulator.rs), so a
//!   re-stamped batch still goes before every later one.

mod accumulator;
pub mod config;
pub mod transactional;
pub mod txn;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Notify, Semaphore};

use self::accumulator::{Accumulator, BatchDone, BatchOutcome, DrainRules, ProducerBatch};
pub use self::config::{Acks, ProducerConfig};
use super::cluster::Cluster;
use super::error::{codes, ClientError};
use super::partitioner::{partition_for_key, StickyPartitioner};
use super::records::{encode_batch, to_wire, ProducerIdentity, ProducerRecord};
use crate::env::rng::WeirRng;
use crate::env::time::{now, now_ms, sleep_until, Instant};

use super::error::codes::{NOT_ENOUGH_REPLICAS, UNKNOWN_PRODUCER_ID};

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with acks=0 (the broker does not answer).
    pub offset: i64,
    pub timestamp: i64,
}

/// Resolves when the record's batch is acknowledged (or fails).
pub struct DeliveryFuture {
    outcome: Arc<BatchOutcome>,
    index: i32,
    partition: i32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// The record's fate and when its batch completed (for latency stats).
    pub async fn wait_timed(self) -> (Result<RecordMetadata, ClientError>, Instant) {
        match self.outcome.wait().await {
            Ok(done) => (
                Ok(RecordMetadata {
                    partition: self.partition,
                    offset: if done.base_offset < 0 {
                        -1
                    } else {
                        done.base_offset + self.index as i64
                    },
                    timestamp: if done.log_append_time >= 0 {
                        done.log_append_time
                    } else {
                        self.timestamp
                    },
                }),
                done.completed_at,
            ),
            Err(e) => (Err(e), now()),
        }
    }

    /// Like awaiting the future, and also says whether a failed record may
    /// have been written anyway (`true`: indeterminate, as after a timeout;
    /// `false`: every attempt was refused before it was appended, or none
    /// was sent, so the record does not exist). Always `false` on success.
    pub async fn wait_detailed(self) -> (Result<RecordMetadata, ClientError>, bool) {
        let outcome = self.outcome.clone();
        let (result, _) = self.wait_timed().await;
        let maybe = result.is_err() && outcome.maybe_written();
        (result, maybe)
    }

    /// True once the batch has completed.
    pub fn is_done(&self) -> bool {
        self.outcome.get().is_some()
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.wait_timed().await.0 })
    }
}

struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    /// Batches carry a producer id and sequences (the identity itself lives
    /// in the accumulator, as a reset replaces it).
    idempotent: bool,
    /// Set for a transactional producer (transactional.id).
    txn: Option<transactional::TxnInner>,
    state: Mutex<State>,
    /// Wakes the sender: new batch, full batch, finished request, flush, close.
    wake: Notify,
    /// Wakes flush()/close() waiters when batches complete.
    idle: Notify,
    /// buffer.memory in bytes; send() waits when it runs out.
    buffer: Semaphore,
    refreshing: AtomicBool,
}

struct State {
    acc: Accumulator,
    flushing: usize,
    closed: bool,
}

pub struct Producer {
    inner: Arc<Inner>,
    sender: Option<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// Start a producer on an existing cluster handle.
    pub async fn new(
        cluster: Arc<Cluster>,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        config.validate()?;
        let identity = init_idempotence(&cluster, &config).await?;
        let mut acc = Accumulator::new(StickyPartitioner::new(WeirRng::from_env()));
        if let Some(identity) = identity {
            acc.finish_reset(identity);
        }
        let inner = Arc::new(Inner {
            buffer: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            cluster,
            idempotent: identity.is_some() || config.transactional_id.is_some(),
            txn: config
                .transactional_id
                .clone()
                .map(transactional::TxnInner::new),
            state: Mutex::new(State {
                acc,
                flushing: 0,
                closed: false,
            }),
            wake: Notify::new(),
            idle: Notify::new(),
            refreshing: AtomicBool::new(false),
            config,
        });
        let sender = tokio::spawn(sender_loop(inner.clone()));
        Ok(Producer {
            inner,
            sender: Some(sender),
        })
    }

    /// Connect to `bootstrap` and start a producer.
    pub async fn connect(bootstrap: &str, config: ProducerConfig) -> Result<Producer, ClientError> {
        let mut cc = super::cluster::ClientConfig::new(bootstrap);
        cc.connection.client_id = config.client_id.clone();
        cc.connection.request_timeout = config.request_timeout;
        cc.retry_backoff = config.retry_backoff;
        cc.allow_auto_topic_creation = config.allow_auto_topic_creation;
        Producer::new(Cluster::connect(cc).await?, config).await
    }

    /// True when this producer writes with a producer id and sequences.
    pub fn is_idempotent(&self) -> bool {
        self.inner.idempotent
    }

    /// The producer id and epoch new batches are stamped with; `None` for a
    /// non-idempotent producer and while a new identity is being fetched.
    pub fn producer_identity(&self) -> Option<(i64, i16)> {
        self.inner
            .state
            .lock()
            .expect("producer state lock")
            .acc
            .identity()
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Queue a record. Waits only for metadata (first use of a topic) or
    /// buffer space; the returned future resolves on acknowledgement.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let inner = &self.inner;
        let partitions = match inner.cluster.metadata().topics.get(&record.topic) {
            Some(t) if t.error_code == 0 && !t.partitions.is_empty() => t.partitions.len() as i32,
            _ => inner.cluster.topic(&record.topic).await?.partitions.len() as i32,
        };
        let bytes = record.size_estimate();
        if bytes > inner.config.max_request_size || bytes > inner.config.buffer_memory {
            return Err(ClientError::kafka_with_message(
                10,
                Some(format!(
                    "record of {bytes} bytes exceeds max.request.size or buffer.memory"
                )),
            ));
        }
        let permit = inner
            .buffer
            .acquire_many(bytes as u32)
            .await
            .map_err(|_| ClientError::Closed)?;
        permit.forget();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let partition = {
            let mut state = inner.state.lock().expect("producer state lock");
            if state.closed {
                drop(state);
                inner.buffer.add_permits(bytes);
                return Err(ClientError::Closed);
            }
            match (record.partition, &record.key) {
                (Some(p), _) => {
                    if p < 0 || p >= partitions {
                        drop(state);
                        inner.buffer.add_permits(bytes);
                        return Err(ClientError::kafka_with_message(
                            codes::UNKNOWN_TOPIC_OR_PARTITION,
                            Some(format!("partition {p} of {} does not exist", record.topic)),
                        ));
                    }
                    p
                }
                (None, Some(key)) => partition_for_key(key, partitions),
                (None, None) => state.acc.sticky.partition(&record.topic, partitions),
            }
        };
        let topic = record.topic.clone();
        if inner.txn.is_some() {
            // The partition joins the transaction before any batch goes to
            // it (AddPartitionsToTxn); the record waits for that.
            if let Err(e) = self.txn_before_send(&topic, partition).await {
                inner.buffer.add_permits(bytes);
                return Err(e);
            }
        }
        let mut state = inner.state.lock().expect("producer state lock");
        if state.closed {
            drop(state);
            inner.buffer.add_permits(bytes);
            return Err(ClientError::Closed);
        }
        let appended = state.acc.append(
            &topic,
            partition,
            partitions,
            |index| to_wire(record, index, timestamp),
            bytes,
            inner.config.batch_size,
            now(),
            inner.config.delivery_timeout,
        );
        drop(state);
        if appended.new_batch || appended.batch_full {
            inner.wake.notify_one();
        }
        Ok(DeliveryFuture {
            outcome: appended.outcome,
            index: appended.index,
            partition,
            timestamp,
        })
    }

    /// Send every queued record now and wait until all are acknowledged or
    /// failed.
    pub async fn flush(&self) {
        let inner = &self.inner;
        inner.state.lock().expect("producer state lock").flushing += 1;
        inner.wake.notify_one();
        loop {
            let idle = inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if inner
                .state
                .lock()
                .expect("producer state lock")
                .acc
                .is_empty()
            {
                break;
            }
            idle.await;
        }
        inner.state.lock().expect("producer state lock").flushing -= 1;
    }

    /// Flush, then stop the sender. Later sends fail with `Closed`.
    pub async fn close(mut self) {
        self.flush().await;
        self.inner.state.lock().expect("producer state lock").closed = true;
        self.inner.wake.notify_one();
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender still delivers what is queued, then exits.
        if let Ok(mut s) = self.inner.state.lock() {
            s.closed = true;
        }
        self.inner.wake.notify_one();
    }
}

async fn init_idempotence(
    cluster: &Arc<Cluster>,
    config: &ProducerConfig,
) -> Result<Option<(i64, i16)>, ClientError> {
    if config.transactional_id.is_some() {
        // init_transactions() takes the identity, with the transactional id.
        return Ok(None);
    }
    let wanted = match config.enable_idempotence {
        Some(w) => w,
        None => config.acks == Acks::All && config.max_in_flight <= 5,
    };
    if !wanted {
        return Ok(None);
    }
    let conn = cluster.any_connection().await?;
    if conn.versions().version(ApiKey::InitProducerId).is_none() {
        if config.enable_idempotence == Some(true) {
            return Err(ClientError::Unsupported(
                "InitProducerId (needed by enable.idempotence=true)".to_string(),
            ));
        }
        return Ok(None);
    }
    init_producer_id(&conn, config).await.map(Some)
}

/// Ask for a fresh producer id (no transactional id, so epoch 0).
async fn init_producer_id(
    conn: &super::connection::Connection,
    config: &ProducerConfig,
) -> Result<(i64, i16), ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let mut attempt = 0;
    loop {
        let response = conn.send(&request).await?;
        match ClientError::check(response.error_code) {
            Ok(()) => return Ok((response.producer_id.0, response.producer_epoch)),
            Err(e) if e.is_retriable() && attempt < 10 => {
                attempt += 1;
                sleep_until(now() + config.retry_backoff).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn sender_loop(inner: Arc<Inner>) {
    loop {
        let (drained, done) = {
            let mut state = inner.state.lock().expect("producer state lock");
            let metadata = inner.cluster.metadata();
            let rules = DrainRules {
                linger: inner.config.linger,
                batch_size: inner.config.batch_size,
                max_in_flight: inner.config.max_in_flight,
                max_request_size: inner.config.max_request_size,
                send_all: state.flushing > 0 || state.closed,
                idempotent: inner.idempotent,
            };
            let drained = state
                .acc
                .drain(now(), &rules, |topic, p| metadata.leader(topic, p));
            let done = state.closed && state.acc.is_empty();
            (drained, done)
        };
        for batch in drained.expired {
            let ms = inner.config.delivery_timeout.as_millis() as u64;
            finish_batch(
                &inner,
                batch,
                Err(ClientError::Timeout {
                    what: "record delivery".to_string(),
                    ms,
                }),
                false,
            );
        }
        if drained.needs_metadata {
            maybe_refresh_metadata(&inner);
        }
        for (broker, requests) in drained.requests {
            dispatch_to_broker(&inner, broker, requests).await;
        }
        if done {
            return;
        }
        let wake = inner.wake.notified();
        match drained.next_wakeup {
            Some(at) => {
                tokio::select! {
                    _ = wake => {}
                    _ = sleep_until(at) => {}
                }
            }
            None if drained.needs_metadata => {
                tokio::select! {
                    _ = wake => {}
                    _ = sleep_until(now() + inner.config.retry_backoff) => {}
                }
            }
            None => wake.await,
        }
    }
}

fn maybe_refresh_metadata(inner: &Arc<Inner>) {
    if inner.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let topics: Vec<String> = {
            let state = inner.state.lock().expect("producer state lock");
            state.acc.queues.keys().map(|t| t.to_string()).collect()
        };
        if let Err(e) = inner.cluster.refresh_metadata(Some(&topics)).await {
            tracing::debug!(error = %e, "producer metadata refresh failed");
        }
        sleep_until(now() + inner.config.retry_backoff).await;
        inner.refreshing.store(false, Ordering::Release);
        inner.wake.notify_one();
    });
}

/// Complete a batch (success or final failure), or put it back for a retry.
fn finish_batch(
    inner: &Arc<Inner>,
    mut batch: ProducerBatch,
    result: Result<BatchDone, ClientError>,
    was_in_flight: bool,
) {
    let mut state = inner.state.lock().expect("producer state lock");
    if was_in_flight {
        state.acc.request_finished(&batch);
    }
    if let Err(e) = &result {
        if was_in_flight && may_have_been_written(e, inner.config.acks) {
            batch.maybe_written = true;
        }
        let t = now();
        let can_retry = batch.attempts < inner.config.retries && t < batch.deadline;
        let retry = match e.code() {
            Some(codes::OUT_OF_ORDER_SEQUENCE_NUMBER | UNKNOWN_PRODUCER_ID) if inner.idempotent => {
                if state.acc.is_stale(&batch) {
                    // Refused under an identity already replaced: the broker
                    // holds no copy under it, so send it under the new one,
                    // unless an unanswered attempt may have left a copy.
                    if can_retry && !batch.maybe_written {
                        state.acc.clear_stamp(&mut batch);
                        true
                    } else {
                        false
                    }
                } else {
                    // The first unacknowledged batch refused: the broker lost
                    // acknowledged data, retrying cannot help. Any later one:
                    // an earlier batch failed, resend in order after it.
                    !state.acc.is_first_unacked(&batch) && can_retry
                }
            }
            _ => e.is_retriable() && can_retry,
        };
        if retry {
            tracing::debug!(
                topic = %batch.topic,
                partition = batch.partition,
                sequence = ?batch.base_sequence(),
                attempt = batch.attempts + 1,
                error = %e,
                "retrying produce batch"
            );
            batch.attempts += 1;
            batch.retry_at = Some(t + inner.config.retry_backoff);
            state.acc.requeue(batch);
            drop(state);
            inner.wake.notify_one();
            return;
        }
    }
    let mut reset = false;
    match &result {
        Ok(_) => state.acc.acknowledged(&batch),
        // A batch with a current sequence failed for good: its successors'
        // sequences now follow a gap the broker will never fill.
        // A transactional batch failed: the transaction can only abort, and
        // the abort takes a new epoch (see transactional.rs).
        Err(e) if inner.txn.is_some() => {
            if let Some(txn) = &inner.txn {
                txn.batch_failed(e);
            }
        }
        Err(e) if batch.stamp.is_some() && !state.acc.is_stale(&batch) => {
            tracing::warn!(
                topic = %batch.topic,
                partition = batch.partition,
                sequence = ?batch.base_sequence(),
                error = %e,
                "idempotent batch failed; taking a new producer id"
            );
            reset = state.acc.begin_reset();
        }
        Err(_) => {}
    }
    assert!(
        state.acc.unfinished_batches > 0,
        "every completed batch was counted as unfinished"
    );
    state.acc.unfinished_batches -= 1;
    let empty = state.acc.is_empty();
    drop(state);
    if reset {
        tokio::spawn(reset_identity(inner.clone()));
    }
    inner.buffer.add_permits(batch.bytes);
    batch.outcome.set_maybe_written(batch.maybe_written);
    batch.outcome.complete(result);
    if empty {
        inner.idle.notify_waiters();
    }
    inner.wake.notify_one();
}

/// The attempt got no definite refusal: the broker may have written it.
/// Only errors Kafka returns before appending (or that never reached a
/// broker) count as refusals; anything else (a lost connection, a timeout,
/// REQUEST_TIMED_OUT and NOT_ENOUGH_REPLICAS_AFTER_APPEND after the append,
/// a storage error that may have hit the disk, an unknown error) may have
/// left the batch in the log.
///
/// NOT_LEADER_OR_FOLLOWER is a refusal only with acks 0 or 1. With acks=all
/// a leader that appended and then lost its leadership while waiting for the
/// in-sync replicas answers it too (as Kafka's delayed produce does), and
/// the record survives if the new leader had fetched it.
fn may_have_been_written(e: &ClientError, acks: Acks) -> bool {
    match e {
        ClientError::Connect { .. } | ClientError::Config(_) | ClientError::Unsupported(_) => false,
        ClientError::Kafka { code, .. } if *code == codes::NOT_LEADER_OR_FOLLOWER => {
            acks == Acks::All
        }
        ClientError::Kafka { code, .. } => !matches!(
            *code,
            CORRUPT_MESSAGE
                | codes::UNKNOWN_TOPIC_OR_PARTITION
                | codes::LEADER_NOT_AVAILABLE
                | MESSAGE_TOO_LARGE
                | NOT_ENOUGH_REPLICAS
                | INVALID_REQUIRED_ACKS
                | codes::OUT_OF_ORDER_SEQUENCE_NUMBER
                | UNKNOWN_PRODUCER_ID
                | codes::FENCED_LEADER_EPOCH
                | codes::UNKNOWN_LEADER_EPOCH
                | INVALID_RECORD
        ),
        _ => true,
    }
}

/// Refusals only the producer names (see `may_have_been_written`).
const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_REQUIRED_ACKS: i16 = 21;
const INVALID_RECORD: i16 = 87;

/// Fetch a new producer id after `begin_reset`, retrying until it comes (or
/// the producer is closed with nothing left to send); batches waiting for it
/// still expire at their delivery timeout.
async fn reset_identity(inner: Arc<Inner>) {
    loop {
        let attempt = async {
            let conn = inner.cluster.any_connection().await?;
            init_producer_id(&conn, &inner.config).await
        };
        match attempt.await {
            Ok(identity) => {
                tracing::info!(
                    producer_id = identity.0,
                    epoch = identity.1,
                    "idempotent producer reset: sequences restart at 0"
                );
                inner
                    .state
                    .lock()
                    .expect("producer state lock")
                    .acc
                    .finish_reset(identity);
                inner.wake.notify_one();
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "InitProducerId for a reset failed");
                {
                    let state = inner.state.lock().expect("producer state lock");
                    if state.closed && state.acc.is_empty() {
                        return;
                    }
                }
                sleep_until(now() + inner.config.retry_backoff).await;
            }
        }
    }
}

/// Write the requests for one broker in drain order, then hand each one's
/// response to its own task. Writing here, not in the spawned tasks, keeps a
/// partition's batches on the wire in sequence order.
async fn dispatch_to_broker(inner: &Arc<Inner>, broker: i32, requests: Vec<Vec<ProducerBatch>>) {
    let conn = match inner.cluster.broker_connection(broker).await {
        Ok(c) => c,
        Err(e) => {
            maybe_refresh_metadata(inner);
            for batch in requests.into_iter().flatten() {
                finish_batch(inner, batch, Err(e.clone()), true);
            }
            return;
        }
    };
    for mut batches in requests {
        let (request, failed) = build_request(inner, &mut batches);
        let mut results: Vec<Option<Result<BatchDone, ClientError>>> =
            batches.iter().map(|_| None).collect();
        for (i, e) in failed {
            results[i] = Some(Err(e));
        }
        if inner.config.acks == Acks::None {
            let outcome = conn.send_oneway(&request).await;
            let inner = inner.clone();
            tokio::spawn(async move {
                let result = outcome.map(|_| None);
                complete_request(&inner, batches, results, result);
            });
            continue;
        }
        let started = conn.start(&request).await;
        let inner = inner.clone();
        tokio::spawn(async move {
            let result = match started {
                Ok(pending) => pending.wait().await.map(Some),
                Err(e) => Err(e),
            };
            complete_request(&inner, batches, results, result);
        });
    }
}

fn build_request(
    inner: &Inner,
    batches: &mut [ProducerBatch],
) -> (ProduceRequest, Vec<(usize, ClientError)>) {
    let config = &inner.config;
    let mut topics: BTreeMap<Arc<str>, Vec<PartitionProduceData>> = BTreeMap::new();
    let mut failed: Vec<(usize, ClientError)> = Vec::new();
    for (i, batch) in batches.iter_mut().enumerate() {
        let identity = batch.stamp.map(|s| ProducerIdentity {
            producer_id: s.producer_id,
            producer_epoch: s.producer_epoch,
            base_sequence: s.base_sequence,
        });
        // A transactional producer's batches carry the transactional bit.
        let transactional = inner.txn.is_some() && identity.is_some();
        for r in batch.records.iter_mut() {
            r.transactional = transactional;
        }
        match encode_batch(&mut batch.records, config.compression, identity) {
            Ok(bytes) => topics.entry(batch.topic.clone()).or_default().push(
                PartitionProduceData::default()
                    .with_index(batch.partition)
                    .with_records(Some(bytes)),
            ),
            Err(e) => failed.push((i, e)),
        }
    }
    let request = ProduceRequest::default()
        .with_transactional_id(
            config
                .transactional_id
                .as_deref()
                .map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_acks(config.acks.wire())
        .with_timeout_ms(config.request_timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_data(parts)
                })
                .collect(),
        );
    (request, failed)
}

/// Turn a produce outcome into per-batch results and finish every batch.
/// `result` is `Ok(None)` for acks=0 (no response to read).
fn complete_request(
    inner: &Arc<Inner>,
    batches: Vec<ProducerBatch>,
    preset: Vec<Option<Result<BatchDone, ClientError>>>,
    result: Result<Option<ProduceResponse>, ClientError>,
) {
    let results: Vec<Result<BatchDone, ClientError>> = batches
        .iter()
        .zip(preset)
        .map(|(b, preset)| {
            if let Some(r) = preset {
                return r;
            }
            match &result {
                Err(e) => Err(e.clone()),
                Ok(None) => Ok(BatchDone {
                    base_offset: -1,
                    log_append_time: -1,
                    completed_at: now(),
                }),
                Ok(Some(response)) => batch_result(response, b),
            }
        })
        .collect();
    if results
        .iter()
        .any(|r| r.as_ref().is_err_and(|e| e.invalidates_metadata()))
    {
        maybe_refresh_metadata(inner);
    }
    for (batch, result) in batches.into_iter().zip(results) {
        finish_batch(inner, batch, result, true);
    }
}

fn batch_result(
    response: &ProduceResponse,
    batch: &ProducerBatch,
) -> Result<BatchDone, ClientError> {
    let partition = response
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == &*batch.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == batch.partition)
        .ok_or_else(|| {
            ClientError::Protocol(format!(
                "produce response lacks {}-{}",
                batch.topic, batch.partition
            ))
        })?;
    match partition.error_code {
        0 => Ok(BatchDone {
            base_offset: partition.base_offset,
            log_append_time: partition.log_append_time_ms,
            completed_at: now(),
        }),
        // The broker already has this batch (a retry of a write that landed).
        codes::DUPLICATE_SEQUENCE_NUMBER => Ok(BatchDone {
            base_offset: if partition.base_offset >= 0 {
                partition.base_offset
            } else {
                -1
            },
            log_append_time: -1,
            completed_at: now(),
        }),
        code => Err(ClientError::kafka_with_message(
            code,
            partition.error_message.as_ref().map(|m| m.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_before_the_append_are_definite() {
        for acks in [Acks::Leader, Acks::All] {
            for code in [3, 5, 10, 19, 45, 59, 74, 75] {
                assert!(
                    !may_have_been_written(&ClientError::kafka(code), acks),
                    "code {code} is refused before the append"
                );
            }
            // After the append, ambiguous, or unknown: may be in the log.
            for code in [-1, 7, 20, 56] {
                assert!(
                    may_have_been_written(&ClientError::kafka(code), acks),
                    "code {code}"
                );
            }
        }
        // NOT_LEADER_OR_FOLLOWER: before the append with acks=1; with
        // acks=all also after it, when leadership moved during the wait.
        let not_leader = ClientError::kafka(codes::NOT_LEADER_OR_FOLLOWER);
        assert!(!may_have_been_written(&not_leader, Acks::Leader));
        assert!(may_have_been_written(&not_leader, Acks::All));
        let lost = ClientError::Disconnected {
            addr: "a".into(),
            reason: "eof".into(),
        };
        assert!(may_have_been_written(&lost, Acks::All));
        let never = ClientError::Connect {
            addr: "a".into(),
            reason: "refused".into(),
        };
        assert!(!may_have_been_written(&never, Acks::All));
    }
}
