//! Failover scenarios on a [`VrrpLab`]: N routers sharing one VRRP
//! instance, a client pinging the VIP, the bridge captured, and steps
//! (election, crash, SIGTERM, link failure, rejoin) that each check the
//! outcome three ways:
//!
//! * **the wire** (bridge capture): who advertises, when the new master's
//!   first advert comes after the old master's last one, against
//!   `Master_Down_Interval` or `Skew_Time`; that after the step's bound
//!   only the expected master advertises with a priority above 0;
//! * **the hosts** (address watches): the expected master holds the VIP
//!   throughout, no other live router holds it at any instant after the
//!   bound;
//! * **the client**: its pings are answered by the expected master's MAC.
//!
//! Every step returns a [`Failover`] with the figures, for the test to
//! print.

use std::{net::IpAddr, thread, time::Duration};

use anyhow::{Context, Result, bail};
use xvrrpd::vrrp::State;

use crate::{
    analysis::{
        self, EARLY_TOLERANCE, Takeover, adverts, check_bound, check_sole_advertiser, held_during,
        held_throughout, late_tolerance, master_down_ns, skew_ns,
    },
    clock::{Stamp, mono_ns, ms},
    kconf::{Daemon, Instance, RouterConfig},
    lab::{Host, wait_until},
    pcap::WireEvent,
    prober::{Outage, ProbeLog, Prober},
    router::{LinkSide, RouterNode},
    stall::StallWindow,
    vrrp_lab::VrrpLab,
    wire::BridgeCapture,
};

/// Address changes are stamped when the watching thread reads them: on a
/// busy host (two vCPUs shared with builds) that can be ten milliseconds
/// after the kernel made them.
pub const WATCH_SLACK: Duration = Duration::from_millis(15);

/// How long after its first advert a new master's IPv6 VIP may take to
/// show. The kernel keeps a new IPv6 address tentative, and announces it,
/// only once its addrconf workqueue (an ordinary kworker) has run, even
/// with DAD off: on a host whose cores are busy that takes tens of ms.
pub const IPV6_ADDR_ALLOWANCE: Duration = Duration::from_millis(100);

/// One router of a [`Cluster`]: name, daemon, priority.
pub type RouterSpec<'a> = (&'a str, Daemon, u8);

/// Host address of router `i` (0-based) and of the client.
pub fn router_cidrs(i: usize) -> [String; 2] {
    [
        format!("192.0.2.{}/24", 11 + i),
        format!("2001:db8::{}/64", 11 + i),
    ]
}
pub const CLIENT_CIDRS: [&str; 2] = ["192.0.2.50/24", "2001:db8::50/64"];

/// A lab of routers sharing one instance (the template), a client and a
/// bridge capture. Fields drop in order: prober, capture, routers, then
/// the lab (which reports on failure and removes the namespaces).
pub struct Cluster {
    pub prober: Option<Prober>,
    pub capture: BridgeCapture,
    pub routers: Vec<RouterNode>,
    pub client: Host,
    /// The instance every router runs, with each router's priority.
    pub inst: Instance,
    pub vip: IpAddr,
    pub lab: VrrpLab,
}

/// A take-over later than its bound and tolerance allow, as an error
/// context: where it happened, for telling a stall of the host from a slow
/// daemon.
#[derive(Clone, Copy, Debug)]
pub struct LateTakeover {
    /// Last advert of the old master + the bound (CLOCK_MONOTONIC).
    pub deadline_mono: u64,
    /// The new master's first advert (CLOCK_MONOTONIC).
    pub first_advert_mono: u64,
    /// Lateness beyond the tolerance (ns).
    pub excess_ns: u64,
}

impl LateTakeover {
    /// A host stall explains it when it overlaps `[deadline − 1 ms, first
    /// advert]` and lasts at least the lateness beyond the tolerance (and
    /// 1 ms).
    pub fn stall_window(&self) -> StallWindow {
        StallWindow {
            from_mono: self.deadline_mono.saturating_sub(1_000_000),
            to_mono: self.first_advert_mono,
            min: Duration::from_nanos(self.excess_ns.max(1_000_000)),
        }
    }
}

impl std::fmt::Display for LateTakeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "take-over {} late beyond the tolerance",
            ms(self.excess_ns as i128)
        )
    }
}

/// An old master that still advertised after the new one's first advert
/// and the grace for one already on its way, as an error context. A host
/// stall between the two, at least as long as the advert was late, keeps
/// the old master from reading the new one's advert in time; a master that
/// never yielded is late by whole intervals, which no short stall explains.
#[derive(Clone, Copy, Debug)]
pub struct LateYield {
    /// The new master's first advert (CLOCK_MONOTONIC).
    pub first_advert_mono: u64,
    /// The old master's last advert in the window (CLOCK_MONOTONIC).
    pub last_stray_mono: u64,
    /// How much later than the grace that advert was (ns).
    pub excess_ns: u64,
}

impl LateYield {
    pub fn stall_window(&self) -> StallWindow {
        StallWindow {
            from_mono: self.first_advert_mono,
            to_mono: self.last_stray_mono,
            min: Duration::from_nanos(self.excess_ns.max(1_000_000)),
        }
    }
}

impl std::fmt::Display for LateYield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the old master advertised {} after the grace",
            ms(self.excess_ns as i128)
        )
    }
}

/// How soon after the new master's first advert a yielding master's one
/// answer may come: xvrrpd steps down with an advert of its own (keepalived's
/// `higher_prio_send_advert`, on outside strict mode), which takes a
/// debug-build event loop a few milliseconds on this shared machine.
pub const STEP_DOWN_REPLY: Duration = Duration::from_millis(10);

