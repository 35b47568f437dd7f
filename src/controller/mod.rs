//! The metadata quorum: controllers replicate the metadata log with raft-rs
//! and the active one (the raft leader) decides every metadata change.
//!
//! - `api`: the requests brokers send the active controller and its answers.

pub mod api;
pub mod raft_node;
pub mod raft_storage;
pub mod rpc;
pub mod transport;
