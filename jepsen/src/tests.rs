//! Hand-made histories: a clean one passes, and each anomaly is found by
//! name with the records involved.

use super::*;

/// Build a history from lines `"<process> <type> <f> <value json>"`; each
/// line is one op, `index` and `time` are its position.
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

fn check(lines: &[&str]) -> Report {
    analyze(&h(lines))
}

fn key(k: i64) -> Key {
    Key::Int(k)
}

/// Exactly these kinds were found.
fn assert_kinds(report: &Report, kinds: &[AnomalyKind]) {
    assert_eq!(report.kinds(), kinds, "{}", report.to_json());
}

#[test]
fn a_correct_history_passes() {
    let r = check(&[
        r#"0 ok assign [1, 2]"#,
        r#"1 invoke send [["send",1,[null,10]]]"#,
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 invoke send [["send",1,[null,11]],["send",2,[null,20]]]"#,
        r#"1 ok send [["send",1,[1,11]],["send",2,[0,20]]]"#,
        r#"0 invoke poll [["poll"]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]],"2":[[0,20]]}]]"#,
        r#"1 ok send [["send",1,[3,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[1,11],[3,12]],"2":[]}]]"#,
        r#"2 ok txn [["send",2,[2,21]],["poll",{"1":[[0,10]]}]]"#,
        r#"0 ok poll [["poll",{"2":[[2,21]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
    assert_eq!(r.keys, 2);
    assert_eq!(r.ops, 7);
}

#[test]
fn lost_write_when_a_later_value_was_read() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[2,12]]}]]"#,
    ]);
    // The consumer also jumped over offset 1 inside one poll.
    assert_kinds(
        &r,
        &[
            AnomalyKind::IntPollSkip,
            AnomalyKind::LostWrite,
            AnomalyKind::Unseen,
        ],
    );
    assert_eq!(
        r.of(AnomalyKind::LostWrite),
        &[Anomaly::LostWrite {
            key: key(1),
            value: 11,
            offset: 1,
            writer: 1,
            max_read_value: 12,
            max_read_offset: 2,
            max_reader: Some(3),
        }]
    );
    assert_eq!(
        r.of(AnomalyKind::Unseen),
        &[Anomaly::Unseen {
            key: key(1),
            values: vec![11],
            writers: vec![1],
        }]
    );
}

#[test]
fn lost_write_across_polls_of_different_consumers() {
    // Consumer 0 reads offset 0, consumer 2 reads offset 2: nobody read 1.
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
        r#"2 ok poll [["poll",{"1":[[2,12]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::LostWrite, AnomalyKind::Unseen]);
    match &r.of(AnomalyKind::LostWrite)[0] {
        Anomaly::LostWrite {
            value, max_reader, ..
        } => assert_eq!((*value, *max_reader), (11, Some(4))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unseen_alone_when_the_tail_was_never_polled() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::Unseen]);
    assert!(r.valid_allowing(&[AnomalyKind::Unseen]));
    assert!(!r.valid);
}

#[test]
fn an_info_send_never_seen_is_not_lost() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 invoke send [["send",1,[null,11]]]"#,
        r#"1 info send [["send",1,[null,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[2,12]]}]]"#,
    ]);
    // Offset 1 may hold the info send or nothing we know of: no anomaly.
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn an_invoke_that_never_completes_is_indeterminate() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 invoke send [["send",1,[null,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn an_info_send_that_is_seen_is_fine() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 info send [["send",1,[null,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11],[2,12]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn an_info_txn_seen_in_part_must_have_happened_whole() {
    // One of the info txn's sends was read, so its other send happened too,
    // and a poll read past it.
    let r = check(&[
        r#"1 info txn [["send",1,[0,10]],["send",2,[0,20]]]"#,
        r#"1 ok send [["send",2,[1,21]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]],"2":[[1,21]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::LostWrite]);
    match &r.of(AnomalyKind::LostWrite)[0] {
        Anomaly::LostWrite {
            key: k,
            value,
            writer,
            ..
        } => assert_eq!((k, *value, *writer), (&key(2), 20, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11],[2,10]]}]]"#,
    ]);
    // Positions come from offsets where known, so the duplicate does not
    // also show up as a poll or send going backwards.
    assert_kinds(&r, &[AnomalyKind::Duplicate]);
    assert_eq!(
        r.of(AnomalyKind::Duplicate),
        &[Anomaly::Duplicate {
            key: key(1),
            value: 10,
            offsets: vec![0, 2],
        }]
    );
}

#[test]
fn inconsistent_offsets() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"2 ok send [["send",1,[0,20]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
        r#"3 ok poll [["poll",{"1":[[0,20]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::InconsistentOffsets]);
    assert_eq!(
        r.of(AnomalyKind::InconsistentOffsets),
        &[Anomaly::InconsistentOffsets {
            key: key(1),
            offset: 0,
            values: vec![10, 20],
        }]
    );
}

#[test]
fn nonmonotonic_poll() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11]]}]]"#,
        r#"0 ok poll [["poll",{"1":[[1,11]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::NonmonotonicPoll]);
    assert_eq!(
        r.of(AnomalyKind::NonmonotonicPoll),
        &[Anomaly::NonmonotonicPoll {
            key: key(1),
            values: [11, 11],
            offsets: [1, 1],
            delta: 0,
            ops: [2, 3],
        }]
    );
}

