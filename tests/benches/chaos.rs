//! `cargo xtask bench chaos`: xvrrpd and keepalived 2.2.7 under the same
//! seeded sequence of bounded faults, one daemon after the other.
//!
//! Three routers of each daemon on one bridge (priorities 150/100/50, only
//! one trio runs at a time), VRRPv3 with 50 ms adverts, a client pinging
//! the VIP every millisecond, tcpdump on the bridge with nanosecond
//! timestamps (VRRP and ARP from the routers), an address watch on every
//! router. For `--seconds` (60; 15 with `--quick`) faults are drawn from
//! the seed and undone after a random delay: kill -9 of the daemon's
//! process group, SIGTERM, the router's bridge port down, bursty loss on
//! one router's link, a partition of the routers from each other (the
//! client still reaches all), SIGHUP. The invariants are then computed
//! from the capture, the probe log and the address tables, sampled every
//! millisecond; `docs/benchmarks.md` defines each figure.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    process::{Command, ExitCode},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use xvrrpd::sim::Rng;
use xvrrpd_tests::{
    addr_watch::Held,
    analysis::master_down_ns,
    bench,
    clock::Stamp,
    kconf::{Daemon, Instance},
    lab::{run as run_cmd, wait_until},
    pcap::{Mac, WireEvent, WireKind},
    prober::{ProbeConfig, ProbeLog, Prober},
    router::{KEEPALIVED, LinkSide, keepalived_binary},
    scenario::Cluster,
    vrrp_lab::xvrrpd_binary,
    wire::BridgeCapture,
};

const USAGE: &str = "\
usage: cargo xtask bench chaos [-- OPTIONS]

  --seconds S   seconds of faults per daemon and seed (default 60; 15 with --quick)
  --quick       15 s of faults per daemon and seed
  --seeds LIST  comma-separated seeds (default 1,2,3)
  --help        this text

Needs root. Writes target/bench/chaos[-quick].md and .json. The xvrrpd binary is
$XVRRPD_BIN (xtask builds and sets the release binary) or target/debug/xvrrpd;
keepalived is /usr/sbin/keepalived.";

const PRIOS: [u8; 3] = [150, 100, 50];
const ADVERT: Duration = Duration::from_millis(50);
/// After the last fault is undone: time left for the highest priority to
/// take the VIP back, then the window in which the right master is checked.
const SETTLE: Duration = Duration::from_secs(3);
const CHECK: Duration = Duration::from_secs(1);

