//! `weir server`: run a broker until SIGTERM or Ctrl-C.
//!
//! TEMPORARY: the broker (`weir::broker::Server`) is not on this branch yet;
//! this stub parses the flags and fails with one line. Replaced by the real
//! server on merge.

use super::args::{parse, CliError, Kind};
use super::help_requested;

pub const USAGE: &str = "\
usage: weir server [--config FILE] [--data-dir DIR] [--listen HOST:PORT]

Runs a single broker. Defaults: data in ./weir-data, listening on
127.0.0.1:9092. FILE is a server.properties-style file with Kafka's keys
(log.dirs, listeners, ...); --data-dir and --listen override it. Stops
cleanly on SIGTERM or Ctrl-C. Logs go to stderr (RUST_LOG filters them).";

const SPEC: &[(&str, Kind)] = &[
    ("config", Kind::Value),
    ("data-dir", Kind::Value),
    ("listen", Kind::Value),
];

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    Err(CliError::new(
        "the broker is not built into this binary yet",
    ))
}
