//! Kafka's RangeAssignor: for each topic, its partitions are split into
//! contiguous ranges over the members subscribed to it, in member id order;
//! the first `partitions % members` members get one extra.

use std::collections::BTreeMap;

use super::{empty_for, finish, Assignment, Assignor, Subscription};

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, Assignment> {
        let mut out = empty_for(members);
        for (topic, &n) in partitions {
            let subscribers: Vec<&String> = members
                .iter()
                .filter(|(_, s)| s.topics.contains(topic))
                .map(|(m, _)| m)
                .collect();
            if subscribers.is_empty() || n <= 0 {
                continue;
            }
            let k = subscribers.len() as i32;
            let (per, extra) = (n / k, n % k);
            let mut next = 0;
            for (i, m) in subscribers.into_iter().enumerate() {
                let count = per + i32::from((i as i32) < extra);
                let list = out.get_mut(m).expect("every member has an entry");
                list.extend((next..next + count).map(|p| (topic.clone(), p)));
                next += count;
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
    fn matches_kafka() {
        let members = subs(&[("a", &["t", "u"]), ("b", &["t"])]);
        let got = RangeAssignor.assign(&counts(&[("t", 5), ("u", 2)]), &members);
        assert_eq!(
            got["a"].partitions,
            tps(&[("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)])
        );
        assert_eq!(got["b"].partitions, tps(&[("t", 3), ("t", 4)]));
    }
}
