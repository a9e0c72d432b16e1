//! Builds the eBPF datapath (crate `xvrrpd-ebpf`) with the pinned nightly and
//! bpf-linker, and embeds it in the agent.
//!
//! `XVRRPD_EBPF` selects what happens:
//! - `auto` (default): build it when the toolchain is installed (`cargo xtask
//!   setup`), otherwise embed nothing and warn; the agent then runs on the
//!   raw-socket fallback and says so. This keeps plain `cargo test` working on
//!   a machine with only stable Rust.
//! - `require`: fail the build without the eBPF object (xtask, CI, releases).
//! - `skip`: never build it.
use std::{env, fs, path::PathBuf, process::Command};

/// The nightly the eBPF crate builds with, named once in ebpf/toolchain
/// (xtask reads the same file); `cargo xtask setup` installs its rust-src
/// and a bpf-linker linked against its LLVM.
const BPF_TOOLCHAIN: &str = include_str!("../ebpf/toolchain").trim_ascii();
const OBJECT: &str = "xvrrpd-datapath";

fn toolchain_ready() -> Result<(), String> {
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !matches!(&linker, Ok(o) if o.status.success()) {
        return Err("bpf-linker is not installed".into());
    }
    let src = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            BPF_TOOLCHAIN,
        ])
        .output();
    match src {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("rust-src") => Ok(()),
        _ => Err(format!(
            "toolchain {BPF_TOOLCHAIN} with rust-src is not installed"
        )),
    }
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=XVRRPD_EBPF");
    println!("cargo:rerun-if-changed=../common/src");
    println!("cargo:rerun-if-changed=../ebpf/src");
    println!("cargo:rerun-if-changed=../ebpf/toolchain");
    let out = PathBuf::from(env::var("OUT_DIR")?).join(OBJECT);
    let mode = env::var("XVRRPD_EBPF").unwrap_or_else(|_| "auto".into());
    let build = match mode.as_str() {
        "skip" => false,
        "require" => {
            toolchain_ready().map_err(|e| anyhow::anyhow!("{e}: run `cargo xtask setup`"))?;
            true
        }
        _ => match toolchain_ready() {
            Ok(()) => true,
            Err(why) => {
                println!(
                    "cargo:warning=eBPF datapath not built ({why}); the agent will use its \
                     raw-socket fallback. Run `cargo xtask setup` to build it."
                );
                false
            }
        },
    };
    if build {
        let package = aya_build::Package {
            name: "xvrrpd-ebpf",
            root_dir: "../ebpf",
            ..Default::default()
        };
        aya_build::build_ebpf([package], aya_build::Toolchain::Custom(BPF_TOOLCHAIN))?;
    } else {
        fs::write(&out, [])?;
    }
    Ok(())
}
