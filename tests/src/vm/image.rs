//! What the test VMs boot: Debian's own kernels and a small Debian root
//! file system with systemd, both cached outside the source tree.
//!
//! The root file system is not a disk: it is an initramfs (`newc` cpio)
//! that the kernel unpacks into RAM and runs systemd from, so nothing needs
//! a block driver, a partition or a boot loader, and every boot starts
//! clean. The initrd of a boot is three archives end to end: the root file
//! system (per recipe), the kernel's modules the tests load (per kernel)
//! and the files of the run (the package under test).
//!
//! Kernels come from Debian's archive through the project's own apt
//! configuration (its own sources list, lists and cache under the cache
//! directory); the machine's apt sources are never read or changed.

use std::{
    collections::hash_map::DefaultHasher,
    fs,
    hash::{Hash, Hasher},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, bail};

use crate::lab::run;

/// Debian's mirror, for the kernels and the root file system.
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Suites the kernels come from: bullseye (5.10), bookworm (6.1),
/// bookworm-backports (6.12). Buster (4.19, before ring buffers) is only on
/// archive.debian.org, which this project's machines cannot reach.
const KERNEL_SUITES: &[(&str, &str)] = &[
    (MIRROR, "bullseye"),
    (SECURITY_MIRROR, "bullseye-security"),
    (MIRROR, "bookworm"),
    (SECURITY_MIRROR, "bookworm-security"),
    (MIRROR, "bookworm-backports"),
];
/// The guests' userland: the release the package is built on (its glibc).
const ROOTFS_SUITE: &str = "bookworm";
const ROOTFS_PACKAGES: &str = "systemd,systemd-sysv,iproute2,kmod,procps";
/// Modules the guests load at boot (with their dependencies): the NIC,
/// and what the TC attach, `use_vmac`, `use_ipvlan` and `vrf` use.
const GUEST_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "sch_ingress",
    "cls_bpf",
    "macvlan",
    "ipvlan",
    "vrf",
];
/// Package lists older than this are refreshed (new kernel uploads).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The guest's control port: runs each base64-encoded command line from
/// the host and answers with its output (base64) and exit status between
/// markers, so any output survives the serial line.
const VMCTL: &str = r#"#!/bin/bash
port=/dev/ttyS1
stty -F "$port" raw -echo -onlcr 2>/dev/null
exec <"$port" >"$port" 2>/dev/null
echo "@@vmctl-ready@@"
while IFS= read -r line; do
  tag=${line%% *}
  printf '%s' "${line#* }" | base64 -d > /run/vmctl.cmd
  bash /run/vmctl.cmd > /run/vmctl.out 2>&1 </dev/null
  rc=$?
  printf '@@begin %s@@\n' "$tag"
  base64 -w0 /run/vmctl.out
  printf '\n@@end %s %d@@\n' "$tag" "$rc"
done
"#;

const VMCTL_UNIT: &str = "[Unit]
Description=Test control port on ttyS1
DefaultDependencies=no
After=systemd-modules-load.service

[Service]
ExecStart=/usr/local/sbin/vmctl
Restart=always

[Install]
WantedBy=sysinit.target
";

/// Where images are cached: `$XVRRPD_VM_CACHE`, else /var/cache/xvrrpd-vmtest.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XVRRPD_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xvrrpd-vmtest"))
}

fn say(msg: &str) {
    eprintln!("[vm image] {msg}");
}

/// A kernel of the matrix, ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The series asked for, e.g. `5.10`.
    pub series: String,
    /// `uname -r`, e.g. `5.10.0-46-amd64`.
    pub release: String,
    /// Debian's package version, e.g. `5.10.262-1`.
    pub version: String,
    pub vmlinuz: PathBuf,
    /// The modules the guests load, as a cpio layer.
    pub modules: PathBuf,
}

