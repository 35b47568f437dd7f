//! nonmonotonic-poll, poll-skip and nonmonotonic-send: one process's
//! successive operations on a key must move forward through its log, one
//! record at a time for polls.

use std::collections::BTreeMap;

use crate::analysis::Analysis;
use crate::anomaly::Anomaly;
use crate::history::{Key, OpF, OpType, Process};

/// Compare each poll's first record of a key with where the same process's
/// previous ok poll of that key ended.
///
/// Unlike Jepsen, which keeps the position of keys still assigned, an ok or
/// info assign/subscribe forgets every position of the process: our format
/// has no seek flag, and a re-assign may seek. A crash forgets too (a new
/// client). Failed and info polls are checked but do not move the position,
/// as in Jepsen.
pub fn polls(a: &Analysis, out: &mut Vec<Anomaly>) {
    let mut last: BTreeMap<Process, BTreeMap<Key, (u64, i64, i64)>> = BTreeMap::new();
    for op in &a.ops {
        match op.f {
            OpF::Crash => {
                last.remove(&op.process);
            }
            OpF::Assign | OpF::Subscribe => {
                if matches!(op.kind, OpType::Ok | OpType::Info) {
                    last.remove(&op.process);
                }
            }
            OpF::Poll | OpF::Txn => {
                let reads = op.reads();
                let state = last.entry(op.process.clone()).or_default();
                for (key, records) in &reads {
                    let (o2, v2) = records[0];
                    let Some(&(prev, v1, o1)) = state.get(key) else {
                        continue;
                    };
                    let Some(vo) = a.orders.get(key) else {
                        continue;
                    };
                    let Some(delta) = vo.delta((Some(o1), v1), (Some(o2), v2)) else {
                        continue;
                    };
                    if delta > 1 {
                        out.push(Anomaly::PollSkip {
                            key: key.clone(),
                            values: [v1, v2],
                            offsets: [o1, o2],
                            delta,
                            skipped: vo.between((Some(o1), v1), (Some(o2), v2)),
                            ops: [prev, op.index],
                        });
                    } else if delta < 1 {
                        out.push(Anomaly::NonmonotonicPoll {
                            key: key.clone(),
                            values: [v1, v2],
                            offsets: [o1, o2],
                            delta,
                            ops: [prev, op.index],
                        });
                    }
                }
                if op.kind == OpType::Ok {
                    for (key, records) in reads {
                        let (o, v) = *records.last().expect("reads() omits empty keys");
                        state.insert(key, (op.index, v, o));
                    }
                }
            }
            OpF::Send | OpF::Commit | OpF::Committed => {}
        }
    }
}

/// Compare each ok send's first value to a key with the same process's
/// previous ok send to that key: it must land later in the log. Only ok
/// sends count: an info send may be applied long after it timed out.
pub fn sends(a: &Analysis, out: &mut Vec<Anomaly>) {
    type Last = (u64, i64, Option<i64>);
    let mut last: BTreeMap<Process, BTreeMap<Key, Last>> = BTreeMap::new();
    for op in &a.ops {
        if op.kind != OpType::Ok || !matches!(op.f, OpF::Send | OpF::Txn) {
            continue;
        }
        let state = last.entry(op.process.clone()).or_default();
        for (key, writes) in op.writes() {
            let (o2, v2) = writes[0];
            if let Some(&(prev, v1, o1)) = state.get(&key) {
                let by_order = a
                    .orders
                    .get(&key)
                    .and_then(|vo| vo.delta((o1, v1), (o2, v2)));
                let delta = by_order.or(match (o1, o2) {
                    (Some(o1), Some(o2)) => Some(o2 - o1),
                    _ => None,
                });
                if let Some(delta) = delta.filter(|d| *d < 1) {
                    out.push(Anomaly::NonmonotonicSend {
                        key: key.clone(),
                        values: [v1, v2],
                        offsets: [o1, o2],
                        delta,
                        ops: [prev, op.index],
                    });
                }
            }
            let (o, v) = *writes.last().expect("writes() omits empty keys");
            state.insert(key, (op.index, v, o));
        }
    }
}
