//! The warden: a small process the daemon starts beside itself, in a
//! session of its own, that outlives it. It sleeps on the daemon's pidfd.
//! If the daemon dies without a clean stop (its pins are still there), the
//! warden watches the pinned fence maps and removes each VIP the dead
//! daemon held as soon as another router owns it — the kernel fence already
//! stopped this host answering for it; the warden takes the address away
//! too, so local programs stop treating it as local. It exits when every
//! such VIP is gone, when a new daemon clears the pins, or after a clean
//! stop (the daemon ends it).

use std::{
    collections::HashSet,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{fs::MetadataExt, process::CommandExt},
    },
    path::Path,
    process::{Child, Command, ExitCode, Stdio},
    time::Duration,
};

use tracing::{info, warn};

use crate::{
    clock::monotonic_ns,
    datapath::{
        fence::{FenceView, guard_addr},
        pin::PinDir,
    },
    net::addr::{Vip, VipManager},
};

/// How often a dead daemon's fence maps are read.
const POLL: Duration = Duration::from_millis(10);

/// Starts the warden for this process and `pins`.
pub fn spawn(pins: &PinDir) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("warden")
        .arg("--agent-pid")
        .arg(std::process::id().to_string())
        .arg("--pin-dir")
        .arg(pins.path())
        .stdin(Stdio::null())
        // A process group of its own keeps the warden out of a signal to the
        // daemon's group. Unlike a `pre_exec` hook it lets the standard
        // library use posix_spawn: no fork of the daemon's address space,
        // and the event loop that spawns it waits about a millisecond, not
        // several.
        .process_group(0);
    cmd.spawn()
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
pub fn warden_main(agent_pid: u32, pin_dir: &Path) -> ExitCode {
    let pins = PinDir::at(pin_dir);
    let Some(identity) = dir_identity(pin_dir) else {
        return ExitCode::SUCCESS;
    };
    if let Err(e) = wait_for_exit(agent_pid) {
        warn!("warden: cannot watch xvrrpd (pid {agent_pid}): {e}");
        return ExitCode::FAILURE;
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
            let gone: Vec<Vip> = marked
                .iter()
                .filter(|a| {
                    fenced
                        .iter()
                        .any(|f| (f.ifindex, f.addr) == (a.ifindex, a.addr))
                })
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

/// Blocks until process `pid` has exited.
fn wait_for_exit(pid: u32) -> std::io::Result<()> {
    // SAFETY: pidfd_open with a pid and no flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        // Already gone.
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(e)
        };
    }
    // SAFETY: a fresh descriptor owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, -1) };
        if n > 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if n < 0 && e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
