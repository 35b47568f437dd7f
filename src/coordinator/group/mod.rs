//! The consumer group coordinator (Kafka's classic protocol) and committed
//! offsets.
//!
//! - `state`: the I/O-free state machine (groups, members, generations,
//!   rebalances, static membership, offsets in memory).
//! - `records`: the key/value layouts of `__consumer_offsets`.
//! - `service`: the async shell: waiting JoinGroup/SyncGroup requests,
//!   timers, persistence to and loading from `__consumer_offsets`.
//! - `codes`: the Kafka error codes these APIs answer with.

pub mod codes;
pub mod records;
pub mod service;
pub mod state;

#[cfg(test)]
mod tests;

pub use service::{GroupService, OffsetToCommit, OFFSETS_TOPIC};
pub use state::{GroupCoordinator, GroupState};
