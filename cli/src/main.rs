//! The `reactorium` command.
//!
//! - `reactorium loadtest` runs the load-test bench (see `loadtest/mod.rs` and `benches/README.md`).
//! - `reactorium demo` runs a short tour of the runtime.

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
    match Cli::parse().command {
        Command::Loadtest(args) => loadtest::run(args),
        Command::Demo => demo::run(),
    }
}
