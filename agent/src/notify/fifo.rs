//! The notify FIFO (`notify_fifo`, `vrrp_notify_fifo`) and the optional
//! `*_notify_fifo_script` that reads it, as keepalived's `fifo_open()`:
//!
//! * the FIFO is created (mode 0644 before umask) if missing, and chown'd to
//!   the FIFO's user when that differs from ours; one we created is unlinked
//!   on close;
//! * the script, if any, is started with the FIFO's path as its last
//!   argument, and gets SIGTERM (SIGKILL 1 s later) on close;
//! * the FIFO is opened `O_RDWR | O_NONBLOCK | O_NOFOLLOW`, so opening never
//!   waits for a reader and writing never raises SIGPIPE; an existing path
//!   that is not a FIFO owned by us or the FIFO's user is refused.
//!
//! Writing never blocks the caller: lines go through a bounded queue to a
//! writer task that waits for the pipe to drain. When nobody reads, the pipe
//! buffer and then the queue fill, and further lines are dropped with a
//! warning (keepalived drops them silently).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use crate::reactor::register_fd;
use crate::script::exec::GroupChild;
use crate::script::security::CheckedScript;

/// Lines kept waiting for a slow reader before new ones are dropped.
pub const DEFAULT_FIFO_QUEUE: usize = 1024;

#[derive(Debug, Error)]
pub enum FifoError {
    #[error("Unable to create {kind}notify fifo {path}: {err}")]
    Create {
        kind: String,
        path: String,
        err: nix::Error,
    },
    #[error("Unable to open {kind}notify fifo {path}: {err}")]
    Open {
        kind: String,
        path: String,
        err: nix::Error,
    },
    #[error("{kind}notify fifo {path} is not a fifo we own - not using")]
    NotOurs { kind: String, path: String },
    #[error("unable to watch {kind}notify fifo {path}: {err}")]
    Register {
        kind: String,
        path: String,
        err: std::io::Error,
    },
}

/// One notify FIFO as configured.
#[derive(Clone, Debug)]
pub struct FifoConfig {
    pub path: PathBuf,
    /// "" for `notify_fifo`, "vrrp_" for `vrrp_notify_fifo` (for messages).
    pub kind: String,
    /// The FIFO's user (`notify_fifo PATH [user [group]]`, else the default
    /// script user): owner of a FIFO we create.
    pub owner_uid: u32,
    pub owner_gid: u32,
    /// `*_notify_fifo_script`, already checked.
    pub script: Option<CheckedScript>,
    pub queue: usize,
}

impl FifoConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            kind: String::new(),
            owner_uid: nix::unistd::geteuid().as_raw(),
            owner_gid: nix::unistd::getegid().as_raw(),
            script: None,
            queue: DEFAULT_FIFO_QUEUE,
        }
    }
}

/// An open notify FIFO.
#[derive(Debug)]
pub struct NotifyFifo {
    path: PathBuf,
    created: bool,
    lines: Option<mpsc::Sender<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
    writer: Option<tokio::task::JoinHandle<()>>,
    script_stop: Option<oneshot::Sender<()>>,
    script_task: Option<tokio::task::JoinHandle<()>>,
}

