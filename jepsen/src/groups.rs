//! Consumer-group checkers: what a group's committed offsets promise.
//!
//! A group history adds two operations to the queue workload's (see
//! [`crate::history`]): `commit`, an OffsetCommit a member sent with the
//! offsets it committed (the next offset to read), and `committed`, a read
//! of the group's committed offsets (OffsetFetch) by an observer. Members
//! are the processes that `subscribe`; each subscribe starts a fresh member
//! incarnation (a new member, or one whose positions a rebalance reset to
//! the committed offsets).
//!
//! The anomalies, in the terms Kafka users think in:
//! - `nonmonotonic-commit`: the committed offset of a partition went back
//!   between two reads of it (the second begun after the first ended).
//!   Committed offsets of an at-least-once group only grow: every commit is
//!   of records a member polled from the committed offset on, and zombie
//!   members are fenced by the generation.
//! - `lost-commit`: an acknowledged commit was later read lower (or not at
//!   all), with no later commit of that lower offset to explain it: the
//!   coordinator forgot it (a failover loaded an older state).
//! - `unprocessed-commit`: a commit of an offset although some record below
//!   it was never polled by any member of the group before the commit
//!   began: the at-least-once contract (commit only what was processed)
//!   broken, by a client committing positions it never returned, say.
//! - `group-poll-skip`: a member's first poll of a partition after it
//!   subscribed started above every offset the group could have committed
//!   by then: the records between were skipped by the group (a rebalance or
//!   a crash handed the partition over past its committed offset).
//!
//! Indeterminacy: a `fail` commit certainly did not happen; an `info` one,
//! or one never completed, may have. Real-time order uses history indices:
//! an op "ended before" another began when its completion's index is lower
//! than the other's invoke index.

use std::collections::{BTreeMap, BTreeSet};

use crate::anomaly::Anomaly;
use crate::history::{Key, Op, OpF, OpType, OpValue, Process};

/// Index standing for "never completed".
const NEVER: u64 = u64::MAX;

/// One operation from invoke to completion.
#[derive(Clone, Debug)]
struct Span {
    invoke: u64,
    /// Index of the completion; [`NEVER`] when it never completed.
    end: u64,
    kind: OpType,
    op: Op,
}

/// Pair every invoke with its process's next completion (an invoke with
/// none becomes info with end [`NEVER`]); a completion with no invoke spans
/// only itself. A completion with an empty value takes its invoke's.
fn spans(history: &[Op]) -> Vec<Span> {
    let mut pending: BTreeMap<Process, Op> = BTreeMap::new();
    let mut out = Vec::new();
    let never = |op: Op| Span {
        invoke: op.index,
        end: NEVER,
        kind: OpType::Info,
        op,
    };
    for op in history {
        if op.kind == OpType::Invoke {
            if let Some(prev) = pending.insert(op.process.clone(), op.clone()) {
                out.push(never(prev));
            }
            continue;
        }
        let mut done = op.clone();
        let invoke = match pending.remove(&op.process) {
            Some(inv) => {
                let empty = match &done.value {
                    OpValue::Mops(m) => m.is_empty(),
                    OpValue::Keys(k) => k.is_empty(),
                    OpValue::Offsets(o) => o.is_empty(),
                    OpValue::Nil => true,
                };
                if empty {
                    done.value = inv.value.clone();
                }
                inv.index
            }
            None => op.index,
        };
        out.push(Span {
            invoke,
            end: op.index,
            kind: op.kind,
            op: done,
        });
    }
    out.extend(pending.into_values().map(never));
    out.sort_by_key(|s| (s.invoke, s.end));
    out
}

/// Run every group checker over a history.
pub fn check(history: &[Op]) -> Vec<Anomaly> {
    let spans = spans(history);
    let mut out = Vec::new();
    if !spans
        .iter()
        .any(|s| matches!(s.op.f, OpF::Commit | OpF::Committed))
    {
        // Not a group history: nothing to check (and no cost).
        return out;
    }
    let logs = known_logs(&spans);
    nonmonotonic_commits(&spans, &mut out);
    lost_commits(&spans, &mut out);
    unprocessed_commits(&spans, &logs, &mut out);
    group_poll_skips(&spans, &logs, &mut out);
    out
}

