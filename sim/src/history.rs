//! Records the workload's operations as a weir-jepsen history: an invoke
//! line when a client starts an operation and an ok / fail / info line when
//! it ends, numbered in the order they happen (simulated time, one thread).

use std::collections::BTreeMap;

use weir_jepsen::{Key, MicroOp, Op, OpF, OpType, OpValue, Process};

#[derive(Debug, Default, Clone)]
pub struct HistoryRecorder {
    ops: Vec<Op>,
}

impl HistoryRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one op (crate-visible: the keyed workload records its own
    /// micro-ops, keyed_workload.rs); returns it so the caller can note an error.
    pub(crate) fn push(
        &mut self,
        process: i64,
        kind: OpType,
        f: OpF,
        value: OpValue,
        time_ns: u64,
    ) -> &mut Op {
        self.push_as(Process::Int(process), kind, f, value, time_ns)
    }

    fn push_as(
        &mut self,
        process: Process,
        kind: OpType,
        f: OpF,
        value: OpValue,
        time_ns: u64,
    ) -> &mut Op {
        let index = self.ops.len() as u64;
        if let Some(last) = self.ops.last() {
            assert!(
                last.time <= time_ns,
                "history invariant: times never go backwards"
            );
        }
        self.ops.push(Op {
            index,
            process,
            kind,
            f,
            value,
            time: time_ns,
            error: None,
        });
        self.ops.last_mut().expect("just pushed")
    }

    pub fn send_invoke(&mut self, process: i64, key: i64, value: i64, time_ns: u64) {
        let mop = MicroOp::Send {
            key: Key::Int(key),
            offset: None,
            value,
        };
        self.push(
            process,
            OpType::Invoke,
            OpF::Send,
            OpValue::Mops(vec![mop]),
            time_ns,
        );
    }

    /// A send ended: `Ok(offset)` when acknowledged, `Err(reason)` when it
    /// may or may not have happened (info).
    pub fn send_complete(
        &mut self,
        process: i64,
        key: i64,
        value: i64,
        result: Result<i64, String>,
        time_ns: u64,
    ) {
        self.send_end(process, key, value, result, false, time_ns)
    }

    /// A send that definitely did not happen (every attempt refused before
    /// the append): `fail`, so a read of its value is G1a.
    pub fn send_failed(&mut self, process: i64, key: i64, value: i64, why: String, time_ns: u64) {
        self.send_end(process, key, value, Err(why), true, time_ns)
    }

    fn send_end(
        &mut self,
        process: i64,
        key: i64,
        value: i64,
        result: Result<i64, String>,
        definite: bool,
        time_ns: u64,
    ) {
        let (kind, offset, error) = match result {
            Ok(offset) => (OpType::Ok, (offset >= 0).then_some(offset), None),
            Err(e) if definite => (OpType::Fail, None, Some(e)),
            Err(e) => (OpType::Info, None, Some(e)),
        };
        let mop = MicroOp::Send {
            key: Key::Int(key),
            offset,
            value,
        };
        self.push(process, kind, OpF::Send, OpValue::Mops(vec![mop]), time_ns);
        if let Some(e) = error {
            self.ops.last_mut().expect("just pushed").error = Some(e.into());
        }
    }

    /// A transaction of sends begins: `(key, value)` in send order.
    pub fn txn_invoke(&mut self, process: i64, sends: &[(i64, i64)], time_ns: u64) {
        let mops = sends
            .iter()
            .map(|(key, value)| MicroOp::Send {
                key: Key::Int(*key),
                offset: None,
                value: *value,
            })
            .collect();
        self.push(
            process,
            OpType::Invoke,
            OpF::Txn,
            OpValue::Mops(mops),
            time_ns,
        );
    }

    /// A transaction ended: `kind` ok (committed), fail (aborted or
    /// certainly not committed) or info (unknown); `sends` are
    /// `(key, offset if acknowledged, value)`.
    pub fn txn_complete(
        &mut self,
        process: i64,
        kind: OpType,
        sends: &[(i64, Option<i64>, i64)],
        error: Option<String>,
        time_ns: u64,
    ) {
        let mops = sends
            .iter()
            .map(|(key, offset, value)| MicroOp::Send {
                key: Key::Int(*key),
                offset: *offset,
                value: *value,
            })
            .collect();
        self.push(process, kind, OpF::Txn, OpValue::Mops(mops), time_ns);
        if let Some(e) = error {
            self.ops.last_mut().expect("just pushed").error = Some(e.into());
        }
    }

    pub fn poll_invoke(&mut self, process: i64, time_ns: u64) {
        let mop = MicroOp::Poll(BTreeMap::new());
        self.push(
            process,
            OpType::Invoke,
            OpF::Poll,
            OpValue::Mops(vec![mop]),
            time_ns,
        );
    }

    /// A poll ended: the records per key, or an error (info: the poll's
    /// effect on the consumer's position is unknown).
    pub fn poll_complete(
        &mut self,
        process: i64,
        result: Result<BTreeMap<i64, Vec<(i64, i64)>>, String>,
        time_ns: u64,
    ) {
        match result {
            Ok(read) => {
                let read = read.into_iter().map(|(k, v)| (Key::Int(k), v)).collect();
                let value = OpValue::Mops(vec![MicroOp::Poll(read)]);
                self.push(process, OpType::Ok, OpF::Poll, value, time_ns);
            }
            Err(e) => {
                let value = OpValue::Mops(vec![MicroOp::Poll(BTreeMap::new())]);
                self.push(process, OpType::Info, OpF::Poll, value, time_ns);
                self.ops.last_mut().expect("just pushed").error = Some(e.into());
            }
        }
    }

    /// An assign takes effect at once (it is local to the consumer): invoke
    /// and ok back to back.
    /// A group member's subscription (to every key): one invoke/ok pair.
    pub fn subscribe(&mut self, process: i64, keys: &[i64], time_ns: u64) {
        let keys: Vec<Key> = keys.iter().map(|k| Key::Int(*k)).collect();
        self.push(
            process,
            OpType::Invoke,
            OpF::Subscribe,
            OpValue::Keys(keys.clone()),
            time_ns,
        );
        self.push(
            process,
            OpType::Ok,
            OpF::Subscribe,
            OpValue::Keys(keys),
            time_ns,
        );
    }

    pub fn assign(&mut self, process: i64, keys: &[i64], time_ns: u64) {
        let keys: Vec<Key> = keys.iter().map(|k| Key::Int(*k)).collect();
        self.push(
            process,
            OpType::Invoke,
            OpF::Assign,
            OpValue::Keys(keys.clone()),
            time_ns,
        );
        self.push(
            process,
            OpType::Ok,
            OpF::Assign,
            OpValue::Keys(keys),
            time_ns,
        );
    }

    /// A group member begins an OffsetCommit of `offsets` (key -> the next
    /// offset to read).
    pub fn commit_invoke(&mut self, process: i64, offsets: &BTreeMap<i64, i64>, time_ns: u64) {
        let value = offsets_value(offsets);
        self.push(process, OpType::Invoke, OpF::Commit, value, time_ns);
    }

    /// The commit ended: `Ok` acknowledged; `Err((why, definite))`, where
    /// `definite` means the coordinator refused it before writing anything
    /// (fail), else it may have landed (info).
    pub fn commit_complete(
        &mut self,
        process: i64,
        offsets: &BTreeMap<i64, i64>,
        result: Result<(), (String, bool)>,
        time_ns: u64,
    ) {
        let value = offsets_value(offsets);
        let (kind, error) = match result {
            Ok(()) => (OpType::Ok, None),
            Err((e, true)) => (OpType::Fail, Some(e)),
            Err((e, false)) => (OpType::Info, Some(e)),
        };
        self.push(process, kind, OpF::Commit, value, time_ns);
        if let Some(e) = error {
            self.ops.last_mut().expect("just pushed").error = Some(e.into());
        }
    }

    /// An observer (`who`, a named process) begins reading the group's
    /// committed offsets.
    pub fn committed_invoke(&mut self, who: &str, time_ns: u64) {
        let value = OpValue::Offsets(BTreeMap::new());
        let p = Process::Name(who.to_string());
        self.push_as(p, OpType::Invoke, OpF::Committed, value, time_ns);
    }

    /// The read ended: the committed offsets (keys never committed left
    /// out), or why it failed (a read has no effect: fail).
    pub fn committed_complete(
        &mut self,
        who: &str,
        result: Result<BTreeMap<i64, i64>, String>,
        time_ns: u64,
    ) {
        let p = Process::Name(who.to_string());
        match result {
            Ok(offsets) => {
                let value = offsets_value(&offsets);
                self.push_as(p, OpType::Ok, OpF::Committed, value, time_ns);
            }
            Err(e) => {
                let value = OpValue::Offsets(BTreeMap::new());
                self.push_as(p, OpType::Fail, OpF::Committed, value, time_ns);
                self.ops.last_mut().expect("just pushed").error = Some(e.into());
            }
        }
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

fn offsets_value(offsets: &BTreeMap<i64, i64>) -> OpValue {
    OpValue::Offsets(offsets.iter().map(|(k, o)| (Key::Int(*k), *o)).collect())
}

/// Drop the acknowledgement of one acknowledged write from a history's
/// reads: every poll that observed `(key, value)` forgets it. The teeth test
/// uses it to show the checker names the loss.
pub fn forget_reads_of(ops: &mut [Op], key: i64, value: i64) {
    for op in ops.iter_mut() {
        if let OpValue::Mops(mops) = &mut op.value {
            for mop in mops.iter_mut() {
                if let MicroOp::Poll(read) = mop {
                    if let Some(records) = read.get_mut(&Key::Int(key)) {
                        records.retain(|(_, v)| *v != value);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_history_is_valid_and_a_forgotten_write_is_lost() {
        let mut h = HistoryRecorder::new();
        for v in 0..5 {
            h.send_invoke(0, 1, v, v as u64 * 10);
            h.send_complete(0, 1, v, Ok(v), v as u64 * 10 + 5);
        }
        h.assign(1, &[1], 100);
        h.poll_invoke(1, 101);
        let read: BTreeMap<i64, Vec<(i64, i64)>> = [(1, (0..5).map(|v| (v, v)).collect())].into();
        h.poll_complete(1, Ok(read), 102);
        let report = weir_jepsen::analyze(h.ops());
        assert!(report.valid, "{}", report.to_json());

        let mut ops = h.into_ops();
        forget_reads_of(&mut ops, 1, 2);
        let report = weir_jepsen::analyze(&ops);
        // The poll that skipped it is also an int-poll-skip, and the value
        // is unseen; what matters is that the loss is named.
        assert!(
            report.names().contains(&"lost-write"),
            "{}",
            report.to_json()
        );
    }
}