/// The project's own apt configuration: apt-get/apt-cache with these
/// options read only the files under `dir`.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: PathBuf) -> Result<Self> {
        for sub in [
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let sources: String = KERNEL_SUITES
            .iter()
            .map(|(mirror, suite)| format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n"))
            .collect();
        fs::write(dir.join("etc/sources.list"), sources)?;
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        Ok(Apt { dir })
    }

    fn cmd(&self, program: &str) -> Command {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let mut c = Command::new(program);
        for (k, v) in [
            ("Dir::Etc::SourceList", d("etc/sources.list")),
            ("Dir::Etc::SourceParts", d("etc/sources.list.d")),
            ("Dir::Etc::Preferences", d("etc/preferences")),
            ("Dir::Etc::PreferencesParts", d("etc/preferences.d")),
            ("Dir::State", d("state")),
            ("Dir::State::status", d("state/status")),
            ("Dir::Cache", d("cache")),
            ("APT::Architecture", "amd64".into()),
            // Files land in our cache, which the _apt user may not enter.
            ("APT::Sandbox::User", "root".into()),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        c
    }

    /// `apt-get update` when the lists are missing or a day old.
    fn update_if_stale(&self) -> Result<()> {
        let stamp = self.dir.join("state/updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            return Ok(());
        }
        say("apt-get update (the project's own sources: bullseye, bookworm, bookworm-backports)");
        run(self.cmd("apt-get").args(["update", "-q"]))
            .context("apt-get update with the project's apt configuration")?;
        fs::write(stamp, "")?;
        Ok(())
    }

    fn output(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = run(self.cmd(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Debian's newest kernel of `series` (e.g. `6.1`): (image package, version).
fn newest_kernel(apt: &Apt, series: &str) -> Result<(String, String)> {
    let madison = apt.output("apt-cache", &["madison", "linux-image-amd64"])?;
    let mut best: Option<(Vec<u64>, String)> = None;
    for line in madison.lines() {
        let Some(version) = line.split('|').nth(1).map(str::trim) else {
            continue;
        };
        if !version.starts_with(&format!("{series}.")) {
            continue;
        }
        let key: Vec<u64> = version
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, version.to_string()));
        }
    }
    let Some((_, meta_version)) = best else {
        bail!("Debian's archive has no linux-image-amd64 {series}.x in {KERNEL_SUITES:?}");
    };
    let show = apt.output(
        "apt-cache",
        &["show", &format!("linux-image-amd64={meta_version}")],
    )?;
    let depends = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .context("linux-image-amd64 without Depends")?;
    // "linux-image-6.1.0-57-amd64 (= 6.1.192-3)"
    let mut parts = depends.split(['(', ')', ',']);
    let package = parts.next().unwrap_or_default().trim().to_string();
    let version = parts
        .next()
        .and_then(|v| v.trim().strip_prefix("= "))
        .unwrap_or(&meta_version)
        .to_string();
    if !package.starts_with("linux-image-") {
        bail!("unexpected dependency of linux-image-amd64 {meta_version}: {depends}");
    }
    Ok((package, version))
}

/// Downloads and unpacks the newest kernel of each series (cached), with
/// the module layer the guests need.
pub fn kernels(series: &[String]) -> Result<Vec<Kernel>> {
    let cache = cache_dir();
    let apt = Apt::new(cache.join("apt"))?;
    apt.update_if_stale()?;
    let mut out = Vec::new();
    for s in series {
        let (package, version) = newest_kernel(&apt, s)?;
        let release = package.trim_start_matches("linux-image-").to_string();
        let dir = cache.join("kernels").join(&release);
        let ready = dir.join("ready");
        // The module layer is part of what is cached: a new module list
        // rebuilds it.
        let recipe = format!("{version} {}", GUEST_MODULES.join(","));
        if fs::read_to_string(&ready).ok().as_deref() != Some(recipe.as_str()) {
            say(&format!("kernel {s}: downloading {package} {version}"));
            let _ = fs::remove_dir_all(&dir);
            let debs = cache.join("debs");
            fs::create_dir_all(&debs)?;
            run(apt.cmd("apt-get").current_dir(&debs).args([
                "download",
                "-q",
                &format!("{package}={version}"),
            ]))
            .with_context(|| format!("downloading {package}"))?;
            let deb = fs::read_dir(&debs)?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
                    })
                })
                .with_context(|| format!("{package} downloaded but not found in {debs:?}"))?;
            let tree = dir.join("tree");
            fs::create_dir_all(&tree)?;
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
            let _ = fs::remove_file(&deb);
            module_layer(&tree, &release, &dir.join("modules.cpio"))?;
            // Only the kernel image and the layer are kept.
            fs::copy(
                tree.join(format!("boot/vmlinuz-{release}")),
                dir.join("vmlinuz"),
            )?;
            fs::copy(
                tree.join(format!("boot/config-{release}")),
                dir.join("config"),
            )?;
            fs::remove_dir_all(&tree)?;
            fs::write(&ready, &recipe)?;
        }
        out.push(Kernel {
            series: s.clone(),
            release,
            version,
            vmlinuz: dir.join("vmlinuz"),
            modules: dir.join("modules.cpio"),
        });
    }
    Ok(out)
}

