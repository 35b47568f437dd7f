//! Weir: a Kafka-compatible event-streaming broker.
//!
//! See ARCHITECTURE.md for the map of the code and its invariants.

pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod env;
pub mod log;
pub mod metadata;
pub mod protocol;
pub mod replica;
