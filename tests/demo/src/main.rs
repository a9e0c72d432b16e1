//! `xvrrpd-demo` (run by `cargo xtask demo`): three routers running the
//! real xvrrpd and a client on one Ethernet segment of network
//! namespaces; failures injected on the master one after another, each
//! measured by the new master's own timeline, the bridge capture and the
//! client's pings.
//!
//! It ends by itself (well under two minutes), removes every namespace and
//! process it made — also on Ctrl-C — and keeps the logs.
//!
//! Exit status: 0 done; 1 a step failed (the message says what, the logs
//! where); 2 it could not start (not root, bad arguments); 130 interrupted.

mod lab;
mod signals;
mod steps;
mod term;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xvrrpd_tests::{clock::Stamp, vrrp_lab::xvrrpd_binary};

use crate::{
    lab::{DemoLab, FAMILIES, HEALTH_INTERVAL_S, HEALTH_SCRIPT, HEALTH_WEIGHT},
    steps::{Inject, Step, StepResult, rel},
    term::{bold, dim, green, red, say, term, yellow},
};

const USAGE: &str = "\
usage: xvrrpd-demo [--quick] [--strict] [--logs DIR]

Three routers running xvrrpd (VRRPv3, 10 ms adverts, an IPv4 and an IPv6
VIP) and a client in network namespaces; the master is crashed, stopped,
cut off and made unhealthy in turn, and each failover is measured.
Needs root. `cargo xtask demo` builds what it needs and runs it.

  --quick            shorter pauses (for tests); the same steps
  --strict           exit 1 if a take-over is later than the protocol's bound + 2 ms
  --logs DIR         where to keep the logs (default /tmp/xvrrpd-demo/<time>)
  --daemon-arg ARG   one more argument for every router's `xvrrpd run` (repeat it:
                     `--daemon-arg --no-ebpf`, `--daemon-arg --rt-priority=0`)

XVRRPD_BIN=PATH runs another xvrrpd binary (default: target/debug/xvrrpd; `cargo xtask demo`
sets its release build).";

struct Opts {
    quick: bool,
    strict: bool,
    logs: Option<PathBuf>,
    daemon_args: Vec<String>,
}

fn parse_args() -> Result<Option<Opts>, String> {
    let mut o = Opts {
        quick: false,
        strict: false,
        logs: None,
        daemon_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--strict" => o.strict = true,
            "--logs" => o.logs = Some(args.next().ok_or("--logs needs a directory")?.into()),
            "--daemon-arg" => o
                .daemon_args
                .push(args.next().ok_or("--daemon-arg needs an argument")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(o))
}

/// The failures, each followed by the recovery that brings r1 back.
const STEPS: [(Step, Step); 4] = [
    (
        Step {
            inject: Inject::Kill9,
            target: "r1",
            old: "r1",
            new: "r2",
        },
        Step {
            inject: Inject::Restart,
            target: "r1",
            old: "r2",
            new: "r1",
        },
    ),
    (
        Step {
            inject: Inject::Sigterm,
            target: "r1",
            old: "r1",
            new: "r2",
        },
        Step {
            inject: Inject::Restart,
            target: "r1",
            old: "r2",
            new: "r1",
        },
    ),
    (
        Step {
            inject: Inject::LinkDown,
            target: "r1",
            old: "r1",
            new: "r2",
        },
        Step {
            inject: Inject::LinkUp,
            target: "r1",
            old: "r2",
            new: "r1",
        },
    ),
    (
        Step {
            inject: Inject::HealthFail,
            target: "r1",
            old: "r1",
            new: "r2",
        },
        Step {
            inject: Inject::HealthBack,
            target: "r1",
            old: "r2",
            new: "r1",
        },
    ),
];

/// The steps must be done by then; cleanup takes a few seconds more, and
/// the whole demo stays under two minutes.
const STEPS_BUDGET: Duration = Duration::from_secs(105);

/// Pauses that let a person watch the live line.
struct Pace {
    watch: Duration,
    between: Duration,
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("xvrrpd-demo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = signals::install() {
        eprintln!("xvrrpd-demo: cannot set up signal handling: {e:#}");
        return ExitCode::from(2);
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "xvrrpd-demo: needs root (it creates network namespaces, loads eBPF programs and \
             opens raw sockets): run `cargo xtask demo` as root"
        );
        return ExitCode::from(2);
    }
    let bin = match xvrrpd_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xvrrpd-demo: {e:#}\n(`cargo xtask demo` builds it first)");
            return ExitCode::from(2);
        }
    };
    let logs = match logs_dir(opts.logs.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("xvrrpd-demo: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _ = term().transcript_to(&logs.join("demo.log"));
    let rt = measure_on_realtime();
    let started = Instant::now();
    signals::set_budget(STEPS_BUDGET);
    let outcome = demo(&opts, &bin, &logs, rt);
    let code = finish(&opts, outcome, &logs, started);
    signals::finished();
    code
}

/// Real-time priority of the demo's threads: below the daemons' default
/// (10), so they never delay a daemon.
const MEASURE_RT_PRIORITY: i32 = 5;

/// Puts this thread, and so every thread and process it starts until
/// [`normal_scheduler`] (prober, address watches, notify readers, tcpdump,
/// the live view), under SCHED_RR at [`MEASURE_RT_PRIORITY`]: they stand
/// for a client host and a switch, so their timestamps must not wait for
/// whatever else this host runs. The daemons set their own (higher)
/// priority. Returns whether it worked.
fn measure_on_realtime() -> bool {
    let param = libc::sched_param {
        sched_priority: MEASURE_RT_PRIORITY,
    };
    // SAFETY: sched_setscheduler on the calling thread with a valid param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) == 0 }
}

/// Puts this thread back on the normal scheduler (what it starts from
/// now on, too).
fn normal_scheduler() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread with a valid param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
}

