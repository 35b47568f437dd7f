//! The sticky assignors (Kafka's AbstractStickyAssignor family): balanced
//! first, then sticky. With equal subscriptions every member ends within
//! one partition of every other; among the balanced answers we pick one
//! that keeps as many partitions with their previous owner as possible.
//!
//! Previous owners come from each subscription's `owned_partitions` and
//! `generation`: for a partition claimed by several members, the claim of
//! the highest generation wins; two claims at that same generation cancel
//! (the partition is treated as unowned, as Kafka does).
//!
//! The algorithm, all in sorted (deterministic) order:
//! 1. each member keeps its valid previous partitions;
//! 2. with equal subscriptions, members are capped to their quota
//!    (`n / m`, and `n % m` members may hold one more, granted to those
//!    keeping the most), the excess returns to the pool;
//! 3. pooled partitions go, those with the fewest candidates first, to the
//!    eligible member holding the fewest;
//! 4. with unequal subscriptions, partitions then move from fuller to
//!    emptier eligible members while that narrows the gap by two or more
//!    (each move lowers the sum of squared counts, so this ends).
//!
//! `cooperative-sticky` runs the same and then withholds every partition
//! whose new owner differs from a previous owner still in the group: the
//! old owner sees it missing, revokes it and rejoins, and the follow-up
//! rebalance assigns it (KIP-429).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    empty_for, finish, subscribed_partitions, Assignment, Assignor, RebalanceProtocol,
    Subscription, TopicPartition,
};

/// Kafka's StickyAssignor (eager protocol).
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// Kafka's CooperativeStickyAssignor (cooperative protocol; eager also
/// works, where every member owns nothing when it rejoins).
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn subscription_user_data(&self, owned: &[TopicPartition], generation: i32) -> Option<Bytes> {
        Some(encode_user_data(owned, generation))
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, Assignment> {
        let owners = previous_owners(partitions, members);
        finish(sticky_assign(partitions, members, &owners))
    }
}

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Eager, RebalanceProtocol::Cooperative]
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, Assignment> {
        let owners = previous_owners(partitions, members);
        let mut assigned = sticky_assign(partitions, members, &owners);
        for (member, list) in assigned.iter_mut() {
            // A partition changing hands waits until its owner revoked it.
            list.retain(|tp| owners.get(tp).is_none_or(|owner| owner == member));
        }
        finish(assigned)
    }
}

