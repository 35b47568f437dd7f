//! The transactional producer's state machine, as Kafka's
//! TransactionManager keeps it, with no I/O: which call is allowed in which
//! state, which partitions still need AddPartitionsToTxn, and how each
//! error code from the coordinator is handled.

use std::collections::BTreeSet;

/// Kafka error codes this module needs; the shared table has the rest.
/// (Local so as not to collide with the broker helpers' additions there.)
mod codes {
    pub use crate::protocol::error_codes::*;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const PRODUCER_FENCED: i16 = 90;
}

/// Where a transactional producer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// init_transactions() not done yet.
    Uninitialized,
    /// Holds a producer id and epoch; no transaction open.
    Ready,
    /// begin_transaction() was called.
    InTransaction,
    /// EndTxn(commit) under way.
    Committing,
    /// EndTxn(abort) under way.
    Aborting,
    /// A send or request in the transaction failed: only abort is allowed.
    Abortable(String),
    /// Fenced or refused: the producer is unusable.
    Fatal(String),
}

/// A call the application makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnCall {
    Init,
    Begin,
    Send,
    SendOffsets,
    Commit,
    Abort,
}

/// How a coordinator error is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry the same request after a backoff.
    Retry,
    /// Find the coordinator again, then retry.
    Rediscover,
    /// The producer is fenced or not allowed: every later call fails.
    Fatal,
    /// The transaction cannot commit: only abort is allowed next.
    Abortable,
}

/// Classify a transactional request's error code (never 0).
pub fn classify(code: i16) -> ErrorClass {
    match code {
        codes::COORDINATOR_NOT_AVAILABLE | codes::NOT_COORDINATOR => ErrorClass::Rediscover,
        codes::CONCURRENT_TRANSACTIONS
        | codes::COORDINATOR_LOAD_IN_PROGRESS
        | codes::REQUEST_TIMED_OUT
        | codes::NOT_ENOUGH_REPLICAS
        | codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | codes::UNKNOWN_TOPIC_OR_PARTITION => ErrorClass::Retry,
        codes::PRODUCER_FENCED
        | codes::INVALID_PRODUCER_EPOCH
        | codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        | codes::INVALID_TRANSACTION_TIMEOUT
        | codes::UNSUPPORTED_VERSION => ErrorClass::Fatal,
        _ => ErrorClass::Abortable,
    }
}

/// Why a call is refused in the current state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxnStateError {
    #[error("{call:?} is not allowed in state {state:?}")]
    Invalid { call: TxnCall, state: TxnState },
    #[error("the transaction must be aborted: {0}")]
    MustAbort(String),
    #[error("the producer is unusable: {0}")]
    Fatal(String),
}

/// The state plus the current transaction's partitions.
#[derive(Clone, Debug)]
pub struct TxnMachine {
    state: TxnState,
    /// Partitions the coordinator has added to the open transaction.
    added: BTreeSet<(String, i32)>,
    /// Whether the group's offsets partition was added (AddOffsetsToTxn).
    offsets_added: BTreeSet<String>,
}

impl Default for TxnMachine {
    fn default() -> Self {
        TxnMachine::new()
    }
}

impl TxnMachine {
    pub fn new() -> TxnMachine {
        TxnMachine {
            state: TxnState::Uninitialized,
            added: BTreeSet::new(),
            offsets_added: BTreeSet::new(),
        }
    }

    pub fn state(&self) -> &TxnState {
        &self.state
    }

    /// Check `call` is allowed now (without changing state).
    pub fn check(&self, call: TxnCall) -> Result<(), TxnStateError> {
        use TxnCall as C;
        use TxnState as S;
        let ok = match (&self.state, call) {
            (S::Fatal(why), _) => return Err(TxnStateError::Fatal(why.clone())),
            (S::Abortable(_), C::Abort) => true,
            (S::Abortable(why), _) => return Err(TxnStateError::MustAbort(why.clone())),
            (S::Uninitialized, C::Init) => true,
            // A retried init after a timeout, as Kafka allows.
            (S::Ready, C::Init) => true,
            (S::Ready, C::Begin) => true,
            (S::InTransaction, C::Send | C::SendOffsets | C::Commit | C::Abort) => true,
            // A commit or abort that failed retriably may be called again.
            (S::Committing, C::Commit) | (S::Aborting, C::Abort) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(TxnStateError::Invalid {
                call,
                state: self.state.clone(),
            })
        }
    }

    /// init_transactions() succeeded.
    pub fn initialized(&mut self) {
        assert!(
            matches!(self.state, TxnState::Uninitialized | TxnState::Ready),
            "txn state: init only from Uninitialized or Ready, not {:?}",
            self.state
        );
        self.state = TxnState::Ready;
    }

    pub fn begin(&mut self) -> Result<(), TxnStateError> {
        self.check(TxnCall::Begin)?;
        self.added.clear();
        self.offsets_added.clear();
        self.state = TxnState::InTransaction;
        Ok(())
    }

    /// Whether `tp` still needs AddPartitionsToTxn in this transaction.
    pub fn needs_add(&self, topic: &str, partition: i32) -> bool {
        !self.added.contains(&(topic.to_string(), partition))
    }

    /// The coordinator added `tp` to the transaction.
    pub fn partition_added(&mut self, topic: &str, partition: i32) {
        self.added.insert((topic.to_string(), partition));
    }

    /// The partitions in the open transaction, sorted.
    pub fn partitions(&self) -> Vec<(String, i32)> {
        self.added.iter().cloned().collect()
    }

