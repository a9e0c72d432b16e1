//! `track_file` (`vrrp_track_file`): the integer in a file, watched with
//! inotify on its directory as keepalived does (track_file.c).
//!
//! * The value is read with C `strtol(buf, NULL, 0)` rules from the first
//!   127 bytes; a number outside `int` is logged and ignored; a missing or
//!   empty file, or one deleted or moved away, counts as 0.
//! * The file is re-read on IN_CLOSE_WRITE and IN_MOVED_TO; IN_DELETE and
//!   IN_MOVED_FROM set the value to 0.
//! * `init_file [VALUE] [overwrite]` writes `VALUE\n` (default 0) at start if
//!   the file does not exist, or always with `overwrite` (never on reload).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use super::{TrackerEvent, TrackerHandle};
use crate::clock::monotonic_ns;
use crate::reactor::register_fd;
use crate::vrrp::{TrackState, TrackerId};

#[derive(Debug, Error)]
pub enum TrackFileError {
    #[error("Track file directory for {0} does not exist - removing")]
    NoDirectory(String),
    #[error("track file {0} is not accessible - ignoring: {1}")]
    NotAccessible(String, std::io::Error),
    #[error("Cannot initialise track file {0} - it is not a regular file")]
    NotRegular(String),
    #[error("Unable to initialise track file {0}: {1}")]
    InitFailed(String, std::io::Error),
    #[error("Unable to monitor track files: {0}")]
    Watch(std::io::Error),
}

/// `init_file [VALUE] [overwrite]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitFile {
    pub value: i32,
    pub overwrite: bool,
}

/// One `track_file` block, mapped by the runtime from the config.
#[derive(Clone, Debug)]
pub struct FileTrackerConfig {
    pub id: TrackerId,
    pub name: String,
    pub path: PathBuf,
    pub init: Option<InitFile>,
}

/// C `strtol(s, NULL, 0)` on the file's text, narrowed to `int` as
/// keepalived does. `None` when the number overflows (keepalived logs
/// "Invalid number … - ignoring" and keeps the old value); text without a
/// number is 0.
pub fn parse_value(buf: &[u8]) -> Option<i32> {
    let mut i = 0;
    while i < buf.len() && matches!(buf[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut negative = false;
    if i < buf.len() && (buf[i] == b'+' || buf[i] == b'-') {
        negative = buf[i] == b'-';
        i += 1;
    }
    let rest = &buf[i..];
    let (radix, digits) = if rest.len() > 2
        && rest[0] == b'0'
        && (rest[1] | 0x20) == b'x'
        && rest[2].is_ascii_hexdigit()
    {
        (16u32, &rest[2..])
    } else if rest.first() == Some(&b'0') {
        (8, rest)
    } else {
        (10, rest)
    };
    let mut value: i128 = 0;
    for &c in digits {
        let Some(d) = char::from(c).to_digit(radix) else {
            break;
        };
        value = value * i128::from(radix) + i128::from(d);
        if value > i128::from(u64::MAX) {
            // strtol reports ERANGE long before this; stop accumulating.
            return None;
        }
    }
    let value = if negative { -value } else { value };
    i32::try_from(value).ok()
}

/// Reads the value now: 0 when missing or empty, None when invalid.
pub fn read_value(path: &Path) -> Option<i32> {
    let mut buf = [0u8; 127];
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return Some(0);
    };
    match f.read(&mut buf) {
        Ok(n) => {
            let v = parse_value(&buf[..n]);
            if v.is_none() {
                tracing::info!("Invalid number read from {} - ignoring", path.display());
            }
            v
        }
        Err(_) => Some(0),
    }
}

/// Applies `init_file` (call once at start-up, with `reload` on SIGHUP).
pub fn init_file(path: &Path, init: InitFile, reload: bool) -> Result<(), TrackFileError> {
    let shown = path.display().to_string();
    if let Ok(md) = std::fs::metadata(path) {
        if !init.overwrite {
            return Ok(());
        }
        if !md.file_type().is_file() {
            return Err(TrackFileError::NotRegular(shown));
        }
        if reload {
            return Ok(());
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| TrackFileError::InitFailed(shown.clone(), e))?;
    writeln!(f, "{}", init.value).map_err(|e| TrackFileError::InitFailed(shown, e))
}

/// Where the file is, once resolved: the directory is watched, the name
/// matched in events.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resolved {
    full: PathBuf,
    dir: PathBuf,
    name: std::ffi::OsString,
}

/// keepalived's `init_track_files()` path handling: realpath of the file if
/// it exists, else of its directory (which must exist).
fn resolve(path: &Path) -> Result<Resolved, TrackFileError> {
    let shown = path.display().to_string();
    let full = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = path
                .file_name()
                .ok_or_else(|| TrackFileError::NoDirectory(shown.clone()))?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(parent)
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| TrackFileError::NoDirectory(shown.clone()))?;
            dir.join(name)
        }
        Err(e) => return Err(TrackFileError::NotAccessible(shown, e)),
    };
    let name = full
        .file_name()
        .map(ToOwned::to_owned)
        .ok_or_else(|| TrackFileError::NoDirectory(shown.clone()))?;
    let dir = full
        .parent()
        .map(Path::to_path_buf)
        .ok_or(TrackFileError::NoDirectory(shown))?;
    Ok(Resolved { full, dir, name })
}

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A running track_file watcher.
pub struct FileTracker {
    pub handle: TrackerHandle,
    /// Value read at start (0 if the file does not exist).
    pub initial: i32,
}

