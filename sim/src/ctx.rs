//! State one run shares between the supervisor, the nemesis and every client
//! node: the trace, the history, the phase and the counters the liveness
//! check reads. In the simulator everything runs on madsim's single thread
//! and the mutexes only satisfy `Send`; the real-process runner's workers
//! run on tokio's threads and take them for real (one short critical
//! section per event).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;
use weir::env::time::{now, Instant};

use crate::history::HistoryRecorder;
use crate::trace::Trace;

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The nemesis injects faults.
    Faults,
    /// Everything healed; the system must make progress.
    Healed,
    /// The workload stops; the final read runs.
    Stop,
}

pub struct Ctx {
    start: Instant,
    trace: Mutex<Trace>,
    history: Mutex<HistoryRecorder>,
    phase_tx: watch::Sender<Phase>,
    phase_rx: watch::Receiver<Phase>,
    next_value: AtomicI64,
    next_process: AtomicI64,
    /// Sends acknowledged while the phase was Healed.
    pub healed_acks: AtomicU64,
    pub acks: AtomicU64,
    pub send_errors: AtomicU64,
    pub polls: AtomicU64,
    /// Polled records holding something no producer wrote (a safety failure).
    pub garbage: AtomicU64,
    /// Simulated ms at the end of the run, readable after the runtime is gone.
    end_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a task panicked while recording; the panic is
    // already failing the run, so the data is still good enough to print.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ctx {
    /// The run's totals, as the harness reports them at the end.
    pub fn totals_line(&self) -> String {
        format!(
            "totals: {} sends acknowledged ({} in the healed phase), {} failed or indeterminate, {} polls",
            self.acks.load(Ordering::Relaxed),
            self.healed_acks.load(Ordering::Relaxed),
            self.send_errors.load(Ordering::Relaxed),
            self.polls.load(Ordering::Relaxed)
        )
    }

    /// Polls that returned records no producer wrote fail the run (a safety
    /// finding, not liveness: it fails even where liveness is off).
    pub fn check_garbage(&self) -> anyhow::Result<()> {
        let garbage = self.garbage.load(Ordering::Relaxed);
        if garbage > 0 {
            anyhow::bail!("safety: {garbage} polls returned records no producer wrote");
        }
        Ok(())
    }

    /// `first_free_process`: process numbers below it are the fixed workers.
    pub fn new(keep_trace: bool, first_free_process: i64) -> Ctx {
        let (phase_tx, phase_rx) = watch::channel(Phase::Faults);
        Ctx {
            start: now(),
            trace: Mutex::new(Trace::new(keep_trace)),
            history: Mutex::new(HistoryRecorder::new()),
            phase_tx,
            phase_rx,
            next_value: AtomicI64::new(0),
            next_process: AtomicI64::new(first_free_process),
            healed_acks: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            garbage: AtomicU64::new(0),
            end_ms: AtomicU64::new(0),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        now().duration_since(self.start).as_millis() as u64
    }

    /// Note the end of the run (call inside the simulation).
    pub fn mark_end(&self) {
        self.end_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// Simulated ms the run took, as noted by `mark_end`.
    pub fn elapsed_ms_final(&self) -> u64 {
        self.end_ms.load(Ordering::Relaxed)
    }

    fn elapsed_ns(&self) -> u64 {
        now().duration_since(self.start).as_nanos() as u64
    }

    pub fn trace(&self, who: &str, what: impl AsRef<str>) {
        let at = self.elapsed_ms();
        lock(&self.trace).record(at, who, what.as_ref());
    }

    /// Record into the history with the current simulated time, taken under
    /// the lock so indices and times rise together.
    pub fn history(&self, f: impl FnOnce(&mut HistoryRecorder, u64)) {
        let mut h = lock(&self.history);
        let t = self.elapsed_ns();
        f(&mut h, t);
    }

    pub fn phase(&self) -> Phase {
        *self.phase_rx.borrow()
    }

    pub fn set_phase(&self, phase: Phase) {
        self.trace("harness", format!("phase {phase:?}"));
        let _ = self.phase_tx.send(phase);
    }

    pub fn stopping(&self) -> bool {
        self.phase() == Phase::Stop
    }

    /// Wait until the phase is `Stop`.
    pub async fn stopped(&self) {
        let mut rx = self.phase_rx.clone();
        let _ = rx.wait_for(|p| *p == Phase::Stop).await;
    }

    /// A value never sent before in this run (Jepsen: values unique per key;
    /// here unique overall).
    pub fn next_value(&self) -> i64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }

    /// A process number never used before: a client that crashed comes back
    /// as a new process, as in Jepsen.
    pub fn fresh_process(&self) -> i64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    pub fn take_trace(&self) -> Trace {
        std::mem::replace(&mut *lock(&self.trace), Trace::new(false))
    }

    pub fn take_history(&self) -> HistoryRecorder {
        std::mem::take(&mut *lock(&self.history))
    }
}
