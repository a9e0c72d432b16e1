//! The command line, shared by the binary and by the man page / completion
//! generators.
//!
//! keepalived's own flags work (`-f FILE`, `-n`, `-t`, `-l`, `-D`, `-P`,
//! `-p FILE`, `-r FILE`, `--version`) so existing unit files and scripts can
//! switch binaries. xvrrpd never forks into the background: `-n` is implied.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_CONFIG: &str = "/etc/keepalived/keepalived.conf";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/xvrrpd/xvrrpd.sock";
/// Where the XDP links are pinned (systemd mounts the BPF filesystem).
pub const DEFAULT_BPF_PIN_DIR: &str = "/sys/fs/bpf/xvrrpd";

#[derive(Parser, Debug)]
#[command(
    name = "xvrrpd",
    version,
    about = "eBPF-accelerated VRRP failover daemon (reads keepalived.conf)",
    long_about = "xvrrpd runs the VRRP instances of a keepalived.conf: virtual IPs move to a \
                  healthy host within milliseconds of a failure. Adverts are validated in the \
                  kernel by an XDP (or TC) program and timed on the kernel's clock.\n\n\
                  Without a command it runs the daemon in the foreground, as `keepalived -n`."
)]
pub struct Cli {
    /// Configuration file (keepalived syntax).
    #[arg(short = 'f', long = "use-file", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration and exit (keepalived `-t`).
    #[arg(short = 't', long = "config-test")]
    pub config_test: bool,
    /// Stay in the foreground (keepalived `-n`): always the case.
    #[arg(short = 'n', long = "dont-fork")]
    pub dont_fork: bool,
    /// Log to the console (keepalived `-l`): logs always go to stderr.
    #[arg(short = 'l', long = "log-console")]
    pub log_console: bool,
    /// Detailed log messages (keepalived `-D`): debug level.
    #[arg(short = 'D', long = "log-detail")]
    pub log_detail: bool,
    /// Run only the VRRP subsystem (keepalived `-P`): the only one xvrrpd has.
    #[arg(short = 'P', long = "vrrp")]
    pub vrrp_only: bool,
    /// keepalived's main pid file (`-p`): written with xvrrpd's pid.
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// keepalived's VRRP child pid file (`-r`): written with xvrrpd's pid.
    #[arg(short = 'r', long = "vrrp_pid", value_name = "FILE")]
    pub vrrp_pid_file: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (systemd style).
    Run,
    /// Check a configuration file: warnings and errors with their locations.
    #[command(
        after_help = "Exit status:\n  0  the file runs cleanly (notes may be printed)\n  1  warnings only: it runs, but read them\n  2  errors: it cannot be read or does not run as written"
    )]
    Check {
        /// Print the normalized model as JSON.
        #[arg(long)]
        dump_json: bool,
    },
    /// Remove the virtual addresses a stopped or crashed xvrrpd left on this
    /// host (they carry xvrrpd's address marker) and the datapath it left
    /// pinned (same --control-socket and --bpf-pin-dir). For `ExecStopPost=`.
    Cleanup,
    /// Started by the daemon beside itself: if the daemon dies, sends its
    /// masters' priority-0 adverts and removes each VIP it held once
    /// another router owns it.
    #[command(hide = true)]
    Warden {
        #[arg(long)]
        agent_pid: u32,
        #[arg(long)]
        pin_dir: Option<PathBuf>,
    },
    /// Ask the running daemon for its state: instances, masters, VIPs,
    /// trackers, counters and the last transitions with their timelines.
    Status {
        /// Print the report as JSON (stable; see docs/status-json.md).
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Keep the table on screen, refreshed twice a second, with the time
        /// each instance has been in its state (Ctrl-C to quit).
        #[arg(long)]
        watch: bool,
    },
    /// Follow the running daemon's transitions (with their timelines) and
    /// notable events (VIP claims and restores, tracker changes, reloads) as
    /// they happen, a line each. A follower that stops reading is cut off;
    /// the daemon never waits for it.
    Events {
        /// One JSON object per line (see docs/events.md).
        #[arg(long)]
        json: bool,
    },
}

