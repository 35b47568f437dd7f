//! The keyed workload's index and checkers: producers send (record key,
//! unique value) pairs to the partitions of a compacted or
//! retention-limited topic, consumers poll, a final reader reads every
//! partition from its log start offset to its end, and ListOffsets probes
//! record each partition's log start and end.
//!
//! The queue checkers cannot judge such a topic: compaction legitimately
//! removes every value of a record key but the latest, and retention
//! removes everything below the log start offset, so "a later record was
//! read, so every earlier one must have been" (lost-write) no longer holds.
//! These checkers state what does:
//!
//! - One offset holds one record forever; one record sits at one offset
//!   (`inconsistent-offsets`, `duplicate`, per partition): the cleaner
//!   keeps every survivor's offset.
//! - Every record read is an original: its value was written for that
//!   record key of that partition, as a tombstone exactly when it was sent
//!   as one (`foreign-read`), by a send that did not
//!   fail (`G1a`).
//! - A process reads a partition in offset order (`nonmonotonic-poll`
//!   across its polls, `int-nonmonotonic-poll` inside one).
//! - A record key's values sit in the log in send order: a value whose send
//!   ended before another's began is at a lower offset (`stale-value`).
//!   A half-cleaned segment served, or a cleaned-away value brought back,
//!   shows as an older value after a newer one.
//! - The log start offset never goes back: a probe that began after another
//!   ended sees a start at least as high (`log-start-regression`).
//! - The final read holds, on a compacted topic, every record key's latest
//!   committed value or a later value of that key (`lost-latest`). When the
//!   latest is a tombstone, the key may also be gone altogether (the cleaner
//!   drops tombstones delete.retention.ms after cleaning them), but an older
//!   value must not be back (a resurrected key is `lost-latest`); below the
//!   final log start offset anything may be gone under `delete`. Without
//!   compaction it holds every committed record at or above the final log
//!   start offset (`lost-retained`).
//!
//! A send is *committed* when it was acknowledged (its offset is the one
//! the ack reported; a record of an `info` op that carries an offset was
//! acknowledged by itself, the op's other records were not) or, indeterminate, its value was read (at the offset
//! first read). Indeterminate sends never read and failed sends constrain
//! nothing. The final read is the keyed polls, after its `final-read`
//! marker, of the process that wrote the last marker; its log start is the
//! highest that process probed (a start that moved during the read excuses
//! what it passed).
//!
//! Order in time is the history's order: op `index` (assigned as things
//! happen). These checkers read only the keyed micro-ops; the queue
//! checkers read only theirs, so one history may hold both workloads.

mod checks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::anomaly::Anomaly;
use crate::history::{CleanupPolicy, Key, KeyedRecord, MicroOp, Op, OpF, OpType, Process};

/// One keyed send, its invoke paired with its completion.
#[derive(Clone, Debug)]
pub struct KeyedSend {
    pub partition: Key,
    pub record_key: Key,
    pub value: i64,
    /// A tombstone: deletes the record key (`value` names it).
    pub tombstone: bool,
    /// The offset its acknowledgement reported.
    pub acked_offset: Option<i64>,
    /// Ok, Fail or Info (an invoke never completed is Info).
    pub kind: OpType,
    /// History index of the invoke (of the completion when none was seen).
    pub invoked: u64,
    /// History index of the completion (of the invoke when none came).
    pub writer: u64,
}

impl KeyedSend {
    /// When the send certainly ended: its ok completion. An indeterminate
    /// send may take effect any time after its invoke.
    fn ended(&self) -> Option<u64> {
        (self.kind == OpType::Ok).then_some(self.writer)
    }
}

/// The records one ok (or info) op polled from one partition, in order.
#[derive(Clone, Debug)]
pub struct KeyedRead {
    pub process: Process,
    /// History index of the completion.
    pub op: u64,
    pub partition: Key,
    pub records: Vec<KeyedRecord>,
}

/// One ListOffsets probe (or a final read's opening bounds).
#[derive(Clone, Debug)]
pub struct Probe {
    pub process: Process,
    pub invoked: u64,
    /// History index of the completion.
    pub op: u64,
    pub bounds: BTreeMap<Key, (i64, i64)>,
}

