//! `weir-sim real`: load the scenario, find (or build) the `weir` binary,
//! run one seed or a sweep, print the verdict. The seed comes first and the
//! command that reruns it comes with every verdict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::{write_history_file, RealArgs};
use crate::real::{check_supported, run, RealOptions, RealOutcome};
use crate::scenario::Scenario;

/// The command that reruns `seed` with the same budget and network.
pub fn rerun_command(args: &RealArgs, seed: u64) -> String {
    let mut c = format!(
        "cargo run --release -p weir-sim -- real {} --seed {seed}",
        args.scenario.display()
    );
    if let Some(f) = args.fault_s {
        c.push_str(&format!(" --fault-s {f}"));
    }
    if let Some(h) = args.heal_s {
        c.push_str(&format!(" --heal-s {h}"));
    }
    if args.no_netns {
        c.push_str(" --no-netns");
    }
    c
}

/// A seed nobody chose: the clock's nanoseconds and the pid.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ ((std::process::id() as u64) << 32)) % 1_000_000
}

/// The `weir` binary: `--weir`, else `$WEIR_BIN`, else built by
/// `cargo build --release -p weir --bin weir` into the target directory
/// this runner was built in (so `cargo run --release -p weir-sim -- real`
/// never runs a stale broker), else a `weir` next to this executable.
fn weir_binary(args: &RealArgs) -> Result<PathBuf, String> {
    if let Some(p) = args
        .weir
        .clone()
        .or_else(|| std::env::var_os("WEIR_BIN").map(PathBuf::from))
    {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("no weir binary at {}", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let exe_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // <target>/release/weir-sim: build weir into the same <target>.
    let target = match exe_dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => exe_dir.parent().map(Path::to_path_buf),
        _ => None,
    };
    if workspace.join("Cargo.toml").is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--release", "-q", "-p", "weir", "--bin", "weir"])
            .current_dir(&workspace);
        if let Some(t) = &target {
            cmd.env("CARGO_TARGET_DIR", t);
        }
        // The simulator's flags must not leak into a real build.
        cmd.env_remove("RUSTFLAGS").env_remove("RUSTDOCFLAGS");
        println!("building the release weir binary (cargo build --release -p weir --bin weir)");
        match cmd.status() {
            Ok(s) if s.success() => {
                let dir = target
                    .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| workspace.join("target"));
                let p = dir.join("release").join("weir");
                if p.is_file() {
                    return Ok(p);
                }
                return Err(format!("cargo built weir but it is not at {}", p.display()));
            }
            Ok(s) => return Err(format!("cargo build of weir failed ({s})")),
            Err(e) => println!("cannot run cargo ({e}); looking for a built weir"),
        }
    }
    let sibling = exe_dir.join("weir");
    if sibling.is_file() {
        return Ok(sibling);
    }
    Err("no weir binary: pass --weir PATH or set WEIR_BIN".to_string())
}

fn names(m: &BTreeMap<&'static str, u32>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Print one run's result; true when it passed.
fn report(args: &RealArgs, s: &Scenario, o: &RealOutcome, history: &Path) -> bool {
    let out = &o.outcome;
    match write_history_file(history, &out.history) {
        Ok(()) => println!("history: {} ({} ops)", history.display(), out.history.len()),
        Err(e) => println!("{e}"),
    }
    println!("network: {}", o.network);
    println!("faults injected: {}", names(&o.injected));
    if !o.skipped.is_empty() {
        println!("faults SKIPPED: {}", names(&o.skipped));
    }
    if let Some(r) = &out.report {
        println!(
            "checker: {} ops, {} keys, anomalies {:?}",
            r.ops,
            r.keys,
            r.names()
        );
        if !r.valid
            && r.names()
                .iter()
                .any(|n| !s.expect.allowed.iter().any(|a| a == n))
        {
            println!("{}", r.to_json());
        }
    }
    println!(
        "seed {}: {} acked sends, {:.1} s of run in {:.1} s wall",
        out.seed,
        out.acks,
        out.sim_ms as f64 / 1000.0,
        out.wall.as_secs_f64()
    );
    if let Some(d) = &o.dir {
        println!(
            "run directory (configs, data, node logs, trace): {}",
            d.display()
        );
    }
    if out.failed() {
        println!("FAILED: {}", out.reasons().join("; "));
        println!("rerun: {}", rerun_command(args, out.seed));
        false
    } else {
        println!("PASS");
        true
    }
}

pub fn main(args: RealArgs) -> i32 {
    let mut s = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir-sim: {e:#}");
            return 2;
        }
    };
    if let Err(e) = check_supported(&s) {
        eprintln!("weir-sim: {}: {e:#}", args.scenario.display());
        return 2;
    }
    if let Some(f) = args.fault_s {
        s.fault_s = f;
    }
    if let Some(h) = args.heal_s {
        s.heal_s = h;
    }
    let seeds = match (&args.seeds, args.seed) {
        (Some(r), _) => r.clone(),
        (None, Some(seed)) => seed..seed + 1,
        (None, None) => {
            let seed = fresh_seed();
            seed..seed + 1
        }
    };
    // The seed first, before anything can go wrong.
    if seeds.end - seeds.start == 1 {
        println!("seed {}", seeds.start);
    } else {
        println!("seeds {}..{}", seeds.start, seeds.end);
    }
    println!("rerun: {}", rerun_command(&args, seeds.start));
    let weir_bin = match weir_binary(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("weir-sim: {e}");
            return 2;
        }
    };
    println!(
        "scenario {}: {} nodes, RF {}, min.insync.replicas {}, acks={}, idempotence {}; {} s faults + {} s healed",
        s.name,
        s.cluster.nodes,
        s.topic.replication_factor,
        s.topic.min_insync_replicas,
        s.workload.acks,
        s.workload.idempotence,
        s.fault_s,
        s.heal_s
    );
    let single = seeds.end - seeds.start == 1;
    let mut failures = 0u64;
    let mut tally = crate::outcome::SweepTally::default();
    for seed in seeds.clone() {
        if !single {
            println!("\n=== seed {seed}");
        }
        let opts = RealOptions {
            seed,
            weir_bin: weir_bin.clone(),
            namespaces: !args.no_netns,
            keep_dir: args.keep,
        };
        let o = run(&s, &opts);
        tally.add(&o.outcome);
        let history = match (&args.history, single) {
            (Some(p), true) => p.clone(),
            _ => PathBuf::from("target")
                .join("real-history")
                .join(format!("{}-seed-{seed}.jsonl", s.name)),
        };
        if !report(&args, &s, &o, &history) {
            failures += 1;
        }
    }
    if single {
        return i32::from(failures > 0);
    }
    let sweep_failed = tally.report(&s, seeds.end - seeds.start);
    println!("{} seeds, {failures} failures", seeds.end - seeds.start);
    i32::from(failures > 0 || sweep_failed)
}
