//! The transactional producer's calls (KIP-98, classic protocol): the
//! requests to the transaction coordinator, driven by [`TxnMachine`].
//!
//! Partitions are added to the transaction (AddPartitionsToTxn) from
//! `send()` before the first record of the transaction goes to each, so no
//! batch can reach a partition the coordinator does not know about. Commit
//! flushes every batch, then sends EndTxn(commit); a failed batch makes the
//! transaction abortable. After an abort that followed a failed batch the
//! producer takes a bumped epoch (InitProducerId with its transactional id,
//! as KIP-360 does) so the partitions' sequences restart cleanly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::txn::{classify, ErrorClass, TxnCall, TxnMachine, TxnStateError};
use super::Producer;
use crate::client::connection::Connection;
use crate::client::error::ClientError;
use crate::env::time::{now, sleep, Instant};

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A consumer group's identity for send_offsets_to_transaction, as Kafka's
/// ConsumerGroupMetadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl GroupMetadata {
    /// A group used only to store offsets (no live membership checks).
    pub fn standalone(group_id: impl Into<String>) -> GroupMetadata {
        GroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// Transactional state a producer with a transactional.id keeps.
pub(super) struct TxnInner {
    pub(super) id: String,
    pub(super) machine: Mutex<TxnMachine>,
    /// Connection to the transaction coordinator, when known.
    coordinator: Mutex<Option<Arc<Connection>>>,
    /// A batch of the open transaction failed: the next abort takes a new
    /// epoch so sequences restart.
    pub(super) needs_epoch_bump: Mutex<bool>,
}

impl TxnInner {
    pub(super) fn new(id: String) -> TxnInner {
        TxnInner {
            id,
            machine: Mutex::new(TxnMachine::new()),
            coordinator: Mutex::new(None),
            needs_epoch_bump: Mutex::new(false),
        }
    }

    /// A batch of the transaction failed for good.
    pub(super) fn batch_failed(&self, e: &ClientError) {
        self.machine
            .lock()
            .expect("txn machine lock")
            .failed(ErrorClass::Abortable, format!("a send failed: {e}"));
        *self.needs_epoch_bump.lock().expect("txn lock") = true;
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn state_err(e: TxnStateError) -> ClientError {
    ClientError::Protocol(format!("transaction: {e}"))
}

/// What to do after one attempt of a coordinator request.
enum Step {
    Done,
    Retry,
}

impl Producer {
    fn txn(&self) -> Result<&TxnInner, ClientError> {
        self.inner
            .txn
            .as_ref()
            .ok_or_else(|| ClientError::Config("no transactional.id configured".to_string()))
    }

    fn check(&self, call: TxnCall) -> Result<(), ClientError> {
        self.txn()?
            .machine
            .lock()
            .expect("txn machine lock")
            .check(call)
            .map_err(state_err)
    }

    /// How long a transactional call keeps retrying (Kafka's max.block.ms
    /// role; Weir uses delivery.timeout.ms).
    fn deadline(&self) -> Instant {
        now() + self.inner.config.delivery_timeout
    }

    async fn find_coordinator(
        &self,
        key_type: i8,
        key: &str,
    ) -> Result<Arc<Connection>, ClientError> {
        let any = self.inner.cluster.any_connection().await?;
        let req = if any.version_for(ApiKey::FindCoordinator)? >= 4 {
            FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_coordinator_keys(vec![s(key)])
        } else {
            FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_key(s(key))
        };
        let r = any.send(&req).await?;
        let (code, host, port) = match r.coordinators.first() {
            Some(c) => (c.error_code, c.host.to_string(), c.port),
            None => (r.error_code, r.host.to_string(), r.port),
        };
        ClientError::check(code)?;
        self.inner
            .cluster
            .connection(&format!("{host}:{port}"))
            .await
    }

    async fn txn_coordinator(&self) -> Result<Arc<Connection>, ClientError> {
        let txn = self.txn()?;
        if let Some(c) = txn.coordinator.lock().expect("txn lock").clone() {
            return Ok(c);
        }
        let c = self.find_coordinator(KEY_TYPE_TRANSACTION, &txn.id).await?;
        *txn.coordinator.lock().expect("txn lock") = Some(c.clone());
        Ok(c)
    }

    /// Handle one attempt's outcome: a transport error or error code.
    async fn step(
        &self,
        outcome: Result<i16, ClientError>,
        deadline: Instant,
    ) -> Result<Step, ClientError> {
        let txn = self.txn()?;
        let backoff = self.inner.config.retry_backoff;
        let class = match &outcome {
            Ok(0) => return Ok(Step::Done),
            Ok(code) => classify(*code),
            // The coordinator may have moved or died: find it again.
            Err(e) if e.is_retriable() || e.code().is_none() => ErrorClass::Rediscover,
            Err(_) => ErrorClass::Abortable,
        };
        let err = || match &outcome {
            Ok(code) => ClientError::kafka(*code),
            Err(e) => e.clone(),
        };
        match class {
            ErrorClass::Retry | ErrorClass::Rediscover => {
                if class == ErrorClass::Rediscover {
                    *txn.coordinator.lock().expect("txn lock") = None;
                }
                if now() >= deadline {
                    return Err(ClientError::Timeout {
                        what: format!("transaction request ({})", err()),
                        ms: self.inner.config.delivery_timeout.as_millis() as u64,
                    });
                }
                sleep(backoff).await;
                Ok(Step::Retry)
            }
            ErrorClass::Fatal | ErrorClass::Abortable => {
                let e = err();
                txn.machine
                    .lock()
                    .expect("txn machine lock")
                    .failed(class, e.to_string());
                Err(e)
            }
        }
    }

    fn identity(&self) -> Result<(i64, i16), ClientError> {
        self.producer_identity().ok_or_else(|| {
            ClientError::Protocol("transactional producer has no producer id".into())
        })
    }

    /// The transaction state, for a transactional producer.
    pub fn transaction_state(&self) -> Option<super::txn::TxnState> {
        self.inner
            .txn
            .as_ref()
            .map(|t| t.machine.lock().expect("txn machine lock").state().clone())
    }

    /// InitProducerId with the transactional id: fences older producers of
    /// the same id and finishes (aborts) any transaction they left open.
    pub async fn init_transactions(&self) -> Result<(), ClientError> {
        self.check(TxnCall::Init)?;
        let identity = self.init_txn_producer_id().await?;
        self.install_identity(identity);
        self.txn()?
            .machine
            .lock()
            .expect("txn machine lock")
            .initialized();
        Ok(())
    }

    async fn init_txn_producer_id(&self) -> Result<(i64, i16), ClientError> {
        let txn = self.txn()?;
        let timeout_ms = self
            .inner
            .config
            .transaction_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32;
        let deadline = self.deadline();
        loop {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(&txn.id))))
                .with_transaction_timeout_ms(timeout_ms);
            let outcome = match self.txn_coordinator().await {
                Ok(c) => c
                    .send(&req)
                    .await
                    .map(|r| (r.error_code, r.producer_id.0, r.producer_epoch)),
                Err(e) => Err(e),
            };
            let code = outcome.as_ref().map(|o| o.0).map_err(Clone::clone);
            if let Step::Done = self.step(code, deadline).await? {
                let (_, pid, epoch) = outcome.expect("Done follows a response");
                return Ok((pid, epoch));
            }
        }
    }

    fn install_identity(&self, identity: (i64, i16)) {
        let mut state = self.inner.state.lock().expect("producer state lock");
        state.acc.begin_reset();
        state.acc.finish_reset(identity);
    }

    /// Open a transaction (local only, as in Kafka).
    pub fn begin_transaction(&self) -> Result<(), ClientError> {
        self.txn()?
            .machine
            .lock()
            .expect("txn machine lock")
            .begin()
            .map_err(state_err)
    }

    /// Called by send() for a transactional producer: refuse sends outside
    /// a transaction, and add `partition` to it first if it is new.
    pub(super) async fn txn_before_send(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(), ClientError> {
        let txn = self.txn()?;
        {
            let m = txn.machine.lock().expect("txn machine lock");
            m.check(TxnCall::Send).map_err(state_err)?;
            if !m.needs_add(topic, partition) {
                return Ok(());
            }
        }
        let (pid, epoch) = self.identity()?;
        let deadline = self.deadline();
        loop {
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(&txn.id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![partition])]);
            let outcome = match self.txn_coordinator().await {
                Ok(c) => c.send(&req).await.map(|r| {
                    if r.error_code != 0 {
                        return r.error_code;
                    }
                    r.results_by_topic_v3_and_below
                        .iter()
                        .flat_map(|t| t.results_by_partition.iter())
                        .map(|p| p.partition_error_code)
                        .find(|c| *c != 0)
                        .unwrap_or(0)
                }),
                Err(e) => Err(e),
            };
            if let Step::Done = self.step(outcome, deadline).await? {
                txn.machine
                    .lock()
                    .expect("txn machine lock")
                    .partition_added(topic, partition);
                return Ok(());
            }
        }
    }

    /// Commit consumer offsets as part of the transaction: AddOffsetsToTxn
    /// to the transaction coordinator, then TxnOffsetCommit to the group's.
    /// `offsets` are the next offsets to read, per (topic, partition).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
        group: &GroupMetadata,
    ) -> Result<(), ClientError> {
        self.check(TxnCall::SendOffsets)?;
        let txn = self.txn()?;
        let (pid, epoch) = self.identity()?;
        let deadline = self.deadline();
        let needs_add = txn
            .machine
            .lock()
            .expect("txn machine lock")
            .needs_offsets_add(&group.group_id);
        if needs_add {
            loop {
                let req = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&txn.id)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(s(&group.group_id)));
                let outcome = match self.txn_coordinator().await {
                    Ok(c) => c.send(&req).await.map(|r| r.error_code),
                    Err(e) => Err(e),
                };
                if let Step::Done = self.step(outcome, deadline).await? {
                    txn.machine
                        .lock()
                        .expect("txn machine lock")
                        .offsets_added(&group.group_id);
                    break;
                }
            }
        }
        let mut topics: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1),
            );
        }
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&txn.id)))
            .with_group_id(GroupId(s(&group.group_id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(group.generation_id)
            .with_member_id(s(&group.member_id))
            .with_group_instance_id(group.group_instance_id.as_deref().map(s))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let mut group_coordinator: Option<Arc<Connection>> = None;
        loop {
            let conn = match &group_coordinator {
                Some(c) => Ok(c.clone()),
                None => self.find_coordinator(KEY_TYPE_GROUP, &group.group_id).await,
            };
            let outcome = match conn {
                Ok(c) => {
                    group_coordinator = Some(c.clone());
                    c.send(&req).await.map(|r| {
                        r.topics
                            .iter()
                            .flat_map(|t| t.partitions.iter())
                            .map(|p| p.error_code)
                            .find(|c| *c != 0)
                            .unwrap_or(0)
                    })
                }
                Err(e) => Err(e),
            };
            // The group coordinator's errors classify like the transaction
            // coordinator's; a rediscovery must find the group's, though.
            let rediscover = match &outcome {
                Ok(c) => classify(*c) == ErrorClass::Rediscover && *c != 0,
                Err(_) => true,
            };
            if rediscover {
                group_coordinator = None;
            }
            if let Step::Done = self.step(outcome, deadline).await? {
                return Ok(());
            }
        }
    }

    /// Flush every batch of the transaction, then EndTxn(commit). A failed
    /// batch makes the transaction abortable: the error is returned and
    /// only abort_transaction() is allowed.
    pub async fn commit_transaction(&self) -> Result<(), ClientError> {
        self.check(TxnCall::Commit)?;
        self.flush().await;
        // flush() waits for every batch; a failure made the state abortable.
        self.txn()?
            .machine
            .lock()
            .expect("txn machine lock")
            .ending(true)
            .map_err(state_err)?;
        self.end_txn(true).await
    }

    /// Wait for in-flight batches, then EndTxn(abort). Records of the
    /// transaction not yet acknowledged may still be written: the abort
    /// marker hides them from read_committed consumers.
    pub async fn abort_transaction(&self) -> Result<(), ClientError> {
        self.check(TxnCall::Abort)?;
        self.flush().await;
        self.txn()?
            .machine
            .lock()
            .expect("txn machine lock")
            .ending(false)
            .map_err(state_err)?;
        self.end_txn(false).await?;
        let txn = self.txn()?;
        let bump = std::mem::take(&mut *txn.needs_epoch_bump.lock().expect("txn lock"));
        if bump {
            // Sequences after a failed batch have a gap: a new epoch
            // restarts them (KIP-360).
            let identity = self.init_txn_producer_id().await?;
            self.install_identity(identity);
        }
        Ok(())
    }

    async fn end_txn(&self, commit: bool) -> Result<(), ClientError> {
        let txn = self.txn()?;
        let (pid, epoch) = self.identity()?;
        let deadline = self.deadline();
        let nothing_added = txn.machine.lock().expect("txn machine lock").is_empty();
        if !nothing_added {
            loop {
                let req = EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&txn.id)))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(commit);
                let outcome = match self.txn_coordinator().await {
                    Ok(c) => c.send(&req).await.map(|r| r.error_code),
                    Err(e) => Err(e),
                };
                if let Step::Done = self.step(outcome, deadline).await? {
                    break;
                }
            }
        }
        txn.machine.lock().expect("txn machine lock").ended();
        Ok(())
    }
}
