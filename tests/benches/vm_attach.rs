//! What each attach mode costs a backup on virtio-net, in qemu guests
//! (`cargo xtask bench vm-attach`, `-- --kernel 6.1` for another kernel).
//!
//! One guest's xvrrpd is master of 50 instances at `advert_int 0.01`
//! (5,000 adverts/s); the other guest listens as their backup with
//! `--attach xdp-native`, `xdp-generic` or `tc`, or runs no daemon at all
//! (the stack drops the adverts), in rounds. Per round: the listener's busy
//! CPU from /proc/stat over 10 s, and the adverts the master sent meanwhile.
//! Under software emulation the figures are emulated CPU time: a proxy for
//! the work done (instructions), not a timing; under KVM they are real.

use std::{fmt::Write as _, fs, process::ExitCode, thread, time::Duration};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xvrrpd_tests::{
    kconf::{Daemon, Instance, RouterConfig},
    lab::{require_root, wait_until},
    vm::{
        self,
        qemu::{Accel, Vm},
        segment::{self, NODE_A, NODE_B, Node},
    },
};

const INSTANCES: u8 = 50;
const ROUNDS: usize = 2;
const WINDOW: Duration = Duration::from_secs(10);
/// The listener's modes; `none`: no daemon (the stack drops the adverts).
const MODES: &[&str] = &["none", "xdp-native", "xdp-generic", "tc"];

/// keepalived.conf of a guest: [`INSTANCES`] VRRPv3 instances at 10 ms.
fn config(node: &Node, priority: u8) -> Result<String> {
    let mut cfg = RouterConfig::default();
    cfg.global.router_id = node.name.into();
    for k in 1..=INSTANCES {
        let vip = format!("192.0.2.{}/24", 100 + k);
        cfg.instances
            .push(Instance::new(&format!("VI_{k}"), k, &[&vip]).with_priority(priority));
    }
    cfg.render(Daemon::Xvrrpd)
}

fn status(vm: &mut Vm) -> Result<Value> {
    let r = vm.sh("timeout 5 xvrrpd status --json", Duration::from_secs(30))?;
    serde_json::from_str(r.out.trim()).with_context(|| format!("{}: status: {}", vm.name, r.out))
}

