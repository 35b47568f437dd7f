//! Clocks. Weir reads two, and every caller must pick the right one:
//!
//! - the **wall clock** ([`now_ms`]): milliseconds since the Unix epoch, the
//!   unit Kafka uses for record timestamps, LogAppendTime, time indexes,
//!   retention.ms, segment.ms, offsets retention and ListOffsets by
//!   timestamp. It may jump, forwards or back (an NTP step, a VM migration,
//!   an operator fixing the date): only values that are *about* a moment in
//!   calendar time may come from it.
//! - the **monotonic clock** ([`now`], [`Instant`], [`mono_ms`], `sleep`,
//!   `timeout`): never jumps. Every timing decision (heartbeats, session and
//!   request timeouts, ISR lag, fetch waits, raft ticks, rebalance deadlines,
//!   producer retries, flush and maintenance scheduling) reads this one, so a
//!   wall-clock step can move timestamps but cannot fence a healthy broker,
//!   expire a live session or shrink an ISR.
//!
//! In the simulator both clocks are virtual (madsim intercepts
//! `clock_gettime`), so a seed fixes every timestamp a node observes.
//! madsim has one clock for every node; to model a node whose wall clock is
//! off, the harness sets a per-node wall-clock offset
//! ([`sim_set_wall_offset`]) that [`now_ms`] adds for tasks running on that
//! node. The monotonic clock ignores it. In the tokio build the offset does
//! not exist: real clocks are real.

use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::{sleep, sleep_until, timeout, Duration, Instant};

/// Wall-clock time in milliseconds since the Unix epoch, the unit Kafka uses
/// for record timestamps, segment.ms and retention. It can jump either way:
/// never base a timeout or a deadline on it (use [`now`] or [`mono_ms`]).
pub fn now_ms() -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    real.saturating_add(sim::current_wall_offset_ms())
}

/// A monotonic instant, for measuring elapsed time (timeouts, latency).
pub fn now() -> Instant {
    Instant::now()
}

/// The monotonic clock in milliseconds, for state machines that take time
/// as an integer (`now_ms: i64` parameters) but decide timeouts with it:
/// the group coordinator's sessions and rebalance deadlines, the leader's
/// ISR lag, flush and maintenance schedules.
///
/// Only differences between two readings mean anything. The origin is the
/// process (tokio build) or the simulation run (madsim: virtual time since
/// the runtime started), so a value must never be persisted, sent on the
/// wire or compared with [`now_ms`].
pub fn mono_ms() -> i64 {
    mono::elapsed().as_millis() as i64
}

/// A clock that reads like the wall clock but never jumps: the wall time
/// read once at [`SteadyWallClock::new`], advanced since by the monotonic
/// clock.
///
/// For state machines that keep one `now_ms` for two jobs: deadlines
/// (which must not jump) and timestamps they persist and compare across
/// restarts (which must be wall-clock-like). The group coordinator is one:
/// session and rebalance deadlines, and offset commit timestamps checked
/// against offsets.retention.minutes. The trade-off: after a wall-clock step
/// its readings stay off the wall clock by the step until the process
/// restarts and re-anchors, so a persisted timestamp may be off by that
/// much; for retention measured in days that is the lesser harm than an
/// hour-long step expiring every session at once.
#[derive(Clone, Copy, Debug)]
pub struct SteadyWallClock {
    /// Wall ms minus monotonic ms at creation.
    anchor_ms: i64,
}

impl SteadyWallClock {
    pub fn new() -> Self {
        SteadyWallClock {
            anchor_ms: now_ms().saturating_sub(mono_ms()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.anchor_ms.saturating_add(mono_ms())
    }
}

impl Default for SteadyWallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(madsim))]
mod mono {
    use std::sync::OnceLock;

    use super::{Duration, Instant};

    /// One origin for the whole process: tokio's worker threads must all
    /// read the same clock.
    static ORIGIN: OnceLock<Instant> = OnceLock::new();

    pub(super) fn elapsed() -> Duration {
        let origin = *ORIGIN.get_or_init(Instant::now);
        Instant::now().saturating_duration_since(origin)
    }
}

#[cfg(madsim)]
mod mono {
    use super::Duration;

    /// Virtual time since the current runtime started: deterministic and
    /// fresh for every simulation run. Outside a runtime (a plain #[test])
    /// there is no virtual clock; a process origin stands in.
    pub(super) fn elapsed() -> Duration {
        match madsim::time::TimeHandle::try_current() {
            Some(t) => t.elapsed(),
            None => {
                use std::sync::OnceLock;
                static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
                let origin = *ORIGIN.get_or_init(std::time::Instant::now);
                std::time::Instant::now().saturating_duration_since(origin)
            }
        }
    }
}

