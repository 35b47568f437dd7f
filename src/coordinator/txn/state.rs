//! The I/O-free transaction state machine: one [`TxnMetadata`] per
//! transactional id, the transitions of Kafka's TransactionCoordinator
//! (classic protocol, before KIP-890 part 2), and the [`Effects`] each
//! transition asks the shell to carry out: records to append to
//! `__transaction_state` and markers to send. Time enters as `now_ms`.
//!
//! Transitions apply in memory at once; the shell answers the client only
//! once the record is committed (HW past it), and the lock it holds around
//! call and append keeps the log in transition order.

use std::collections::{BTreeMap, BTreeSet};

use super::codes as ec;

/// Producer epochs at or above this get a new producer id (Kafka keeps
/// i16::MAX free for the fencing bump).
pub const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    PrepareEpochFence,
    Dead,
}

impl TxnState {
    /// The status byte of `__transaction_state` values (Kafka's ids).
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions / ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
            TxnState::Dead => "Dead",
        }
    }
}

/// Kafka's TransactionMetadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last id change (-1 if none): lets a
    /// KIP-360 retry of InitProducerId be recognised.
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub update_ms: i64,
}

/// Markers to write: one per partition, all with the same outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What a transition asks the shell to do. `records` hold the new value of
/// each changed id (None = tombstone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub records: Vec<(String, Option<TxnMetadata>)>,
    pub markers: Vec<MarkerJob>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.markers.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// transaction.max.timeout.ms
    pub max_timeout_ms: i32,
    /// transactional.id.expiration.ms
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// An InitProducerId request as the machine sees it.
#[derive(Clone, Debug)]
pub struct InitRequest<'a> {
    pub transactional_id: &'a str,
    pub timeout_ms: i32,
    /// KIP-360 (v3+): the producer id/epoch the client had, if any.
    pub expected: Option<(i64, i16)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// Persist `effects`, then answer with this id and epoch.
    Ok {
        producer_id: i64,
        producer_epoch: i16,
        effects: Effects,
    },
    /// The machine needs a fresh producer id: call again with one.
    NeedProducerId,
    /// Answer this code; still carry out `effects` (an Ongoing transaction
    /// being aborted answers CONCURRENT_TRANSACTIONS).
    Err(i16, Effects),
}

