//! The daemon at run time: datapath events, timers, trackers and signals
//! in; the state machines' actions out, executed in order.
//!
//! - [`plan`]: the keepalived model resolved against the host (interfaces,
//!   addresses, scripts) into what runs; [`route_plan`] its routes and rules;
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
pub mod route_plan;
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

/// keepalived's `umask`: the mask for every file the daemon (and what it
/// starts) creates from now on.
pub(crate) fn apply_umask(g: &crate::config::model::GlobalDefs) {
    if let Some(mask) = g.umask {
        let mode = nix::sys::stat::Mode::from_bits_truncate(mask as libc::mode_t);
        nix::sys::stat::umask(mode);
    }
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

/// Which daemon this is, beyond its configuration file: the network
/// namespace it runs in and its `instance` name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonIdentity {
    /// Entered at start (`--namespace`, else `net_namespace`).
    pub net_namespace: Option<String>,
    /// `--namespace` was given: the configuration's does not count.
    pub namespace_from_cli: bool,
    pub instance: Option<String>,
}

impl DaemonIdentity {
    /// What the command line and the configuration's `global_defs` name.
    pub fn of(cli: &Cli, global: Option<&crate::config::model::GlobalDefs>) -> Self {
        Self {
            net_namespace: cli
                .run
                .namespace
                .clone()
                .or_else(|| global.and_then(|g| g.net_namespace.clone())),
            namespace_from_cli: cli.run.namespace.is_some(),
            instance: global.and_then(|g| g.instance.clone()),
        }
    }

    /// Moves this thread into the namespace, if one is named.
    pub fn enter(&self) -> Result<(), crate::net::netns::NetnsError> {
        match &self.net_namespace {
            Some(ns) => crate::net::netns::enter(ns),
            None => Ok(()),
        }
    }

    /// Why a reload to `global` cannot run in this daemon, if it cannot:
    /// the namespace and the instance name stay what the daemon started
    /// with (keepalived keeps them too).
    pub fn reload_conflict(&self, global: &crate::config::model::GlobalDefs) -> Option<String> {
        if !self.namespace_from_cli && global.net_namespace != self.net_namespace {
            return Some(format!(
                "net_namespace changes from {} to {}: restart xvrrpd to move it",
                self.net_namespace.as_deref().unwrap_or("(none)"),
                global.net_namespace.as_deref().unwrap_or("(none)")
            ));
        }
        if global.instance != self.instance {
            return Some(format!(
                "instance changes from {} to {}: it names the control socket; restart xvrrpd to rename it",
                self.instance.as_deref().unwrap_or("(none)"),
                global.instance.as_deref().unwrap_or("(none)")
            ));
        }
        None
    }

    /// The pid file beside the control socket: `xvrrpd[_INSTANCE].pid`.
    fn pid_file(socket: &std::path::Path) -> std::path::PathBuf {
        socket.with_extension("pid")
    }
}

/// For `status` and `cleanup`: enters the namespace of the daemon the
/// command line, or else the configuration file (when it reads), names,
/// and returns its control socket.
pub fn client_socket(cli: &Cli) -> Result<std::path::PathBuf, String> {
    let path = cli.config_path();
    let loaded = path
        .exists()
        .then(|| crate::config::load(&path).ok())
        .flatten();
    let id = DaemonIdentity::of(cli, loaded.as_ref().map(|l| &l.config.global_defs));
    id.enter().map_err(|e| e.to_string())?;
    Ok(cli.run.control_socket(id.instance.as_deref()))
}

/// `xvrrpd warden` (started by the daemon; see `warden`).
pub fn warden_main(cli: &Cli, agent_pid: u32, pin_dir: Option<&std::path::Path>) -> ExitCode {
    init_logging(cli);
    warden::warden_main(agent_pid, pin_dir)
}

/// Runs the daemon until SIGTERM/SIGINT; the exit code says how it ended.
pub fn daemon_main(cli: &Cli) -> ExitCode {
    init_logging(cli);
    let path = cli.config_path();
    let load = || match crate::config::load(&path) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "xvrrpd: not starting: fix the configuration (`xvrrpd check -f {}`)",
                path.display()
            );
            None
        }
    };
    let Some(mut loaded) = load() else {
        return ExitCode::from(2);
    };
    let identity = DaemonIdentity::of(cli, Some(&loaded.config.global_defs));
    if let Some(ns) = &identity.net_namespace {
        // Before any thread exists: every thread and child inherits it.
        if let Err(e) = identity.enter() {
            eprintln!("xvrrpd: not starting: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!("running in network namespace {ns}");
        // The host checks (interfaces) again, now in the namespace.
        let Some(again) = load() else {
            return ExitCode::from(2);
        };
        loaded = again;
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    for u in &loaded.unsupported {
        tracing::info!("{u:?}");
    }
    apply_umask(&loaded.config.global_defs);
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
    let control_socket = cli.run.control_socket(identity.instance.as_deref());
    let own_pid_file = DaemonIdentity::pid_file(&control_socket);
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
                AttachArg::TcClsact => AttachPreference::TcClsact,
            },
        },
        pins: crate::datapath::pin::PinDir::from_args(&cli.run, &control_socket),
        control_socket,
        metrics_listen: cli.run.metrics_listen,
        identity,
    };
    let rt_priority = cli.run.rt_priority;
    let local = tokio::task::LocalSet::new();
    let pid = std::process::id().to_string();
    let wrote_pid = std::cell::Cell::new(false);
    let result = local.block_on(&rt, async {
        let d = daemon::Daemon::new(opts, &loaded.config).await?;
        // Only once the control socket is ours: a second daemon refused
        // there must not touch the first one's pid file.
        match std::fs::write(&own_pid_file, format!("{pid}\n")) {
            Ok(()) => wrote_pid.set(true),
            Err(e) => tracing::warn!("cannot write pid file {}: {e}", own_pid_file.display()),
        }
        // Real-time for this thread only: the eBPF loader thread, started
        // before, verifies on the normal scheduler.
        set_realtime(rt_priority);
        d.run().await
    });
    if wrote_pid.get() && std::fs::read_to_string(&own_pid_file).is_ok_and(|s| s.trim() == pid) {
        let _ = std::fs::remove_file(&own_pid_file);
    }
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

