//! `cargo xtask setup|build|run|test|bench|dist`.
//!
//! Every command runs `setup` first, so a fresh machine needs nothing but
//! this repository, rustup with the stable and nightly toolchains, and root.

mod dist;
mod setup;
mod tasks;
mod util;

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
    /// Benchmarks: datapath, sim, failover, chaos (xvrrpd next to
    /// keepalived; `cargo xtask bench failover -- --help` and
    /// `cargo xtask bench chaos -- --help` for their options), vm-attach
    /// (attach modes on virtio-net in qemu guests; `-- --kernel 6.1`).
    Bench {
        #[arg(value_parser = ["datapath", "sim", "failover", "chaos", "vm-attach"])]
        which: String,
        /// Arguments for the benchmark, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The VM matrix: the Debian package under systemd in qemu guests, on
    /// Debian's 5.10, 6.1 and 6.12 kernels (root; images cached in
    /// /var/cache/xvrrpd-vmtest); writes target/vmtest/matrix.md.
    Vmtest {
        /// Only this kernel series (repeatable), e.g. `--kernel 6.1`.
        #[arg(long, value_name = "SERIES")]
        kernel: Vec<String>,
    },
    /// Man pages and shell completions into target/dist/; with --deb also
    /// the Debian package (eBPF datapath embedded).
    Dist {
        /// Build target/dist/xvrrpd_*.deb with cargo-deb (installed if missing).
        #[arg(long)]
        deb: bool,
        /// Root: install the package with dpkg, check it, remove it (implies --deb).
        #[arg(long)]
        check_install: bool,
        /// Package even if the binary carries no eBPF object (to test the
        /// packaging itself; such a package runs on the raw-socket fallback).
        #[arg(long)]
        allow_without_ebpf: bool,
    },
    /// Three routers running xvrrpd and a client in network namespaces;
    /// the master is crashed, stopped, cut off and made unhealthy in turn,
    /// and every failover is measured (root; about 30 s).
    Demo {
        /// Shorter pauses, the same steps (about 10 s).
        #[arg(long)]
        quick: bool,
        /// Exit 1 if a take-over is later than the protocol's bound + 2 ms.
        #[arg(long)]
        strict: bool,
        /// Where to keep the logs (default: /tmp/xvrrpd-demo/<time>).
        #[arg(long, value_name = "DIR")]
        logs: Option<std::path::PathBuf>,
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
        Command::Vmtest { kernel } => {
            setup::run()?;
            tasks::vmtest(&kernel)
        }
        Command::Dist {
            deb,
            check_install,
            allow_without_ebpf,
        } => {
            // Man pages and completions need nothing installed; the package
            // needs the eBPF toolchain.
            if deb || check_install {
                setup::run()?;
            }
            dist::run(deb, check_install, allow_without_ebpf)
        }
        Command::Demo {
            quick,
            strict,
            logs,
        } => {
            tasks::demo_needs_root()?;
            setup::run()?;
            let mut args = Vec::new();
            if quick {
                args.push("--quick".into());
            }
            if strict {
                args.push("--strict".into());
            }
            if let Some(dir) = logs {
                args.push("--logs".into());
                args.push(dir.into_os_string());
            }
            tasks::demo(&args)
        }
    }
}
