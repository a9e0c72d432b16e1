//! `cargo xtask bench failover` (issue #6): xvrrpd side by side with
//! keepalived 2.2.7 on the same topology and the same config.
//!
//! Two routers of each daemon on one bridge (only one pair runs at a
//! time), a client probing the VIP every millisecond, tcpdump on the
//! bridge with nanosecond timestamps. For VRRPv2 `advert_int 1`, VRRPv3
//! `advert_int 0.1` and `0.01`, trials alternate between the daemons; each
//! injects a crash (kill -9, then the host's link down), a SIGTERM and a
//! link down at a random point of the advert cycle, then brings the
//! master back. Then steady-state CPU and wake-ups (1 and 100 instances
//! at 0.01, 1000 on four VLANs at 1 and at 0.1) and junk floods from the
//! client. Results go to `target/bench/` as a
//! markdown table and JSON; `--help` lists the options.

#[path = "failover/failures.rs"]
mod failures;
#[path = "failover/flood.rs"]
mod flood;
#[path = "failover/lab.rs"]
mod lab;
#[path = "failover/many.rs"]
mod many;
#[path = "failover/opts.rs"]
mod opts;
#[path = "failover/procstat.rs"]
mod procstat;
#[path = "failover/report.rs"]
mod report;
#[path = "failover/stats.rs"]
mod stats;
#[path = "failover/steady.rs"]
mod steady;

use std::{
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    router::{KEEPALIVED, keepalived_binary},
    scale::VlanKind,
    vrrp_lab::xvrrpd_binary,
};

use crate::{
    failures::{CaseResults, run_trial},
    flood::Junk,
    lab::BenchLab,
    opts::{Config, Opts, USAGE},
    procstat::Hog,
    report::{FailoverCase, Results},
    stats::Rng,
};

fn main() -> ExitCode {
    xvrrpd_tests::bench::main(
        "failover",
        USAGE,
        || Opts::parse(std::env::args().skip(1)),
        run,
    )
}

fn command_text(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|e| format!("({e})"))
}