impl FileTracker {
    /// Resolves the path, reads the initial value and starts watching. Must
    /// be called inside a tokio runtime.
    pub fn spawn(
        cfg: FileTrackerConfig,
        tx: mpsc::Sender<TrackerEvent>,
    ) -> Result<Self, TrackFileError> {
        let resolved = resolve(&cfg.path)?;
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| TrackFileError::Watch(e.into()))?;
        let wd = ino
            .add_watch(
                &resolved.dir,
                AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVE,
            )
            .map_err(|e| TrackFileError::Watch(e.into()))?;
        let fd = register_fd(InotifyFd(ino), tokio::io::Interest::READABLE)
            .map_err(TrackFileError::Watch)?;
        // Read after the watch is in place so no write is missed in between.
        let initial = if resolved.full.exists() {
            read_value(&resolved.full).unwrap_or(0)
        } else {
            0
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(watch(cfg.id, resolved, fd, wd, initial, tx, stop_rx));
        Ok(Self {
            handle: TrackerHandle::new(stop_tx, task),
            initial,
        })
    }
}

async fn watch(
    id: TrackerId,
    file: Resolved,
    fd: AsyncFd<InotifyFd>,
    wd: nix::sys::inotify::WatchDescriptor,
    mut last: i32,
    tx: mpsc::Sender<TrackerEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let mut guard = tokio::select! {
            _ = &mut stop => return,
            _ = tx.closed() => return,
            r = fd.readable() => match r {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!("inotify wait failed for {}: {e}", file.full.display());
                    return;
                }
            },
        };
        let events = match fd.get_ref().0.read_events() {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EAGAIN) => {
                guard.clear_ready();
                continue;
            }
            Err(e) => {
                tracing::info!("inotify read() returned error {e}");
                guard.clear_ready();
                continue;
            }
        };
        drop(guard);
        for ev in events {
            if ev.wd != wd || ev.mask.contains(AddWatchFlags::IN_ISDIR) {
                continue;
            }
            if ev.name.as_deref() != Some(file.name.as_os_str()) {
                continue;
            }
            let new = if ev
                .mask
                .intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_DELETE)
            {
                Some(0)
            } else if ev
                .mask
                .intersects(AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE)
            {
                read_value(&file.full)
            } else {
                None
            };
            if let Some(v) = new
                && v != last
            {
                last = v;
                let ev = TrackerEvent {
                    id,
                    state: TrackState::Value(i64::from(v)),
                    at_ns: monotonic_ns(),
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_rules() {
        assert_eq!(parse_value(b"42\n"), Some(42));
        assert_eq!(parse_value(b"  -17 trailing"), Some(-17));
        assert_eq!(parse_value(b"+5"), Some(5));
        assert_eq!(parse_value(b"0x1F"), Some(31));
        assert_eq!(parse_value(b"0X1f"), Some(31));
        assert_eq!(parse_value(b"010"), Some(8));
        assert_eq!(parse_value(b"09"), Some(0)); // octal stops at 9
        assert_eq!(parse_value(b"0x"), Some(0));
        assert_eq!(parse_value(b"0xg"), Some(0));
        assert_eq!(parse_value(b""), Some(0));
        assert_eq!(parse_value(b"abc"), Some(0));
        assert_eq!(parse_value(b"-"), Some(0));
        assert_eq!(parse_value(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_value(b"-2147483648"), Some(i32::MIN));
        assert_eq!(parse_value(b"2147483648"), None);
        assert_eq!(parse_value(b"99999999999999999999999999"), None);
    }
}
