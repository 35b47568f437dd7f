//! int-poll-skip, int-nonmonotonic-poll, int-send-skip and
//! int-nonmonotonic-send: the same order checks inside one operation.

use crate::analysis::Analysis;
use crate::anomaly::Anomaly;

/// Successive records of a key polled within one op must be adjacent in the
/// version order.
pub fn polls(a: &Analysis, out: &mut Vec<Anomaly>) {
    for op in &a.ops {
        for (key, records) in op.reads() {
            let Some(vo) = a.orders.get(&key) else {
                continue;
            };
            for pair in records.windows(2) {
                let ((o1, v1), (o2, v2)) = (pair[0], pair[1]);
                let Some(delta) = vo.delta((Some(o1), v1), (Some(o2), v2)) else {
                    continue;
                };
                if delta > 1 {
                    out.push(Anomaly::IntPollSkip {
                        key: key.clone(),
                        values: [v1, v2],
                        offsets: [o1, o2],
                        delta,
                        skipped: vo.between((Some(o1), v1), (Some(o2), v2)),
                        op: op.index,
                    });
                } else if delta < 1 {
                    out.push(Anomaly::IntNonmonotonicPoll {
                        key: key.clone(),
                        values: [v1, v2],
                        offsets: [o1, o2],
                        delta,
                        op: op.index,
                    });
                }
            }
        }
    }
}

/// Successive sends to a key within one op should land adjacent and in
/// order. Skips are normal for Kafka transactions (other producers'
/// records interleave), so callers usually expect `int-send-skip`.
pub fn sends(a: &Analysis, out: &mut Vec<Anomaly>) {
    for op in &a.ops {
        for (key, writes) in op.writes() {
            let Some(vo) = a.orders.get(&key) else {
                continue;
            };
            for pair in writes.windows(2) {
                let ((o1, v1), (o2, v2)) = (pair[0], pair[1]);
                let Some(delta) = vo.delta((o1, v1), (o2, v2)) else {
                    continue;
                };
                if delta > 1 {
                    out.push(Anomaly::IntSendSkip {
                        key: key.clone(),
                        values: [v1, v2],
                        offsets: [o1, o2],
                        delta,
                        skipped: vo.between((o1, v1), (o2, v2)),
                        op: op.index,
                    });
                } else if delta < 1 {
                    out.push(Anomaly::IntNonmonotonicSend {
                        key: key.clone(),
                        values: [v1, v2],
                        offsets: [o1, o2],
                        delta,
                        op: op.index,
                    });
                }
            }
        }
    }
}
