//! The demo's terminal: a story printed line by line, one live status line
//! kept at the bottom when stdout is a terminal, and a plain-text
//! transcript of both in the logs directory.
//!
//! Colours and cursor movement only on a terminal (and not with `NO_COLOR`
//! or `TERM=dumb`); piped output is plain text, with each change of the
//! live line printed once as an ordinary line.

use std::{
    fs::File,
    io::{IsTerminal, Write},
    path::Path,
    sync::{Mutex, OnceLock},
    time::Instant,
};

static TERM: OnceLock<Term> = OnceLock::new();

pub struct Term {
    tty: bool,
    color: bool,
    started: Instant,
    state: Mutex<State>,
}

struct State {
    /// The live line as shown (styled), on a terminal.
    live: Option<String>,
    /// The last live text printed as a line (not a terminal).
    last_plain_live: Option<String>,
    transcript: Option<File>,
}

/// The terminal (set up on first use).
pub fn term() -> &'static Term {
    TERM.get_or_init(|| {
        let tty = std::io::stdout().is_terminal();
        let color = tty
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var("TERM").ok().is_none_or(|t| t != "dumb");
        Term {
            tty,
            color,
            started: Instant::now(),
            state: Mutex::new(State {
                live: None,
                last_plain_live: None,
                transcript: None,
            }),
        }
    })
}

/// Removes ANSI escape sequences (for the transcript).
pub fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            if it.peek() == Some(&'[') {
                it.next();
                for c in it.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; on failure it is left zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 && ws.ws_col > 20 {
        usize::from(ws.ws_col)
    } else {
        100
    }
}

/// Cuts a styled string to `n` visible characters.
fn cut(s: &str, n: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut in_esc = false;
    for c in s.chars() {
        if c == '\x1b' {
            in_esc = true;
        }
        if in_esc {
            out.push(c);
            if c.is_ascii_alphabetic() {
                in_esc = false;
            }
            continue;
        }
        if shown >= n {
            continue;
        }
        out.push(c);
        shown += 1;
    }
    out
}

impl Term {
    /// Seconds since the demo started.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Starts writing a transcript to `path`.
    pub fn transcript_to(&self, path: &Path) -> std::io::Result<()> {
        let f = File::create(path)?;
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .transcript = Some(f);
        Ok(())
    }

    /// Prints one line of the story (the live line stays below it).
    pub fn say(&self, line: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        if self.tty && st.live.is_some() {
            let _ = write!(out, "\r\x1b[2K");
        }
        let shown = if self.color {
            line.to_string()
        } else {
            plain(line)
        };
        let _ = writeln!(out, "{shown}");
        if let Some(live) = &st.live
            && self.tty
        {
            let _ = write!(out, "{}", cut(live, width() - 1));
        }
        let _ = out.flush();
        if let Some(f) = &mut st.transcript {
            let _ = writeln!(f, "{}", plain(line));
        }
    }

    /// Sets the live line. On a terminal it is redrawn in place; otherwise
    /// a change is printed as a line of its own, with the time.
    pub fn live(&self, text: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let flat = plain(text);
        if st.last_plain_live.as_deref() == Some(flat.as_str()) {
            return;
        }
        st.last_plain_live = Some(flat.clone());
        let stamped = format!("  [{:6.2} s] now: {flat}", self.elapsed_s());
        if self.tty {
            let styled = format!("  ▸ since {:5.1} s: {text}", self.elapsed_s());
            let styled = if self.color { styled } else { plain(&styled) };
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{}", cut(&styled, width() - 1));
            let _ = out.flush();
            st.live = Some(styled);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{stamped}");
            let _ = out.flush();
        }
        if let Some(f) = &mut st.transcript {
            let _ = writeln!(f, "{stamped}");
        }
    }

    /// Removes the live line (before the summary, or when the lab is gone).
    pub fn end_live(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.tty && st.live.take().is_some() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
        st.last_plain_live = None;
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub fn bold(s: &str) -> String {
    term().paint("1", s)
}
pub fn dim(s: &str) -> String {
    term().paint("2", s)
}
pub fn green(s: &str) -> String {
    term().paint("32", s)
}
pub fn yellow(s: &str) -> String {
    term().paint("33", s)
}
pub fn red(s: &str) -> String {
    term().paint("31", s)
}
pub fn cyan(s: &str) -> String {
    term().paint("36", s)
}

/// Prints a line of the story.
macro_rules! say {
    () => { $crate::term::term().say("") };
    ($($arg:tt)*) => { $crate::term::term().say(&format!($($arg)*)) };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_cut_skip_escapes() {
        let s = "\x1b[1mr1\x1b[0m MASTER";
        assert_eq!(plain(s), "r1 MASTER");
        assert_eq!(plain(&cut(s, 4)), "r1 M");
    }
}
