//! Partition assignors for the classic consumer group protocol, after
//! Kafka's `ConsumerPartitionAssignor`: the group leader decodes every
//! member's [`Subscription`], runs the assignor the coordinator selected and
//! hands each member an [`Assignment`]. Assignors are pure functions of
//! (partition counts, subscriptions): no I/O, no clock, no randomness, and
//! every map is ordered, so the same input always gives the same answer.
//!
//! - `range`: per topic, contiguous ranges over the subscribers (eager).
//! - `roundrobin`: all partitions dealt round-robin over members (eager).
//! - `sticky`: balanced within one, keeping each member's previous
//!   partitions where balance allows (eager; KIP-54).
//! - `cooperative-sticky`: `sticky`, except a partition moving between two
//!   live members is withheld for one round so its old owner can revoke it
//!   first (KIP-429 incremental cooperative rebalancing).

pub mod protocol;
mod range;
mod roundrobin;
mod sticky;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

pub use range::RangeAssignor;
pub use roundrobin::RoundRobinAssignor;
pub use sticky::{CooperativeStickyAssignor, StickyAssignor};

pub use super::offsets::TopicPartition;

/// How members hand partitions over in a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RebalanceProtocol {
    /// Every member revokes everything before rejoining.
    Eager,
    /// Members keep their partitions while rejoining and revoke only those
    /// that move; the moved ones are assigned in a follow-up rebalance.
    Cooperative,
}

/// What a member sends in JoinGroup (ConsumerProtocolSubscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Sorted, no duplicates.
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now (cooperative) or owned last
    /// generation (eager, for stickiness). Sorted, no duplicates.
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation `owned_partitions` belong to; -1 when unknown.
    pub generation: i32,
    pub rack_id: Option<String>,
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            topics: Vec::new(),
            user_data: None,
            owned_partitions: Vec::new(),
            generation: -1,
            rack_id: None,
        }
    }
}

impl Subscription {
    pub fn new(topics: &[String]) -> Subscription {
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        Subscription {
            topics,
            ..Subscription::default()
        }
    }
}

/// What the leader hands a member in SyncGroup (ConsumerProtocolAssignment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Sorted, no duplicates.
    pub partitions: Vec<TopicPartition>,
    pub user_data: Option<Bytes>,
}

/// A partition assignment strategy (Kafka's ConsumerPartitionAssignor).
pub trait Assignor: Send + Sync {
    /// The protocol name members offer in JoinGroup ("range", ...).
    fn name(&self) -> &'static str;

    /// Rebalance protocols this assignor can run under, weakest first.
    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Eager]
    }

    /// Assignor-specific data for this member's subscription, given the
    /// partitions it owns (or owned last, under the eager protocol) and
    /// their generation.
    fn subscription_user_data(&self, _owned: &[TopicPartition], _generation: i32) -> Option<Bytes> {
        None
    }

    /// Assign partitions. `partitions`: topic -> partition count (topics
    /// that do not exist are absent); `members`: member id -> subscription.
    /// The answer has an entry for every member, and assigns a partition
    /// only to a member subscribed to its topic, and at most once.
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, Assignment>;
}

/// The built-in assignor called `name`: Kafka's short names, librdkafka's,
/// or the Java class names, so a `partition.assignment.strategy` value
/// copied from a Java config works.
pub fn by_name(name: &str) -> Option<Arc<dyn Assignor>> {
    let short = name.trim().rsplit('.').next().unwrap_or_default();
    Some(match short {
        "range" | "RangeAssignor" => Arc::new(RangeAssignor),
        "roundrobin" | "RoundRobinAssignor" => Arc::new(RoundRobinAssignor),
        "sticky" | "StickyAssignor" => Arc::new(StickyAssignor),
        "cooperative-sticky" | "CooperativeStickyAssignor" => Arc::new(CooperativeStickyAssignor),
        _ => return None,
    })
}

/// The rebalance protocol a member offering `assignors` runs: cooperative
/// only when every one supports it (Kafka's rule, so a group can move from
/// eager to cooperative with two rolling bounces).
pub fn rebalance_protocol(assignors: &[Arc<dyn Assignor>]) -> RebalanceProtocol {
    let all_cooperative = !assignors.is_empty()
        && assignors.iter().all(|a| {
            a.supported_protocols()
                .contains(&RebalanceProtocol::Cooperative)
        });
    if all_cooperative {
        RebalanceProtocol::Cooperative
    } else {
        RebalanceProtocol::Eager
    }
}

/// Every partition of every subscribed topic that exists, sorted.
fn subscribed_partitions(
    partitions: &BTreeMap<String, i32>,
    members: &BTreeMap<String, Subscription>,
) -> Vec<TopicPartition> {
    let mut topics: Vec<&String> = members.values().flat_map(|s| s.topics.iter()).collect();
    topics.sort();
    topics.dedup();
    topics
        .into_iter()
        .filter_map(|t| partitions.get(t).map(|&n| (t, n)))
        .flat_map(|(t, n)| (0..n.max(0)).map(move |p| (t.clone(), p)))
        .collect()
}

/// An assignment map with an empty entry for every member.
fn empty_for(members: &BTreeMap<String, Subscription>) -> BTreeMap<String, Vec<TopicPartition>> {
    members.keys().map(|m| (m.clone(), Vec::new())).collect()
}

fn finish(assigned: BTreeMap<String, Vec<TopicPartition>>) -> BTreeMap<String, Assignment> {
    assigned
        .into_iter()
        .map(|(m, mut ps)| {
            ps.sort();
            ps.dedup();
            (
                m,
                Assignment {
                    partitions: ps,
                    user_data: None,
                },
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing;
