//! The command line:
//!
//! ```text
//! weir-sim run SCENARIO.toml [--seeds A..B]        many seeds; exit 1 on any failure
//! weir-sim replay SCENARIO.toml --seed S [--trace] [--history PATH]
//! weir-sim check-determinism SCENARIO.toml --seed S
//! weir-sim real SCENARIO.toml [--seed S | --seeds A..B] [--fault-s S] [--heal-s S]
//!               [--weir PATH] [--history PATH] [--no-netns] [--keep]
//! ```
//!
//! The simulation exists only when built with `--cfg madsim`. Built without
//! it, the binary re-executes itself through
//! `cargo run --release -p weir-sim -- <same args>` with
//! `RUSTFLAGS="--cfg madsim"` and `CARGO_TARGET_DIR=<workspace>/target/madsim`,
//! so `cargo run --release -p weir-sim -- run ...` just works.
//!
//! `real` is the other way round: it runs real `weir server` processes on
//! real tokio (`crate::real`), so it runs in the build without the flag and
//! never re-executes itself; the simulator build refuses it.

use std::ops::Range;
use std::path::PathBuf;

pub const USAGE: &str = "usage:
  weir-sim run SCENARIO.toml [--seeds A..B]
  weir-sim replay SCENARIO.toml --seed S [--trace] [--history PATH]
  weir-sim check-determinism SCENARIO.toml --seed S
  weir-sim real SCENARIO.toml [--seed S | --seeds A..B] [--fault-s S] [--heal-s S]
                [--weir PATH] [--history PATH] [--no-netns] [--keep]";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        scenario: PathBuf,
        seeds: Range<u64>,
    },
    Replay {
        scenario: PathBuf,
        seed: u64,
        trace: bool,
        history: Option<PathBuf>,
    },
    CheckDeterminism {
        scenario: PathBuf,
        seed: u64,
    },
    Real(RealArgs),
}

/// `weir-sim real`: one seed (`--seed`, else a fresh one) or a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealArgs {
    pub scenario: PathBuf,
    pub seed: Option<u64>,
    pub seeds: Option<Range<u64>>,
    /// Overrides the scenario's fault_s / heal_s (real seconds).
    pub fault_s: Option<u64>,
    pub heal_s: Option<u64>,
    /// The `weir` binary; default: build it with cargo next to this one.
    pub weir: Option<PathBuf>,
    /// Where a single seed's history goes.
    pub history: Option<PathBuf>,
    /// Loopback instead of network namespaces (partitions skipped).
    pub no_netns: bool,
    /// Keep the run directory of a passing run.
    pub keep: bool,
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let bad = || format!("--seeds takes A..B or N (meaning 0..N), got '{s}'");
    match s.split_once("..") {
        Some((a, b)) => {
            let a: u64 = a.parse().map_err(|_| bad())?;
            let b: u64 = b.parse().map_err(|_| bad())?;
            if b <= a {
                return Err(bad());
            }
            Ok(a..b)
        }
        None => {
            let n: u64 = s.parse().map_err(|_| bad())?;
            Ok(0..n)
        }
    }
}

fn parse_u64(name: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>().map_err(|_| format!("bad {name} '{v}'"))
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let cmd = it.next().ok_or("missing command")?.clone();
    let mut scenario = None;
    let mut seeds = None;
    let mut seed = None;
    let mut trace = false;
    let mut history = None;
    let mut real = RealArgs {
        scenario: PathBuf::new(),
        seed: None,
        seeds: None,
        fault_s: None,
        heal_s: None,
        weir: None,
        history: None,
        no_netns: false,
        keep: false,
    };
    // Options only `real` takes, seen with another command.
    let mut real_only = None;
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--seeds" => seeds = Some(parse_seeds(&value("--seeds")?)?),
            "--seed" => seed = Some(parse_u64("--seed", &value("--seed")?)?),
            "--trace" => trace = true,
            "--history" => history = Some(PathBuf::from(value("--history")?)),
            "--fault-s" => {
                real.fault_s = Some(parse_u64("--fault-s", &value("--fault-s")?)?);
                real_only = Some("--fault-s");
            }
            "--heal-s" => {
                real.heal_s = Some(parse_u64("--heal-s", &value("--heal-s")?)?);
                real_only = Some("--heal-s");
            }
            "--weir" => {
                real.weir = Some(PathBuf::from(value("--weir")?));
                real_only = Some("--weir");
            }
            "--no-netns" => {
                real.no_netns = true;
                real_only = Some("--no-netns");
            }
            "--keep" => {
                real.keep = true;
                real_only = Some("--keep");
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other if scenario.is_none() => scenario = Some(PathBuf::from(other)),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let scenario = scenario.ok_or("missing SCENARIO.toml")?;
    if cmd == "real" {
        if seed.is_some() && seeds.is_some() {
            return Err("real takes --seed or --seeds, not both".to_string());
        }
        if trace {
            return Err("real always keeps its trace (in the run directory)".to_string());
        }
        return Ok(Command::Real(RealArgs {
            scenario,
            seed,
            seeds,
            history,
            ..real
        }));
    }
    if let Some(opt) = real_only {
        return Err(format!("{opt} is an option of real only"));
    }
    let seeds = seeds.unwrap_or(0..100);
    match cmd.as_str() {
        "run" => Ok(Command::Run { scenario, seeds }),
        "replay" => Ok(Command::Replay {
            scenario,
            seed: seed.ok_or("replay needs --seed S")?,
            trace,
            history,
        }),
        "check-determinism" => Ok(Command::CheckDeterminism {
            scenario,
            seed: seed.ok_or("check-determinism needs --seed S")?,
        }),
        other => Err(format!("unknown command '{other}'")),
    }
}

/// The command that replays one seed, printed with every failure.
pub fn replay_command(scenario: &std::path::Path, seed: u64) -> String {
    format!(
        "cargo run --release -p weir-sim -- replay {} --seed {seed} --trace",
        scenario.display()
    )
}

/// Entry point; returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-sim: {e}\n{USAGE}");
            return 2;
        }
    };
    execute(cmd, &args)
}

