//! `cargo xtask setup|build|run|test|bench|demo`.
//!
//! Every command runs `setup` first, so a fresh machine needs nothing but
//! this repository, rustup with the stable and nightly toolchains, and root.

mod setup;
mod tasks;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "xvrrpd project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent): rust-src and
    /// bpf-linker for the eBPF nightly, cargo-fuzz, keepalived, tcpdump.
    Setup,
    /// Build the workspace with the eBPF datapath embedded.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build and run the agent on this host: `cargo xtask run -- ARGS`.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The whole suite: fmt, clippy (host and eBPF), unit tests, eBPF and
    /// network-namespace tests (root), fuzz smoke runs.
    Test {
        /// Seconds each fuzz target runs.
        #[arg(long, default_value_t = 15)]
        fuzz_seconds: u32,
    },
    /// Benchmarks: datapath, sim, failover (xvrrpd next to keepalived;
    /// `cargo xtask bench failover -- --help` for its options).
    Bench {
        #[arg(value_parser = ["datapath", "sim", "failover"])]
        which: String,
        /// Arguments for the benchmark, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup => setup::run(),
        Command::Build { release } => {
            setup::run()?;
            tasks::build(release)
        }
        Command::Run { release, args } => {
            setup::run()?;
            tasks::run_agent(release, &args)
        }
        Command::Test { fuzz_seconds } => {
            setup::run()?;
            tasks::test(fuzz_seconds)
        }
        Command::Bench { which, args } => {
            setup::run()?;
            tasks::bench(&which, &args)
        }
    }
}