struct Opts {
    seconds: u64,
    quick: bool,
    seeds: Vec<u64>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Opts>> {
    let mut o = Opts {
        seconds: 60,
        quick: false,
        seeds: vec![1, 2, 3],
    };
    let mut seconds = None;
    let mut it = args.peekable();
    while let Some(a) = it.next() {
        let (k, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut val = |name: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match k.as_str() {
            "--help" | "-h" => return Ok(None),
            "--quick" => o.quick = true,
            "--seconds" => seconds = Some(val("--seconds")?.parse::<u64>()?),
            "--seeds" => {
                o.seeds = val("--seeds")?
                    .split(',')
                    .map(|s| s.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .context("--seeds: comma-separated integers")?;
            }
            // `cargo bench` passes --bench to harness-less benchmarks.
            "--bench" => {}
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    o.seconds = seconds.unwrap_or(if o.quick { 15 } else { 60 });
    if o.seconds == 0 || o.seconds > 3600 {
        bail!("--seconds must be in 1..=3600");
    }
    if o.seeds.is_empty() || o.seeds.len() > 20 {
        bail!("--seeds: 1 to 20 seeds");
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    bench::main("chaos", USAGE, || parse(std::env::args().skip(1)), run)
}

// ---------------------------------------------------------------- faults

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Kill9,
    Term,
    LinkDown,
    Loss,
    Partition,
    Hup,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Kill9,
        Kind::Term,
        Kind::LinkDown,
        Kind::Loss,
        Kind::Partition,
        Kind::Hup,
    ];
    fn name(self) -> &'static str {
        match self {
            Kind::Kill9 => "kill-9",
            Kind::Term => "sigterm",
            Kind::LinkDown => "link-down",
            Kind::Loss => "loss",
            Kind::Partition => "partition",
            Kind::Hup => "sighup",
        }
    }
}

/// One fault of the schedule, drawn from the seed before either daemon
/// runs: both daemons get exactly the same sequence.
#[derive(Clone, Debug)]
struct Planned {
    kind: Kind,
    /// Index of the router (0: priority 150, 1: 100, 2: 50).
    router: usize,
    hold: Duration,
    gap: Duration,
    /// For loss: (blocked, forwarding) bursts, in ms.
    bursts: Vec<(u64, u64)>,
}

fn schedule(seed: u64, seconds: u64) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut total = Duration::ZERO;
    let budget = Duration::from_secs(seconds);
    // Bounded: at most 10 faults a second of budget.
    while total < budget && out.len() < (seconds as usize) * 10 {
        let kind = Kind::ALL[rng.below(Kind::ALL.len() as u64) as usize];
        let router = rng.below(3) as usize;
        let hold = Duration::from_millis(200 + rng.below(1800));
        let gap = Duration::from_millis(100 + rng.below(1400));
        let mut bursts = Vec::new();
        if kind == Kind::Loss {
            let mut t = 0;
            while t < hold.as_millis() as u64 && bursts.len() < 200 {
                let b = (10 + rng.below(70), 20 + rng.below(180));
                t += b.0 + b.1;
                bursts.push(b);
            }
        }
        total += hold + gap;
        out.push(Planned {
            kind,
            router,
            hold,
            gap,
            bursts,
        });
    }
    out
}

/// A fault as it happened (CLOCK_MONOTONIC).
#[derive(Clone, Debug)]
struct Done {
    kind: Kind,
    router: usize,
    start: u64,
    end: u64,
}

// ---------------------------------------------------------------- the lab

fn names(d: Daemon) -> [&'static str; 3] {
    match d {
        Daemon::Keepalived => ["k1", "k2", "k3"],
        Daemon::Xvrrpd => ["x1", "x2", "x3"],
    }
}

fn lab() -> Result<Cluster> {
    let mut inst = Instance::new("VI_1", 51, &["192.0.2.100/24"]);
    inst.version = 3;
    inst.advert_int = ADVERT;
    let specs = [
        ("k1", Daemon::Keepalived, PRIOS[0]),
        ("k2", Daemon::Keepalived, PRIOS[1]),
        ("k3", Daemon::Keepalived, PRIOS[2]),
        ("x1", Daemon::Xvrrpd, PRIOS[0]),
        ("x2", Daemon::Xvrrpd, PRIOS[1]),
        ("x3", Daemon::Xvrrpd, PRIOS[2]),
    ];
    let mut c = Cluster::new("chaos", inst, &specs, false, |_, _| Ok(()))?;
    let macs: Vec<Mac> = c.routers.iter().map(|r| r.mac).collect();
    let path = c.lab.dir.join("chaos.pcap");
    c.capture = BridgeCapture::start(&c.lab.net, &path, &bench::router_filter(&macs))?;
    Ok(c)
}

fn switch_port(c: &Cluster, name: &str) -> Result<String> {
    c.lab
        .net
        .switch_port(&c.router(name).host)
        .with_context(|| format!("no bridge port for {name}"))
}

/// `bridge link set dev <name's port> <setting...>` in the switch.
fn set_port(c: &Cluster, name: &str, setting: &[&str]) -> Result<()> {
    let p = switch_port(c, name)?;
    let mut args = vec!["bridge", "link", "set", "dev", &p];
    args.extend_from_slice(setting);
    run_cmd(&mut c.lab.net.switch_cmd(&args))?;
    Ok(())
}

fn isolate(c: &Cluster, d: Daemon, on: bool) -> Result<()> {
    for n in names(d) {
        set_port(c, n, &["isolated", if on { "on" } else { "off" }])?;
    }
    Ok(())
}

/// STP port state of a router's bridge port: 4 blocking (frames dropped
/// both ways, carrier stays up), 3 forwarding.
fn port_state(c: &Cluster, name: &str, blocking: bool) -> Result<()> {
    set_port(c, name, &["state", if blocking { "4" } else { "3" }])
}

/// Puts a trio's hosts back: daemons stopped, links up, ports forwarding
/// and not isolated, no VIP left.
fn reset(c: &mut Cluster, d: Daemon) {
    let vip = c.vip;
    for n in names(d) {
        let r = c.router_mut(n);
        if r.is_running() && r.sigterm().is_err() {
            r.kill_quietly();
        }
        r.kill_quietly();
    }
    let _ = isolate(c, d, false);
    for n in names(d) {
        let _ = port_state(c, n, false);
        let r = c.router(n);
        let _ = r.link_up(LinkSide::Switch);
        let _ = r.link_up(LinkSide::Host);
        if r.has_vip(vip) {
            let _ = r
                .host
                .exec(&["ip", "addr", "del", "192.0.2.100/24", "dev", &r.host.ifname]);
        }
    }
}

/// What one daemon's run on one seed recorded.
struct Recorded {
    t0: Stamp,
    faults_end: u64,
    end: u64,
    done: Vec<Done>,
    held: [Vec<Held>; 3],
    /// Spans (CLOCK_MONOTONIC) in which a router's daemon did not run.
    dead: [Vec<(u64, u64)>; 3],
    macs: [Mac; 3],
    probes: ProbeLog,
    wire: Vec<WireEvent>,
    unexpected: Vec<String>,
    sigterm_status: Vec<String>,
}

/// Applies fault `p` to router `name`, holds it, undoes it. For a killed or
/// stopped daemon, returns when it was started again.
fn inject(
    c: &mut Cluster,
    d: Daemon,
    name: &str,
    p: &Planned,
    sigterm_status: &mut Vec<String>,
) -> Result<Option<u64>> {
    match p.kind {
        Kind::Kill9 | Kind::Term => {
            let r = c.router_mut(name);
            if p.kind == Kind::Kill9 {
                r.kill9()?;
            } else {
                let (_, st) = r.sigterm()?;
                if !st.success() {
                    sigterm_status.push(format!("{name}: {st}"));
                }
            }
            thread::sleep(p.hold);
            let back = c.router_mut(name).start()?;
            return Ok(Some(back.mono_ns));
        }
        Kind::LinkDown => {
            c.router(name).link_down(LinkSide::Switch)?;
            thread::sleep(p.hold);
            c.router(name).link_up(LinkSide::Switch)?;
        }
        Kind::Loss => {
            let end = Instant::now() + p.hold;
            for &(block, pass) in &p.bursts {
                if Instant::now() >= end {
                    break;
                }
                port_state(c, name, true)?;
                thread::sleep(Duration::from_millis(block));
                port_state(c, name, false)?;
                thread::sleep(Duration::from_millis(pass));
            }
        }
        Kind::Partition => {
            isolate(c, d, true)?;
            thread::sleep(p.hold);
            isolate(c, d, false)?;
        }
        Kind::Hup => {
            c.router_mut(name).sighup()?;
            thread::sleep(p.hold);
        }
    }
    Ok(None)
}

/// Runs `plan` against daemon `d`'s trio.
fn run_daemon(
    c: &mut Cluster,
    d: Daemon,
    plan: &[Planned],
    seconds: u64,
    progress: &dyn Fn(&str),
) -> Result<Recorded> {
    let n = names(d);
    reset(c, d);
    for name in n {
        c.router_mut(name).start()?;
    }
    let vip = c.vip;
    if !wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
        c.router(n[0]).has_vip(vip) && !c.router(n[1]).has_vip(vip) && !c.router(n[2]).has_vip(vip)
    }) {
        bail!("{d}: {} did not become the sole owner within 10 s", n[0]);
    }
    // Let the client learn the VIP.
    let cfg = ProbeConfig {
        interval: Duration::from_millis(1),
        max_duration: Duration::from_secs(seconds * 3 + 90),
        max_count: (seconds * 3 + 90) * 1000,
    };
    let client = c.client.clone();
    let prober = bench::with_rt_threads(1, move || Prober::start(&client, vip, cfg))?;
    thread::sleep(Duration::from_millis(500));
    let t0 = Stamp::now();
    let wall = Instant::now();
    let hard_end = Duration::from_secs(seconds * 3 + 60);
    let mut done = Vec::new();
    let mut dead: [Vec<(u64, u64)>; 3] = Default::default();
    let mut unexpected = Vec::new();
    let mut sigterm_status = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        if wall.elapsed() > hard_end {
            progress(&format!(
                "  time bound reached: {} of {} faults run",
                i,
                plan.len()
            ));
            break;
        }
        let name = n[p.router];
        let start = Stamp::now().mono_ns;
        if let Some(back) = inject(c, d, name, p, &mut sigterm_status)? {
            dead[p.router].push((start, back));
        }
        let end = Stamp::now().mono_ns;
        done.push(Done {
            kind: p.kind,
            router: p.router,
            start,
            end,
        });
        // A daemon that exited without being told to: note it, start it.
        for (j, other) in n.iter().enumerate() {
            let r = c.router_mut(other);
            if !r.is_running() {
                let at = Stamp::now().mono_ns;
                let tail = r.log_tail(5);
                unexpected.push(format!(
                    "{other} after fault {} ({}): not running; log tail:\n{tail}",
                    i + 1,
                    p.kind.name()
                ));
                progress(&format!("  {other} EXITED on its own; restarting it"));
                r.kill_quietly();
                let back = r.start()?;
                dead[j].push((at, back.mono_ns));
            }
        }
        thread::sleep(p.gap);
    }
    let faults_end = Stamp::now().mono_ns;
    thread::sleep(SETTLE + CHECK);
    let end = Stamp::now().mono_ns;
    let probes = prober.stop()?;
    let wire = c.wire()?;
    let held = [0, 1, 2].map(|i| c.router(n[i]).watch.held(vip));
    for name in n {
        c.router(name).watch.check_complete()?;
    }
    let macs = [0, 1, 2].map(|i| c.router(n[i]).mac);
    reset(c, d);
    Ok(Recorded {
        t0,
        faults_end,
        end,
        done,
        held,
        dead,
        macs,
        probes,
        wire,
        unexpected,
        sigterm_status,
    })
}