#[test]
fn poll_skip() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
        r#"2 ok poll [["poll",{"1":[[1,11]]}]]"#,
        r#"0 ok poll [["poll",{"1":[[2,12]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::PollSkip]);
    assert_eq!(
        r.of(AnomalyKind::PollSkip),
        &[Anomaly::PollSkip {
            key: key(1),
            values: [10, 12],
            offsets: [0, 2],
            delta: 2,
            skipped: vec![11],
            ops: [3, 5],
        }]
    );
}

#[test]
fn assign_and_crash_reset_a_process_position() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11],[2,12]]}]]"#,
        r#"0 ok assign [1]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
        r#"0 info crash null"#,
        r#"0 ok poll [["poll",{"1":[[2,12]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn gaps_in_offsets_are_not_skips() {
    // Transaction markers take offsets 1 and 3: dense order stays adjacent.
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[2,11]]]"#,
        r#"1 ok send [["send",1,[4,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[2,11]]}]]"#,
        r#"0 ok poll [["poll",{"1":[[4,12]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn nonmonotonic_send() {
    let r = check(&[
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::NonmonotonicSend]);
    assert_eq!(
        r.of(AnomalyKind::NonmonotonicSend),
        &[Anomaly::NonmonotonicSend {
            key: key(1),
            values: [11, 10],
            offsets: [Some(1), Some(0)],
            delta: -1,
            ops: [0, 1],
        }]
    );
}

#[test]
fn int_poll_skip() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"1 ok send [["send",1,[2,12]]]"#,
        r#"0 ok poll [["poll",{"1":[[1,11]]}]]"#,
        r#"2 ok txn [["poll",{"1":[[0,10]]}],["poll",{"1":[[2,12]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::IntPollSkip]);
    assert_eq!(
        r.of(AnomalyKind::IntPollSkip),
        &[Anomaly::IntPollSkip {
            key: key(1),
            values: [10, 12],
            offsets: [0, 2],
            delta: 2,
            skipped: vec![11],
            op: 4,
        }]
    );
}

