//! A lab router: one namespace running one VRRP daemon (xvrrpd or
//! keepalived) on a config written to its own directory.
//!
//! The daemon runs in the foreground in its own process group, so
//! [`RouterNode::kill9`] can kill all of it at once (keepalived's VRRP
//! child too: killing only keepalived's parent makes the child shut down
//! cleanly, which is not a crash). Its stdout and stderr go to
//! `<node dir>/daemon.log`.
//!
//! State is read the same way for both daemons where possible:
//! * VIPs from the kernel (an [`AddrWatch`] on the namespace);
//! * transitions from the notify FIFO the lab configures on every router
//!   (`vrrp_notify_fifo`), read by a thread that timestamps each line;
//! * for xvrrpd, also `xvrrpd status --json` (the instance states, the
//!   transition timelines).

use std::{
    fs::OpenOptions,
    io::Write,
    net::IpAddr,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{fs::PermissionsExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use xvrrpd::control::status::StatusReport;

use crate::{
    addr_watch::AddrWatch,
    clock::Stamp,
    kconf::{Daemon, RouterConfig},
    lab::{Host, wait_until},
    pcap::Mac,
};

/// The SCHED_FIFO priority lab daemons run at (see [`RouterNode::start`]).
pub const DAEMON_RT_PRIORITY: u32 = 10;

/// Where keepalived is expected (Debian's package).
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// The xvrrpd binary the lab runs: `$XVRRPD_BIN` if set, else
/// `target/debug/xvrrpd` of this workspace (`$CARGO_TARGET_DIR` honoured).
///
/// The test crate cannot depend on the agent's binary, so it must be built
/// first: `cargo xtask test` does (its unit-test step builds the whole
/// workspace, the agent's binary with its eBPF object included, before the
/// privileged tests run); by hand, `cargo build -p xvrrpd`. A binary older
/// than the agent's sources is refused rather than silently tested.
pub fn xvrrpd_binary() -> Result<PathBuf> {
    workspace_binary(
        "xvrrpd",
        "XVRRPD_BIN",
        &["agent/src", "common/src", "ebpf/src"],
        "`cargo build -p xvrrpd` (with its eBPF object, i.e. without XVRRPD_EBPF=skip), or run \
         the suite with `cargo xtask test`, which builds the workspace before these tests",
    )
}

/// A binary of this workspace that the tests run but cannot depend on:
/// `$<env>` if set, else `target/debug/<name>` (`$CARGO_TARGET_DIR`
/// honoured), refused when older than a file under `sources` (directories
/// of the workspace). `build` says how to build it.
pub fn workspace_binary(name: &str, env: &str, sources: &[&str], build: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{env}={} is not a file", p.display());
        }
        return Ok(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join(name);
    let Ok(meta) = bin.metadata() else {
        bail!(
            "the {name} binary {} does not exist: build it first with {build}; {env}=PATH picks \
             another binary",
            bin.display()
        );
    };
    let built = meta.modified()?;
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in sources {
        newest_file(&root.join(dir), &mut newest, 0);
    }
    if let Some((t, f)) = newest
        && t > built
    {
        bail!(
            "the {name} binary {} is older than {}: rebuild it ({build}) so the lab does not \
             test stale code",
            bin.display(),
            f.display()
        );
    }
    Ok(bin)
}

fn newest_file(dir: &Path, newest: &mut Option<(std::time::SystemTime, PathBuf)>, depth: u32) {
    if depth > 8 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            newest_file(&p, newest, depth + 1);
        } else if let Ok(t) = m.modified()
            && newest.as_ref().is_none_or(|(n, _)| t > *n)
        {
            *newest = Some((t, p));
        }
    }
}

/// Fails clearly when keepalived is not installed.
pub fn keepalived_binary() -> Result<PathBuf> {
    let p = PathBuf::from(KEEPALIVED);
    if !p.is_file() {
        bail!(
            "keepalived is not installed at {KEEPALIVED}: these tests run it as the reference \
             (Debian's keepalived 2.2.7; `cargo xtask setup` installs it)"
        );
    }
    Ok(p)
}