/// The final read: who read, under which policy, from where.
#[derive(Clone, Debug)]
pub struct FinalRead {
    pub process: Process,
    /// History index of the `final-read` op.
    pub op: u64,
    pub policy: CleanupPolicy,
    /// Per partition: the highest log start its process probed, and the end
    /// it read up to.
    pub bounds: BTreeMap<Key, (i64, i64)>,
    /// Per partition, `(record key, value)` -> every offset it was read at.
    pub seen: BTreeMap<Key, BTreeMap<i64, BTreeSet<i64>>>,
    /// Per partition and record key, every offset read with its value.
    pub by_key: BTreeMap<Key, BTreeMap<Key, BTreeMap<i64, i64>>>,
}

/// A process forgets its positions: events in the history order.
#[derive(Clone, Debug)]
pub enum Event {
    Reset(Process),
    Read(usize),
}

/// Everything the keyed checkers need, built once per history.
#[derive(Debug, Default)]
pub struct KeyedAnalysis {
    pub sends: Vec<KeyedSend>,
    pub reads: Vec<KeyedRead>,
    pub probes: Vec<Probe>,
    pub final_read: Option<FinalRead>,
    /// Resets and reads in history order (for the process-order check).
    pub events: Vec<Event>,
    /// Partition -> offset -> every (record key, value) observed there, by
    /// reads and by acknowledgements.
    pub log: BTreeMap<Key, BTreeMap<i64, BTreeSet<(Key, i64)>>>,
    /// (partition, value) -> every offset it was observed at.
    pub offsets_of: BTreeMap<(Key, i64), BTreeSet<i64>>,
    /// Value -> positions in `sends` of the sends that wrote it.
    pub senders: BTreeMap<i64, Vec<usize>>,
}

fn keyed_mops(op: &Op) -> impl Iterator<Item = &MicroOp> {
    op.mops().iter().filter(|m| {
        matches!(
            m,
            MicroOp::KeyedSend { .. }
                | MicroOp::KeyedPoll(_)
                | MicroOp::Bounds(_)
                | MicroOp::FinalRead { .. }
        )
    })
}

impl KeyedAnalysis {
    pub fn new(history: &[Op]) -> KeyedAnalysis {
        let mut a = KeyedAnalysis::default();
        // Process -> its open invoke.
        let mut pending: BTreeMap<Process, &Op> = BTreeMap::new();
        for op in history {
            match op.f {
                OpF::Assign | OpF::Subscribe | OpF::Crash => {
                    if op.kind != OpType::Invoke && op.kind != OpType::Fail {
                        a.events.push(Event::Reset(op.process.clone()));
                    }
                    continue;
                }
                // Group commits belong to the queue workload's consumers.
                OpF::Commit | OpF::Committed => continue,
                OpF::Send | OpF::Poll | OpF::Txn => {}
            }
            if op.kind == OpType::Invoke {
                if let Some(prev) = pending.insert(op.process.clone(), op) {
                    a.add(prev, prev, OpType::Info);
                }
                continue;
            }
            let invoke = pending.remove(&op.process).unwrap_or(op);
            a.add(invoke, op, op.kind);
        }
        for invoke in pending.into_values() {
            a.add(invoke, invoke, OpType::Info);
        }
        a.sends.sort_by_key(|s| (s.invoked, s.writer));
        for (pos, s) in a.sends.iter().enumerate() {
            a.senders.entry(s.value).or_default().push(pos);
        }
        a.index_log();
        a.finish_final_read();
        a
    }

