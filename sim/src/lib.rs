//! weir-sim: the deterministic simulator harness.
//!
//! It runs the real Weir broker and client over madsim's simulated TCP, one
//! madsim node per broker (own IP, own SimDisk owned by the harness so it
//! survives a kill) and per client, with a seeded nemesis injecting crashes,
//! pauses, partitions, network spikes and disk faults. The workload is
//! Jepsen's Kafka queue workload; its history goes through weir-jepsen's
//! checkers and each scenario (scenarios/*.toml) says which anomalies it may
//! or must show. Every run is a pure function of (scenario, seed): replaying
//! a seed reproduces it bit for bit, which `check-determinism` verifies by
//! comparing trace hashes.
//!
//! The same workload, history and verdict also run against real `weir
//! server` processes (`real`, the tokio build only): a 3-node cluster on
//! this machine, one network namespace per node, faulted with kill -9,
//! SIGSTOP and blackholed routes from a seeded schedule.
//!
//! **Architecture Invariant:** the simulation only exists under
//! `--cfg madsim`; without it this crate still compiles (scenario parsing,
//! trace, history, workload, verdicts, the real-process runner, and the
//! CLI that re-executes itself with the flag for simulator commands).
//!
//! **Architecture Invariant:** inside the simulation every random choice
//! comes from madsim's seeded rng (directly or through a `WeirRng` seeded
//! from it), no wall clock is read inside a run, and no `HashMap` order
//! decides anything. The real runner draws its fault schedule and client
//! choices from `WeirRng`s seeded from its `--seed`; what the processes
//! then do is up to the OS.

pub mod cli;
pub mod ctx;
pub mod history;
pub mod outcome;
pub mod probe;
pub mod props;
pub mod scenario;
pub mod trace;
pub mod workload;

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod group;
#[cfg(madsim)]
pub mod isolate;
#[cfg(madsim)]
pub mod keyed_workload;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(not(madsim))]
pub mod real;
#[cfg(madsim)]
pub mod run;

pub use outcome::{RunOutcome, Verdict};
#[cfg(madsim)]
pub use run::run_seed;
pub use scenario::Scenario;