/// Per key, every offset known to hold a record (from any ok poll, and any
/// ok send whose offset is known) -> its value.
fn known_logs(spans: &[Span]) -> BTreeMap<Key, BTreeMap<i64, i64>> {
    let mut logs: BTreeMap<Key, BTreeMap<i64, i64>> = BTreeMap::new();
    for s in spans {
        if s.kind != OpType::Ok {
            continue;
        }
        for (k, reads) in s.op.reads() {
            for (o, v) in reads {
                logs.entry(k.clone()).or_default().entry(o).or_insert(v);
            }
        }
        for (k, writes) in s.op.writes() {
            for (o, v) in writes {
                if let Some(o) = o {
                    logs.entry(k.clone()).or_default().entry(o).or_insert(v);
                }
            }
        }
    }
    logs
}

/// Values of `key` at offsets in `[from, to)` (from = None: from the start).
fn records_between(
    logs: &BTreeMap<Key, BTreeMap<i64, i64>>,
    key: &Key,
    from: Option<i64>,
    to: i64,
) -> Vec<i64> {
    let Some(log) = logs.get(key) else {
        return Vec::new();
    };
    let from = from.unwrap_or(i64::MIN);
    if from >= to {
        return Vec::new();
    }
    log.range(from..to).map(|(_, v)| *v).collect()
}

/// Ok reads of the committed offsets, by invoke order.
fn committed_reads(spans: &[Span]) -> Vec<&Span> {
    spans
        .iter()
        .filter(|s| s.op.f == OpF::Committed && s.kind == OpType::Ok)
        .collect()
}

/// The committed offset of `key` a read saw; -1 (Kafka's "none") when the
/// group had none.
fn read_of(s: &Span, key: &Key) -> i64 {
    s.op.offsets().get(key).copied().unwrap_or(-1)
}

fn nonmonotonic_commits(spans: &[Span], out: &mut Vec<Anomaly>) {
    let reads = committed_reads(spans);
    let keys: BTreeSet<&Key> = reads.iter().flat_map(|r| r.op.offsets().keys()).collect();
    for key in keys {
        for (i, later) in reads.iter().enumerate() {
            // The highest value of the reads that ended before this began.
            let earlier = reads[..i]
                .iter()
                .filter(|r| r.end < later.invoke)
                .max_by_key(|r| (read_of(r, key), std::cmp::Reverse(r.end)));
            let Some(earlier) = earlier else {
                continue;
            };
            let (o1, o2) = (read_of(earlier, key), read_of(later, key));
            if o2 < o1 {
                out.push(Anomaly::NonmonotonicCommit {
                    key: key.clone(),
                    offsets: [o1, o2],
                    ops: [earlier.end, later.end],
                });
            }
        }
    }
}

fn lost_commits(spans: &[Span], out: &mut Vec<Anomaly>) {
    let reads = committed_reads(spans);
    let commits: Vec<&Span> = spans.iter().filter(|s| s.op.f == OpF::Commit).collect();
    for c in commits.iter().filter(|c| c.kind == OpType::Ok) {
        for (key, &offset) in c.op.offsets() {
            // The first read begun after the ack that shows less.
            let lost = reads.iter().find(|r| {
                if r.invoke <= c.end {
                    return false;
                }
                let seen = read_of(r, key);
                if seen >= offset {
                    return false;
                }
                // A commit of exactly what the read shows, begun after this
                // one began, may have legitimately replaced it.
                let explained = commits.iter().any(|d| {
                    d.kind != OpType::Fail
                        && d.invoke > c.invoke
                        && d.invoke < r.end
                        && d.op.offsets().get(key) == Some(&seen)
                });
                !explained
            });
            if let Some(r) = lost {
                let seen = read_of(r, key);
                out.push(Anomaly::LostCommit {
                    key: key.clone(),
                    offset,
                    read_offset: (seen >= 0).then_some(seen),
                    commit: c.end,
                    read: r.end,
                });
            }
        }
    }
}

/// Processes that subscribed: the group's members.
fn members(spans: &[Span]) -> BTreeSet<Process> {
    spans
        .iter()
        .filter(|s| s.op.f == OpF::Subscribe && s.kind != OpType::Fail)
        .map(|s| s.op.process.clone())
        .collect()
}

