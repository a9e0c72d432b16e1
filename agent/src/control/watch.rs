//! `xvrrpd status --watch`: the status table, refreshed in place. On a
//! terminal each refresh overwrites the last one line by line (no clearing,
//! so no flicker) and Ctrl-C restores the cursor; otherwise each refresh
//! is printed as plain text after the last one.

use std::{
    io::{self, IsTerminal, Write},
    path::Path,
    time::Duration,
};

use super::socket::{ControlError, fetch_status};
use crate::clock::monotonic_ns;

/// How often the view asks the daemon.
pub const REFRESH: Duration = Duration::from_millis(500);

const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";
const HOME: &str = "\x1b[H";
const CLEAR_LINE_END: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";
const CLEAR_SCREEN: &str = "\x1b[2J";

/// One frame of the view: a clock line, then the table with `SINCE`.
pub fn frame(socket: &Path) -> String {
    let clock = {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!(
            "{:02}:{:02}:{:02} UTC",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60
        )
    };
    match fetch_status(socket) {
        Ok(report) => format!(
            "xvrrpd status --watch — {clock} — every {} ms, Ctrl-C to quit\n{}",
            REFRESH.as_millis(),
            report.render_table_at(Some(monotonic_ns()))
        ),
        // The daemon may be restarting: say so and keep watching.
        Err(e) => format!("xvrrpd status --watch — {clock}\n\n{e}\n"),
    }
}

/// Runs the view until Ctrl-C (or until stdout goes away).
pub fn watch(socket: &Path) -> Result<(), ControlError> {
    let io_err = |source| ControlError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err)?;
    let tty = io::stdout().is_terminal();
    let result = rt.block_on(async {
        // Installed before the first frame: a Ctrl-C at any moment after
        // the view appears restores the cursor instead of killing it.
        let mut stop = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut out = io::stdout().lock();
        if tty {
            write!(out, "{HIDE_CURSOR}{CLEAR_SCREEN}")?;
        }
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                _ = tick.tick() => {}
            }
            // The query blocks for at most its own timeout; the view is
            // the only thing this process does.
            let text = frame(socket);
            if tty {
                // Overwrite in place: each line, then clear what is left of
                // it and below, so nothing flashes blank in between.
                let mut buf = String::from(HOME);
                for line in text.lines() {
                    buf.push_str(line);
                    buf.push_str(CLEAR_LINE_END);
                    buf.push_str("\r\n");
                }
                buf.push_str(CLEAR_BELOW);
                out.write_all(buf.as_bytes())?;
            } else {
                writeln!(out, "{text}")?;
            }
            out.flush()?;
        }
        if tty {
            write!(out, "{SHOW_CURSOR}")?;
            out.flush()?;
        }
        io::Result::Ok(())
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(io_err),
    }
}
