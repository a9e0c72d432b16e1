//! `cargo xtask setup`: installs what is missing and nothing else.
//!
//! - rust-src (and clippy) for the nightly that builds the eBPF crate;
//! - bpf-linker 0.13.0 built against that nightly's own libLLVM (a plain
//!   `cargo install bpf-linker` looks for a system LLVM and fails);
//! - cargo-fuzz for the fuzz smoke tests;
//! - Debian packages the tests drive: keepalived, tcpdump, iproute2, procps,
//!   xdp-tools;
//!   qemu, debootstrap, kmod and cpio for the VM matrix.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{StatusOk, cmd, is_root, output};

/// The toolchain the eBPF crate builds with, named once in ebpf/toolchain
/// (agent/build.rs reads the same file).
pub const BPF_TOOLCHAIN: &str = include_str!("../../ebpf/toolchain").trim_ascii();
const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const APT_PACKAGES: &[&str] = &[
    "keepalived",
    "tcpdump",
    "iproute2",
    "procps",
    "iputils-ping",
    // systemd-analyze, to verify the unit file.
    "systemd",
    // The VM matrix: guests, their root file system, module lists, initrds.
    "qemu-system-x86",
    "debootstrap",
    "kmod",
    "cpio",
    "debian-archive-keyring",
    // A load balancer's XDP program beside xvrrpd's (libxdp's loader).
    "xdp-tools",
];

fn say(msg: &str) {
    eprintln!("[setup] {msg}");
}

pub fn run() -> Result<()> {
    rust_components()?;
    let (sysroot, llvm_major) = nightly_llvm()?;
    bpf_linker(&sysroot, &llvm_major)?;
    cargo_fuzz()?;
    apt_packages()?;
    host_report();
    Ok(())
}

fn installed_components(toolchain: &str) -> Result<String> {
    output(cmd("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))
}

fn rust_components() -> Result<()> {
    let toolchains = output(cmd("rustup").args(["toolchain", "list"]))
        .context("rustup is needed: install it from your distribution or rustup.rs")?;
    if !toolchains
        .lines()
        .any(|l| l.starts_with(&format!("{BPF_TOOLCHAIN}-")))
    {
        bail!(
            "the `{BPF_TOOLCHAIN}` toolchain is missing: `rustup toolchain install {BPF_TOOLCHAIN} \
             --profile minimal` (it builds the eBPF crate; bpf-linker is built against its LLVM)"
        );
    }
    for (toolchain, wanted) in [
        ("stable", &["clippy", "rustfmt"][..]),
        (BPF_TOOLCHAIN, &["rust-src", "clippy"][..]),
    ] {
        let have = installed_components(toolchain)?;
        for comp in wanted {
            if have.lines().any(|l| l.starts_with(comp)) {
                continue;
            }
            say(&format!("adding {comp} to {toolchain}"));
            cmd("rustup")
                .args(["component", "add", comp, "--toolchain", toolchain])
                .status_ok()?;
        }
    }
    Ok(())
}

/// The nightly's sysroot and LLVM major version.
fn nightly_llvm() -> Result<(PathBuf, String)> {
    let vv = output(cmd("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "-vV"]))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("cannot read the nightly's LLVM version")?
        .to_string();
    if !["21", "22", "23"].contains(&major.as_str()) {
        bail!(
            "{BPF_TOOLCHAIN} uses LLVM {major}; bpf-linker {BPF_LINKER_VERSION} supports LLVM 21-23. \
             Keep the nightly this project was built with."
        );
    }
    let sysroot =
        output(cmd("rustup").args(["run", BPF_TOOLCHAIN, "rustc", "--print", "sysroot"]))?;
    Ok((PathBuf::from(sysroot.trim()), major))
}

fn libllvm(sysroot: &Path) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))
}

/// Whether the installed bpf-linker has our version and links the nightly's LLVM.
fn bpf_linker_ok(soname: &str) -> bool {
    let Ok(version) = output(cmd("bpf-linker").arg("--version")) else {
        return false;
    };
    if version.split_whitespace().nth(1) != Some(BPF_LINKER_VERSION) {
        say(&format!(
            "bpf-linker is `{}`, want {BPF_LINKER_VERSION}",
            version.trim()
        ));
        return false;
    }
    let path = output(cmd("sh").args(["-c", "command -v bpf-linker"])).unwrap_or_default();
    match output(cmd("readelf").args(["-d", path.trim()])) {
        Ok(dyn_section) => {
            let linked = dyn_section.contains(soname);
            if !linked {
                say(&format!("bpf-linker does not link {soname}: rebuilding it"));
            }
            linked
        }
        // No readelf: trust the version.
        Err(_) => true,
    }
}

fn bpf_linker(sysroot: &Path, llvm_major: &str) -> Result<()> {
    let lib = libllvm(sysroot)?;
    let soname = lib
        .file_name()
        .and_then(|n| n.to_str())
        .context("libLLVM file name")?
        .to_string();
    if bpf_linker_ok(&soname) {
        return Ok(());
    }
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against {soname} (about a minute)"
    ));
    // bpf-linker's build wants `-lLLVM`: point it at the nightly's library
    // through a scratch prefix, and bake an rpath to the toolchain in.
    let prefix = env::temp_dir().join(format!("xvrrpd-llvm-prefix-{}", std::process::id()));
    fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)?;
    let status = cmd("rustup")
        .args(["run", "stable", "cargo", "install", "bpf-linker"])
        .args([
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{llvm_major}")])
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display()),
        )
        .status_ok();
    let _ = fs::remove_dir_all(&prefix);
    status?;
    if !bpf_linker_ok(&soname) {
        bail!("bpf-linker still unusable after building it; see the output above");
    }
    Ok(())
}

fn cargo_fuzz() -> Result<()> {
    let have = output(cmd("cargo").args(["fuzz", "--version"])).unwrap_or_default();
    if have.contains(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    say(&format!("installing cargo-fuzz {CARGO_FUZZ_VERSION}"));
    cmd("rustup")
        .args(["run", "stable", "cargo", "install", "cargo-fuzz"])
        .args(["--version", CARGO_FUZZ_VERSION, "--locked"])
        .status_ok()
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output(cmd("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_ok_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!("missing packages: {list}; install them as root: apt-get install -y {list}");
    }
    say(&format!("installing {list}"));
    cmd("apt-get").arg("update").arg("-q").status_ok()?;
    cmd("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status_ok()?;
    // The package's own service must not run beside the tests' instances.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "keepalived"])
        .output();
    Ok(())
}

fn host_report() {
    let kernel = output(cmd("uname").arg("-r")).unwrap_or_default();
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    say(&format!(
        "ready: kernel {} (BTF {}), {}",
        kernel.trim(),
        if btf { "yes" } else { "no" },
        if is_root() {
            "root"
        } else {
            "not root: privileged tests need root"
        }
    ));
}
