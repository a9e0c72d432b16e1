//! A VRRP lab: routers running xvrrpd or keepalived, a client, a capture
//! of the bridge, on one [`Lab`] segment, with a directory for every file.
//!
//! ```text
//!   r1 (xvrrpd|keepalived) ─┐
//!   r2 (xvrrpd|keepalived) ─┼─ br0 (switch namespace, tcpdump) ─ client (prober)
//!   r3 …                   ─┘
//! ```
//!
//! Files go to `/tmp/xvrrpd-lab/<lab tag>-<test name>/`: each router's
//! config, daemon log, notify log and FIFO; the bridge capture. They are
//! removed when the test passes (unless `XVRRPD_LAB_KEEP` is set) and kept
//! (their paths printed, with the tail of every daemon log) when it fails.
//!
//! Labs in one test binary run one at a time (a process-wide lock), so
//! timing measurements of one test are not disturbed by another's routers.
//!
//! The xvrrpd binary comes from [`xvrrpd_binary`]: `cargo xtask test`
//! builds the workspace (and so the agent's binary with its eBPF object)
//! before it runs these tests.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::{Context, Result};

pub use crate::router::xvrrpd_binary;
use crate::{
    clock::Stamp,
    kconf::Daemon,
    lab::{Host, Lab},
    prober::{ProbeConfig, Prober},
    router::{Report, RouterNode},
    stall::{self, HOST_MONITOR_PRIORITY, StallMonitor},
    wire::{BridgeCapture, DEFAULT_FILTER},
};

static SERIAL: Mutex<()> = Mutex::new(());

/// The root of every lab's directory.
pub const LAB_ROOT: &str = "/tmp/xvrrpd-lab";

/// A segment with VRRP routers; see the module documentation.
pub struct VrrpLab {
    /// The namespaces and the bridge.
    pub net: Lab,
    pub dir: PathBuf,
    /// When the lab was made.
    pub origin: Stamp,
    /// Whole-host stalls while the lab runs.
    pub stalls: &'static StallMonitor,
    report: Report,
    marks: Mutex<Vec<(String, Stamp)>>,
    _serial: MutexGuard<'static, ()>,
}

