//! The indexes every checker shares: completed operations, who wrote and who
//! read each value, and each key's version order.
//!
//! Indeterminacy follows Jepsen: an `info` send may or may not have happened,
//! so its writes count only once some `ok` poll has seen one of its values
//! ([`Analysis::must_have_committed`]); a `fail` send certainly did not
//! happen; polls are trusted whatever their op's type, because a Kafka
//! consumer only ever returns records that are in the log.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Key, Op, OpType, OpValue, Process};

/// One key's log as observed: which values were seen at which offset, and
/// the inferred total order of values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionOrder {
    /// Offset -> every value observed there (more than one is an
    /// inconsistent offset).
    pub log: BTreeMap<i64, BTreeSet<i64>>,
    /// Dense index -> value: offsets in order with gaps removed (Kafka leaves
    /// gaps for transaction markers), taking the least value where an offset
    /// holds several.
    pub by_index: Vec<i64>,
    /// Value -> its dense index (the last, if it appears at several).
    pub by_value: BTreeMap<i64, usize>,
    /// Offset -> its dense index.
    pub by_offset: BTreeMap<i64, usize>,
}

impl VersionOrder {
    fn build(log: BTreeMap<i64, BTreeSet<i64>>) -> VersionOrder {
        let by_index: Vec<i64> = log
            .values()
            .map(|vs| *vs.first().expect("an observed offset holds a value"))
            .collect();
        let by_value = by_index.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let by_offset = log.keys().enumerate().map(|(i, o)| (*o, i)).collect();
        VersionOrder {
            log,
            by_index,
            by_value,
            by_offset,
        }
    }

    /// Dense index of a record: from its offset when known (exact even
    /// where values are duplicated or offsets inconsistent), else from its
    /// value.
    pub fn position(&self, offset: Option<i64>, value: i64) -> Option<usize> {
        match offset {
            Some(o) if self.by_offset.contains_key(&o) => self.by_offset.get(&o).copied(),
            _ => self.by_value.get(&value).copied(),
        }
    }

    /// How far record `b` is after record `a` in the order (1 = adjacent),
    /// when both have a place in it. Records are `(offset, value)`.
    pub fn delta(&self, a: (Option<i64>, i64), b: (Option<i64>, i64)) -> Option<i64> {
        let i1 = self.position(a.0, a.1)?;
        let i2 = self.position(b.0, b.1)?;
        Some(i2 as i64 - i1 as i64)
    }

    /// The values strictly between records `a` and `b` in the order.
    pub fn between(&self, a: (Option<i64>, i64), b: (Option<i64>, i64)) -> Vec<i64> {
        match (self.position(a.0, a.1), self.position(b.0, b.1)) {
            (Some(i1), Some(i2)) if i1 < i2 => self.by_index[i1 + 1..i2].to_vec(),
            _ => Vec::new(),
        }
    }

    /// The least offset at which `v` was observed.
    pub fn offset_of(&self, v: i64) -> Option<i64> {
        self.log
            .iter()
            .find(|(_, vs)| vs.contains(&v))
            .map(|(o, _)| *o)
    }
}

/// Everything the checkers need, built once per history.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Completions (ok, fail, info) in index order; an invoke that never
    /// completed appears as an info completion carrying its value.
    pub ops: Vec<Op>,
    /// Key -> value -> position in `ops` of the op that sent it.
    pub writer_of: BTreeMap<Key, BTreeMap<i64, usize>>,
    /// Key -> value -> positions in `ops` of the ok ops that polled it.
    pub readers_of: BTreeMap<Key, BTreeMap<i64, Vec<usize>>>,
    /// Key -> every value polled by an ok op.
    pub ok_reads: BTreeMap<Key, BTreeSet<i64>>,
    /// Key -> every value sent by a failed op.
    pub failed_writes: BTreeMap<Key, BTreeSet<i64>>,
    /// Key -> version order.
    pub orders: BTreeMap<Key, VersionOrder>,
}

/// Pair invokes with completions. Completions without a value take their
/// invoke's; invokes never completed become info.
pub fn completions(history: &[Op]) -> Vec<Op> {
    let mut pending: BTreeMap<Process, Op> = BTreeMap::new();
    let mut out = Vec::new();
    let as_info = |mut op: Op| {
        op.kind = OpType::Info;
        op
    };
    for op in history {
        if op.kind == OpType::Invoke {
            if let Some(prev) = pending.insert(op.process.clone(), op.clone()) {
                out.push(as_info(prev));
            }
            continue;
        }
        let mut done = op.clone();
        if let Some(invoke) = pending.remove(&op.process) {
            let empty = match &done.value {
                OpValue::Mops(m) => m.is_empty(),
                OpValue::Keys(k) => k.is_empty(),
                OpValue::Offsets(o) => o.is_empty(),
                OpValue::Nil => true,
            };
            if empty {
                done.value = invoke.value;
            }
        }
        out.push(done);
    }
    out.extend(pending.into_values().map(as_info));
    out.sort_by_key(|op| op.index);
    out
}

impl Analysis {
    pub fn new(history: &[Op]) -> Analysis {
        let mut a = Analysis {
            ops: completions(history),
            ..Analysis::default()
        };
        for (pos, op) in a.ops.iter().enumerate() {
            for (k, writes) in op.writes() {
                for (_, v) in writes {
                    a.writer_of.entry(k.clone()).or_default().insert(v, pos);
                    if op.kind == OpType::Fail {
                        a.failed_writes.entry(k.clone()).or_default().insert(v);
                    }
                }
            }
            if op.kind == OpType::Ok {
                for (k, reads) in op.reads() {
                    for (_, v) in reads {
                        a.ok_reads.entry(k.clone()).or_default().insert(v);
                        let readers = a
                            .readers_of
                            .entry(k.clone())
                            .or_default()
                            .entry(v)
                            .or_default();
                        if readers.last() != Some(&pos) {
                            readers.push(pos);
                        }
                    }
                }
            }
        }
        a.orders = a.version_orders();
        a
    }

    /// Whether the op's sends certainly took effect: it was ok, or it was
    /// info and an ok poll saw one of its values.
    pub fn must_have_committed(&self, op: &Op) -> bool {
        match op.kind {
            OpType::Ok => true,
            OpType::Info => op.writes().iter().any(|(k, ws)| {
                self.ok_reads
                    .get(k)
                    .is_some_and(|seen| ws.iter().any(|(_, v)| seen.contains(v)))
            }),
            OpType::Fail | OpType::Invoke => false,
        }
    }

    /// Sends count where their op must have committed and the offset is
    /// known; polls count always.
    fn version_orders(&self) -> BTreeMap<Key, VersionOrder> {
        let mut logs: BTreeMap<Key, BTreeMap<i64, BTreeSet<i64>>> = BTreeMap::new();
        for op in &self.ops {
            if self.must_have_committed(op) {
                for (k, writes) in op.writes() {
                    for (offset, v) in writes {
                        if let Some(o) = offset {
                            logs.entry(k.clone())
                                .or_default()
                                .entry(o)
                                .or_default()
                                .insert(v);
                        }
                    }
                }
            }
            for (k, reads) in op.reads() {
                for (o, v) in reads {
                    logs.entry(k.clone())
                        .or_default()
                        .entry(o)
                        .or_default()
                        .insert(v);
                }
            }
        }
        logs.into_iter()
            .map(|(k, log)| (k, VersionOrder::build(log)))
            .collect()
    }

    /// The `index` of the op at position `pos` in `ops`.
    pub fn op_index(&self, pos: usize) -> u64 {
        self.ops[pos].index
    }
}
