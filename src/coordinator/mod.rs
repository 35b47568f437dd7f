//! Coordinators: `group` (consumer groups and `__consumer_offsets`) and
//! `txn` (transactions and `__transaction_state`).
//!
//! **Architecture Invariant:** each coordinator is an I/O-free state machine
//! (time enters as `now_ms`) driven by a thin async shell that owns the lock,
//! the waiting requests and the writes to the internal topic.

pub mod group;
pub mod txn;