/// The modules of [`GUEST_MODULES`] with their dependencies, under
/// usr/lib/modules/RELEASE (the root file system's /lib is a link to it).
fn module_layer(tree: &Path, release: &str, out: &Path) -> Result<()> {
    let moddir = ["lib", "usr/lib"]
        .iter()
        .map(|p| tree.join(p).join("modules").join(release))
        .find(|p| p.is_dir())
        .with_context(|| format!("no modules of {release} in the package"))?;
    let base = moddir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .context("module directory layout")?;
    run(Command::new("depmod").arg("-b").arg(base).arg(release))?;
    let layer = out.with_extension("d");
    let _ = fs::remove_dir_all(&layer);
    let dest = layer.join("usr/lib/modules").join(release);
    fs::create_dir_all(&dest)?;
    for m in GUEST_MODULES {
        let deps = run(Command::new("modprobe").arg("-d").arg(base).args([
            "-S",
            release,
            "--show-depends",
            m,
        ]))?;
        for line in String::from_utf8_lossy(&deps.stdout).lines() {
            // "insmod /path/to/x.ko" or "builtin x"
            let Some(path) = line.strip_prefix("insmod ") else {
                continue;
            };
            let path = Path::new(path.split_whitespace().next().unwrap_or_default());
            let rel = path
                .strip_prefix(&moddir)
                .with_context(|| format!("{path:?} outside {moddir:?}"))?;
            let to = dest.join(rel);
            fs::create_dir_all(to.parent().context("module path")?)?;
            fs::copy(path, &to)?;
        }
    }
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        if moddir.join(f).exists() {
            fs::copy(moddir.join(f), dest.join(f))?;
        }
    }
    run(Command::new("depmod")
        .arg("-b")
        .arg(layer.join("usr"))
        .arg(release))?;
    cpio(&layer, &["usr"], out)?;
    fs::remove_dir_all(&layer)?;
    Ok(())
}

/// Writes a `newc` cpio of `roots` (relative to `dir`) to `out`.
pub fn cpio(dir: &Path, roots: &[&str], out: &Path) -> Result<()> {
    let find = run(Command::new("find").args(roots).current_dir(dir))?;
    let file = fs::File::create(out).with_context(|| format!("creating {out:?}"))?;
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("cpio (install it: apt-get install cpio)")?;
    child
        .stdin
        .take()
        .context("cpio stdin")?
        .write_all(&find.stdout)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio of {dir:?} failed: {status}");
    }
    Ok(())
}

