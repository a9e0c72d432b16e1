//! A capture of everything crossing the lab's bridge: tcpdump on `br0` in
//! the switch namespace, nanosecond timestamps, written packet by packet.
//!
//! A bridge in promiscuous mode (tcpdump puts it there) hands a copy of
//! every frame it forwards to its own device, so `br0` sees the traffic
//! between all ports, at one place and on one clock. Timestamps are
//! CLOCK_REALTIME: compare them with each other, or with a [`Stamp`]'s
//! `rt_ns`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{
    lab::Lab,
    pcap::{Pcap, WireEvent},
};

/// What the bridge capture keeps: VRRP (IPv4 and IPv6), ARP, ICMP, ICMPv6.
pub const DEFAULT_FILTER: &str = "ip proto 112 or ip6 proto 112 or arp or icmp or icmp6";

/// tcpdump running on the bridge; stopped (SIGINT, then SIGKILL) on drop.
pub struct BridgeCapture {
    child: Option<Child>,
    path: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

/// The frames of a capture, decoded, and what tcpdump said about losses.
#[derive(Clone, Debug)]
pub struct WireLog {
    pub path: PathBuf,
    pub events: Vec<WireEvent>,
    /// "N packets dropped by kernel" at the end (None while running).
    pub dropped_by_kernel: Option<u64>,
}

impl BridgeCapture {
    /// Starts tcpdump on the lab's bridge, writing `path`, and returns once
    /// it listens (so frames sent afterwards are in the file).
    pub fn start(lab: &Lab, path: &Path, filter: &str) -> Result<Self> {
        let mut cmd = lab.switch_cmd(&[
            "tcpdump",
            "-Z",
            "root",
            "-i",
            "br0",
            "-n",
            "-U",
            "--immediate-mode",
            "-B",
            "8192",
            "-s",
            "512",
            "--time-stamp-precision=nano",
            "-w",
        ]);
        cmd.arg(path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| {
            "starting tcpdump in the switch namespace (is tcpdump installed? `cargo xtask setup`)"
        })?;
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let keep = lines.clone();
        let stderr_thread = thread::spawn(move || {
            // Ends with tcpdump (EOF on its stderr).
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let mut cap = BridgeCapture {
            child: Some(child),
            path: path.to_path_buf(),
            stderr: lines,
            stderr_thread: Some(stderr_thread),
        };
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let said = cap.stderr_text();
            let _ = cap.stop();
            bail!("tcpdump on br0 did not start listening within 10 s: {said}");
        }
        Ok(cap)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join(" | ")
    }

    /// The frames written so far (the capture keeps running).
    pub fn snapshot(&self) -> Result<WireLog> {
        let p = Pcap::read(&self.path)?;
        Ok(WireLog {
            path: self.path.clone(),
            events: p.events()?,
            dropped_by_kernel: None,
        })
    }

    /// Stops tcpdump (SIGINT: it flushes and prints its counters) and
    /// returns every frame. Fails if the kernel dropped frames: timing
    /// analysis on an incomplete capture would be wrong.
    pub fn stop(&mut self) -> Result<WireLog> {
        let Some(mut child) = self.child.take() else {
            bail!("the capture was already stopped");
        };
        let pid = Pid::from_raw(child.id() as i32);
        // Let the last frames of the scenario reach the file.
        thread::sleep(Duration::from_millis(20));
        let _ = kill(pid, Signal::SIGINT);
        let end = Instant::now() + Duration::from_secs(5);
        let mut status = None;
        while Instant::now() < end {
            if let Some(s) = child.try_wait()? {
                status = Some(s);
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "tcpdump did not stop on SIGINT within 5 s: {}",
                self.stderr_text()
            );
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let said = self.stderr.lock().unwrap().clone();
        let dropped = said.iter().find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")
                .and_then(|n| n.trim().parse::<u64>().ok())
        });
        let p = Pcap::read(&self.path)?;
        let log = WireLog {
            path: self.path.clone(),
            events: p.events()?,
            dropped_by_kernel: dropped,
        };
        if dropped.unwrap_or(0) > 0 {
            bail!(
                "tcpdump lost frames ({} dropped by kernel): the capture {} is incomplete",
                dropped.unwrap_or(0),
                self.path.display()
            );
        }
        Ok(log)
    }
}

impl Drop for BridgeCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }
}