/// `ads` without each other router's first advert within
/// [`STEP_DOWN_REPLY`] of the new master's first one (at `first_rt`): the
/// step-down answer. A second one, or a later one, still counts.
fn without_step_down_replies(
    ads: Vec<crate::analysis::AdvertSeen>,
    new_mac: crate::pcap::Mac,
    first_rt: u64,
) -> Vec<crate::analysis::AdvertSeen> {
    let until = first_rt + STEP_DOWN_REPLY.as_nanos() as u64;
    let mut answered = Vec::new();
    ads.into_iter()
        .filter(|a| {
            let reply = a.mac != new_mac
                && a.priority > 0
                && a.t_ns >= first_rt
                && a.t_ns <= until
                && !answered.contains(&a.mac);
            if reply {
                answered.push(a.mac);
            }
            !reply
        })
        .collect()
}

/// A failed step of a [`Cluster`], as an error context: what it did, and
/// the host stall that may explain the failure.
#[derive(Clone, Debug)]
pub struct StepFailed {
    pub what: String,
    pub stall_window: StallWindow,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// What one step measured.
#[derive(Clone, Debug)]
pub struct Failover {
    pub what: String,
    pub event: Stamp,
    pub takeover: Takeover,
    /// The protocol's value for `takeover.gap_ns` (None: no timing bound,
    /// e.g. a preemption after a restart).
    pub theory_ns: Option<u64>,
    /// The client's longest time without a reply around the step.
    pub outage: Option<Outage>,
    /// When the kill -9'd router's leftover VIP went, after its restart
    /// (ns after the start).
    pub leftover_removed_ns: Option<u64>,
    /// When the VIP showed on the new master's host, after its first advert.
    pub vip_lag_ns: Option<i128>,
}

impl Failover {
    /// `gap − theory` in ns.
    pub fn error_ns(&self) -> Option<i128> {
        self.theory_ns
            .map(|t| self.takeover.gap_ns as i128 - t as i128)
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} → {} in {}",
            self.what,
            self.takeover.old_last.mac,
            self.takeover.new_first.mac,
            ms(self.takeover.gap_ns as i128)
        );
        if let (Some(t), Some(e)) = (self.theory_ns, self.error_ns()) {
            s.push_str(&format!(" (theory {}, error {})", ms(t as i128), ms(e)));
        }
        if let Some(a) = self.takeover.announce_ns {
            s.push_str(&format!(
                ", GARP/NA {} after the first advert",
                ms(a as i128 - self.takeover.new_first.t_ns as i128)
            ));
        }
        if let Some(o) = &self.outage {
            let at = |r: &Option<crate::prober::Reply>| match r {
                Some(r) => format!(
                    "{:+.1} ms {}",
                    (r.at.rt_ns as f64 - self.event.rt_ns as f64) / 1e6,
                    r.src_mac
                ),
                None => "-".into(),
            };
            s.push_str(&format!(
                ", client outage {} ({} probes lost; last reply {}, next {})",
                ms(o.gap_ns as i128),
                o.lost,
                at(&o.before),
                at(&o.after)
            ));
        }
        if let Some(l) = self.vip_lag_ns {
            s.push_str(&format!(", VIP seen {} after the first advert", ms(l)));
        }
        if let Some(l) = self.leftover_removed_ns {
            s.push_str(&format!(
                ", leftover VIP removed {} after restart",
                ms(l as i128)
            ));
        }
        s
    }
}

impl Cluster {
    /// Builds the lab: routers `specs` (not started), each with `inst` at
    /// its priority; `unicast` fills in `unicast_src_ip` / `unicast_peer`
    /// from the routers' addresses; `edit` may change each router's config
    /// before it is written.
    pub fn new(
        test: &str,
        inst: Instance,
        specs: &[RouterSpec<'_>],
        unicast: bool,
        mut edit: impl FnMut(&RouterNode, &mut RouterConfig) -> Result<()>,
    ) -> Result<Cluster> {
        let mut lab = VrrpLab::new(test)?;
        let v6 = inst.is_ipv6();
        let vip = *inst
            .vip_addrs()
            .first()
            .context("the instance has no VIP")?;
        let mut routers = Vec::new();
        for (i, (name, daemon, _)) in specs.iter().enumerate() {
            let c = router_cidrs(i);
            routers.push(lab.add_router(name, *daemon, &[&c[0], &c[1]])?);
        }
        let client = lab.add_client("client", &CLIENT_CIDRS)?;
        let addrs: Vec<IpAddr> = routers.iter().map(|r| r.addr(v6)).collect();
        for (i, r) in routers.iter_mut().enumerate() {
            let mut me = inst.with_priority(specs[i].2);
            if unicast {
                me.unicast_src = Some(addrs[i].to_string());
                me.unicast_peers = addrs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| a.to_string())
                    .collect();
            }
            let mut cfg = RouterConfig::single(me);
            edit(r, &mut cfg)?;
            r.write_config(&cfg)?;
        }
        let capture = lab.capture()?;
        Ok(Cluster {
            prober: None,
            capture,
            routers,
            client,
            inst,
            vip,
            lab,
        })
    }

    pub fn idx(&self, name: &str) -> usize {
        self.routers
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no router {name}"))
    }

    pub fn router(&self, name: &str) -> &RouterNode {
        &self.routers[self.idx(name)]
    }

    pub fn router_mut(&mut self, name: &str) -> &mut RouterNode {
        let i = self.idx(name);
        &mut self.routers[i]
    }

    /// The priority `name` runs the instance with (from its config).
    pub fn priority(&self, name: &str) -> u8 {
        self.router(name)
            .config()
            .and_then(|c| c.instances.iter().find(|i| i.name == self.inst.name))
            .map(|i| i.priority)
            .unwrap_or(self.inst.priority)
    }

    /// `Master_Down_Interval` of `name` (ns).
    pub fn mdi_ns(&self, name: &str) -> u64 {
        master_down_ns(self.inst.version, self.priority(name), self.inst.advert_int)
    }

