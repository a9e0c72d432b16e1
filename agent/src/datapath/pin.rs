//! Where the datapath's XDP links are pinned, so that the kernel half — and
//! with it the fence for a dead agent's VIPs — outlives the process.
//!
//! One directory per daemon: `<root>/net<netns inode>-<control socket path>`.
//! Daemons in other network namespaces, or beside this one with their own
//! control socket, never share it. A clean stop and `xvrrpd cleanup` remove
//! it (the links detach); a start adopts what a killed predecessor of the
//! same binary left, after it has removed that predecessor's VIPs, and
//! otherwise removes it.

use super::ebpf::AttachMode;
use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// This daemon's pin directory (created on demand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir(PathBuf);

impl PinDir {
    /// This daemon's directory from its command line, unless pinning is
    /// off (`--bpf-pin-dir none`).
    pub fn from_args(run: &crate::cli::RunArgs, control_socket: &Path) -> Option<Self> {
        if run.bpf_pin_dir.as_os_str() == "none" {
            return None;
        }
        Self::for_daemon(&run.bpf_pin_dir, control_socket).ok()
    }

    /// The directory for the daemon answering on `control_socket` in this
    /// network namespace, under `root`.
    pub fn for_daemon(root: &Path, control_socket: &Path) -> io::Result<Self> {
        let netns = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
        let socket: String = control_socket
            .to_string_lossy()
            .trim_start_matches('/')
            .chars()
            .map(|c| {
                // bpffs refuses names with dots.
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(Self(root.join(format!("net{netns}-{socket}"))))
    }

    /// The directory at `path` (as given to the warden).
    pub fn at(path: &Path) -> Self {
        Self(path.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates the directory; fails unless it lies on a BPF filesystem.
    pub fn create(&self) -> io::Result<()> {
        let mut mount = self.0.as_path();
        while !mount.exists() {
            mount = mount.parent().unwrap_or(Path::new("/"));
        }
        if !is_bpffs(mount)? {
            return Err(io::Error::other(format!(
                "{} is not on a BPF filesystem (mount one: `mount -t bpf bpf /sys/fs/bpf`, \
                 or choose one with --bpf-pin-dir)",
                mount.display()
            )));
        }
        std::fs::create_dir_all(&self.0)
    }

    /// The pin of one of the datapath's maps (`map_<name>`: bpffs names
    /// cannot contain dots).
    pub fn map(&self, name: &str) -> PathBuf {
        self.0.join(format!("map_{}", name.to_ascii_lowercase()))
    }

    /// The pin of the XDP link on `ifindex` (its mode in the name).
    pub fn xdp_link(&self, ifindex: u32, generic: bool) -> PathBuf {
        let mode = if generic { "generic" } else { "native" };
        self.0.join(format!("xdp-{ifindex}-{mode}"))
    }

    /// The pin of the TC (tcx) link on `ifindex`.
    pub fn tc_link(&self, ifindex: u32) -> PathBuf {
        self.0.join(format!("tc-{ifindex}"))
    }

    /// The links pinned here (XDP and tcx): path, interface index, mode.
    pub fn links(&self) -> io::Result<Vec<(PathBuf, u32, AttachMode)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.0)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let (index, mode) = if let Some(index) = name.strip_prefix("tc-") {
                (index, AttachMode::Tc)
            } else if let Some(rest) = name.strip_prefix("xdp-") {
                let Some((index, mode)) = rest.split_once('-') else {
                    continue;
                };
                let mode = match mode {
                    "native" => AttachMode::XdpNative,
                    "generic" => AttachMode::XdpGeneric,
                    _ => continue,
                };
                (index, mode)
            } else {
                continue;
            };
            if let Ok(ifindex) = index.parse() {
                out.push((path, ifindex, mode));
            }
        }
        Ok(out)
    }

    /// Unpins everything a previous run left and removes the directory: its
    /// links detach. Returns how many pins were removed.
    pub fn clear(&self) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            std::fs::remove_file(entry?.path())?;
            removed += 1;
        }
        match std::fs::remove_dir(&self.0) {
            Ok(()) => Ok(removed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(removed),
            Err(e) => Err(e),
        }
    }
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_directory_per_namespace_and_control_socket() {
        let root = Path::new("/sys/fs/bpf/xvrrpd");
        let a = PinDir::for_daemon(root, Path::new("/run/xvrrpd/xvrrpd.sock")).unwrap();
        let b = PinDir::for_daemon(root, Path::new("/run/xvrrpd/lb2.sock")).unwrap();
        assert_ne!(a, b);
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("net"), "{name}");
        assert!(name.ends_with("-run_xvrrpd_xvrrpd_sock"), "{name}");
        assert_eq!(a.xdp_link(7, false), a.path().join("xdp-7-native"));
        assert_eq!(a.xdp_link(7, true), a.path().join("xdp-7-generic"));
        assert_eq!(a.tc_link(7), a.path().join("tc-7"));
    }

    #[test]
    fn a_directory_off_bpffs_is_refused_with_what_to_do() {
        let dir = std::env::temp_dir().join(format!("xvrrpd-pin-{}", std::process::id()));
        let pins = PinDir::for_daemon(&dir, Path::new("/run/x.sock")).unwrap();
        let err = pins.create().unwrap_err().to_string();
        assert!(err.contains("not on a BPF filesystem"), "{err}");
        assert!(!dir.exists());
        assert_eq!(pins.clear().unwrap(), 0);
    }
}
