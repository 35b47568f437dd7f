//! What the checkers report: anomalies named as in Jepsen's Kafka workload,
//! each with the records (key, values, offsets) and operation indices
//! involved, gathered into a deterministic [`Report`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::history::Key;

/// The kinds of anomaly, in the order of their names (bytewise, as Jepsen
/// sorts them), so a `BTreeMap<AnomalyKind, _>` lists them by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AnomalyKind {
    #[serde(rename = "G0")]
    G0,
    #[serde(rename = "G1a")]
    G1a,
    #[serde(rename = "G1c")]
    G1c,
    #[serde(rename = "duplicate")]
    Duplicate,
    #[serde(rename = "foreign-read")]
    ForeignRead,
    #[serde(rename = "group-poll-skip")]
    GroupPollSkip,
    #[serde(rename = "inconsistent-offsets")]
    InconsistentOffsets,
    #[serde(rename = "int-nonmonotonic-poll")]
    IntNonmonotonicPoll,
    #[serde(rename = "int-nonmonotonic-send")]
    IntNonmonotonicSend,
    #[serde(rename = "int-poll-skip")]
    IntPollSkip,
    #[serde(rename = "int-send-skip")]
    IntSendSkip,
    #[serde(rename = "log-start-regression")]
    LogStartRegression,
    #[serde(rename = "lost-latest")]
    LostLatest,
    #[serde(rename = "lost-retained")]
    LostRetained,
    #[serde(rename = "lost-commit")]
    LostCommit,
    #[serde(rename = "lost-write")]
    LostWrite,
    #[serde(rename = "nonmonotonic-commit")]
    NonmonotonicCommit,
    #[serde(rename = "nonmonotonic-poll")]
    NonmonotonicPoll,
    #[serde(rename = "nonmonotonic-send")]
    NonmonotonicSend,
    #[serde(rename = "poll-skip")]
    PollSkip,
    #[serde(rename = "precommitted-read")]
    PrecommittedRead,
    #[serde(rename = "stale-value")]
    StaleValue,
    #[serde(rename = "unprocessed-commit")]
    UnprocessedCommit,
    #[serde(rename = "unseen")]
    Unseen,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 24] = [
        AnomalyKind::G0,
        AnomalyKind::G1a,
        AnomalyKind::G1c,
        AnomalyKind::Duplicate,
        AnomalyKind::ForeignRead,
        AnomalyKind::GroupPollSkip,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::IntNonmonotonicPoll,
        AnomalyKind::IntNonmonotonicSend,
        AnomalyKind::IntPollSkip,
        AnomalyKind::IntSendSkip,
        AnomalyKind::LogStartRegression,
        AnomalyKind::LostCommit,
        AnomalyKind::LostLatest,
        AnomalyKind::LostRetained,
        AnomalyKind::LostWrite,
        AnomalyKind::NonmonotonicCommit,
        AnomalyKind::NonmonotonicPoll,
        AnomalyKind::NonmonotonicSend,
        AnomalyKind::PollSkip,
        AnomalyKind::PrecommittedRead,
        AnomalyKind::StaleValue,
        AnomalyKind::UnprocessedCommit,
        AnomalyKind::Unseen,
    ];

    /// The Jepsen name, e.g. `lost-write`.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::ForeignRead => "foreign-read",
            AnomalyKind::GroupPollSkip => "group-poll-skip",
            AnomalyKind::InconsistentOffsets => "inconsistent-offsets",
            AnomalyKind::IntNonmonotonicPoll => "int-nonmonotonic-poll",
            AnomalyKind::IntNonmonotonicSend => "int-nonmonotonic-send",
            AnomalyKind::IntPollSkip => "int-poll-skip",
            AnomalyKind::IntSendSkip => "int-send-skip",
            AnomalyKind::LogStartRegression => "log-start-regression",
            AnomalyKind::LostLatest => "lost-latest",
            AnomalyKind::LostRetained => "lost-retained",
            AnomalyKind::LostCommit => "lost-commit",
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::NonmonotonicCommit => "nonmonotonic-commit",
            AnomalyKind::NonmonotonicPoll => "nonmonotonic-poll",
            AnomalyKind::NonmonotonicSend => "nonmonotonic-send",
            AnomalyKind::PollSkip => "poll-skip",
            AnomalyKind::PrecommittedRead => "precommitted-read",
            AnomalyKind::StaleValue => "stale-value",
            AnomalyKind::UnprocessedCommit => "unprocessed-commit",
            AnomalyKind::Unseen => "unseen",
        }
    }

    /// The kind with this Jepsen name.
    pub fn from_name(name: &str) -> Option<AnomalyKind> {
        AnomalyKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One anomaly with the records involved. Operation numbers are the `index`
/// fields of completion operations in the history. `delta` is the distance
/// in the key's version order (dense offsets) from the first value to the
/// second: 1 is adjacent, more skips, 0 or less goes backwards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "anomaly")]
pub enum Anomaly {
    /// A cycle of ww edges only between operations that took effect.
    #[serde(rename = "G0")]
    G0 { key: Key, cycle: Vec<CycleStep> },
    /// A cycle of ww and wr edges with at least one wr.
    #[serde(rename = "G1c")]
    G1c { key: Key, cycle: Vec<CycleStep> },
    /// A value written by a failed send or txn was observed by `reader`.
    #[serde(rename = "G1a")]
    G1a {
        key: Key,
        value: i64,
        offset: i64,
        writer: u64,
        reader: u64,
    },
    /// One value at two or more offsets of a key.
    #[serde(rename = "duplicate")]
    Duplicate {
        key: Key,
        value: i64,
        offsets: Vec<i64>,
    },
    /// Consumer groups: a member's first poll of `key` after it subscribed
    /// (a new member, or one after a rebalance) started at `offset`, above
    /// any offset the group can have committed by then (`committed_max`,
    /// the highest commit invoked before that poll ended; None: nothing
    /// committed, so the member had to start at the log's start): the
    /// records `skipped` were never processed by the group. `ops` =
    /// [subscribe, poll].
    #[serde(rename = "group-poll-skip")]
    GroupPollSkip {
        key: Key,
        committed_max: Option<i64>,
        offset: i64,
        skipped: Vec<i64>,
        ops: [u64; 2],
    },
    /// One offset of a key observed holding two or more values.
    #[serde(rename = "inconsistent-offsets")]
    InconsistentOffsets {
        key: Key,
        offset: i64,
        values: Vec<i64>,
    },
    /// Within one op, successive reads of a key went backwards or repeated.
    #[serde(rename = "int-nonmonotonic-poll")]
    IntNonmonotonicPoll {
        key: Key,
        values: [i64; 2],
        offsets: [i64; 2],
        delta: i64,
        op: u64,
    },
    /// Within one op, successive sends to a key landed out of order.
    #[serde(rename = "int-nonmonotonic-send")]
    IntNonmonotonicSend {
        key: Key,
        values: [i64; 2],
        offsets: [Option<i64>; 2],
        delta: i64,
        op: u64,
    },
    /// Within one op, successive reads of a key skipped `skipped`.
    #[serde(rename = "int-poll-skip")]
    IntPollSkip {
        key: Key,
        values: [i64; 2],
        offsets: [i64; 2],
        delta: i64,
        skipped: Vec<i64>,
        op: u64,
    },
    /// Within one op, successive sends to a key have `skipped` between them.
    #[serde(rename = "int-send-skip")]
    IntSendSkip {
        key: Key,
        values: [i64; 2],
        offsets: [Option<i64>; 2],
        delta: i64,
        skipped: Vec<i64>,
        op: u64,
    },
    /// Consumer groups: an OffsetCommit of `offset` for `key` was
    /// acknowledged (`commit`), and a later read of the committed offsets
    /// (`read`, invoked after the ack) shows `read_offset` below it (None:
    /// no committed offset at all), with no commit of that lower offset
    /// begun after the acknowledged one.
    #[serde(rename = "lost-commit")]
    LostCommit {
        key: Key,
        offset: i64,
        read_offset: Option<i64>,
        commit: u64,
        read: u64,
    },
    /// A committed write never polled although polls read past it: the
    /// `max_read_value` (first seen at `max_read_offset`, by `max_reader`)
    /// follows it in the version order.
    #[serde(rename = "lost-write")]
    LostWrite {
        key: Key,
        value: i64,
        offset: i64,
        writer: u64,
        max_read_value: i64,
        max_read_offset: i64,
        max_reader: Option<u64>,
    },
    /// Consumer groups: the group's committed offset of `key` went back
    /// between two reads of it, the second begun after the first ended
    /// (`ops` = [earlier read, later read]).
    #[serde(rename = "nonmonotonic-commit")]
    NonmonotonicCommit {
        key: Key,
        offsets: [i64; 2],
        ops: [u64; 2],
    },
    /// A process's poll of a key started at or before where its previous
    /// poll of that key ended (`ops` = [previous, this]).
    #[serde(rename = "nonmonotonic-poll")]
    NonmonotonicPoll {
        key: Key,
        values: [i64; 2],
        offsets: [i64; 2],
        delta: i64,
        ops: [u64; 2],
    },
    /// A process's send to a key landed at or before its previous send.
    #[serde(rename = "nonmonotonic-send")]
    NonmonotonicSend {
        key: Key,
        values: [i64; 2],
        offsets: [Option<i64>; 2],
        delta: i64,
        ops: [u64; 2],
    },
    /// A process's successive polls of a key skipped `skipped`.
    #[serde(rename = "poll-skip")]
    PollSkip {
        key: Key,
        values: [i64; 2],
        offsets: [i64; 2],
        delta: i64,
        skipped: Vec<i64>,
        ops: [u64; 2],
    },
    /// A txn observed a value it sent itself before committing.
    #[serde(rename = "precommitted-read")]
    PrecommittedRead { key: Key, value: i64, op: u64 },
    /// Keyed workload: `reader` read, under `record_key` of partition `key`,
    /// a value nobody wrote there: `sent_as` is the (partition, record key)
    /// it was written to, or None when no send wrote it at all.
    #[serde(rename = "foreign-read")]
    ForeignRead {
        key: Key,
        record_key: Key,
        value: i64,
        offset: i64,
        reader: u64,
        sent_as: Option<(Key, Key)>,
    },
    /// Keyed workload: a ListOffsets probe (`ops[1]`) that began after
    /// another (`ops[0]`) had ended saw an earlier log start offset
    /// (`starts` = [earlier probe's, later probe's]).
    #[serde(rename = "log-start-regression")]
    LogStartRegression {
        key: Key,
        starts: [i64; 2],
        ops: [u64; 2],
    },
    /// Keyed workload, compacted topic: the latest committed value of a
    /// record key (at `offset`, sent by `writer`) is missing from the final
    /// read, and the final read holds no later value of that key to
    /// supersede it (`final_latest` is the key's last record there, as
    /// `(offset, value)`, if any).
    #[serde(rename = "lost-latest")]
    LostLatest {
        key: Key,
        record_key: Key,
        value: i64,
        offset: i64,
        writer: u64,
        final_latest: Option<(i64, i64)>,
    },
    /// Keyed workload, topic without compaction: a committed record at or
    /// above the final log start offset (`log_start`) is missing from the
    /// final read.
    #[serde(rename = "lost-retained")]
    LostRetained {
        key: Key,
        record_key: Key,
        value: i64,
        offset: i64,
        writer: u64,
        log_start: i64,
    },
    /// Keyed workload: a record key's values are out of send order in the
    /// log: `values[1]`, whose send ended (`writers[1]`) before the send of
    /// `values[0]` began, sits at a higher offset (`offsets` in the same
    /// order). What serving a half-cleaned segment, or resurrecting a
    /// cleaned-away value, looks like: an older value after a newer one.
    #[serde(rename = "stale-value")]
    StaleValue {
        key: Key,
        record_key: Key,
        values: [i64; 2],
        offsets: [i64; 2],
        writers: [u64; 2],
    },
    /// Consumer groups, the at-least-once violation: a commit (ok or info)
    /// of `offset` for `key` although no member of the group had polled
    /// the record before it (`polled_max`: the highest offset of `key` any
    /// group member had polled when the commit began; None: none).
    #[serde(rename = "unprocessed-commit")]
    UnprocessedCommit {
        key: Key,
        offset: i64,
        polled_max: Option<i64>,
        op: u64,
    },
    /// Acknowledged sends to `key` that no poll ever observed.
    #[serde(rename = "unseen")]
    Unseen {
        key: Key,
        values: Vec<i64>,
        writers: Vec<u64>,
    },
}

/// One edge of a dependency cycle: operation `op` (its history index)
/// precedes the next step's operation (the first's, after the last) by
/// `rel` (`ww` or `wr`) on partition `key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CycleStep {
    pub op: u64,
    pub rel: String,
    pub key: Key,
}

