//! build, run, test, bench and demo.

use std::{ffi::OsString, path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::{
    setup::BPF_TOOLCHAIN,
    util::{StatusOk, cmd, is_root, root},
};

/// A cargo command building the agent with its eBPF object required.
fn cargo(toolchain: &str) -> Command {
    let mut c = cmd("rustup");
    c.args(["run", toolchain, "cargo"]);
    c.env("XVRRPD_EBPF", "require");
    c
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

pub fn build(release: bool) -> Result<()> {
    let mut c = cargo("stable");
    c.args(["build", "--workspace"]);
    if release {
        c.arg("--release");
    }
    c.status_ok()
}

pub fn run_agent(release: bool, args: &[String]) -> Result<()> {
    build(release)?;
    let bin = root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("xvrrpd");
    cmd(&bin.to_string_lossy()).args(args).status_ok()
}

/// Test totals over every cargo test run of the suite.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs a `cargo test` command, echoing its output and adding up its
/// `test result:` lines.
fn cargo_test(c: &mut Command, totals: &mut Totals) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {c:?}"))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let num = |key: &str| -> u64 {
                    rest.split(';')
                        .find_map(|part| part.trim().strip_suffix(key))
                        .and_then(|n| n.trim().rsplit(' ').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                };
                totals.passed += num(" passed");
                totals.failed += num(" failed");
                totals.ignored += num(" ignored");
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{c:?} failed: {status}");
    }
    Ok(())
}

pub fn test(fuzz_seconds: u32) -> Result<()> {
    let started = Instant::now();
    if !is_root() {
        bail!(
            "the suite includes eBPF and network-namespace tests that need root: \
             run `cargo xtask test` as root (plain `cargo test` runs the unprivileged part)"
        );
    }
    step("format");
    cargo("stable")
        .args(["fmt", "--all", "--check"])
        .status_ok()?;
    step("clippy (host crates)");
    cargo("stable")
        .args([
            "clippy",
            "--workspace",
            "--exclude",
            "xvrrpd-ebpf",
            "--all-targets",
            "--features",
            "xvrrpd-tests/vmtest",
        ])
        .args(["--", "-D", "warnings"])
        .status_ok()?;
    step("clippy (eBPF crate, nightly)");
    cargo(BPF_TOOLCHAIN)
        .args([
            "clippy",
            "-p",
            "xvrrpd-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"])
        .status_ok()?;
    step("unit and property tests");
    let mut totals = Totals::default();
    cargo_test(
        cargo("stable").args(["test", "--workspace", "--exclude", "xvrrpd-ebpf"]),
        &mut totals,
    )?;
    // The demo's test runs its binary, which no test build makes.
    build_demo()?;
    step("eBPF and network-namespace tests (root)");
    cargo_test(
        // One test at a time: these tests time daemons, processes and the
        // kernel on two cores, and some share host-wide facilities (the
        // process-events connector, RTNL).
        cargo("stable").args([
            "test",
            "-p",
            "xvrrpd-tests",
            "--features",
            "privileged",
            "--",
            "--test-threads=1",
        ]),
        &mut totals,
    )?;
    fuzz_smoke(fuzz_seconds)?;
    step("Debian package: build, install, check, purge");
    crate::dist::run(true, true, false)?;
    // The package just built, on every kernel of the matrix.
    vm_matrix(&[], &mut totals)?;
    eprintln!("\nall green in {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    Ok(())
}

/// `cargo xtask vmtest`: the Debian package, then the matrix.
pub fn vmtest(kernels: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the VM matrix builds namespaces, taps and root file systems: run it as root");
    }
    step("Debian package");
    crate::dist::run(true, false, false)?;
    vm_matrix(kernels, &mut Totals::default())
}

fn vm_matrix(kernels: &[String], totals: &mut Totals) -> Result<()> {
    step("VM matrix (qemu guests under systemd, one kernel after another)");
    let mut c = cargo("stable");
    c.args([
        "test",
        "-p",
        "xvrrpd-tests",
        "--features",
        "vmtest",
        "--test",
        "vm_matrix",
        "--",
    ]);
    for k in kernels {
        c.args(["--kernel", k]);
    }
    cargo_test(&mut c, totals)
}