    /// `Skew_Time` of `name` (ns).
    pub fn skew_ns(&self, name: &str) -> u64 {
        skew_ns(self.inst.version, self.priority(name), self.inst.advert_int)
    }

    /// Time to let a step settle after the takeover: one interval plus a
    /// margin, so the window after the bound holds adverts and pings.
    pub fn settle(&self) -> Duration {
        self.inst.advert_int + Duration::from_millis(150)
    }

    /// Starts the routers in the order given.
    pub fn start(&mut self, names: &[&str]) -> Result<()> {
        for n in names {
            let at = self.router_mut(n).start()?;
            self.lab.mark_at(&format!("start {n}"), at);
        }
        Ok(())
    }

    /// Starts every router.
    pub fn start_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.routers.iter().map(|r| r.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.start(&names)
    }

    /// Starts pinging the VIP from the client.
    pub fn start_probe(&mut self) -> Result<()> {
        self.prober = Some(self.lab.probe(&self.client, self.vip)?);
        Ok(())
    }

    /// The capture so far, decoded.
    pub fn wire(&self) -> Result<Vec<WireEvent>> {
        Ok(self.capture.snapshot()?.events)
    }

    fn probe_log(&self) -> Option<ProbeLog> {
        self.prober.as_ref().map(|p| p.snapshot())
    }

