//! The results as a markdown table (with a `ratio` column, xvrrpd /
//! keepalived), the targets with met/missed, and everything raw as JSON.

use std::{fmt::Write as _, time::Duration};

use serde_json::{Value, json};
use xvrrpd_tests::{analysis::master_down_ns, kconf::Daemon};

use crate::{
    failures::{CaseResults, Failure},
    flood::FloodResult,
    lab::LO_PRIO,
    many::MassFailover,
    opts::{Config, CpuCase},
    stats::{Summary, summarize},
    steady::CpuWindow,
};

/// The failover results of one config: per daemon.
pub struct FailoverCase {
    pub config: Config,
    pub trials: usize,
    pub keepalived: CaseResults,
    pub xvrrpd: CaseResults,
    pub mdi_lo_ns: u64,
    pub mdi_hi_ns: u64,
    pub skew_lo_ns: u64,
}

impl FailoverCase {
    fn of(&self, d: Daemon) -> &CaseResults {
        match d {
            Daemon::Keepalived => &self.keepalived,
            Daemon::Xvrrpd => &self.xvrrpd,
        }
    }
}

/// Everything a run measured.
pub struct Results {
    pub failover: Vec<FailoverCase>,
    pub cpu: Vec<CpuWindow>,
    pub cpu_errors: Vec<String>,
    pub scale: Vec<MassFailover>,
    pub scale_errors: Vec<String>,
    pub flood: Vec<FloodResult>,
    pub flood_errors: Vec<String>,
}

/// One table row.
struct Row {
    case: String,
    metric: &'static str,
    unit: &'static str,
    k: Option<Summary>,
    x: Option<Summary>,
    /// Steps or windows that failed, per daemon.
    fails: (usize, usize),
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_summary(s: &Option<Summary>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => fmt_num(s.median),
        Some(s) => format!(
            "{} / {} / {}",
            fmt_num(s.min),
            fmt_num(s.median),
            fmt_num(s.max)
        ),
    }
}

fn ratio(k: &Option<Summary>, x: &Option<Summary>) -> String {
    match (k, x) {
        (Some(k), Some(x)) if k.median > 0.0 && x.median >= 0.0 => {
            format!("{:.3}", x.median / k.median)
        }
        (Some(k), Some(x)) if k.median == 0.0 && x.median == 0.0 => "=".into(),
        _ => "n/a".into(),
    }
}

type Pick = fn(&crate::failures::StepResult) -> Option<f64>;

fn failover_rows(c: &FailoverCase) -> Vec<Row> {
    let mut rows = Vec::new();
    const RESTARTS: &[Failure] = &[Failure::Crash, Failure::Kill9, Failure::Sigterm];
    let metrics: [(&'static str, &'static str, Pick, &[Failure]); 11] = [
        (
            "detection error",
            "µs",
            |s| Some(s.detection_error_ns as f64 / 1e3),
            &Failure::ALL,
        ),
        (
            "↳ xvrrpd: last advert, bridge → backup's kernel stamp",
            "µs",
            |s| {
                s.xvrrpd_takeover
                    .map(|t| t.rx_stamp_after_wire as f64 / 1e3)
            },
            &Failure::ALL,
        ),
        (
            "↳ xvrrpd: down timer handled − deadline",
            "µs",
            |s| s.xvrrpd_takeover.map(|t| t.timer_late as f64 / 1e3),
            &Failure::ALL,
        ),
        (
            "↳ xvrrpd: timer handled → advert on the bridge",
            "µs",
            |s| s.xvrrpd_takeover.map(|t| t.fired_to_wire as f64 / 1e3),
            &Failure::ALL,
        ),
        (
            "↳ host stall meanwhile (canary thread, > 200 µs)",
            "ms",
            |s| Some(s.host_stall_ns as f64 / 1e6),
            &Failure::ALL,
        ),
        (
            "client outage",
            "ms",
            |s| s.outage_ns.map(|v| v as f64 / 1e6),
            &Failure::ALL,
        ),
        (
            "↳ first GARP after first advert (bridge)",
            "ms",
            |s| s.garp_after_ns.map(|v| v as f64 / 1e6),
            &Failure::ALL,
        ),
        (
            "restart → first advert − MDI",
            "ms",
            |s| s.restart_over_mdi_ns.map(|v| v as f64 / 1e6),
            RESTARTS,
        ),
        (
            "↳ restart → daemon up (lab)",
            "ms",
            |s| s.restart_up_ns.map(|v| v as f64 / 1e6),
            RESTARTS,
        ),
        (
            "↳ xvrrpd: restart → instance in BACKUP",
            "ms",
            |s| s.restart_backup_ns.map(|v| v as f64 / 1e6),
            RESTARTS,
        ),
        (
            "preemption client gap",
            "ms",
            |s| s.preempt_gap_ns.map(|v| v as f64 / 1e6),
            &Failure::ALL,
        ),
    ];
    for f in Failure::ALL {
        for (metric, unit, pick, applies) in &metrics {
            if !applies.contains(&f) {
                continue;
            }
            let vals = |d: Daemon| -> Vec<f64> {
                c.of(d)
                    .steps
                    .iter()
                    .filter(|(g, _)| *g == f)
                    .filter_map(|(_, s)| pick(s))
                    .collect()
            };
            let fails = |d: Daemon| c.of(d).failed.iter().filter(|(g, _)| *g == f).count();
            rows.push(Row {
                case: format!("{} {}", c.config.label(), f.name()),
                metric,
                unit,
                k: summarize(&vals(Daemon::Keepalived)),
                x: summarize(&vals(Daemon::Xvrrpd)),
                fails: (fails(Daemon::Keepalived), fails(Daemon::Xvrrpd)),
            });
        }
    }
    rows
}

