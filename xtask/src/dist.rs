//! `cargo xtask dist`: man pages and shell completions from the agent's
//! command line, and the Debian package.
//!
//! The generators need `xvrrpd::cli::Cli`. Depending on the `xvrrpd` crate
//! would compile the whole agent (aya, tokio, its eBPF build script) into
//! every `cargo xtask` run, so this module compiles agent/src/cli.rs itself:
//! that file uses only clap and std by design, the man page cannot drift
//! from the binary's parser, and if it ever grows a dependency on the rest
//! of the crate this build fails loudly rather than silently.
//!
//! Output, under target/dist/:
//! - man/xvrrpd.8 and one page per subcommand (xvrrpd-run.8, …);
//! - completions/xvrrpd.bash, completions/_xvrrpd (zsh), completions/xvrrpd.fish;
//! - with `--deb`: xvrrpd_VERSION-1_ARCH.deb (cargo-deb, binary built with
//!   the eBPF datapath required);
//! - with `--check-install` (root): installs that package with dpkg, checks
//!   the binary, the files and the unit (systemd-analyze verify), and purges
//!   it again. Starting the service needs systemd as PID 1 and is not tried.

#[allow(dead_code)] // The daemon's helpers; only the parser is used here.
#[path = "../../agent/src/cli.rs"]
mod cli;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::util::{StatusOk, cmd, is_root, output, root};

/// cargo-deb is installed at this version (pinned: its config keys and
/// output names are what the package metadata relies on).
pub const CARGO_DEB_VERSION: &str = "3.8.0";
const PACKAGE: &str = "xvrrpd";

/// Where everything lands.
pub fn out_dir() -> PathBuf {
    root().join("target").join("dist")
}

/// Man pages, section 8 (a daemon), one per (sub)command.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, dir, true, &mut written)?;
    Ok(written)
}

fn page(cmd: &clap::Command, dir: &Path, top: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, dir, false, out)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual");
    let path = dir.join(man.get_filename());
    let mut buf: Vec<u8> = Vec::new();
    man.render(&mut buf)?;
    let mut text = String::from_utf8(buf).context("clap_mangen wrote non-UTF-8")?;
    let extra = if top {
        TOP_PAGE_EXTRA
    } else {
        ".SH \"SEE ALSO\"\n\\fBxvrrpd\\fR(8)\n"
    };
    // Before the VERSION section when there is one, as man pages order them.
    match text.find("\n.SH VERSION") {
        Some(at) => text.insert_str(at + 1, extra),
        None => text.push_str(extra),
    }
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    out.push(path);
    Ok(())
}

/// Sections clap does not know about: signals, files, related pages.
const TOP_PAGE_EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Leave gracefully: a master sends priority-0 adverts so a backup takes over at once, and the VIPs are removed.
.TP
\fBSIGHUP\fR
Reload the configuration without a flap: instances that did not change keep their state and VIPs.
.SH FILES
.TP
\fI/etc/keepalived/keepalived.conf\fR
The configuration, in keepalived's syntax.
.TP
\fI/run/xvrrpd/xvrrpd.sock\fR
The control socket \fBxvrrpd status\fR reads.
.TP
\fI/usr/lib/systemd/system/xvrrpd.service\fR
The systemd unit (Type=notify, watchdog, capabilities reduced after start).
.TP
\fI/usr/share/doc/xvrrpd/\fR
Migrating from keepalived, the datapath, tuning, metrics, the status JSON, and an example configuration.
.SH "SEE ALSO"
\fBkeepalived.conf\fR(5), \fBkeepalived\fR(8), \fBsystemd.service\fR(5)
"#;

/// bash, zsh and fish completions.
pub fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cli::Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cmd, "xvrrpd", dir)
                .with_context(|| format!("writing the {shell} completion"))
        })
        .collect()
}

/// Whether `binary` carries an eBPF ELF object (the agent embeds it with
/// `include_bytes_aligned!`): a 64-bit little-endian ELF header whose
/// e_machine is EM_BPF (247).
pub fn embeds_bpf_object(binary: &[u8]) -> bool {
    const MAGIC: &[u8] = b"\x7fELF\x02\x01";
    binary
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .any(|(i, _)| binary.get(i + 18..i + 20) == Some(&[247u8, 0][..]))
}

