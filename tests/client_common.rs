//! Shared helpers for client and CLI integration tests: a broker to talk to.
//!
//! By default each test starts its own `weir server` process (the binary
//! under test) on a free port and a temporary data directory, and stops it
//! with SIGTERM. `WEIR_TEST_BOOTSTRAP=host:port` uses a running broker
//! instead; `WEIR_TEST_TANSU=path` starts Tansu (memory storage) to check
//! the client against a second Kafka-compatible implementation.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestBroker {
    pub bootstrap: String,
    child: Option<Child>,
    tansu: bool,
    _data: Option<tempfile::TempDir>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SIGTERM first: `weir server` shuts down cleanly on it.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl TestBroker {
    /// Tansu 0.6 answers ListOffsets(latest) with the last batch's base
    /// offset + 1 and timestamp queries at batch granularity, and has no
    /// CreatePartitions; tests relax those checks for it.
    pub fn is_tansu(&self) -> bool {
        self.tansu
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: &str, child: &mut Child) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("broker exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("broker did not listen on {addr}");
}

pub fn start_broker() -> TestBroker {
    if let Ok(b) = std::env::var("WEIR_TEST_BOOTSTRAP") {
        return TestBroker {
            bootstrap: b,
            child: None,
            tansu: false,
            _data: None,
        };
    }
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    if let Ok(tansu) = std::env::var("WEIR_TEST_TANSU") {
        let url = format!("tcp://{bootstrap}");
        let mut child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_listening(&bootstrap, &mut child);
        return TestBroker {
            bootstrap,
            child: Some(child),
            tansu: true,
            _data: None,
        };
    }
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["server", "--data-dir", data.path().to_str().unwrap()])
        .args(["--listen", &bootstrap])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir server");
    wait_listening(&bootstrap, &mut child);
    TestBroker {
        bootstrap,
        child: Some(child),
        tansu: false,
        _data: Some(data),
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
