//! Real kernels under qemu for the VM matrix (`cargo xtask vmtest`):
//! [`image`] builds what they boot (Debian's kernels, a Debian root file
//! system with systemd, cached outside the tree), [`qemu`] boots one guest
//! on a tap of a [`Lab`](crate::lab::Lab) bridge and runs commands in it.

pub mod image;
pub mod qemu;
pub mod segment;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// The kernel series the command line asks for (`--kernel SERIES`,
/// repeatable), else `default`; None when it asked for `--help` (usage
/// printed). Flags cargo's runners pass along are let through.
pub fn series_from_args(program: &str, default: &[&str]) -> Result<Option<Vec<String>>> {
    let mut series = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kernel" => series.push(args.next().context("--kernel needs a series, e.g. 6.1")?),
            "--nocapture" | "--test-threads=1" | "--bench" => {}
            "--help" | "-h" => {
                println!("{program} [--kernel SERIES]... (default: {default:?})");
                return Ok(None);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if series.is_empty() {
        series = default.iter().map(|s| s.to_string()).collect();
    }
    Ok(Some(series))
}

/// The package under test: `$XVRRPD_DEB`, else target/dist/xvrrpd_*.deb.
pub fn package() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XVRRPD_DEB") {
        return Ok(PathBuf::from(d));
    }
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dist");
    fs::read_dir(&dist)
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
        })
        .context(
            "no xvrrpd .deb: build it with `cargo xtask dist --deb` (or run `cargo xtask vmtest`)",
        )
}

/// target/vmtest, created.
pub fn out_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vmtest");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The kernels of `series` and the root file system, ready; how guests
/// run here (KVM or emulation) and why.
pub fn prepare(
    series: &[String],
    out_dir: &Path,
) -> Result<(Vec<image::Kernel>, qemu::Accel, String)> {
    let kernels = image::kernels(series)?;
    let first = kernels.first().context("no kernel asked for")?;
    image::rootfs()?;
    let probe_initrd = out_dir.join("probe-initrd");
    image::initrd(first, &[], &probe_initrd)?;
    let (accel, why) = qemu::probe_accel(first, &probe_initrd, out_dir, Duration::from_secs(20));
    let _ = fs::remove_file(&probe_initrd);
    Ok((kernels, accel, why))
}