/// `xvrrpd cleanup`: removes every address carrying xvrrpd's marker.
pub fn cleanup_main(cli: &Cli) -> ExitCode {
    // The namespace before the runtime: its threads inherit it.
    let socket = match client_socket(cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xvrrpd cleanup: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        // Then the routes and rules (a route may use a VIP as its source,
        // and went with it; what is left carries the marker).
        let routes_ok = match crate::net::route::RouteManager::new() {
            Ok(m) => match m.remove_stale_marked().await {
                Ok((routes, rules)) => {
                    for r in &routes {
                        println!("removed route {}/{} (table {})", r.dst, r.dst_len, r.table);
                    }
                    if !rules.is_empty() {
                        println!("removed {} rule(s)", rules.len());
                    }
                    true
                }
                Err(e) => {
                    eprintln!("could not remove routes and rules: {e}");
                    false
                }
            },
            Err(e) => {
                eprintln!("could not remove routes and rules: {e}");
                false
            }
        };
        let unpinned = match crate::datapath::pin::PinDir::from_args(&cli.run, &socket)
            .map(|p| (p.clear(), p))
        {
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
        // With the VIPs gone, as the pinned links above.
        for ifname in crate::datapath::ebpf::remove_leftover_tc_filters().await {
            println!("removed a TC filter left on {ifname}");
        }
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
                if c.failed.is_empty() && unpinned && routes_ok {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::DaemonIdentity;
    use crate::{cli::Cli, config::model::GlobalDefs};

    fn globals(ns: Option<&str>, instance: Option<&str>) -> GlobalDefs {
        GlobalDefs {
            net_namespace: ns.map(str::to_string),
            instance: instance.map(str::to_string),
            ..GlobalDefs::default()
        }
    }

    #[test]
    fn the_command_line_namespace_overrides_the_configuration() {
        let g = globals(Some("blue"), Some("lb1"));
        let plain = DaemonIdentity::of(&Cli::parse_from(["xvrrpd"]), Some(&g));
        assert_eq!(plain.net_namespace.as_deref(), Some("blue"));
        assert_eq!(plain.instance.as_deref(), Some("lb1"));
        let cli = Cli::parse_from(["xvrrpd", "-s", "red"]);
        let overridden = DaemonIdentity::of(&cli, Some(&g));
        assert_eq!(overridden.net_namespace.as_deref(), Some("red"));
        assert!(overridden.namespace_from_cli);
        assert_eq!(DaemonIdentity::of(&cli, None).instance, None);
    }

    #[test]
    fn a_reload_keeps_the_namespace_and_the_instance_name() {
        let running = DaemonIdentity::of(
            &Cli::parse_from(["xvrrpd"]),
            Some(&globals(Some("blue"), Some("lb1"))),
        );
        assert_eq!(
            running.reload_conflict(&globals(Some("blue"), Some("lb1"))),
            None
        );
        let moved = running.reload_conflict(&globals(None, Some("lb1")));
        assert!(moved.is_some_and(|m| m.contains("net_namespace changes from blue to (none)")));
        let renamed = running.reload_conflict(&globals(Some("blue"), Some("lb2")));
        assert!(renamed.is_some_and(|m| m.contains("instance changes from lb1 to lb2")));
        // Given on the command line, the configuration's namespace may change.
        let pinned = DaemonIdentity::of(
            &Cli::parse_from(["xvrrpd", "--namespace", "red"]),
            Some(&globals(None, None)),
        );
        assert_eq!(pinned.reload_conflict(&globals(Some("blue"), None)), None);
    }

    #[test]
    fn the_pid_file_sits_beside_the_control_socket() {
        let socket = std::path::Path::new("/run/xvrrpd/netns/blue/xvrrpd_lb1.sock");
        assert_eq!(
            DaemonIdentity::pid_file(socket),
            std::path::Path::new("/run/xvrrpd/netns/blue/xvrrpd_lb1.pid")
        );
    }
}