impl NotifyFifo {
    /// Creates/opens the FIFO and starts its script. Needs a tokio runtime.
    pub fn open(cfg: FifoConfig) -> Result<Self, FifoError> {
        let shown = cfg.path.display().to_string();
        let our_uid = nix::unistd::geteuid().as_raw();
        let our_gid = nix::unistd::getegid().as_raw();
        let mode = Mode::S_IRUSR | Mode::S_IWUSR | Mode::S_IRGRP | Mode::S_IROTH;
        let created = match nix::unistd::mkfifo(&cfg.path, mode) {
            Ok(()) => true,
            Err(nix::errno::Errno::EEXIST) => false,
            Err(err) => {
                return Err(FifoError::Create {
                    kind: cfg.kind,
                    path: shown,
                    err,
                });
            }
        };
        if created && (cfg.owner_uid != our_uid || cfg.owner_gid != our_gid) {
            let uid = (cfg.owner_uid != our_uid).then(|| nix::unistd::Uid::from_raw(cfg.owner_uid));
            let gid = (cfg.owner_gid != our_gid).then(|| nix::unistd::Gid::from_raw(cfg.owner_gid));
            if nix::unistd::chown(&cfg.path, uid, gid).is_err() {
                tracing::info!("Failed to set uid:gid for fifo {shown}");
            }
        }

        let (script_stop, script_task) = match &cfg.script {
            Some(script) => {
                let (stop_tx, stop_rx) = oneshot::channel();
                let task = tokio::spawn(run_fifo_script(
                    script.clone(),
                    cfg.path.clone().into_os_string(),
                    cfg.kind.clone(),
                    stop_rx,
                ));
                (Some(stop_tx), Some(task))
            }
            None => (None, None),
        };

        let fail = |e: FifoError| {
            if created {
                let _ = std::fs::remove_file(&cfg.path);
            }
            e
        };
        let fd: OwnedFd = nix::fcntl::open(
            &cfg.path,
            OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|err| {
            fail(FifoError::Open {
                kind: cfg.kind.clone(),
                path: shown.clone(),
                err,
            })
        })?;
        // On EEXIST the path may be something planted; only our FIFO will do.
        let ours = nix::sys::stat::fstat(&fd).is_ok_and(|st| {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO
                && (st.st_uid == our_uid || st.st_uid == cfg.owner_uid)
        });
        if !ours {
            return Err(fail(FifoError::NotOurs {
                kind: cfg.kind,
                path: shown,
            }));
        }
        let afd = register_fd(fd, tokio::io::Interest::WRITABLE).map_err(|err| {
            fail(FifoError::Register {
                kind: cfg.kind.clone(),
                path: shown.clone(),
                err,
            })
        })?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_lines(afd, rx, shown, dropped.clone()));
        Ok(Self {
            path: cfg.path,
            created,
            lines: Some(tx),
            dropped,
            writer: Some(writer),
            script_stop,
            script_task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one line (with its `\n`); never waits. Returns false when the
    /// line was dropped because the reader is not keeping up.
    pub fn send_line(&self, line: &str) -> bool {
        let Some(tx) = &self.lines else {
            return false;
        };
        match tx.try_send(line.as_bytes().to_vec()) {
            Ok(()) => true,
            Err(_) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "notify fifo {} is full (is its reader running?) - dropping notifications",
                        self.path.display()
                    );
                }
                false
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Flushes what the reader takes within `grace`, then closes, unlinks a
    /// FIFO we created and stops the script.
    pub async fn close(mut self, grace: Duration) {
        self.lines = None;
        if let Some(mut w) = self.writer.take()
            && tokio::time::timeout(grace, &mut w).await.is_err()
        {
            w.abort();
        }
        self.finish().await;
    }

    async fn finish(&mut self) {
        // Unlink first so a script that reopens the FIFO in a loop cannot.
        if self.created {
            let _ = std::fs::remove_file(&self.path);
            self.created = false;
        }
        if let Some(stop) = self.script_stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.script_task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for NotifyFifo {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort();
        }
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(stop) = self.script_stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn write_lines(
    fd: AsyncFd<OwnedFd>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    shown: String,
    dropped: Arc<AtomicU64>,
) {
    let mut reported_drops = 0;
    while let Some(line) = rx.recv().await {
        let mut off = 0;
        while off < line.len() {
            let mut guard = match fd.writable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!("notify fifo {shown}: {e}");
                    return;
                }
            };
            // SAFETY: writing from a valid slice to a descriptor we own.
            let n = unsafe {
                libc::write(
                    fd.get_ref().as_raw_fd(),
                    line[off..].as_ptr().cast(),
                    line.len() - off,
                )
            };
            if n >= 0 {
                off += usize::try_from(n).unwrap_or(0);
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                std::io::ErrorKind::Interrupted => {}
                _ => {
                    tracing::warn!("write to notify fifo {shown} failed: {err}");
                    break;
                }
            }
        }
        let d = dropped.load(Ordering::Relaxed);
        if d != reported_drops {
            tracing::warn!(
                "notify fifo {shown}: reader caught up; {} notifications were dropped",
                d - reported_drops
            );
            reported_drops = d;
        }
    }
}

async fn run_fifo_script(
    script: CheckedScript,
    fifo: OsString,
    kind: String,
    stop: oneshot::Receiver<()>,
) {
    let mut child = match GroupChild::spawn(&script, &[fifo]) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("Unable to execute {kind}notify fifo script: {e}");
            return;
        }
    };
    tokio::select! {
        _ = child.wait() => {
            tracing::info!("{kind}notify fifo script terminated");
        }
        _ = stop => {
            child.signal_group(nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(1), child.wait()).await.is_err() {
                child.signal_group(nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait().await;
            }
        }
    }
}
