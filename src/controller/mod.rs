//! The metadata quorum: controllers replicate the metadata log with raft-rs
//! and the active one (the raft leader) decides every metadata change.
//!
//! - `api`: the requests brokers send the active controller and its answers.
//! - `codec`: their binary encoding on the controller listener.

pub mod api;
pub mod codec;
pub mod service;