    /// Nothing was added to the transaction: no EndTxn is needed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.offsets_added.is_empty()
    }

    /// Whether AddOffsetsToTxn is still needed for `group`.
    pub fn needs_offsets_add(&self, group: &str) -> bool {
        !self.offsets_added.contains(group)
    }

    pub fn offsets_added(&mut self, group: &str) {
        self.offsets_added.insert(group.to_string());
    }

    /// EndTxn is about to be sent.
    pub fn ending(&mut self, commit: bool) -> Result<(), TxnStateError> {
        self.check(if commit {
            TxnCall::Commit
        } else {
            TxnCall::Abort
        })?;
        self.state = if commit {
            TxnState::Committing
        } else {
            TxnState::Aborting
        };
        Ok(())
    }

    /// EndTxn succeeded: ready for the next transaction.
    pub fn ended(&mut self) {
        assert!(
            matches!(self.state, TxnState::Committing | TxnState::Aborting),
            "txn state: a transaction ends only from Committing or Aborting, not {:?}",
            self.state
        );
        self.added.clear();
        self.offsets_added.clear();
        self.state = TxnState::Ready;
    }

    /// A request failed with a code of class `class`; moves to Abortable or
    /// Fatal as Kafka's producer does. Retry and Rediscover leave the state.
    pub fn failed(&mut self, class: ErrorClass, why: impl Into<String>) {
        let why = why.into();
        match class {
            ErrorClass::Fatal => self.state = TxnState::Fatal(why),
            ErrorClass::Abortable => match self.state {
                // An abort that fails abortably stays an abort to retry.
                TxnState::Aborting | TxnState::Fatal(_) => {}
                // An unexpected EndTxn(commit) error: an earlier attempt may
                // have committed, so aborting now would lie. Kafka treats it
                // as fatal too.
                TxnState::Committing => self.state = TxnState::Fatal(why),
                _ => self.state = TxnState::Abortable(why),
            },
            ErrorClass::Retry | ErrorClass::Rediscover => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_runs_init_begin_send_commit() {
        let mut m = TxnMachine::new();
        assert!(m.check(TxnCall::Begin).is_err(), "begin before init");
        assert!(m.check(TxnCall::Send).is_err(), "send before init");
        m.check(TxnCall::Init).unwrap();
        m.initialized();
        assert!(
            m.check(TxnCall::Send).is_err(),
            "send outside a transaction"
        );
        assert!(
            m.check(TxnCall::Commit).is_err(),
            "commit outside a transaction"
        );
        m.begin().unwrap();
        assert!(m.begin().is_err(), "no nested transactions");
        assert!(m.needs_add("t", 0));
        m.partition_added("t", 0);
        assert!(!m.needs_add("t", 0));
        assert!(m.needs_add("t", 1));
        m.ending(true).unwrap();
        assert!(m.check(TxnCall::Send).is_err(), "send while committing");
        m.ended();
        assert_eq!(m.state(), &TxnState::Ready);
        m.begin().unwrap();
        assert!(
            m.needs_add("t", 0),
            "a new transaction adds its partitions again"
        );
    }

    #[test]
    fn an_abortable_error_allows_only_abort() {
        let mut m = TxnMachine::new();
        m.initialized();
        m.begin().unwrap();
        m.failed(classify(codes::MESSAGE_TOO_LARGE), "send failed");
        assert!(matches!(
            m.check(TxnCall::Commit),
            Err(TxnStateError::MustAbort(_))
        ));
        assert!(m.check(TxnCall::Send).is_err());
        m.ending(false).unwrap();
        m.ended();
        m.begin().unwrap();
    }

    #[test]
    fn a_fatal_error_refuses_everything() {
        let mut m = TxnMachine::new();
        m.initialized();
        m.begin().unwrap();
        m.failed(classify(codes::PRODUCER_FENCED), "fenced");
        for call in [
            TxnCall::Abort,
            TxnCall::Commit,
            TxnCall::Begin,
            TxnCall::Init,
        ] {
            assert!(
                matches!(m.check(call), Err(TxnStateError::Fatal(_))),
                "{call:?}"
            );
        }
    }

    #[test]
    fn retriable_errors_keep_the_state() {
        let mut m = TxnMachine::new();
        m.initialized();
        m.begin().unwrap();
        m.ending(true).unwrap();
        for code in [
            codes::CONCURRENT_TRANSACTIONS,
            codes::NOT_COORDINATOR,
            codes::COORDINATOR_NOT_AVAILABLE,
        ] {
            m.failed(classify(code), "retry");
        }
        assert_eq!(m.state(), &TxnState::Committing);
        m.check(TxnCall::Commit).unwrap();
    }

    #[test]
    fn an_unexpected_commit_error_is_fatal_not_abortable() {
        let mut m = TxnMachine::new();
        m.initialized();
        m.begin().unwrap();
        m.ending(true).unwrap();
        m.failed(ErrorClass::Abortable, "INVALID_TXN_STATE");
        assert!(matches!(m.state(), TxnState::Fatal(_)), "{:?}", m.state());
    }

    #[test]
    fn error_classes_follow_kafka() {
        assert_eq!(classify(codes::NOT_COORDINATOR), ErrorClass::Rediscover);
        assert_eq!(
            classify(codes::COORDINATOR_NOT_AVAILABLE),
            ErrorClass::Rediscover
        );
        assert_eq!(classify(codes::CONCURRENT_TRANSACTIONS), ErrorClass::Retry);
        assert_eq!(classify(codes::PRODUCER_FENCED), ErrorClass::Fatal);
        assert_eq!(classify(codes::INVALID_PRODUCER_EPOCH), ErrorClass::Fatal);
        assert_eq!(
            classify(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            ErrorClass::Fatal
        );
    }
}
