//! The control socket: a unix stream socket answering one request per
//! connection. Requests are one line: `status` (the answer is JSON), or
//! `events` / `events json` (the event stream, a line per event, until
//! the follower goes or falls behind).

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
};

use super::{
    events::{EventBus, stream_lines},
    status::StatusReport,
};

/// The pid of the process serving `path`, if one answers.
fn serving_pid(path: &Path) -> Option<Option<i32>> {
    let stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    Some(
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .ok()
            .map(|c| c.pid()),
    )
}

/// A request the event loop answers.
pub enum Request {
    Status(oneshot::Sender<StatusReport>),
    /// A metrics scrape: refresh the datapath figures, then answer.
    Refresh(oneshot::Sender<()>),
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error(
        "cannot reach xvrrpd at {path}: {source} (is it running? is --control-socket the same?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to xvrrpd at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("xvrrpd answered something that is not a status report: {0}")]
    BadAnswer(String),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds the socket (replacing a stale one) and serves requests until the
/// returned task is aborted.
pub fn serve(
    path: &Path,
    requests: mpsc::Sender<Request>,
    events: EventBus,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let listen_err = |source| ControlError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(listen_err)?;
    }
    // A socket file left by a dead daemon would make bind fail; a live one
    // answers connects, and then we refuse to steal it.
    if path.exists() {
        if let Some(pid) = serving_pid(path) {
            let who = pid.map_or("another xvrrpd".to_string(), |p| {
                format!("another xvrrpd (pid {p})")
            });
            return Err(listen_err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{who} is serving this socket in this network namespace; stop it, or give \
                     this one its own --control-socket"
                ),
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(listen_err)?;
    Ok(tokio::spawn(accept_loop(listener, requests, events)))
}

/// Connections answered at once; more are closed as they come, so a client
/// that opens many cannot use up the daemon's file descriptors.
pub const MAX_CONNECTIONS: usize = 16;
/// A failing accept (out of file descriptors, say) is tried again after
/// this, doubling up to [`ACCEPT_RETRY_MAX`], instead of at once.
const ACCEPT_RETRY_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

async fn accept_loop(listener: UnixListener, requests: mpsc::Sender<Request>, events: EventBus) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut retry = Duration::ZERO;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                retry = Duration::ZERO;
                stream
            }
            Err(e) => {
                retry = (retry * 2).clamp(ACCEPT_RETRY_FIRST, ACCEPT_RETRY_MAX);
                tracing::warn!("control socket: accept: {e} (trying again in {retry:?})");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                "control socket: {MAX_CONNECTIONS} connections open: closing a new one"
            );
            continue;
        };
        let requests = requests.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let _ = answer(stream, requests, events).await;
            drop(slot);
        });
    }
}

/// A request and its answer within this; an event stream has no end, but
/// each of its writes is bounded ([`super::events::WRITE_TIMEOUT`]).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Send buffer of an event stream's connection (the kernel doubles it).
pub const EVENTS_SNDBUF: usize = 32 * 1024;

async fn answer(
    stream: UnixStream,
    requests: mpsc::Sender<Request>,
    events: EventBus,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // Bounded: a client cannot make us buffer more than one short line.
    let mut reader = BufReader::new(rd.take(256));
    if tokio::time::timeout(ANSWER_TIMEOUT, reader.read_line(&mut line))
        .await
        .is_err()
    {
        return Ok(());
    }
    match line.trim() {
        "status" => {
            let reply = async {
                let (tx, rx) = oneshot::channel();
                if requests.send(Request::Status(tx)).await.is_err() {
                    return Ok(());
                }
                if let Ok(report) = rx.await {
                    let json = serde_json::to_vec(&report).map_err(io::Error::other)?;
                    wr.write_all(&json).await?;
                }
                io::Result::Ok(())
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, reply).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            }
        }
        "events" | "events json" => {
            // A small send buffer: a follower that stops reading holds
            // little kernel memory, and is found out (and cut off) soon.
            let _ = socket2::SockRef::from(wr.as_ref()).set_send_buffer_size(EVENTS_SNDBUF);
            let follower = events.subscribe();
            stream_lines(follower, &mut wr, line.trim() == "events json").await?;
        }
        other => {
            wr.write_all(format!("{{\"error\":\"unknown request {other:?}\"}}").as_bytes())
                .await?;
        }
    }
    wr.shutdown().await
}

/// `xvrrpd status`: asks the daemon for its report.
pub fn fetch_status(path: &Path) -> Result<StatusReport, ControlError> {
    use std::io::{Read, Write};
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ControlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io_err)?;
    s.write_all(b"status\n").map_err(io_err)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(io_err)?;
    serde_json::from_slice(&buf).map_err(|_| {
        ControlError::BadAnswer(String::from_utf8_lossy(&buf).chars().take(200).collect())
    })
}

/// `xvrrpd events`: follows the daemon's event stream, writing each line to
/// `out`, until the daemon stops, cuts this follower off, or `out` fails.
pub fn follow_events(
    path: &Path,
    json: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), ControlError> {
    use std::io::{BufRead, Write};
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ControlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    s.write_all(if json { b"events json\n" } else { b"events\n" })
        .map_err(io_err)?;
    for line in std::io::BufReader::new(s).lines() {
        let line = line.map_err(io_err)?;
        writeln!(out, "{line}").map_err(io_err)?;
        out.flush().map_err(io_err)?;
    }
    Ok(())
}