/// Runs every fuzz target for a few seconds: it must not find a crash.
fn fuzz_smoke(seconds: u32) -> Result<()> {
    let dir = root().join("agent/fuzz/fuzz_targets");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut targets: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.path()
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
        })
        .collect();
    targets.sort();
    // cargo fuzz has no --locked: a lock file out of step would be
    // rewritten silently, so the run checks it stays as committed.
    let lock = root().join("agent/fuzz/Cargo.lock");
    let before = std::fs::read(&lock).unwrap_or_default();
    for t in targets {
        step(&format!("fuzz smoke: {t} ({seconds} s)"));
        cmd("rustup")
            .args(["run", BPF_TOOLCHAIN, "cargo", "fuzz", "run", &t])
            .current_dir(root().join("agent"))
            .env("XVRRPD_EBPF", "skip")
            .args(["--", &format!("-max_total_time={seconds}")])
            .status_ok()?;
    }
    if std::fs::read(&lock).unwrap_or_default() != before {
        bail!(
            "agent/fuzz/Cargo.lock changed while building the fuzz targets: it is out of step \
             with the workspace's dependencies; commit the updated file"
        );
    }
    Ok(())
}

pub fn bench(which: &str, args: &[String]) -> Result<()> {
    if !["failover", "chaos", "vm-attach"].contains(&which) && !args.is_empty() {
        bail!("`bench {which}` takes no arguments (got {args:?})");
    }
    match which {
        "datapath" => {
            if !is_root() {
                bail!("`bench datapath` loads eBPF programs and builds namespaces: run it as root");
            }
            privileged_bench("datapath").status_ok()
        }
        "sim" => cargo("stable")
            .args([
                "bench",
                "-p",
                "xvrrpd",
                "--features",
                "testkit",
                "--bench",
                "sim",
            ])
            .status_ok(),
        "failover" => bench_daemons("failover", args),
        "chaos" => bench_daemons("chaos", args),
        "vm-attach" => {
            if !is_root() {
                bail!("`bench vm-attach` boots qemu guests on a lab bridge: run it as root");
            }
            step("Debian package");
            crate::dist::run(true, false, false)?;
            step("bench vm-attach");
            cargo("stable")
                .args([
                    "bench",
                    "-p",
                    "xvrrpd-tests",
                    "--features",
                    "vmtest",
                    "--bench",
                    "vm_attach",
                    "--",
                ])
                .args(args)
                .status_ok()
        }
        other => bail!("unknown benchmark {other}"),
    }
}

/// `bench failover` and `bench chaos`: the agent's release binary (eBPF
/// embedded) against keepalived, in network namespaces; writes
/// `target/bench/<name>*.md` and `.json`.
fn bench_daemons(name: &str, args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("`bench {name}` runs daemons in network namespaces: run it as root");
    }
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    // CPU is compared with keepalived's optimised build: measure xvrrpd's
    // release build too, built here with its eBPF object.
    let bin = release_agent(!help)?;
    step(&format!("bench {name}"));
    privileged_bench(name)
        .arg("--")
        .args(args)
        .env("XVRRPD_BIN", &bin)
        .status_ok()
}

/// `cargo bench` of one of the privileged benchmarks in `tests/`.
fn privileged_bench(name: &str) -> Command {
    let mut c = cargo("stable");
    c.args([
        "bench",
        "-p",
        "xvrrpd-tests",
        "--features",
        "privileged",
        "--bench",
        name,
    ]);
    c
}

/// `$XVRRPD_BIN` when set; otherwise the agent's release binary with its
/// eBPF object, built first when `build` is set.
fn release_agent(build: bool) -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("XVRRPD_BIN") {
        return Ok(PathBuf::from(b));
    }
    if build {
        step("build the agent (release, eBPF embedded)");
        cargo("stable")
            .args(["build", "-p", "xvrrpd", "--release"])
            .status_ok()?;
    }
    Ok(target_dir().join("release").join("xvrrpd"))
}

/// The demo builds namespaces and loads eBPF programs: refuse early, before
/// the set-up, when not root.
pub fn demo_needs_root() -> Result<()> {
    if !is_root() {
        bail!(
            "the demo creates network namespaces, loads eBPF programs and opens raw sockets: \
             run `cargo xtask demo` as root"
        );
    }
    Ok(())
}

/// The target directory cargo builds into.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds the demo (its own crate, `tests/demo`); returns its binary.
fn build_demo() -> Result<PathBuf> {
    step("build the demo");
    cargo("stable")
        .args(["build", "-p", "xvrrpd-demo"])
        .status_ok()?;
    Ok(target_dir().join("debug").join("xvrrpd-demo"))
}

/// Builds the agent (release, eBPF required: the demo shows the daemon as
/// it ships) and the demo, then becomes the demo (exec): it owns the
/// terminal and takes Ctrl-C itself, to clean up.
pub fn demo(args: &[OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let agent = release_agent(true)?;
    let bin = build_demo()?;
    eprintln!();
    let err = cmd(&bin.to_string_lossy())
        .args(args)
        .env("XVRRPD_BIN", &agent)
        .exec();
    Err(err).with_context(|| format!("running {}", bin.display()))
}
