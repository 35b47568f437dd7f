//! The real-process runner (`weir-sim real`): the simulator's queue
//! workload and checker against real `weir server` processes on real
//! tokio, faulted with kill -9, SIGSTOP/SIGCONT and network partitions.
//!
//! One run, start to verdict:
//! 1. Network (`net`): a namespace per node on a bridge, or loopback when
//!    namespaces cannot be made (partitions then skipped, and said so).
//! 2. Cluster (`procs`): each node's server.properties from the scenario
//!    (`crate::props`, the list the simulator applies) in a fresh run
//!    directory, the release `weir` binary started once per node; the
//!    run waits until Metadata lists every broker (else: crash on start).
//! 3. Topic and workload: `crate::workload`'s producers and consumers,
//!    recording the history through `crate::ctx`, on tokio tasks.
//! 4. Fault phase (`nemesis`), then heal; every node must register again.
//! 5. Healed phase: the workload must make progress.
//! 6. Final read, then `weir_jepsen::analyze` and `crate::outcome::evaluate`
//!    against the scenario's `[expect]`, plus liveness and crashes (a node
//!    that exited without being killed).
//!
//! Real time is read here (tokio's clock): this is a test harness, outside
//! Weir's env seam. The seed decides the fault schedule and the clients'
//! choices; the machine decides the rest, so a rerun of a seed repeats the
//! schedule, not the history.

pub mod cli;
pub mod nemesis;
pub mod net;
pub mod procs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use weir::env::rng::WeirRng;
use weir::env::time::{sleep, timeout, Duration};

use crate::ctx::{Ctx, Phase};
use crate::outcome::{evaluate, RunOutcome, Verdict};
use crate::scenario::{Scenario, WorkloadKind};
use crate::workload::{
    consumer_config, consumer_loop, create_topic, final_read, producer_config, producer_loop,
    ClientEnv,
};
use nemesis::{kind_name, say, FaultTally, RealNemesis, SUPPORTED};
use net::Net;
use procs::{Procs, LOG_TAIL_LINES};

/// How long the cluster may take to list every broker after a start.
const FORM_S_MAX: u64 = 60;
/// How long the topic setup may take.
const SETUP_S_MAX: u64 = 60;
/// How long every node may take to register again after the heal.
const REJOIN_S_MAX: u64 = 30;
/// How long the workers get to notice the stop and finish their op.
const DRAIN_S_MAX: u64 = 30;
/// How often the cluster-forming wait asks.
const FORM_POLL: Duration = Duration::from_millis(250);
const WHO: &str = "harness";

/// How one real run is set up (the scenario says the rest).
#[derive(Clone, Debug)]
pub struct RealOptions {
    pub seed: u64,
    /// The `weir` binary every node runs.
    pub weir_bin: PathBuf,
    /// Try network namespaces (needs root); false: loopback, no partitions.
    pub namespaces: bool,
    /// Keep the run directory (configs, data, node logs, trace) even when
    /// the run passes; a failing run always keeps it.
    pub keep_dir: bool,
}

/// A real run's outcome: the simulator's `RunOutcome` (history, report,
/// verdict; `sim_ms` is real ms) and what the nemesis did.
pub struct RealOutcome {
    pub outcome: RunOutcome,
    /// Faults injected, by kind name.
    pub injected: BTreeMap<&'static str, u32>,
    /// Faults the schedule drew but could not inject, by kind name.
    pub skipped: BTreeMap<&'static str, u32>,
    /// The network the run had (`Net::describe`).
    pub network: String,
    /// The run directory, when kept.
    pub dir: Option<PathBuf>,
}