/// The logs directory: given, or a new `/tmp/xvrrpd-demo/<time>` (with a
/// `latest` link beside it).
fn logs_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => {
            let base = Path::new("/tmp/xvrrpd-demo");
            let dir = base.join(local_time_name());
            let latest = base.join("latest");
            std::fs::create_dir_all(&dir)?;
            let _ = std::fs::remove_file(&latest);
            let _ = std::os::unix::fs::symlink(dir.file_name().unwrap_or_default(), &latest);
            dir
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `20250101-120000-<pid>` in local time.
fn local_time_name() -> String {
    // SAFETY: time(NULL) and localtime_r on a zeroed tm owned here.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        libc::localtime_r(&t, &mut tm);
    }
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        std::process::id()
    )
}

/// What the demo ran, for the summary.
struct Outcome {
    results: Vec<StepResult>,
    error: Option<anyhow::Error>,
    namespaces: usize,
    cleaned: Result<()>,
}

fn header(bin: &Path, quick: bool, daemon_args: &[String]) {
    say!(
        "{}",
        bold("xvrrpd demo — VRRP failover with the real daemon, in network namespaces")
    );
    say!();
    say!("    r1 (priority 150) ─┐");
    say!("    r2 (priority 100) ─┼─ br0 ── client: pings both VIPs every 1 ms");
    say!("    r3 (priority  50) ─┘   (tcpdump on br0 records adverts, GARP and NA)");
    say!();
    say!(
        "  daemon   {} run -f keepalived.conf{} (one per router)",
        bin.display(),
        daemon_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    say!("  config   VRRPv3, advert_int 0.01 (10 ms), preempt; one instance per address family:");
    say!(
        "           {}",
        FAMILIES
            .iter()
            .map(|f| format!("{} vrid {} VIP {}", f.inst, f.vrid, f.cidr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    say!(
        "           vrrp_script {HEALTH_SCRIPT}: a file check every {HEALTH_INTERVAL_S} s, \
         weight {HEALTH_WEIGHT}, fall 1, rise 1,"
    );
    say!("           tracked by both instances");
    say!("  steps    kill -9, SIGTERM, link down, failing health check, each on the master");
    say!(
        "           and each followed by its recovery{}",
        if quick { " (quick pace)" } else { "" }
    );
}

fn demo(opts: &Opts, bin: &Path, logs: &Path, rt: bool) -> Outcome {
    header(bin, opts.quick, &opts.daemon_args);
    if !rt {
        say!(
            "  {}",
            term::yellow(
                "note: the measuring threads run on the normal scheduler (SCHED_RR refused): \
                 on a busy host their timestamps may lag"
            )
        );
    }
    let pace = if opts.quick {
        Pace {
            watch: Duration::from_millis(300),
            between: Duration::from_millis(200),
        }
    } else {
        Pace {
            watch: Duration::from_millis(2500),
            between: Duration::from_millis(1500),
        }
    };
    say!();
    say!("{}", bold("━━ the lab ━━"));
    let t = Instant::now();
    let mut lab = match DemoLab::build(&opts.daemon_args) {
        Ok(l) => l,
        Err(e) => {
            return Outcome {
                results: Vec::new(),
                error: Some(e.context("building the lab")),
                namespaces: 0,
                cleaned: Ok(()),
            };
        }
    };
    say!(
        "  namespaces {}-{{sw,r1,r2,r3,client}} made in {:.1} s",
        lab.lab.net.tag(),
        t.elapsed().as_secs_f64()
    );
    say!("  files      {}", lab.dir().display());
    let mut results = Vec::new();
    let error = story(&mut lab, &pace, &mut results).err();
    let cleaned = teardown(lab, logs);
    let namespaces = leftover_namespaces();
    Outcome {
        results,
        error,
        namespaces,
        cleaned,
    }
}

fn story(lab: &mut DemoLab, pace: &Pace, results: &mut Vec<StepResult>) -> Result<()> {
    let started = Stamp::now();
    say!("  starting xvrrpd on r1, r2, r3 …");
    lab.start_routers()?;
    lab.start_monitor()?;
    steps::election(lab, "r1", started)?;
    lab.start_probes()?;
    // The instruments run (and keep their real-time priority); the story's
    // own work (parsing the capture, starting commands) does not need it.
    normal_scheduler();
    let since = Stamp::now();
    signals::pause(Duration::from_millis(300))?;
    steps::check_client_answered_by(lab, "r1", since)?;
    say!(
        "  {} the client's pings to both VIPs are answered by r1",
        green("✓")
    );
    for (i, (fail, recover)) in STEPS.iter().enumerate() {
        signals::pause(pace.watch)?;
        let label = format!("{}/{}", i + 1, STEPS.len());
        results.push(steps::run(lab, *fail, &label)?);
        signals::pause(pace.between)?;
        results.push(steps::run(lab, *recover, &label)?);
    }
    signals::pause(pace.between)?;
    Ok(())
}

/// Stops everything in order, keeps the files, removes the lab.
fn teardown(mut lab: DemoLab, logs: &Path) -> Result<()> {
    lab.stop_monitor();
    let mut problems = Vec::new();
    if let Err(e) = lab.stop_probes() {
        problems.push(format!("stopping the probers: {e:#}"));
    }
    if let Some(mut cap) = lab.capture.take()
        && let Err(e) = cap.stop()
    {
        problems.push(format!("the capture: {e:#}"));
    }
    for r in &mut lab.routers {
        if r.pid().is_some() {
            if let Ok(rep) = r.status()
                && let Ok(json) = serde_json::to_string_pretty(&rep)
            {
                let _ = std::fs::write(logs.join(format!("{}-status.json", r.name)), json);
            }
            if let Err(e) = r.sigterm() {
                problems.push(format!("{e:#}"));
            }
        }
    }
    let copied = copy_files(lab.dir(), logs);
    if let Err(e) = &copied {
        problems.push(format!("copying the logs: {e:#}"));
    }
    drop(lab);
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("; "))
    }
}

/// Copies the regular files under `from` to `to` (FIFOs and sockets left
/// out).
fn copy_files(from: &Path, to: &Path) -> Result<()> {
    fn walk(from: &Path, to: &Path, depth: u32) -> Result<()> {
        if depth > 4 {
            return Ok(());
        }
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)?.flatten() {
            let ft = e.file_type()?;
            let dst = to.join(e.file_name());
            // Each router's `bpf` directory is its BPF filesystem: kernel
            // objects, not logs.
            if ft.is_dir() && e.file_name() != "bpf" {
                walk(&e.path(), &dst, depth + 1)?;
            } else if ft.is_file() {
                std::fs::copy(e.path(), &dst)
                    .with_context(|| format!("copying {}", e.path().display()))?;
            }
        }
        Ok(())
    }
    walk(from, to, 0)
}

/// Namespaces of this process still there (none, after the lab is gone).
fn leftover_namespaces() -> usize {
    let prefix = format!("xvt{}-", std::process::id());
    std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0)
}

