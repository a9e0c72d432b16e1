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
//! (their paths printed, with the tail of every daemon log) when it fails:
//! by a panic, or, under [`crate::retry::lab_test`], by an error returned
//! after the lab is gone.
//!
//! Labs in one test binary run one at a time (a process-wide lock), so
//! timing measurements of one test are not disturbed by another's routers.
//!
//! The xvrrpd binary comes from [`xvrrpd_binary`]: `cargo xtask test`
//! builds the workspace (and so the agent's binary with its eBPF object)
//! before it runs these tests.

use std::{
    cell::RefCell,
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

impl VrrpLab {
    /// What a failed test prints about the lab: where its files are, the
    /// marks, the host stalls and the tail of every daemon log.
    fn failure_report(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n===== VRRP lab {} failed: files kept in {} =====",
            self.net.tag(),
            self.dir.display()
        );
        for (label, s) in self.marks.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "  mark {label}: +{:.3} ms (CLOCK_MONOTONIC {} ns)",
                self.rel_ms(s.rt_ns),
                s.mono_ns
            );
        }
        let stalls = self
            .stalls
            .at_least(std::time::Duration::from_millis(2), self.origin.mono_ns);
        if !stalls.is_empty() {
            let _ = writeln!(
                out,
                "  host stalls ≥ 2 ms seen by the stall monitor (SCHED_RR {HOST_MONITOR_PRIORITY}):"
            );
        }
        for s in stalls {
            let _ = writeln!(
                out,
                "    +{:.3} ms: {:.3} ms",
                (s.due_mono as f64 - self.origin.mono_ns as f64) / 1e6,
                s.late_ns as f64 / 1e6
            );
        }
        for (label, path) in self.report.lock().unwrap().iter() {
            let _ = writeln!(out, "  {label}: {}", path.display());
            if label.ends_with(" log") {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for l in &lines[lines.len().saturating_sub(25)..] {
                    let _ = writeln!(out, "    | {l}");
                }
            }
        }
        out
    }
}

impl Drop for VrrpLab {
    fn drop(&mut self) {
        EndedLab {
            dir: self.dir.clone(),
            report: self.failure_report(),
        }
        .hand_over();
    }
}

/// A lab that is gone, its files not yet removed.
pub struct EndedLab {
    dir: PathBuf,
    report: String,
}

impl EndedLab {
    /// A lab test may fail by returning an error after its lab is gone:
    /// under [`collect_ended`] the lab waits for the outcome; elsewhere
    /// only a panic says the test failed.
    fn hand_over(self) {
        let unclaimed = ENDED.with_borrow_mut(|collected| match collected {
            Some(labs) => {
                labs.push(self);
                None
            }
            None => Some(self),
        });
        if let Some(ended) = unclaimed {
            ended.close(std::thread::panicking());
        }
    }

    /// Keeps the files and prints the report when the test `failed`;
    /// removes them otherwise (unless `XVRRPD_LAB_KEEP` is set).
    pub fn close(self, failed: bool) {
        if failed {
            eprint!("{}", self.report);
        } else if std::env::var_os("XVRRPD_LAB_KEEP").is_some() {
            eprintln!("XVRRPD_LAB_KEEP: lab files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

thread_local! {
    /// The labs ended on this thread while [`collect_ended`] runs.
    static ENDED: RefCell<Option<Vec<EndedLab>>> = const { RefCell::new(None) };
}

/// Runs `f`, and returns with its result the labs that ended meanwhile on
/// this thread, for the caller to [`EndedLab::close`].
pub fn collect_ended<T>(f: impl FnOnce() -> T) -> (T, Vec<EndedLab>) {
    struct Collecting(Option<Vec<EndedLab>>);
    impl Drop for Collecting {
        // Should `f` unwind, the labs it made are reported as failed.
        fn drop(&mut self) {
            for lab in ENDED.replace(self.0.take()).unwrap_or_default() {
                lab.close(true);
            }
        }
    }
    let guard = Collecting(ENDED.replace(Some(Vec::new())));
    let out = f();
    let ended = ENDED.take().unwrap_or_default();
    drop(guard);
    (out, ended)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ended_lab(name: &str) -> EndedLab {
        let dir =
            std::env::temp_dir().join(format!("xvrrpd-ended-lab-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        EndedLab {
            dir,
            report: String::new(),
        }
    }

    #[test]
    fn an_ended_lab_waits_for_the_outcome_of_its_test() {
        let lab = ended_lab("collected");
        let dir = lab.dir.clone();
        let ((), ended) = collect_ended(|| lab.hand_over());
        assert!(dir.is_dir(), "removed before the outcome was known");
        assert_eq!(ended.len(), 1);
        for lab in ended {
            lab.close(true);
        }
        assert!(dir.is_dir(), "a failed test's lab files must stay");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ended_lab_of_a_passed_test_is_removed() {
        let lab = ended_lab("passed");
        let dir = lab.dir.clone();
        let ((), ended) = collect_ended(|| lab.hand_over());
        for lab in ended {
            lab.close(false);
        }
        if std::env::var_os("XVRRPD_LAB_KEEP").is_none() {
            assert!(!dir.exists());
        }
        // Outside a lab test, a lab ended without a panic is a passed one.
        let lab = ended_lab("alone");
        let dir = lab.dir.clone();
        lab.hand_over();
        if std::env::var_os("XVRRPD_LAB_KEEP").is_none() {
            assert!(!dir.exists());
        }
    }
}
