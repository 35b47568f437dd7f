//! Replica placement: which brokers hold each new partition, in Kafka's
//! manner.
//!
//! Without racks (Kafka's `assignReplicasToBrokersRackUnaware`): brokers
//! sorted by id; partition `p`'s first replica (its preferred leader) is
//! broker `(start + p) % n`, so leaders go round-robin; its followers follow
//! at a distance `1 + (shift + j) % (n - 1)`, where `shift` grows every `n`
//! partitions so follower sets differ between rounds. `start` and `shift`
//! come from a seeded rng, so the layout is random across topics but
//! reproducible from a seed.
//!
//! With racks (any live broker has `broker.rack`): the broker list is first
//! interleaved rack by rack (r1-b1, r2-b1, r3-b1, r1-b2, ...), leaders go
//! round-robin over that list, and each follower is the next broker (from
//! the shifted position) on a rack the partition does not use yet; once
//! every rack holds a replica any unused broker may follow.
//!
//! Invariant: a partition's replicas are distinct brokers.

use std::collections::{BTreeMap, BTreeSet};

use super::control::ControlError;
use crate::env::rng::WeirRng;
use crate::protocol::error_codes as ec;

/// A broker that may receive replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// Replica lists for `count` new partitions numbered from `first_partition`
/// (non-zero when adding partitions to a topic), each `rf` brokers long.
pub fn assign(
    candidates: &[Candidate],
    first_partition: i32,
    count: i32,
    rf: i16,
    rng: &mut WeirRng,
) -> Result<Vec<Vec<i32>>, ControlError> {
    if rf < 1 {
        return Err(ControlError::new(
            ec::INVALID_REPLICATION_FACTOR,
            format!("replication factor must be at least 1, not {rf}"),
        ));
    }
    let rf = rf as usize;
    if rf > candidates.len() {
        return Err(ControlError::new(
            ec::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {rf} is larger than the {} available brokers",
                candidates.len()
            ),
        ));
    }
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|c| c.id);
    sorted.dedup_by_key(|c| c.id);
    let rack_aware = sorted.iter().any(|c| c.rack.is_some());
    let brokers = if rack_aware {
        interleave_racks(&sorted)
    } else {
        sorted
    };
    let n = brokers.len();
    let start = rng.range_u64(0, n as u64) as usize;
    let shift0 = rng.range_u64(0, n as u64) as usize;
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for i in 0..count.max(0) {
        let p = (first_partition + i) as usize;
        let shift = shift0 + p / n;
        let first = (start + p) % n;
        let replicas = if rack_aware {
            rack_aware_replicas(&brokers, first, shift, rf)
        } else {
            (0..rf)
                .map(|j| {
                    let idx = if j == 0 {
                        first
                    } else {
                        follower_index(first, shift, j - 1, n)
                    };
                    brokers[idx].id
                })
                .collect()
        };
        assert_eq!(
            replicas.iter().collect::<BTreeSet<_>>().len(),
            replicas.len(),
            "placement invariant: a partition's replicas are distinct brokers"
        );
        out.push(replicas);
    }
    Ok(out)
}

/// Kafka's follower position: never `first` itself, distinct for distinct `j < n - 1`.
fn follower_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    (first + 1 + (shift + j) % (n - 1)) % n
}

fn rack_aware_replicas(brokers: &[Candidate], first: usize, shift: usize, rf: usize) -> Vec<i32> {
    let n = brokers.len();
    let rack_count = brokers
        .iter()
        .map(|b| b.rack.as_deref())
        .collect::<BTreeSet<_>>()
        .len();
    let mut replicas = vec![brokers[first].id];
    // Racks used in the current round; cleared once every rack holds one of
    // this partition's replicas, so further followers spread again.
    let mut racks = BTreeSet::from([brokers[first].rack.as_deref()]);
    let order: Vec<usize> = (0..n - 1)
        .map(|j| follower_index(first, shift, j, n))
        .collect();
    while replicas.len() < rf {
        if racks.len() >= rack_count {
            racks.clear();
        }
        let pick = order
            .iter()
            .map(|&i| &brokers[i])
            .find(|b| !replicas.contains(&b.id) && !racks.contains(&b.rack.as_deref()))
            // Uneven racks: only used racks have free brokers left.
            .or_else(|| {
                order
                    .iter()
                    .map(|&i| &brokers[i])
                    .find(|b| !replicas.contains(&b.id))
            })
            .expect("placement invariant: rf <= brokers leaves an unused broker");
        replicas.push(pick.id);
        racks.insert(pick.rack.as_deref());
    }
    replicas
}

/// r1-b1, r2-b1, r3-b1, r1-b2, ...: consecutive brokers sit on different racks.
/// Brokers without a rack form their own group.
fn interleave_racks(sorted: &[Candidate]) -> Vec<Candidate> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<&Candidate>> = BTreeMap::new();
    for c in sorted {
        by_rack.entry(c.rack.as_deref()).or_default().push(c);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(sorted.len());
    for i in 0..longest {
        for group in by_rack.values() {
            if let Some(c) = group.get(i) {
                out.push((*c).clone());
            }
        }
    }
    out
}

