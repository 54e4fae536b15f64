//! The `chimewatch` binary: parses the command line and configuration once, then hands typed settings to a command.

mod aws;
mod cli;
mod commands;
mod config;
mod simulate;

use clap::Parser;

/// mimalloc rather than glibc's malloc: in a 30-minute soak of `up`, glibc kept 440 MB resident of which 6 MB was in
/// use (what the archiver's file cuts had freed stayed in its per-thread arenas); see RELIABILITY.md, "Soak".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr so `stream dump` can own stdout.
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
