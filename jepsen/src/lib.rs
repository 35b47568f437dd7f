//! weir-jepsen: the history format and Kafka anomaly checkers.
//!
//! A test (the simulator or the real-process runner) records what its
//! clients did as a [`history`] of operations; [`analyze`] infers each
//! partition's log from every observation (the *version order*) and runs the
//! checkers of Jepsen's Kafka queue workload over it, returning a [`Report`]
//! of named anomalies with the records involved. The keyed workload (record
//! keys within partitions, for compacted and retention-limited topics) has
//! checkers of its own in [`keyed`], run by the same [`analyze`].
//!
//! **Architecture Invariant:** this crate knows nothing of Weir, sockets or
//! time; it is a pure function from a history to a report, so a report is
//! reproducible from the history file alone.

pub mod analysis;
pub mod anomaly;
mod checks;
pub mod groups;
pub mod history;
pub mod keyed;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

pub use analysis::{Analysis, VersionOrder};
pub use anomaly::{Anomaly, AnomalyKind, CycleStep, Report};
pub use history::{
    parse_history, read_history, write_history, CleanupPolicy, HistoryError, Key, KeyedRecord,
    MicroOp, Op, OpF, OpType, OpValue, Process,
};

/// Run every checker over a history (invokes and completions, any order of
/// processes, ascending `index`).
pub fn analyze(history: &[Op]) -> Report {
    let analysis = Analysis::new(history);
    let mut found = checks::run_all(&analysis);
    // The keyed workload's checkers (compacted and retention-limited
    // topics); they read only its micro-ops, so a queue history adds nothing.
    let keyed = keyed::KeyedAnalysis::new(history);
    found.extend(keyed.check());
    found.extend(groups::check(history));
    let ops = analysis
        .ops
        .iter()
        .filter(|op| matches!(op.f, OpF::Send | OpF::Poll | OpF::Txn))
        .count();
    let keyed_only = keyed
        .log
        .keys()
        .filter(|k| !analysis.orders.contains_key(*k))
        .count();
    Report::new(ops, analysis.orders.len() + keyed_only, found)
}

/// Read a JSON-lines history file and analyze it.
pub fn check_file(path: impl AsRef<Path>) -> Result<Report, HistoryError> {
    let file = File::open(path)?;
    let history = read_history(BufReader::new(file))?;
    Ok(analyze(&history))
}

#[cfg(test)]
mod tests;