/// Check an explicit assignment: every partition non-empty, the same
/// length, distinct brokers, all registered.
pub fn validate_explicit(
    assignments: &[Vec<i32>],
    registered: &BTreeSet<i32>,
) -> Result<(), ControlError> {
    let bad = |m: String| Err(ControlError::new(ec::INVALID_REPLICA_ASSIGNMENT, m));
    let Some(first) = assignments.first() else {
        return bad("empty replica assignment".into());
    };
    for (p, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return bad(format!("partition {p} has no replicas"));
        }
        if replicas.len() != first.len() {
            return bad(format!(
                "partition {p} has {} replicas, partition 0 has {}",
                replicas.len(),
                first.len()
            ));
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            return bad(format!("partition {p} lists a broker twice"));
        }
        if let Some(b) = replicas.iter().find(|b| !registered.contains(b)) {
            return bad(format!("partition {p}: broker {b} is not registered"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(n: i32) -> Vec<Candidate> {
        (1..=n).map(|id| Candidate { id, rack: None }).collect()
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        let mut rng = WeirRng::from_seed(3);
        let a = assign(&plain(5), 0, 50, 3, &mut rng).unwrap();
        assert_eq!(a.len(), 50);
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in &a {
            assert_eq!(r.len(), 3);
            *leaders.entry(r[0]).or_insert(0) += 1;
            for b in r {
                *replicas.entry(*b).or_insert(0) += 1;
            }
        }
        assert!(leaders.values().all(|&c| c == 10), "{leaders:?}");
        assert!(replicas.values().all(|&c| c == 30), "{replicas:?}");
    }

    #[test]
    fn same_seed_same_layout_and_seeds_vary_the_start() {
        let a = assign(&plain(4), 0, 8, 2, &mut WeirRng::from_seed(9)).unwrap();
        let b = assign(&plain(4), 0, 8, 2, &mut WeirRng::from_seed(9)).unwrap();
        assert_eq!(a, b);
        let starts: BTreeSet<i32> = (0..20)
            .map(|s| assign(&plain(4), 0, 1, 1, &mut WeirRng::from_seed(s)).unwrap()[0][0])
            .collect();
        assert!(starts.len() > 1);
    }

    #[test]
    fn replication_factor_errors() {
        let mut rng = WeirRng::from_seed(1);
        let e = assign(&plain(2), 0, 1, 3, &mut rng).unwrap_err();
        assert_eq!(e.code, ec::INVALID_REPLICATION_FACTOR);
        let e = assign(&plain(2), 0, 1, 0, &mut rng).unwrap_err();
        assert_eq!(e.code, ec::INVALID_REPLICATION_FACTOR);
        let e = assign(&[], 0, 1, 1, &mut rng).unwrap_err();
        assert_eq!(e.code, ec::INVALID_REPLICATION_FACTOR);
    }

    #[test]
    fn rack_aware_puts_replicas_on_distinct_racks() {
        let racks = ["a", "a", "b", "b", "c", "c"];
        let c: Vec<Candidate> = racks
            .iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                id: i as i32 + 1,
                rack: Some(r.to_string()),
            })
            .collect();
        let rack_of = |id: i32| racks[(id - 1) as usize];
        for seed in 0..20 {
            let a = assign(&c, 0, 12, 3, &mut WeirRng::from_seed(seed)).unwrap();
            let mut leaders = BTreeMap::new();
            for r in &a {
                let used: BTreeSet<_> = r.iter().map(|&b| rack_of(b)).collect();
                assert_eq!(used.len(), 3, "seed {seed}: {r:?}");
                *leaders.entry(r[0]).or_insert(0) += 1;
            }
            assert!(leaders.values().all(|&c| c == 2), "{leaders:?}");
        }
        // rf above the rack count still works, racks reused only when needed.
        let a = assign(&c, 0, 6, 5, &mut WeirRng::from_seed(1)).unwrap();
        for r in &a {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 5);
            let used: BTreeSet<_> = r[..3].iter().map(|&b| rack_of(b)).collect();
            assert_eq!(used.len(), 3);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_layout_is_valid_and_balanced(
            racks in proptest::collection::vec(proptest::option::of(0u8..3), 1..9),
            rf in 1i16..4,
            count in 1i32..40,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let c: Vec<Candidate> = racks
                .iter()
                .enumerate()
                .map(|(i, r)| Candidate { id: i as i32 * 2 + 1, rack: r.map(|r| r.to_string()) })
                .collect();
            let res = assign(&c, 0, count, rf, &mut WeirRng::from_seed(seed));
            if rf as usize > c.len() {
                proptest::prop_assert!(res.is_err());
                return Ok(());
            }
            let a = res.unwrap();
            proptest::prop_assert_eq!(a.len(), count as usize);
            let mut leaders: BTreeMap<i32, usize> = c.iter().map(|b| (b.id, 0)).collect();
            for r in &a {
                proptest::prop_assert_eq!(r.len(), rf as usize);
                proptest::prop_assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), r.len());
                proptest::prop_assert!(r.iter().all(|b| c.iter().any(|x| x.id == *b)));
                *leaders.get_mut(&r[0]).unwrap() += 1;
            }
            // Leaders go round-robin: counts differ by at most one.
            let max = leaders.values().max().unwrap();
            let min = leaders.values().min().unwrap();
            proptest::prop_assert!(max - min <= 1, "{:?}", leaders);
        }
    }

    #[test]
    fn explicit_assignments_are_checked() {
        let reg = BTreeSet::from([1, 2, 3]);
        assert!(validate_explicit(&[vec![1, 2], vec![2, 3]], &reg).is_ok());
        for bad in [
            vec![],
            vec![vec![]],
            vec![vec![1, 1]],
            vec![vec![1, 2], vec![3]],
            vec![vec![1, 9]],
        ] {
            assert_eq!(
                validate_explicit(&bad, &reg).unwrap_err().code,
                ec::INVALID_REPLICA_ASSIGNMENT,
                "{bad:?}"
            );
        }
    }
}