/// The recipe of the root file system; a change rebuilds it.
fn rootfs_key() -> String {
    let mut h = DefaultHasher::new();
    (
        ROOTFS_SUITE,
        ROOTFS_PACKAGES,
        VMCTL,
        VMCTL_UNIT,
        GUEST_MODULES,
    )
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The root file system as a cpio (built once per recipe).
pub fn rootfs() -> Result<PathBuf> {
    let cache = cache_dir();
    let key = rootfs_key();
    let out = cache.join(format!("rootfs-{key}.cpio"));
    if out.exists() {
        return Ok(out);
    }
    let dir = cache.join(format!("rootfs-{key}"));
    let _ = fs::remove_dir_all(&dir);
    say(&format!(
        "debootstrap {ROOTFS_SUITE} with {ROOTFS_PACKAGES} (once; about a minute)"
    ));
    run(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={ROOTFS_PACKAGES}")])
        .arg(ROOTFS_SUITE)
        .arg(&dir)
        .arg(MIRROR))
    .context("debootstrap (install it: apt-get install debootstrap)")?;
    // What a RAM root does not need.
    for p in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/info",
        "var/cache/apt",
        "var/lib/apt/lists",
    ] {
        let p = dir.join(p);
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
            fs::create_dir_all(&p)?;
        }
    }
    fs::create_dir_all(dir.join("usr/local/sbin"))?;
    let vmctl = dir.join("usr/local/sbin/vmctl");
    fs::write(&vmctl, VMCTL)?;
    run(Command::new("chmod").arg("755").arg(&vmctl))?;
    let units = dir.join("etc/systemd/system");
    fs::write(units.join("vmctl.service"), VMCTL_UNIT)?;
    fs::create_dir_all(units.join("sysinit.target.wants"))?;
    std::os::unix::fs::symlink(
        "/etc/systemd/system/vmctl.service",
        units.join("sysinit.target.wants/vmctl.service"),
    )?;
    // No udev: the consoles' gettys would wait for device units forever.
    for unit in ["getty@.service", "serial-getty@.service"] {
        std::os::unix::fs::symlink("/dev/null", units.join(unit))?;
    }
    fs::write(
        dir.join("etc/modules-load.d/vmtest.conf"),
        GUEST_MODULES.join("\n") + "\n",
    )?;
    let _ = fs::remove_file(dir.join("etc/hostname"));
    let partial = out.with_extension("partial");
    cpio(&dir, &["."], &partial)?;
    fs::rename(&partial, &out)?;
    fs::remove_dir_all(&dir)?;
    // Older recipes' archives.
    for e in fs::read_dir(&cache)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("rootfs-") && e.path() != out {
            let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
        }
    }
    Ok(out)
}

/// The initrd of one boot: root file system, the kernel's modules, and
/// `files` (path in the guest → content on the host).
pub fn initrd(kernel: &Kernel, files: &[(&str, &Path)], out: &Path) -> Result<()> {
    let rootfs = rootfs()?;
    let layer = out.with_extension("run.d");
    let _ = fs::remove_dir_all(&layer);
    fs::create_dir_all(&layer)?;
    let mut roots = Vec::new();
    for (guest, host) in files {
        let rel = guest.trim_start_matches('/');
        let to = layer.join(rel);
        fs::create_dir_all(to.parent().context("guest path")?)?;
        fs::copy(host, &to).with_context(|| format!("copying {host:?}"))?;
        roots.push(rel.to_string());
    }
    let mut parts = vec![rootfs, kernel.modules.clone()];
    let run_cpio = out.with_extension("run.cpio");
    if !roots.is_empty() {
        let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
        cpio(&layer, &roots, &run_cpio)?;
        parts.push(run_cpio.clone());
    }
    let mut f = fs::File::create(out)?;
    for part in &parts {
        let mut r = fs::File::open(part).with_context(|| format!("opening {part:?}"))?;
        std::io::copy(&mut r, &mut f)?;
    }
    fs::remove_dir_all(&layer)?;
    let _ = fs::remove_file(&run_cpio);
    Ok(())
}