    /// Record one operation: `done` is its completion (or its invoke, for
    /// one that never completed), ending as `kind`.
    fn add(&mut self, invoke: &Op, done: &Op, kind: OpType) {
        // A completion without micro-ops takes its invoke's.
        let source = if keyed_mops(done).next().is_some() {
            done
        } else {
            invoke
        };
        for m in keyed_mops(source) {
            match m {
                MicroOp::KeyedSend {
                    key,
                    record_key,
                    offset,
                    value,
                    tombstone,
                } => {
                    // A record of a partly acknowledged op (info) that
                    // carries an offset was acknowledged there itself.
                    let kind = match (kind, offset) {
                        (OpType::Info, Some(_)) if done.kind != OpType::Invoke => OpType::Ok,
                        (kind, _) => kind,
                    };
                    self.sends.push(KeyedSend {
                        partition: key.clone(),
                        record_key: record_key.clone(),
                        value: *value,
                        tombstone: *tombstone,
                        acked_offset: if kind == OpType::Ok { *offset } else { None },
                        kind,
                        invoked: invoke.index,
                        writer: done.index,
                    })
                }
                MicroOp::KeyedPoll(polled) if done.kind != OpType::Invoke => {
                    for (partition, records) in polled {
                        if records.is_empty() {
                            continue;
                        }
                        self.events.push(Event::Read(self.reads.len()));
                        self.reads.push(KeyedRead {
                            process: done.process.clone(),
                            op: done.index,
                            partition: partition.clone(),
                            records: records.clone(),
                        });
                    }
                }
                MicroOp::Bounds(bounds) if kind == OpType::Ok => self.probes.push(Probe {
                    process: done.process.clone(),
                    invoked: invoke.index,
                    op: done.index,
                    bounds: bounds.clone(),
                }),
                MicroOp::FinalRead { policy, bounds } if kind == OpType::Ok => {
                    self.probes.push(Probe {
                        process: done.process.clone(),
                        invoked: invoke.index,
                        op: done.index,
                        bounds: bounds.clone(),
                    });
                    let later = self.final_read.as_ref().is_none_or(|f| f.op < done.index);
                    if later {
                        self.final_read = Some(FinalRead {
                            process: done.process.clone(),
                            op: done.index,
                            policy: *policy,
                            bounds: bounds.clone(),
                            seen: BTreeMap::new(),
                            by_key: BTreeMap::new(),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn index_log(&mut self) {
        let mut observe = |p: &Key, o: i64, rk: &Key, v: i64| {
            self.log
                .entry(p.clone())
                .or_default()
                .entry(o)
                .or_default()
                .insert((rk.clone(), v));
            self.offsets_of.entry((p.clone(), v)).or_default().insert(o);
        };
        for s in &self.sends {
            if let Some(o) = s.acked_offset {
                observe(&s.partition, o, &s.record_key, s.value);
            }
        }
        for r in &self.reads {
            for rec in &r.records {
                observe(&r.partition, rec.offset, &rec.record_key, rec.value);
            }
        }
    }

    /// Gather the final reader's polls and later probes.
    fn finish_final_read(&mut self) {
        let Some(f) = self.final_read.as_mut() else {
            return;
        };
        for p in &self.probes {
            if p.process != f.process || p.op <= f.op {
                continue;
            }
            for (partition, (start, _)) in &p.bounds {
                if let Some(b) = f.bounds.get_mut(partition) {
                    b.0 = b.0.max(*start);
                }
            }
        }
        for r in &self.reads {
            if r.process != f.process || r.op <= f.op {
                continue;
            }
            for rec in &r.records {
                f.seen
                    .entry(r.partition.clone())
                    .or_default()
                    .entry(rec.value)
                    .or_default()
                    .insert(rec.offset);
                f.by_key
                    .entry(r.partition.clone())
                    .or_default()
                    .entry(rec.record_key.clone())
                    .or_default()
                    .insert(rec.offset, rec.value);
            }
        }
    }

    /// Committed sends with the offset each holds: acknowledged at its
    /// reported offset, or indeterminate and read (at the least offset read).
    pub fn committed(&self) -> Vec<(usize, i64)> {
        let read: BTreeSet<(Key, i64)> = self
            .reads
            .iter()
            .flat_map(|r| r.records.iter().map(|rec| (r.partition.clone(), rec.value)))
            .collect();
        let mut out = Vec::new();
        for (pos, s) in self.sends.iter().enumerate() {
            let offset = match (s.kind, s.acked_offset) {
                (OpType::Ok, Some(o)) => Some(o),
                (OpType::Ok | OpType::Info, _)
                    if read.contains(&(s.partition.clone(), s.value)) =>
                {
                    self.offsets_of
                        .get(&(s.partition.clone(), s.value))
                        .and_then(|os| os.first().copied())
                }
                _ => None,
            };
            if let Some(o) = offset {
                out.push((pos, o));
            }
        }
        out
    }
}

/// Run every keyed checker over a history (no keyed ops: nothing found).
pub fn check(history: &[Op]) -> Vec<Anomaly> {
    KeyedAnalysis::new(history).check()
}

impl KeyedAnalysis {
    /// Run every keyed checker.
    pub fn check(&self) -> Vec<Anomaly> {
        let mut out = Vec::new();
        if self.sends.is_empty() && self.reads.is_empty() && self.probes.is_empty() {
            return out;
        }
        checks::offsets(self, &mut out);
        checks::originals(self, &mut out);
        checks::process_order(self, &mut out);
        checks::send_order(self, &mut out);
        checks::log_start(self, &mut out);
        checks::final_read(self, &mut out);
        out
    }
}
