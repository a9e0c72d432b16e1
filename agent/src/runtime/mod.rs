//! The daemon at run time: datapath events, timers, trackers and signals
//! in; the state machines' actions out, executed in order.
//!
//! - [`plan`]: the keepalived model resolved against the host (interfaces,
//!   addresses, scripts) into what runs;
//! - [`daemon`]: what runs, start-up and shutdown;
//! - [`event_loop`]: the loop and its wake-ups;
//! - [`dispatch`]: inputs through the state machines, actions executed;
//! - [`effects`]: VIP and GARP/NA work per instance, off the loop;
//! - [`timers`]: every deadline on one timerfd;
//! - [`quiet`]: a healthy master's repeated adverts kept in the kernel;
//! - [`reload`]: a new configuration as one transaction;
//! - [`trackers`]: health checks started, kept and stopped;
//! - [`reports`]: transition history, log lines, status.

pub mod daemon;
mod dispatch;
pub mod effects;
mod event_loop;
pub mod plan;
mod quiet;
mod reload;
mod reports;
pub mod timers;
mod trackers;
mod warden;

use std::process::ExitCode;

use crate::{
    cli::{AttachArg, Cli, LogFormat},
    datapath::{
        DatapathOptions,
        ebpf::{AttachMode, AttachPreference},
    },
};

fn init_logging(cli: &Cli) {
    let default = if cli.log_detail { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match cli.run.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

fn write_pid_files(cli: &Cli) {
    for path in [&cli.pid_file, &cli.vrrp_pid_file].into_iter().flatten() {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            tracing::warn!("cannot write pid file {}: {e}", path.display());
        }
    }
}

/// Puts the event loop (this thread) under SCHED_RR so a busy host cannot
/// delay adverts or the down timer; `SCHED_RESET_ON_FORK` keeps scripts and
/// notify children on the normal scheduler. The kernel's RT throttling still
/// leaves the rest of the machine its share.
fn set_realtime(priority: u8) {
    if priority == 0 {
        return;
    }
    let param = libc::sched_param {
        sched_priority: i32::from(priority.min(99)),
    };
    // SAFETY: sched_setscheduler on the calling thread with a valid param.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc != 0 {
        tracing::warn!(
            "cannot use real-time priority {priority} ({}); running on the normal scheduler",
            std::io::Error::last_os_error()
        );
    } else {
        tracing::debug!("event loop on SCHED_RR priority {priority}");
    }
}

/// Runs the daemon until SIGTERM/SIGINT; the exit code says how it ended.
pub fn daemon_main(cli: &Cli) -> ExitCode {
    init_logging(cli);
    let path = cli.config_path();
    let loaded = match crate::config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "xvrrpd: not starting: fix the configuration (`xvrrpd check -f {}`)",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    for u in &loaded.unsupported {
        tracing::info!("{u:?}");
    }
    write_pid_files(cli);
    // Timer slack would add up to 50 µs to every wakeup of this thread.
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0) };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xvrrpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = daemon::DaemonOptions {
        config: path,
        datapath: DatapathOptions {
            no_ebpf: cli.run.no_ebpf,
            kernel_timers: !cli.run.no_kernel_timers,
            attach: match cli.run.attach {
                AttachArg::Auto => AttachPreference::Auto,
                AttachArg::XdpNative => AttachPreference::Only(AttachMode::XdpNative),
                AttachArg::XdpGeneric => AttachPreference::Only(AttachMode::XdpGeneric),
                AttachArg::Tc => AttachPreference::Only(AttachMode::Tc),
            },
        },
        control_socket: cli.run.control_socket(),
        metrics_listen: cli.run.metrics_listen,
        pins: crate::datapath::pin::PinDir::from_args(&cli.run),
    };
    let rt_priority = cli.run.rt_priority;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, async move {
        let d = daemon::Daemon::new(opts, &loaded.config).await?;
        // Real-time for this thread only: the eBPF loader thread, started
        // before, verifies on the normal scheduler.
        set_realtime(rt_priority);
        d.run().await
    });
    for path in [&cli.pid_file, &cli.vrrp_pid_file].into_iter().flatten() {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `xvrrpd warden` (started by the daemon; see `warden`).
pub fn warden_main(cli: &Cli, agent_pid: u32, pin_dir: &std::path::Path) -> ExitCode {
    init_logging(cli);
    warden::warden_main(agent_pid, pin_dir)
}

/// `xvrrpd cleanup`: removes every address carrying xvrrpd's marker.
pub fn cleanup_main(cli: &Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xvrrpd cleanup: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let vips = match crate::net::addr::VipManager::new() {
            Ok(v) => v,
            Err(e) => {
                eprintln!("xvrrpd cleanup: {e}");
                return ExitCode::FAILURE;
            }
        };
        // VIPs first: the pinned fence guards them until they are gone.
        let removed = vips.remove_stale_marked(&[]).await;
        let unpinned =
            match crate::datapath::pin::PinDir::from_args(&cli.run).map(|p| (p.clear(), p)) {
                Some((Ok(n), p)) if n > 0 => {
                    println!(
                        "released {n} pinned datapath link(s) in {}",
                        p.path().display()
                    );
                    true
                }
                Some((Err(e), p)) => {
                    eprintln!("could not release {}: {e}", p.path().display());
                    false
                }
                _ => true,
            };
        match removed {
            Ok(c) => {
                for a in &c.removed {
                    println!(
                        "removed {}/{} (ifindex {})",
                        a.addr, a.prefix_len, a.ifindex
                    );
                }
                for (a, e) in &c.failed {
                    eprintln!("could not remove {}: {e}", a.addr);
                }
                if c.failed.is_empty() && unpinned {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("xvrrpd cleanup: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
