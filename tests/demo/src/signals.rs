//! Ctrl-C, SIGTERM and SIGHUP: the demo stops where it is, tears its lab
//! down and exits with 130.
//!
//! The handler only counts the signal (async-signal-safe); a thread
//! watches the count. The first signal raises a flag that the demo's own
//! waits check every few milliseconds; the demo then unwinds through its
//! normal cleanup (daemons killed, namespaces deleted, logs kept). The
//! harness's own waits are bounded (10 s at most), so that takes a moment
//! at worst; if it takes longer than [`GRACE`], or on a second signal, the
//! watching thread removes the lab itself (every process in the demo's
//! namespaces killed, the namespaces deleted) and exits.
//!
//! A handler, not a blocked signal mask: children inherit the mask (std's
//! `Command` keeps it), and the daemons must still react to the SIGTERM
//! the demo sends them. Handlers are reset to the default by `exec`.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::term::{say, yellow};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Signals received (bumped by the handler) and the last one.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static LAST_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicBool = AtomicBool::new(false);
/// Where the lab keeps its files (said if the signal thread must exit).
static LAB_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// How long the demo gets to clean up after a signal before the signal
/// thread does it.
const GRACE: Duration = Duration::from_secs(20);

/// The error the demo's waits return once a signal came.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics: async-signal-safe.
    LAST_SIGNAL.store(sig as usize, Ordering::Relaxed);
    RECEIVED.fetch_add(1, Ordering::Relaxed);
}

/// Installs the handler and starts the thread that watches for signals.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in SIGNALS {
        // SAFETY: the handler only touches atomics.
        unsafe { sigaction(sig, &action) }?;
    }
    thread::Builder::new().name("signals".into()).spawn(watch)?;
    Ok(())
}

/// Whether a signal came.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// When the demo must be done with its steps (it promises to end by
/// itself in under two minutes, cleanup included).
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Sets the time the steps must be done in, from now.
pub fn set_budget(d: Duration) {
    *DEADLINE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + d);
}

/// Fails with [`Interrupted`] once a signal came, and once the budget is
/// spent.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!(Interrupted);
    }
    if DEADLINE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some_and(|d| Instant::now() > d)
    {
        bail!("the demo ran out of its time budget (it must end in under two minutes)");
    }
    Ok(())
}

/// Sleeps for `d`, waking early (with [`Interrupted`]) on a signal.
pub fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Records the lab's directory (for the last-resort message).
pub fn set_lab_dir(dir: PathBuf) {
    *LAB_DIR.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
}

/// Tells the signal thread that the demo cleaned up and is exiting.
pub fn finished() {
    FINISHED.store(true, Ordering::Relaxed);
}

/// Waits up to `d` for the count of signals to pass `seen`.
fn wait_signal(seen: usize, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if RECEIVED.load(Ordering::Relaxed) > seen {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

fn watch() {
    // Polls until the demo is done or a signal comes; the thread ends with
    // the process.
    loop {
        if FINISHED.load(Ordering::Relaxed) {
            return;
        }
        if wait_signal(0, Duration::from_millis(200)) {
            break;
        }
    }
    INTERRUPTED.store(true, Ordering::Relaxed);
    let first = LAST_SIGNAL.load(Ordering::Relaxed) as i32;
    let name = Signal::try_from(first).map_or("a signal", |s| s.as_str());
    say!();
    say!(
        "{}",
        yellow(&format!(
            "{name}: stopping — killing the daemons and removing the lab (Ctrl-C again to force)"
        ))
    );
    let seen = RECEIVED.load(Ordering::Relaxed);
    let end = Instant::now() + GRACE;
    while Instant::now() < end {
        if FINISHED.load(Ordering::Relaxed) {
            return;
        }
        if wait_signal(seen, Duration::from_millis(100)) {
            break;
        }
    }
    if FINISHED.load(Ordering::Relaxed) {
        return;
    }
    let removed = remove_lab_namespaces();
    say!("removed {removed} lab namespace(s) and everything running in them");
    if let Some(dir) = LAB_DIR.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        say!(
            "the lab's files (configs, daemon logs, capture) are in {}",
            dir.display()
        );
    }
    std::process::exit(130);
}

/// Kills every process in this process's lab namespaces (`xvt<pid>-…`) and
/// deletes them; returns how many were deleted.
pub fn remove_lab_namespaces() -> usize {
    let prefix = format!("xvt{}-", std::process::id());
    let Ok(rd) = std::fs::read_dir("/var/run/netns") else {
        return 0;
    };
    let names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let mut removed = 0;
    for ns in names {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        if Command::new("ip")
            .args(["netns", "del", &ns])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            removed += 1;
        }
    }
    removed
}
