//! Consumer groups on the classic protocol, client side.
//!
//! - `admin`: list, describe, committed offsets, resets and deletion
//!   (`weir groups`).
//! - `consumer`: [`GroupConsumer`], a group-managed consumer: assignors
//!   chosen by `partition.assignment.strategy`, eager or cooperative
//!   (KIP-429) rebalancing, auto-commit, sync and async commits, and a
//!   [`RebalanceListener`].
//! - `membership`: the JoinGroup/SyncGroup/Heartbeat/OffsetCommit requests
//!   the consumer sends, free of consumer state.

pub mod admin;
pub mod config;
pub mod consumer;
pub mod listener;
pub mod membership;

pub use admin::{decode_assignment, GroupAdmin, GroupDescription, GroupListing, GroupMember};
pub use config::GroupConfig;
pub use consumer::{CommitHandle, GroupConsumer};
pub use listener::{NoopListener, RebalanceListener};