/// Write `ops` as a JSON-lines history file, creating its directory.
pub fn write_history_file(path: &std::path::Path, ops: &[weir_jepsen::Op]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let f =
        std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    weir_jepsen::write_history(std::io::BufWriter::new(f), ops)
        .map_err(|e| format!("cannot write history {}: {e}", path.display()))
}

#[cfg(not(madsim))]
fn execute(cmd: Command, args: &[String]) -> i32 {
    match cmd {
        Command::Real(r) => crate::real::cli::main(r),
        _ => reexec(args),
    }
}

/// Re-run this command through cargo with the simulator cfg on.
#[cfg(not(madsim))]
fn reexec(args: &[String]) -> i32 {
    const GUARD: &str = "WEIR_SIM_REEXEC";
    if std::env::var_os(GUARD).is_some() {
        eprintln!("weir-sim: re-executed but still built without --cfg madsim; giving up");
        return 2;
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = workspace.join("target").join("madsim");
    eprintln!("weir-sim: built without --cfg madsim; re-running under the simulator build");
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["run", "--release", "-q", "-p", "weir-sim", "--"])
        .args(args)
        .env("RUSTFLAGS", "--cfg madsim")
        .env("CARGO_TARGET_DIR", target)
        .env(GUARD, "1")
        .status();
    match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("weir-sim: cannot run cargo: {e}");
            2
        }
    }
}

#[cfg(madsim)]
fn execute(cmd: Command, _args: &[String]) -> i32 {
    use crate::scenario::Scenario;

    // RUST_LOG=debug shows the broker's, the client's and madsim's own logs.
    if std::env::var_os("RUST_LOG").is_some() {
        madsim::runtime::init_logger();
    }
    let load = |p: &PathBuf| match Scenario::load(p) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("weir-sim: {e:#}");
            None
        }
    };
    match cmd {
        Command::Run { scenario, seeds } => {
            let Some(s) = load(&scenario) else { return 2 };
            sim::run_many(&s, &scenario, seeds)
        }
        Command::Replay {
            scenario,
            seed,
            trace,
            history,
        } => {
            let Some(s) = load(&scenario) else { return 2 };
            sim::replay(&s, &scenario, seed, trace, history)
        }
        Command::CheckDeterminism { scenario, seed } => {
            let Some(s) = load(&scenario) else { return 2 };
            sim::check_determinism(&s, seed)
        }
        Command::Real(_) => {
            eprintln!(
                "weir-sim: real runs real processes on real tokio; use the build without \
                 --cfg madsim (cargo run --release -p weir-sim -- real ...)"
            );
            2
        }
    }
}

#[cfg(madsim)]
mod sim {
    use std::ops::Range;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::replay_command;
    // Every seed runs in a child forked for it: see isolate.rs for why.
    use crate::isolate::run_seed_forked;
    use crate::scenario::Scenario;

