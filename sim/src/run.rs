//! One seed of one scenario, start to verdict, in a fresh madsim runtime:
//! build the cluster, create the topic, start the workload, run the nemesis
//! through the fault phase, heal, keep the workload going through the healed
//! phase, stop it, do the final read, then check the history.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use madsim::runtime::{Handle, Runtime};
use weir::env::time::{sleep, timeout, Duration};

use crate::cluster::{client_ip, harness_ip, Cluster};
use crate::ctx::{Ctx, Phase};
use crate::group::GroupHarness;
use crate::nemesis::{Nemesis, Probe};
use crate::outcome::{evaluate, RunOutcome, Verdict};
use crate::scenario::{Scenario, WorkloadKind};
use crate::workload::{
    consumer_config, consumer_loop, create_topic, final_read, producer_config, producer_loop,
    ClientEnv,
};

/// Simulated time the topic setup may take before the run counts as failed.
const SETUP_S_MAX: u64 = 60;
/// Simulated time the workers get to notice the stop and finish their op.
const DRAIN_S_MAX: u64 = 30;

/// What the simulation itself returns (the runtime is gone after it): the
/// shared state, and the liveness findings or the harness error that ended it.
struct SimResult {
    ctx: Arc<Ctx>,
    liveness: anyhow::Result<Vec<String>>,
}

thread_local! {
    /// Where and why the last panic on this thread happened.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replace the default panic printout (a backtrace per failing seed would
/// bury the summary) with a note of the location, which the failure reason
/// then carries. Set RUST_BACKTRACE=1 to keep the default printout too.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        let verbose = std::env::var_os("RUST_BACKTRACE").is_some();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(at));
            if verbose {
                default(info);
            }
        }));
    });
}

/// Stack of the thread a seed runs on.
const SEED_THREAD_STACK_BYTES: usize = 32 << 20;

/// Run one seed. Never panics: a panic inside the simulation (a broken
/// invariant in the broker, say) is a failure of this seed.
///
/// Each seed runs on a thread of its own, so it starts from fresh
/// thread-locals as a fresh process would: state that survives a madsim
/// runtime on its thread (the random source behind an unbiased
/// `tokio::select!`, std's per-thread hash keys) would otherwise make the
/// second run of a seed in one process differ from the first.
pub fn run_seed(scenario: &Scenario, seed: u64, keep_trace: bool) -> RunOutcome {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("seed-{seed}"))
            .stack_size(SEED_THREAD_STACK_BYTES)
            .spawn_scoped(scope, || run_seed_here(scenario, seed, keep_trace))
            .expect("spawn the seed's thread")
            .join()
            .unwrap_or_else(|_| {
                RunOutcome::broken(
                    seed,
                    "the seed's thread panicked outside the simulation".to_string(),
                    std::time::Duration::ZERO,
                )
            })
    })
}

fn run_seed_here(scenario: &Scenario, seed: u64, keep_trace: bool) -> RunOutcome {
    install_panic_hook();
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let wall = std::time::Instant::now();
    let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    // A run that hangs in simulated time is a bug; madsim panics at the limit.
    let limit =
        scenario.planned_s() + scenario.workload.final_read_s + SETUP_S_MAX + DRAIN_S_MAX + 60;
    rt.set_time_limit(Duration::from_secs(limit));
    let s = Arc::new(scenario.clone());
    // The shared state, reachable even when the simulation panics, so a
    // failing seed still shows its trace and history up to the panic.
    let slot: Arc<Mutex<Option<Arc<Ctx>>>> = Arc::default();
    let slot2 = slot.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(simulate(s, keep_trace, slot2))
    }));
    let wall = wall.elapsed();
    match result {
        Ok(sim) => {
            let liveness = match sim.liveness {
                Ok(l) => l,
                Err(e) => vec![format!("harness error: {e:#}")],
            };
            let trace = sim.ctx.take_trace();
            let history = sim.ctx.take_history().into_ops();
            let sim_ms = sim.ctx.elapsed_ms_final();
            let report = weir_jepsen::analyze(&history);
            let mut verdict = evaluate(scenario, &report, &liveness);
            // A harness error or a safety finding fails the run even where
            // liveness is not checked.
            if let Some(e) = liveness.iter().find(|l| l.starts_with("harness error")) {
                if verdict == Verdict::Pass {
                    verdict = Verdict::Fail(vec![e.clone()]);
                }
            }
            RunOutcome {
                seed,
                trace_hash: trace.hash(),
                trace_events: trace.events(),
                trace: trace.lines().to_vec(),
                history,
                report: Some(report),
                verdict,
                sim_ms,
                wall,
                acks: sim.ctx.acks.load(Ordering::Relaxed),
            }
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".to_string());
            let at = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            let mut o = RunOutcome::broken(seed, format!("panic at {at}: {msg}"), wall);
            let ctx = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(ctx) = ctx {
                let trace = ctx.take_trace();
                o.trace_hash = trace.hash();
                o.trace_events = trace.events();
                o.trace = trace.lines().to_vec();
                o.sim_ms = trace.last_ms();
                o.acks = ctx.acks.load(Ordering::Relaxed);
                o.history = ctx.take_history().into_ops();
            }
            o
        }
    }
}

