//! The keyed checkers (see the module doc of [`super`] for what each states).

use std::collections::{BTreeMap, BTreeSet};

use super::{Event, KeyedAnalysis};
use crate::anomaly::Anomaly;
use crate::history::{Key, OpType, Process};

/// inconsistent-offsets: an offset of a partition observed holding two
/// records; duplicate: one value of a partition at two offsets.
pub fn offsets(a: &KeyedAnalysis, out: &mut Vec<Anomaly>) {
    for (partition, log) in &a.log {
        for (offset, records) in log {
            if records.len() > 1 {
                let values: BTreeSet<i64> = records.iter().map(|(_, v)| *v).collect();
                out.push(Anomaly::InconsistentOffsets {
                    key: partition.clone(),
                    offset: *offset,
                    values: values.into_iter().collect(),
                });
            }
        }
    }
    for ((partition, value), offsets) in &a.offsets_of {
        if offsets.len() > 1 {
            out.push(Anomaly::Duplicate {
                key: partition.clone(),
                value: *value,
                offsets: offsets.iter().copied().collect(),
            });
        }
    }
}

/// foreign-read: a record whose value was not written under its record key
/// of its partition; G1a: one written only by failed sends.
pub fn originals(a: &KeyedAnalysis, out: &mut Vec<Anomaly>) {
    for r in &a.reads {
        for rec in &r.records {
            let senders = a.senders.get(&rec.value).map(Vec::as_slice).unwrap_or(&[]);
            let here: Vec<usize> = senders
                .iter()
                .copied()
                .filter(|&s| {
                    let s = &a.sends[s];
                    s.partition == r.partition
                        && s.record_key == rec.record_key
                        && s.tombstone == rec.tombstone
                })
                .collect();
            if here.is_empty() {
                out.push(Anomaly::ForeignRead {
                    key: r.partition.clone(),
                    record_key: rec.record_key.clone(),
                    value: rec.value,
                    offset: rec.offset,
                    reader: r.op,
                    sent_as: senders
                        .first()
                        .map(|&s| (a.sends[s].partition.clone(), a.sends[s].record_key.clone())),
                });
            } else if here.iter().all(|&s| a.sends[s].kind == OpType::Fail) {
                out.push(Anomaly::G1a {
                    key: r.partition.clone(),
                    value: rec.value,
                    offset: rec.offset,
                    writer: a.sends[here[0]].writer,
                    reader: r.op,
                });
            }
        }
    }
}

/// Distance between two offsets of a partition in its observed log (dense:
/// gaps the cleaner left count for nothing).
fn dense_delta(a: &KeyedAnalysis, partition: &Key, o1: i64, o2: i64) -> i64 {
    let Some(log) = a.log.get(partition) else {
        return o2 - o1;
    };
    let rank = |o: i64| log.range(..o).count() as i64;
    rank(o2) - rank(o1)
}

/// nonmonotonic-poll and int-nonmonotonic-poll: a process reads each
/// partition in strictly rising offsets, within a poll and from one poll to
/// the next, until it is assigned again (a re-assign may seek) or crashes.
/// Skips are not anomalies here: compaction and retention leave gaps.
pub fn process_order(a: &KeyedAnalysis, out: &mut Vec<Anomaly>) {
    // Process -> partition -> (op, offset, value) of its last record read.
    let mut last: BTreeMap<Process, BTreeMap<Key, (u64, i64, i64)>> = BTreeMap::new();
    for e in &a.events {
        let r = match e {
            Event::Reset(p) => {
                last.remove(p);
                continue;
            }
            Event::Read(i) => &a.reads[*i],
        };
        let first = &r.records[0];
        let state = last.entry(r.process.clone()).or_default();
        if let Some(&(prev, o1, v1)) = state.get(&r.partition) {
            if first.offset <= o1 {
                out.push(Anomaly::NonmonotonicPoll {
                    key: r.partition.clone(),
                    values: [v1, first.value],
                    offsets: [o1, first.offset],
                    delta: dense_delta(a, &r.partition, o1, first.offset),
                    ops: [prev, r.op],
                });
            }
        }
        for w in r.records.windows(2) {
            if w[1].offset <= w[0].offset {
                out.push(Anomaly::IntNonmonotonicPoll {
                    key: r.partition.clone(),
                    values: [w[0].value, w[1].value],
                    offsets: [w[0].offset, w[1].offset],
                    delta: dense_delta(a, &r.partition, w[0].offset, w[1].offset),
                    op: r.op,
                });
            }
        }
        let end = r.records.last().expect("reads hold records");
        state.insert(r.partition.clone(), (r.op, end.offset, end.value));
    }
}

