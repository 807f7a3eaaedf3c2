//! The `reactorium` command.
//!
//! - `reactorium loadtest` runs the load-test bench (see `loadtest/mod.rs` and `benches/README.md`).
//! - `reactorium demo` runs a short tour of the runtime.
//!
//! Logs go to stderr through `tracing-subscriber`, filtered by `RUST_LOG` (default `warn`:
//! `RUST_LOG=reactorium=info` shows components starting and stopping, `debug` the
//! rate-limited per-message events; see "Logs" in the library's docs).

mod demo;
mod loadtest;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// reactorium: message-driven components on dedicated reactor threads.
#[derive(Debug, Parser)]
#[command(name = "reactorium", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the load-test bench: each scenario through the public API, beside a bare
    /// crossbeam-channel floor measured in the same run.
    Loadtest(loadtest::Args),
    /// Deploy a small pipeline and show the bus, backpressure, request/reply, the worker pool
    /// and an orderly shutdown.
    Demo,
}

fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Panics the runtime catches are reported as events, not printed twice.
    reactorium::set_panic_hook();
    match Cli::parse().command {
        Command::Loadtest(args) => loadtest::run(args),
        Command::Demo => demo::run(),
    }
}