/// The transactions of the `__transaction_state` partitions this broker leads.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: BTreeMap<String, TxnMetadata>,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            txns: BTreeMap::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&TxnMetadata> {
        self.txns.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values()
    }

    /// Drop every id `keep` refuses (leadership of its partition moved).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.txns.retain(|id, _| keep(id));
    }

    /// Replay one record of `__transaction_state` (later wins).
    pub fn replay(&mut self, id: String, value: Option<TxnMetadata>) {
        match value {
            Some(m) => {
                self.txns.insert(id, m);
            }
            None => {
                self.txns.remove(&id);
            }
        }
    }

    /// After a load: the markers of every Prepare* transaction, to resend.
    pub fn pending_markers(&self, mut owned: impl FnMut(&str) -> bool) -> Vec<MarkerJob> {
        self.txns
            .values()
            .filter(|m| owned(&m.transactional_id))
            .filter_map(|m| match m.state {
                TxnState::PrepareCommit => Some(marker_job(m, true)),
                TxnState::PrepareAbort => Some(marker_job(m, false)),
                _ => None,
            })
            .collect()
    }

    pub fn init_producer_id(
        &mut self,
        req: InitRequest<'_>,
        fresh_producer_id: Option<i64>,
        now_ms: i64,
    ) -> InitOutcome {
        if req.timeout_ms <= 0 || req.timeout_ms > self.config.max_timeout_ms {
            return InitOutcome::Err(ec::INVALID_TRANSACTION_TIMEOUT, Effects::default());
        }
        let Some(m) = self.txns.get(req.transactional_id).cloned() else {
            if req.expected.is_some_and(|(pid, _)| pid >= 0) {
                // A KIP-360 client whose id expired: it must start over.
                return InitOutcome::Err(ec::INVALID_PRODUCER_ID_MAPPING, Effects::default());
            }
            let Some(pid) = fresh_producer_id else {
                return InitOutcome::NeedProducerId;
            };
            let m = TxnMetadata {
                transactional_id: req.transactional_id.to_string(),
                producer_id: pid,
                last_producer_id: -1,
                producer_epoch: 0,
                last_producer_epoch: -1,
                timeout_ms: req.timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                update_ms: now_ms,
            };
            return self.store_ok(m);
        };
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                InitOutcome::Err(ec::CONCURRENT_TRANSACTIONS, Effects::default())
            }
            TxnState::Dead => InitOutcome::Err(ec::CONCURRENT_TRANSACTIONS, Effects::default()),
            TxnState::Ongoing => {
                // Fence the running producer: abort its transaction with a
                // bumped epoch; the client retries until it completes.
                if let Some((pid, epoch)) = req.expected.filter(|(p, _)| *p >= 0) {
                    if pid != m.producer_id || epoch != m.producer_epoch {
                        return InitOutcome::Err(ec::PRODUCER_FENCED, Effects::default());
                    }
                }
                let effects = self.abort_bumping(m, now_ms);
                InitOutcome::Err(ec::CONCURRENT_TRANSACTIONS, effects)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if let Some((pid, epoch)) = req.expected.filter(|(p, _)| *p >= 0) {
                    let current = pid == m.producer_id && epoch == m.producer_epoch;
                    let retry = pid == m.last_producer_id && epoch == m.last_producer_epoch;
                    let retry_same_pid = pid == m.producer_id
                        && m.last_producer_epoch >= 0
                        && epoch == m.last_producer_epoch;
                    if retry || retry_same_pid {
                        // A retry whose answer was lost: same answer again.
                        return InitOutcome::Ok {
                            producer_id: m.producer_id,
                            producer_epoch: m.producer_epoch,
                            effects: Effects::default(),
                        };
                    }
                    if !current {
                        return InitOutcome::Err(ec::PRODUCER_FENCED, Effects::default());
                    }
                }
                let mut next = m.clone();
                if m.producer_epoch >= EPOCH_EXHAUSTED {
                    let Some(pid) = fresh_producer_id else {
                        return InitOutcome::NeedProducerId;
                    };
                    next.last_producer_id = m.producer_id;
                    next.producer_id = pid;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = -1;
                } else {
                    next.last_producer_id = -1;
                    next.last_producer_epoch = m.producer_epoch;
                    next.producer_epoch = m.producer_epoch + 1;
                }
                next.timeout_ms = req.timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.update_ms = now_ms;
                self.store_ok(next)
            }
        }
    }

    fn store_ok(&mut self, m: TxnMetadata) -> InitOutcome {
        let (producer_id, producer_epoch) = (m.producer_id, m.producer_epoch);
        let effects = Effects {
            records: vec![(m.transactional_id.clone(), Some(m.clone()))],
            markers: Vec::new(),
        };
        self.txns.insert(m.transactional_id.clone(), m);
        InitOutcome::Ok {
            producer_id,
            producer_epoch,
            effects,
        }
    }

    /// Ongoing -> PrepareAbort with the epoch bumped (so the old producer
    /// is fenced on every partition by the marker's epoch).
    fn abort_bumping(&mut self, mut m: TxnMetadata, now_ms: i64) -> Effects {
        assert!(
            m.state == TxnState::Ongoing,
            "only an Ongoing transaction is aborted by fencing"
        );
        if m.producer_epoch < EPOCH_EXHAUSTED {
            m.last_producer_epoch = m.producer_epoch;
            m.producer_epoch += 1;
        }
        m.state = TxnState::PrepareAbort;
        m.update_ms = now_ms;
        self.prepared(m)
    }

    fn prepared(&mut self, m: TxnMetadata) -> Effects {
        let commit = m.state == TxnState::PrepareCommit;
        let job = marker_job(&m, commit);
        self.txns.insert(m.transactional_id.clone(), m.clone());
        Effects {
            records: vec![(m.transactional_id.clone(), Some(m))],
            markers: vec![job],
        }
    }

    /// Check producer id and epoch of a request against the metadata.
    fn check_producer(&self, id: &str, pid: i64, epoch: i16) -> Result<TxnMetadata, i16> {
        let m = self.txns.get(id).ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
        if m.producer_id != pid {
            return Err(ec::INVALID_PRODUCER_ID_MAPPING);
        }
        if m.producer_epoch != epoch {
            return Err(ec::PRODUCER_FENCED);
        }
        Ok(m.clone())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn (with the offsets partition).
    pub fn add_partitions(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Effects, i16> {
        let m = self.check_producer(id, pid, epoch)?;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(ec::CONCURRENT_TRANSACTIONS)
            }
            TxnState::Dead => return Err(ec::INVALID_TXN_STATE),
            TxnState::Ongoing
                if partitions
                    .iter()
                    .all(|p| m.partitions.contains(&(p.0.clone(), p.1))) =>
            {
                return Ok(Effects::default())
            }
            _ => {}
        }
        let mut next = m;
        if next.state != TxnState::Ongoing {
            next.state = TxnState::Ongoing;
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.update_ms = now_ms;
        self.txns.insert(id.to_string(), next.clone());
        Ok(Effects {
            records: vec![(id.to_string(), Some(next))],
            markers: Vec::new(),
        })
    }

    /// EndTxn: Ongoing -> Prepare*, markers to send.
    pub fn end_txn(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<Effects, i16> {
        let m = match self.check_producer(id, pid, epoch) {
            Ok(m) => m,
            Err(ec::PRODUCER_FENCED) => {
                // A retry after the coordinator aborted (epoch bumped) with
                // the client's epoch still the last one: an abort retry is
                // fine, a commit is fenced.
                let m = self.txns.get(id).expect("checked above");
                if m.last_producer_epoch == epoch
                    && !commit
                    && matches!(m.state, TxnState::PrepareAbort | TxnState::CompleteAbort)
                {
                    return Ok(Effects::default());
                }
                return Err(ec::PRODUCER_FENCED);
            }
            Err(e) => return Err(e),
        };
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = m;
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.update_ms = now_ms;
                Ok(self.prepared(next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(Effects::default())
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ec::CONCURRENT_TRANSACTIONS)
            }
            (TxnState::PrepareEpochFence, _) => Err(ec::CONCURRENT_TRANSACTIONS),
            _ => Err(ec::INVALID_TXN_STATE),
        }
    }

    /// Whether `job`'s transaction is still in the Prepare* state that
    /// made it (same producer id and epoch).
    pub fn is_preparing(&self, job: &MarkerJob) -> bool {
        let want = if job.commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.txns.get(&job.transactional_id).is_some_and(|m| {
            m.state == want
                && m.producer_id == job.producer_id
                && m.producer_epoch == job.producer_epoch
        })
    }

    /// Every marker of `job` is written: Prepare* -> Complete*, unless the
    /// transaction moved on meanwhile (then nothing happens).
    pub fn markers_written(&mut self, job: &MarkerJob, now_ms: i64) -> Effects {
        if !self.is_preparing(job) {
            return Effects::default();
        }
        let mut next = self.txns[&job.transactional_id].clone();
        next.state = if job.commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.update_ms = now_ms;
        self.txns
            .insert(next.transactional_id.clone(), next.clone());
        Effects {
            records: vec![(next.transactional_id.clone(), Some(next))],
            markers: Vec::new(),
        }
    }

    /// Timer: abort Ongoing transactions older than their timeout (epoch
    /// bumped), expire idle ids (tombstones).
    pub fn tick(&mut self, now_ms: i64) -> Effects {
        let mut fx = Effects::default();
        let timed_out: Vec<TxnMetadata> = self
            .txns
            .values()
            .filter(|m| {
                m.state == TxnState::Ongoing && now_ms > m.start_ms + i64::from(m.timeout_ms)
            })
            .cloned()
            .collect();
        for m in timed_out {
            let e = self.abort_bumping(m, now_ms);
            fx.records.extend(e.records);
            fx.markers.extend(e.markers);
        }
        let expired: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                matches!(
                    m.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && now_ms > m.update_ms + self.config.id_expiration_ms
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for id in expired {
            self.txns.remove(&id);
            fx.records.push((id, None));
        }
        fx
    }
}

fn marker_job(m: &TxnMetadata, commit: bool) -> MarkerJob {
    MarkerJob {
        transactional_id: m.transactional_id.clone(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit,
        partitions: m.partitions.iter().cloned().collect(),
    }
}
