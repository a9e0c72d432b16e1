//! The `xvrrpd` binary: daemon, config check, status and events client.

use std::process::ExitCode;

use clap::Parser;
use xvrrpd::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config_path();
    match &cli.command {
        Some(Command::Check { dump_json }) => xvrrpd::config::check_command(&config, *dump_json),
        None if cli.config_test => xvrrpd::config::check_command(&config, false),
        Some(Command::Status { json, watch }) => {
            let socket = match xvrrpd::runtime::client_socket(&cli) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("xvrrpd status: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if *watch {
                return match xvrrpd::control::watch::watch(&socket) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("xvrrpd status: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            match xvrrpd::control::socket::fetch_status(&socket) {
                Ok(report) if *json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => {
                        println!("{s}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("xvrrpd status: {e}");
                        ExitCode::FAILURE
                    }
                },
                Ok(report) => {
                    print!("{}", report.render_table());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xvrrpd status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Events { json }) => {
            let socket = match xvrrpd::runtime::client_socket(&cli) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("xvrrpd events: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut out = std::io::stdout().lock();
            match xvrrpd::control::socket::follow_events(&socket, *json, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                // A closed pipe (`| head`) is the reader's choice, not a failure.
                Err(xvrrpd::control::socket::ControlError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xvrrpd events: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Cleanup) => xvrrpd::runtime::cleanup_main(&cli),
        Some(Command::Warden { agent_pid, pin_dir }) => {
            xvrrpd::runtime::warden_main(&cli, *agent_pid, pin_dir.as_deref())
        }
        Some(Command::Run) | None => xvrrpd::runtime::daemon_main(&cli),
    }
}