/// stale-value: within a record key, a value whose send ended before
/// another's began must sit at a lower offset.
pub fn send_order(a: &KeyedAnalysis, out: &mut Vec<Anomaly>) {
    // (partition, record key) -> (offset, send position), committed only.
    let mut by_key: BTreeMap<(Key, Key), Vec<(i64, usize)>> = BTreeMap::new();
    for (pos, offset) in a.committed() {
        let s = &a.sends[pos];
        by_key
            .entry((s.partition.clone(), s.record_key.clone()))
            .or_default()
            .push((offset, pos));
    }
    for ((partition, record_key), mut entries) in by_key {
        entries.sort();
        // Scan from the highest offset down, keeping the send that ended
        // earliest among those above: if it ended before this one began,
        // an older value sits above a newer one.
        let mut earliest_above: Option<(u64, i64, usize)> = None;
        for &(offset, pos) in entries.iter().rev() {
            let s = &a.sends[pos];
            if let Some((ended, above_offset, above)) = earliest_above {
                if ended < s.invoked && above_offset > offset {
                    let older = &a.sends[above];
                    out.push(Anomaly::StaleValue {
                        key: partition.clone(),
                        record_key: record_key.clone(),
                        values: [s.value, older.value],
                        offsets: [offset, above_offset],
                        writers: [s.writer, older.writer],
                    });
                }
            }
            if let Some(ended) = s.ended() {
                if earliest_above.is_none_or(|(e, _, _)| ended < e) {
                    earliest_above = Some((ended, offset, pos));
                }
            }
        }
    }
}

/// log-start-regression: a probe that began after another ended saw an
/// earlier log start offset of some partition.
pub fn log_start(a: &KeyedAnalysis, out: &mut Vec<Anomaly>) {
    let mut by_end: Vec<usize> = (0..a.probes.len()).collect();
    by_end.sort_by_key(|&i| a.probes[i].op);
    let mut by_begin: Vec<usize> = (0..a.probes.len()).collect();
    by_begin.sort_by_key(|&i| a.probes[i].invoked);
    // Partition -> (highest start among probes ended so far, its op).
    let mut highest: BTreeMap<Key, (i64, u64)> = BTreeMap::new();
    let mut ended = by_end.iter().peekable();
    for &b in &by_begin {
        let probe = &a.probes[b];
        while let Some(&&e) = ended.peek() {
            if a.probes[e].op >= probe.invoked {
                break;
            }
            ended.next();
            for (partition, &(start, _)) in &a.probes[e].bounds {
                let h = highest
                    .entry(partition.clone())
                    .or_insert((start, a.probes[e].op));
                if start > h.0 {
                    *h = (start, a.probes[e].op);
                }
            }
        }
        for (partition, &(start, _)) in &probe.bounds {
            if start < 0 {
                continue;
            }
            if let Some(&(high, op)) = highest.get(partition) {
                if start < high {
                    out.push(Anomaly::LogStartRegression {
                        key: partition.clone(),
                        starts: [high, start],
                        ops: [op, probe.op],
                    });
                }
            }
        }
    }
}

/// lost-latest (compacted) and lost-retained (not compacted): what the
/// final read must hold.
pub fn final_read(a: &KeyedAnalysis, out: &mut Vec<Anomaly>) {
    let Some(f) = &a.final_read else {
        return;
    };
    let none = BTreeMap::new();
    let read = |partition: &Key, value: i64| {
        f.seen
            .get(partition)
            .is_some_and(|values| values.contains_key(&value))
    };
    let committed = a.committed();
    if f.policy.compact {
        // (partition, record key) -> its committed send at the highest offset.
        let mut latest: BTreeMap<(Key, Key), (i64, usize)> = BTreeMap::new();
        for &(pos, offset) in &committed {
            let s = &a.sends[pos];
            let e = latest
                .entry((s.partition.clone(), s.record_key.clone()))
                .or_insert((offset, pos));
            if offset > e.0 {
                *e = (offset, pos);
            }
        }
        for ((partition, record_key), (offset, pos)) in latest {
            let Some(&(start, end)) = f.bounds.get(&partition) else {
                continue;
            };
            let s = &a.sends[pos];
            if read(&partition, s.value) {
                continue;
            }
            let final_records = f
                .by_key
                .get(&partition)
                .and_then(|keys| keys.get(&record_key))
                .unwrap_or(&none);
            if final_records.range(offset + 1..).next().is_some() {
                continue;
            }
            // A deleted key may be gone altogether (its tombstone purged
            // after delete.retention.ms), never back at an older value.
            if s.tombstone && final_records.range(..offset).next().is_none() {
                continue;
            }
            if f.policy.delete && offset < start {
                continue;
            }
            if s.kind != OpType::Ok && offset >= end {
                continue;
            }
            out.push(Anomaly::LostLatest {
                key: partition,
                record_key,
                value: s.value,
                offset,
                writer: s.writer,
                final_latest: final_records.last_key_value().map(|(o, v)| (*o, *v)),
            });
        }
    } else {
        for &(pos, offset) in &committed {
            let s = &a.sends[pos];
            let Some(&(start, end)) = f.bounds.get(&s.partition) else {
                continue;
            };
            if offset < start || read(&s.partition, s.value) {
                continue;
            }
            if s.kind != OpType::Ok && offset >= end {
                continue;
            }
            out.push(Anomaly::LostRetained {
                key: s.partition.clone(),
                record_key: s.record_key.clone(),
                value: s.value,
                offset,
                writer: s.writer,
                log_start: start,
            });
        }
    }
}