// ---------------------------------------------------------------- figures

#[derive(Clone, Debug, Default)]
struct Figures {
    faults: usize,
    /// ms with two or more hosts holding the VIP, by the fault active then
    /// (or whose grace was running; "none" otherwise).
    dual_by_cause: BTreeMap<String, f64>,
    /// ms of the client's entry on a non-owner, by cause (as above).
    non_owner_by_cause: BTreeMap<String, f64>,
    /// Lost probes by the cause in force when they were sent.
    lost_by_cause: BTreeMap<String, f64>,
    /// ms of dual ownership outside every fault's start/undo grace, partitions
    /// left out (a partitioned backup is right to take over).
    dual_outside_grace: f64,
    client_non_owner: f64,
    probes_sent: u64,
    lost_probes: u64,
    dead_holds: f64,
    dead_claims_after_takeover: f64,
    dead_answered_probes: u64,
    no_owner_beyond_bound: f64,
    wrong_master: f64,
    final_owners: String,
    unexpected_exits: usize,
    /// Per fault, in order: (kind, priority of its router, ms from its start
    /// to its undo, probes sent in that time + grace and lost).
    per_fault: Vec<(&'static str, u8, f64, u64)>,
    sigterm_nonzero: usize,
}

fn in_spans(spans: &[Held], t: u64) -> bool {
    spans
        .iter()
        .any(|h| h.from <= t && h.to.is_none_or(|to| t < to))
}

/// The client's ARP entry for the VIP over time (mono ns, MAC): each ARP
/// frame a router sent with the VIP as sender (GARP or reply), and each
/// echo reply (its source MAC is the entry the probe was sent to).
fn client_arp_entries(r: &Recorded, vip4: std::net::Ipv4Addr) -> Vec<(u64, Mac)> {
    let to_mono = |rt: u64| r.t0.rt_to_mono(rt);
    let mut arp: Vec<(u64, Mac)> = r
        .wire
        .iter()
        .filter_map(|e| match &e.kind {
            WireKind::Garp { ip, sender_mac, .. } if *ip == vip4 => {
                Some((to_mono(e.t_ns), *sender_mac))
            }
            WireKind::Arp {
                op: 2,
                sender_ip,
                sender_mac,
                ..
            } if *sender_ip == vip4 => Some((to_mono(e.t_ns), *sender_mac)),
            _ => None,
        })
        .collect();
    arp.extend(r.probes.replies.iter().map(|p| (p.at.mono_ns, p.src_mac)));
    arp.sort_by_key(|a| a.0);
    arp
}

/// Who holds the VIP at the end ("prio 150", "prio 150+prio 100", "none").
fn final_owners(r: &Recorded) -> String {
    let last: Vec<usize> = (0..3)
        .filter(|&i| in_spans(&r.held[i], r.end.saturating_sub(1)))
        .collect();
    if last.is_empty() {
        "none".into()
    } else {
        last.iter()
            .map(|i| format!("prio {}", PRIOS[*i]))
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Probes sent and lost (by cause and per fault), and those a dead
/// daemon's host answered: every probe from t0 until 50 ms before the end.
fn count_probes(
    r: &Recorded,
    grace: u64,
    cause_at: &dyn Fn(u64) -> &'static str,
    dead: &dyn Fn(usize, u64) -> bool,
    f: &mut Figures,
) {
    let answered: std::collections::HashSet<u64> = r.probes.replies.iter().map(|p| p.seq).collect();
    let window_end = r.t0.mono_to_rt(r.end.saturating_sub(50_000_000));
    for (seq, at) in &r.probes.sent {
        if at.rt_ns >= r.t0.rt_ns && at.rt_ns <= window_end {
            f.probes_sent += 1;
            if !answered.contains(seq) {
                f.lost_probes += 1;
                *f.lost_by_cause
                    .entry(cause_at(at.mono_ns).to_string())
                    .or_default() += 1.0;
            }
        }
    }
    f.per_fault = r
        .done
        .iter()
        .map(|d| {
            let (from, to) = (r.t0.mono_to_rt(d.start), r.t0.mono_to_rt(d.end + grace));
            let lost = r
                .probes
                .sent
                .iter()
                .filter(|(seq, at)| {
                    at.rt_ns >= from && at.rt_ns < to.min(window_end) && !answered.contains(seq)
                })
                .count() as u64;
            (
                d.kind.name(),
                PRIOS[d.router],
                (d.end - d.start) as f64 / 1e6,
                lost,
            )
        })
        .collect();
    f.dead_answered_probes = r
        .probes
        .replies
        .iter()
        .filter(|p| {
            r.macs
                .iter()
                .position(|m| *m == p.src_mac)
                .is_some_and(|i| dead(i, p.at.mono_ns))
        })
        .count() as u64;
}

fn analyse(r: &Recorded, vip: IpAddr, grace: u64, bound: u64) -> Figures {
    let step = 1_000_000u64;
    let IpAddr::V4(vip4) = vip else {
        unreachable!("the chaos lab's VIP is IPv4")
    };
    let arp = client_arp_entries(r, vip4);
    let dead = |i: usize, t: u64| r.dead[i].iter().any(|&(a, b)| a <= t && t < b);
    let mut f = Figures {
        faults: r.done.len(),
        unexpected_exits: r.unexpected.len(),
        sigterm_nonzero: r.sigterm_status.len(),
        ..Default::default()
    };
    let cause_at = |t: u64| -> &'static str {
        r.done
            .iter()
            .rev()
            .find(|d| d.start <= t && t < d.end + grace)
            .map_or("none", |d| d.kind.name())
    };
    let mut ai = 0;
    let mut entry: Option<Mac> = None;
    let mut no_owner_run = 0u64;
    let ms = step as f64 / 1e6;
    let mut t = r.t0.mono_ns;
    let flush_run = |run: &mut u64, f: &mut Figures| {
        if *run > bound {
            f.no_owner_beyond_bound += (*run - bound) as f64 / 1e6;
        }
        *run = 0;
    };
    while t < r.end {
        while ai < arp.len() && arp[ai].0 <= t {
            entry = Some(arp[ai].1);
            ai += 1;
        }
        let holds: Vec<bool> = (0..3).map(|i| in_spans(&r.held[i], t)).collect();
        let holders = holds.iter().filter(|h| **h).count();
        let live_holders: Vec<usize> = (0..3).filter(|&i| holds[i] && !dead(i, t)).collect();
        // The fault in force (or in its grace after the undo).
        let cause = cause_at(t);
        let in_grace = r
            .done
            .iter()
            .any(|d| (d.start <= t && t < d.start + grace) || (d.end <= t && t < d.end + grace));
        if holders >= 2 {
            *f.dual_by_cause.entry(cause.to_string()).or_default() += ms;
            let partition = r
                .done
                .iter()
                .any(|d| d.kind == Kind::Partition && d.start <= t && t < d.end);
            if !in_grace && !partition {
                f.dual_outside_grace += ms;
            }
        }
        // On a non-owner: a router without the VIP, or a dead daemon's
        // host while a live router holds it (the client is stranded there).
        if let Some(m) = entry
            && let Some(i) = r.macs.iter().position(|x| *x == m)
            && (!holds[i] || (dead(i, t) && live_holders.iter().any(|&j| j != i)))
        {
            f.client_non_owner += ms;
            *f.non_owner_by_cause.entry(cause.to_string()).or_default() += ms;
        }
        for i in 0..3 {
            if dead(i, t) && holds[i] {
                f.dead_holds += ms;
                if (0..3).any(|j| j != i && holds[j] && !dead(j, t)) {
                    f.dead_claims_after_takeover += ms;
                }
            }
        }
        if live_holders.is_empty() {
            no_owner_run += step;
        } else {
            flush_run(&mut no_owner_run, &mut f);
        }
        if t >= r.faults_end + SETTLE.as_nanos() as u64 && live_holders != [0] {
            f.wrong_master += ms;
        }
        t += step;
    }
    flush_run(&mut no_owner_run, &mut f);
    f.final_owners = final_owners(r);
    count_probes(r, grace, &cause_at, &dead, &mut f);
    f
}

// ---------------------------------------------------------------- report

/// (label, value, whether it is a "lower is better" figure with a target).
fn rows(f: &Figures) -> Vec<(&'static str, f64)> {
    vec![
        ("faults injected", f.faults as f64),
        ("dual ownership outside grace (ms)", f.dual_outside_grace),
        ("client ARP entry on a non-owner (ms)", f.client_non_owner),
        ("probes sent", f.probes_sent as f64),
        ("lost probes", f.lost_probes as f64),
        ("dead daemon's host holds the VIP (ms)", f.dead_holds),
        (
            "dead daemon's host holds it after another took over (ms)",
            f.dead_claims_after_takeover,
        ),
        (
            "probes answered by a dead daemon's host",
            f.dead_answered_probes as f64,
        ),
        ("no owner beyond the bound (ms)", f.no_owner_beyond_bound),
        ("wrong master after the faults (ms)", f.wrong_master),
        (
            "daemon exits the benchmark did not cause",
            f.unexpected_exits as f64,
        ),
        (
            "SIGTERM exits with a non-zero status",
            f.sigterm_nonzero as f64,
        ),
    ]
}

fn ratio(x: f64, k: f64) -> String {
    if k == 0.0 {
        if x == 0.0 { "–".into() } else { "∞".into() }
    } else {
        format!("{:.2}", x / k)
    }
}

fn sum(figs: &[Figures]) -> Figures {
    let mut s = Figures::default();
    for f in figs {
        s.faults += f.faults;
        for (into, from) in [
            (&mut s.dual_by_cause, &f.dual_by_cause),
            (&mut s.non_owner_by_cause, &f.non_owner_by_cause),
            (&mut s.lost_by_cause, &f.lost_by_cause),
        ] {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        }
        s.dual_outside_grace += f.dual_outside_grace;
        s.client_non_owner += f.client_non_owner;
        s.probes_sent += f.probes_sent;
        s.lost_probes += f.lost_probes;
        s.dead_holds += f.dead_holds;
        s.dead_claims_after_takeover += f.dead_claims_after_takeover;
        s.dead_answered_probes += f.dead_answered_probes;
        s.no_owner_beyond_bound += f.no_owner_beyond_bound;
        s.wrong_master += f.wrong_master;
        s.unexpected_exits += f.unexpected_exits;
        s.sigterm_nonzero += f.sigterm_nonzero;
    }
    s.final_owners = figs
        .iter()
        .map(|f| f.final_owners.clone())
        .collect::<Vec<_>>()
        .join(", ");
    s
}

fn table(title: &str, k: &Figures, x: &Figures) -> String {
    let mut md =
        format!("### {title}\n\n| figure | keepalived | xvrrpd | ratio |\n|---|---:|---:|---:|\n");
    for ((label, kv), (_, xv)) in rows(k).into_iter().zip(rows(x)) {
        md.push_str(&format!(
            "| {label} | {kv:.1} | {xv:.1} | {} |\n",
            ratio(xv, kv)
        ));
    }
    md.push_str(&format!(
        "| VIP holder(s) at the end | {} | {} | |\n\n",
        k.final_owners, x.final_owners
    ));
    md.push_str(
        "By cause (the fault in force, or in its grace after the undo; grace included):\n\n\
         | cause | dual ms keepalived | dual ms xvrrpd | non-owner ms keepalived | non-owner ms xvrrpd \
         | ratio | lost keepalived | lost xvrrpd | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let causes: std::collections::BTreeSet<&String> = [k, x]
        .iter()
        .flat_map(|f| {
            f.dual_by_cause
                .keys()
                .chain(f.non_owner_by_cause.keys())
                .chain(f.lost_by_cause.keys())
        })
        .collect();
    let get = |m: &BTreeMap<String, f64>, c: &str| m.get(c).copied().unwrap_or(0.0);
    for c in causes {
        let (dk, dx) = (get(&k.dual_by_cause, c), get(&x.dual_by_cause, c));
        let (nk, nx) = (get(&k.non_owner_by_cause, c), get(&x.non_owner_by_cause, c));
        let (lk, lx) = (get(&k.lost_by_cause, c), get(&x.lost_by_cause, c));
        md.push_str(&format!(
            "| {c} | {dk:.1} | {dx:.1} | {nk:.1} | {nx:.1} | {} | {lk:.0} | {lx:.0} | {} |\n",
            ratio(nx, nk),
            ratio(lx, lk)
        ));
    }
    md.push('\n');
    md
}

fn targets(k: &Figures, x: &Figures) -> Vec<(String, bool)> {
    let rel = |x: f64, k: f64, r: f64| if k == 0.0 { x == 0.0 } else { x <= r * k };
    vec![
        (
            format!(
                "client on a non-owner ≤ 0.25× keepalived ({:.1} vs {:.1} ms)",
                x.client_non_owner, k.client_non_owner
            ),
            rel(x.client_non_owner, k.client_non_owner, 0.25),
        ),
        (
            format!(
                "lost probes ≤ 0.5× keepalived ({} vs {})",
                x.lost_probes, k.lost_probes
            ),
            rel(x.lost_probes as f64, k.lost_probes as f64, 0.5),
        ),
        (
            format!(
                "dead daemon's host claiming the VIP after another took over ≤ 0.1× keepalived ({:.1} vs {:.1} ms)",
                x.dead_claims_after_takeover, k.dead_claims_after_takeover
            ),
            rel(
                x.dead_claims_after_takeover,
                k.dead_claims_after_takeover,
                0.1,
            ),
        ),
        (
            format!(
                "xvrrpd: no owner beyond the bound = 0 ({:.1} ms)",
                x.no_owner_beyond_bound
            ),
            x.no_owner_beyond_bound == 0.0,
        ),
        (
            format!(
                "xvrrpd: wrong master after the faults = 0 ({:.1} ms)",
                x.wrong_master
            ),
            x.wrong_master == 0.0,
        ),
        (
            format!(
                "xvrrpd: no daemon exit the benchmark did not cause ({})",
                x.unexpected_exits
            ),
            x.unexpected_exits == 0,
        ),
    ]
}

fn fig_json(f: &Figures) -> serde_json::Value {
    json!({
        "faults": f.faults,
        "dual_ownership_by_cause_ms": f.dual_by_cause,
        "client_arp_on_non_owner_by_cause_ms": f.non_owner_by_cause,
        "lost_probes_by_cause": f.lost_by_cause,
        "dual_ownership_outside_grace_ms": f.dual_outside_grace,
        "client_arp_on_non_owner_ms": f.client_non_owner,
        "probes_sent": f.probes_sent,
        "lost_probes": f.lost_probes,
        "dead_host_holds_vip_ms": f.dead_holds,
        "dead_host_holds_vip_after_takeover_ms": f.dead_claims_after_takeover,
        "probes_answered_by_dead_host": f.dead_answered_probes,
        "no_owner_beyond_bound_ms": f.no_owner_beyond_bound,
        "wrong_master_ms": f.wrong_master,
        "final_owners": f.final_owners,
        "unexpected_exits": f.unexpected_exits,
        "sigterm_nonzero_exits": f.sigterm_nonzero,
        "per_fault": f.per_fault.iter().map(|(k, p, ms, lost)| json!({
            "kind": k, "router_priority": p, "held_ms": ms, "lost_probes_until_grace_end": lost,
        })).collect::<Vec<_>>(),
    })
}

fn version(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|e| format!("({e})"))
}

// ---------------------------------------------------------------- main

/// What the report says about the setup, as (key, text).
fn header(o: &Opts, xv: &std::path::Path, grace: u64, bound: u64) -> Vec<(String, String)> {
    vec![
        ("xvrrpd".to_string(), xv.display().to_string()),
        (
            "keepalived".into(),
            format!("{KEEPALIVED} ({})", version(KEEPALIVED)),
        ),
        (
            "setup".into(),
            format!(
                "three routers per daemon on one bridge (priorities 150/100/50, preempt), VRRPv3 advert_int \
                 0.05, one VIP; a client pings it every 1 ms; {} s of faults per daemon and seed, then {} s \
                 to settle and {} s checked",
                o.seconds,
                SETTLE.as_secs(),
                CHECK.as_secs()
            ),
        ),
        ("seeds".into(), format!("{:?}", o.seeds)),
        (
            "faults".into(),
            "one at a time, held 0.2–2 s, 0.1–1.5 s apart, all drawn from the seed before either daemon \
             runs: kill-9 (SIGKILL to the process group, restarted after the hold; the host keeps \
             whatever the dead daemon left, xvrrpd's pinned datapath and warden act on it), sigterm (restarted after the hold), link-down (the router's \
             bridge port), loss (no netem on this kernel: bursts of 10–80 ms with the router's bridge port \
             in STP blocking state, 20–200 ms apart — bursty loss both ways, carrier stays up), partition \
             (bridge port isolation on the three routers' ports: no router hears another, the client \
             reaches all), sighup (reload of an unchanged config)"
                .into(),
        ),
        (
            "grace / bound".into(),
            format!(
                "grace {:.0} ms after a fault starts and after it is undone (Master_Down_Interval of \
                 priority 50 + 200 ms); no-owner bound {:.0} ms (that MDI + 150 ms)",
                grace as f64 / 1e6,
                bound as f64 / 1e6
            ),
        ),
        (
            "client ARP entry".into(),
            "derived, not polled: the last ARP frame on the bridge capture with the VIP as sender (GARP \
             or reply) or the source MAC of the last echo reply; the kernel's own rules (locktime) are \
             not modelled"
                .into(),
        ),
    ]
}

fn run(o: &Opts) -> Result<()> {
    let xv = xvrrpd_binary()?;
    keepalived_binary()?;
    let started = Instant::now();
    let progress = move |m: &str| eprintln!("[{:>6.1} s] {m}", started.elapsed().as_secs_f64());
    let mdi_low = master_down_ns(3, PRIOS[2], ADVERT);
    let grace = mdi_low + 200_000_000;
    let bound = mdi_low + 150_000_000;
    let header = header(o, &xv, grace, bound);
    for (k, v) in &header {
        eprintln!("{k}: {v}");
    }
    let mut c = lab().context("building the chaos lab")?;
    let vip = c.vip;
    let mut per_seed = Vec::new();
    for &seed in &o.seeds {
        let plan = schedule(seed, o.seconds);
        let mut order_rng = Rng::new(seed ^ 0x5eed);
        let order = if order_rng.below(2) == 0 {
            [Daemon::Keepalived, Daemon::Xvrrpd]
        } else {
            [Daemon::Xvrrpd, Daemon::Keepalived]
        };
        let mut figs: BTreeMap<&str, Figures> = BTreeMap::new();
        for d in order {
            progress(&format!("seed {seed}: {d}, {} faults", plan.len()));
            let rec = run_daemon(&mut c, d, &plan, o.seconds, &|m| progress(m))
                .with_context(|| format!("seed {seed}, {d}"))?;
            for u in &rec.unexpected {
                progress(&format!("  unexpected exit: {u}"));
            }
            let f = analyse(&rec, vip, grace, bound);
            progress(&format!(
                "  {d}: non-owner {:.1} ms, lost {} of {}, dead holds {:.1} ms ({:.1} after takeover), \
                 no owner beyond bound {:.1} ms, wrong master {:.1} ms, dual outside grace {:.1} ms, exits {}",
                f.client_non_owner,
                f.lost_probes,
                f.probes_sent,
                f.dead_holds,
                f.dead_claims_after_takeover,
                f.no_owner_beyond_bound,
                f.wrong_master,
                f.dual_outside_grace,
                f.unexpected_exits
            ));
            figs.insert(
                match d {
                    Daemon::Keepalived => "keepalived",
                    Daemon::Xvrrpd => "xvrrpd",
                },
                f,
            );
        }
        per_seed.push((seed, plan, figs));
    }
    write_report(o, &header, &per_seed, started)
}

/// One seed: its fault plan and each daemon's figures.
type SeedRun<'a> = (u64, Vec<Planned>, BTreeMap<&'a str, Figures>);

/// The tables (per seed, all seeds, targets) to stdout and
/// `target/bench/chaos[-quick].{md,json}`.
fn write_report(
    o: &Opts,
    header: &[(String, String)],
    per_seed: &[SeedRun],
    started: Instant,
) -> Result<()> {
    let progress = |m: &str| eprintln!("[{:>6.1} s] {m}", started.elapsed().as_secs_f64());
    let k_all = sum(&per_seed
        .iter()
        .map(|s| s.2["keepalived"].clone())
        .collect::<Vec<_>>());
    let x_all = sum(&per_seed
        .iter()
        .map(|s| s.2["xvrrpd"].clone())
        .collect::<Vec<_>>());
    let tg = targets(&k_all, &x_all);
    let mut md = String::from("# Chaos benchmark: xvrrpd next to keepalived\n\n");
    for (k, v) in header {
        md.push_str(&format!("- **{k}**: {v}\n"));
    }
    md.push_str(&format!(
        "- **run time**: {:.0} s\n\nratio = xvrrpd / keepalived (– both 0, ∞ keepalived 0).\n\n",
        started.elapsed().as_secs_f64()
    ));
    md.push_str("## Targets (all seeds)\n\n");
    for (t, ok) in &tg {
        md.push_str(&format!("- {}: {t}\n", if *ok { "met" } else { "MISSED" }));
    }
    md.push('\n');
    md.push_str(&table(
        &format!("All seeds ({})", o.seeds.len()),
        &k_all,
        &x_all,
    ));
    for (seed, plan, figs) in per_seed {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in plan {
            *counts.entry(p.kind.name()).or_default() += 1;
        }
        md.push_str(&table(
            &format!("Seed {seed} (faults: {counts:?})"),
            &figs["keepalived"],
            &figs["xvrrpd"],
        ));
    }
    let js = json!({
        "header": header.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "targets": tg.iter().map(|(t, ok)| json!({"target": t, "met": ok})).collect::<Vec<_>>(),
        "all": {"keepalived": fig_json(&k_all), "xvrrpd": fig_json(&x_all)},
        "seeds": per_seed.iter().map(|(seed, plan, figs)| json!({
            "seed": seed,
            "faults": plan.iter().map(|p| json!({
                "kind": p.kind.name(), "router_priority": PRIOS[p.router],
                "hold_ms": p.hold.as_millis() as u64, "gap_ms": p.gap.as_millis() as u64,
            })).collect::<Vec<_>>(),
            "keepalived": fig_json(&figs["keepalived"]),
            "xvrrpd": fig_json(&figs["xvrrpd"]),
        })).collect::<Vec<_>>(),
    });
    let stem = if o.quick { "chaos-quick" } else { "chaos" };
    let (md_path, js_path) = bench::write_report(stem, &md, &js)?;
    println!("{md}");
    progress(&format!(
        "wrote {} and {}",
        md_path.display(),
        js_path.display()
    ));
    for svg in plots(per_seed, stem)? {
        progress(&format!("wrote {}", svg.display()));
    }
    Ok(())
}

/// Per seed, both daemons side by side: how long the client's entry named a
/// host that did not hold the VIP, and how many of its probes were lost.
fn plots(per_seed: &[SeedRun], stem: &str) -> Result<Vec<std::path::PathBuf>> {
    use xvrrpd_tests::plot::{Chart, Series, Style, write_svg};
    let dir = bench::out_dir();
    std::fs::create_dir_all(&dir)?;
    let mut written = Vec::new();
    for (file, title, unit, pick) in [
        (
            "client-on-non-owner",
            "client's entry on a host without the VIP, per seed",
            "ms",
            (|f: &Figures| f.client_non_owner) as fn(&Figures) -> f64,
        ),
        (
            "lost-probes",
            "client probes lost, per seed",
            "probes",
            |f: &Figures| f.lost_probes as f64,
        ),
    ] {
        let series: Vec<Series> = ["keepalived", "xvrrpd"]
            .into_iter()
            .map(|d| Series {
                name: d.to_string(),
                points: per_seed
                    .iter()
                    .enumerate()
                    .filter_map(|(n, (_, _, figs))| Some(((n + 1) as f64, pick(figs.get(d)?))))
                    .collect(),
                xvrrpd: d == "xvrrpd",
            })
            .collect();
        let path = dir.join(format!("{stem}-{file}.svg"));
        write_svg(
            &path,
            &Chart {
                title,
                x_label: "seed (in the order run)",
                y_label: unit,
                style: Style::Points,
                log_x: false,
            },
            &series,
        )?;
        written.push(path);
    }
    Ok(written)
}