fn count_state(s: &Value, state: &str) -> usize {
    s["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["state"] == state).count())
        .unwrap_or(0)
}

fn adverts_sent(s: &Value) -> u64 {
    s["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["counters"]["adverts_sent"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Busy and total jiffies of the guest (all CPUs).
fn cpu_jiffies(vm: &mut Vm) -> Result<(u64, u64)> {
    let line = vm.ok("head -1 /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if f.len() < 8 {
        bail!("{}: unexpected /proc/stat line {line:?}", vm.name);
    }
    // user nice system idle iowait irq softirq steal
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    let total = busy + f[3] + f[4];
    Ok((busy, total))
}

/// Polls `ok` every half second for up to `max`.
fn wait_for(what: &str, max: Duration, ok: impl FnMut() -> bool) -> Result<()> {
    if !wait_until(max, Duration::from_millis(500), ok) {
        bail!("{what} not within {max:?}");
    }
    Ok(())
}

struct Round {
    mode: &'static str,
    busy: f64,
    adverts: u64,
}

fn measure(seg: &mut segment::Segment, mode: &'static str) -> Result<Round> {
    let a = &mut seg.a;
    if mode != "none" {
        a.ok(&format!(
            "setsid -f /usr/sbin/xvrrpd run -f /etc/keepalived/keepalived.conf --attach {mode} \
             >/run/listener.log 2>&1 </dev/null"
        ))?;
        wait_for(
            &format!("the listener on {mode}, all backups"),
            Duration::from_secs(180),
            || {
                let s = status(a).unwrap_or(Value::Null);
                let attached = s["daemon"]["attachments"]
                    .as_array()
                    .is_some_and(|x| x.iter().any(|m| m["mode"] == mode));
                attached && count_state(&s, "BACKUP") == usize::from(INSTANCES)
            },
        )?;
    }
    thread::sleep(Duration::from_secs(3));
    let sent0 = adverts_sent(&status(&mut seg.b)?);
    let cpu0 = cpu_jiffies(&mut seg.a)?;
    thread::sleep(WINDOW);
    let cpu1 = cpu_jiffies(&mut seg.a)?;
    let sent1 = adverts_sent(&status(&mut seg.b)?);
    if mode != "none" {
        let a = &mut seg.a;
        a.ok("pkill -TERM -x xvrrpd; for i in $(seq 100); do pgrep -x xvrrpd >/dev/null || break; sleep 0.2; done; \
              xvrrpd cleanup -f /etc/keepalived/keepalived.conf >/dev/null 2>&1; true")?;
    }
    let busy = (cpu1.0 - cpu0.0) as f64 / (cpu1.1 - cpu0.1).max(1) as f64;
    Ok(Round {
        mode,
        busy,
        adverts: sent1.saturating_sub(sent0),
    })
}

fn run() -> Result<()> {
    require_root();
    let Some(series) = vm::series_from_args("vm_attach", &["6.12"])? else {
        return Ok(());
    };
    let deb = vm::package()?;
    let out_dir = vm::out_dir()?;
    let (kernels, accel, why) = vm::prepare(&series, &out_dir)?;
    eprintln!("[vm-attach] guests run under {}: {why}", accel.name());
    let mut report = String::new();
    for k in &kernels {
        let dir = out_dir.join(format!("attach-{}", k.release));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut seg = segment::boot(k, accel, &deb, &dir)?;
        segment::install(&mut seg.a, &NODE_A, &config(&NODE_A, 100)?, "")?;
        segment::install(&mut seg.b, &NODE_B, &config(&NODE_B, 200)?, "")?;
        seg.b.ok("systemctl start xvrrpd")?;
        let b = &mut seg.b;
        wait_for("the master's instances", Duration::from_secs(120), || {
            status(b).is_ok_and(|s| count_state(&s, "MASTER") == usize::from(INSTANCES))
        })?;
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            for mode in MODES {
                let r = measure(&mut seg, mode)?;
                eprintln!(
                    "[vm-attach] {} round {}: {:<11} busy {:5.1} %, {} adverts",
                    k.series,
                    round + 1,
                    r.mode,
                    r.busy * 100.0,
                    r.adverts
                );
                rounds.push(r);
            }
        }
        segment::save_logs(&mut seg, &dir);
        drop(seg);
        let _ = writeln!(
            report,
            "\n### {} ({}), {}\n\n{INSTANCES} instances at `advert_int 0.01` from the other guest; \
             the listener's busy CPU over {} s, {ROUNDS} rounds.\n\n\
             | listener | busy (% of its vCPU) | µs per advert{} | over no daemon, per advert |\n|---|---|---|---|",
            k.series,
            k.release,
            accel.name(),
            WINDOW.as_secs(),
            if accel == Accel::Tcg {
                " (emulated)"
            } else {
                ""
            }
        );
        let per = |mode: &str| -> (f64, f64) {
            let rs: Vec<&Round> = rounds.iter().filter(|r| r.mode == mode).collect();
            let busy = rs.iter().map(|r| r.busy).sum::<f64>() / rs.len().max(1) as f64;
            let adverts = rs.iter().map(|r| r.adverts).sum::<u64>() as f64 / rs.len().max(1) as f64;
            let us = busy * WINDOW.as_secs_f64() * 1e6 / adverts.max(1.0);
            (busy, us)
        };
        let (_, base_us) = per("none");
        for mode in MODES {
            let (busy, us) = per(mode);
            let runs: Vec<String> = rounds
                .iter()
                .filter(|r| r.mode == *mode)
                .map(|r| format!("{:.1}", r.busy * 100.0))
                .collect();
            let _ = writeln!(
                report,
                "| {mode} | {:.1} ({}) | {us:.1} | {} |",
                busy * 100.0,
                runs.join(", "),
                if *mode == "none" {
                    "—".to_string()
                } else {
                    format!("{:+.1} µs", us - base_us)
                }
            );
        }
    }
    let path = out_dir.join("attach.md");
    fs::write(&path, &report)?;
    println!("{report}\nwritten to {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm-attach: {e:#}");
            ExitCode::FAILURE
        }
    }
}