fn one(v: Option<f64>) -> Option<Summary> {
    v.and_then(|v| summarize(&[v]))
}

/// The steady-state cases measured, in the order they ran.
fn cpu_cases(cpu: &[CpuWindow]) -> Vec<CpuCase> {
    let mut cases: Vec<CpuCase> = Vec::new();
    for w in cpu {
        if !cases.contains(&w.case()) {
            cases.push(w.case());
        }
    }
    cases
}

/// The backup's `Master_Down_Interval` in a steady-state case (s): VRRPv3,
/// 3 × advert_int + (256 − 100) × advert_int / 256.
fn backup_mdi_s(case: CpuCase) -> f64 {
    master_down_ns(3, LO_PRIO, case.advert_int) as f64 / 1e9
}

type CpuPick = fn(&CpuWindow) -> f64;

/// The medians of a steady-state metric over one case's windows, per
/// daemon.
fn cpu_summary(cpu: &[CpuWindow], case: CpuCase, d: Daemon, pick: CpuPick) -> Option<Summary> {
    summarize(
        &cpu.iter()
            .filter(|w| w.case() == case && w.daemon == d)
            .map(pick)
            .collect::<Vec<_>>(),
    )
}

fn cpu_rows(cpu: &[CpuWindow]) -> Vec<Row> {
    let mut rows = Vec::new();
    let metrics: [(&'static str, &'static str, CpuPick); 12] = [
        ("master CPU (run time)", "% core", |w| w.master_pct),
        ("↳ utime+stime (tick-sampled)", "% core", |w| {
            w.master_tick_pct
        }),
        ("↳ of which stime", "% core", |w| w.master_sys_pct),
        ("backup CPU (run time)", "% core", |w| w.backup_pct),
        ("↳ utime+stime (tick-sampled)", "% core", |w| {
            w.backup_tick_pct
        }),
        ("↳ of which stime", "% core", |w| w.backup_sys_pct),
        ("master + backup CPU", "% core", |w| {
            w.master_pct + w.backup_pct
        }),
        (
            "master wake-ups (context switches, all threads)",
            "/s",
            |w| w.master_wakeups_per_s,
        ),
        (
            "backup wake-ups (context switches, all threads)",
            "/s",
            |w| w.backup_wakeups_per_s,
        ),
        ("↳ per backup Master_Down_Interval", "count", |w| {
            w.backup_wakeups_per_s * backup_mdi_s(w.case())
        }),
        (
            "false failovers (backup → MASTER) per window",
            "count",
            |w| w.takeovers as f64,
        ),
        ("notify FIFO lines per window", "count", |w| {
            w.transitions as f64
        }),
    ];
    for case in cpu_cases(cpu) {
        for (metric, unit, pick) in metrics {
            rows.push(Row {
                case: format!("steady, {}", case.label()),
                metric,
                unit,
                k: cpu_summary(cpu, case, Daemon::Keepalived, pick),
                x: cpu_summary(cpu, case, Daemon::Xvrrpd, pick),
                fails: (0, 0),
            });
        }
    }
    rows
}

