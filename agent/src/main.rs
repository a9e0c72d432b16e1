//! The `xvrrpd` binary: daemon, config check and status client.
//!
//! keepalived's own flags work (`-f FILE`, `-n`, `-t`, `-l`, `-D`,
//! `--version`) so existing unit files and scripts can switch binaries.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/keepalived/keepalived.conf";

#[derive(Parser, Debug)]
#[command(
    name = "xvrrpd",
    version,
    about = "eBPF-accelerated VRRP failover daemon (reads keepalived.conf)"
)]
struct Cli {
    /// Configuration file (keepalived syntax).
    #[arg(short = 'f', long = "use-file", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit (keepalived `-t`).
    #[arg(short = 't', long = "config-test")]
    config_test: bool,
    /// Stay in the foreground (keepalived `-n`); xvrrpd never daemonizes.
    #[arg(short = 'n', long = "dont-fork")]
    dont_fork: bool,
    /// Log to the console (keepalived `-l`): accepted, logs always go to stderr.
    #[arg(short = 'l', long = "log-console")]
    log_console: bool,
    /// Detailed log messages (keepalived `-D`).
    #[arg(short = 'D', long = "log-detail")]
    log_detail: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file: warnings and errors with their locations.
    ///
    /// Exit status: 0 the file runs cleanly (notes may be printed),
    /// 1 warnings only, 2 errors (or the file cannot be read).
    #[command(
        after_help = "Exit status:\n  0  the file runs cleanly (notes may be printed)\n  1  warnings only: it runs, but read them\n  2  errors: it cannot be read or does not run as written"
    )]
    Check {
        /// Print the normalized model as JSON.
        #[arg(long)]
        dump_json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match cli.command {
        Some(Command::Check { dump_json }) => xvrrpd::config::check_command(&config, dump_json),
        None if cli.config_test => xvrrpd::config::check_command(&config, false),
        None => {
            let _ = (cli.dont_fork, cli.log_console, cli.log_detail);
            eprintln!("xvrrpd: the daemon is not wired up yet; use `xvrrpd check -f FILE`");
            ExitCode::from(2)
        }
    }
}
