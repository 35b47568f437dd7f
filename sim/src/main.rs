//! `weir-sim run|replay|check-determinism SCENARIO.toml ...`: see cli.rs.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(weir_sim::cli::main(args));
}
