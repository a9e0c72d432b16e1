//! Network namespaces, veth pairs and a bridge for end-to-end tests.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);
/// Every lab namespace starts with this, so a crashed run's leftovers are found.
const NS_PREFIX: &str = "xvt";

/// Fails the test with a clear message unless it runs as root.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!(
            "this test needs root (network namespaces, eBPF, raw sockets): \
             run the suite with `cargo xtask test` as root"
        );
    }
}

/// Runs a command to completion; an error carries its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// Deletes namespaces left by lab runs whose process is gone.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// A set of hosts on one Ethernet segment (a bridge in its own namespace).
pub struct Lab {
    tag: String,
    switch: String,
    hosts: Vec<String>,
    children: Vec<Child>,
}

/// One namespace with one interface (`eth0`) on the lab's bridge.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub ifname: String,
}

impl Lab {
    /// A new, empty segment. Namespaces are named `xvt<pid>-<seq>-…`.
    pub fn new() -> Result<Self> {
        require_root();
        remove_stale_namespaces();
        let tag = format!(
            "{NS_PREFIX}{}-{}",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{tag}-sw");
        ip(&["netns", "add", &switch])?;
        let lab = Lab {
            tag,
            switch,
            hosts: Vec::new(),
            children: Vec::new(),
        };
        lab.add_bridge("br0")?;
        // With br_netfilter loaded the bridge would validate and filter IP
        // headers: a switch must forward frames as they are.
        for family in ["iptables", "ip6tables", "arptables"] {
            let _ = lab.exec_ns(
                &lab.switch,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.bridge.bridge-nf-call-{family}=0"),
                ],
            );
        }
        Ok(lab)
    }

    /// A bridge `name` in the switch namespace, up: no STP or forwarding
    /// delay (ports forward at once), multicast flooded.
    pub fn add_bridge(&self, name: &str) -> Result<()> {
        self.exec_ns(&self.switch, &["ip", "link", "add", name, "type", "bridge"])?;
        self.exec_ns(
            &self.switch,
            &[
                "ip",
                "link",
                "set",
                name,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "stp_state",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        self.exec_ns(&self.switch, &["ip", "link", "set", name, "up"])?;
        Ok(())
    }

    fn exec_ns(&self, ns: &str, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// Adds a host with `addrs` (CIDR) on its `eth0`; IPv6 DAD is off so
    /// addresses are usable at once.
    pub fn add_host(&mut self, name: &str, addrs: &[&str]) -> Result<Host> {
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        for conf in ["all", "default"] {
            self.exec_ns(
                &ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{conf}.accept_dad=0"),
                ],
            )?;
        }
        let idx = self.hosts.len();
        let peer = format!("p{idx}");
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &self.switch,
        ])?;
        self.exec_ns(
            &self.switch,
            &["ip", "link", "set", &peer, "master", "br0", "up"],
        )?;
        let mac = format!("02:00:00:00:00:{idx:02x}");
        self.exec_ns(&ns, &["ip", "link", "set", "eth0", "address", &mac])?;
        self.exec_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        self.exec_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
        for a in addrs {
            self.exec_ns(&ns, &["ip", "addr", "add", a, "dev", "eth0"])?;
        }
        Ok(Host {
            ns,
            ifname: "eth0".into(),
        })
    }

    /// A tap `name` on the bridge, for a qemu guest started in the switch
    /// namespace (`ip netns exec`), multi-queue like the guest's NIC.
    pub fn add_tap(&self, name: &str) -> Result<()> {
        self.exec_ns(
            &self.switch,
            &["ip", "tuntap", "add", name, "mode", "tap", "multi_queue"],
        )?;
        self.exec_ns(
            &self.switch,
            &["ip", "link", "set", name, "master", "br0", "up"],
        )?;
        Ok(())
    }

    /// The bridge-side port of `host` (to take its link down from outside).
    pub fn switch_port(&self, host: &Host) -> Option<String> {
        self.hosts
            .iter()
            .position(|h| *h == host.ns)
            .map(|i| format!("p{}", i + 1))
    }

