//! The real cluster's processes: one `weir server --config nodeN.properties`
//! per node, its stdout and stderr appended to `nodeN.log` in the run's
//! directory, its data in `nodeN/`. The runner kills (SIGKILL), pauses
//! (SIGSTOP) and resumes (SIGCONT) them by pid and restarts them with the
//! same config and data, as a supervisor would after a crash.
//!
//! A node that exits when the runner did not kill it (a panic, an abort, a
//! start that fails) is a crash: `reap` notes it, with the tail of its log,
//! and starts it again so the run goes on (up to `CRASH_RESTARTS_MAX`
//! times per node: a node that cannot start stays down); the crash fails
//! the run.
//!
//! Every child gets PR_SET_PDEATHSIG SIGKILL, so a runner that dies takes
//! its brokers with it; dropping `Procs` kills them too. The signal fires
//! when the thread that spawned the child exits, so spawn only from the
//! thread that lives for the whole run (the runner's main future).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::props::{node_properties, to_properties_text};
use crate::real::net::Net;
use crate::scenario::Scenario;

/// Log lines shown with a crash or a cluster that would not form.
pub const LOG_TAIL_LINES: usize = 30;
/// Times `reap` restarts one node that died on its own.
const CRASH_RESTARTS_MAX: u32 = 3;

pub struct Node {
    /// Kafka node id (index + 1).
    pub id: i32,
    pub name: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Times started (1 after the first start).
    pub starts: u32,
    /// Times it died on its own.
    crashes: u32,
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Procs {
    pub nodes: Vec<Node>,
    bin: PathBuf,
    /// Crashes seen so far: one line each, with the log tail.
    crashes: Vec<String>,
}

impl Procs {
    /// Write every node's properties under `dir` and start them all.
    pub fn start(s: &Scenario, net: &Net, bin: &Path, dir: &Path) -> anyhow::Result<Procs> {
        let addrs = net.addrs();
        let mut nodes = Vec::new();
        for i in 0..s.cluster.nodes {
            let name = format!("n{}", i + 1);
            let data = dir.join(&name);
            std::fs::create_dir_all(&data)?;
            let data_text = data
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("{} is not utf-8", data.display()))?;
            let props = node_properties(s, i, &addrs, data_text);
            let config = dir.join(format!("{name}.properties"));
            std::fs::write(&config, to_properties_text(&props))?;
            nodes.push(Node {
                id: i as i32 + 1,
                log: dir.join(format!("{name}.log")),
                name,
                config,
                child: None,
                paused: false,
                starts: 0,
                crashes: 0,
            });
        }
        let mut procs = Procs {
            nodes,
            bin: bin.to_path_buf(),
            crashes: Vec::new(),
        };
        for i in 0..procs.nodes.len() {
            procs.spawn(net, i)?;
        }
        Ok(procs)
    }

    /// Start node i (it must not be running).
    pub fn spawn(&mut self, net: &Net, i: usize) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "{} is already running", n.name);
        n.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&n.log)?;
        writeln!(log, "=== weir-sim real: start {} of {}", n.starts, n.name)?;
        let err = log.try_clone()?;
        let mut cmd = net.command(i, &self.bin);
        cmd.arg("server")
            .arg("--config")
            .arg(&n.config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe and touches nothing of the
        // parent's state.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", self.bin.display()))?;
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        if let Some(pid) = self.nodes[i].pid() {
            // SAFETY: kill(2) on our own child's pid, which we have not
            // reaped yet (it cannot have been reused).
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// kill -9 node i and reap it.
    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// SIGSTOP node i: it stops with its sockets open.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.nodes[i].paused = self.nodes[i].is_running();
    }

    /// SIGCONT node i.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.nodes[i].paused = false;
    }

    /// Notice nodes that exited although nobody killed them: note each as
    /// a crash (returned, and kept for `crashes`) and start it again.
    pub fn reap(&mut self, net: &Net) -> Vec<String> {
        let mut found = Vec::new();
        for i in 0..self.nodes.len() {
            let status = match self.nodes[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            self.nodes[i].child = None;
            self.nodes[i].paused = false;
            self.nodes[i].crashes += 1;
            let n = &self.nodes[i];
            let again = n.crashes <= CRASH_RESTARTS_MAX;
            let line = format!(
                "{} (start {}) exited on its own: {status}; {}; log tail:\n{}",
                n.name,
                n.starts,
                if again {
                    "started again"
                } else {
                    "left down (it keeps dying)"
                },
                log_tail(&n.log, LOG_TAIL_LINES)
            );
            found.push(line.clone());
            self.crashes.push(line);
            if !again {
                continue;
            }
            if let Err(e) = self.spawn(net, i) {
                self.crashes
                    .push(format!("n{} could not be started again: {e:#}", i + 1));
            }
        }
        found
    }

    pub fn crashes(&self) -> &[String] {
        &self.crashes
    }

    /// The last lines of node i's log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        log_tail(&self.nodes[i].log, lines)
    }

    /// kill -9 every node (the end of a run: nothing to shut down cleanly).
    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut f, &mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