/// Which end of a router's link to take down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkSide {
    /// `ip link set eth0 down` inside the router.
    Host,
    /// The bridge port: the router's `eth0` loses carrier.
    Switch,
}

/// FIFO words that report an event, not a state: keepalived writes
/// `MASTER_RX_LOWER_PRI` whenever a master receives a lower-priority advert,
/// and the `*_PRIORITY` ones with `vrrp_notify_priority_changes`.
pub const FIFO_EVENTS: &[&str] = &["MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY"];

/// A line the daemon wrote to the notify FIFO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoLine {
    pub at: Stamp,
    /// `INSTANCE` or `GROUP`.
    pub subject: String,
    pub name: String,
    pub state: String,
    pub priority: Option<u32>,
    pub raw: String,
}

/// Parses `INSTANCE "VI_1" MASTER 100`.
pub fn parse_fifo_line(at: Stamp, raw: &str) -> Option<FifoLine> {
    let raw = raw.trim_end();
    let (subject, rest) = raw.split_once(' ')?;
    let rest = rest.trim_start();
    let (name, rest) = if let Some(r) = rest.strip_prefix('"') {
        let end = r.find('"')?;
        (r[..end].to_string(), r[end + 1..].trim_start())
    } else {
        let (n, r) = rest.split_once(' ').unwrap_or((rest, ""));
        (n.to_string(), r.trim_start())
    };
    let mut it = rest.split_whitespace();
    let state = it.next()?.to_string();
    let priority = it.next().and_then(|p| p.parse().ok());
    Some(FifoLine {
        at,
        subject: subject.to_string(),
        name,
        state,
        priority,
        raw: raw.to_string(),
    })
}

/// A line a lab notify script wrote: `<ns since epoch> <kind> <args…>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyCall {
    pub rt_ns: u64,
    /// The script's kind: `master`, `backup`, `fault`, `stop`, `notify`, …
    pub kind: String,
    pub args: Vec<String>,
}

