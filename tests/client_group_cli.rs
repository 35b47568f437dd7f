//! `weir consume --group` with the group flags: --assignor,
//! --enable-auto-commit, --auto-offset-reset.
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

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"));
    line.to_string()
}

fn consume(b: &str, t: &str, extra: &[&str]) -> Output {
    let mut args = vec!["consume", "--bootstrap-server", b, "--topic", t];
    args.extend_from_slice(extra);
    weir(&args)
}

#[test]
fn consume_group_flags() {
    let broker = common::start_broker();
    let b = broker.bootstrap.as_str();
    let topic = common::unique_topic("cgroup");
    let t = topic.as_str();
    ok(&weir(&[
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["produce", "--bootstrap-server", b, "--topic", t])
        .args(["--producer-property", "acks=all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a\nb\nc\nd\ne\nf\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    // Flags that only mean something in a group.
    let line = error_line(&consume(b, t, &["--assignor", "range"]));
    assert!(line.contains("--assignor needs --group"), "{line}");
    let line = error_line(&consume(b, t, &["--group", "g0", "--assignor", "bogus"]));
    assert!(line.contains("unknown assignor 'bogus'"), "{line}");
    let line = error_line(&consume(
        b,
        t,
        &[
            "--group",
            "g0",
            "--from-beginning",
            "--auto-offset-reset",
            "latest",
        ],
    ));
    assert!(line.contains("contradicts"), "{line}");

    // none: a group that never committed cannot start.
    let line = error_line(&consume(
        b,
        t,
        &[
            "--group",
            "g-none",
            "--auto-offset-reset",
            "none",
            "--timeout-ms",
            "8000",
        ],
    ));
    assert!(line.contains("auto.offset.reset=none"), "{line}");

    // Manual commits of what was printed: a second run resumes after it.
    let first = ok(&consume(
        b,
        t,
        &[
            "--group",
            "g-manual",
            "--assignor",
            "cooperative-sticky",
            "--auto-offset-reset",
            "earliest",
            "--max-messages",
            "4",
            "--timeout-ms",
            "10000",
        ],
    ));
    let second = ok(&consume(
        b,
        t,
        &[
            "--group",
            "g-manual",
            "--assignor",
            "cooperative-sticky",
            "--timeout-ms",
            "8000",
        ],
    ));
    let mut all: Vec<&str> = first.lines().chain(second.lines()).collect();
    assert_eq!(first.lines().count(), 4, "{first}");
    all.sort();
    assert_eq!(all, vec!["a", "b", "c", "d", "e", "f"]);

    // Auto-commit: close commits the positions, a second run reads nothing.
    let out = ok(&consume(
        b,
        t,
        &[
            "--group",
            "g-auto",
            "--assignor",
            "roundrobin,range",
            "--enable-auto-commit",
            "--from-beginning",
            "--max-messages",
            "6",
            "--timeout-ms",
            "10000",
        ],
    ));
    assert_eq!(out.lines().count(), 6, "{out}");
    let again = ok(&consume(
        b,
        t,
        &[
            "--group",
            "g-auto",
            "--enable-auto-commit",
            "--timeout-ms",
            "8000",
        ],
    ));
    assert_eq!(again, "", "auto-committed records were read again");
}