#[cfg(not(madsim))]
mod sim {
    /// Real clocks carry no offset.
    pub(super) fn current_wall_offset_ms() -> i64 {
        0
    }
}

/// Per-node wall-clock offsets in the simulator.
///
/// Why a thread-local keyed by madsim `NodeId`: the offsets belong to one
/// simulation run, not to the process. A sweep runs many seeds in one
/// process, each seed on a fresh thread with its own madsim runtime (see
/// weir-sim's `run_seed`), and a madsim runtime runs every task of every
/// node on that one thread; so a thread-local is exactly "this run", a seed
/// never sees a previous seed's offsets, and no lock or global registry is
/// needed. Node ids are madsim's, stable across a node's kill and restart
/// (a machine's clock stays wrong when its process restarts). A harness
/// that runs two simulations on one thread calls
/// [`sim_clear_wall_offsets`] between them.
#[cfg(madsim)]
mod sim {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use madsim::task::NodeId;

    thread_local! {
        static OFFSETS: RefCell<BTreeMap<NodeId, i64>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub(super) fn set(node: NodeId, offset_ms: i64) {
        OFFSETS.with(|o| {
            let mut o = o.borrow_mut();
            if offset_ms == 0 {
                o.remove(&node);
            } else {
                o.insert(node, offset_ms);
            }
        });
    }

    pub(super) fn get(node: NodeId) -> i64 {
        OFFSETS.with(|o| o.borrow().get(&node).copied().unwrap_or(0))
    }

    pub(super) fn clear() {
        OFFSETS.with(|o| o.borrow_mut().clear());
    }

    /// The offset of the node the current task runs on. With no offset set
    /// (every scenario without clock jumps) it never asks madsim which node
    /// is running, so it also works outside a task.
    pub(super) fn current_wall_offset_ms() -> i64 {
        let any = OFFSETS.with(|o| !o.borrow().is_empty());
        if !any || madsim::runtime::Handle::try_current().is_err() {
            return 0;
        }
        get(madsim::plugin::node())
    }
}

/// Simulator only: from now on the wall clock ([`now_ms`]) of every task on
/// madsim node `node` reads `offset_ms` away from the simulation's clock
/// (negative: behind). 0 restores it. The monotonic clock is untouched.
/// Lasts for this simulation run (this thread), across the node's restarts.
#[cfg(madsim)]
pub fn sim_set_wall_offset(node: madsim::task::NodeId, offset_ms: i64) {
    sim::set(node, offset_ms);
}

/// Simulator only: the wall-clock offset of `node` (0 when none is set).
#[cfg(madsim)]
pub fn sim_wall_offset(node: madsim::task::NodeId) -> i64 {
    sim::get(node)
}

/// Simulator only: every node's wall clock back in step.
#[cfg(madsim)]
pub fn sim_clear_wall_offsets() {
    sim::clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn monotonic_clock_moves_with_sleeps() {
        let a = mono_ms();
        let t = now();
        sleep(Duration::from_millis(30)).await;
        let b = mono_ms();
        assert!(b - a >= 29, "mono_ms moved {} ms over a 30 ms sleep", b - a);
        assert!(now().duration_since(t) >= Duration::from_millis(30));
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000, "now_ms {}", now_ms());
    }
}

#[cfg(all(test, madsim))]
mod sim_tests {
    use super::*;
    use madsim::runtime::{Handle, Runtime};

    /// Wall time read on `node`.
    async fn wall_on(node: &madsim::runtime::NodeHandle) -> i64 {
        node.spawn(async { now_ms() }).await.unwrap()
    }

