//! The HTTP endpoint, read-only: the exposition on `GET /metrics`, the
//! status report on `GET /status` (the JSON of `xvrrpd status --json`) and
//! the event stream on `GET /events` (JSON lines, as `xvrrpd events
//! --json`), with bounded request size, time and concurrency.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};

use super::{CONTENT_TYPE, Metrics, MetricsError};

/// Limits of the HTTP endpoint.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Whole request head (request line and headers).
    pub max_request_bytes: usize,
    /// From accept to the response written.
    pub timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 * 1024,
            timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

/// The running endpoint. Dropping it leaves the server running; call
/// [`MetricsServer::shutdown`] to stop it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown(self) {
        self.task.abort();
    }

    pub fn into_join_handle(self) -> JoinHandle<()> {
        self.task
    }
}

/// Serves `GET /metrics` on `addr` with the default limits. Binds before
/// returning, so a busy port is an error here, not a log line later. Call
/// from within the tokio runtime.
pub fn serve(addr: SocketAddr, metrics: Metrics) -> Result<MetricsServer, MetricsError> {
    serve_with(addr, metrics, ServeOptions::default())
}

pub fn serve_with(
    addr: SocketAddr,
    metrics: Metrics,
    opts: ServeOptions,
) -> Result<MetricsServer, MetricsError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| MetricsError::NoRuntime)?;
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    std_listener.set_nonblocking(true)?;
    let _guard = rt.enter();
    let listener = TcpListener::from_std(std_listener)?;
    let local_addr = listener.local_addr()?;
    let task = rt.spawn(accept_loop(listener, metrics, opts));
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, metrics: Metrics, opts: ServeOptions) {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answered = tokio::time::timeout(opts.timeout, handle(stream, &metrics, opts)).await;
            // The event stream outlives the request's time limit; each of
            // its writes has its own.
            if let Ok(Ok(Some((mut stream, follower)))) = answered {
                let _ = crate::control::events::stream_lines(follower, &mut stream, true).await;
                let _ = stream.shutdown().await;
            }
        });
    }
}

/// An event stream to serve after the response head.
type Streaming = Option<(TcpStream, crate::control::events::Follower)>;

async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    opts: ServeOptions,
) -> io::Result<Streaming> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_len = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > opts.max_request_bytes {
            return done(
                respond(&mut stream, "431 Request Header Fields Too Large", "", b"").await,
            );
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_len > opts.max_request_bytes {
        return done(respond(&mut stream, "431 Request Header Fields Too Large", "", b"").await);
    }
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut words = head.lines().next().unwrap_or("").split_ascii_whitespace();
    let (method, target, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return done(respond(&mut stream, "400 Bad Request", "", b"").await);
    };
    if !version.starts_with("HTTP/1.") {
        return done(respond(&mut stream, "505 HTTP Version Not Supported", "", b"").await);
    }
    let path = target.split('?').next().unwrap_or(target);
    let answered = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            // The datapath figures are read on the loop, fresh for each scrape.
            metrics.refresh().await;
            match metrics.encode() {
                Ok(body) => {
                    // HEAD: the same head (Content-Length included), no body.
                    let head = method == "HEAD";
                    respond_with(&mut stream, "200 OK", CONTENT_TYPE, body.as_bytes(), !head).await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: encoding failed");
                    respond(&mut stream, "500 Internal Server Error", "", b"").await
                }
            }
        }
        ("GET" | "HEAD", "/status") => match metrics.status().await {
            Some(report) => {
                let body = serde_json::to_vec_pretty(&report).map_err(io::Error::other)?;
                let head = method == "HEAD";
                respond_with(&mut stream, "200 OK", JSON, &body, !head).await
            }
            None => respond(&mut stream, "503 Service Unavailable", "", b"").await,
        },
        ("GET", "/events") => match metrics.follow_events() {
            Some(follower) => {
                let _ = socket2::SockRef::from(&stream)
                    .set_send_buffer_size(crate::control::socket::EVENTS_SNDBUF);
                // No length: the body is the stream, until either side ends.
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {NDJSON}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await?;
                return Ok(Some((stream, follower)));
            }
            None => respond(&mut stream, "503 Service Unavailable", "", b"").await,
        },
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                b"this endpoint serves /metrics, /status and /events\n",
            )
            .await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "", b"").await,
    };
    done(answered)
}

fn done(r: io::Result<()>) -> io::Result<Streaming> {
    r.map(|()| None)
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    respond_with(stream, status, content_type, body, true).await
}

async fn respond_with(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    send_body: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if status.starts_with("405") {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if send_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await?;
    // Read what the client still sends until it closes (bounded by the
    // caller's timeout): closing with unread input would reset the
    // connection and could destroy the response before the client reads it.
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
