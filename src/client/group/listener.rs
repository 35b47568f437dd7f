//! Callbacks around partition ownership changes, after Kafka's
//! ConsumerRebalanceListener. They run inside `GroupConsumer::poll` (and
//! `close`), on the caller's task, so they see a consistent assignment.
//!
//! Order guarantees: `on_partitions_revoked` runs after the member's
//! positions for those partitions were committed (when auto-commit is on)
//! and before any other member can be handed them; `on_partitions_lost`
//! means the member was fenced and another member may already own them, so
//! nothing was committed. Under the cooperative protocol only partitions
//! that actually move are revoked; `on_partitions_assigned` gets only the
//! partitions new to this member (possibly none).

use crate::client::offsets::TopicPartition;

pub trait RebalanceListener: Send {
    /// Partitions this member gives up in an orderly rebalance.
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]);

    /// Partitions newly assigned to this member.
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]);

    /// Partitions this member no longer owns because it was fenced out of
    /// the group (session expired, generation moved on). Kafka's default
    /// treats loss as a revocation; so does this one.
    fn on_partitions_lost(&mut self, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(partitions);
    }
}

/// The listener used when none is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopListener;

impl RebalanceListener for NoopListener {
    fn on_partitions_revoked(&mut self, _: &[TopicPartition]) {}
    fn on_partitions_assigned(&mut self, _: &[TopicPartition]) {}
}