fn scale_rows(scale: &[MassFailover]) -> Vec<Row> {
    type Pick = fn(&MassFailover) -> f64;
    let metrics: [(&'static str, &'static str, Pick); 6] = [
        ("host gone → first VIP on the backup", "ms", |m| {
            m.first_vip_ns as f64 / 1e6
        }),
        ("host gone → every VIP on the backup", "ms", |m| {
            m.all_vips_ns as f64 / 1e6
        }),
        ("↳ beyond the Master_Down_Interval", "ms", |m| {
            (m.all_vips_ns as f64 - m.mdi_ns as f64) / 1e6
        }),
        ("backup CPU time for the takeover", "ms", |m| {
            m.takeover_cpu_ms
        }),
        (
            "restart → every VIP back, none left on the backup",
            "ms",
            |m| m.back_ns as f64 / 1e6,
        ),
        (
            "VIPs that did not move exactly once each way",
            "count",
            |m| m.not_moved_once as f64,
        ),
    ];
    let mut cases: Vec<CpuCase> = Vec::new();
    for m in scale {
        if !cases.contains(&m.case()) {
            cases.push(m.case());
        }
    }
    let mut rows = Vec::new();
    for case in cases {
        for (metric, unit, pick) in metrics {
            let of = |d: Daemon| {
                summarize(
                    &scale
                        .iter()
                        .filter(|m| m.case() == case && m.daemon == d)
                        .map(pick)
                        .collect::<Vec<_>>(),
                )
            };
            rows.push(Row {
                case: format!("all fail over, {}", case.label()),
                metric,
                unit,
                k: of(Daemon::Keepalived),
                x: of(Daemon::Xvrrpd),
                fails: (0, 0),
            });
        }
    }
    rows
}

