//! The `weir` binary: see `weir::cli` for the subcommands.

/// A request that lies about an array's length must not abort the process:
/// see `weir::env::alloc`.
#[global_allocator]
static ALLOC: weir::env::alloc::GuardedAlloc = weir::env::alloc::GuardedAlloc;

fn exit_with(result: Result<(), weir::cli::CliError>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            // One line, always: flatten any embedded newlines.
            eprintln!("error: {}", e.0.replace('\n', " "));
            std::process::exit(1)
        }
    }
}

#[cfg(not(madsim))]
fn main() {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => exit_with(Err(weir::cli::CliError::new(format!(
            "cannot start runtime: {e}"
        )))),
    };
    let result = runtime.block_on(weir::cli::run(args));
    // Don't wait for background tasks (stdin reader, idle connections).
    runtime.shutdown_background();
    exit_with(result)
}

#[cfg(madsim)]
#[tokio::main]
async fn main() {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    exit_with(weir::cli::run(args).await)
}

/// Logs to stderr, filtered by RUST_LOG (default: info for the server, warn
/// for the client tools so their stdout/stderr stay clean).
fn init_tracing() {
    let default = if std::env::args().nth(1).as_deref() == Some("server") {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