/// `cargo xtask dist [--deb] [--check-install] [--allow-without-ebpf]`.
pub fn run(deb: bool, check_install: bool, allow_without_ebpf: bool) -> Result<()> {
    let out = out_dir();
    let pages = man_pages(&out.join("man"))?;
    let comps = completions(&out.join("completions"))?;
    for p in pages.iter().chain(&comps) {
        eprintln!("[dist] {}", p.display());
    }
    if !(deb || check_install) {
        return Ok(());
    }
    let package = build_deb(&out, allow_without_ebpf)?;
    eprintln!("[dist] {}", package.display());
    if check_install {
        check_install_deb(&package)?;
    }
    Ok(())
}

fn ensure_cargo_deb() -> Result<()> {
    let have = output(cmd("cargo").args(["deb", "--version"])).unwrap_or_default();
    if have.contains(CARGO_DEB_VERSION) {
        return Ok(());
    }
    eprintln!("[dist] installing cargo-deb {CARGO_DEB_VERSION}");
    cmd("rustup")
        .args(["run", "stable", "cargo", "install", "cargo-deb"])
        .args(["--version", CARGO_DEB_VERSION, "--locked"])
        .status_ok()
}

/// Builds the release binary with the eBPF object embedded, then packages
/// it; returns the .deb's path.
fn build_deb(out: &Path, allow_without_ebpf: bool) -> Result<PathBuf> {
    ensure_cargo_deb()?;
    cmd("rustup")
        .args([
            "run",
            "stable",
            "cargo",
            "build",
            "--release",
            "-p",
            PACKAGE,
        ])
        .env("XVRRPD_EBPF", "require")
        .status_ok()
        .context("building the release binary with the eBPF datapath (run `cargo xtask setup`)")?;
    // The build script embeds the object, but the linker keeps it only if
    // the binary's code reaches the datapath loader.
    let bin = root().join("target/release").join(PACKAGE);
    let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if !embeds_bpf_object(&bytes) {
        let why = format!(
            "{} carries no eBPF object: the object was built, but nothing in the binary \
             reaches EbpfDatapath::load, so the linker dropped it",
            bin.display()
        );
        if !allow_without_ebpf {
            bail!(
                "{why}; a package would only run on the raw-socket fallback \
                 (--allow-without-ebpf builds it anyway, to test packaging)"
            );
        }
        eprintln!("[dist] WARNING: {why}; packaging anyway (--allow-without-ebpf)");
    }
    // Remove older packages so the one returned is the one just built.
    for old in debs_in(out)? {
        fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    cmd("rustup")
        .args(["run", "stable", "cargo", "deb", "-p", PACKAGE, "--no-build"])
        .arg("--output")
        .arg(out)
        .status_ok()?;
    match debs_in(out)?.as_slice() {
        [one] => Ok(one.clone()),
        other => bail!("expected one .deb in {}, found {other:?}", out.display()),
    }
}

fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{PACKAGE}_")))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Every file the package must install (the man pages compressed, as
/// Debian policy wants and cargo-deb does).
pub fn installed_files() -> Vec<&'static str> {
    vec![
        "/usr/sbin/xvrrpd",
        "/usr/share/man/man8/xvrrpd.8.gz",
        "/usr/share/man/man8/xvrrpd-run.8.gz",
        "/usr/share/man/man8/xvrrpd-check.8.gz",
        "/usr/share/man/man8/xvrrpd-status.8.gz",
        "/usr/share/bash-completion/completions/xvrrpd",
        "/usr/share/zsh/vendor-completions/_xvrrpd",
        "/usr/share/fish/vendor_completions.d/xvrrpd.fish",
        "/usr/share/doc/xvrrpd/examples/keepalived.conf",
        "/usr/share/doc/xvrrpd/copyright",
        "/usr/share/doc/xvrrpd/migrating-from-keepalived.md",
        "/usr/share/doc/xvrrpd/datapath.md",
        "/usr/share/doc/xvrrpd/tuning.md",
        "/usr/share/doc/xvrrpd/status-json.md",
        "/usr/share/doc/xvrrpd/metrics.md",
    ]
}

/// Where the unit file may land (cargo-deb follows the distribution's
/// merged-/usr layout or not).
const UNIT_PATHS: [&str; 2] = [
    "/usr/lib/systemd/system/xvrrpd.service",
    "/lib/systemd/system/xvrrpd.service",
];