    #[test]
    fn offset_set_read_restore_and_per_node() {
        let rt = Runtime::with_seed_and_config(7, madsim::Config::default());
        rt.block_on(async {
            let h = Handle::current();
            let a = h.create_node().name("a").ip([10, 9, 0, 1].into()).build();
            let b = h.create_node().name("b").ip([10, 9, 0, 2].into()).build();
            let (wa, wb) = (wall_on(&a).await, wall_on(&b).await);
            assert!((wa - wb).abs() <= 1, "nodes start in step: {wa} vs {wb}");

            sim_set_wall_offset(a.id(), 3_600_000);
            assert_eq!(sim_wall_offset(a.id()), 3_600_000);
            assert_eq!(sim_wall_offset(b.id()), 0);
            let (wa, wb) = (wall_on(&a).await, wall_on(&b).await);
            assert!(
                (wa - wb - 3_600_000).abs() <= 1,
                "a jumped an hour: {wa} vs {wb}"
            );
            // The harness's own node is not touched either.
            assert!((now_ms() - wb).abs() <= 1);

            sim_set_wall_offset(a.id(), -7_200_000);
            let (wa, wb) = (wall_on(&a).await, wall_on(&b).await);
            assert!(
                (wb - wa - 7_200_000).abs() <= 1,
                "a went back 2 h: {wa} vs {wb}"
            );

            sim_set_wall_offset(a.id(), 0);
            let (wa, wb) = (wall_on(&a).await, wall_on(&b).await);
            assert!((wa - wb).abs() <= 1, "restored: {wa} vs {wb}");

            sim_set_wall_offset(b.id(), 5);
            sim_clear_wall_offsets();
            assert_eq!(sim_wall_offset(b.id()), 0);
        });
    }

    #[test]
    fn offset_does_not_touch_monotonic_time() {
        let rt = Runtime::with_seed_and_config(8, madsim::Config::default());
        rt.block_on(async {
            let h = Handle::current();
            let a = h.create_node().name("a").ip([10, 9, 0, 1].into()).build();
            let (m0, i0) = a.spawn(async { (mono_ms(), now()) }).await.unwrap();
            sim_set_wall_offset(a.id(), -3_600_000);
            let (m1, i1, w1) = a
                .spawn(async {
                    sleep(Duration::from_millis(100)).await;
                    (mono_ms(), now(), now_ms())
                })
                .await
                .unwrap();
            assert!((100..110).contains(&(m1 - m0)), "mono moved {}", m1 - m0);
            assert!(i1.duration_since(i0) >= Duration::from_millis(100));
            // A sleep on the jumped node still takes its time.
            let before = now();
            a.spawn(sleep(Duration::from_millis(50))).await.unwrap();
            assert!(now().duration_since(before) >= Duration::from_millis(50));
            assert!(w1 < now_ms() - 3_500_000, "the wall clock went back");
            sim_clear_wall_offsets();
        });
    }

    /// The group coordinator's clock reads like the wall clock but a step
    /// of the node's wall clock does not move it.
    #[test]
    fn steady_wall_clock_ignores_steps() {
        let rt = Runtime::with_seed_and_config(10, madsim::Config::default());
        rt.block_on(async {
            let a = Handle::current().create_node().name("a").build();
            let id = a.id();
            let (c0, w0) = a
                .spawn(async {
                    let c = SteadyWallClock::new();
                    (c, c.now_ms())
                })
                .await
                .unwrap();
            assert!((w0 - now_ms()).abs() <= 1, "anchored on the wall clock");
            sim_set_wall_offset(id, 3_600_000);
            let (c1, wall) = a
                .spawn(async move {
                    sleep(Duration::from_millis(1_000)).await;
                    (c0.now_ms(), now_ms())
                })
                .await
                .unwrap();
            assert!((1_000..1_010).contains(&(c1 - w0)), "moved {} ms", c1 - w0);
            assert!(
                wall - c1 > 3_599_000,
                "the wall clock jumped, the steady one not"
            );
            sim_set_wall_offset(id, -3_600_000);
            let c2 = a
                .spawn(async move {
                    sleep(Duration::from_millis(1_000)).await;
                    c0.now_ms()
                })
                .await
                .unwrap();
            assert!((1_000..1_010).contains(&(c2 - c1)), "moved {} ms", c2 - c1);
            // A clock made during the step starts from the stepped wall time.
            let fresh = a
                .spawn(async { SteadyWallClock::new().now_ms() })
                .await
                .unwrap();
            assert!(c2 - fresh > 3_599_000);
            sim_clear_wall_offsets();
        });
    }

    #[test]
    fn a_new_thread_starts_without_offsets() {
        let rt = Runtime::with_seed_and_config(9, madsim::Config::default());
        let id = rt.block_on(async {
            let a = Handle::current().create_node().name("a").build();
            sim_set_wall_offset(a.id(), 1_000);
            a.id()
        });
        let seen = std::thread::spawn(move || sim_wall_offset(id))
            .join()
            .unwrap();
        assert_eq!(seen, 0, "offsets are per simulation run (thread)");
        sim_clear_wall_offsets();
    }
}