impl Anomaly {
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::G0 { .. } => AnomalyKind::G0,
            Anomaly::G1c { .. } => AnomalyKind::G1c,
            Anomaly::G1a { .. } => AnomalyKind::G1a,
            Anomaly::Duplicate { .. } => AnomalyKind::Duplicate,
            Anomaly::GroupPollSkip { .. } => AnomalyKind::GroupPollSkip,
            Anomaly::InconsistentOffsets { .. } => AnomalyKind::InconsistentOffsets,
            Anomaly::IntNonmonotonicPoll { .. } => AnomalyKind::IntNonmonotonicPoll,
            Anomaly::IntNonmonotonicSend { .. } => AnomalyKind::IntNonmonotonicSend,
            Anomaly::IntPollSkip { .. } => AnomalyKind::IntPollSkip,
            Anomaly::IntSendSkip { .. } => AnomalyKind::IntSendSkip,
            Anomaly::LostCommit { .. } => AnomalyKind::LostCommit,
            Anomaly::LostWrite { .. } => AnomalyKind::LostWrite,
            Anomaly::NonmonotonicCommit { .. } => AnomalyKind::NonmonotonicCommit,
            Anomaly::NonmonotonicPoll { .. } => AnomalyKind::NonmonotonicPoll,
            Anomaly::NonmonotonicSend { .. } => AnomalyKind::NonmonotonicSend,
            Anomaly::PollSkip { .. } => AnomalyKind::PollSkip,
            Anomaly::PrecommittedRead { .. } => AnomalyKind::PrecommittedRead,
            Anomaly::ForeignRead { .. } => AnomalyKind::ForeignRead,
            Anomaly::LogStartRegression { .. } => AnomalyKind::LogStartRegression,
            Anomaly::LostLatest { .. } => AnomalyKind::LostLatest,
            Anomaly::LostRetained { .. } => AnomalyKind::LostRetained,
            Anomaly::StaleValue { .. } => AnomalyKind::StaleValue,
            Anomaly::UnprocessedCommit { .. } => AnomalyKind::UnprocessedCommit,
            Anomaly::Unseen { .. } => AnomalyKind::Unseen,
        }
    }

    /// The key (partition) the anomaly is about.
    pub fn key(&self) -> &Key {
        match self {
            Anomaly::G1a { key, .. }
            | Anomaly::G0 { key, .. }
            | Anomaly::G1c { key, .. }
            | Anomaly::Duplicate { key, .. }
            | Anomaly::GroupPollSkip { key, .. }
            | Anomaly::InconsistentOffsets { key, .. }
            | Anomaly::IntNonmonotonicPoll { key, .. }
            | Anomaly::IntNonmonotonicSend { key, .. }
            | Anomaly::IntPollSkip { key, .. }
            | Anomaly::IntSendSkip { key, .. }
            | Anomaly::LostCommit { key, .. }
            | Anomaly::LostWrite { key, .. }
            | Anomaly::NonmonotonicCommit { key, .. }
            | Anomaly::NonmonotonicPoll { key, .. }
            | Anomaly::NonmonotonicSend { key, .. }
            | Anomaly::PollSkip { key, .. }
            | Anomaly::PrecommittedRead { key, .. }
            | Anomaly::ForeignRead { key, .. }
            | Anomaly::LogStartRegression { key, .. }
            | Anomaly::LostLatest { key, .. }
            | Anomaly::LostRetained { key, .. }
            | Anomaly::StaleValue { key, .. }
            | Anomaly::UnprocessedCommit { key, .. }
            | Anomaly::Unseen { key, .. } => key,
        }
    }
}