#[test]
fn int_nonmonotonic_poll() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[1,11],[0,10]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::IntNonmonotonicPoll]);
    match &r.of(AnomalyKind::IntNonmonotonicPoll)[0] {
        Anomaly::IntNonmonotonicPoll {
            values, delta, op, ..
        } => assert_eq!((*values, *delta, *op), ([11, 10], -1, 2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn int_send_skip() {
    let r = check(&[
        r#"1 ok txn [["send",1,[0,10]],["send",1,[2,12]]]"#,
        r#"2 ok send [["send",1,[1,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11],[2,12]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::IntSendSkip]);
    assert_eq!(
        r.of(AnomalyKind::IntSendSkip),
        &[Anomaly::IntSendSkip {
            key: key(1),
            values: [10, 12],
            offsets: [Some(0), Some(2)],
            delta: 2,
            skipped: vec![11],
            op: 0,
        }]
    );
    // Jepsen expects it of Kafka transactions; callers can say so.
    assert!(r.valid_allowing(&[AnomalyKind::IntSendSkip]));
}

#[test]
fn int_nonmonotonic_send() {
    let r = check(&[
        r#"1 ok txn [["send",1,[1,11]],["send",1,[0,10]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::IntNonmonotonicSend]);
}

#[test]
fn g1a_aborted_read() {
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"2 fail txn [["send",1,[null,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10],[1,11]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::G1a]);
    assert_eq!(
        r.of(AnomalyKind::G1a),
        &[Anomaly::G1a {
            key: key(1),
            value: 11,
            offset: 1,
            writer: 1,
            reader: 2,
        }]
    );
    // The failed send is in no way a lost or unseen write.
    let r = check(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"2 fail send [["send",1,[null,11]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn precommitted_read() {
    let r = check(&[
        r#"1 ok txn [["send",1,[0,10]],["poll",{"1":[[0,10]]}]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::PrecommittedRead]);
    assert_eq!(
        r.of(AnomalyKind::PrecommittedRead),
        &[Anomaly::PrecommittedRead {
            key: key(1),
            value: 10,
            op: 0,
        }]
    );
}

#[test]
fn string_keys_and_json_report() {
    let r = check(&[
        r#"1 ok send [["send","orders-0",[0,10]]]"#,
        r#"1 ok send [["send","orders-0",[1,11]]]"#,
        r#"0 ok poll [["poll",{"orders-0":[[1,11]]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::LostWrite, AnomalyKind::Unseen]);
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["anomalies"]["lost-write"][0]["key"], "orders-0");
    assert_eq!(json["anomalies"]["lost-write"][0]["anomaly"], "lost-write");
    assert_eq!(r.names(), vec!["lost-write", "unseen"]);
}

#[test]
fn reports_are_deterministic_and_sorted() {
    let lines = [
        r#"1 ok send [["send",2,[0,20]]]"#,
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"1 ok send [["send",2,[1,21]]]"#,
        r#"1 ok send [["send",1,[1,11]]]"#,
        r#"2 fail send [["send",1,[null,12]]]"#,
        r#"0 ok poll [["poll",{"2":[[1,21]],"1":[[1,11],[2,12]]}]]"#,
    ];
    let a = check(&lines);
    let b = check(&lines);
    assert_eq!(a, b);
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.names(), vec!["G1a", "lost-write", "unseen"]);
    let lost: Vec<&Key> = a
        .of(AnomalyKind::LostWrite)
        .iter()
        .map(|x| x.key())
        .collect();
    assert_eq!(lost, vec![&key(1), &key(2)]);
}

#[test]
fn check_file_reads_a_history_from_disk() {
    let dir = std::env::temp_dir().join(format!("weir-jepsen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    let ops = h(&[
        r#"1 ok send [["send",1,[0,10]]]"#,
        r#"0 ok poll [["poll",{"1":[[0,10]]}]]"#,
    ]);
    let mut bytes = Vec::new();
    write_history(&mut bytes, &ops).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let report = check_file(&path).unwrap();
    assert!(report.valid);
    assert!(check_file(dir.join("absent.jsonl")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A history from an in-memory Kafka driven by random clients, with
/// indeterminate and failed sends, re-assigns and client crashes. With
/// `truncate_at`, the broker loses the acknowledged tail of key 0 once
/// (an unclean leader election) at that step and reuses its offsets.
fn random_history(seed: u64, truncate_at: Option<usize>) -> Vec<Op> {
    use crate::history::MicroOp;
    use std::collections::BTreeMap;

    let mut x = seed;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let keys = 3i64;
    let mut logs: Vec<Vec<i64>> = vec![Vec::new(); keys as usize];
    let mut next_value = vec![0i64; keys as usize];
    // Per process: key -> next offset to poll.
    let mut positions: BTreeMap<i64, BTreeMap<i64, usize>> = BTreeMap::new();
    let mut history: Vec<Op> = Vec::new();
    let push = |history: &mut Vec<Op>, p: i64, kind: OpType, f: OpF, value: OpValue| {
        let index = history.len() as u64;
        history.push(Op {
            index,
            process: Process::Int(p),
            kind,
            f,
            value,
            time: index,
            error: None,
        });
    };
    let poll = |logs: &Vec<Vec<i64>>, pos: &mut BTreeMap<i64, usize>, n: u64| {
        let mut reads = BTreeMap::new();
        for (k, at) in pos.iter_mut() {
            let log = &logs[*k as usize];
            let end = (*at + n as usize).min(log.len());
            let records: Vec<(i64, i64)> = (*at..end).map(|o| (o as i64, log[o])).collect();
            *at = end;
            reads.insert(Key::Int(*k), records);
        }
        OpValue::Mops(vec![MicroOp::Poll(reads)])
    };
    for step in 0..400 {
        if truncate_at == Some(step) {
            let log = &mut logs[0];
            let keep = log.len().saturating_sub(3);
            log.truncate(keep);
        }
        let p = rand(4) as i64;
        match rand(10) {
            0..=3 => {
                let k = rand(keys as u64) as i64;
                let v = next_value[k as usize];
                next_value[k as usize] += 1;
                let mop = |offset| {
                    OpValue::Mops(vec![MicroOp::Send {
                        key: Key::Int(k),
                        offset,
                        value: v,
                    }])
                };
                push(&mut history, p, OpType::Invoke, OpF::Send, mop(None));
                match rand(20) {
                    0 => push(&mut history, p, OpType::Fail, OpF::Send, mop(None)),
                    1 | 2 => {
                        if rand(2) == 0 {
                            logs[k as usize].push(v);
                        }
                        push(&mut history, p, OpType::Info, OpF::Send, mop(None));
                    }
                    _ => {
                        let offset = logs[k as usize].len() as i64;
                        logs[k as usize].push(v);
                        push(&mut history, p, OpType::Ok, OpF::Send, mop(Some(offset)));
                    }
                }
            }
            4..=7 => {
                let pos = positions.entry(p).or_default();
                push(
                    &mut history,
                    p,
                    OpType::Invoke,
                    OpF::Poll,
                    OpValue::Mops(vec![]),
                );
                let value = poll(&logs, pos, 1 + rand(3));
                push(&mut history, p, OpType::Ok, OpF::Poll, value);
            }
            8 => {
                let chosen: Vec<i64> = (0..keys).filter(|_| rand(2) == 0).collect();
                let value = OpValue::Keys(chosen.iter().map(|k| Key::Int(*k)).collect());
                push(&mut history, p, OpType::Invoke, OpF::Assign, value.clone());
                push(&mut history, p, OpType::Ok, OpF::Assign, value);
                // A re-assign may seek anywhere in the log.
                let pos = positions.entry(p).or_default();
                pos.clear();
                for k in chosen {
                    let len = logs[k as usize].len() as u64;
                    pos.insert(k, rand(len + 1) as usize);
                }
            }
            _ => {
                push(&mut history, p, OpType::Invoke, OpF::Crash, OpValue::Nil);
                push(&mut history, p, OpType::Info, OpF::Crash, OpValue::Nil);
                positions.remove(&p);
            }
        }
    }
    // Final polls: a fresh client reads every key from the beginning.
    let all = OpValue::Keys((0..keys).map(Key::Int).collect());
    push(&mut history, 9, OpType::Ok, OpF::Assign, all);
    let mut pos: BTreeMap<i64, usize> = (0..keys).map(|k| (k, 0)).collect();
    let value = poll(&logs, &mut pos, u64::MAX / 2);
    push(&mut history, 9, OpType::Ok, OpF::Poll, value);

    history
}

/// The checkers find nothing in a correct history: guards against false
/// positives on realistic histories.
#[test]
fn a_random_correct_history_is_valid() {
    for seed in 1..=20u64 {
        let report = analyze(&random_history(seed, None));
        assert!(report.valid, "seed {seed}: {}", report.to_json());
        assert_eq!(report.keys, 3);
    }
}

/// Losing an acknowledged tail is caught: its records are lost writes, or
/// their offsets were observed again holding new values.
#[test]
fn a_truncated_log_is_caught() {
    let mut caught = 0;
    for seed in 1..=20u64 {
        let report = analyze(&random_history(seed, Some(200)));
        let kinds = report.kinds();
        if kinds.contains(&AnomalyKind::LostWrite)
            || kinds.contains(&AnomalyKind::InconsistentOffsets)
        {
            caught += 1;
        }
    }
    assert!(caught >= 15, "caught {caught} of 20");
}
