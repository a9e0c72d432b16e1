//! `xvrrpd-demo` end to end (issue #7), in its quick mode: every step runs
//! and is reported in plain text (no escape codes when stdout is not a
//! terminal), the demo exits 0, keeps its logs and leaves no namespace or
//! daemon behind; on Ctrl-C it stops, cleans up and exits 130.
//!
//! Timing against the protocol's bounds is printed, not asserted here (the
//! e2e failover tests do that): a busy machine must not fail the demo.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use xvrrpd_tests::{require_root, router::workspace_binary};

/// One demo at a time: they would disturb each other's timing.
static SERIAL: Mutex<()> = Mutex::new(());

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    pid: u32,
    took: Duration,
}

/// The demo, its own crate's binary, so built before this test runs (as
/// `cargo xtask test` does); `XVRRPD_DEMO_BIN` picks another one.
fn demo_binary() -> PathBuf {
    workspace_binary(
        "xvrrpd-demo",
        "XVRRPD_DEMO_BIN",
        &["tests/demo/src", "tests/src", "agent/src", "common/src"],
        "`cargo build -p xvrrpd-demo`",
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs the demo with `args`; sends SIGINT once a stdout line contains
/// `interrupt_at`. Kills it and fails the test if it runs past `limit`.
fn run_demo(args: &[&str], interrupt_at: Option<&str>, limit: Duration) -> Finished {
    let started = Instant::now();
    let mut child = Command::new(demo_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xvrrpd-demo");
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let mut interrupted = false;
    let status = loop {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            if let Some(at) = interrupt_at
                && !interrupted
                && line.contains(at)
            {
                kill(Pid::from_raw(pid as i32), Signal::SIGINT).expect("SIGINT to the demo");
                interrupted = true;
            }
            stdout.push_str(&line);
            stdout.push('\n');
        }
        if let Some(st) = child.try_wait().expect("waiting for the demo") {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xvrrpd-demo ran for more than {limit:?}; its output so far:\n{stdout}");
        }
    };
    let _ = reader.join();
    for line in rx.try_iter() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let stderr = err_reader.join().unwrap_or_default();
    if interrupt_at.is_some() {
        assert!(
            interrupted,
            "the demo ended before printing {interrupt_at:?}:\n{stdout}\n{stderr}"
        );
    }
    Finished {
        status,
        stdout,
        stderr,
        pid,
        took: started.elapsed(),
    }
}

/// Namespaces and processes a demo run (process `pid`) left behind.
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("xvt{pid}-");
    let mut left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&tag))
                .map(|n| format!("namespace {n}"))
                .collect()
        })
        .unwrap_or_default();
    // Daemons, tcpdump, scripts: their command lines name the lab's files.
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if cmdline.contains(&format!("/{tag}")) || cmdline.contains(&format!(" {tag}")) {
                left.push(format!("process {name}: {cmdline}"));
            }
        }
    }
    left
}

fn logs_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(format!(
        "/tmp/xvrrpd-demo-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn assert_has(out: &str, what: &str) {
    assert!(
        out.contains(what),
        "the demo's output lacks {what:?}:\n{out}"
    );
}

#[test]
fn quick_demo_runs_every_step_and_cleans_up() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let logs = logs_dir("quick");
    let logs_arg = logs.to_string_lossy().into_owned();
    let r = run_demo(
        &["--quick", "--logs", &logs_arg],
        None,
        Duration::from_secs(90),
    );
    let out = &r.stdout;
    assert!(
        r.status.success(),
        "the demo failed ({}) after {:?}:\n{out}\nstderr:\n{}",
        r.status,
        r.took,
        r.stderr
    );
    assert!(
        !out.contains('\x1b'),
        "escape codes in output that is not a terminal:\n{out}"
    );
    for line in [
        "r1 (priority 150)",
        "VI_4 vrid 51 VIP 192.0.2.100/24, VI_6 vrid 52 VIP 2001:db8::100/64",
        "datapath: eBPF",
        "the client's pings to both VIPs are answered by r1",
        "━━ 1/4 · kill -9 r1",
        "━━ 2/4 · SIGTERM r1",
        "━━ 3/4 · link down r1",
        "━━ 4/4 · health check fails on r1",
        "↺ recovery: r1 starts again",
        "↺ recovery: link up r1",
        "↺ recovery: health check passes again on r1",
        "r1's warden removed the IPv4 VIP its dead daemon left",
        "r1's xvrrpd exited with status 0",
        "Master_Down_Interval(r2) = 3 × 10 ms + (256 − 100)/256 × 10 ms = 36.094 ms",
        "Skew_Time(r2) = (256 − 100)/256 × 10 ms = 6.094 ms",
        "r1's last advert → r2's first: VI_4 ",
        "r1's priority-0 advert → r2's first: VI_4 ",
        "the priority-0 advert of r1's warden → r2's first: VI_4 ",
        "= 6.094 ms after the priority-0 advert r1's warden sent",
        "now: r1 FAULT",
        "now: r1 BACKUP 90 (base 150)",
        "━━ summary ━━",
        "cleaned up: daemons stopped, namespaces deleted",
        &format!("logs: {}", logs.display()),
        "demo complete: 4 failures, 4 recoveries",
    ] {
        assert_has(out, line);
    }
    // The timeline rows: one per instance and step.
    let rows = out
        .lines()
        .filter(|l| l.trim_start().starts_with("VI_4 ") || l.trim_start().starts_with("VI_6 "))
        .count();
    assert!(rows >= 16, "{rows} timeline rows, expected 16:\n{out}");
    let left = leftovers(r.pid);
    assert!(left.is_empty(), "the demo left behind: {left:#?}");
    for f in [
        "demo.log",
        "bridge.pcap",
        "r1/daemon.log",
        "r1/keepalived.conf",
        "r2/daemon.log",
        "r3/daemon.log",
        "r1-status.json",
    ] {
        assert!(
            Path::new(&logs).join(f).is_file(),
            "{f} is not in the logs directory {}",
            logs.display()
        );
    }
    let conf = std::fs::read_to_string(logs.join("r1/keepalived.conf")).unwrap();
    for want in ["advert_int 0.01", "version 3", "track_script", "weight -60"] {
        assert!(conf.contains(want), "r1's config lacks {want:?}:\n{conf}");
    }
    let transcript = std::fs::read_to_string(logs.join("demo.log")).unwrap();
    assert!(transcript.contains("demo complete"), "{transcript}");
    println!("quick demo: {:?}\n{out}", r.took);
    let _ = std::fs::remove_dir_all(&logs);
}

#[test]
fn ctrl_c_stops_the_demo_and_removes_the_lab() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let logs = logs_dir("sigint");
    let logs_arg = logs.to_string_lossy().into_owned();
    // Interrupted in the middle of the first failover, daemons running.
    let r = run_demo(
        &["--quick", "--logs", &logs_arg],
        Some("━━ 1/4"),
        Duration::from_secs(60),
    );
    assert_eq!(
        r.status.code(),
        Some(130),
        "exit status after SIGINT ({}):\n{}\n{}",
        r.status,
        r.stdout,
        r.stderr
    );
    assert_has(&r.stdout, "SIGINT: stopping");
    assert_has(&r.stdout, "cleaned up: daemons stopped, namespaces deleted");
    assert_has(&r.stdout, "interrupted after");
    let left = leftovers(r.pid);
    assert!(left.is_empty(), "the demo left behind: {left:#?}");
    assert!(logs.join("r1/daemon.log").is_file(), "no logs kept");
    let _ = std::fs::remove_dir_all(&logs);
}
