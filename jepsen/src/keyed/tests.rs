//! Hand-made keyed histories: correct ones pass (gaps from compaction,
//! records below the log start gone after retention), and each anomaly is
//! found by name with the records involved.

use crate::anomaly::{Anomaly, AnomalyKind, Report};
use crate::history::{parse_history, read_history, write_history, Key, Op};

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
    crate::analyze(&h(lines))
}

fn assert_kinds(report: &Report, kinds: &[AnomalyKind]) {
    assert_eq!(report.kinds(), kinds, "{}", report.to_json());
}

/// A send of `value` under record key `rk` to partition 0, acknowledged at
/// `offset`: invoke and ok lines.
fn send(process: u32, rk: u32, value: i64, offset: i64) -> [String; 2] {
    [
        format!(r#"{process} invoke send [["ksend",0,{rk},[null,{value}]]]"#),
        format!(r#"{process} ok send [["ksend",0,{rk},[{offset},{value}]]]"#),
    ]
}

/// Five acknowledged sends to partition 0, one after another: key 1 gets
/// 10@0, 11@2, 13@4; key 2 gets 20@1, 21@3.
fn five_sends() -> Vec<String> {
    [
        send(1, 1, 10, 0),
        send(1, 2, 20, 1),
        send(1, 1, 11, 2),
        send(1, 2, 21, 3),
        send(1, 1, 13, 4),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn with(prefix: Vec<String>, rest: &[&str]) -> Report {
    let mut lines: Vec<&str> = prefix.iter().map(String::as_str).collect();
    lines.extend_from_slice(rest);
    check(&lines)
}

#[test]
fn a_compacted_history_passes() {
    let r = with(
        five_sends(),
        &[
            r#"2 ok assign [0]"#,
            r#"2 invoke poll [["kpoll"]]"#,
            r#"2 ok poll [["kpoll",{"0":[[0,1,10],[1,2,20],[2,1,11]]}]]"#,
            r#"2 invoke poll [["bounds"]]"#,
            r#"2 ok poll [["bounds",{"0":[0,5]}]]"#,
            // The cleaner ran: 10, 20 and 11 are gone; offsets kept.
            r#"2 invoke poll [["kpoll"]]"#,
            r#"2 ok poll [["kpoll",{"0":[[3,2,21],[4,1,13]]}]]"#,
            r#"3 ok assign [0]"#,
            r#"3 invoke poll [["final-read","compact"]]"#,
            r#"3 ok poll [["final-read","compact",{"0":[0,5]}]]"#,
            r#"3 invoke poll [["kpoll"]]"#,
            r#"3 ok poll [["kpoll",{"0":[[3,2,21],[4,1,13]]}]]"#,
        ],
    );
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn a_later_indeterminate_value_supersedes_the_latest_acknowledged_one() {
    let mut lines = five_sends();
    lines.extend([
        r#"4 invoke send [["ksend",0,1,[null,14]]]"#.to_string(),
        r#"4 info send [["ksend",0,1,[null,14]]]"#.to_string(),
    ]);
    let r = with(
        lines,
        &[
            r#"3 invoke poll [["final-read","compact"]]"#,
            r#"3 ok poll [["final-read","compact",{"0":[0,6]}]]"#,
            r#"3 ok poll [["kpoll",{"0":[[3,2,21],[5,1,14]]}]]"#,
        ],
    );
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn lost_latest_when_the_final_read_misses_a_keys_latest_value() {
    let r = with(
        five_sends(),
        &[
            r#"3 invoke poll [["final-read","compact"]]"#,
            r#"3 ok poll [["final-read","compact",{"0":[0,5]}]]"#,
            // Key 1's latest (13@4) is gone and its older 11 survives.
            r#"3 ok poll [["kpoll",{"0":[[2,1,11],[3,2,21]]}]]"#,
        ],
    );
    assert_kinds(&r, &[AnomalyKind::LostLatest]);
    assert_eq!(
        r.of(AnomalyKind::LostLatest),
        &[Anomaly::LostLatest {
            key: Key::Int(0),
            record_key: Key::Int(1),
            value: 13,
            offset: 4,
            writer: 9,
            final_latest: Some((2, 11)),
        }]
    );
}

#[test]
fn compact_delete_excuses_a_latest_value_below_the_log_start() {
    let final_read = |policy: &str| {
        with(
            five_sends(),
            &[
                &format!(r#"3 invoke poll [["final-read","{policy}"]]"#),
                &format!(r#"3 ok poll [["final-read","{policy}",{{"0":[4,5]}}]]"#),
                r#"3 ok poll [["kpoll",{"0":[[4,1,13]]}]]"#,
            ],
        )
    };
    // Key 2's latest (21@3) is below the start 4: retention took it.
    assert!(final_read("compact,delete").valid);
    // Compaction alone never removes a latest value, whatever the start.
    assert_kinds(&final_read("compact"), &[AnomalyKind::LostLatest]);
}

#[test]
fn retention_may_drop_below_the_start_but_nothing_above() {
    let ok = with(
        five_sends(),
        &[
            r#"3 invoke poll [["final-read","delete"]]"#,
            r#"3 ok poll [["final-read","delete",{"0":[2,5]}]]"#,
            r#"3 ok poll [["kpoll",{"0":[[2,1,11],[3,2,21],[4,1,13]]}]]"#,
        ],
    );
    assert!(ok.valid, "{}", ok.to_json());
    // A start that moved during the read (the final reader's later probe)
    // excuses what it passed.
    let moved = with(
        five_sends(),
        &[
            r#"3 invoke poll [["final-read","delete"]]"#,
            r#"3 ok poll [["final-read","delete",{"0":[2,5]}]]"#,
            r#"3 ok poll [["kpoll",{"0":[[3,2,21],[4,1,13]]}]]"#,
            r#"3 invoke poll [["bounds"]]"#,
            r#"3 ok poll [["bounds",{"0":[3,5]}]]"#,
        ],
    );
    assert!(moved.valid, "{}", moved.to_json());
    // Without compaction, a superseded value at or above the start counts.
    let lost = with(
        five_sends(),
        &[
            r#"3 invoke poll [["final-read","delete"]]"#,
            r#"3 ok poll [["final-read","delete",{"0":[2,5]}]]"#,
            r#"3 ok poll [["kpoll",{"0":[[3,2,21],[4,1,13]]}]]"#,
        ],
    );
    assert_kinds(&lost, &[AnomalyKind::LostRetained]);
    assert_eq!(
        lost.of(AnomalyKind::LostRetained),
        &[Anomaly::LostRetained {
            key: Key::Int(0),
            record_key: Key::Int(1),
            value: 11,
            offset: 2,
            writer: 5,
            log_start: 2,
        }]
    );
}

#[test]
fn an_older_value_above_a_newer_one_is_stale_value() {
    // 11's send ended (index 3) before 12's began (index 4), yet 12 landed
    // below it: what a half-cleaned segment or a resurrected value shows.
    let r = check(&[
        r#"1 invoke send [["ksend",0,1,[null,10]]]"#,
        r#"1 ok send [["ksend",0,1,[0,10]]]"#,
        r#"1 invoke send [["ksend",0,1,[null,11]]]"#,
        r#"1 ok send [["ksend",0,1,[2,11]]]"#,
        r#"1 invoke send [["ksend",0,1,[null,12]]]"#,
        r#"1 ok send [["ksend",0,1,[1,12]]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::StaleValue]);
    assert_eq!(
        r.of(AnomalyKind::StaleValue),
        &[Anomaly::StaleValue {
            key: Key::Int(0),
            record_key: Key::Int(1),
            values: [12, 11],
            offsets: [1, 2],
            writers: [5, 3],
        }]
    );
}

#[test]
fn concurrent_sends_may_land_in_either_order() {
    let r = check(&[
        r#"1 invoke send [["ksend",0,1,[null,10]]]"#,
        r#"2 invoke send [["ksend",0,1,[null,20]]]"#,
        r#"2 ok send [["ksend",0,1,[0,20]]]"#,
        r#"1 ok send [["ksend",0,1,[1,10]]]"#,
        // An indeterminate send read later: it may land anywhere after its invoke.
        r#"3 invoke send [["ksend",0,1,[null,30]]]"#,
        r#"3 info send [["ksend",0,1,[null,30]]]"#,
        r#"1 invoke send [["ksend",0,1,[null,11]]]"#,
        r#"1 ok send [["ksend",0,1,[2,11]]]"#,
        r#"4 ok poll [["kpoll",{"0":[[0,1,20],[1,1,10],[2,1,11],[3,1,30]]}]]"#,
    ]);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn reads_of_values_not_written_there_are_foreign_or_g1a() {
    let r = check(&[
        r#"1 invoke send [["ksend",0,1,[null,10]]]"#,
        r#"1 ok send [["ksend",0,1,[0,10]]]"#,
        r#"1 invoke send [["ksend",0,2,[null,20]]]"#,
        r#"1 fail send [["ksend",0,2,[null,20]]]"#,
        // 10 under record key 2; 99 nobody sent; 20 whose send failed.
        r#"2 ok poll [["kpoll",{"0":[[0,2,10],[1,1,99],[2,2,20]]}]]"#,
    ]);
    assert_kinds(
        &r,
        &[
            AnomalyKind::G1a,
            AnomalyKind::ForeignRead,
            AnomalyKind::InconsistentOffsets,
        ],
    );
    assert_eq!(
        r.of(AnomalyKind::ForeignRead),
        &[
            Anomaly::ForeignRead {
                key: Key::Int(0),
                record_key: Key::Int(1),
                value: 99,
                offset: 1,
                reader: 4,
                sent_as: None,
            },
            Anomaly::ForeignRead {
                key: Key::Int(0),
                record_key: Key::Int(2),
                value: 10,
                offset: 0,
                reader: 4,
                sent_as: Some((Key::Int(0), Key::Int(1))),
            },
        ]
    );
    // Offset 0 held (1, 10) by the ack and (2, 10) by the read.
    assert_eq!(
        r.of(AnomalyKind::InconsistentOffsets),
        &[Anomaly::InconsistentOffsets {
            key: Key::Int(0),
            offset: 0,
            values: vec![10],
        }]
    );
}

#[test]
fn offsets_are_immutable() {
    let r = with(
        five_sends(),
        &[
            // 11 moved from 2 to 5; offset 3 shows a second value.
            r#"2 ok poll [["kpoll",{"0":[[3,1,13],[5,1,11]]}]]"#,
        ],
    );
    assert_kinds(
        &r,
        &[AnomalyKind::Duplicate, AnomalyKind::InconsistentOffsets],
    );
    assert_eq!(
        r.of(AnomalyKind::Duplicate),
        &[
            Anomaly::Duplicate {
                key: Key::Int(0),
                value: 11,
                offsets: vec![2, 5],
            },
            Anomaly::Duplicate {
                key: Key::Int(0),
                value: 13,
                offsets: vec![3, 4],
            },
        ]
    );
}

#[test]
fn a_process_reads_a_partition_in_offset_order_until_reassigned() {
    let r = with(
        five_sends(),
        &[
            r#"2 ok assign [0]"#,
            r#"2 ok poll [["kpoll",{"0":[[0,1,10],[2,1,11],[1,2,20]]}]]"#,
            r#"2 ok poll [["kpoll",{"0":[[1,2,20],[3,2,21]]}]]"#,
            // A re-assign may seek back: no anomaly from here.
            r#"2 ok assign [0]"#,
            r#"2 ok poll [["kpoll",{"0":[[0,1,10]]}]]"#,
        ],
    );
    assert_kinds(
        &r,
        &[
            AnomalyKind::IntNonmonotonicPoll,
            AnomalyKind::NonmonotonicPoll,
        ],
    );
    assert_eq!(
        r.of(AnomalyKind::IntNonmonotonicPoll),
        &[Anomaly::IntNonmonotonicPoll {
            key: Key::Int(0),
            values: [11, 20],
            offsets: [2, 1],
            delta: -1,
            op: 11,
        }]
    );
    assert_eq!(
        r.of(AnomalyKind::NonmonotonicPoll),
        &[Anomaly::NonmonotonicPoll {
            key: Key::Int(0),
            values: [20, 20],
            offsets: [1, 1],
            delta: 0,
            ops: [11, 12],
        }]
    );
}

#[test]
fn the_log_start_never_goes_back() {
    let r = check(&[
        r#"1 invoke poll [["bounds"]]"#,
        r#"1 ok poll [["bounds",{"0":[5,9],"1":[0,3]}]]"#,
        // Concurrent with the next: no order between them.
        r#"2 invoke poll [["bounds"]]"#,
        r#"3 invoke poll [["bounds"]]"#,
        r#"3 ok poll [["bounds",{"0":[7,9]}]]"#,
        r#"2 ok poll [["bounds",{"0":[6,9]}]]"#,
        // Begins after the 7 was seen: 6 went back.
        r#"1 invoke poll [["bounds"]]"#,
        r#"1 ok poll [["bounds",{"0":[6,9],"1":[0,3]}]]"#,
    ]);
    assert_kinds(&r, &[AnomalyKind::LogStartRegression]);
    assert_eq!(
        r.of(AnomalyKind::LogStartRegression),
        &[Anomaly::LogStartRegression {
            key: Key::Int(0),
            starts: [7, 6],
            ops: [4, 7],
        }]
    );
}

#[test]
fn keyed_and_queue_checkers_ignore_each_other() {
    // A compacted history full of gaps: no queue anomaly (lost-write,
    // poll-skip, unseen) from it.
    let r = with(
        five_sends(),
        &[
            r#"2 ok assign [0]"#,
            r#"2 ok poll [["kpoll",{"0":[[3,2,21],[4,1,13]]}]]"#,
        ],
    );
    assert!(r.valid, "{}", r.to_json());
    // A queue history: the keyed checkers find nothing in it.
    let q = h(&[
        r#"1 ok send [["send",0,[0,10]]]"#,
        r#"1 ok send [["send",0,[1,11]]]"#,
        r#"0 ok poll [["poll",{"0":[[1,11]]}]]"#,
    ]);
    assert!(super::check(&q).is_empty());
}

#[test]
fn keyed_micro_ops_round_trip_through_json() {
    let ops = h(&[
        r#"1 invoke send [["ksend",0,"k1",5]]"#,
        r#"1 ok send [["ksend",0,"k1",[3,5]]]"#,
        r#"2 ok poll [["kpoll",{"0":[[3,"k1",5]],"1":[]}]]"#,
        r#"2 ok poll [["bounds",{"0":[0,4]}]]"#,
        r#"2 ok poll [["final-read","delete,compact",{"0":[0,4]}]]"#,
    ]);
    let mut out = Vec::new();
    write_history(&mut out, &ops).unwrap();
    let again = read_history(out.as_slice()).unwrap();
    assert_eq!(again, ops);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#"["final-read","compact,delete",{"0":[0,4]}]"#));
    assert!(parse_history(
        r#"{"index":0,"process":1,"type":"ok","f":"poll","value":[["final-read","truncate",{}]]}"#
    )
    .is_err());
}

#[test]
fn a_record_acknowledged_in_a_partly_failed_op_counts_as_acknowledged() {
    // One op sent 10 and 20; only 10 was acknowledged (offset 0), so the op
    // is info. 10 is key 1's latest value and must survive; 20 need not.
    let lines = [
        r#"1 invoke send [["ksend",0,1,[null,10]],["ksend",0,2,[null,20]]]"#,
        r#"1 info send [["ksend",0,1,[0,10]],["ksend",0,2,[null,20]]]"#,
        r#"3 invoke poll [["final-read","compact"]]"#,
        r#"3 ok poll [["final-read","compact",{"0":[0,1]}]]"#,
    ];
    let mut missing = lines.to_vec();
    missing.push(r#"3 ok poll [["kpoll",{"0":[]}]]"#);
    let r = check(&missing);
    assert_kinds(&r, &[AnomalyKind::LostLatest]);
    let mut present = lines.to_vec();
    present.push(r#"3 ok poll [["kpoll",{"0":[[0,1,10]]}]]"#);
    assert!(check(&present).valid);
}

/// The five sends, then key 2 deleted: tombstone 22 acknowledged at 5.
fn five_sends_then_delete() -> Vec<String> {
    let mut lines = five_sends();
    lines.extend([
        r#"1 invoke send [["ksend",0,2,[null,22],"tombstone"]]"#.to_string(),
        r#"1 ok send [["ksend",0,2,[5,22],"tombstone"]]"#.to_string(),
    ]);
    lines
}

fn final_read_of(records: &str) -> Report {
    let poll = format!(r#"3 ok poll [["kpoll",{{"0":{records}}}]]"#);
    with(
        five_sends_then_delete(),
        &[
            r#"3 invoke poll [["final-read","compact"]]"#,
            r#"3 ok poll [["final-read","compact",{"0":[0,6]}]]"#,
            &poll,
        ],
    )
}

#[test]
fn a_deleted_key_may_keep_its_tombstone_or_be_gone() {
    // The tombstone is read (its values below it cleaned away) ...
    let r = final_read_of(r#"[[4,1,13],[5,2,22,"tombstone"]]"#);
    assert!(r.valid, "{}", r.to_json());
    // ... or delete.retention.ms passed and the cleaner dropped it too.
    let r = final_read_of(r#"[[4,1,13]]"#);
    assert!(r.valid, "{}", r.to_json());
}

#[test]
fn a_deleted_key_back_at_an_older_value_is_lost_latest() {
    // The tombstone went but key 2's older 21 survived: the key came back.
    let r = final_read_of(r#"[[3,2,21],[4,1,13]]"#);
    assert_kinds(&r, &[AnomalyKind::LostLatest]);
    assert_eq!(
        r.of(AnomalyKind::LostLatest),
        &[Anomaly::LostLatest {
            key: Key::Int(0),
            record_key: Key::Int(2),
            value: 22,
            offset: 5,
            writer: 11,
            final_latest: Some((3, 21)),
        }]
    );
}

#[test]
fn a_tombstone_read_as_a_value_or_a_value_as_a_tombstone_is_foreign() {
    // Offset 5 read as a live record named 22: 22 was sent as a tombstone.
    let r = final_read_of(r#"[[4,1,13],[5,2,22]]"#);
    assert_kinds(&r, &[AnomalyKind::ForeignRead]);
    // Key 1's 13 read back as a tombstone.
    let r = final_read_of(r#"[[4,1,13,"tombstone"],[5,2,22,"tombstone"]]"#);
    assert_kinds(&r, &[AnomalyKind::ForeignRead]);
}

#[test]
fn tombstones_round_trip_through_the_history_format() {
    let ops = h(&[
        r#"1 ok send [["ksend",0,2,[5,22],"tombstone"]]"#,
        r#"3 ok poll [["kpoll",{"0":[[4,1,13],[5,2,22,"tombstone"]]}]]"#,
    ]);
    let mut text = Vec::new();
    write_history(&mut text, &ops).unwrap();
    assert_eq!(read_history(&text[..]).unwrap(), ops);
    let bad = r#"{"index":0,"process":1,"type":"ok","f":"send","value":[["ksend",0,2,[5,22],"tomb"]],"time":0}"#;
    assert!(parse_history(bad).is_err());
}
