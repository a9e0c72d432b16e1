//! The warden: a small process the daemon starts beside itself, in a
//! process group of its own, that outlives it. It sleeps on the daemon's
//! pidfd and on a pipe through which the daemon keeps it told of each
//! master's priority-0 advert (its "farewell").
//!
//! If the daemon dies without its shutdown (kill -9, a crash, the OOM
//! killer, systemd's watchdog), the warden at once sends those adverts, as
//! the daemon's own shutdown would have: each backup takes over after its
//! Skew_Time instead of waiting a whole Master_Down_Interval. Then, if the
//! datapath is pinned, it watches the pinned fence maps and removes each
//! VIP the dead daemon held as soon as another router owns it — the kernel
//! fence already stopped this host answering for it; the warden takes the
//! address away too, so local programs stop treating it as local. It exits
//! when every such VIP is gone, when a new daemon clears the pins, or after
//! a clean stop (the daemon ends it).

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{fs::MetadataExt, process::CommandExt},
    },
    path::Path,
    process::{Child, ChildStdin, Command, ExitCode, Stdio},
    rc::Rc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    clock::monotonic_ns,
    datapath::{
        fence::{FenceView, end_leases, guard_addr},
        pin::PinDir,
        send::{AdvertSender, Farewell, SenderPool},
    },
    net::addr::{Vip, VipManager},
};

/// How often a dead daemon's fence maps are read.
const POLL: Duration = Duration::from_millis(10);

/// One line on the warden's stdin: an instance's farewell, or none (it is
/// no longer master, or said goodbye itself).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub instance: String,
    pub farewell: Option<Farewell>,
}

/// The running warden, as the daemon holds it.
pub struct Warden {
    child: Child,
    /// Non-blocking. It stays open after a failed write: its end is the
    /// warden's news of our death.
    tell: Option<std::fs::File>,
    /// A write failed: nothing more is told.
    broken: bool,
    /// Lines the full pipe did not take yet, sent before the next ones.
    pending: std::collections::VecDeque<Vec<u8>>,
}

/// Room for the farewells of a few thousand masters told at once (a
/// message is a few hundred bytes; the default pipe holds 64 KiB).
const PIPE_BYTES: i32 = 1 << 20;

/// The highest descriptor this process may have, up to 4095: the pipe to
/// the warden goes there (see [`onto_high_slot`]).
fn high_slot() -> Option<i32> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let slot = i32::try_from(lim.rlim_cur.min(4096)).ok()? - 1;
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    let free = unsafe { libc::fcntl(slot, libc::F_GETFD) } < 0;
    (slot > 2 && free).then_some(slot)
}

/// `pipe` moved to the highest free descriptor. A killed process closes
/// its descriptors and the kernel releases them last-closed first, each
/// socket taking it milliseconds (RCU grace periods, multicast leaves):
/// with a few dozen, tens of milliseconds before the pidfd says the
/// process is gone. Released first, the pipe's end tells the warden at
/// the start of that, and the farewell leaves before it.
fn onto_high_slot(pipe: ChildStdin) -> std::fs::File {
    let pipe = OwnedFd::from(pipe);
    if let Some(slot) = high_slot() {
        // SAFETY: dup3 onto a descriptor just found free; the new one is
        // owned from here on, the old one dropped.
        if unsafe { libc::dup3(pipe.as_raw_fd(), slot, libc::O_CLOEXEC) } == slot {
            return std::fs::File::from(unsafe { OwnedFd::from_raw_fd(slot) });
        }
    }
    std::fs::File::from(pipe)
}