    /// Runs a command in the switch namespace (e.g. a capture on br0).
    pub fn switch_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.switch]).args(args);
        c
    }

    /// Keeps a child process to kill when the lab goes away.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The name of the switch (bridge) namespace.
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            // Kill anything still running in the namespace, then delete it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Host {
    /// A command that runs inside this host's namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Runs a command in the namespace to completion.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args))
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.ns)
    }

    /// Runs `f` on a thread that has entered this namespace (sockets, eBPF
    /// attach and netlink in `f` all happen inside it).
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.netns_path();
        let handle = thread::spawn(move || -> Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            setns(file, CloneFlags::CLONE_NEWNET).context("setns")?;
            f()
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside the namespace panicked"))?
    }

    /// Runs the future `f` builds on a current-thread tokio runtime inside
    /// this namespace, bounded to 60 s.
    pub fn block_on_in<T, F>(&self, f: impl FnOnce() -> F + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>>,
    {
        self.run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?;
            rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(60), f())
                    .await
                    .context("the test body took over 60 s")?
            })
        })
    }

    /// Like [`run_in`](Self::run_in) but returns at once with the join handle.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> thread::JoinHandle<Result<T>> {
        let path = self.netns_path();
        thread::spawn(move || -> Result<T> {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            setns(file, CloneFlags::CLONE_NEWNET).context("setns")?;
            f()
        })
    }

    pub fn ifindex(&self) -> Result<u32> {
        let out = self.exec(&["cat", &format!("/sys/class/net/{}/ifindex", self.ifname)])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }

    /// Whether `addr` (no prefix) is configured on this host.
    pub fn has_addr(&self, addr: &str) -> Result<bool> {
        let out = self.exec(&["ip", "-o", "addr", "show"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(addr)))
    }
}

/// Frames caught by [`Host::capture`].
pub struct Capture {
    handle: thread::JoinHandle<Result<Vec<Vec<u8>>>>,
}

impl Capture {
    /// Waits for the capture to end (enough frames, or its timeout) and
    /// returns the frames kept, in arrival order.
    pub fn wait(self) -> Result<Vec<Vec<u8>>> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("capture thread panicked"))?
    }
}

impl Host {
    /// Captures the frames this namespace receives (AF_PACKET, all
    /// protocols, not its own outgoing ones) for which `keep` is true, until
    /// `count` are kept or `timeout` passes. Returns once the socket is
    /// open, so frames sent afterwards are seen.
    pub fn capture(
        &self,
        timeout: Duration,
        count: usize,
        keep: impl Fn(&[u8]) -> bool + Send + 'static,
    ) -> Result<Capture> {
        use nix::sys::socket::{
            AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt,
            socket, sockopt,
        };
        use std::os::fd::AsRawFd;
        const PACKET_OUTGOING: u8 = 4;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = self.spawn_in(move || {
            let fd = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::EthAll,
            )
            .context("opening a capture socket")?;
            setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(0, 50_000),
            )?;
            let _ = ready_tx.send(());
            let end = Instant::now() + timeout;
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 65536];
            while kept.len() < count && Instant::now() < end {
                match recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
                    Ok((n, from)) => {
                        let outgoing = from.is_some_and(|a| a.pkttype() == PACKET_OUTGOING);
                        if !outgoing && keep(&buf[..n]) {
                            kept.push(buf[..n].to_vec());
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e).context("capturing"),
                }
            }
            Ok(kept)
        });
        if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            // The thread ended before opening the socket: report why.
            return match (Capture { handle }).wait() {
                Err(e) => Err(e.context("the capture socket did not open")),
                Ok(_) => bail!("the capture socket did not open"),
            };
        }
        Ok(Capture { handle })
    }
}

/// Polls `cond` every `step` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, step: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(step);
    }
}

/// An AF_PACKET socket bound to `ifname` inside `host`, for injecting crafted
/// frames (the socket keeps its namespace; it can be used from any thread).
pub fn frame_injector(host: &Host, ifname: &str) -> Result<FrameInjector> {
    let ifname = ifname.to_string();
    host.run_in(move || FrameInjector::open(&ifname))
}

pub struct FrameInjector {
    fd: std::os::fd::OwnedFd,
}

impl FrameInjector {
    fn open(ifname: &str) -> Result<Self> {
        use std::os::fd::FromRawFd;
        let cname = std::ffi::CString::new(ifname)?;
        // SAFETY: plain libc calls; the fd is owned at once.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname}");
        }
        // SAFETY: as above.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        use std::os::fd::AsRawFd;
        // SAFETY: sll is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Self { fd })
    }

    /// Sends one frame as is.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: frame is a valid buffer of the given length.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }
}
