//! One qemu guest: booted from an [`image`](super::image) initrd, its NIC a
//! tap on the lab's bridge, driven through a control port on its second
//! serial line (a Unix socket on the host).

use std::{
    fs,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::image::Kernel;

/// How qemu runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// Software emulation: timings are not meaningful.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "software emulation (TCG)",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => &["-accel", "tcg"],
        }
    }
}

/// What a guest is booted with.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub name: String,
    pub kernel: Kernel,
    pub initrd: PathBuf,
    pub accel: Accel,
    /// The tap in `netns` the guest's virtio-net NIC uses; None: no NIC.
    pub tap: Option<(String, String)>,
    pub mac: String,
    pub mem_mb: u32,
    /// Console log, control socket.
    pub dir: PathBuf,
}

/// A running guest; killed when dropped.
pub struct Vm {
    pub name: String,
    child: Child,
    ctl: UnixStream,
    pending: Vec<u8>,
    seq: u64,
    pub console_log: PathBuf,
    pub booted_in: Duration,
}

/// What a command printed and how it ended.
#[derive(Clone, Debug)]
pub struct Ran {
    pub rc: i32,
    pub out: String,
}

impl Vm {
    /// Boots the guest and waits until its control port answers.
    pub fn boot(spec: &VmSpec, timeout: Duration) -> Result<Vm> {
        fs::create_dir_all(&spec.dir)?;
        let console_log = spec.dir.join(format!("{}-console.log", spec.name));
        let sock = spec.dir.join(format!("{}-ctl.sock", spec.name));
        let _ = fs::remove_file(&sock);
        let mut c = match &spec.tap {
            Some((netns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        c.args(spec.accel.args())
            .args(["-m", &spec.mem_mb.to_string(), "-smp", "1"])
            .args(["-nodefaults", "-no-reboot", "-display", "none"])
            .args(["-monitor", "none", "-vga", "none"])
            .arg("-kernel")
            .arg(&spec.kernel.vmlinuz)
            .arg("-initrd")
            .arg(&spec.initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 rdinit=/sbin/init panic=-1 quiet systemd.show_status=0 \
                 systemd.hostname={}",
                spec.name
            ))
            .arg("-serial")
            .arg(format!("file:{}", console_log.display()))
            .arg("-chardev")
            .arg(format!(
                "socket,id=ctl,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["-serial", "chardev:ctl"]);
        if let Some((_, tap)) = &spec.tap {
            // Two queue pairs for one vCPU: XDP in native mode wants a
            // transmit queue of its own per CPU, as cloud NICs offer.
            c.arg("-netdev")
                .arg(format!(
                    "tap,id=n0,ifname={tap},script=no,downscript=no,queues=2"
                ))
                .arg("-device")
                .arg(format!(
                    "virtio-net-pci,netdev=n0,mac={},mq=on,vectors=6",
                    spec.mac
                ));
        }
        let started = Instant::now();
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("qemu-system-x86_64 (install it: apt-get install qemu-system-x86)")?;
        let deadline = started + timeout;
        let ctl = loop {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!(
                    "qemu for {} exited at start ({status}): {}",
                    spec.name,
                    err.trim()
                );
            }
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(e) => bail!("{}: control socket {sock:?}: {e}", spec.name),
            }
        };
        let mut vm = Vm {
            name: spec.name.clone(),
            child,
            ctl,
            pending: Vec::new(),
            seq: 0,
            console_log,
            booted_in: Duration::ZERO,
        };
        if let Err(e) = vm.read_until(b"@@vmctl-ready@@\n", deadline) {
            bail!(
                "{} did not boot within {timeout:?} ({e:#}); its console ended with:\n{}",
                spec.name,
                vm.console_tail(20)
            );
        }
        vm.booted_in = started.elapsed();
        Ok(vm)
    }

    /// Reads until `marker`; returns everything before it.
    fn read_until(&mut self, marker: &[u8], deadline: Instant) -> Result<Vec<u8>> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(i) = find(&self.pending, marker) {
                let before = self.pending[..i].to_vec();
                self.pending.drain(..i + marker.len());
                return Ok(before);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out");
            }
            self.ctl.set_read_timeout(Some(left))?;
            match self.ctl.read(&mut buf) {
                Ok(0) => bail!("the guest's control port closed (guest down?)"),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs a bash script in the guest; its exit status and output.
    pub fn sh(&mut self, script: &str, timeout: Duration) -> Result<Ran> {
        use base64::Engine;
        self.seq += 1;
        let tag = format!("c{}", self.seq);
        let line = format!(
            "{tag} {}\n",
            base64::engine::general_purpose::STANDARD.encode(script)
        );
        self.ctl.write_all(line.as_bytes())?;
        let deadline = Instant::now() + timeout;
        let name = self.name.clone();
        let what = || format!("{name}: `{}`", script.trim());
        self.read_until(format!("@@begin {tag}@@\n").as_bytes(), deadline)
            .with_context(what)?;
        let body = self
            .read_until(format!("\n@@end {tag} ").as_bytes(), deadline)
            .with_context(what)?;
        let rc = self.read_until(b"@@\n", deadline).with_context(what)?;
        let out = base64::engine::general_purpose::STANDARD
            .decode(body.trim_ascii())
            .with_context(what)?;
        Ok(Ran {
            rc: String::from_utf8_lossy(&rc).trim().parse().unwrap_or(-1),
            out: String::from_utf8_lossy(&out).into_owned(),
        })
    }

    /// Runs a script that must succeed; its output.
    pub fn ok(&mut self, script: &str) -> Result<String> {
        let r = self.sh(script, Duration::from_secs(60))?;
        if r.rc != 0 {
            bail!(
                "{}: `{}` exited {}: {}",
                self.name,
                script.trim(),
                r.rc,
                r.out.trim()
            );
        }
        Ok(r.out)
    }

    /// The last lines of the guest's console, for failure messages.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console_log, lines)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// KVM when a guest boots under it within `timeout`; otherwise software
/// emulation, with the reason.
pub fn probe_accel(
    kernel: &Kernel,
    initrd: &Path,
    dir: &Path,
    timeout: Duration,
) -> (Accel, String) {
    if let Ok(forced) = std::env::var("XVRRPD_VM_ACCEL") {
        return match forced.as_str() {
            "kvm" => (Accel::Kvm, "forced by XVRRPD_VM_ACCEL=kvm".into()),
            _ => (Accel::Tcg, format!("forced by XVRRPD_VM_ACCEL={forced}")),
        };
    }
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return (Accel::Tcg, format!("/dev/kvm unusable: {e}"));
    }
    let spec = VmSpec {
        name: "kvm-probe".into(),
        kernel: kernel.clone(),
        initrd: initrd.to_path_buf(),
        accel: Accel::Kvm,
        tap: None,
        mac: "52:54:00:00:00:01".into(),
        mem_mb: 768,
        dir: dir.to_path_buf(),
    };
    match Vm::boot(&spec, timeout) {
        Ok(vm) => (
            Accel::Kvm,
            format!(
                "a {} guest booted under KVM in {:.1} s",
                kernel.release,
                vm.booted_in.as_secs_f64()
            ),
        ),
        Err(e) => (
            Accel::Tcg,
            format!(
                "a {} guest did not boot under KVM: {}",
                kernel.release,
                format!("{e:#}").lines().next().unwrap_or_default()
            ),
        ),
    }
}
