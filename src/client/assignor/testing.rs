//! Helpers shared by the assignors' unit tests.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, Subscription, TopicPartition};

pub fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

pub fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
    list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

pub fn subs(list: &[(&str, &[&str])]) -> BTreeMap<String, Subscription> {
    list.iter()
        .map(|(m, ts)| {
            let topics: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            (m.to_string(), Subscription::new(&topics))
        })
        .collect()
}

/// Give each member the partitions it owns, at `generation`.
pub fn with_owned(
    mut members: BTreeMap<String, Subscription>,
    owned: &BTreeMap<String, Assignment>,
    generation: i32,
) -> BTreeMap<String, Subscription> {
    for (m, s) in members.iter_mut() {
        s.owned_partitions = owned
            .get(m)
            .map(|a| a.partitions.clone())
            .unwrap_or_default();
        s.generation = generation;
    }
    members
}

/// Check the invariants every assignor keeps: an entry per member, a
/// partition only to a subscriber, at most once, and only existing ones.
pub fn check_valid(
    partitions: &BTreeMap<String, i32>,
    members: &BTreeMap<String, Subscription>,
    got: &BTreeMap<String, Assignment>,
) -> BTreeSet<TopicPartition> {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        members.keys().collect::<Vec<_>>(),
        "one entry per member"
    );
    let mut seen = BTreeSet::new();
    for (m, a) in got {
        for tp in &a.partitions {
            assert!(
                members[m].topics.contains(&tp.0),
                "{m} not subscribed to {tp:?}"
            );
            assert!(
                partitions
                    .get(&tp.0)
                    .is_some_and(|&n| tp.1 >= 0 && tp.1 < n),
                "{tp:?} does not exist"
            );
            assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
        }
    }
    seen
}

/// Every subscribed partition, for checking "assigned exactly once".
pub fn all_subscribed(
    partitions: &BTreeMap<String, i32>,
    members: &BTreeMap<String, Subscription>,
) -> BTreeSet<TopicPartition> {
    super::subscribed_partitions(partitions, members)
        .into_iter()
        .collect()
}