    pub fn run_many(s: &Scenario, path: &Path, seeds: Range<u64>) -> i32 {
        println!(
            "scenario {} seeds {}..{} ({} simulated s each + final read)",
            s.name,
            seeds.start,
            seeds.end,
            s.planned_s()
        );
        let n = seeds.end - seeds.start;
        let started = std::time::Instant::now();
        let mut failures = 0u64;
        let mut sim_ms = 0u64;
        let mut wall = Duration::ZERO;
        let mut acks = 0u64;
        let mut tally = crate::outcome::SweepTally::default();
        for seed in seeds {
            let o = run_seed_forked(s, seed, false);
            tally.add(&o);
            sim_ms += o.sim_ms;
            wall += o.wall;
            acks += o.acks;
            if o.failed() {
                failures += 1;
                println!(
                    "seed {seed} FAILED: {}\n  replay: {}",
                    o.reasons().join("; "),
                    replay_command(path, seed)
                );
            }
        }
        let sweep_failed = tally.report(s, n);
        // Compression counts the simulations alone; seeds per hour counts
        // everything (checking, printing) the command did.
        let sim_wall_s = wall.as_secs_f64().max(1e-9);
        let total_s = started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "{n} seeds, {failures} failures, {:.0} simulated s per wall s ({:.0} seeds per hour, {} acked sends)",
            sim_ms as f64 / 1000.0 / sim_wall_s,
            n as f64 / total_s * 3600.0,
            acks
        );
        i32::from(failures > 0 || sweep_failed)
    }

    pub fn replay(
        s: &Scenario,
        path: &Path,
        seed: u64,
        trace: bool,
        history: Option<PathBuf>,
    ) -> i32 {
        println!("seed {seed}");
        let o = run_seed_forked(s, seed, trace);
        if trace {
            for line in &o.trace {
                println!("{line}");
            }
        }
        let history_path = history.unwrap_or_else(|| {
            PathBuf::from("target")
                .join("sim-history")
                .join(format!("{}-seed-{seed}.jsonl", s.name))
        });
        match super::write_history_file(&history_path, &o.history) {
            Ok(()) => println!(
                "history: {} ({} ops)",
                history_path.display(),
                o.history.len()
            ),
            Err(e) => eprintln!("{e}"),
        }
        if let Some(r) = &o.report {
            println!(
                "checker: {} ops, {} keys, anomalies {:?}",
                r.ops,
                r.keys,
                r.names()
            );
            if !r.valid {
                println!("{}", r.to_json());
            }
        }
        println!(
            "trace hash {:#018x} ({} events), {:.1} simulated s in {:.2} wall s, {} acked sends",
            o.trace_hash,
            o.trace_events,
            o.sim_ms as f64 / 1000.0,
            o.wall.as_secs_f64(),
            o.acks
        );
        if o.failed() {
            println!("FAILED: {}", o.reasons().join("; "));
            println!("replay: {}", replay_command(path, seed));
            1
        } else {
            println!("PASS");
            0
        }
    }

    pub fn check_determinism(s: &Scenario, seed: u64) -> i32 {
        println!("seed {seed}");
        // Keep both traces: a divergence is shown at its first line.
        let a = run_seed_forked(s, seed, true);
        let b = run_seed_forked(s, seed, true);
        println!(
            "run 1: trace hash {:#018x} ({} events); run 2: trace hash {:#018x} ({} events)",
            a.trace_hash, a.trace_events, b.trace_hash, b.trace_events
        );
        if a.trace_hash == b.trace_hash && a.trace_events == b.trace_events {
            println!("deterministic");
            0
        } else {
            println!("NOT deterministic: seed {seed} gave two different traces");
            let first = a.trace.iter().zip(&b.trace).position(|(x, y)| x != y);
            let at = first.unwrap_or(a.trace.len().min(b.trace.len()));
            println!("first difference at trace line {at}:");
            for (i, (x, y)) in a
                .trace
                .iter()
                .zip(&b.trace)
                .enumerate()
                .skip(at.saturating_sub(3))
                .take(6)
            {
                println!("  {i}: run 1: {x}\n  {i}: run 2: {y}");
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_the_three_commands() {
        assert_eq!(
            parse(&args("run scenarios/a.toml --seeds 5..9")).unwrap(),
            Command::Run {
                scenario: "scenarios/a.toml".into(),
                seeds: 5..9
            }
        );
        assert_eq!(
            parse(&args("replay a.toml --seed 3 --trace")).unwrap(),
            Command::Replay {
                scenario: "a.toml".into(),
                seed: 3,
                trace: true,
                history: None
            }
        );
        assert!(parse(&args("check-determinism a.toml")).is_err());
        assert!(parse(&args("run a.toml --seeds 9..5")).is_err());
        assert!(parse(&args("frob a.toml")).is_err());
        assert_eq!(
            parse(&args("run a.toml --seeds 20")).unwrap(),
            Command::Run {
                scenario: "a.toml".into(),
                seeds: 0..20
            }
        );
        assert!(parse(&args("run a.toml --fault-s 3")).is_err());
    }

    #[test]
    fn parses_real() {
        let Command::Real(r) = parse(&args(
            "real r.toml --seed 7 --fault-s 20 --heal-s 5 --no-netns --weir w",
        ))
        .unwrap() else {
            panic!("not real")
        };
        assert_eq!(r.scenario, PathBuf::from("r.toml"));
        assert_eq!((r.seed, r.seeds.clone()), (Some(7), None));
        assert_eq!((r.fault_s, r.heal_s), (Some(20), Some(5)));
        assert!(r.no_netns && !r.keep);
        assert_eq!(r.weir, Some(PathBuf::from("w")));
        let Command::Real(r) = parse(&args("real r.toml --seeds 3..5 --keep")).unwrap() else {
            panic!("not real")
        };
        assert_eq!((r.seed, r.seeds), (None, Some(3..5)));
        assert!(r.keep);
        assert!(parse(&args("real r.toml --seed 1 --seeds 3")).is_err());
        assert!(parse(&args("real r.toml --trace")).is_err());
    }
}
