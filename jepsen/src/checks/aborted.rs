//! G1a (aborted read) and precommitted-read: values seen that should not
//! have been visible.

use crate::analysis::Analysis;
use crate::anomaly::Anomaly;

/// Some op polled a value that a failed send or txn wrote. Readers of any
/// type count: Kafka consumers never return records outside the log.
pub fn aborted_reads(a: &Analysis, out: &mut Vec<Anomaly>) {
    for (pos, op) in a.ops.iter().enumerate() {
        for (key, reads) in op.reads() {
            let Some(failed) = a.failed_writes.get(&key) else {
                continue;
            };
            for (offset, value) in reads {
                if !failed.contains(&value) {
                    continue;
                }
                let writer = a.writer_of[&key][&value];
                if writer == pos {
                    // Reading one's own uncommitted write is precommitted-read.
                    continue;
                }
                out.push(Anomaly::G1a {
                    key: key.clone(),
                    value,
                    offset,
                    writer: a.op_index(writer),
                    reader: op.index,
                });
            }
        }
    }
}

/// A txn polled a value it sent itself: Kafka hides a transaction's records
/// from every consumer, its own included, until it commits.
pub fn precommitted_reads(a: &Analysis, out: &mut Vec<Anomaly>) {
    for op in &a.ops {
        let reads = op.reads();
        for (key, writes) in op.writes() {
            let Some(read) = reads.get(&key) else {
                continue;
            };
            for (_, value) in writes {
                if read.iter().any(|(_, v)| *v == value) {
                    out.push(Anomaly::PrecommittedRead {
                        key: key.clone(),
                        value,
                        op: op.index,
                    });
                }
            }
        }
    }
}