async fn simulate(
    s: Arc<Scenario>,
    keep_trace: bool,
    slot: Arc<Mutex<Option<Arc<Ctx>>>>,
) -> SimResult {
    let w = &s.workload;
    let workers = (w.producers + w.consumers + w.group_consumers) as i64;
    let ctx = Arc::new(Ctx::new(keep_trace, workers));
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx.clone());
    let liveness = simulate_in(s, ctx.clone()).await;
    ctx.mark_end();
    SimResult { ctx, liveness }
}

async fn simulate_in(s: Arc<Scenario>, ctx: Arc<Ctx>) -> anyhow::Result<Vec<String>> {
    let handle = Handle::current();
    let w = &s.workload;
    let workers = (w.producers + w.consumers + w.group_consumers) as i64;
    // Every random choice below comes from madsim's seeded rng.
    let disk_seeds: Vec<u64> = (0..s.cluster.nodes)
        .map(|_| madsim::rand::random::<u64>())
        .collect();
    ctx.trace(
        "harness",
        format!("scenario {} seed {}", s.name, handle.seed()),
    );
    let cluster = Cluster::start(&s, &ctx, &disk_seeds)?;
    let env = ClientEnv {
        ctx: ctx.clone(),
        scenario: s.clone(),
        bootstrap: cluster.bootstrap(),
        producer: producer_config(w)?,
        consumer: consumer_config(w)?,
    };

    let setup = handle.create_node().name("setup").ip(harness_ip(0)).build();
    let (e2, s2) = (env.clone(), s.clone());
    let created = setup
        .spawn(async move { timeout(Duration::from_secs(SETUP_S_MAX), create_topic(e2, s2)).await })
        .await
        .map_err(|e| anyhow::anyhow!("setup task: {e}"))?;
    if created.is_err() {
        anyhow::bail!("topic not created within {SETUP_S_MAX} simulated s");
    }

    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..workers as usize {
        let node = handle
            .create_node()
            .name(format!("client{i}"))
            .ip(client_ip(i))
            .build();
        let seed = madsim::rand::random::<u64>();
        let env = env.clone();
        let task = if w.kind == WorkloadKind::Keyed {
            node.spawn(crate::keyed_workload::worker(env, i, seed))
        } else if i < w.producers as usize {
            node.spawn(producer_loop(env, i as i64, seed))
        } else if i < (w.producers + w.consumers) as usize {
            node.spawn(consumer_loop(env, i as i64, seed))
        } else {
            node.spawn(crate::group::member_loop(env, i as i64, seed))
        };
        clients.push(node);
        tasks.push(task);
    }

    // Group hook: the committed-offsets observer and the member nodes.
    let first_member = (w.producers + w.consumers) as usize;
    let group = GroupHarness::start(
        &env,
        clients[first_member..].iter().map(|n| n.id()).collect(),
    );
    let fault_end = ctx.elapsed_ms() + s.fault_s * 1000;
    let probe = Probe {
        node: handle.create_node().name("probe").ip(harness_ip(2)).build(),
        bootstrap: env.bootstrap.clone(),
        topic: s.topic.name.clone(),
        partitions: w.keys,
    };
    let mut nemesis = Nemesis::new(
        ctx.clone(),
        s.faults.clone(),
        madsim::rand::random(),
        clients,
    )
    .with_probe(probe);
    if let Some(g) = &group {
        nemesis = nemesis.with_group(g.clone());
    }
    nemesis.run(&cluster, fault_end).await;
    nemesis.heal_all(&cluster);
    ctx.set_phase(Phase::Healed);
    sleep(Duration::from_secs(s.heal_s)).await;
    ctx.set_phase(Phase::Stop);
    let drained = timeout(Duration::from_secs(DRAIN_S_MAX), async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    let mut liveness = Vec::new();
    if drained.is_err() {
        liveness.push(format!(
            "workers did not stop within {DRAIN_S_MAX} simulated s"
        ));
    }
    if let Some(g) = &group {
        liveness.extend(g.finish().await);
    }
    if w.producers > 0 && ctx.healed_acks.load(Ordering::Relaxed) == 0 {
        liveness.push("no send was acknowledged in the healed phase".to_string());
    }
    if w.final_read_delay_ms > 0 {
        sleep(Duration::from_millis(w.final_read_delay_ms)).await;
    }
    let reader = handle.create_node().name("final").ip(harness_ip(1)).build();
    let complete = if w.kind == WorkloadKind::Keyed {
        reader.spawn(crate::keyed_workload::final_read(env)).await
    } else {
        reader.spawn(final_read(env)).await
    }
    .map_err(|e| anyhow::anyhow!("final read task: {e}"))?;
    if !complete {
        liveness.push(format!(
            "final read did not reach every partition's end within {} simulated s",
            w.final_read_s
        ));
    }
    ctx.trace("harness", ctx.totals_line());
    ctx.check_garbage()?;
    Ok(liveness)
}

/// Convenience for tests: did this outcome pass?
pub fn passes(o: &RunOutcome) -> bool {
    matches!(o.verdict, Verdict::Pass)
}
