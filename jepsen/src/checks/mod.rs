//! The checkers, one family per file. Each reads the shared [`Analysis`] and
//! appends the anomalies it finds; none depends on another's output.

mod aborted;
mod cycles;
mod internal;
mod lost;
mod offsets;
mod process_order;

use crate::analysis::Analysis;
use crate::anomaly::Anomaly;

/// Run every checker over one analysis.
pub fn run_all(a: &Analysis) -> Vec<Anomaly> {
    let mut out = Vec::new();
    offsets::inconsistent_offsets(a, &mut out);
    offsets::duplicates(a, &mut out);
    lost::lost_writes(a, &mut out);
    lost::unseen(a, &mut out);
    aborted::aborted_reads(a, &mut out);
    aborted::precommitted_reads(a, &mut out);
    process_order::polls(a, &mut out);
    process_order::sends(a, &mut out);
    internal::polls(a, &mut out);
    internal::sends(a, &mut out);
    cycles::cycles(a, &mut out);
    out
}