/// Kafka's StickyAssignor user data (v1): `[topic: string, partitions:
/// [int32]]` then `generation: int32`, classic (non-flexible) encoding with
/// no version prefix. It is not a message kafka-protocol defines, so it is
/// written here. v0 lacks the generation.
fn encode_user_data(owned: &[TopicPartition], generation: i32) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in owned {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut b = BytesMut::new();
    b.put_i32(by_topic.len() as i32);
    for (t, ps) in by_topic {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i32(generation);
    b.freeze()
}

/// Decode sticky user data; `None` for anything malformed.
fn decode_user_data(bytes: &Bytes) -> Option<(Vec<TopicPartition>, i32)> {
    let mut b = bytes.clone();
    let mut out = Vec::new();
    let topics = read_len(&mut b, 4)?;
    for _ in 0..topics {
        let len = read_len(&mut b, 2)?;
        if b.remaining() < len {
            return None;
        }
        let topic = String::from_utf8(b.copy_to_bytes(len).to_vec()).ok()?;
        let n = read_len(&mut b, 4)?;
        if b.remaining() < n.checked_mul(4)? {
            return None;
        }
        for _ in 0..n {
            out.push((topic.clone(), b.get_i32()));
        }
    }
    let generation = if b.remaining() >= 4 { b.get_i32() } else { -1 };
    out.sort();
    out.dedup();
    Some((out, generation))
}

/// A non-negative length of `width` bytes (2 or 4).
fn read_len(b: &mut Bytes, width: usize) -> Option<usize> {
    if b.remaining() < width {
        return None;
    }
    let n = if width == 2 {
        i32::from(b.get_i16())
    } else {
        b.get_i32()
    };
    usize::try_from(n).ok()
}

/// partition -> its valid previous owner.
fn previous_owners(
    partitions: &BTreeMap<String, i32>,
    members: &BTreeMap<String, Subscription>,
) -> BTreeMap<TopicPartition, String> {
    // partition -> (best generation, claimants at it)
    let mut claims: BTreeMap<TopicPartition, (i32, Vec<&String>)> = BTreeMap::new();
    for (m, s) in members {
        // Eager members own nothing when they join; the sticky assignor's
        // user data then carries what they held last generation.
        let from_user_data;
        let (owned, generation) = if s.owned_partitions.is_empty() {
            from_user_data = s.user_data.as_ref().and_then(decode_user_data);
            match &from_user_data {
                Some((owned, generation)) => (owned, *generation),
                None => (&s.owned_partitions, s.generation),
            }
        } else {
            (&s.owned_partitions, s.generation)
        };
        for tp in owned {
            let exists = partitions
                .get(&tp.0)
                .is_some_and(|&n| tp.1 >= 0 && tp.1 < n);
            if !exists || !s.topics.contains(&tp.0) {
                continue;
            }
            let entry = claims.entry(tp.clone()).or_insert((generation, Vec::new()));
            if generation > entry.0 {
                *entry = (generation, vec![m]);
            } else if generation == entry.0 {
                entry.1.push(m);
            }
        }
    }
    claims
        .into_iter()
        .filter(|(_, (_, who))| who.len() == 1)
        .map(|(tp, (_, who))| (tp, who[0].clone()))
        .collect()
}

fn sticky_assign(
    partitions: &BTreeMap<String, i32>,
    members: &BTreeMap<String, Subscription>,
    owners: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut assigned = empty_for(members);
    if members.is_empty() {
        return assigned;
    }
    let all = subscribed_partitions(partitions, members);
    for (tp, owner) in owners {
        assigned
            .get_mut(owner)
            .expect("owners are members")
            .push(tp.clone());
    }
    let uniform = members
        .values()
        .all(|s| s.topics == members.values().next().expect("non-empty").topics);
    if uniform {
        cap_to_quota(&mut assigned, all.len());
    }
    let taken: BTreeSet<&TopicPartition> = assigned.values().flatten().collect();
    let mut pool: Vec<(usize, TopicPartition)> = all
        .iter()
        .filter(|tp| !taken.contains(tp))
        .map(|tp| {
            let candidates = members
                .values()
                .filter(|s| s.topics.contains(&tp.0))
                .count();
            (candidates, tp.clone())
        })
        .collect();
    pool.sort();
    for (_, tp) in pool {
        let target = members
            .iter()
            .filter(|(_, s)| s.topics.contains(&tp.0))
            .map(|(m, _)| m)
            .min_by_key(|m| (assigned[*m].len(), *m))
            .expect("a pooled partition has a subscriber")
            .clone();
        assigned.get_mut(&target).expect("member").push(tp);
    }
    if !uniform {
        balance_by_moves(&mut assigned, members);
    }
    assigned
}

/// Cap each member's kept partitions to its quota for `total` partitions.
fn cap_to_quota(assigned: &mut BTreeMap<String, Vec<TopicPartition>>, total: usize) {
    let m = assigned.len();
    let (min, mut extra) = (total / m, total % m);
    let mut order: Vec<(usize, String)> = assigned
        .iter()
        .map(|(id, ps)| (ps.len(), id.clone()))
        .collect();
    // Those keeping the most get the `extra` one-more slots.
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (kept, id) in order {
        let cap = if kept > min && extra > 0 {
            extra -= 1;
            min + 1
        } else {
            min
        };
        let list = assigned.get_mut(&id).expect("member");
        list.sort();
        list.truncate(cap);
    }
}

/// Move partitions from fuller to emptier eligible members until no move
/// narrows a gap of two or more.
fn balance_by_moves(
    assigned: &mut BTreeMap<String, Vec<TopicPartition>>,
    members: &BTreeMap<String, Subscription>,
) {
    loop {
        let mut by_count: Vec<(usize, String)> = assigned
            .iter()
            .map(|(id, ps)| (ps.len(), id.clone()))
            .collect();
        by_count.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut moved = None;
        'search: for (count, from) in &by_count {
            let mut list = assigned[from].clone();
            list.sort();
            for tp in list.iter().rev() {
                let to = members
                    .iter()
                    .filter(|(m, s)| *m != from && s.topics.contains(&tp.0))
                    .map(|(m, _)| m)
                    .filter(|m| assigned[*m].len() + 1 < *count)
                    .min_by_key(|m| (assigned[*m].len(), *m));
                if let Some(to) = to {
                    moved = Some((from.clone(), to.clone(), tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((from, to, tp)) = moved else {
            return;
        };
        assigned
            .get_mut(&from)
            .expect("member")
            .retain(|x| x != &tp);
        assigned.get_mut(&to).expect("member").push(tp);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use proptest::prelude::*;

    fn sizes(got: &BTreeMap<String, Assignment>) -> Vec<usize> {
        got.values().map(|a| a.partitions.len()).collect()
    }

    #[test]
    fn adding_a_member_moves_only_what_balance_needs() {
        let p = counts(&[("t", 6)]);
        let one = subs(&[("a", &["t"]), ("b", &["t"])]);
        let first = StickyAssignor.assign(&p, &one);
        assert_eq!(sizes(&first), vec![3, 3]);
        let two = with_owned(
            subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &first,
            1,
        );
        let second = StickyAssignor.assign(&p, &two);
        assert_eq!(sizes(&second), vec![2, 2, 2]);
        for m in ["a", "b"] {
            let kept = second[m]
                .partitions
                .iter()
                .filter(|tp| first[m].partitions.contains(tp))
                .count();
            assert_eq!(kept, 2, "{m} keeps two of its three");
        }
    }

    #[test]
    fn cooperative_withholds_moving_partitions_for_one_round() {
        let p = counts(&[("t", 6)]);
        let alone = subs(&[("a", &["t"])]);
        let first = CooperativeStickyAssignor.assign(&p, &alone);
        assert_eq!(first["a"].partitions.len(), 6);
        // b joins: a keeps 3, the 3 moving ones go to nobody yet.
        let joined = with_owned(subs(&[("a", &["t"]), ("b", &["t"])]), &first, 1);
        let second = CooperativeStickyAssignor.assign(&p, &joined);
        assert_eq!(second["a"].partitions.len(), 3);
        assert!(second["b"].partitions.is_empty());
        // a revoked them and rejoined: b now gets them.
        let rejoined = with_owned(joined, &second, 2);
        let third = CooperativeStickyAssignor.assign(&p, &rejoined);
        assert_eq!(third["a"].partitions, second["a"].partitions);
        assert_eq!(third["b"].partitions.len(), 3);
    }

    #[test]
    fn user_data_roundtrips_and_feeds_stickiness() {
        let owned = tps(&[("a", 1), ("a", 4), ("b", 0)]);
        let b = encode_user_data(&owned, 9);
        assert_eq!(decode_user_data(&b), Some((owned.clone(), 9)));
        assert_eq!(
            decode_user_data(&Bytes::from_static(b"\x00\x00\x00\x05")),
            None
        );
        assert_eq!(
            decode_user_data(&Bytes::from_static(b"\xff\xff\xff\xff")),
            None
        );
        let p = counts(&[("a", 5), ("b", 1)]);
        let mut members = subs(&[("x", &["a", "b"]), ("y", &["a", "b"])]);
        members.get_mut("x").unwrap().user_data = Some(b);
        let owners = previous_owners(&p, &members);
        assert_eq!(owners.len(), 3);
        assert!(owners.values().all(|o| o == "x"));
    }

    #[test]
    fn stale_and_conflicting_claims_are_ignored() {
        let p = counts(&[("t", 2)]);
        let mut members = subs(&[("a", &["t"]), ("b", &["t"])]);
        members.get_mut("a").unwrap().owned_partitions = tps(&[("t", 0), ("t", 1)]);
        members.get_mut("a").unwrap().generation = 3;
        members.get_mut("b").unwrap().owned_partitions = tps(&[("t", 0)]);
        members.get_mut("b").unwrap().generation = 4;
        let owners = previous_owners(&p, &members);
        assert_eq!(owners[&("t".to_string(), 0)], "b");
        assert_eq!(owners[&("t".to_string(), 1)], "a");
        members.get_mut("a").unwrap().generation = 4;
        let owners = previous_owners(&p, &members);
        assert!(!owners.contains_key(&("t".to_string(), 0)), "a tie cancels");
    }

    #[test]
    fn unequal_subscriptions_balance_where_they_can() {
        let p = counts(&[("t", 4), ("u", 4)]);
        let members = subs(&[("a", &["t", "u"]), ("b", &["t"]), ("c", &["u"])]);
        let got = StickyAssignor.assign(&p, &members);
        let seen = check_valid(&p, &members, &got);
        assert_eq!(seen, all_subscribed(&p, &members));
        let s = sizes(&got);
        assert!(
            s.iter().max().unwrap() - s.iter().min().unwrap() <= 1,
            "{s:?}"
        );
    }

    /// A group: member count, topics with partition counts, and per round
    /// which members are present (to drive joins and leaves).
    fn group() -> impl Strategy<Value = (BTreeMap<String, i32>, Vec<Vec<bool>>)> {
        (
            proptest::collection::vec(0i32..8, 1..4),
            proptest::collection::vec(proptest::collection::vec(any::<bool>(), 6), 1..5),
        )
            .prop_map(|(ns, rounds)| {
                let topics = ns
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("t{i}"), *n))
                    .collect();
                (topics, rounds)
            })
    }

    fn check_rounds(
        assignor: &dyn Assignor,
        cooperative: bool,
        topics: &BTreeMap<String, i32>,
        rounds: &[Vec<bool>],
    ) -> Result<(), TestCaseError> {
        let names: Vec<String> = topics.keys().cloned().collect();
        let mut owned: BTreeMap<String, Assignment> = BTreeMap::new();
        let mut generation = 0;
        for present in rounds {
            let ids: Vec<String> = present
                .iter()
                .enumerate()
                .filter(|(_, p)| **p)
                .map(|(i, _)| format!("m{i}"))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let members: BTreeMap<String, Subscription> = ids
                .iter()
                .map(|m| (m.clone(), Subscription::new(&names)))
                .collect();
            let before = owned.clone();
            let mut members = with_owned(members, &owned, generation);
            generation += 1;
            let mut got = assignor.assign(topics, &members);
            if cooperative {
                // Each member revokes what it lost, then all rejoin once.
                let seen = check_valid(topics, &members, &got);
                for (m, a) in &got {
                    for tp in &a.partitions {
                        let prev = before.get(m).map(|a| &a.partitions);
                        let was_owned_by_other = before
                            .iter()
                            .any(|(o, pa)| o != m && ids.contains(o) && pa.partitions.contains(tp));
                        prop_assert!(
                            !was_owned_by_other || prev.is_some_and(|p| p.contains(tp)),
                            "{tp:?} handed to {m} before its owner revoked it"
                        );
                    }
                }
                drop(seen);
                members = with_owned(members, &got, generation);
                generation += 1;
                got = assignor.assign(topics, &members);
            }
            let seen = check_valid(topics, &members, &got);
            prop_assert_eq!(
                &seen,
                &all_subscribed(topics, &members),
                "every partition once"
            );
            let s = sizes(&got);
            prop_assert!(
                s.iter().max().unwrap() - s.iter().min().unwrap() <= 1,
                "balanced: {:?}",
                s
            );
            // Stickiness: each member keeps at least min(previous, quota).
            let total = seen.len();
            let min_quota = total / ids.len();
            for (m, a) in &got {
                if let Some(prev) = before.get(m) {
                    let kept = a
                        .partitions
                        .iter()
                        .filter(|tp| prev.partitions.contains(tp))
                        .count();
                    prop_assert!(
                        kept >= prev.partitions.len().min(min_quota),
                        "{} kept {} of {:?}, quota {}",
                        m,
                        kept,
                        prev.partitions,
                        min_quota
                    );
                }
            }
            // Rerunning with what everyone now owns changes nothing.
            let again = assignor.assign(topics, &with_owned(members.clone(), &got, generation));
            prop_assert_eq!(&again, &got, "stable once balanced");
            owned = got;
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn sticky_is_complete_balanced_and_sticky((topics, rounds) in group()) {
            check_rounds(&StickyAssignor, false, &topics, &rounds)?;
        }

        #[test]
        fn cooperative_sticky_converges_in_two_rounds((topics, rounds) in group()) {
            check_rounds(&CooperativeStickyAssignor, true, &topics, &rounds)?;
        }

        #[test]
        fn range_and_roundrobin_assign_everything_once((topics, rounds) in group()) {
            let names: Vec<String> = topics.keys().cloned().collect();
            for present in &rounds {
                let members: BTreeMap<String, Subscription> = present
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| **p)
                    .map(|(i, _)| (format!("m{i}"), Subscription::new(&names)))
                    .collect();
                if members.is_empty() {
                    continue;
                }
                for a in [&super::super::RangeAssignor as &dyn Assignor, &super::super::RoundRobinAssignor] {
                    let got = a.assign(&topics, &members);
                    let seen = check_valid(&topics, &members, &got);
                    prop_assert_eq!(&seen, &all_subscribed(&topics, &members));
                }
                // Round-robin over one partition list balances within one.
                let got = super::super::RoundRobinAssignor.assign(&topics, &members);
                let s = sizes(&got);
                prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            }
        }
    }
}
