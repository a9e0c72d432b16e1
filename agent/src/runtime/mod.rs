//! The event loop: datapath events, timers, trackers and signals in; the
//! state machines' actions out, executed in order.

pub mod timers;

use std::process::ExitCode;

use crate::cli::Cli;

/// Runs the daemon until SIGTERM/SIGINT; the exit code says how it ended.
pub fn daemon_main(cli: &Cli) -> ExitCode {
    let _ = cli;
    eprintln!("xvrrpd: the daemon is not wired up yet; use `xvrrpd check -f FILE`");
    ExitCode::from(2)
}
