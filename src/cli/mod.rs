//! The `weir` command line: one file per subcommand, flags after Kafka's own
//! tools (kafka-topics.sh, kafka-console-producer.sh, ...). Every failure is
//! one `error: ...` line on stderr and a non-zero exit.

pub mod args;
pub mod configs;
pub mod consume;
pub mod groups;
pub mod perf;
pub mod produce;
pub mod server;
pub mod topics;

pub use args::CliError;

pub const USAGE: &str = "\
usage: weir <command> [options]

commands:
  server     run a broker
  topics     create, list, describe, alter and delete topics
  produce    write stdin lines to a topic
  consume    print records of a topic
  configs    describe and alter topic or broker configs
  groups     list, describe, reset offsets of and delete consumer groups
  perf       produce/consume load tests (perf produce | perf consume)

Run `weir <command> --help` for the options of a command.";

/// Run the CLI with `args` (without the program name).
pub async fn run(args: Vec<String>) -> Result<(), CliError> {
    let Some(command) = args.first() else {
        println!("{USAGE}");
        return Err(CliError::new("no command given"));
    };
    let rest = &args[1..];
    match command.as_str() {
        "server" => server::run(rest).await,
        "topics" => topics::run(rest).await,
        "produce" => produce::run(rest).await,
        "consume" => consume::run(rest).await,
        "configs" => configs::run(rest).await,
        "groups" => groups::run(rest).await,
        "perf" => perf::run(rest).await,
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "--version" | "version" => {
            println!("weir {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => Err(CliError::new(format!(
            "unknown command '{other}' (try `weir --help`)"
        ))),
    }
}

/// Shared by subcommands: print `usage` and stop when --help was given.
pub(crate) fn help_requested(parsed: &args::Parsed, usage: &str) -> bool {
    if parsed.help {
        println!("{usage}");
    }
    parsed.help
}
