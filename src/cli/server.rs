//! `weir server`: run a broker until SIGTERM or Ctrl-C.

use std::path::Path;
use std::sync::Arc;

use super::args::{parse, CliError, Kind};
use super::help_requested;
use crate::broker::Server;
use crate::config::ServerConfig;
use crate::env::{Disk, RealDisk};

pub const USAGE: &str = "\
usage: weir server [--config FILE] [--data-dir DIR] [--listen HOST:PORT]

Runs one node. With no FILE it is a single-node cluster (broker and
controller in one process, data in ./weir-data, clients on 127.0.0.1:9092).
FILE is a server.properties-style file with Kafka's keys (node.id,
process.roles, listeners, log.dirs, controller.quorum.voters, ...); with
controller.quorum.voters the node joins that cluster. --data-dir and
--listen (the client listener) override the file. SIGTERM or Ctrl-C moves
this node's leaderships away, then stops it cleanly. Logs go to stderr
(RUST_LOG filters them).";

const SPEC: &[(&str, Kind)] = &[
    ("config", Kind::Value),
    ("data-dir", Kind::Value),
    ("listen", Kind::Value),
];

/// Config files are small; a bigger one is a mistake (wrong path).
const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

pub async fn run(args: &[String]) -> Result<(), CliError> {
    let p = parse(args, SPEC)?;
    if help_requested(&p, USAGE) {
        return Ok(());
    }
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let mut config = match p.value("config") {
        Some(path) => {
            let text = read_config_file(disk.as_ref(), path)?;
            ServerConfig::parse_properties(&text)
                .map_err(|e| CliError::new(format!("config file {path}: {e}")))?
        }
        None => ServerConfig::default_single_node(),
    };
    if let Some(dir) = p.value("data-dir") {
        config
            .set("log.dirs", dir)
            .map_err(|e| CliError::new(format!("--data-dir {dir}: {e}")))?;
    }
    if let Some(addr) = p.value("listen") {
        // Keep the controller listener: --listen names the client one.
        let listeners = match config.controller_listen_addr() {
            Some(c) => {
                let name = config
                    .controller_listener_names
                    .split(',')
                    .next()
                    .unwrap_or("CONTROLLER")
                    .trim()
                    .to_string();
                format!("PLAINTEXT://{addr},{name}://{c}")
            }
            None => format!("PLAINTEXT://{addr}"),
        };
        config
            .set("listeners", &listeners)
            .map_err(|e| CliError::new(format!("--listen {addr}: {e}")))?;
    }
    let server = Server::start(config, disk)
        .await
        .map_err(|e| CliError::new(format!("cannot start server: {e:#}")))?;
    tracing::info!(addr = %server.local_addr(), "weir server started");
    crate::env::signal::shutdown_requested().await;
    tracing::info!("shutdown requested");
    server
        .shutdown()
        .await
        .map_err(|e| CliError::new(format!("shutdown failed: {e:#}")))?;
    tracing::info!("weir server stopped");
    Ok(())
}

fn read_config_file(disk: &dyn Disk, path: &str) -> Result<String, CliError> {
    let err = |e: std::io::Error| CliError::new(format!("cannot read config file {path}: {e}"));
    let file = disk
        .open(Path::new(path), crate::env::disk::OpenMode::EXISTING)
        .map_err(err)?;
    let len = file.len().map_err(err)?;
    if len > CONFIG_FILE_BYTES_MAX {
        return Err(CliError::new(format!(
            "config file {path} is {len} bytes; more than {CONFIG_FILE_BYTES_MAX} is not a config file"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).map_err(err)?;
    String::from_utf8(buf).map_err(|_| CliError::new(format!("config file {path} is not UTF-8")))
}