/// Options of the daemon (also accepted before `run`).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Receive adverts on a raw socket instead of the eBPF datapath.
    #[arg(long, global = true)]
    pub no_ebpf: bool,
    /// How to attach the eBPF program.
    #[arg(long, value_enum, default_value_t = AttachArg::Auto, global = true)]
    pub attach: AttachArg,
    /// Run every master-down timer in the daemon, as on kernels without BPF
    /// timers (before 5.15), even where the kernel could run them. A backup
    /// then wakes once per Master_Down_Interval per instance.
    #[arg(long, global = true)]
    pub no_kernel_timers: bool,
    /// The control socket `xvrrpd status` talks to [default:
    /// /run/xvrrpd/xvrrpd.sock in the host's network namespace,
    /// /run/xvrrpd/netns/NAME/xvrrpd.sock in namespace NAME;
    /// xvrrpd_INSTANCE.sock with the configuration's `instance`]
    #[arg(long, value_name = "PATH", global = true)]
    pub control_socket: Option<PathBuf>,
    /// Run in (or, for status and cleanup, talk to the daemon of) the
    /// network namespace `ip netns` calls NAME, overriding the
    /// configuration's `net_namespace` (keepalived `-s`).
    #[arg(short = 's', long = "namespace", value_name = "NAME", global = true)]
    pub namespace: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Real-time priority (SCHED_RR) of the event loop, 1-99; 0 keeps the
    /// normal scheduler. A master must send its adverts on time even when
    /// the host is busy; children (scripts) never inherit it.
    #[arg(long, value_name = "PRIO", default_value_t = 10, global = true)]
    pub rt_priority: u8,
    /// Serve Prometheus metrics on this address (off by default).
    #[arg(long, value_name = "ADDR", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory on a BPF filesystem where the XDP links are pinned, so
    /// that if xvrrpd dies its host stops claiming VIPs another router has
    /// taken over. Each daemon uses its own subdirectory (network namespace
    /// and control socket). `none` turns pinning off.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BPF_PIN_DIR, global = true)]
    pub bpf_pin_dir: PathBuf,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachArg {
    /// TC first on kernels with tcx (6.6+), which leaves the XDP hook to
    /// other programs; then XDP. Before 6.6: generic XDP first on veth,
    /// native XDP first elsewhere; then the other XDP mode, then TC.
    Auto,
    XdpNative,
    XdpGeneric,
    /// TC ingress: a tcx link on 6.6+, a clsact filter before.
    Tc,
    /// TC ingress as a clsact filter also where tcx exists (for tools that
    /// list `tc filter`, or to run the pre-6.6 path on a newer kernel).
    TcClsact,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The control socket when none is given: one per network namespace, so
/// daemons in two namespaces of one host start without options and `ip
/// netns exec NAME xvrrpd status` reaches the daemon of NAME:
/// `/run/xvrrpd/netns/NAME/xvrrpd.sock` in a namespace `ip netns` names,
/// `/run/xvrrpd/netns/ino-N/xvrrpd.sock` in an unnamed one other than PID
/// 1's (when that can be read), [`DEFAULT_CONTROL_SOCKET`] otherwise. A
/// configuration's `instance NAME` makes the file `xvrrpd_NAME.sock`, so
/// several daemons can share a namespace, as keepalived's pid files do.
pub fn default_control_socket(instance: Option<&str>) -> PathBuf {
    let file = match instance {
        Some(i) => format!("xvrrpd_{i}.sock"),
        None => "xvrrpd.sock".to_string(),
    };
    match netns_tag() {
        None => Path::new(DEFAULT_CONTROL_SOCKET).with_file_name(file),
        Some(tag) => Path::new("/run/xvrrpd/netns").join(tag).join(file),
    }
}

/// How this process's network namespace is named for its socket: the name
/// `ip netns` gives it (`/run/netns/NAME`); else, outside PID 1's namespace
/// when that can be read, its inode; else `None` (the host's, or a
/// container's own, with its own /run).
fn netns_tag() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    // This thread's: `net_namespace` moves the thread that reads this.
    let mine = id(Path::new("/proc/thread-self/ns/net"))?;
    let named = std::fs::read_dir("/run/netns").ok().and_then(|dir| {
        dir.flatten().find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let usable = !name.is_empty() && name != "." && name != "..";
            (usable && id(&e.path()) == Some(mine)).then_some(name)
        })
    });
    if named.is_some() {
        return named;
    }
    // PID 1's namespace may be unreadable (another user namespace, or no
    // ptrace access: a daemon without CAP_SYS_PTRACE under systemd); then
    // this is taken for the host's.
    match read_netns_link("/proc/1/ns/net") {
        Some(init) if init != mine.1 => Some(format!("ino-{}", mine.1)),
        _ => None,
    }
}

/// The namespace inode a `/proc/PID/ns/net` link names, when it can be
/// read. A link the caller may not follow is no answer: Linux 5.10 reads
/// it as empty text (and `stat` gives the link's own inode).
fn read_netns_link(path: &str) -> Option<u64> {
    let text = std::fs::read_link(path).ok()?;
    parse_netns_link(text.to_str()?)
}

/// `net:[4026531840]` → 4026531840.
fn parse_netns_link(text: &str) -> Option<u64> {
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

impl RunArgs {
    /// The control socket: as given, or this network namespace's default
    /// for the configuration's `instance` ([`default_control_socket`]).
    pub fn control_socket(&self, instance: Option<&str>) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| default_control_socket(instance))
    }
}

impl Cli {
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }
}

#[cfg(test)]
mod tests {
    use super::{default_control_socket, parse_netns_link};

    #[test]
    fn an_instance_names_its_own_socket_in_the_namespace_directory() {
        let plain = default_control_socket(None);
        let named = default_control_socket(Some("lb1"));
        assert_eq!(plain.parent(), named.parent());
        assert_eq!(
            named.file_name().and_then(|n| n.to_str()),
            Some("xvrrpd_lb1.sock")
        );
        assert_eq!(
            plain.file_name().and_then(|n| n.to_str()),
            Some("xvrrpd.sock")
        );
    }

    #[test]
    fn a_namespace_link_names_its_inode_and_anything_else_none() {
        assert_eq!(parse_netns_link("net:[4026531840]"), Some(4026531840));
        // What a denied link reads as on Linux 5.10, and other namespaces.
        assert_eq!(parse_netns_link(""), None);
        assert_eq!(parse_netns_link("mnt:[4026531841]"), None);
        assert_eq!(parse_netns_link("net:[x]"), None);
    }
}