struct FifoReader {
    lines: Arc<Mutex<Vec<FifoLine>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl FifoReader {
    fn start(path: &Path) -> Result<FifoReader> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: plain libc calls on a valid C string.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e).with_context(|| format!("mkfifo {}", path.display()));
            }
        }
        // O_RDWR: the reader never sees EOF when a daemon closes or dies,
        // and the daemon's open never waits.
        // SAFETY: as above; the descriptor is owned at once.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("opening {}", path.display()));
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let handle = thread::spawn(move || {
            crate::clock::realtime_thread();
            let started = Instant::now();
            let mut pending = Vec::<u8>::new();
            let mut buf = [0u8; 4096];
            // Bounded: the node stops it, and it ends on its own after 10 min.
            while !s.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                    continue;
                }
                // SAFETY: buf is valid for its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    continue;
                }
                let at = Stamp::now();
                pending.extend_from_slice(&buf[..n as usize]);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line).to_string();
                    if let Some(fl) = parse_fifo_line(at, &text) {
                        l.lock().unwrap().push(fl);
                    }
                }
            }
        });
        Ok(FifoReader {
            lines,
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Files a failing test should point at: (label, path).
pub(crate) type Report = Arc<Mutex<Vec<(String, PathBuf)>>>;

/// One router of the lab.
pub struct RouterNode {
    pub name: String,
    pub daemon: Daemon,
    /// The daemon's binary.
    pub bin: PathBuf,
    pub host: Host,
    pub mac: Mac,
    /// The addresses given at creation (CIDR).
    pub cidrs: Vec<String>,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub control_socket: PathBuf,
    pub fifo_path: PathBuf,
    pub notify_log: PathBuf,
    /// Extra arguments for the daemon (e.g. `--no-ebpf`); xvrrpd routers
    /// start with those in `XVRRPD_LAB_XVRRPD_ARGS` (space-separated).
    pub extra_args: Vec<String>,
    /// Run the daemon under SCHED_FIFO priority [`DAEMON_RT_PRIORITY`]
    /// (`chrt -f`), the default: see [`RouterNode::start`].
    pub realtime: bool,
    switch_ns: String,
    switch_port: String,
    child: Option<Child>,
    starts: u32,
    fifo: FifoReader,
    pub watch: AddrWatch,
    config: Option<RouterConfig>,
}

impl RouterNode {
    pub(crate) fn new(
        name: &str,
        daemon: Daemon,
        host: Host,
        cidrs: &[&str],
        dir: PathBuf,
        (switch_ns, switch_port): (String, String),
        report: &Report,
    ) -> Result<RouterNode> {
        let bin = match daemon {
            Daemon::Xvrrpd => xvrrpd_binary()?,
            Daemon::Keepalived => keepalived_binary()?,
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let mac_text = host.exec(&["cat", &format!("/sys/class/net/{}/address", host.ifname)])?;
        let mac: Mac = String::from_utf8_lossy(&mac_text.stdout).trim().parse()?;
        let fifo_path = dir.join("notify.fifo");
        let fifo = FifoReader::start(&fifo_path)?;
        let watch = AddrWatch::start(&host)?;
        let node = RouterNode {
            name: name.into(),
            daemon,
            bin,
            mac,
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            config_path: dir.join("keepalived.conf"),
            log_path: dir.join("daemon.log"),
            control_socket: dir.join("control.sock"),
            notify_log: dir.join("notify.log"),
            fifo_path,
            extra_args: match daemon {
                Daemon::Xvrrpd => std::env::var("XVRRPD_LAB_XVRRPD_ARGS")
                    .map(|a| a.split_whitespace().map(String::from).collect())
                    .unwrap_or_default(),
                Daemon::Keepalived => Vec::new(),
            },
            realtime: true,
            switch_ns,
            switch_port,
            child: None,
            starts: 0,
            fifo,
            watch,
            config: None,
            host,
            dir,
        };
        if daemon == Daemon::Xvrrpd {
            node.mount_bpffs()?;
        }
        report.lock().unwrap().push((
            format!("{} ({}) log", node.name, node.daemon),
            node.log_path.clone(),
        ));
        report
            .lock()
            .unwrap()
            .push((format!("{} config", node.name), node.config_path.clone()));
        Ok(node)
    }

    /// The first address given at creation, without its prefix.
    pub fn addr(&self, v6: bool) -> IpAddr {
        self.cidrs
            .iter()
            .filter_map(|c| c.split('/').next()?.parse::<IpAddr>().ok())
            .find(|a| a.is_ipv6() == v6)
            .unwrap_or_else(|| {
                panic!(
                    "{} has no {} address",
                    self.name,
                    if v6 { "IPv6" } else { "IPv4" }
                )
            })
    }

    /// The config last written.
    pub fn config(&self) -> Option<&RouterConfig> {
        self.config.as_ref()
    }

    /// Writes the config (the router's FIFO and name filled in where unset).
    pub fn write_config(&mut self, cfg: &RouterConfig) -> Result<()> {
        let mut cfg = cfg.clone();
        if cfg.global.router_id.is_empty() {
            cfg.global.router_id = self.name.clone();
        }
        if cfg.global.vrrp_notify_fifo.is_none() {
            cfg.global.vrrp_notify_fifo = Some(self.fifo_path.clone());
        }
        let text = cfg.render(self.daemon)?;
        self.write_config_text(&text)?;
        self.config = Some(cfg);
        Ok(())
    }

    /// Writes a config as given (e.g. a broken one for a reload test).
    pub fn write_config_text(&mut self, text: &str) -> Result<()> {
        let tmp = self.dir.join("keepalived.conf.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.config_path)?;
        Ok(())
    }

    /// Writes an executable script in the node's directory and returns its
    /// path.
    pub fn write_script(&self, file: &str, body: &str) -> Result<PathBuf> {
        let p = self.dir.join(file);
        std::fs::write(&p, body)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        Ok(p)
    }

    /// A notify script that appends `<ns> <kind> <args…>` to the node's
    /// notify log; returns its path (for a `notify*` line).
    pub fn notify_script(&self, kind: &str) -> Result<String> {
        let p = self.write_script(
            &format!("notify-{kind}.sh"),
            &format!(
                "#!/bin/sh\necho \"$(date +%s%N) {kind} $*\" >> {}\n",
                self.notify_log.display()
            ),
        )?;
        Ok(p.display().to_string())
    }

    /// A check script for `vrrp_script` that succeeds while
    /// [`set_check`](Self::set_check) says so (it starts passing).
    pub fn check_script(&self, name: &str) -> Result<String> {
        let rc = self.dir.join(format!("{name}.rc"));
        std::fs::write(&rc, "0\n")?;
        let p = self.write_script(
            &format!("check-{name}.sh"),
            &format!(
                "#!/bin/sh\nread rc < {} 2>/dev/null || rc=0\nexit $rc\n",
                rc.display()
            ),
        )?;
        Ok(p.display().to_string())
    }

    /// Makes the check script `name` pass or fail from its next run.
    pub fn set_check(&self, name: &str, pass: bool) -> Result<()> {
        std::fs::write(
            self.dir.join(format!("{name}.rc")),
            if pass { "0\n" } else { "1\n" },
        )?;
        Ok(())
    }

    /// The notify script calls so far, in the order they wrote.
    pub fn notify_calls(&self) -> Vec<NotifyCall> {
        let Ok(text) = std::fs::read_to_string(&self.notify_log) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let rt_ns = it.next()?.parse().ok()?;
                let kind = it.next()?.to_string();
                Some(NotifyCall {
                    rt_ns,
                    kind,
                    args: it.map(String::from).collect(),
                })
            })
            .collect()
    }

    /// The FIFO lines so far.
    pub fn fifo_lines(&self) -> Vec<FifoLine> {
        self.fifo.lines.lock().unwrap().clone()
    }

    /// The router's own BPF filesystem, where xvrrpd pins its datapath
    /// (`ip netns exec` hides the host's /sys/fs/bpf). Mounted on the host,
    /// so it outlives the daemon's process and mount namespace.
    pub fn bpf_dir(&self) -> PathBuf {
        self.dir.join("bpf")
    }

    fn mount_bpffs(&self) -> Result<()> {
        let dir = self.bpf_dir();
        std::fs::create_dir_all(&dir)?;
        crate::lab::run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir)).with_context(
            || {
                format!(
                    "{}: mounting a BPF filesystem on {}",
                    self.name,
                    dir.display()
                )
            },
        )?;
        Ok(())
    }

    /// SIGSTOP to the daemon's process group: a hung agent.
    pub fn sigstop(&self) -> Result<Stamp> {
        self.signal_group(Signal::SIGSTOP)
    }

    /// SIGCONT after [`RouterNode::sigstop`].
    pub fn sigcont(&self) -> Result<Stamp> {
        self.signal_group(Signal::SIGCONT)
    }

    fn signal_group(&self, sig: Signal) -> Result<Stamp> {
        let Some(child) = &self.child else {
            bail!("{}: {sig} while {} is not running", self.name, self.daemon);
        };
        let at = Stamp::now();
        killpg(Pid::from_raw(child.id() as i32), sig)?;
        self.log_line(&format!(
            "===== lab: {sig} to the process group at CLOCK_MONOTONIC {} ns =====",
            at.mono_ns
        ))?;
        Ok(at)
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host.ns]);
        if self.realtime {
            c.args(["chrt", "-f", &DAEMON_RT_PRIORITY.to_string()]);
        }
        match self.daemon {
            Daemon::Xvrrpd => {
                c.arg(&self.bin)
                    .arg("run")
                    .arg("-f")
                    .arg(&self.config_path)
                    .arg("--control-socket")
                    .arg(&self.control_socket)
                    .arg("--bpf-pin-dir")
                    .arg(self.bpf_dir());
            }
            Daemon::Keepalived => {
                c.arg(&self.bin)
                    .args(["-n", "-l", "-D", "-G", "-P", "-f"])
                    .arg(&self.config_path)
                    .arg("-p")
                    .arg(self.dir.join("keepalived.pid"))
                    .arg("-r")
                    .arg(self.dir.join("vrrp.pid"))
                    .arg("-c")
                    .arg(self.dir.join("checkers.pid"))
                    .arg("-b")
                    .arg(self.dir.join("bfd.pid"));
            }
        }
        c.args(&self.extra_args);
        c
    }

    fn log_line(&self, line: &str) -> Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// The last `n` lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole captured log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Starts the daemon and waits until it is up (xvrrpd: its control
    /// socket answers; keepalived: its VRRP child wrote its pid file).
    /// Fails with the log's tail if it exits or does not come up in 10 s.
    ///
    /// Both daemons run the same way: in the foreground, in their own
    /// process group, and (unless `realtime` is cleared) under SCHED_FIFO
    /// via `chrt`, as keepalived's own `vrrp_rt_priority` would do. The
    /// timing bounds the tests check are the daemons' logic; on a test host
    /// whose cores are busy compiling, a normal-priority daemon is woken
    /// tens of milliseconds late whatever its logic.
    pub fn start(&mut self) -> Result<Stamp> {
        if self.is_running() {
            bail!("{}: {} is already running", self.name, self.daemon);
        }
        if self.config.is_none() && !self.config_path.exists() {
            bail!("{}: no config written before start()", self.name);
        }
        for f in ["keepalived.pid", "vrrp.pid", "checkers.pid", "bfd.pid"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let _ = std::fs::remove_file(&self.control_socket);
        self.starts += 1;
        let at = Stamp::now();
        self.log_line(&format!(
            "===== lab: start #{} of {} at CLOCK_MONOTONIC {} ns =====",
            self.starts, self.daemon, at.mono_ns
        ))?;
        let log = OpenOptions::new().append(true).open(&self.log_path)?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: starting {}", self.name, self.daemon))?;
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = &mut self.child
                && let Some(st) = c.try_wait()?
            {
                self.child = None;
                bail!(
                    "{}: {} exited at startup ({st}); log {}:\n{}",
                    self.name,
                    self.daemon,
                    self.log_path.display(),
                    self.log_tail(30)
                );
            }
            if self.is_up() {
                return Ok(at);
            }
            if Instant::now() >= end {
                bail!(
                    "{}: {} did not come up within 10 s; log {}:\n{}",
                    self.name,
                    self.daemon,
                    self.log_path.display(),
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_up(&self) -> bool {
        match self.daemon {
            Daemon::Xvrrpd => std::os::unix::net::UnixStream::connect(&self.control_socket).is_ok(),
            Daemon::Keepalived => {
                // Its VRRP process, or its BFD process when it runs no VRRP.
                let vrrp = std::fs::read_to_string(&self.config_path)
                    .is_ok_and(|c| c.contains("vrrp_instance"));
                let pid_file = if vrrp { "vrrp.pid" } else { "bfd.pid" };
                std::fs::read_to_string(self.dir.join(pid_file))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .is_some_and(|pid| kill(Pid::from_raw(pid), None).is_ok())
            }
        }
    }

    /// SIGKILL to the daemon's whole process group: a crash.
    pub fn kill9(&mut self) -> Result<Stamp> {
        let Some(mut child) = self.child.take() else {
            bail!("{}: kill9 while {} is not running", self.name, self.daemon);
        };
        let pgid = Pid::from_raw(child.id() as i32);
        let at = Stamp::now();
        killpg(pgid, Signal::SIGKILL).with_context(|| format!("{}: killpg", self.name))?;
        child.wait()?;
        // The rest of the group (keepalived's VRRP child) goes with it;
        // an orphan may stay a zombie a while, which is dead enough.
        if !wait_until(Duration::from_secs(2), Duration::from_millis(1), || {
            live_members(pgid.as_raw()) == 0
        }) {
            bail!(
                "{}: processes of group {pgid} still run 2 s after SIGKILL",
                self.name
            );
        }
        self.log_line(&format!(
            "===== lab: SIGKILL to process group {pgid} at CLOCK_MONOTONIC {} ns =====",
            at.mono_ns
        ))?;
        Ok(at)
    }

    /// kill -9 of everything the daemon runs on its host, the warden that
    /// outlives a crash of the daemon included (as when the host loses
    /// power): no priority-0 advert leaves, the backup waits a whole
    /// Master_Down_Interval.
    pub fn kill9_all(&mut self) -> Result<Stamp> {
        let pid = self
            .pid()
            .context("kill9_all while the daemon is not running")?;
        for w in wardens_of(pid) {
            // SIGKILL to a pid just read from /proc; it may be gone already.
            let _ = nix::sys::signal::kill(Pid::from_raw(w), Signal::SIGKILL);
        }
        self.kill9()
    }

    /// SIGTERM; waits (10 s at most) for the daemon to exit and returns its
    /// exit status.
    pub fn sigterm(&mut self) -> Result<(Stamp, ExitStatus)> {
        let Some(mut child) = self.child.take() else {
            bail!(
                "{}: sigterm while {} is not running",
                self.name,
                self.daemon
            );
        };
        let pid = Pid::from_raw(child.id() as i32);
        let at = Stamp::now();
        kill(pid, Signal::SIGTERM)?;
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait()? {
                self.log_line(&format!(
                    "===== lab: SIGTERM at CLOCK_MONOTONIC {} ns; exited {st} =====",
                    at.mono_ns
                ))?;
                return Ok((at, st));
            }
            if Instant::now() >= end {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = child.wait();
                bail!(
                    "{}: {} did not exit within 10 s of SIGTERM; log {}:\n{}",
                    self.name,
                    self.daemon,
                    self.log_path.display(),
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGHUP: reload the config file.
    pub fn sighup(&mut self) -> Result<Stamp> {
        let Some(child) = &self.child else {
            bail!("{}: sighup while {} is not running", self.name, self.daemon);
        };
        let at = Stamp::now();
        self.log_line(&format!(
            "===== lab: SIGHUP at CLOCK_MONOTONIC {} ns =====",
            at.mono_ns
        ))?;
        kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP)?;
        Ok(at)
    }

    /// Stops the daemon if it runs (SIGTERM) and starts it again.
    pub fn restart(&mut self) -> Result<Stamp> {
        if self.is_running() {
            self.sigterm()?;
        } else {
            self.child = None;
        }
        self.start()
    }

    fn link_cmd(&self, side: LinkSide, state: &str) -> Result<()> {
        match side {
            LinkSide::Host => {
                self.host
                    .exec(&["ip", "link", "set", &self.host.ifname, state])?;
            }
            LinkSide::Switch => {
                crate::lab::run(Command::new("ip").args([
                    "netns",
                    "exec",
                    &self.switch_ns,
                    "ip",
                    "link",
                    "set",
                    &self.switch_port,
                    state,
                ]))?;
            }
        }
        Ok(())
    }

    /// Takes the router's link down on one side.
    pub fn link_down(&self, side: LinkSide) -> Result<Stamp> {
        let at = Stamp::now();
        self.link_cmd(side, "down")?;
        Ok(at)
    }

    /// Brings the link up again and puts back the host's own addresses the
    /// kernel flushed with it (IPv6 ones go when a link goes down).
    pub fn link_up(&self, side: LinkSide) -> Result<Stamp> {
        let at = Stamp::now();
        self.link_cmd(side, "up")?;
        for c in &self.cidrs {
            let addr: IpAddr = c.split('/').next().unwrap_or_default().parse()?;
            if !self.host.has_addr(&addr.to_string())? {
                self.host
                    .exec(&["ip", "addr", "add", c, "dev", &self.host.ifname])?;
            }
        }
        Ok(at)
    }

    /// Whether the host holds `vip` now (kernel notifications).
    pub fn has_vip(&self, vip: IpAddr) -> bool {
        self.watch.holds(vip)
    }

    /// Waits until the host holds (or no longer holds) `vip`.
    pub fn wait_vip(&self, vip: IpAddr, present: bool, timeout: Duration) -> bool {
        self.watch.wait(vip, present, timeout)
    }

    /// `xvrrpd status --json` (xvrrpd routers only).
    pub fn status(&self) -> Result<StatusReport> {
        if self.daemon != Daemon::Xvrrpd {
            bail!(
                "{}: status() is xvrrpd's; keepalived has no such query",
                self.name
            );
        }
        let out = Command::new(&self.bin)
            .args(["status", "--json", "--control-socket"])
            .arg(&self.control_socket)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "{}: `xvrrpd status --json` failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{}: `xvrrpd status --json` printed something that is not a StatusReport: {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The state of `instance` in keepalived's words: from the status
    /// report for xvrrpd, from the last FIFO line for keepalived.
    pub fn state(&self, instance: &str) -> Option<String> {
        match self.daemon {
            Daemon::Xvrrpd => self.status().ok().and_then(|r| {
                r.instances
                    .into_iter()
                    .find(|i| i.name == instance)
                    .map(|i| i.state)
            }),
            Daemon::Keepalived => self.fifo_state(instance),
        }
    }

    /// The state of `instance` according to the notify FIFO (its last
    /// state line; event lines are not states).
    pub fn fifo_state(&self, instance: &str) -> Option<String> {
        self.fifo_lines()
            .into_iter()
            .rev()
            .find(|l| {
                l.subject == "INSTANCE"
                    && l.name == instance
                    && !FIFO_EVENTS.contains(&l.state.as_str())
            })
            .map(|l| l.state)
    }

    /// Waits until [`state`](Self::state) says `want`.
    pub fn wait_state(&self, instance: &str, want: &str, timeout: Duration) -> Result<()> {
        let mut last = None;
        if wait_until(timeout, Duration::from_millis(5), || {
            last = self.state(instance);
            last.as_deref() == Some(want)
        }) {
            return Ok(());
        }
        bail!(
            "{} ({}): instance {instance} is {:?}, not {want}, after {:?}; log {}",
            self.name,
            self.daemon,
            last,
            timeout,
            self.log_path.display()
        )
    }

    /// Waits until xvrrpd has moved from its start-up raw sockets to the
    /// eBPF datapath (nothing to wait for with keepalived or `--no-ebpf`).
    pub fn wait_datapath_settled(&self, timeout: Duration) -> Result<()> {
        if self.daemon != Daemon::Xvrrpd || self.extra_args.iter().any(|a| a == "--no-ebpf") {
            return Ok(());
        }
        let mut last = None;
        if wait_until(timeout, Duration::from_millis(20), || {
            last = self.status().ok().map(|r| r.daemon.datapath);
            last.as_deref() == Some("ebpf")
        }) {
            return Ok(());
        }
        bail!(
            "{}: the eBPF datapath did not take over within {timeout:?} (datapath {last:?}); log {}",
            self.name,
            self.log_path.display()
        )
    }

    /// Files of this node, for a failure report.
    pub fn files(&self) -> Vec<PathBuf> {
        vec![
            self.log_path.clone(),
            self.config_path.clone(),
            self.notify_log.clone(),
        ]
    }

    /// Kills the daemon (SIGKILL to its group) if it runs.
    pub fn kill_quietly(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// The wardens xvrrpd `pid` started (`xvrrpd warden --agent-pid PID`).
pub fn wardens_of(pid: u32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let agent = pid.to_string();
    rd.flatten()
        .filter_map(|e| {
            let p = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours = args.get(1) == Some(&&b"warden"[..])
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--agent-pid" && w[1] == agent.as_bytes());
            ours.then_some(p)
        })
        .collect()
}

/// Processes of process group `pgid` that are not zombies.
fn live_members(pgid: i32) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid pgrp …; comm may hold spaces.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid)
        })
        .count()
}

impl Drop for RouterNode {
    fn drop(&mut self) {
        self.kill_quietly();
        // Releases whatever the daemon left pinned there.
        if self.daemon == Daemon::Xvrrpd {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.bpf_dir())
                .stderr(Stdio::null())
                .status();
        }
    }
}
