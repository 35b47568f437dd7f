//! Kafka's RoundRobinAssignor: every partition of every subscribed topic,
//! sorted by (topic, partition), dealt in turn to the members sorted by id,
//! skipping members not subscribed to the partition's topic.

use std::collections::BTreeMap;

use super::{empty_for, finish, subscribed_partitions, Assignment, Assignor, Subscription};

#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, Assignment> {
        let mut out = empty_for(members);
        let ids: Vec<&String> = members.keys().collect();
        if ids.is_empty() {
            return finish(out);
        }
        let mut next = 0usize;
        for tp in subscribed_partitions(partitions, members) {
            // Some member is subscribed (the partition came from one), so
            // this finds one within a full turn.
            for step in 0..ids.len() {
                let m = ids[(next + step) % ids.len()];
                if members[m].topics.contains(&tp.0) {
                    out.get_mut(m).expect("every member has an entry").push(tp);
                    next = (next + step + 1) % ids.len();
                    break;
                }
            }
        }
        finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn deals_in_turn() {
        let members = subs(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["u"])]);
        let got = RoundRobinAssignor.assign(&counts(&[("t", 3), ("u", 3)]), &members);
        assert_eq!(got["a"].partitions, tps(&[("t", 0), ("t", 2), ("u", 2)]));
        assert_eq!(got["b"].partitions, tps(&[("t", 1), ("u", 0)]));
        assert_eq!(got["c"].partitions, tps(&[("u", 1)]));
    }
}
