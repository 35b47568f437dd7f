//! The `weir` binary end to end against a real broker.
#![cfg(not(madsim))]

#[path = "client_common.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir")
}

fn weir_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weir");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn topics_produce_consume_configs() {
    let broker = common::start_broker();
    let b = broker.bootstrap.as_str();
    let topic = common::unique_topic("cli");
    let t = topic.as_str();

    let out = ok(&weir(&[
        "topics",
        "--bootstrap-server",
        b,
        "--create",
        "--topic",
        t,
        "--partitions",
        "2",
        "--replication-factor",
        "1",
    ]));
    assert_eq!(out.trim(), format!("Created topic {t}."));
    let line = one_error_line(&weir(&[
        "topics",
        "--bootstrap-server",
        b,
        "--create",
        "--topic",
        t,
        "--partitions",
        "2",
    ]));
    assert!(line.contains("TOPIC_ALREADY_EXISTS"), "{line}");

    let list = ok(&weir(&["topics", "--bootstrap-server", b, "--list"]));
    assert!(list.lines().any(|l| l == t));

    let describe = ok(&weir(&[
        "topics",
        "--bootstrap-server",
        b,
        "--describe",
        "--topic",
        t,
    ]));
    let lines: Vec<&str> = describe.lines().collect();
    assert_eq!(lines.len(), 3, "{describe}");
    assert!(
        lines[0].starts_with(&format!("Topic: {t}\tTopicId: ")),
        "{describe}"
    );
    assert!(lines[0].contains("\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: "));
    assert!(lines[1].starts_with(&format!("\tTopic: {t}\tPartition: 0\tLeader: ")));
    assert!(lines[2].contains("\tPartition: 1\tLeader: "));

    let out = weir_stdin(
        &[
            "produce",
            "--bootstrap-server",
            b,
            "--topic",
            t,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
            "--producer-property",
            "acks=all",
        ],
        "k1:one\nk2:two\nk1:three\n",
    );
    ok(&out);

    let out = ok(&weir(&[
        "consume",
        "--bootstrap-server",
        b,
        "--topic",
        t,
        "--from-beginning",
        "--max-messages",
        "3",
        "--timeout-ms",
        "10000",
        "--property",
        "print.key=true",
        "--property",
        "key.separator=:",
    ]));
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, vec!["k1:one", "k1:three", "k2:two"]);

    // Per-partition read at an explicit offset: k1's records share a partition.
    let k1_partition = weir::client::partitioner::partition_for_key(b"k1", 2).to_string();
    let out = ok(&weir(&[
        "consume",
        "--bootstrap-server",
        b,
        "--topic",
        t,
        "--partition",
        &k1_partition,
        "--offset",
        "1",
        "--max-messages",
        "1",
        "--timeout-ms",
        "10000",
        "--property",
        "print.offset=true",
    ]));
    let shared = weir::client::partitioner::partition_for_key(b"k2", 2).to_string() == k1_partition;
    let expect = if shared {
        "Offset:1\ttwo"
    } else {
        "Offset:1\tthree"
    };
    assert_eq!(out.trim(), expect);

    // Timeout with nothing new: exits 0 after the idle period. (Tansu's
    // ListOffsets(latest) is not the log end, so "the end" is skipped there.)
    let out = weir(&[
        "consume",
        "--bootstrap-server",
        b,
        "--topic",
        t,
        "--timeout-ms",
        "300",
    ]);
    let printed = ok(&out);
    if !broker.is_tansu() {
        assert_eq!(printed, "");
    }

    ok(&weir(&[
        "configs",
        "--bootstrap-server",
        b,
        "--entity-type",
        "topics",
        "--entity-name",
        t,
        "--alter",
        "--add-config",
        "retention.ms=12345",
    ]));
    let out = ok(&weir(&[
        "configs",
        "--bootstrap-server",
        b,
        "--entity-type",
        "topics",
        "--entity-name",
        t,
        "--describe",
        "--all",
    ]));
    assert!(
        out.starts_with(&format!("All configs for topic {t} are:")),
        "{out}"
    );

    ok(&weir(&[
        "topics",
        "--bootstrap-server",
        b,
        "--delete",
        "--topic",
        t,
    ]));
}

#[test]
fn perf_produce_and_consume_print_a_final_line() {
    let broker = common::start_broker();
    let b = broker.bootstrap.as_str();
    let topic = common::unique_topic("perf");
    ok(&weir(&[
        "topics",
        "--bootstrap-server",
        b,
        "--create",
        "--topic",
        &topic,
        "--partitions",
        "2",
    ]));
    let out = ok(&weir(&[
        "perf",
        "produce",
        "--bootstrap-server",
        b,
        "--topic",
        &topic,
        "--num-records",
        "5000",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--acks",
        "1",
    ]));
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("5000 records sent, "), "{last}");
    assert!(last.contains(" ms 99.9th."), "{last}");
    let out = ok(&weir(&[
        "perf",
        "consume",
        "--bootstrap-server",
        b,
        "--topic",
        &topic,
        "--num-records",
        "5000",
    ]));
    assert!(out.trim().starts_with("5000 records received, "), "{out}");
}

#[test]
fn bad_arguments_fail_with_one_line() {
    for args in [
        vec!["nope"],
        vec!["topics", "--bogus"],
        vec!["topics", "--list"],
        vec![
            "topics",
            "--bootstrap-server",
            "127.0.0.1:1",
            "--list",
            "--create",
        ],
        vec!["produce", "--topic"],
        vec![
            "consume",
            "--bootstrap-server",
            "x:1",
            "--topic",
            "t",
            "--offset",
            "3",
        ],
        vec!["perf", "fly"],
        vec![
            "configs",
            "--entity-type",
            "users",
            "--entity-name",
            "x",
            "--describe",
        ],
        vec![
            "produce",
            "--bootstrap-server",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--producer-property",
            "acks=2",
        ],
    ] {
        one_error_line(&weir(&args));
    }
    // Unreachable broker: a connection error, still one line.
    let line = one_error_line(&weir(&[
        "topics",
        "--bootstrap-server",
        "127.0.0.1:1",
        "--list",
    ]));
    assert!(line.contains("127.0.0.1:1"), "{line}");
    // --help succeeds and prints usage.
    let out = ok(&weir(&["topics", "--help"]));
    assert!(out.starts_with("usage: weir topics"));
    assert!(ok(&weir(&["--help"])).contains("commands:"));
}