fn summary(results: &[StepResult]) {
    say!();
    say!("{}", bold("━━ summary ━━"));
    say!(
        "  {}",
        dim(
            "bound: the new master's protocol time (Master_Down_Interval; Skew_Time after priority 0)"
        )
    );
    say!(
        "  {}",
        dim(
            "wire: old master's last advert → new master's first (recoveries: event → first advert)"
        )
    );
    say!(
        "  {:<3} {:<18} {:<9} {:>10} {:>21} {:>10} {:>19}",
        "#",
        "step",
        "master",
        "bound",
        "wire VI_4 / VI_6",
        "timer",
        "outage v4 / v6"
    );
    let mut n = 0;
    for r in results {
        let num = if r.step.inject.is_recovery() {
            String::new()
        } else {
            n += 1;
            n.to_string()
        };
        let wire: Vec<String> = r
            .fams
            .iter()
            .map(|f| {
                f.wire_ns
                    .map(|w| format!("{:.3}", w as f64 / 1e6))
                    .unwrap_or_else(|| "-".into())
            })
            .collect();
        let outage: Vec<String> = r
            .fams
            .iter()
            .map(|f| {
                f.outage
                    .map(|o| format!("{:.1}", o.gap_ns as f64 / 1e6))
                    .unwrap_or_else(|| "-".into())
            })
            .collect();
        let line = format!(
            "  {:<3} {:<18} {:<9} {:>10} {:>21} {:>10} {:>19}",
            num,
            r.title,
            format!("{} → {}", r.step.old, r.step.new),
            format!("{:.3} ms", r.bound_ns as f64 / 1e6),
            format!("{} ms", wire.join(" / ")),
            r.timer_late_ns().map(rel).unwrap_or_else(|| "-".into()),
            format!("{} ms", outage.join(" / ")),
        );
        if !r.problems.is_empty() {
            say!("{}", red(&format!("{line}  ✗")));
        } else if !r.warnings.is_empty() {
            say!("{}", yellow(&format!("{line}  !")));
        } else {
            say!("{line}");
        }
    }
    say!(
        "  {}",
        dim("timer: the new master's down timer handled after its deadline (later of VI_4, VI_6)")
    );
    say!(
        "  {}",
        dim("outage: the client's longest run of unanswered 1 ms pings around the step")
    );
    if results
        .iter()
        .any(|r| !r.warnings.is_empty() || !r.problems.is_empty())
    {
        say!(
            "  {}",
            dim(
                "!: timing outside the bound (+2 ms)   ✗: the client did not follow the new master at once"
            )
        );
    }
}