fn unprocessed_commits(
    spans: &[Span],
    logs: &BTreeMap<Key, BTreeMap<i64, i64>>,
    out: &mut Vec<Anomaly>,
) {
    let members = members(spans);
    // (end of an ok member poll, key, highest offset it returned), by end.
    let mut polled: Vec<(u64, Key, i64)> = Vec::new();
    for s in spans {
        if s.kind == OpType::Ok
            && matches!(s.op.f, OpF::Poll | OpF::Txn)
            && members.contains(&s.op.process)
        {
            for (k, reads) in s.op.reads() {
                let max = reads.iter().map(|(o, _)| *o).max().expect("non-empty");
                polled.push((s.end, k, max));
            }
        }
    }
    polled.sort();
    for c in spans.iter().filter(|s| s.op.f == OpF::Commit) {
        if c.kind == OpType::Fail {
            continue;
        }
        for (key, &offset) in c.op.offsets() {
            let polled_max = polled
                .iter()
                .take_while(|(end, _, _)| *end < c.invoke)
                .filter(|(_, k, _)| k == key)
                .map(|(_, _, o)| *o)
                .max();
            // Records from just past what was polled up to the commit.
            let unpolled = records_between(logs, key, polled_max.map(|m| m + 1), offset);
            if !unpolled.is_empty() {
                out.push(Anomaly::UnprocessedCommit {
                    key: key.clone(),
                    offset,
                    polled_max,
                    op: if c.end == NEVER { c.invoke } else { c.end },
                });
            }
        }
    }
}

