//! Shared helpers for client and CLI integration tests: a broker to talk to.
//!
//! Uses `WEIR_TEST_BOOTSTRAP` when set; otherwise starts Tansu from
//! /work/tools/tansu on a free port (until the Weir broker is merged).
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestBroker {
    pub bootstrap: String,
    child: Option<Child>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl TestBroker {
    /// Tansu 0.6 answers ListOffsets(latest) with the last batch's base
    /// offset + 1, not the log end offset; tests relax that one check.
    pub fn is_tansu(&self) -> bool {
        self.child.is_some()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_broker() -> TestBroker {
    if let Ok(b) = std::env::var("WEIR_TEST_BOOTSTRAP") {
        return TestBroker {
            bootstrap: b,
            child: None,
        };
    }
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new("/work/tools/tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let bootstrap = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&bootstrap).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    TestBroker {
        bootstrap,
        child: Some(child),
    }
}

/// A topic name unique within a test run.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