    fn state_report(&self) -> String {
        self.routers
            .iter()
            .map(|r| {
                format!(
                    "{} ({}): state {:?}, VIP {}",
                    r.name,
                    r.daemon,
                    r.state(&self.inst.name),
                    if r.has_vip(self.vip) {
                        "held"
                    } else {
                        "not held"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The shortest whole-host stall that may explain a failed timing
    /// check: one advert interval (at least 5 ms). Shorter ones cannot make
    /// a backup miss a master.
    pub fn explaining_stall(&self) -> Duration {
        self.inst.advert_int.max(Duration::from_millis(5))
    }

    /// The template's `unicast_ttl`, if it sets one.
    fn unicast_ttl(&self) -> Option<u8> {
        self.inst
            .extra
            .iter()
            .find_map(|l| l.trim().strip_prefix("unicast_ttl "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Runs the step `what`. Its failure carries a [`StepFailed`]: a
    /// whole-host stall of at least [`Cluster::explaining_stall`], during
    /// the step or one `Master_Down_Interval` before it (that still delays
    /// what the step measures), may explain it.
    fn step<T>(&mut self, what: String, body: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let from = mono_ns().saturating_sub(self.mdi_ns_max());
        body(self).map_err(|e| {
            let stall_window = StallWindow {
                from_mono: from,
                to_mono: mono_ns(),
                min: self.explaining_stall(),
            };
            e.context(StepFailed { what, stall_window })
        })
    }

    /// [`check_bound`] on a take-over; a late one fails with a
    /// [`LateTakeover`], which a host stall around the deadline explains.
    fn check_takeover_bound(
        &self,
        what: &str,
        tk: &Takeover,
        theory: u64,
        successor: &str,
        event: Stamp,
    ) -> Result<()> {
        let late = late_tolerance(self.router(successor).daemon);
        check_bound(what, tk.gap_ns, theory, EARLY_TOLERANCE, late).map_err(|e| {
            let excess = tk.gap_ns as i128 - theory as i128 - late.as_nanos() as i128;
            if excess > 0 {
                e.context(LateTakeover {
                    deadline_mono: event.rt_to_mono(tk.old_last.t_ns + theory),
                    first_advert_mono: event.rt_to_mono(tk.new_first.t_ns),
                    excess_ns: excess as u64,
                })
            } else {
                e
            }
        })
    }

    /// The longest `Master_Down_Interval` of the cluster's routers (ns).
    fn mdi_ns_max(&self) -> u64 {
        self.routers
            .iter()
            .map(|r| self.mdi_ns(&r.name))
            .max()
            .unwrap_or(0)
    }

    /// Waits until `name` holds the VIP and says MASTER, every other
    /// running router says BACKUP, and checks the wire, the hosts and the
    /// client over one settle time.
    pub fn expect_master(&mut self, name: &str, timeout: Duration) -> Result<()> {
        self.step(format!("{name} settling as master"), |c| {
            let m = c.idx(name);
            let inst = c.inst.name.clone();
            if !c.routers[m].wait_vip(c.vip, true, timeout) {
                bail!(
                    "{name} did not take the VIP {} within {timeout:?}: {}",
                    c.vip,
                    c.state_report()
                );
            }
            c.routers[m].wait_state(&inst, "MASTER", Duration::from_secs(2))?;
            let since = Stamp::now();
            for i in 0..c.routers.len() {
                if i != m && c.routers[i].is_running() {
                    c.routers[i].wait_state(&inst, "BACKUP", Duration::from_secs(2))?;
                }
            }
            for r in &mut c.routers {
                if r.is_running() {
                    r.wait_datapath_settled(Duration::from_secs(5))?;
                }
            }
            if c.prober.is_none() {
                c.start_probe()?;
            }
            thread::sleep(c.settle() + Duration::from_millis(100));
            let now = Stamp::now();
            let events = c.wire()?;
            let ads = adverts(&events, c.inst.vrid, c.vip.is_ipv6());
            check_sole_advertiser(
                &ads,
                c.routers[m].mac,
                since.rt_ns,
                now.rt_ns,
                c.lab.origin.rt_ns,
            )
            .with_context(|| format!("{name} should be the only master"))?;
            // What the master puts in its adverts.
            let mine: Vec<_> = ads
                .iter()
                .filter(|a| a.mac == c.routers[m].mac && a.t_ns >= since.rt_ns)
                .collect();
            let want_prio = c.priority(name);
            for a in &mine {
                if a.version != c.inst.version {
                    bail!(
                        "{name} advertises VRRPv{}, configured v{}",
                        a.version,
                        c.inst.version
                    );
                }
                // `unicast_ttl` (a unicast template's; multicast keeps 255).
                let want_ttl = c.unicast_ttl().unwrap_or(255);
                if a.ttl != want_ttl {
                    bail!(
                        "{name}'s advert has TTL/hop limit {}, not {want_ttl}",
                        a.ttl
                    );
                }
            }
            if want_prio != 255
                && let Some(a) = mine.iter().find(|a| a.priority != want_prio)
            {
                bail!(
                    "{name} advertises priority {}, configured {want_prio}",
                    a.priority
                );
            }
            let want_cs = (c.inst.advert_int.as_millis() / 10) as u32;
            if let Some(a) = mine.iter().find(|a| a.interval_cs != want_cs) {
                bail!(
                    "{name} advertises an interval of {} cs, configured {want_cs} cs",
                    a.interval_cs
                );
            }
            c.check_holders(name, since.mono_ns, now.mono_ns, &[])?;
            c.check_client(name, since.rt_ns + 50_000_000, now.rt_ns)?;
            Ok(())
        })
    }

    /// No router but `master` (and those in `dead`) holds the VIP at any
    /// instant of `[from, to]` (CLOCK_MONOTONIC); `master` holds it all along.
    pub fn check_holders(&self, master: &str, from: u64, to: u64, dead: &[&str]) -> Result<()> {
        self.check_holders_from(master, from, from, to, dead)
    }

    /// As [`check_holders`](Self::check_holders), the master checked from
    /// `master_from` and the others from `from`.
    pub fn check_holders_from(
        &self,
        master: &str,
        master_from: u64,
        from: u64,
        to: u64,
        dead: &[&str],
    ) -> Result<()> {
        let rel = |spans: &[crate::addr_watch::Held]| -> String {
            let o = self.lab.origin.mono_ns as f64;
            spans
                .iter()
                .map(|h| match h.to {
                    Some(t) => format!(
                        "[{:.3} … {:.3} ms]",
                        (h.from as f64 - o) / 1e6,
                        (t as f64 - o) / 1e6
                    ),
                    None => format!("[{:.3} ms … ]", (h.from as f64 - o) / 1e6),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        for r in &self.routers {
            let spans = r.watch.held(self.vip);
            r.watch.check_complete()?;
            if r.name == master {
                if !held_throughout(&spans, master_from, to) {
                    bail!(
                        "{master} did not hold the VIP {} throughout the window \
                         ({:.3} ms … {:.3} ms after the lab started); it held it {}",
                        self.vip,
                        (master_from as f64 - self.lab.origin.mono_ns as f64) / 1e6,
                        (to as f64 - self.lab.origin.mono_ns as f64) / 1e6,
                        rel(&spans)
                    );
                }
            } else if !dead.contains(&r.name.as_str()) && held_during(&spans, from, to) {
                bail!(
                    "both {master} and {} held the VIP {} after the bound \
                     ({:.3} ms … {:.3} ms after the lab started); {} held it {}",
                    r.name,
                    self.vip,
                    (from as f64 - self.lab.origin.mono_ns as f64) / 1e6,
                    (to as f64 - self.lab.origin.mono_ns as f64) / 1e6,
                    r.name,
                    rel(&spans)
                );
            }
        }
        Ok(())
    }

    /// The router whose switch port the bridge learned `mac` on (where it
    /// sends frames for it), if any.
    pub fn switch_port_of(&self, mac: &str) -> Result<Option<String>> {
        let out = crate::lab::run(
            &mut self
                .lab
                .net
                .switch_cmd(&["bridge", "fdb", "show", "br", "br0"]),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let port = text.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(mac) && words.next() == Some("dev"))
                .then(|| words.next().map(str::to_string))
                .flatten()
        });
        Ok(port.and_then(|p| {
            self.routers
                .iter()
                .find(|r| self.lab.net.switch_port(&r.host).as_deref() == Some(p.as_str()))
                .map(|r| r.name.clone())
        }))
    }

    /// The MAC the client's neighbour entry for `vip` points at (empty
    /// without one).
    pub fn client_neighbour(&self, vip: &str) -> Result<String> {
        let out = self.client.exec(&["ip", "neigh", "show", vip])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        Ok(words
            .by_ref()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .unwrap_or_default()
            .to_string())
    }

    /// The client's pings in `[from_rt, to_rt]` were answered, all by
    /// `master`'s MAC.
    pub fn check_client(&self, master: &str, from_rt: u64, to_rt: u64) -> Result<()> {
        let Some(log) = self.probe_log() else {
            return Ok(());
        };
        let runs = log.answered_by_between(from_rt, to_rt);
        let mac = self.router(master).mac;
        if runs.len() == 1 && runs[0].mac == mac {
            return Ok(());
        }
        bail!(
            "the client's pings to {} from +{:.1} ms to +{:.1} ms should all be answered by \
             {master} ({mac}); answered by: {} ({})",
            self.vip,
            self.lab.rel_ms(from_rt),
            self.lab.rel_ms(to_rt),
            if runs.is_empty() {
                "nobody".to_string()
            } else {
                ProbeLog::describe_runs(&runs, self.lab.origin.rt_ns)
            },
            self.prober
                .as_ref()
                .map(|p| p.health(from_rt, to_rt))
                .unwrap_or_default()
        )
    }

    /// After `event`, waits for `new` to take the VIP (a fresh add), lets
    /// things settle and finds the takeover on the wire.
    pub fn await_takeover(
        &self,
        old: &str,
        new: &str,
        event: Stamp,
        timeout: Duration,
    ) -> Result<(Takeover, Stamp)> {
        let n = self.router(new);
        let got = wait_until(timeout, Duration::from_millis(2), || {
            n.watch
                .held(self.vip)
                .iter()
                .any(|h| h.from >= event.mono_ns && h.to.is_none())
        });
        if !got {
            bail!(
                "{new} did not take the VIP {} within {timeout:?} of the event: {}",
                self.vip,
                self.state_report()
            );
        }
        thread::sleep(self.settle());
        let now = Stamp::now();
        let events = self.wire()?;
        let tk = analysis::takeover(
            &events,
            self.inst.vrid,
            self.vip,
            self.router(old).mac,
            n.mac,
            event.rt_ns,
        )
        .with_context(|| format!("{old} → {new}"))?;
        if tk.announce_ns.is_none() {
            bail!(
                "{new} became master (first advert at +{:.3} ms) but sent no gratuitous ARP / \
                 unsolicited NA for {}",
                self.lab.rel_ms(tk.new_first.t_ns),
                self.vip
            );
        }
        Ok((tk, now))
    }

    /// The checks after a takeover. From `tk.new_first + grace` on, only
    /// `new` advertises. On the hosts, from the later of that and its first
    /// GARP/NA, plus [`WATCH_SLACK`], `new` holds the VIP and no other live
    /// router does (an IPv6 VIP may show up to [`IPV6_ADDR_ALLOWANCE`] after
    /// the first advert; `new` is checked from then). The client is
    /// answered by `new` from 20 ms after that. Returns when the VIP showed
    /// on `new`, in ns after its first advert.
    pub fn check_after(
        &self,
        new: &str,
        event: Stamp,
        tk: &Takeover,
        grace: Duration,
        now: Stamp,
        dead: &[&str],
    ) -> Result<Option<i128>> {
        let bound_rt = tk.new_first.t_ns + grace.as_nanos() as u64;
        let events = self.wire()?;
        let new_mac = self.router(new).mac;
        let ads = without_step_down_replies(
            adverts(&events, self.inst.vrid, self.vip.is_ipv6()),
            new_mac,
            tk.new_first.t_ns,
        );
        check_sole_advertiser(&ads, new_mac, bound_rt, now.rt_ns, self.lab.origin.rt_ns).map_err(
            |e| {
                let last_stray = ads
                    .iter()
                    .filter(|a| a.mac != new_mac && a.priority > 0)
                    .filter(|a| a.t_ns >= bound_rt && a.t_ns <= now.rt_ns)
                    .map(|a| a.t_ns)
                    .max();
                match last_stray {
                    Some(t) => e.context(LateYield {
                        first_advert_mono: event.rt_to_mono(tk.new_first.t_ns),
                        last_stray_mono: event.rt_to_mono(t),
                        excess_ns: t - bound_rt,
                    }),
                    None => e,
                }
            },
        )?;
        let hold_rt = bound_rt.max(tk.announce_ns.unwrap_or(0)) + WATCH_SLACK.as_nanos() as u64;
        let hold = event.rt_to_mono(hold_rt);
        // When the new master's VIP showed on its host, after its first advert.
        let first_mono = event.rt_to_mono(tk.new_first.t_ns);
        let added = self
            .router(new)
            .watch
            .held(self.vip)
            .iter()
            .rev()
            .find(|h| h.from <= now.mono_ns && h.to.is_none())
            .map(|h| h.from);
        let lag = added.map(|a| a as i128 - first_mono as i128);
        let mut master_from = hold;
        let mut client_from = hold_rt;
        if self.vip.is_ipv6()
            && let Some(a) = added
            && a > hold
        {
            let allowed = first_mono + IPV6_ADDR_ALLOWANCE.as_nanos() as u64;
            if a > allowed {
                bail!(
                    "{new}'s IPv6 VIP {} showed only {} after its first advert (allowance {:?})",
                    self.vip,
                    ms(a as i128 - first_mono as i128),
                    IPV6_ADDR_ALLOWANCE
                );
            }
            master_from = a;
            client_from = client_from.max(event.mono_to_rt(a));
        }
        self.check_holders_from(new, master_from, hold, now.mono_ns, dead)?;
        // The client follows the GARP/NA; give it a moment to get there.
        self.check_client(new, client_from + 20_000_000, now.rt_ns)?;
        Ok(lag)
    }

    pub fn outage(&self, event: Stamp, now: Stamp) -> Option<Outage> {
        self.probe_log()
            .map(|l| l.outage(event.rt_ns.saturating_sub(20_000_000), now.rt_ns))
    }

    /// Waits for `successor` to take over from `master` after `event` and
    /// checks the take-over against the protocol's bound `theory`.
    fn expect_takeover(
        &mut self,
        master: &str,
        successor: &str,
        event: Stamp,
        theory: u64,
        what: &str,
    ) -> Result<(Takeover, Stamp)> {
        let (tk, now) = self.await_takeover(
            master,
            successor,
            event,
            Duration::from_nanos(theory * 3) + Duration::from_secs(2),
        )?;
        self.check_takeover_bound(what, &tk, theory, successor, event)?;
        Ok((tk, now))
    }

    /// The checks after a take-over (who holds the VIP, the client) and
    /// its record; `dead` hosts keep a VIP nobody removes.
    fn failover(
        &self,
        what: String,
        successor: &str,
        event: Stamp,
        theory: u64,
        (takeover, now): (Takeover, Stamp),
        dead: &[&str],
    ) -> Result<Failover> {
        let vip_lag_ns = self.check_after(
            successor,
            event,
            &takeover,
            Duration::from_millis(1),
            now,
            dead,
        )?;
        Ok(Failover {
            what,
            event,
            takeover,
            theory_ns: Some(theory),
            outage: self.outage(event, now),
            leftover_removed_ns: None,
            vip_lag_ns,
        })
    }

    /// kill -9 of `master`'s daemon, its host left running. xvrrpd's
    /// warden sends the dead master's priority-0 advert: `successor` takes
    /// over within its `Skew_Time`. keepalived has nothing left to send it:
    /// within its `Master_Down_Interval` (+ the daemon's tolerance).
    pub fn crash(&mut self, master: &str, successor: &str) -> Result<Failover> {
        self.crash_with(master, successor, false)
    }

    /// kill -9 of everything xvrrpd (or keepalived) runs on `master`'s host,
    /// as when it loses power: `successor` takes over within its
    /// `Master_Down_Interval` (+ the daemon's tolerance).
    pub fn host_crash(&mut self, master: &str, successor: &str) -> Result<Failover> {
        self.crash_with(master, successor, true)
    }

    fn crash_with(&mut self, master: &str, successor: &str, all: bool) -> Result<Failover> {
        let farewell = !all && self.router(master).daemon == Daemon::Xvrrpd;
        let step = if all { "host crash" } else { "crash" };
        self.step(format!("{step} {master} → {successor}"), |c| {
            let event = if all {
                c.router_mut(master).kill9_all()?
            } else {
                c.router_mut(master).kill9()?
            };
            c.lab.mark_at(&format!("kill -9 {master}"), event);
            let (theory, what) = if farewell {
                (
                    c.skew_ns(successor),
                    format!(
                        "{successor} taking over after the priority-0 advert of {master}'s warden"
                    ),
                )
            } else {
                (
                    c.mdi_ns(successor),
                    format!("{successor} detecting {master}'s crash"),
                )
            };
            let taken = c.expect_takeover(master, successor, event, theory, &what)?;
            if farewell && taken.0.old_last.priority != 0 {
                bail!(
                    "{master}'s last advert before {successor} took over has priority {}, \
                     not 0: its warden did not say the dead daemon's farewell",
                    taken.0.old_last.priority
                );
            }
            // The dead daemon's VIP stays on its host (nobody removes it):
            // that host is left out of the holder check.
            let what = format!("kill -9 {master}");
            c.failover(what, successor, event, theory, taken, &[master])
        })
    }

    /// SIGTERM to `master`: a priority-0 advert, its VIP removed, exit 0;
    /// `successor` takes over within its `Skew_Time`.
    pub fn terminate(&mut self, master: &str, successor: &str) -> Result<Failover> {
        self.step(format!("terminate {master} → {successor}"), |c| {
            let (event, status) = c.router_mut(master).sigterm()?;
            c.lab.mark_at(&format!("SIGTERM {master}"), event);
            if !status.success() {
                bail!("{master} exited with {status} on SIGTERM, not 0");
            }
            let theory = c.skew_ns(successor);
            let what = format!("{successor} taking over after {master}'s priority-0 advert");
            let taken = c.expect_takeover(master, successor, event, theory, &what)?;
            if taken.0.old_last.priority != 0 {
                bail!(
                    "{master}'s last advert before {successor} took over has priority {}, \
                     not 0: no priority-0 advert on SIGTERM",
                    taken.0.old_last.priority
                );
            }
            if c.router(master).has_vip(c.vip) {
                bail!(
                    "{master} exited on SIGTERM but left the VIP {} on its host",
                    c.vip
                );
            }
            let what = format!("SIGTERM {master}");
            c.failover(what, successor, event, theory, taken, &[])
        })
    }

    /// Takes `master`'s link down: it goes FAULT and drops the VIP;
    /// `successor` takes over within its `Master_Down_Interval`.
    pub fn link_fail(&mut self, master: &str, successor: &str, side: LinkSide) -> Result<Failover> {
        self.step(format!("link down {master} → {successor}"), |c| {
            let event = c.router(master).link_down(side)?;
            c.lab
                .mark_at(&format!("link down {master} ({side:?})"), event);
            let theory = c.mdi_ns(successor);
            let what = format!("{successor} detecting {master}'s link failure");
            let taken = c.expect_takeover(master, successor, event, theory, &what)?;
            let inst = c.inst.name.clone();
            c.router(master)
                .wait_state(&inst, "FAULT", Duration::from_secs(2))
                .context("the router whose link went down should be in FAULT")?;
            if !c
                .router(master)
                .wait_vip(c.vip, false, Duration::from_secs(1))
            {
                bail!("{master} is in FAULT but still holds the VIP {}", c.vip);
            }
            let what = format!("link down {master} ({side:?})");
            c.failover(what, successor, event, theory, taken, &[master])
        })
    }

    /// Starts `returning` again (after a crash or a SIGTERM): it removes a
    /// VIP left from a crash, then preempts `current` (higher priority).
    pub fn rejoin(&mut self, returning: &str, current: &str) -> Result<Failover> {
        self.step(format!("restart {returning}, preempting {current}"), |c| {
            let had_leftover = c.router(returning).has_vip(c.vip);
            let event = c.router_mut(returning).start()?;
            c.lab.mark_at(&format!("restart {returning}"), event);
            let mut f = c.preempted_by(returning, current, event, "rejoin")?;
            if had_leftover {
                let spans = c.router(returning).watch.held(c.vip);
                let removed = spans
                    .iter()
                    .filter_map(|h| h.to)
                    .find(|t| *t >= event.mono_ns);
                match removed {
                    Some(t) => f.leftover_removed_ns = Some(t - event.mono_ns),
                    None => bail!(
                        "{returning} restarted with the VIP {} left from its crash and never removed \
                         it before taking over again; spans {spans:?}",
                        c.vip
                    ),
                }
            }
            Ok(f)
        })
    }

    /// Brings `master`'s link back: it leaves FAULT and preempts `current`.
    pub fn link_restore(
        &mut self,
        master: &str,
        current: &str,
        side: LinkSide,
    ) -> Result<Failover> {
        self.step(format!("link up {master}, preempting {current}"), |c| {
            let event = c.router(master).link_up(side)?;
            c.lab
                .mark_at(&format!("link up {master} ({side:?})"), event);
            c.preempted_by(master, current, event, "link back")
        })
    }

    /// `returning` (higher priority) takes the VIP back from `current`:
    /// `current` stops advertising and drops the VIP at once.
    pub fn preempted_by(
        &mut self,
        returning: &str,
        current: &str,
        event: Stamp,
        what: &str,
    ) -> Result<Failover> {
        let (tk, now) = self.await_takeover(
            current,
            returning,
            event,
            Duration::from_nanos(self.mdi_ns(returning) * 3) + Duration::from_secs(3),
        )?;
        // `current` yields when the higher-priority advert arrives: allow
        // for one advert already on its way.
        let grace = late_tolerance(self.router(current).daemon);
        let vip_lag_ns = self.check_after(returning, event, &tk, grace, now, &[])?;
        Ok(Failover {
            what: format!("{what}: {returning} preempts {current}"),
            event,
            takeover: tk,
            theory_ns: None,
            outage: self.outage(event, now),
            leftover_removed_ns: None,
            vip_lag_ns,
        })
    }

    /// Stops the capture (checking it lost nothing) and the prober.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(p) = self.prober.take() {
            p.stop()?;
        }
        self.capture.stop()?;
        for r in &self.routers {
            r.watch.check_complete()?;
        }
        Ok(())
    }
}

/// Checks only xvrrpd promises (its status report, its VIP marker).
impl Cluster {
    /// `xvrrpd status --json` agrees with what the lab sees: the eBPF
    /// datapath is in use (the raw-socket one if the router was started
    /// with `--no-ebpf`), `master` is MASTER at its priority, every other
    /// running xvrrpd router is BACKUP and names `master` as the master.
    pub fn check_xvrrpd_status(&mut self, master: &str) -> Result<()> {
        let v6 = self.vip.is_ipv6();
        let inst = self.inst.name.clone();
        let master_prio = self.priority(master);
        let master_addr = self.router(master).addr(v6);
        for i in 0..self.routers.len() {
            let r = &mut self.routers[i];
            if r.daemon != Daemon::Xvrrpd || !r.is_running() {
                continue;
            }
            let mut rep = r.status()?;
            // The daemon starts on raw sockets and moves to eBPF once its
            // programs are verified and attached (~100–300 ms here).
            for _ in 0..50 {
                let loading = rep
                    .daemon
                    .datapath_fallback_reason
                    .as_deref()
                    .is_some_and(|why| why.contains("loading"));
                if !loading {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                rep = r.status()?;
            }
            if r.extra_args.iter().any(|a| a == "--no-ebpf") {
                if rep.daemon.datapath != "raw-socket" {
                    bail!(
                        "{}: started with --no-ebpf but runs on the {} datapath",
                        r.name,
                        rep.daemon.datapath
                    );
                }
            } else if rep.daemon.datapath != "ebpf" {
                bail!(
                    "{}: xvrrpd runs on the {} datapath ({}); the lab expects the eBPF one: \
                     build the binary with its eBPF object (without XVRRPD_EBPF=skip)",
                    r.name,
                    rep.daemon.datapath,
                    rep.daemon
                        .datapath_fallback_reason
                        .as_deref()
                        .unwrap_or("no reason given")
                );
            }
            let Some(st) = rep.instances.iter().find(|s| s.name == inst) else {
                bail!("{}: the status report has no instance {inst}", r.name);
            };
            let want = if r.name == master { "MASTER" } else { "BACKUP" };
            if st.state != want {
                bail!(
                    "{}: status says {} for {inst}, expected {want}",
                    r.name,
                    st.state
                );
            }
            if r.name == master && st.effective_priority != master_prio {
                bail!(
                    "{}: status says effective priority {}, configured {master_prio}",
                    r.name,
                    st.effective_priority
                );
            }
            // A VRRPv3/IPv6 master advertises from its link-local address;
            // compare IPv4 masters by address, IPv6 ones by priority only.
            if !v6 && st.master_address.as_deref() != Some(&master_addr.to_string()) {
                bail!(
                    "{}: status names {:?} as the master, expected {master_addr}",
                    r.name,
                    st.master_address
                );
            }
            if r.name != master && st.master_priority != Some(master_prio) {
                bail!(
                    "{}: status says the master's priority is {:?}, expected {master_prio}",
                    r.name,
                    st.master_priority
                );
            }
        }
        Ok(())
    }

    /// The VIP on `master` carries xvrrpd's marker (IFA_PROTO 112).
    pub fn check_vip_marker(&self, master: &str) -> Result<()> {
        let spans = self.router(master).watch.held(self.vip);
        match spans.last() {
            Some(h) if h.to.is_none() && h.proto == Some(xvrrpd::net::addr::XVRRPD_IFA_PROTO) => {
                Ok(())
            }
            Some(h) if h.to.is_none() => bail!(
                "{master}'s VIP {} has IFA_PROTO {:?}, not xvrrpd's marker {}",
                self.vip,
                h.proto,
                xvrrpd::net::addr::XVRRPD_IFA_PROTO
            ),
            _ => bail!("{master} does not hold the VIP {}", self.vip),
        }
    }

    /// xvrrpd's own record of a takeover agrees with the wire: its down
    /// timer was armed `theory_ns` after the kernel timestamp of the old
    /// master's last advert, fired within 2 ms of its deadline, and the
    /// VIPs and first GARP/NA have times.
    pub fn check_xvrrpd_timeline(&self, new: &str, f: &Failover) -> Result<()> {
        let r = self.router(new);
        let rep = r.status()?;
        let Some(st) = rep.instances.iter().find(|s| s.name == self.inst.name) else {
            bail!(
                "{new}: the status report has no instance {}",
                self.inst.name
            );
        };
        let Some(t) = st.transitions.iter().rev().find(|t| t.to == State::Master) else {
            bail!("{new}: no transition to MASTER in its status report");
        };
        let (Some(last), Some(deadline), Some(fired)) =
            (t.last_advert_ns, t.deadline_ns, t.fired_at_ns)
        else {
            bail!(
                "{new}: its transition to MASTER lacks last_advert_ns/deadline_ns/fired_at_ns: {t:?}"
            );
        };
        if let Some(theory) = f.theory_ns {
            let armed = deadline as i128 - last as i128;
            if (armed - theory as i128).abs() > 10_000 {
                bail!(
                    "{new}: down timer deadline − last advert = {}, the protocol says {}",
                    ms(armed),
                    ms(theory as i128)
                );
            }
        }
        let late = fired as i128 - deadline as i128;
        if !(0..=2_000_000).contains(&late) {
            bail!(
                "{new}: its down timer fired {} after its deadline",
                ms(late)
            );
        }
        if t.vips_done_ns.is_none() || t.first_garp_ns.is_none() {
            bail!("{new}: its transition to MASTER lacks vips_done_ns/first_garp_ns: {t:?}");
        }
        // The kernel timestamp of the last advert and the bridge's capture
        // time of the old master's last advert are the same frame.
        let last_rt = f.event.mono_to_rt(last) as i128;
        let wire = f.takeover.old_last.t_ns as i128;
        if (last_rt - wire).abs() > 1_000_000 {
            bail!(
                "{new}: last_advert_ns is {} away from the old master's last advert on the wire",
                ms(last_rt - wire)
            );
        }
        Ok(())
    }
}

/// One interop run (issue #6): r1 runs `first` at priority 150, r2 runs
/// `second` at 100, on `inst`. Election (r1), kill -9 of r1 (r2 takes over
/// within its down interval), r1 back (it drops its leftover VIP and
/// preempts), SIGTERM of r1 (r2 takes over within its skew), r1 back
/// again. Every step checks that after its bound only one router
/// advertises, holds the VIP and answers the client. Returns the cluster,
/// still running, and the figures.
pub fn interop_cycle(
    test: &str,
    inst: Instance,
    unicast: bool,
    first: Daemon,
    second: Daemon,
    edit: impl FnMut(&RouterNode, &mut RouterConfig) -> Result<()>,
) -> Result<(Cluster, Vec<Failover>)> {
    let (first, second) = (stand_in(first), stand_in(second));
    let mut c = Cluster::new(
        test,
        inst,
        &[("r1", first, 150), ("r2", second, 100)],
        unicast,
        edit,
    )?;
    let limit = Duration::from_nanos(c.mdi_ns("r1") * 2) + Duration::from_secs(5);
    c.start_all()?;
    c.expect_master("r1", limit)?;
    c.check_xvrrpd_status("r1")?;
    let mut steps = Vec::new();
    steps.push(c.crash("r1", "r2")?);
    c.check_xvrrpd_status("r2")?;
    steps.push(c.rejoin("r1", "r2")?);
    c.check_xvrrpd_status("r1")?;
    steps.push(c.terminate("r1", "r2")?);
    c.check_xvrrpd_status("r2")?;
    steps.push(c.rejoin("r1", "r2")?);
    c.check_xvrrpd_status("r1")?;
    for s in &steps {
        println!("{test} (r1 {first}, r2 {second}): {}", s.summary());
    }
    Ok((c, steps))
}

/// The daemon an interop test runs in xvrrpd's place: xvrrpd, or keepalived
/// when `XVRRPD_LAB_DAEMON=keepalived` asks to check the scenarios
/// themselves with keepalived on both sides (said in the output).
pub fn stand_in(d: Daemon) -> Daemon {
    if d == Daemon::Xvrrpd && Daemon::for_scenarios() == Daemon::Keepalived {
        eprintln!("XVRRPD_LAB_DAEMON=keepalived: keepalived stands in for xvrrpd");
        return Daemon::Keepalived;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yielding_masters_one_step_down_answer_is_not_a_second_master() {
        use crate::{
            analysis::AdvertSeen,
            pcap::{ChecksumKind, Mac},
        };
        const MS: u64 = 1_000_000;
        let (new, old) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let ad = |t_ns, mac| AdvertSeen {
            t_ns,
            mac,
            src: std::net::IpAddr::from([192, 0, 2, 1]),
            vrid: 1,
            priority: 100,
            version: 3,
            interval_cs: 1,
            ttl: 255,
            checksum: ChecksumKind::PseudoHeader,
        };
        let first = 1000 * MS;
        let left = |ads: Vec<AdvertSeen>| {
            without_step_down_replies(ads, new, first)
                .iter()
                .map(|a| (a.t_ns / MS, a.mac == old))
                .collect::<Vec<_>>()
        };
        // The answer 2.8 ms after the new master's first advert goes.
        assert_eq!(
            left(vec![
                ad(first, new),
                ad(first + 2_800_000, old),
                ad(first + 10 * MS, new)
            ]),
            [(1000, false), (1010, false)]
        );
        // A second one, or one after the bound, stays.
        assert_eq!(
            left(vec![ad(first + MS, old), ad(first + 3 * MS, old)]),
            [(1003, true)]
        );
        assert_eq!(left(vec![ad(first + 11 * MS, old)]), [(1011, true)]);
        // Before the new master's first advert, the old one was still master.
        assert_eq!(left(vec![ad(first - MS, old)]), [(999, true)]);
    }

    #[test]
    fn a_late_takeover_is_found_under_the_check_message() {
        let late = LateTakeover {
            deadline_mono: 10,
            first_advert_mono: 20,
            excess_ns: 5_000_000,
        };
        let e = check_bound(
            "r2 detecting r1's crash",
            42_000_000,
            36_000_000,
            EARLY_TOLERANCE,
            Duration::from_millis(1),
        )
        .unwrap_err()
        .context(late);
        let found = e.downcast_ref::<LateTakeover>().map(|l| l.excess_ns);
        assert_eq!(found, Some(5_000_000));
        let text = format!("{e:#}");
        assert!(
            text.starts_with("take-over 5.000 ms late beyond the tolerance: r2 detecting"),
            "{text}"
        );
    }
}