fn group_poll_skips(
    spans: &[Span],
    logs: &BTreeMap<Key, BTreeMap<i64, i64>>,
    out: &mut Vec<Anomaly>,
) {
    // Every commit that may have happened: (invoke, key, offset).
    let commits: Vec<(u64, &Key, i64)> = spans
        .iter()
        .filter(|s| s.op.f == OpF::Commit && s.kind != OpType::Fail)
        .flat_map(|s| s.op.offsets().iter().map(move |(k, o)| (s.invoke, k, *o)))
        .collect();
    // Per process: the subscribe that began its incarnation, and the keys
    // it has polled since.
    let mut current: BTreeMap<Process, (u64, BTreeSet<Key>)> = BTreeMap::new();
    let mut by_end: Vec<&Span> = spans.iter().filter(|s| s.end != NEVER).collect();
    by_end.sort_by_key(|s| s.end);
    for s in by_end {
        match s.op.f {
            OpF::Subscribe if s.kind == OpType::Ok => {
                current.insert(s.op.process.clone(), (s.end, BTreeSet::new()));
            }
            OpF::Assign | OpF::Crash => {
                current.remove(&s.op.process);
            }
            OpF::Poll | OpF::Txn if s.kind == OpType::Ok => {
                let Some((subscribed, seen)) = current.get_mut(&s.op.process) else {
                    continue;
                };
                for (key, reads) in s.op.reads() {
                    if !seen.insert(key.clone()) {
                        continue;
                    }
                    let first = reads[0].0;
                    let committed_max = commits
                        .iter()
                        .filter(|(invoke, k, _)| *invoke < s.end && *k == &key)
                        .map(|(_, _, o)| *o)
                        .max();
                    let skipped = records_between(logs, &key, committed_max, first);
                    if !skipped.is_empty() {
                        out.push(Anomaly::GroupPollSkip {
                            key,
                            committed_max,
                            offset: first,
                            skipped,
                            ops: [*subscribed, s.end],
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{analyze, parse_history, AnomalyKind, Report};

    /// Lines `"<process> <type> <f> <value json>"`; index and time are the
    /// line's position.
    fn h(lines: &[&str]) -> Vec<Op> {
        let text: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut parts = line.splitn(4, ' ');
                let process = parts.next().unwrap();
                let kind = parts.next().unwrap();
                let f = parts.next().unwrap();
                let value = parts.next().unwrap_or("null");
                format!(
                    r#"{{"index":{i},"process":{process},"type":"{kind}","f":"{f}","value":{value},"time":{i}}}"#
                )
            })
            .collect();
        parse_history(&text.join("\n")).unwrap()
    }

    fn check_lines(lines: &[&str]) -> Report {
        analyze(&h(lines))
    }

    fn kinds(r: &Report) -> Vec<&'static str> {
        r.names()
    }

    /// Two producers' records on key 0 (offsets 0..4, values 10..14), read
    /// by member 5 which commits, crashes, and member 6 that resumes at the
    /// committed offset; a probe ("probe") reads the committed offsets.
    fn clean() -> Vec<&'static str> {
        vec![
            r#"1 invoke send [["send",0,10]]"#,
            r#"1 ok send [["send",0,[0,10]]]"#,
            r#"1 invoke send [["send",0,11]]"#,
            r#"1 ok send [["send",0,[1,11]]]"#,
            r#"1 invoke send [["send",0,12]]"#,
            r#"1 ok send [["send",0,[2,12]]]"#,
            r#"1 invoke send [["send",0,13]]"#,
            r#"1 ok send [["send",0,[3,13]]]"#,
            r#"5 invoke subscribe [0]"#,
            r#"5 ok subscribe [0]"#,
            r#"5 invoke poll [["poll"]]"#,
            r#"5 ok poll [["poll",{"0":[[0,10],[1,11]]}]]"#,
            r#"5 invoke commit {"0":2}"#,
            r#"5 ok commit {"0":2}"#,
            r#""probe" invoke committed null"#,
            r#""probe" ok committed {"0":2}"#,
            // Member 5 reads on but crashes before committing.
            r#"5 invoke poll [["poll"]]"#,
            r#"5 ok poll [["poll",{"0":[[2,12]]}]]"#,
            r#"5 invoke commit {"0":3}"#,
            r#"6 invoke subscribe [0]"#,
            r#"6 ok subscribe [0]"#,
            // Member 6 resumes at 2 (the crashed commit never landed) or 3.
            r#"6 invoke poll [["poll"]]"#,
            r#"6 ok poll [["poll",{"0":[[2,12],[3,13]]}]]"#,
            r#"6 invoke commit {"0":4}"#,
            r#"6 ok commit {"0":4}"#,
            r#""probe" invoke committed null"#,
            r#""probe" ok committed {"0":4}"#,
            r#"7 invoke assign [0]"#,
            r#"7 ok assign [0]"#,
            r#"7 invoke poll [["poll"]]"#,
            r#"7 ok poll [["poll",{"0":[[0,10],[1,11],[2,12],[3,13]]}]]"#,
        ]
    }

    #[test]
    fn a_correct_group_history_passes() {
        let r = check_lines(&clean());
        assert!(r.valid, "{}", r.to_json());
    }

    #[test]
    fn commit_and_committed_round_trip() {
        let ops = h(&clean());
        let mut buf = Vec::new();
        crate::write_history(&mut buf, &ops).unwrap();
        let back = crate::read_history(&buf[..]).unwrap();
        assert_eq!(ops, back);
        assert_eq!(back[13].offsets()[&Key::Int(0)], 2);
        assert!(back[14].offsets().is_empty());
    }

    #[test]
    fn committed_offset_going_back_is_nonmonotonic_commit() {
        let mut lines = clean();
        // A third probe read after everything shows 2 again.
        lines.push(r#""probe" invoke committed null"#);
        lines.push(r#""probe" ok committed {"0":2}"#);
        let r = check_lines(&lines);
        // It also loses the acknowledged commit of 4.
        assert_eq!(
            kinds(&r),
            vec!["lost-commit", "nonmonotonic-commit"],
            "{}",
            r.to_json()
        );
        let a = &r.of(AnomalyKind::NonmonotonicCommit)[0];
        assert_eq!(
            *a,
            Anomaly::NonmonotonicCommit {
                key: Key::Int(0),
                offsets: [4, 2],
                ops: [26, 32],
            }
        );
        let a = &r.of(AnomalyKind::LostCommit)[0];
        assert!(matches!(
            a,
            Anomaly::LostCommit {
                offset: 4,
                read_offset: Some(2),
                commit: 24,
                read: 32,
                ..
            }
        ));
    }

    #[test]
    fn an_acknowledged_commit_read_lower_is_lost_commit() {
        let mut lines = clean();
        // The probe's second read shows 2 although 6's commit of 4 was
        // acknowledged before it began.
        lines[26] = r#""probe" ok committed {"0":2}"#;
        let r = check_lines(&lines);
        assert_eq!(kinds(&r), vec!["lost-commit"], "{}", r.to_json());
        // Forgotten altogether: also lost.
        lines[26] = r#""probe" ok committed {}"#;
        let r = check_lines(&lines);
        assert_eq!(
            kinds(&r),
            vec!["lost-commit", "nonmonotonic-commit"],
            "{}",
            r.to_json()
        );
    }

    #[test]
    fn a_later_lower_commit_explains_a_lower_read() {
        let mut lines = clean();
        // Member 6 commits 3 after its commit of 4 (a client bug, but not
        // a lost commit): the probe reads 3.
        lines.insert(25, r#"6 invoke commit {"0":3}"#);
        lines.insert(26, r#"6 ok commit {"0":3}"#);
        lines[28] = r#""probe" ok committed {"0":3}"#;
        let r = check_lines(&lines);
        assert!(r.valid, "{}", r.to_json());
    }

    #[test]
    fn committing_records_nobody_polled_is_unprocessed_commit() {
        let mut lines = clean();
        // Member 5 commits 3 after polling only up to offset 1.
        lines[12] = r#"5 invoke commit {"0":3}"#;
        lines[13] = r#"5 ok commit {"0":3}"#;
        lines[15] = r#""probe" ok committed {"0":3}"#;
        let r = check_lines(&lines);
        assert_eq!(kinds(&r), vec!["unprocessed-commit"], "{}", r.to_json());
        assert_eq!(
            r.of(AnomalyKind::UnprocessedCommit)[0],
            Anomaly::UnprocessedCommit {
                key: Key::Int(0),
                offset: 3,
                polled_max: Some(1),
                op: 13,
            }
        );
        // A failed commit did not happen: no anomaly from it.
        lines[13] = r#"5 fail commit {"0":3}"#;
        lines[15] = r#""probe" ok committed {}"#;
        let r = check_lines(&lines);
        assert!(
            !kinds(&r).contains(&"unprocessed-commit"),
            "{}",
            r.to_json()
        );
    }

    #[test]
    fn a_new_member_starting_past_the_committed_offset_is_group_poll_skip() {
        let mut lines = clean();
        // Member 6 starts at 3 although at most 3 may have been committed
        // (5's info commit): fine. Make 5's last commit fail: then at most
        // 2 was committed and 6 skipped offset 2 (value 12).
        lines.insert(19, r#"5 fail commit {"0":3}"#);
        lines[23] = r#"6 ok poll [["poll",{"0":[[3,13]]}]]"#;
        let r = check_lines(&lines);
        assert_eq!(kinds(&r), vec!["group-poll-skip"], "{}", r.to_json());
        assert_eq!(
            r.of(AnomalyKind::GroupPollSkip)[0],
            Anomaly::GroupPollSkip {
                key: Key::Int(0),
                committed_max: Some(2),
                offset: 3,
                skipped: vec![12],
                ops: [21, 23],
            }
        );
        // With the crashed commit indeterminate, starting at 3 is allowed.
        let mut lines = clean();
        lines[22] = r#"6 ok poll [["poll",{"0":[[3,13]]}]]"#;
        let r = check_lines(&lines);
        assert!(r.valid, "{}", r.to_json());
    }

    #[test]
    fn a_member_with_nothing_committed_starts_at_the_log_start() {
        let lines = vec![
            r#"1 invoke send [["send",0,10]]"#,
            r#"1 ok send [["send",0,[0,10]]]"#,
            r#"1 invoke send [["send",0,11]]"#,
            r#"1 ok send [["send",0,[1,11]]]"#,
            r#"5 invoke subscribe [0]"#,
            r#"5 ok subscribe [0]"#,
            r#"5 invoke poll [["poll"]]"#,
            r#"5 ok poll [["poll",{"0":[[1,11]]}]]"#,
            r#""probe" invoke committed null"#,
            r#""probe" ok committed {}"#,
            r#"7 invoke assign [0]"#,
            r#"7 ok assign [0]"#,
            r#"7 invoke poll [["poll"]]"#,
            r#"7 ok poll [["poll",{"0":[[0,10],[1,11]]}]]"#,
        ];
        let r = check_lines(&lines);
        assert_eq!(kinds(&r), vec!["group-poll-skip"], "{}", r.to_json());
    }
}
