//! lost-write and unseen: committed sends that polls should have seen.

use std::collections::{BTreeMap, BTreeSet};

use crate::analysis::Analysis;
use crate::anomaly::Anomaly;
use crate::history::OpType;

/// A committed send whose value no ok poll observed, although ok polls
/// observed a value after it in the key's version order.
///
/// As in Jepsen: the bound is the highest dense index at which any value
/// read from the key *first* appears; a value must have been read if its
/// *last* appearance is at or below that bound (so a duplicated or
/// conflicting value is judged by its latest position). A value whose writer
/// is info and none of whose values was ever read is never a lost write.
pub fn lost_writes(a: &Analysis, out: &mut Vec<Anomaly>) {
    for (key, seen) in &a.ok_reads {
        let Some(vo) = a.orders.get(key) else {
            continue;
        };
        let offsets: Vec<i64> = vo.log.keys().copied().collect();
        let mut first_index: BTreeMap<i64, usize> = BTreeMap::new();
        let mut last_index: BTreeMap<i64, usize> = BTreeMap::new();
        for (i, values) in vo.log.values().enumerate() {
            for v in values {
                first_index.entry(*v).or_insert(i);
                last_index.insert(*v, i);
            }
        }
        let Some((bound, max_read_value)) = seen
            .iter()
            .filter_map(|v| first_index.get(v).map(|i| (*i, *v)))
            .max()
        else {
            continue;
        };
        let max_reader = a
            .readers_of
            .get(key)
            .and_then(|r| r.get(&max_read_value))
            .and_then(|ops| ops.first())
            .map(|pos| a.op_index(*pos));
        for (value, last) in &last_index {
            if *last > bound || seen.contains(value) {
                continue;
            }
            // A value nobody sent says nothing about loss.
            let Some(&writer) = a.writer_of.get(key).and_then(|w| w.get(value)) else {
                continue;
            };
            if !a.must_have_committed(&a.ops[writer]) {
                continue;
            }
            out.push(Anomaly::LostWrite {
                key: key.clone(),
                value: *value,
                offset: offsets[first_index[value]],
                writer: a.op_index(writer),
                max_read_value,
                max_read_offset: offsets[bound],
                max_reader,
            });
        }
    }
}

/// Values acknowledged by ok sends and never observed by an ok poll, per key.
/// Softer than lost-write: the consumers may simply not have caught up.
pub fn unseen(a: &Analysis, out: &mut Vec<Anomaly>) {
    let mut sent: BTreeMap<_, BTreeMap<i64, u64>> = BTreeMap::new();
    for op in a.ops.iter().filter(|op| op.kind == OpType::Ok) {
        for (key, writes) in op.writes() {
            for (_, v) in writes {
                sent.entry(key.clone()).or_default().insert(v, op.index);
            }
        }
    }
    let none = BTreeSet::new();
    for (key, values) in sent {
        let seen = a.ok_reads.get(&key).unwrap_or(&none);
        let missing: Vec<(i64, u64)> = values
            .into_iter()
            .filter(|(v, _)| !seen.contains(v))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut writers: Vec<u64> = missing.iter().map(|(_, w)| *w).collect();
        writers.sort_unstable();
        writers.dedup();
        out.push(Anomaly::Unseen {
            key,
            values: missing.into_iter().map(|(v, _)| v).collect(),
            writers,
        });
    }
}
