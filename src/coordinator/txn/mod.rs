//! The transaction coordinator (KIP-98, classic protocol) and
//! `__transaction_state`.
//!
//! - `state`: the I/O-free state machine (one TransactionMetadata per
//!   transactional id, its transitions and their effects).
//! - `records`: the key/value layout of `__transaction_state`.
//! - `service`: the async shell (persistence, loading, marker sending).
//! - `codes`: the Kafka error codes these APIs answer with.

pub mod codes;
pub mod records;
pub mod service;
pub mod state;

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

pub use state::{
    Effects, InitOutcome, InitRequest, MarkerJob, TxnConfig, TxnCoordinator, TxnMetadata, TxnState,
};

/// The internal topic holding transaction state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