fn header(o: &Opts, xv: &std::path::Path) -> Vec<(String, String)> {
    let profile = if xv.components().any(|c| c.as_os_str() == "release") {
        "release build"
    } else if xv.components().any(|c| c.as_os_str() == "debug") {
        "DEBUG build: CPU figures are pessimistic for xvrrpd (xtask runs the release build)"
    } else {
        "build profile unknown"
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    vec![
        (
            "mode".into(),
            format!(
                "{}{}",
                if o.load {
                    "--load: both cores busy with 2 busy-loop threads at normal priority"
                } else {
                    "idle (no hog; other processes of the host may run)"
                },
                if o.quick { ", --quick" } else { "" }
            ),
        ),
        ("seed".into(), o.seed.to_string()),
        (
            "trials per daemon".into(),
            o.configs
                .iter()
                .map(|c| format!("{} ×{}", c.name(), o.trials_for(*c)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "xvrrpd".into(),
            format!(
                "{} ({profile}; {})",
                xv.display(),
                if o.xvrrpd_args.is_empty() {
                    "default options: event loop on SCHED_RR 10, eBPF datapath".to_string()
                } else {
                    format!("extra arguments {:?}", o.xvrrpd_args)
                }
            ),
        ),
        (
            "keepalived".into(),
            format!(
                "{KEEPALIVED} ({}; default scheduling, SCHED_OTHER)",
                command_text(KEEPALIVED, &["--version"])
            ),
        ),
        ("kernel".into(), command_text("uname", &["-r"])),
        ("load average at start".into(), load.trim().to_string()),
        (
            "crash".into(),
            "its bridge port taken down, then SIGKILL to the daemon's process group right after (the host \
             is gone); before the restart its leftover VIP is removed (a rebooted host has none) and the \
             port comes back"
                .into(),
        ),
        ("link down".into(), "the master's bridge port goes down (carrier lost), the daemon lives on".into()),
        (
            "detection error".into(),
            "backup's first advert − (master's last advert + Master_Down_Interval of the backup, or + its \
             Skew_Time after a priority-0 advert), both on the bridge capture"
                .into(),
        ),
        (
            "restart → first advert − MDI".into(),
            "restarted router's first advert on the wire − the moment it was exec'd − its own \
             Master_Down_Interval (it starts as backup and must wait that long before preempting): \
             the startup cost"
                .into(),
        ),
        (
            "host stall".into(),
            "a canary thread (SCHED_RR 10, woken every 1 ms during the failover trials) records wake-ups \
             more than 200 µs late; each takeover reports the worst between the old master's last advert \
             and the new master's first: a stall there delays any daemon, whatever it does"
                .into(),
        ),
        (
            "client outage / preemption gap".into(),
            "longest run of unanswered 1 ms probes (send time of the first lost one to that of the next \
             answered one); the client's prober runs on SCHED_RR 1 as it stands for another machine"
                .into(),
        ),
        (
            "steady CPU".into(),
            "a master and a backup of each daemon running N VRRPv3 instances at one advert_int (more \
             than 250 on VLANs eth0.10, eth0.11, … of the routers, 250 VRIDs each), no capture on the bridge; CPU = run time of \
             every thread of every process in the daemon's group (/proc/PID/task/*/schedstat, ns; \
             utime+stime from /proc/PID/stat, sampled at the tick, shown beside it); wake-ups = voluntary + \
             nonvoluntary context switches of every thread of those processes \
             (/proc/PID/task/*/status), housekeeping threads included, per second of the window"
                .into(),
        ),
        (
            "floods".into(),
            "from the client, 224.0.0.18, right VRID 51 with priority 254 (wrong VRID: 52); \
             VRRPv3 advert_int 0.01, bad-auth against VRRPv2 advert_int 1 with auth_pass; CPU = run time \
             of every thread of every process in the daemon's group (/proc/PID/task/*/schedstat)"
                .into(),
        ),
    ]
}

fn failover_instance(cfg: Config) -> Instance {
    let mut inst = Instance::new("VI_1", 51, &["192.0.2.100/24"]);
    inst.version = cfg.version();
    inst.advert_int = cfg.interval();
    inst
}

fn run(o: &Opts) -> Result<()> {
    let xv = xvrrpd_binary()?;
    keepalived_binary()?;
    let started = Instant::now();
    let progress = move |msg: &str| eprintln!("[{:>6.1} s] {msg}", started.elapsed().as_secs_f64());
    let header = header(o, &xv);
    for (k, v) in &header {
        eprintln!("{k}: {v}");
    }
    let _hog = o.load.then(|| {
        progress("starting the CPU hog: 2 busy-loop threads");
        Hog::start(2, Duration::from_secs(if o.quick { 900 } else { 3600 }))
    });
    let timer_line = timer_floor(o)?;
    progress(&format!(
        "timer wake-up lateness on this host: {timer_line}"
    ));
    let mut header = header;
    header.push(("timer wake-up lateness".into(), timer_line));
    let mut rng = Rng::new(o.seed);
    let mut results = Results {
        failover: Vec::new(),
        cpu: Vec::new(),
        cpu_errors: Vec::new(),
        scale: Vec::new(),
        scale_errors: Vec::new(),
        flood: Vec::new(),
        flood_errors: Vec::new(),
    };

    if o.failover {
        failover_cases(o, &mut rng, &mut results, &progress)?;
    }
    if o.cpu {
        let vlans = steady_cpu(o, &mut results, &progress)?;
        if vlans != VlanKind::None {
            header.push(("steady CPU VLANs".into(), vlans.describe().into()));
        }
    }
    if o.scale {
        mass_failovers(o, &mut rng, &mut results, &progress)?;
    }
    if o.flood {
        floods(o, &mut rng, &mut results, &progress)?;
    }

    header.push((
        "load average at end".into(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
    ));
    header.push((
        "run time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
    write_report(o, &results, &header, &progress)
}

/// The platform's floor for timer-driven latency, as a line for the header.
fn timer_floor(o: &Opts) -> Result<String> {
    let late =
        procstat::timer_lateness(if o.quick { 500 } else { 2000 }, Duration::from_millis(1))?;
    let pct = |p: f64| late[((late.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    Ok(format!(
        "median {:.1} µs, p99 {:.1} µs, max {:.1} µs over {} wake-ups (SCHED_RR 10 thread, 1 ns slack, \
         absolute timerfd in poll(2), 1 ms apart: the floor of any timer-driven detection here)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        late.len()
    ))
}

/// Which daemon goes first, drawn from `rng` so neither is always first.
fn random_order(rng: &mut Rng) -> [Daemon; 2] {
    if rng.next_u64() & 1 == 0 {
        [Daemon::Keepalived, Daemon::Xvrrpd]
    } else {
        [Daemon::Xvrrpd, Daemon::Keepalived]
    }
}

/// The failover trials of every config, the daemons alternating.
fn failover_cases(
    o: &Opts,
    rng: &mut Rng,
    results: &mut Results,
    progress: &dyn Fn(&str),
) -> Result<()> {
    for &cfg in &o.configs {
        let trials = o.trials_for(cfg);
        progress(&format!(
            "failover {}: {trials} trial(s) per daemon",
            cfg.label()
        ));
        let mut bl = BenchLab::new(
            &format!("bench-{}", cfg.name()),
            failover_instance(cfg),
            &o.xvrrpd_args,
            |_, _| Ok(()),
        )
        .with_context(|| format!("building the lab for {}", cfg.label()))?;
        // SCHED_RR 10, as xvrrpd's event loop: a stall there delays any daemon.
        bl.canary = Some(xvrrpd_tests::stall::StallMonitor::start(
            10,
            Duration::from_secs(1800),
        ));
        let mut case = FailoverCase {
            config: cfg,
            trials,
            keepalived: CaseResults::default(),
            xvrrpd: CaseResults::default(),
            mdi_lo_ns: bl.mdi("k2"),
            mdi_hi_ns: bl.mdi("k1"),
            skew_lo_ns: bl.c.skew_ns("k2"),
        };
        for t in 0..trials {
            for d in random_order(rng) {
                progress(&format!("{} trial {}/{trials}: {d}", cfg.name(), t + 1));
                let res = match d {
                    Daemon::Keepalived => &mut case.keepalived,
                    Daemon::Xvrrpd => &mut case.xvrrpd,
                };
                run_trial(&mut bl, d, rng, res, &|m| progress(&format!("  {m}")));
            }
        }
        results.failover.push(case);
    }
    Ok(())
}

/// Steady-state CPU and wake-ups of each `--cpu-cases` case; a failed
/// window is recorded, not fatal. Returns how VLANs were made, if any.
fn steady_cpu(o: &Opts, results: &mut Results, progress: &dyn Fn(&str)) -> Result<VlanKind> {
    let windows = if o.quick { 1 } else { 2 };
    let mut vlans = VlanKind::None;
    for &case in &o.cpu_cases {
        let label = case.label();
        // After the pair settles: 1 s (2 s) as always at 0.01; for slower
        // adverts 6 s, past keepalived's second round of gratuitous ARPs
        // (garp_master_delay, 5 s after becoming master), a start-up
        // burst that is no steady state.
        let settle = if case.advert_int >= Duration::from_millis(100) {
            Duration::from_secs(6)
        } else {
            Duration::from_secs(if o.quick { 1 } else { 2 })
        };
        progress(&format!(
            "steady CPU: {label}, {windows} window(s) of {} s per daemon ({} s settling)",
            o.cpu_secs,
            settle.as_secs()
        ));
        let built = Instant::now();
        let (mut bl, kind) = steady::lab(case, &o.xvrrpd_args)
            .with_context(|| format!("building the lab for {label}"))?;
        progress(&format!(
            "  lab built in {:.1} s{}",
            built.elapsed().as_secs_f64(),
            if kind == VlanKind::None {
                String::new()
            } else {
                format!("; VLANs: {}", kind.describe())
            }
        ));
        if kind != VlanKind::None {
            vlans = kind;
        }
        for w in 0..windows {
            let order = if w % 2 == 0 {
                [Daemon::Keepalived, Daemon::Xvrrpd]
            } else {
                [Daemon::Xvrrpd, Daemon::Keepalived]
            };
            for d in order {
                let began = Instant::now();
                match steady::measure(&mut bl, d, o.cpu_secs, settle) {
                    Ok(cw) => {
                        progress(&format!(
                            "  {d} {label}: master {:.3} % of a core (ticks {:.2} %, {:.2} % stime), {:.1} wake-ups/s; backup {:.3} % (ticks {:.2} %, {:.2} % stime), {:.1} wake-ups/s; {} state change(s); took {:.1} s",
                            cw.master_pct,
                            cw.master_tick_pct,
                            cw.master_sys_pct,
                            cw.master_wakeups_per_s,
                            cw.backup_pct,
                            cw.backup_tick_pct,
                            cw.backup_sys_pct,
                            cw.backup_wakeups_per_s,
                            cw.transitions,
                            began.elapsed().as_secs_f64()
                        ));
                        let threads = |v: &[(String, f64)]| {
                            v.iter()
                                .take(4)
                                .map(|(n, r)| format!("{n} {r:.1}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        progress(&format!(
                            "    wake-ups/s by thread: master {}; backup {}",
                            threads(&cw.master_wakeups_by_thread),
                            threads(&cw.backup_wakeups_by_thread)
                        ));
                        results.cpu.push(cw);
                    }
                    Err(e) => {
                        progress(&format!("  {d} {label}: FAILED: {e:#}"));
                        results
                            .cpu_errors
                            .push(format!("{d} steady {label}: {e:#}"));
                    }
                }
            }
        }
    }
    Ok(vlans)
}

/// Every `--scale-cases` case: each daemon's pair fails over together and
/// back, in random order; a failed run is recorded, not fatal.
fn mass_failovers(
    o: &Opts,
    rng: &mut Rng,
    results: &mut Results,
    progress: &dyn Fn(&str),
) -> Result<()> {
    for &case in &o.scale_cases {
        let label = case.label();
        progress(&format!("mass failover: {label}"));
        let (mut bl, _) = steady::lab(case, &o.xvrrpd_args)
            .with_context(|| format!("building the lab for {label}"))?;
        // Past keepalived's second round of gratuitous ARPs (5 s).
        let settle = Duration::from_secs(6);
        for d in random_order(rng) {
            let began = Instant::now();
            match many::measure(&mut bl, d, settle) {
                Ok(m) => {
                    progress(&format!(
                        "  {} (took {:.1} s)",
                        many::line(&m),
                        began.elapsed().as_secs_f64()
                    ));
                    results.scale.push(m);
                }
                Err(e) => {
                    let msg = format!("{d} {label}: {e:#}");
                    progress(&format!("  FAILED: {msg}"));
                    results.scale_errors.push(msg);
                }
            }
        }
    }
    Ok(())
}

/// The junk floods chosen, VRRPv3 kinds then VRRPv2 ones, each in its own lab.
fn floods(o: &Opts, rng: &mut Rng, results: &mut Results, progress: &dyn Fn(&str)) -> Result<()> {
    progress(&format!(
        "junk floods: {} s each at {:?} frames/s",
        o.flood_secs, o.rates
    ));
    if let Some(names) = &o.floods
        && let Some(bad) = names
            .iter()
            .find(|n| !Junk::ALL.iter().any(|k| k.name() == n.as_str()))
    {
        anyhow::bail!("--floods: unknown junk kind {bad:?}");
    }
    for v2 in [false, true] {
        let kinds: Vec<Junk> = Junk::ALL
            .into_iter()
            .filter(|k| k.needs_v2() == v2)
            .filter(|k| {
                o.floods
                    .as_ref()
                    .is_none_or(|n| n.iter().any(|n| n == k.name()))
            })
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let mut bl = BenchLab::new(
            if v2 {
                "bench-flood-v2"
            } else {
                "bench-flood-v3"
            },
            flood::instance(v2),
            &o.xvrrpd_args,
            |_, _| Ok(()),
        )?;
        for &rate in &o.rates {
            // A VRRPv2 pair takes ~4 s to elect: --quick floods it
            // at the highest rate only.
            if v2 && o.quick && Some(&rate) != o.rates.iter().max() {
                progress(&format!(
                    "  --quick: bad-auth at {rate}/s left out (highest rate only)"
                ));
                continue;
            }
            for &kind in &kinds {
                for d in random_order(rng) {
                    flood_one(o, &mut bl, d, kind, rate, results, progress);
                }
            }
        }
    }
    Ok(())
}

/// One daemon under one junk kind at one rate; a failure is recorded, not
/// fatal.
fn flood_one(
    o: &Opts,
    bl: &mut BenchLab,
    d: Daemon,
    kind: Junk,
    rate: u64,
    results: &mut Results,
    progress: &dyn Fn(&str),
) {
    match flood::run(bl, d, kind, rate, o.flood_secs) {
        Ok(f) => {
            progress(&format!(
                "  {d} {} {rate}/s (sent {:.0}/s): CPU master {:.2} % backup {:.2} %, adverts {}/{:.0}, silence {:.1} ms, false failovers {}, state changes {}",
                kind.name(),
                f.sent.frames as f64 / f.sent.secs,
                f.master_cpu,
                f.backup_cpu,
                f.adverts_sent,
                f.adverts_expected,
                f.longest_silence_ns as f64 / 1e6,
                f.false_failovers,
                f.transitions
            ));
            results.flood.push(f);
        }
        Err(e) => {
            progress(&format!("  {d} {} {rate}/s: FAILED: {e:#}", kind.name()));
            results
                .flood_errors
                .push(format!("{d} flood {} {rate}/s: {e:#}", kind.name()));
        }
    }
}

/// Writes the markdown and JSON reports under `target/bench/` and prints
/// the markdown.
fn write_report(
    o: &Opts,
    results: &Results,
    header: &[(String, String)],
    progress: &dyn Fn(&str),
) -> Result<()> {
    let targets = report::targets(results, o.load);
    let md = report::markdown(results, header, &targets);
    let js = report::json(results, header, &targets);
    let stem = format!(
        "failover{}{}",
        if o.quick { "-quick" } else { "" },
        if o.load { "-load" } else { "" }
    );
    let (md_path, js_path) = xvrrpd_tests::bench::write_report(&stem, &md, &js)?;
    println!("{md}");
    progress(&format!(
        "wrote {} and {}",
        md_path.display(),
        js_path.display()
    ));
    for svg in report::plots(results, &stem)? {
        progress(&format!("wrote {}", svg.display()));
    }
    Ok(())
}
