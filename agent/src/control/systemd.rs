//! systemd integration: readiness, status line, reload/stop notices and the
//! watchdog (sd_notify(3)), for `Type=notify` in dist/xvrrpd.service.
//!
//! Every call is a no-op returning `Ok` when `NOTIFY_SOCKET` is unset, i.e.
//! when systemd did not start the daemon or the unit is not `Type=notify`.
//!
//! What the runtime should do:
//!
//! ```text
//! // after the datapath is attached and every instance started:
//! systemd::ready_with_status("2 instances: 1 MASTER, 1 BACKUP; datapath ebpf")?;
//! // on SIGHUP:  systemd::reloading()?;  …apply…  systemd::ready_with_status(…)?;
//! // on state changes: systemd::status("…")?;
//! // on SIGTERM: systemd::stopping()?;
//! // watchdog: if let Some(every) = systemd::watchdog_interval() { arm a timer in
//! //   the event loop itself and call systemd::watchdog()? each time it fires }
//! ```
//!
//! The watchdog ping must come from the event loop, not a side thread: its
//! point is that systemd restarts a daemon whose loop is stuck.

use std::{io, time::Duration};

use sd_notify::NotifyState;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SystemdError {
    #[error(
        "telling systemd `{message}` over $NOTIFY_SOCKET failed: {source} (with Type=notify \
         systemd waits for READY=1 and kills the daemon when the start times out; run without \
         NOTIFY_SOCKET, or fix the unit's NotifyAccess=)"
    )]
    Notify {
        message: String,
        #[source]
        source: io::Error,
    },
}

/// Whether a service manager listens for notifications.
pub fn notify_socket_set() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(states: &[NotifyState<'_>]) -> Result<(), SystemdError> {
    if !notify_socket_set() {
        return Ok(());
    }
    sd_notify::notify(states).map_err(|source| SystemdError::Notify {
        message: states
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        source,
    })
}

/// One line: the protocol separates fields with newlines.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `READY=1`: startup is complete (datapath attached, instances running).
pub fn ready() -> Result<(), SystemdError> {
    send(&[NotifyState::Ready])
}

/// `READY=1` with a status line, in one message (also ends a reload).
pub fn ready_with_status(status: &str) -> Result<(), SystemdError> {
    let line = one_line(status);
    send(&[NotifyState::Ready, NotifyState::Status(&line)])
}

/// `STATUS=…`: the line `systemctl status` shows.
pub fn status(status: &str) -> Result<(), SystemdError> {
    let line = one_line(status);
    send(&[NotifyState::Status(&line)])
}

/// `RELOADING=1` with the monotonic time systemd wants beside it; send
/// [`ready`] or [`ready_with_status`] when the reload is applied.
pub fn reloading() -> Result<(), SystemdError> {
    if !notify_socket_set() {
        return Ok(());
    }
    let now = NotifyState::monotonic_usec_now().map_err(|source| SystemdError::Notify {
        message: "RELOADING=1".into(),
        source,
    })?;
    send(&[NotifyState::Reloading, now])
}

/// `STOPPING=1`: shutdown has begun (priority-0 adverts, VIPs removed).
pub fn stopping() -> Result<(), SystemdError> {
    send(&[NotifyState::Stopping])
}

/// `WATCHDOG=1`: the event loop is alive.
pub fn watchdog() -> Result<(), SystemdError> {
    send(&[NotifyState::Watchdog])
}

/// The watchdog timeout systemd enforces (`WatchdogSec=`), read from
/// `WATCHDOG_USEC` when `WATCHDOG_PID` is unset or is this process; `None`
/// when no watchdog is armed for us.
pub fn watchdog_timeout() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// How often to send [`watchdog`]: half the timeout, as sd_watchdog_enabled(3)
/// advises, so one late tick does not get the daemon killed.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_timeout().map(|t| t / 2)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn status_lines_cannot_inject_fields() {
        assert_eq!(
            one_line("2 instances\nREADY=1\r\n"),
            "2 instances READY=1  "
        );
    }
}