/// Installs the package on this machine, checks it, removes it.
fn check_install_deb(package: &Path) -> Result<()> {
    if !is_root() {
        bail!("--check-install runs dpkg -i: run it as root");
    }
    let status =
        output(cmd("dpkg-query").args(["-W", "-f=${Status}", PACKAGE])).unwrap_or_default();
    if status.contains("install ok installed") {
        bail!(
            "{PACKAGE} is already installed here: --check-install would remove it afterwards; \
             `dpkg -r {PACKAGE}` first if that is what you want"
        );
    }
    cmd("dpkg").arg("-i").arg(package).status_ok()?;
    let checked = check_installed();
    // --purge, not -r: nothing of the package may stay on the machine.
    let removed = cmd("dpkg").args(["--purge", PACKAGE]).status_ok();
    checked?;
    removed?;
    let left: Vec<&str> = installed_files()
        .into_iter()
        .chain(UNIT_PATHS)
        .filter(|p| Path::new(p).exists())
        .collect();
    if !left.is_empty() {
        bail!("dpkg --purge {PACKAGE} left files behind: {left:?}");
    }
    eprintln!(
        "[dist] installed, checked and removed {}",
        package.display()
    );
    Ok(())
}

fn check_installed() -> Result<()> {
    let version = output(cmd("/usr/sbin/xvrrpd").arg("--version"))?;
    let want = format!("xvrrpd {}", env!("CARGO_PKG_VERSION"));
    if version.trim() != want {
        bail!("/usr/sbin/xvrrpd --version said {version:?}, expected {want:?}");
    }
    let missing: Vec<&str> = installed_files()
        .into_iter()
        .filter(|p| !Path::new(p).is_file())
        .collect();
    if !missing.is_empty() {
        bail!("the package did not install {missing:?}");
    }
    let Some(unit) = UNIT_PATHS.iter().find(|p| Path::new(p).is_file()) else {
        bail!("the package did not install the unit file ({UNIT_PATHS:?})");
    };
    // Installed, the unit's binaries and its man:xvrrpd(8) link all resolve:
    // verify it as it is, man page check included.
    let verify = cmd("systemd-analyze")
        .args(["verify", unit])
        .output()
        .context(
            "systemd-analyze is needed to verify the installed unit: apt-get install systemd",
        )?;
    let stderr = String::from_utf8_lossy(&verify.stderr);
    if !verify.status.success() || stderr.contains("xvrrpd.service") {
        bail!("systemd-analyze verify {unit}:\n{stderr}");
    }
    // The packaged binary carries the eBPF datapath; a configuration check
    // with the shipped example runs it end to end without privileges.
    let check = cmd("/usr/sbin/xvrrpd")
        .args([
            "check",
            "-f",
            "/usr/share/doc/xvrrpd/examples/keepalived.conf",
        ])
        .output()
        .context("running xvrrpd check")?;
    if check.status.code() == Some(2) {
        bail!(
            "xvrrpd check rejects the shipped example:\n{}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xvrrpd-dist-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn man_pages_cover_every_subcommand_in_section_8() {
        let dir = temp("man");
        let pages = man_pages(&dir).expect("generate man pages");
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        // Hidden subcommands (the warden the daemon starts) have no page.
        let mut want: Vec<String> = cli::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("xvrrpd-{}.8", s.get_name()))
            .collect();
        want.push("xvrrpd.8".into());
        for w in &want {
            assert!(names.contains(w), "{w} missing from {names:?}");
        }
        let top = fs::read_to_string(dir.join("xvrrpd.8")).expect("top page");
        assert!(top.starts_with(".ie"), "roff output");
        assert!(top.contains(".TH xvrrpd 8"), "section 8 title");
        assert!(top.contains("keepalived.conf"), "files section");
        assert!(top.contains("SIGHUP"), "signals section");
        assert!(top.contains("\\-\\-no\\-ebpf"), "options are listed");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_embedded_bpf_object_is_recognised() {
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[18] = 247;
        let mut binary = b"host code \x7fELF\x02\x01 not a header".to_vec();
        assert!(
            !embeds_bpf_object(&binary),
            "an x86 ELF or stray magic is not BPF"
        );
        binary.extend_from_slice(&header);
        binary.extend_from_slice(b"more host code");
        assert!(embeds_bpf_object(&binary));
        header[18] = 62; // EM_X86_64
        assert!(!embeds_bpf_object(&header));
    }

    #[test]
    fn completions_for_three_shells_name_the_subcommands() {
        let dir = temp("comp");
        let files = completions(&dir).expect("generate completions");
        assert_eq!(files.len(), 3);
        for f in &files {
            let text = fs::read_to_string(f).expect("completion file");
            for word in ["xvrrpd", "status", "check", "no-ebpf"] {
                assert!(text.contains(word), "{} lacks {word}", f.display());
            }
        }
        let names: Vec<&str> = files
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        assert_eq!(names, ["xvrrpd.bash", "_xvrrpd", "xvrrpd.fish"]);
        let _ = fs::remove_dir_all(&dir);
    }
}