impl VrrpLab {
    /// A new lab for the test `name` (waits for other labs of this test
    /// binary to finish first).
    pub fn new(name: &str) -> Result<VrrpLab> {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let net = Lab::new()?;
        std::fs::create_dir_all(LAB_ROOT)?;
        remove_old_lab_dirs();
        let dir = Path::new(LAB_ROOT).join(format!("{}-{name}", net.tag()));
        // Script security: no directory on a script's path may be writable
        // by others (the /tmp sticky bit is accepted).
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(LAB_ROOT, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(VrrpLab {
            net,
            dir,
            origin: Stamp::now(),
            stalls: stall::host(),
            report: Arc::new(Mutex::new(Vec::new())),
            marks: Mutex::new(Vec::new()),
            _serial: serial,
        })
    }

    /// A router host running `daemon` (not started: write its config, then
    /// [`RouterNode::start`]).
    pub fn add_router(&mut self, name: &str, daemon: Daemon, cidrs: &[&str]) -> Result<RouterNode> {
        let host = self.net.add_host(name, cidrs)?;
        let port = self
            .net
            .switch_port(&host)
            .expect("a host just added has a port");
        RouterNode::new(
            name,
            daemon,
            host,
            cidrs,
            self.dir.join(name),
            (self.net.switch_ns().to_string(), port),
            &self.report,
        )
    }

    /// A plain host (the client).
    pub fn add_client(&mut self, name: &str, cidrs: &[&str]) -> Result<Host> {
        self.net.add_host(name, cidrs)
    }

    /// Starts tcpdump on the bridge (`<lab dir>/bridge.pcap`).
    pub fn capture(&self) -> Result<BridgeCapture> {
        let path = self.dir.join("bridge.pcap");
        self.note_file("bridge capture", &path);
        BridgeCapture::start(&self.net, &path, DEFAULT_FILTER)
    }

    /// Starts pinging `target` every millisecond from `client`.
    pub fn probe(&self, client: &Host, target: IpAddr) -> Result<Prober> {
        Prober::start(client, target, ProbeConfig::default())
    }

    /// Records a named instant (printed in a failure report).
    pub fn mark(&self, label: &str) -> Stamp {
        let s = Stamp::now();
        self.marks.lock().unwrap().push((label.to_string(), s));
        s
    }

    /// Records an instant taken elsewhere.
    pub fn mark_at(&self, label: &str, s: Stamp) {
        self.marks.lock().unwrap().push((label.to_string(), s));
    }

    /// Adds a file to the failure report.
    pub fn note_file(&self, label: &str, path: &Path) {
        self.report
            .lock()
            .unwrap()
            .push((label.to_string(), path.to_path_buf()));
    }

    /// Milliseconds since the lab was made, for messages.
    pub fn rel_ms(&self, rt_ns: u64) -> f64 {
        (rt_ns as f64 - self.origin.rt_ns as f64) / 1e6
    }
}

/// Directories of failed labs are kept for reading; a day later they go,
/// but never one whose lab process (the pid in `xvt<pid>-…`) still runs:
/// other worktrees' labs share this root.
fn remove_old_lab_dirs() {
    let Ok(rd) = std::fs::read_dir(LAB_ROOT) else {
        return;
    };
    let day = std::time::Duration::from_secs(24 * 3600);
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("xvt")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for VrrpLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== VRRP lab {} failed: files kept in {} =====",
                self.net.tag(),
                self.dir.display()
            );
            for (label, s) in self.marks.lock().unwrap().iter() {
                eprintln!(
                    "  mark {label}: +{:.3} ms (CLOCK_MONOTONIC {} ns)",
                    self.rel_ms(s.rt_ns),
                    s.mono_ns
                );
            }
            let stalls = self
                .stalls
                .at_least(std::time::Duration::from_millis(2), self.origin.mono_ns);
            if !stalls.is_empty() {
                eprintln!(
                    "  host stalls ≥ 2 ms seen by the stall monitor (SCHED_RR {HOST_MONITOR_PRIORITY}):"
                );
            }
            for s in stalls {
                eprintln!(
                    "    +{:.3} ms: {:.3} ms",
                    (s.due_mono as f64 - self.origin.mono_ns as f64) / 1e6,
                    s.late_ns as f64 / 1e6
                );
            }
            for (label, path) in self.report.lock().unwrap().iter() {
                eprintln!("  {label}: {}", path.display());
                if label.ends_with(" log") {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    for l in &lines[lines.len().saturating_sub(25)..] {
                        eprintln!("    | {l}");
                    }
                }
            }
        } else if std::env::var_os("XVRRPD_LAB_KEEP").is_some() {
            eprintln!("XVRRPD_LAB_KEEP: lab files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The daemon of the e2e scenarios ([`Daemon::for_scenarios`]), said once
/// in the output so a keepalived run is never mistaken for an xvrrpd one.
pub fn scenario_daemon() -> Daemon {
    let d = Daemon::for_scenarios();
    if d == Daemon::Keepalived {
        eprintln!(
            "XVRRPD_LAB_DAEMON=keepalived: running this scenario with keepalived \
             (checks of the scenario itself, not of xvrrpd)"
        );
    }
    d
}

/// Handy for checks that only xvrrpd promises: says what is not checked
/// when the scenario runs with keepalived.
pub fn xvrrpd_only(daemon: Daemon, what: &str) -> bool {
    if daemon == Daemon::Xvrrpd {
        true
    } else {
        eprintln!("{daemon}: not checking {what} (an xvrrpd guarantee)");
        false
    }
}

/// The router list of a lab as (name, node) for reports.
pub fn names(routers: &[&RouterNode]) -> String {
    routers
        .iter()
        .map(|r| format!("{} ({}, {})", r.name, r.daemon, r.mac))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns an error into a panic while the lab is still alive, so its files
/// are kept and reported: `cluster.crash("r1", "r2").or_fail()`.
pub trait OrFail<T> {
    fn or_fail(self) -> T;
}

impl<T> OrFail<T> for Result<T> {
    #[track_caller]
    fn or_fail(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{e:#}"),
        }
    }
}