/// The result of [`crate::analyze`]: every anomaly found, grouped by kind in
/// name order, each group sorted, so equal histories give equal reports.
///
/// `valid` is true only when nothing at all was found. Which kinds a test
/// *expects* (Jepsen allows `int-send-skip` always, and `poll-skip` and
/// `nonmonotonic-poll` under subscribe) is the caller's call:
/// see [`Report::valid_allowing`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub valid: bool,
    /// Completion operations analysed (send, poll and txn).
    pub ops: usize,
    /// Distinct keys observed in the version order, plus partitions only
    /// the keyed workload observed.
    pub keys: usize,
    pub anomalies: BTreeMap<AnomalyKind, Vec<Anomaly>>,
}

impl Report {
    pub(crate) fn new(ops: usize, keys: usize, mut found: Vec<Anomaly>) -> Report {
        found.sort();
        found.dedup();
        let mut anomalies: BTreeMap<AnomalyKind, Vec<Anomaly>> = BTreeMap::new();
        for a in found {
            anomalies.entry(a.kind()).or_default().push(a);
        }
        Report {
            valid: anomalies.is_empty(),
            ops,
            keys,
            anomalies,
        }
    }

    /// The kinds found, in name order.
    pub fn kinds(&self) -> Vec<AnomalyKind> {
        self.anomalies.keys().copied().collect()
    }

    /// The names of the kinds found, in name order.
    pub fn names(&self) -> Vec<&'static str> {
        self.anomalies.keys().map(|k| k.name()).collect()
    }

    /// The anomalies of one kind (empty if none).
    pub fn of(&self, kind: AnomalyKind) -> &[Anomaly] {
        self.anomalies.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Kinds found that are not in `expected`.
    pub fn unexpected(&self, expected: &[AnomalyKind]) -> Vec<AnomalyKind> {
        self.kinds()
            .into_iter()
            .filter(|k| !expected.contains(k))
            .collect()
    }

    /// Valid if every kind found is in `expected`.
    pub fn valid_allowing(&self, expected: &[AnomalyKind]) -> bool {
        self.unexpected(expected).is_empty()
    }

    /// The report as pretty JSON, for logs and failure messages.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_sort_by_name_and_names_round_trip() {
        let mut names: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
        let by_enum = names.clone();
        names.sort();
        assert_eq!(names, by_enum, "AnomalyKind's order must be name order");
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::from_name(k.name()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.name().into())
            );
        }
    }
}
