//! Running a checked script without blocking the event loop.
//!
//! Like keepalived's `system_call_script()`: the child switches to the
//! script's gid, supplementary groups and uid, moves into its own process
//! group, drops `IFS`/`LD_PRELOAD`/`LD_LIBRARY_PATH` and has stdio on
//! /dev/null. On timeout the whole group gets SIGTERM, then SIGKILL after a
//! grace period (keepalived: 2 s); a script that exceeded its timeout counts
//! as failed.
//!
//! keepalived also sets PR_SET_PDEATHSIG; it is left out here because the
//! "parent" it watches is the spawning *thread*, and tokio's pool threads
//! come and go, which would kill healthy scripts.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::security::{CheckedScript, ExecMode};

/// keepalived's delay between SIGTERM and SIGKILL of a timed-out script.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// How often SIGKILL is repeated if a group refuses to die (keepalived: 10 s).
const KILL_RETRY: Duration = Duration::from_secs(10);

/// How one run of a script ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptOutcome {
    Exited(i32),
    /// Killed by a signal we did not send.
    Signaled(i32),
    /// Ran past its timeout and was killed.
    TimedOut,
    SpawnFailed(String),
}

impl ScriptOutcome {
    /// Exit status 0 is success; everything else, timeouts included, fails.
    pub fn success(&self) -> bool {
        matches!(self, ScriptOutcome::Exited(0))
    }
}

/// Timeout settings for one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// None: wait for as long as it takes.
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

impl RunLimits {
    pub fn unlimited() -> Self {
        Self {
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
        }
    }
}

/// Builds the command for `script` with `extra` arguments appended (the
/// generic notify's four, or the FIFO name).
pub fn command(script: &CheckedScript, extra: &[OsString]) -> tokio::process::Command {
    let mut cmd = match script.mode {
        ExecMode::Direct => {
            let mut c = tokio::process::Command::new(&script.program);
            if let Some(arg0) = script.argv.first() {
                c.arg0(arg0);
            }
            c.args(script.argv.iter().skip(1)).args(extra);
            c
        }
        ExecMode::Shell => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(script.shell_string(extra));
            c
        }
    };
    cmd.env_remove("IFS")
        .env_remove("LD_PRELOAD")
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);

    let uid = script.run_as.uid;
    let gid = script.run_as.gid;
    let groups: Vec<libc::gid_t> = script.run_as.groups.clone();
    let our_uid = nix::unistd::geteuid().as_raw();
    let our_gid = nix::unistd::getegid().as_raw();
    let privileged = our_uid == 0;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe syscalls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if gid != our_gid && libc::setgid(gid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if privileged && libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if uid != our_uid && libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A spawned script whose process group is SIGKILLed if it is dropped while
/// still running; tokio reaps the leader (`kill_on_drop`), init the rest.
#[derive(Debug)]
pub struct GroupChild {
    child: tokio::process::Child,
    pgid: Option<Pid>,
    reaped: bool,
}

impl GroupChild {
    pub fn spawn(script: &CheckedScript, extra: &[OsString]) -> std::io::Result<Self> {
        let child = command(script, extra).spawn()?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Ok(Self {
            child,
            pgid,
            reaped: false,
        })
    }

    /// The leader's pid, which is also the group id.
    pub fn pid(&self) -> Option<u32> {
        self.pgid.and_then(|p| u32::try_from(p.as_raw()).ok())
    }

    pub fn signal_group(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH only means the whole group is gone already.
            let _ = killpg(pgid, sig);
        }
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        if status.is_ok() {
            self.reaped = true;
        }
        status
    }

    /// Runs to completion within `limits`, killing the group on timeout.
    pub async fn finish(mut self, limits: RunLimits) -> ScriptOutcome {
        let first = match limits.timeout {
            None => Some(self.wait().await),
            Some(t) => tokio::time::timeout(t, self.wait()).await.ok(),
        };
        if let Some(status) = first {
            return outcome_of(status, Phase::Running);
        }

        self.signal_group(Signal::SIGTERM);
        let mut phase = Phase::Terminating;
        let mut grace = limits.kill_grace;
        let status = loop {
            if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
                break status;
            }
            self.signal_group(Signal::SIGKILL);
            phase = Phase::Killing;
            grace = KILL_RETRY;
        };
        // Whatever the leader did, nothing of a timed-out group may survive.
        self.signal_group(Signal::SIGKILL);
        outcome_of(status, phase)
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Terminating,
    Killing,
}

fn outcome_of(status: std::io::Result<ExitStatus>, phase: Phase) -> ScriptOutcome {
    let status = match status {
        Ok(s) => s,
        Err(e) => return ScriptOutcome::SpawnFailed(format!("wait failed: {e}")),
    };
    if let Some(code) = status.code() {
        return ScriptOutcome::Exited(code);
    }
    let sig = status.signal().unwrap_or(0);
    let term = Signal::SIGTERM as i32;
    let kill = Signal::SIGKILL as i32;
    match phase {
        Phase::Terminating if sig == term => ScriptOutcome::TimedOut,
        Phase::Killing if sig == term || sig == kill => ScriptOutcome::TimedOut,
        _ => ScriptOutcome::Signaled(sig),
    }
}

/// Spawns and runs `script` to completion.
pub async fn run(script: &CheckedScript, extra: &[OsString], limits: RunLimits) -> ScriptOutcome {
    match GroupChild::spawn(script, extra) {
        Ok(child) => child.finish(limits).await,
        Err(e) => ScriptOutcome::SpawnFailed(e.to_string()),
    }
}