/// Can the real runner run this scenario? It runs the queue workload with
/// assigning consumers (no group members: their harness is the
/// simulator's) and the faults in `nemesis::SUPPORTED`.
pub fn check_supported(s: &Scenario) -> anyhow::Result<()> {
    let w = &s.workload;
    anyhow::ensure!(
        w.kind == WorkloadKind::Queue,
        "the real runner runs the queue workload only (workload.kind = \"queue\")"
    );
    anyhow::ensure!(
        w.group_consumers == 0,
        "the real runner has no consumer-group members (workload.group_consumers = 0)"
    );
    for (kind, _) in s.faults.weights() {
        anyhow::ensure!(
            SUPPORTED.contains(&kind),
            "fault {kind:?} cannot be injected into real processes; the real runner does {}",
            SUPPORTED
                .iter()
                .map(|k| kind_name(*k))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The directory one run keeps its configs, data and logs in.
fn run_dir(s: &Scenario, seed: u64) -> PathBuf {
    std::env::temp_dir().join(format!(
        "weir-real-{}-seed-{seed}-pid-{}",
        s.name,
        std::process::id()
    ))
}

/// Run one seed of `s` against real processes. Never panics on what the
/// cluster does: a cluster that will not start is a failed run.
pub fn run(s: &Scenario, opts: &RealOptions) -> RealOutcome {
    let started = std::time::Instant::now();
    let broken = |why: String, network: String, dir: Option<PathBuf>| RealOutcome {
        outcome: RunOutcome::broken(opts.seed, why, started.elapsed()),
        injected: BTreeMap::new(),
        skipped: BTreeMap::new(),
        network,
        dir,
    };
    if let Err(e) = check_supported(s) {
        return broken(format!("harness error: {e:#}"), String::new(), None);
    }
    let dir = run_dir(s, opts.seed);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return broken(
            format!("harness error: cannot create {}: {e}", dir.display()),
            String::new(),
            None,
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return broken(format!("harness error: runtime: {e}"), String::new(), None),
    };
    let mut out = rt.block_on(run_async(s, opts, &dir));
    // Workers still stuck in a call are dropped with the runtime.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    out.outcome.wall = started.elapsed();
    if out.outcome.failed() || opts.keep_dir {
        out.dir = Some(dir);
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

async fn run_async(s: &Scenario, opts: &RealOptions, dir: &Path) -> RealOutcome {
    let w = &s.workload;
    let workers = (w.producers + w.consumers) as i64;
    let ctx = Arc::new(Ctx::new(true, workers));
    let mut rng = WeirRng::from_seed(opts.seed);
    let worker_seeds: Vec<u64> = (0..workers).map(|_| rng.next_u64()).collect();
    let nemesis_seed = rng.next_u64();
    let mut result = RealOutcome {
        outcome: RunOutcome::broken(opts.seed, String::new(), Default::default()),
        injected: BTreeMap::new(),
        skipped: BTreeMap::new(),
        network: String::new(),
        dir: None,
    };
    let mut net = match Net::setup(s.cluster.nodes, opts.namespaces) {
        Ok(n) => n,
        Err(e) => {
            result.outcome.verdict = Verdict::Fail(vec![format!("harness error: network: {e:#}")]);
            return result;
        }
    };
    result.network = net.describe();
    say(&ctx, WHO, format!("network: {}", result.network));
    say(
        &ctx,
        WHO,
        format!(
            "starting {} nodes from {} in {}",
            s.cluster.nodes,
            opts.weir_bin.display(),
            dir.display()
        ),
    );
    let mut procs = match Procs::start(s, &net, &opts.weir_bin, dir) {
        Ok(p) => p,
        Err(e) => {
            result.outcome.verdict = Verdict::Fail(vec![format!("crash on start: {e:#}")]);
            return result;
        }
    };
    let bootstrap = net
        .addrs()
        .iter()
        .map(|a| format!("{}:{}", a.host, a.broker_port))
        .collect::<Vec<_>>()
        .join(",");
    let tally: Arc<Mutex<FaultTally>> = Arc::default();
    // Ctrl-C ends the run through the same cleanup as a failure: brokers
    // killed, namespaces deleted, run directory kept.
    let driven = tokio::select! {
        r = drive(
            s,
            &ctx,
            &mut procs,
            &mut net,
            &bootstrap,
            &worker_seeds,
            nemesis_seed,
            tally.clone(),
        ) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
    };
    let FaultTally { injected, skipped } = tally.lock().unwrap_or_else(|e| e.into_inner()).clone();
    result.injected = injected;
    result.skipped = skipped;
    let (liveness, harness_error) = match driven {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    // Workers left running by a failure or an interrupt stop now.
    if !ctx.stopping() {
        ctx.set_phase(Phase::Stop);
    }
    // Nodes that died on their own since the last look count too.
    for crash in procs.reap(&net) {
        say(&ctx, WHO, format!("CRASH: {crash}"));
    }
    procs.kill_all();
    ctx.mark_end();
    let crashes = procs.crashes().to_vec();
    drop(procs);
    drop(net);
    if let Ok(mut f) = std::fs::File::create(dir.join("trace.log")) {
        use std::io::Write as _;
        for line in ctx.take_trace().lines() {
            let _ = writeln!(f, "{line}");
        }
    }
    let history = ctx.take_history().into_ops();
    let report = weir_jepsen::analyze(&history);
    let mut verdict = evaluate(s, &report, &liveness);
    // Crashes and harness errors fail the run even where liveness is off.
    let mut extra: Vec<String> = crashes
        .iter()
        .map(|c| format!("crash: {}", c.lines().next().unwrap_or_default()))
        .collect();
    if let Some(e) = harness_error {
        extra.push(e);
    }
    if !extra.is_empty() {
        verdict = match verdict {
            Verdict::Pass => Verdict::Fail(extra),
            Verdict::Fail(mut r) => {
                r.extend(extra);
                Verdict::Fail(r)
            }
        };
    }
    result.outcome = RunOutcome {
        seed: opts.seed,
        trace_hash: 0,
        trace_events: 0,
        trace: Vec::new(),
        history,
        report: Some(report),
        verdict,
        sim_ms: ctx.elapsed_ms_final(),
        wall: Duration::ZERO,
        acks: ctx.acks.load(Ordering::Relaxed),
    };
    result
}

/// Wait until Metadata lists every node as a broker, reaping nodes that
/// die meanwhile (`crash_fails`: the first such death ends the wait); Err
/// says what was seen, with the nodes' log tails.
async fn wait_for_brokers(
    ctx: &Ctx,
    procs: &mut Procs,
    net: &Net,
    bootstrap: &str,
    budget_s: u64,
    crash_fails: bool,
) -> Result<(), String> {
    let want = procs.nodes.len();
    let deadline = ctx.elapsed_ms() + budget_s * 1000;
    let mut seen = None;
    while ctx.elapsed_ms() < deadline {
        let crashes = procs.reap(net);
        for crash in &crashes {
            say(ctx, WHO, format!("CRASH: {crash}"));
        }
        if crash_fails && !crashes.is_empty() {
            return Err("a node exited on its own (above)".to_string());
        }
        let brokers = crate::probe::metadata(bootstrap, Some(&[]), |m| {
            m.brokers.keys().copied().collect::<Vec<i32>>()
        })
        .await;
        if brokers.as_ref().is_some_and(|b| b.len() == want) {
            return Ok(());
        }
        seen = brokers.or(seen);
        sleep(FORM_POLL).await;
    }
    let tails: Vec<String> = (0..want)
        .map(|i| {
            format!(
                "--- {} log tail:\n{}",
                procs.nodes[i].name,
                procs.log_tail(i, LOG_TAIL_LINES)
            )
        })
        .collect();
    Err(format!(
        "Metadata listed brokers {seen:?} after {budget_s} s, not all {want}\n{}",
        tails.join("\n")
    ))
}

/// Everything between the cluster's start and the final read's end;
/// returns the liveness findings, Err on a harness failure.
#[allow(clippy::too_many_arguments)]
async fn drive(
    s: &Scenario,
    ctx: &Arc<Ctx>,
    procs: &mut Procs,
    net: &mut Net,
    bootstrap: &str,
    worker_seeds: &[u64],
    nemesis_seed: u64,
    tally: Arc<Mutex<FaultTally>>,
) -> anyhow::Result<Vec<String>> {
    let w = &s.workload;
    if let Err(e) = wait_for_brokers(ctx, procs, net, bootstrap, FORM_S_MAX, true).await {
        anyhow::bail!("crash on start: the cluster did not form: {e}");
    }
    say(ctx, WHO, "every broker registered");
    let scenario = Arc::new(s.clone());
    let env = ClientEnv {
        ctx: ctx.clone(),
        scenario: scenario.clone(),
        bootstrap: bootstrap.to_string(),
        producer: producer_config(w)?,
        consumer: consumer_config(w)?,
    };
    let created = timeout(
        Duration::from_secs(SETUP_S_MAX),
        create_topic(env.clone(), scenario.clone()),
    )
    .await;
    if created.is_err() {
        anyhow::bail!("topic not created within {SETUP_S_MAX} s");
    }
    say(ctx, WHO, format!("topic {} created", s.topic.name));

    let mut tasks = Vec::new();
    for (i, seed) in worker_seeds.iter().enumerate() {
        let env = env.clone();
        let task = if i < w.producers as usize {
            tokio::spawn(producer_loop(env, i as i64, *seed))
        } else {
            tokio::spawn(consumer_loop(env, i as i64, *seed))
        };
        tasks.push(task);
    }

    let fault_end = ctx.elapsed_ms() + s.fault_s * 1000;
    let mut nemesis = RealNemesis::new(
        ctx.clone(),
        s.faults.clone(),
        nemesis_seed,
        bootstrap.to_string(),
        s.topic.name.clone(),
        w.keys,
        tally,
    );
    say(ctx, WHO, format!("fault phase: {} s", s.fault_s));
    nemesis.run(procs, net, fault_end).await;
    nemesis.heal_all(procs, net);
    ctx.set_phase(Phase::Healed);
    say(ctx, WHO, format!("healed phase: {} s", s.heal_s));
    let heal_end = ctx.elapsed_ms() + s.heal_s * 1000;
    let mut liveness = Vec::new();
    if let Err(e) = wait_for_brokers(ctx, procs, net, bootstrap, REJOIN_S_MAX, false).await {
        liveness.push(format!(
            "not every node registered again within {REJOIN_S_MAX} s of the heal: {}",
            e.lines().next().unwrap_or_default()
        ));
    }
    let left = heal_end.saturating_sub(ctx.elapsed_ms());
    nemesis.hold(procs, net, Duration::from_millis(left)).await;
    ctx.set_phase(Phase::Stop);
    say(ctx, WHO, "stopping the workload");
    let drained = timeout(Duration::from_secs(DRAIN_S_MAX), async {
        for t in &mut tasks {
            let _ = t.await;
        }
    })
    .await;
    if drained.is_err() {
        for t in &tasks {
            t.abort();
        }
        liveness.push(format!("workers did not stop within {DRAIN_S_MAX} s"));
    }
    if w.producers > 0 && ctx.healed_acks.load(Ordering::Relaxed) == 0 {
        liveness.push("no send was acknowledged in the healed phase".to_string());
    }
    say(ctx, WHO, "final read");
    let complete = tokio::spawn(final_read(env))
        .await
        .map_err(|e| anyhow::anyhow!("final read task: {e}"))?;
    if !complete {
        liveness.push(format!(
            "final read did not reach every partition's end within {} s",
            w.final_read_s
        ));
    }
    say(ctx, WHO, ctx.totals_line());
    ctx.check_garbage()?;
    Ok(liveness)
}