fn flood_rows(flood: &[FloodResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut keys: Vec<(usize, u64)> = Vec::new();
    for f in flood {
        let k = (
            crate::flood::Junk::ALL
                .iter()
                .position(|j| *j == f.kind)
                .unwrap_or(0),
            f.rate,
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.sort_unstable();
    type FloodPick = fn(&FloodResult) -> f64;
    let metrics: [(&'static str, &'static str, FloodPick); 7] = [
        ("master CPU", "% core", |f| f.master_cpu),
        ("backup CPU", "% core", |f| f.backup_cpu),
        ("adverts sent / expected", "%", |f| {
            f.adverts_sent as f64 / f.adverts_expected * 100.0
        }),
        ("longest advert silence", "ms", |f| {
            f.longest_silence_ns as f64 / 1e6
        }),
        ("false failovers (backup → MASTER)", "count", |f| {
            f.false_failovers as f64
        }),
        ("notify FIFO lines", "count", |f| f.transitions as f64),
        ("daemon log written", "KiB", |f| f.log_bytes as f64 / 1024.0),
    ];
    for (ki, rate) in keys {
        let kind = crate::flood::Junk::ALL[ki];
        let of = |d: Daemon| {
            flood
                .iter()
                .find(|f| f.kind == kind && f.rate == rate && f.daemon == d)
        };
        let sent = of(Daemon::Xvrrpd)
            .or(of(Daemon::Keepalived))
            .map(|f| f.sent.frames as f64 / f.sent.secs)
            .unwrap_or(0.0);
        for (metric, unit, pick) in metrics {
            rows.push(Row {
                case: format!("flood {} {rate}/s (sent {sent:.0}/s)", kind.name()),
                metric,
                unit,
                k: one(of(Daemon::Keepalived).map(pick)),
                x: one(of(Daemon::Xvrrpd).map(pick)),
                fails: (0, 0),
            });
        }
    }
    rows
}

/// A target of the issue and how xvrrpd did.
pub struct Target {
    pub what: String,
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

fn xv_summary(c: &FailoverCase, f: Failure, pick: Pick) -> Option<Summary> {
    summarize(
        &c.xvrrpd
            .steps
            .iter()
            .filter(|(g, _)| *g == f)
            .filter_map(|(_, s)| pick(s))
            .collect::<Vec<_>>(),
    )
}

pub fn targets(r: &Results, load: bool) -> Vec<Target> {
    let mut t = Vec::new();
    let case = |cfg: Config| r.failover.iter().find(|c| c.config == cfg);
    // Detection error at advert_int 0.01.
    let c10 = case(Config::V3ms10);
    for f in Failure::ALL {
        detection_targets(c10, f, load, &mut t);
    }
    for cfg in Config::ALL {
        let c = case(cfg);
        outage_targets(cfg, c, &mut t);
        farewell_target(cfg, c, &mut t);
        restart_target(cfg, c, &mut t);
    }
    steady_targets(r, &mut t);
    flood_targets(r, &mut t);
    t
}

/// The detection error targets of one failure at advert_int 0.01: the
/// median and the max when idle, only the max (looser) under load.
fn detection_targets(c10: Option<&FailoverCase>, f: Failure, load: bool, t: &mut Vec<Target>) {
    let s = c10.and_then(|c| xv_summary(c, f, |s| Some(s.detection_error_ns as f64 / 1e3)));
    let abs_max = c10.and_then(|c| {
        c.xvrrpd
            .steps
            .iter()
            .filter(|(g, _)| *g == f)
            .map(|(_, s)| (s.detection_error_ns as f64 / 1e3).abs())
            .max_by(f64::total_cmp)
    });
    let failed = c10
        .map(|c| c.xvrrpd.failed.iter().filter(|(g, _)| *g == f).count())
        .unwrap_or(0);
    let fail_note = if failed > 0 {
        format!("; {failed} step(s) failed")
    } else {
        String::new()
    };
    if load {
        t.push(Target {
            what: format!(
                "detection error max ≤ 1 ms at advert_int 0.01 under load ({})",
                f.name()
            ),
            measured: match (s, abs_max) {
                (Some(s), Some(m)) => format!(
                    "max |error| {m:.1} µs (median {:.1} µs){fail_note}",
                    s.median
                ),
                _ => format!("not measured{fail_note}"),
            },
            met: abs_max.map(|m| m <= 1000.0 && failed == 0),
        });
    } else {
        t.push(Target {
            what: format!(
                "detection error median ≤ 50 µs at advert_int 0.01 ({})",
                f.name()
            ),
            measured: match s {
                Some(s) => format!("median {:.1} µs{fail_note}", s.median),
                None => format!("not measured{fail_note}"),
            },
            met: s.map(|s| s.median <= 50.0 && failed == 0),
        });
        t.push(Target {
            what: format!(
                "detection error max ≤ 200 µs at advert_int 0.01 ({})",
                f.name()
            ),
            measured: match abs_max {
                Some(m) => format!("max |error| {m:.1} µs{fail_note}"),
                None => format!("not measured{fail_note}"),
            },
            met: abs_max.map(|m| m <= 200.0 && failed == 0),
        });
    }
}

/// xvrrpd's dead master (its daemon killed, the host up) says its
/// farewell: in every trial the backup took over on a priority-0 advert.
fn farewell_target(cfg: Config, c: Option<&FailoverCase>, t: &mut Vec<Target>) {
    let steps: Vec<bool> = c
        .map(|c| {
            c.xvrrpd
                .steps
                .iter()
                .filter(|(f, _)| *f == Failure::Kill9)
                .map(|(_, s)| s.last_was_p0)
                .collect()
        })
        .unwrap_or_default();
    let said = steps.iter().filter(|p0| **p0).count();
    t.push(Target {
        what: format!(
            "daemon-kill9: the warden sends the dead master's priority-0 advert ({})",
            cfg.label()
        ),
        measured: format!("{said} of {} trials", steps.len()),
        met: (!steps.is_empty()).then_some(said == steps.len()),
    });
}

/// Outage after a crash ≤ MDI + 1 ms; after SIGTERM or a kill of the
/// daemon alone ≤ skew + 1 ms.
fn outage_targets(cfg: Config, c: Option<&FailoverCase>, t: &mut Vec<Target>) {
    for (f, bound_name) in [
        (Failure::Crash, "MDI"),
        (Failure::Kill9, "skew"),
        (Failure::Sigterm, "skew"),
    ] {
        let s = c.and_then(|c| xv_summary(c, f, |s| s.outage_ns.map(|v| v as f64 / 1e6)));
        let bound = c.map(|c| {
            (if f == Failure::Crash {
                c.mdi_lo_ns
            } else {
                c.skew_lo_ns
            }) as f64
                / 1e6
                + 1.0
        });
        t.push(Target {
            what: format!(
                "client outage after {} ≤ {bound_name} + 1 ms ({})",
                f.name(),
                cfg.label()
            ),
            measured: match (s, bound) {
                (Some(s), Some(b)) => format!(
                    "max {:.2} ms, bound {b:.2} ms (median {:.2} ms)",
                    s.max, s.median
                ),
                _ => "not measured".into(),
            },
            met: match (s, bound) {
                (Some(s), Some(b)) => Some(s.max <= b),
                _ => None,
            },
        });
    }
}

fn restart_target(cfg: Config, c: Option<&FailoverCase>, t: &mut Vec<Target>) {
    // Restart → first advert: the startup cost beyond the protocol's wait.
    let vals: Vec<f64> = c
        .map(|c| {
            c.xvrrpd
                .steps
                .iter()
                .filter_map(|(_, s)| s.restart_over_mdi_ns.map(|v| v as f64 / 1e6))
                .collect()
        })
        .unwrap_or_default();
    let s = summarize(&vals);
    t.push(Target {
        what: format!(
            "restart → first advert ≤ 10 ms beyond the restarted router's MDI ({})",
            cfg.label()
        ),
        measured: match s {
            Some(s) => format!("max {:.2} ms (median {:.2} ms)", s.max, s.median),
            None => "not measured".into(),
        },
        met: s.map(|s| s.max <= 10.0),
    });
}

/// A steady-state target comparing xvrrpd with keepalived on one metric
/// of one case (medians over the windows): `ok(xvrrpd, keepalived)` says
/// whether it is met (None: cannot tell without keepalived's figure).
fn steady_target(
    r: &Results,
    what: String,
    case: CpuCase,
    unit: &str,
    pick: CpuPick,
    ok: impl Fn(f64, Option<f64>) -> Option<bool>,
) -> Target {
    let med = |d: Daemon| cpu_summary(&r.cpu, case, d, pick).map(|s| s.median);
    let (k, x) = (med(Daemon::Keepalived), med(Daemon::Xvrrpd));
    let failed = r
        .cpu_errors
        .iter()
        .filter(|e| e.starts_with(&format!("xvrrpd steady {}:", case.label())))
        .count();
    let fail_note = if failed > 0 {
        format!("; {failed} xvrrpd window(s) failed")
    } else {
        String::new()
    };
    Target {
        what,
        measured: match (k, x) {
            (Some(k), Some(x)) => format!(
                "xvrrpd {x:.3} {unit}, keepalived {k:.3} {unit}, ratio {}{fail_note}",
                if k > 0.0 {
                    format!("{:.3}", x / k)
                } else {
                    "n/a".into()
                }
            ),
            (None, Some(x)) => format!("xvrrpd {x:.3} {unit}, keepalived not measured{fail_note}"),
            _ => format!("not measured{fail_note}"),
        },
        met: x.and_then(|x| ok(x, k)).map(|m| m && failed == 0),
    }
}

/// The steady-state targets: CPU against keepalived at 0.01, the
/// backup's wake-ups per Master_Down_Interval in every case measured, the
/// backup's CPU with 1000 instances at 1 s.
fn steady_targets(r: &Results, t: &mut Vec<Target>) {
    let c = |instances: usize, ms: u64| CpuCase {
        instances,
        advert_int: Duration::from_millis(ms),
    };
    for (case, factor) in [(c(1, 10), 0.5), (c(100, 10), 0.25)] {
        t.push(steady_target(
            r,
            format!(
                "steady CPU (master + backup) ≤ {factor} × keepalived, {}",
                case.label()
            ),
            case,
            "% core",
            |w| w.master_pct + w.backup_pct,
            move |x, k| k.map(|k| x <= factor * k),
        ));
    }
    t.push(steady_target(
        r,
        format!(
            "steady backup CPU ≤ 0.1 × keepalived's backup, {}",
            c(100, 10).label()
        ),
        c(100, 10),
        "% core",
        |w| w.backup_pct,
        |x, k| k.map(|k| x <= 0.1 * k),
    ));
    for case in cpu_cases(&r.cpu) {
        t.push(steady_target(
            r,
            format!(
                "backup wake-ups ≤ 1 per Master_Down_Interval ({:.4} s), {} (context switches of \
                 every thread of the daemon, housekeeping included)",
                backup_mdi_s(case),
                case.label()
            ),
            case,
            "per MDI",
            |w| w.backup_wakeups_per_s * backup_mdi_s(w.case()),
            |x, _| Some(x <= 1.0),
        ));
    }
    t.push(steady_target(
        r,
        format!(
            "steady backup CPU ≤ 1 % of a core, {}",
            c(1000, 1000).label()
        ),
        c(1000, 1000),
        "% core",
        |w| w.backup_pct,
        |x, _| Some(x <= 1.0),
    ));
}

/// Floods: no false failover, adverts kept up, CPU bounded; a failed
/// flood run counts against each.
fn flood_targets(r: &Results, t: &mut Vec<Target>) {
    let xf: Vec<&FloodResult> = r
        .flood
        .iter()
        .filter(|f| f.daemon == Daemon::Xvrrpd)
        .collect();
    let measured_floods = !xf.is_empty();
    let name = |f: &FloodResult| format!("{} {}/s", f.kind.name(), f.rate);
    let bad_ff: Vec<String> = xf
        .iter()
        .filter(|f| f.false_failovers > 0 || f.transitions > 0)
        .map(|f| {
            format!(
                "{} ({} takeovers, {} state changes)",
                name(f),
                f.false_failovers,
                f.transitions
            )
        })
        .collect();
    let flood_errs = r
        .flood_errors
        .iter()
        .filter(|e| e.starts_with("xvrrpd"))
        .count();
    let suffix = if flood_errs > 0 {
        format!("; {flood_errs} flood run(s) failed")
    } else {
        String::new()
    };
    t.push(Target {
        what: "zero false failovers under every flood".into(),
        measured: if !measured_floods {
            format!("not measured{suffix}")
        } else if bad_ff.is_empty() {
            format!("0 in {} floods{suffix}", xf.len())
        } else {
            format!("{}{suffix}", bad_ff.join(", "))
        },
        met: measured_floods.then_some(bad_ff.is_empty() && flood_errs == 0),
    });
    let worst_ads = xf
        .iter()
        .map(|f| (f.adverts_sent as f64 / f.adverts_expected * 100.0, name(f)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    t.push(Target {
        what: "≥ 99 % of adverts sent under every flood".into(),
        measured: match &worst_ads {
            Some((p, n)) => format!("lowest {p:.1} % ({n}){suffix}"),
            None => format!("not measured{suffix}"),
        },
        met: worst_ads.map(|(p, _)| p >= 99.0 && flood_errs == 0),
    });
    let worst_cpu = xf
        .iter()
        .map(|f| (f.master_cpu.max(f.backup_cpu), name(f)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    t.push(Target {
        what: "xvrrpd CPU ≤ 5 % of one core under every flood (master and backup)".into(),
        measured: match &worst_cpu {
            Some((p, n)) => format!("highest {p:.2} % ({n}){suffix}"),
            None => format!("not measured{suffix}"),
        },
        met: worst_cpu.map(|(p, _)| p <= 5.0 && flood_errs == 0),
    });
}

/// The markdown report.
pub fn markdown(r: &Results, header: &[(String, String)], targets: &[Target]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Failover benchmark: xvrrpd vs keepalived\n");
    for (k, v) in header {
        let _ = writeln!(s, "- **{k}**: {v}");
    }
    let _ = writeln!(
        s,
        "\nCells are min / median / max over the trials (one value when there is one sample). \
         `ratio` = xvrrpd median / keepalived median. `fails` = steps that did not complete \
         (keepalived/xvrrpd), listed below the table.\n"
    );
    let _ = writeln!(
        s,
        "| case | metric | unit | keepalived | xvrrpd | ratio | fails |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for c in &r.failover {
        rows.extend(failover_rows(c));
    }
    rows.extend(cpu_rows(&r.cpu));
    rows.extend(scale_rows(&r.scale));
    rows.extend(flood_rows(&r.flood));
    for row in &rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {}/{} |",
            row.case,
            row.metric,
            row.unit,
            fmt_summary(&row.k),
            fmt_summary(&row.x),
            ratio(&row.k, &row.x),
            row.fails.0,
            row.fails.1
        );
    }
    let _ = writeln!(s, "\n## Targets (xvrrpd)\n");
    for t in targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(s, "- [{mark}] {}: {}", t.what, t.measured);
    }
    let mut errors = Vec::new();
    for c in &r.failover {
        for (d, res) in [
            (Daemon::Keepalived, &c.keepalived),
            (Daemon::Xvrrpd, &c.xvrrpd),
        ] {
            for (f, e) in &res.failed {
                errors.push(format!(
                    "{} {d} {}: {}",
                    c.config.label(),
                    f.name(),
                    first_line(e)
                ));
            }
        }
    }
    errors.extend(r.cpu_errors.iter().map(|e| first_line(e)));
    errors.extend(r.scale_errors.iter().map(|e| first_line(e)));
    errors.extend(r.flood_errors.iter().map(|e| first_line(e)));
    if !errors.is_empty() {
        let _ = writeln!(s, "\n## Steps that failed\n");
        for e in errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}

fn first_line(e: &str) -> String {
    let l = e.lines().next().unwrap_or("");
    if l.len() > 300 {
        format!("{}…", &l[..l.floor_char_boundary(300)])
    } else {
        l.to_string()
    }
}

/// Everything raw, as JSON.
pub fn json(r: &Results, header: &[(String, String)], targets: &[Target]) -> Value {
    let step = |f: &Failure, s: &crate::failures::StepResult| {
        json!({
            "failure": f.name(),
            "phase": s.phase,
            "gap_ns": s.gap_ns,
            "theory_ns": s.theory_ns,
            "detection_error_ns": s.detection_error_ns,
            "last_advert_priority_0": s.last_was_p0,
            "outage_ns": s.outage_ns,
            "garp_after_first_advert_ns": s.garp_after_ns,
            "restart_to_first_advert_ns": s.restart_to_advert_ns,
            "restart_over_mdi_ns": s.restart_over_mdi_ns,
            "preemption_gap_ns": s.preempt_gap_ns,
            "restart_to_up_ns": s.restart_up_ns,
            "host_stall_ns": s.host_stall_ns,
            "xvrrpd_restart_to_backup_ns": s.restart_backup_ns,
            "xvrrpd_takeover": s.xvrrpd_takeover.map(|t| json!({
                "rx_stamp_after_wire_ns": t.rx_stamp_after_wire,
                "deadline_error_ns": t.deadline_error,
                "timer_late_ns": t.timer_late,
                "fired_to_wire_ns": t.fired_to_wire,
                "fired_to_vips_ns": t.fired_to_vips,
                "fired_to_garp_ns": t.fired_to_garp,
            })),
        })
    };
    let case = |res: &CaseResults| {
        json!({
            "steps": res.steps.iter().map(|(f, s)| step(f, s)).collect::<Vec<_>>(),
            "failed": res.failed.iter().map(|(f, e)| json!({"failure": f.name(), "error": e})).collect::<Vec<_>>(),
        })
    };
    json!({
        "run": header.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "failover": r.failover.iter().map(|c| json!({
            "config": c.config.name(),
            "label": c.config.label(),
            "trials": c.trials,
            "master_down_interval_backup_ns": c.mdi_lo_ns,
            "master_down_interval_master_ns": c.mdi_hi_ns,
            "skew_backup_ns": c.skew_lo_ns,
            "keepalived": case(&c.keepalived),
            "xvrrpd": case(&c.xvrrpd),
        })).collect::<Vec<_>>(),
        "steady_cpu": r.cpu.iter().map(|w| json!({
            "daemon": w.daemon.name(),
            "case": w.case().name(),
            "instances": w.instances,
            "advert_int_s": w.advert_int.as_secs_f64(),
            "interfaces": if xvrrpd_tests::scale::vlans_needed(w.instances) == 0 {
                "eth0".to_string()
            } else {
                format!(
                    "{} VLANs {}…",
                    xvrrpd_tests::scale::vlans_needed(w.instances),
                    xvrrpd_tests::scale::vlan_ifname(0)
                )
            },
            "master_pct_core": w.master_pct,
            "backup_pct_core": w.backup_pct,
            "master_wakeups_per_s": w.master_wakeups_per_s,
            "backup_wakeups_per_s": w.backup_wakeups_per_s,
            "master_wakeups_per_s_by_thread": w.master_wakeups_by_thread.iter().map(|(n, v)| json!({"thread": n, "per_s": v})).collect::<Vec<_>>(),
            "backup_wakeups_per_s_by_thread": w.backup_wakeups_by_thread.iter().map(|(n, v)| json!({"thread": n, "per_s": v})).collect::<Vec<_>>(),
            "backup_master_down_interval_s": backup_mdi_s(w.case()),
            "backup_wakeups_per_master_down_interval": w.backup_wakeups_per_s * backup_mdi_s(w.case()),
            "master_tick_pct_core": w.master_tick_pct,
            "backup_tick_pct_core": w.backup_tick_pct,
            "master_sys_pct_core": w.master_sys_pct,
            "backup_sys_pct_core": w.backup_sys_pct,
            "window_s": w.secs,
            "fifo_lines": w.transitions,
            "backup_took_over": w.takeovers,
            "fifo": w.lines.iter().map(|(r, ms, l)| json!({"router": r, "ms": ms, "line": l})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "steady_cpu_errors": r.cpu_errors,
        "mass_failover": r.scale.iter().map(|m| json!({
            "daemon": m.daemon.name(),
            "instances": m.instances,
            "advert_int_s": m.advert_int.as_secs_f64(),
            "backup_master_down_interval_ns": m.mdi_ns,
            "first_vip_ns": m.first_vip_ns,
            "all_vips_ns": m.all_vips_ns,
            "takeover_cpu_ms": m.takeover_cpu_ms,
            "back_ns": m.back_ns,
            "not_moved_exactly_once": m.not_moved_once,
        })).collect::<Vec<_>>(),
        "mass_failover_errors": r.scale_errors,
        "flood": r.flood.iter().map(|f| json!({
            "daemon": f.daemon.name(),
            "kind": f.kind.name(),
            "rate_pps": f.rate,
            "frames_sent": f.sent.frames,
            "send_errors": f.sent.errors,
            "send_secs": f.sent.secs,
            "master_pct_core": f.master_cpu,
            "backup_pct_core": f.backup_cpu,
            "adverts_sent": f.adverts_sent,
            "adverts_expected": f.adverts_expected,
            "longest_silence_ns": f.longest_silence_ns,
            "false_failovers": f.false_failovers,
            "backup_adverts": f.backup_adverts,
            "fifo_lines": f.transitions,
            "fifo": f.lines.iter().map(|(r, ms, l)| json!({"router": r, "ms": ms, "line": l})).collect::<Vec<_>>(),
            "log_bytes": f.log_bytes,
        })).collect::<Vec<_>>(),
        "flood_errors": r.flood_errors,
        "targets": targets.iter().map(|t| json!({
            "target": t.what,
            "measured": t.measured,
            "met": t.met,
        })).collect::<Vec<_>>(),
    })
}

/// The pictures beside the tables: per-trial detection error and client
/// outage of each configuration, and CPU against the instance count, for
/// both daemons. Returns the files written.
pub fn plots(r: &Results, stem: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use xvrrpd_tests::plot::{Chart, Series, Style, write_svg};
    let dir = xvrrpd_tests::bench::out_dir();
    std::fs::create_dir_all(&dir)?;
    let mut written = Vec::new();
    for case in &r.failover {
        for (what, unit, pick) in [
            (
                "detection error",
                "detection error, ms",
                (|s: &crate::failures::StepResult| Some(s.detection_error_ns as f64 / 1e6))
                    as fn(&crate::failures::StepResult) -> Option<f64>,
            ),
            (
                "client outage",
                "client outage, ms",
                |s: &crate::failures::StepResult| s.outage_ns.map(|n| n as f64 / 1e6),
            ),
        ] {
            let series: Vec<Series> = [Daemon::Keepalived, Daemon::Xvrrpd]
                .into_iter()
                .flat_map(|d| Failure::ALL.into_iter().map(move |f| (d, f)))
                .map(|(d, f)| Series {
                    name: format!("{d} {}", f.name()),
                    points: case
                        .of(d)
                        .steps
                        .iter()
                        .filter(|(ff, _)| *ff == f)
                        .enumerate()
                        .filter_map(|(n, (_, s))| Some(((n + 1) as f64, pick(s)?)))
                        .collect(),
                    xvrrpd: d == Daemon::Xvrrpd,
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            if series.is_empty() {
                continue;
            }
            let path = dir.join(format!(
                "{stem}-{}-{}.svg",
                case.config.name(),
                what.replace(' ', "-")
            ));
            let title = format!("{}: {what} per trial", case.config.label());
            write_svg(
                &path,
                &Chart {
                    title: &title,
                    x_label: "trial",
                    y_label: unit,
                    style: Style::Points,
                    log_x: false,
                },
                &series,
            )?;
            written.push(path);
        }
    }
    // CPU (master + backup) against the instance count, per interval.
    let mut cpu: Vec<Series> = Vec::new();
    for w in &r.cpu {
        let name = format!("{} advert_int {} ms", w.daemon, w.advert_int.as_millis());
        let point = (w.instances as f64, w.master_pct + w.backup_pct);
        match cpu.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => cpu.push(Series {
                name,
                points: vec![point],
                xvrrpd: w.daemon == Daemon::Xvrrpd,
            }),
        }
    }
    for s in &mut cpu {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    if !cpu.is_empty() {
        let path = dir.join(format!("{stem}-cpu.svg"));
        write_svg(
            &path,
            &Chart {
                title: "steady CPU of master + backup against the instance count",
                x_label: "instances (log scale)",
                y_label: "% of one core (run time)",
                style: Style::Lines,
                log_x: true,
            },
            &cpu,
        )?;
        written.push(path);
    }
    Ok(written)
}
