//! One seed in a child process forked for it, so a sweep replays bit for bit.
//!
//! Some state outlives a madsim runtime in ways no thread can reset: tokio
//! seeds the random source behind an unbiased `tokio::select!` from a
//! process-wide counter (`loom::std::rand::seed`), bumped once per thread
//! that first uses it. In one process the n-th seed of a sweep therefore
//! picks select branches differently from the same seed replayed alone, and
//! a failure found by `run` might not reproduce with `replay`. A child
//! forked from the command's single-threaded process starts from the
//! parent's counter every time, exactly as `replay` does in its own fresh
//! process, so the two agree.
//!
//! Only the CLI uses this: forking a multi-threaded process (the test
//! harness) could leave a lock held by a thread that does not exist in the
//! child. Tests run seeds in-process with [`crate::run_seed`], which gives
//! correct verdicts but not cross-run bit-for-bit equality.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outcome::{RunOutcome, Verdict};
use crate::run::run_seed;
use crate::scenario::Scenario;

/// A [`RunOutcome`] as the child sends it through the pipe. The history
/// travels in the Jepsen JSON-lines form; the report is recomputed from it
/// (the checkers are pure functions of the history).
#[derive(Serialize, Deserialize)]
struct Wire {
    seed: u64,
    trace_hash: u64,
    trace_events: u64,
    trace: Vec<String>,
    history: String,
    had_report: bool,
    /// None for a pass, the reasons for a failure.
    failure: Option<Vec<String>>,
    sim_ms: u64,
    wall_ns: u64,
    acks: u64,
}

impl Wire {
    fn from_outcome(o: &RunOutcome) -> Wire {
        let mut history = Vec::new();
        weir_jepsen::write_history(&mut history, &o.history)
            .expect("a history serializes into memory");
        Wire {
            seed: o.seed,
            trace_hash: o.trace_hash,
            trace_events: o.trace_events,
            trace: o.trace.clone(),
            history: String::from_utf8(history).expect("the history is JSON text"),
            had_report: o.report.is_some(),
            failure: match &o.verdict {
                Verdict::Pass => None,
                Verdict::Fail(r) => Some(r.clone()),
            },
            sim_ms: o.sim_ms,
            wall_ns: o.wall.as_nanos() as u64,
            acks: o.acks,
        }
    }

    fn into_outcome(self) -> Result<RunOutcome, String> {
        let history = weir_jepsen::parse_history(&self.history)
            .map_err(|e| format!("the child's history does not parse: {e}"))?;
        let report = self.had_report.then(|| weir_jepsen::analyze(&history));
        Ok(RunOutcome {
            seed: self.seed,
            trace_hash: self.trace_hash,
            trace_events: self.trace_events,
            trace: self.trace,
            history,
            report,
            verdict: match self.failure {
                None => Verdict::Pass,
                Some(r) => Verdict::Fail(r),
            },
            sim_ms: self.sim_ms,
            wall: Duration::from_nanos(self.wall_ns),
            acks: self.acks,
        })
    }
}

/// Run one seed in a forked child and return its outcome. A child that dies
/// without answering (a signal, an abort) is a failure of the seed.
///
/// Call only from a single-threaded process (the CLI).
pub fn run_seed_forked(scenario: &Scenario, seed: u64, keep_trace: bool) -> RunOutcome {
    let started = std::time::Instant::now();
    let broken = |why: String| RunOutcome::broken(seed, why, started.elapsed());
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array we own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return broken(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // SAFETY: the caller is single-threaded, so the child inherits no lock
    // held by another thread; it only runs the seed and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return broken(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the read end belongs to the parent; the write end is ours.
        unsafe { libc::close(read_fd) };
        let outcome = run_seed(scenario, seed, keep_trace);
        let bytes =
            serde_json::to_vec(&Wire::from_outcome(&outcome)).expect("an outcome serializes");
        let code = i32::from(write_all(write_fd, &bytes).is_err());
        // SAFETY: _exit skips atexit handlers and destructors that belong
        // to the parent's copy of the process.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the write end belongs to the child now; we own the read end.
    unsafe { libc::close(write_fd) };
    let mut pipe = unsafe { std::fs::File::from_raw_fd(read_fd) };
    let mut bytes = Vec::new();
    let read = pipe.read_to_end(&mut bytes);
    let mut status = 0;
    // SAFETY: waiting for the child we forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if let Err(e) = read {
        return broken(format!("reading the seed's process: {e}"));
    }
    if bytes.is_empty() {
        let how = if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(status))
        };
        return broken(format!("the seed's process died without a verdict ({how})"));
    }
    match serde_json::from_slice::<Wire>(&bytes) {
        Ok(w) => w.into_outcome().unwrap_or_else(broken),
        Err(e) => broken(format!("the seed's process sent a bad verdict: {e}")),
    }
}

fn write_all(fd: i32, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: writing from a live slice to an fd we own.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}
