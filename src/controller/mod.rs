//! The metadata quorum: controllers replicate the metadata log with raft-rs
//! and the active one (the raft leader) decides every metadata change.
//!
//! - `api`: the requests brokers send the active controller and its answers.
//! - `codec`: their binary encoding on the controller listener.
//! - `service`: the state machine and the decision shell over `metadata::control`.
//! - `client`: how brokers reach the active controller.
//! - `raft_storage`, `raft_node`: the raft log on the Disk seam and the raft-rs driver.
//! - `transport`, `rpc`: the controller listener (raft messages and RPCs).

pub mod api;
pub mod codec;
pub mod raft_node;
pub mod raft_storage;
pub mod rpc;
pub mod service;
pub mod transport;