/// Starts the warden for this process, with `pins` if the datapath is
/// pinned (without, it only says the farewells).
pub fn spawn(pins: Option<&PinDir>) -> std::io::Result<Warden> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("warden")
        .arg("--agent-pid")
        .arg(std::process::id().to_string());
    if let Some(pins) = pins {
        cmd.arg("--pin-dir").arg(pins.path());
    }
    cmd.stdin(Stdio::piped())
        // A process group of its own keeps the warden out of a signal to the
        // daemon's group. Unlike a `pre_exec` hook it lets the standard
        // library use posix_spawn: no fork of the daemon's address space,
        // and the event loop that spawns it waits about a millisecond, not
        // several.
        .process_group(0);
    let mut child = cmd.spawn()?;
    let tell = child.stdin.take().map(onto_high_slot);
    if let Some(t) = &tell {
        // The event loop never waits on the pipe: what a full pipe does not
        // take waits in `pending`.
        set_nonblocking(t.as_raw_fd())?;
        // SAFETY: fcntl on a descriptor we own; a refusal keeps the default.
        unsafe { libc::fcntl(t.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    }
    Ok(Warden {
        child,
        tell,
        broken: false,
        pending: std::collections::VecDeque::new(),
    })
}

impl Warden {
    /// Tells the warden the farewell of `instance` (or that it has none).
    pub fn tell(&mut self, instance: &str, farewell: Option<&Farewell>) {
        if self.tell.is_none() || self.broken {
            return;
        }
        let msg = Message {
            instance: instance.to_string(),
            farewell: farewell.cloned(),
        };
        let mut line = match serde_json::to_vec(&msg) {
            Ok(l) => l,
            Err(e) => {
                warn!("warden: cannot encode the farewell of {instance}: {e}");
                return;
            }
        };
        line.push(b'\n');
        self.pending.push_back(line);
        self.flush();
    }

    /// Writes the pending lines the pipe takes now, in order.
    fn flush(&mut self) {
        let Some(pipe) = self.tell.as_mut() else {
            return;
        };
        while let Some(line) = self.pending.front() {
            // A line is far below PIPE_BUF: written whole or not at all.
            match pipe.write(line) {
                Ok(_) => {
                    self.pending.pop_front();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(
                        "warden: cannot tell it the farewells ({e}): if xvrrpd dies, its \
                         backups wait a whole Master_Down_Interval"
                    );
                    self.broken = true;
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// Ends the warden (a clean stop: the daemon said its goodbyes itself).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Ends the warden of a previous run whose datapath this run adopted
/// (its pins stay, so it would not notice the new daemon).
pub fn end_previous(pins: &PinDir) {
    let dir = pins.path().to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.get(1) == Some(&&b"warden"[..])
            && args
                .windows(2)
                .any(|w| w[0] == b"--pin-dir" && w[1] == dir.as_bytes());
        if ours {
            // SAFETY: a signal to a process id just read from /proc.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// `xvrrpd warden`: runs until the daemon's VIPs are safe.
pub fn warden_main(agent_pid: u32, pin_dir: Option<&Path>) -> ExitCode {
    let pins = pin_dir.map(PinDir::at);
    let sockets = SenderPool::default();
    let (mut farewells, _open) = match wait_for_exit(agent_pid, &sockets) {
        Ok(f) => f,
        Err(e) => {
            warn!("warden: cannot watch xvrrpd (pid {agent_pid}): {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(pins) = &pins {
        keep_if_still_advertising(&mut farewells, pins, agent_pid);
    }
    say_farewells(agent_pid, &farewells, &sockets);
    // The dead daemon's pins, as it left them (the warden may have started
    // before they existed); a new daemon's directory differs.
    let identity = pin_dir.and_then(dir_identity);
    let (Some(pins), Some(identity)) = (pins, identity) else {
        return ExitCode::SUCCESS;
    };
    if !farewells.is_empty() {
        let vrids: Vec<_> = farewells.values().map(Farewell::vrid_key).collect();
        if let Err(e) = end_leases(&pins, &vrids) {
            warn!("warden: ending the fence leases: {e}");
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!("warden: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(guard_vips(&pins, identity))
}

/// Keeps the farewells of masters that may still have a backup counting
/// down. A master's fence lease runs two to three intervals past its last
/// advert; once it lapsed more than three intervals and a second ago, every
/// backup's down timer (at most four intervals) ran out long before: the
/// daemon had hung (SIGSTOP, then the watchdog killed it), and a
/// priority-0 advert now would only make the new master answer it. Dying
/// itself can take the kernel tens of milliseconds (closing the daemon's
/// sockets and maps), which the margin covers.
fn keep_if_still_advertising(
    farewells: &mut HashMap<String, Farewell>,
    pins: &PinDir,
    agent_pid: u32,
) {
    let Ok(view) = FenceView::read(pins) else {
        return;
    };
    let now = monotonic_ns();
    farewells.retain(|instance, f| {
        let key = f.vrid_key();
        let margin_ns = 3 * u64::from(f.interval_cs) * 10_000_000 + 1_000_000_000;
        let silent = view
            .leases
            .get(&key)
            .is_some_and(|until| now > until.saturating_add(margin_ns));
        if silent {
            info!(
                "warden: xvrrpd (pid {agent_pid}) had stopped advertising {instance} before it \
                 died: no priority-0 advert, its backups' down timers are running"
            );
        }
        !silent
    });
}

/// Sends the dead daemon's farewells, as its shutdown would have.
fn say_farewells(agent_pid: u32, farewells: &HashMap<String, Farewell>, sockets: &SenderPool) {
    let (names, list): (Vec<&String>, Vec<&Farewell>) = farewells.iter().unzip();
    let mut said = Vec::new();
    for (instance, sent) in names.into_iter().zip(Farewell::send_all(&list, sockets)) {
        match sent {
            Ok(_) => said.push(instance.as_str()),
            Err(e) => warn!("warden: the priority-0 advert of {instance}: {e}"),
        }
    }
    if said.is_empty() {
        return;
    }
    said.sort_unstable();
    let shown = if said.len() > 8 {
        format!("{} … ({} instances)", said[..8].join(", "), said.len())
    } else {
        said.join(", ")
    };
    info!(
        "warden: xvrrpd (pid {agent_pid}) died as master of {shown}: sent the priority-0 \
         adverts its shutdown would have, so the backups take over after their skew time"
    );
}

/// After the daemon died: removes each VIP it held once it is fenced.
async fn guard_vips(pins: &PinDir, identity: (u64, u64)) -> ExitCode {
    let vips = match VipManager::new() {
        Ok(v) => v,
        Err(e) => {
            warn!("warden: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut removed: HashSet<(u32, std::net::IpAddr)> = HashSet::new();
    loop {
        // A clean stop or a new daemon cleared (or replaced) the pins.
        if dir_identity(pins.path()) != Some(identity) {
            return ExitCode::SUCCESS;
        }
        let Ok(view) = FenceView::read(pins) else {
            return ExitCode::SUCCESS;
        };
        let held: HashSet<_> = view
            .guards
            .iter()
            .map(|(k, _)| (k.ifindex, guard_addr(k)))
            .collect();
        if held.is_subset(&removed) {
            return ExitCode::SUCCESS;
        }
        let fenced: Vec<_> = view
            .fenced(monotonic_ns())
            .into_iter()
            .filter(|f| !removed.contains(&(f.ifindex, f.addr)))
            .collect();
        if !fenced.is_empty()
            && let Ok(marked) = vips.list_marked().await
        {
            // A guard names the instance's interface; the address may sit
            // on a VMAC or another interface (`dev`, `use_vmac_addr`).
            let gone: Vec<Vip> = marked
                .iter()
                .filter(|a| fenced.iter().any(|f| f.addr == a.addr))
                .map(|a| Vip::new(a.ifindex, a.addr, a.prefix_len))
                .collect();
            for (v, r) in gone.iter().zip(vips.remove_vips(&gone).await) {
                match r {
                    Ok(_) => info!(
                        "warden: xvrrpd is dead and another router owns {}: removed it",
                        v.addr
                    ),
                    Err(e) => warn!("warden: removing {}: {e}", v.addr),
                }
            }
            removed.extend(fenced.iter().map(|f| (f.ifindex, f.addr)));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The pin directory as (device, inode): a new daemon's directory differs.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// The pipe from the daemon after a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pipe {
    Open,
    /// Its end closed: the daemon is dying (a clean stop ends the warden
    /// first), and it closes this pipe before its sockets.
    Closed,
    /// Unreadable: only the pidfd tells the death from here.
    Failed,
}

/// What the daemon told the warden: farewells by instance.
#[derive(Default)]
struct Told {
    farewells: HashMap<String, Farewell>,
    partial: Vec<u8>,
}

impl Told {
    /// Reads what `stdin` holds now.
    fn read_from(&mut self, stdin: &mut std::io::Stdin) -> Pipe {
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return Pipe::Closed,
                Ok(n) => self.take(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Pipe::Open,
                Err(e) => {
                    debug!("warden: reading from xvrrpd: {e}");
                    return Pipe::Failed;
                }
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            match serde_json::from_slice::<Message>(&line) {
                Ok(Message {
                    instance,
                    farewell: Some(f),
                }) => {
                    self.farewells.insert(instance, f);
                }
                Ok(Message {
                    instance,
                    farewell: None,
                }) => {
                    self.farewells.remove(&instance);
                }
                Err(e) => warn!("warden: a message from xvrrpd it cannot read: {e}"),
            }
        }
    }
}

/// The farewells by instance, and the sockets opened for them.
type Farewells = (HashMap<String, Farewell>, Vec<Rc<AdvertSender>>);

/// Opens (or keeps) the socket of each farewell in `sockets`.
fn open_sockets(told: &Told, sockets: &SenderPool) -> Vec<Rc<AdvertSender>> {
    told.farewells
        .iter()
        .filter_map(|(instance, f)| match f.open(sockets) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("warden: the socket for {instance}'s priority-0 advert: {e}");
                None
            }
        })
        .collect()
}

/// Blocks until process `pid` has exited, keeping what it tells on stdin
/// and each farewell's socket open in `sockets` (at the death sending is
/// all that is left: under systemd the rest of the unit is killed
/// milliseconds after its main process); returns its farewells as they
/// stood when it died.
fn wait_for_exit(pid: u32, sockets: &SenderPool) -> std::io::Result<Farewells> {
    let mut told = Told::default();
    // The pool keeps sockets only while someone holds them.
    let mut held: Vec<Rc<AdvertSender>> = Vec::new();
    let mut stdin = std::io::stdin();
    let mut stdin_open = set_nonblocking(libc::STDIN_FILENO).is_ok();
    // SAFETY: pidfd_open with a pid and no flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        // Already gone.
        return if e.raw_os_error() == Some(libc::ESRCH) {
            if stdin_open {
                let _ = told.read_from(&mut stdin);
            }
            Ok((told.farewells, held))
        } else {
            Err(e)
        };
    }
    // SAFETY: a fresh descriptor owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // A negative fd is skipped once the pipe is closed.
                fd: if stdin_open { libc::STDIN_FILENO } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if stdin_open && fds[1].revents != 0 {
            match told.read_from(&mut stdin) {
                Pipe::Open => held = open_sockets(&told, sockets),
                // Dying: it closed the pipe first of its descriptors; the
                // pidfd follows once the rest are closed.
                Pipe::Closed => return Ok((told.farewells, held)),
                Pipe::Failed => stdin_open = false,
            }
        }
        if fds[0].revents != 0 {
            // What it wrote just before dying is still in the pipe.
            if stdin_open {
                let _ = told.read_from(&mut stdin);
            }
            return Ok((told.farewells, held));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipe_to_the_warden_sits_above_every_other_descriptor() {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("cat");
        let pipe = onto_high_slot(child.stdin.take().expect("piped"));
        let fd = pipe.as_raw_fd();
        let highest = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .max();
        assert_eq!(highest, Some(fd), "released first when the process dies");
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "no script inherits it");
        // Its end is the warden's news: `cat` sees it and ends.
        drop(pipe);
        assert!(child.wait().expect("wait").success());
    }

    fn farewell(last: u8) -> Farewell {
        Farewell {
            ifindex: 3,
            join_ifindex: 3,
            source: "192.0.2.1".parse().expect("literal"),
            dest: crate::datapath::send::AdvertDest::vrrp_group(false),
            unicast_ttl: 255,
            message: vec![0x31, 7, 0, 1, 0, 100, 0, last],
            vrid: (3, 4, 7),
            interval_cs: 100,
        }
    }

    fn line(instance: &str, f: Option<Farewell>) -> Vec<u8> {
        let mut l = serde_json::to_vec(&Message {
            instance: instance.into(),
            farewell: f,
        })
        .expect("encodes");
        l.push(b'\n');
        l
    }

    #[test]
    fn the_last_word_on_each_instance_counts_even_split_across_reads() {
        let mut told = Told::default();
        let mut bytes = line("VI_1", Some(farewell(1)));
        bytes.extend(line("VI_2", Some(farewell(2))));
        bytes.extend(line("VI_1", None));
        bytes.extend(line("VI_2", Some(farewell(3))));
        let (a, b) = bytes.split_at(bytes.len() / 2 + 3);
        told.take(a);
        told.take(b);
        assert_eq!(told.farewells.len(), 1);
        assert_eq!(told.farewells.get("VI_2"), Some(&farewell(3)));
        assert!(told.partial.is_empty());
    }

    #[test]
    fn an_unreadable_line_is_skipped_and_the_next_one_read() {
        let mut told = Told::default();
        told.take(b"{not json\n");
        told.take(&line("VI_1", Some(farewell(1))));
        assert_eq!(told.farewells.get("VI_1"), Some(&farewell(1)));
    }
}