fn finish(opts: &Opts, o: Outcome, logs: &Path, started: Instant) -> ExitCode {
    term().end_live();
    let interrupted = signals::interrupted();
    if !o.results.is_empty() && !interrupted {
        summary(&o.results);
    }
    let warnings: Vec<&String> = o.results.iter().flat_map(|r| &r.warnings).collect();
    say!();
    if o.namespaces == 0 {
        say!(
            "  cleaned up: daemons stopped, namespaces deleted (`ip netns list` shows none of this run)"
        );
    } else {
        say!(
            "  {}",
            red(&format!(
                "{} namespace(s) of this run are still there; removing them",
                o.namespaces
            ))
        );
        signals::remove_lab_namespaces();
    }
    if let Err(e) = &o.cleaned {
        say!("  {}", yellow(&format!("while cleaning up: {e}")));
    }
    say!("  logs: {}", logs.display());
    say!(
        "        demo.log (this output), r1/ r2/ r3/ (keepalived.conf, daemon.log), bridge.pcap, rN-status.json"
    );
    let elapsed = started.elapsed().as_secs_f64();
    if interrupted {
        say!("{}", yellow(&format!("interrupted after {elapsed:.1} s")));
        return ExitCode::from(130);
    }
    if let Some(e) = o.error {
        say!();
        say!("{} {e:#}", red(&bold("FAILED:")));
        say!("  daemon logs: {}/r1 … r3/daemon.log", logs.display());
        let first = format!("{e:#}");
        let first = term::plain(first.lines().next().unwrap_or_default());
        eprintln!("xvrrpd-demo failed: {first} (logs: {})", logs.display());
        return ExitCode::from(1);
    }
    let problems: Vec<&String> = o.results.iter().flat_map(|r| &r.problems).collect();
    if !problems.is_empty() {
        say!();
        say!(
            "{} the client did not follow every take-over at once:",
            red(&bold("FAILED:"))
        );
        for p in &problems {
            steps::say_wrapped("  ✗ ", p);
        }
        say!("  daemon logs: {}/r1 … r3/daemon.log", logs.display());
        say!("  capture:     {}/bridge.pcap", logs.display());
        eprintln!(
            "xvrrpd-demo failed: {} take-over(s) the client did not follow at once (logs: {})",
            problems.len(),
            logs.display()
        );
        return ExitCode::from(1);
    }
    if !warnings.is_empty() {
        say!(
            "{}",
            yellow(&format!(
                "{} timing(s) outside the protocol's bound (+2 ms tolerance); see above",
                warnings.len()
            ))
        );
        if opts.strict {
            say!("{}", red("--strict: failing"));
            return ExitCode::from(1);
        }
    }
    let n = o
        .results
        .iter()
        .filter(|r| !r.step.inject.is_recovery())
        .count();
    say!(
        "{}",
        green(&bold(&format!(
            "demo complete: {n} failures, {} recoveries in {elapsed:.1} s",
            o.results.len() - n
        )))
    );
    say!("  every take-over checked on the wire, on the hosts and by the client");
    ExitCode::SUCCESS
}
