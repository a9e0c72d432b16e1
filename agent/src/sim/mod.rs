//! A deterministic LAN simulator for the real [`Router`] state machine.
//!
//! Routers sit on segments; an advert one sends reaches every other router
//! on its segment that is alive, has its link up and is on the same side of
//! any partition, after a per-link delay plus jitter, subject to loss and
//! duplication. Time is a virtual nanosecond clock driven by a binary heap of
//! timestamped events; randomness comes from a seeded PRNG, so a seed
//! reproduces a run exactly.
//!
//! Faults ([`Fault`]) are scheduled like any event: crash (`kill -9`: no
//! priority-0 advert, VIPs gone with the host), graceful stop, restart, link
//! down/up (each router tracks its own interface with weight 0, as keepalived
//! does), partition/heal, and tracker changes (priority weights, scripts).
//!
//! The hot path allocates nothing per event: adverts are delivered by
//! reference from a per-router template ([`Router::on_advert`]) and the
//! action buffer is reused.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::IpAddr;

use crate::packet::Advert;
use crate::vrrp::{
    Action, AdvertMeta, ConfigError, Input, Router, RouterConfig, State, TimerKind, TrackState,
    TrackerId,
};

#[cfg(test)]
mod tests;

/// Index of a router in the simulation.
pub type NodeId = usize;

/// The tracker id every simulated router uses for its own interface.
pub const IFACE_TRACKER: TrackerId = TrackerId(u32::MAX);

/// SplitMix64: small, fast, and good enough to drive fault sequences.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() <= p
    }
}

/// A router's attachment to its segment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkParams {
    /// One-way delay contributed by this link (sender's plus receiver's).
    pub delay_ns: u64,
    /// Extra uniform random delay, 0..jitter.
    pub jitter_ns: u64,
    /// Probability an advert crossing this link is lost.
    pub loss: f64,
    /// Probability an advert crossing this link is delivered twice.
    pub dup: f64,
}

impl Default for LinkParams {
    fn default() -> Self {
        Self {
            delay_ns: 50_000,
            jitter_ns: 0,
            loss: 0.0,
            dup: 0.0,
        }
    }
}

/// Things that happen to the network or the hosts.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The host dies: no goodbye advert, its VIPs vanish with it.
    Crash(NodeId),
    /// SIGTERM: priority-0 advert, then the daemon is gone.
    Stop(NodeId),
    /// The daemon starts again (after a crash or stop).
    Restart(NodeId),
    LinkDown(NodeId),
    LinkUp(NodeId),
    /// Splits the network: routers talk only within the same group.
    Partition(Vec<u8>),
    Heal,
    /// A tracked object of a router changes.
    Track {
        node: NodeId,
        id: TrackerId,
        state: TrackState,
    },
}

#[derive(Clone, Copy, Debug)]
enum EvKind {
    Timer {
        node: u32,
        kind: TimerKind,
        generation: u32,
    },
    Deliver {
        to: u32,
        from: u32,
        priority: u8,
        interval_cs: u16,
    },
    Fault(u32),
}

#[derive(Clone, Copy, Debug)]
struct Ev {
    at: u64,
    seq: u64,
    kind: EvKind,
}

impl PartialEq for Ev {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ev {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Clone, Debug)]
struct Node {
    cfg: RouterConfig,
    router: Option<Router>,
    segment: u32,
    group: u8,
    link: LinkParams,
    link_up: bool,
    holds_vips: bool,
    generations: [u32; TimerKind::COUNT],
    /// Tracker states of the world, kept across crashes and restarts.
    world: Vec<(TrackerId, TrackState)>,
}

/// A period during which one component had more than one master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub segment: u32,
    pub group: u8,
    pub from_ns: u64,
    pub to_ns: u64,
}

/// The simulated LAN.
#[derive(Debug)]
pub struct Sim {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Ev>>,
    nodes: Vec<Node>,
    adverts: Vec<Advert>,
    segments: Vec<Vec<u32>>,
    faults: Vec<Fault>,
    rng: Rng,
    out: Vec<Action>,
    events: u64,
    monitor: bool,
    trace: Option<Vec<String>>,
    open_overlaps: Vec<(u32, u8, u64)>,
    overlaps: Vec<Overlap>,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            adverts: Vec::new(),
            segments: Vec::new(),
            faults: Vec::new(),
            rng: Rng::new(seed),
            out: Vec::new(),
            events: 0,
            monitor: true,
            trace: None,
            open_overlaps: Vec::new(),
            overlaps: Vec::new(),
        }
    }

    /// Master-overlap monitoring (on by default; the benchmark turns it off).
    pub fn set_monitor(&mut self, on: bool) {
        self.monitor = on;
    }

    /// Keeps a readable trace of faults and transitions.
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    pub fn trace(&self) -> &[String] {
        self.trace.as_deref().unwrap_or(&[])
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// Queue events handled so far (stale timer entries included).
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a router (not started). An interface tracker with weight 0 is
    /// added so that link down puts it in Fault, as keepalived does for the
    /// instance's own interface.
    pub fn add_router(
        &mut self,
        mut cfg: RouterConfig,
        segment: u32,
        link: LinkParams,
    ) -> Result<NodeId, ConfigError> {
        cfg.trackers.push(crate::vrrp::TrackerConfig {
            id: IFACE_TRACKER,
            kind: crate::vrrp::TrackerKind::Binary,
            weight: 0,
            reverse: false,
            initial: TrackState::Up,
        });
        // Validate now so that restarts cannot fail later.
        Router::new(cfg.clone())?;
        let id = self.nodes.len();
        let world = cfg.trackers.iter().map(|t| (t.id, t.initial)).collect();
        self.adverts.push(Advert {
            version: cfg.version,
            vrid: cfg.vrid,
            priority: cfg.priority,
            interval_cs: cfg.advert_int_cs,
            addrs: cfg.vips.clone(),
            auth: cfg.auth,
        });
        let seg = segment as usize;
        if self.segments.len() <= seg {
            self.segments.resize(seg + 1, Vec::new());
        }
        self.segments[seg].push(id as u32);
        self.nodes.push(Node {
            cfg,
            router: None,
            segment,
            group: 0,
            link,
            link_up: true,
            holds_vips: false,
            generations: [0; TimerKind::COUNT],
            world,
        });
        Ok(id)
    }

    pub fn router(&self, node: NodeId) -> Option<&Router> {
        self.nodes.get(node).and_then(|n| n.router.as_ref())
    }

    pub fn config(&self, node: NodeId) -> Option<&RouterConfig> {
        self.nodes.get(node).map(|n| &n.cfg)
    }

    /// State of a router; `None` when its daemon is not running.
    pub fn state(&self, node: NodeId) -> Option<State> {
        self.router(node).map(Router::state)
    }

    /// Whether the host currently has the VIPs configured.
    pub fn holds_vips(&self, node: NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.holds_vips)
    }

    /// Periods with more than one master in a component, closed so far.
    pub fn overlaps(&self) -> &[Overlap] {
        &self.overlaps
    }

    /// Overlaps still going on: (segment, group, since).
    pub fn open_overlaps(&self) -> &[(u32, u8, u64)] {
        &self.open_overlaps
    }

    /// Schedules a fault at an absolute time (not before now).
    pub fn schedule(&mut self, at_ns: u64, fault: Fault) {
        let idx = self.faults.len() as u32;
        self.faults.push(fault);
        self.push(at_ns.max(self.now), EvKind::Fault(idx));
    }

    /// Starts a router's daemon now.
    pub fn start(&mut self, node: NodeId) {
        self.apply_fault(Fault::Restart(node));
    }

    /// Runs every event up to and including `t_ns`; the clock ends at `t_ns`.
    pub fn run_until(&mut self, t_ns: u64) {
        while let Some(Reverse(ev)) = self.queue.peek().copied() {
            if ev.at > t_ns {
                break;
            }
            self.queue.pop();
            self.now = ev.at;
            self.events += 1;
            self.dispatch(ev.kind);
        }
        self.now = self.now.max(t_ns);
    }

    fn push(&mut self, at: u64, kind: EvKind) {
        self.seq += 1;
        self.queue.push(Reverse(Ev {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn dispatch(&mut self, kind: EvKind) {
        match kind {
            EvKind::Timer {
                node,
                kind,
                generation,
            } => {
                let n = node as usize;
                if self.nodes[n].generations[kind.index()] != generation {
                    return;
                }
                self.feed(n, Input::TimerFired(kind));
            }
            EvKind::Deliver {
                to,
                from,
                priority,
                interval_cs,
            } => self.deliver(to as usize, from as usize, priority, interval_cs),
            EvKind::Fault(i) => {
                if let Some(f) = self.faults.get(i as usize).cloned() {
                    self.apply_fault(f);
                }
            }
        }
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        na.segment == nb.segment
            && na.group == nb.group
            && na.link_up
            && nb.link_up
            && na.router.is_some()
            && nb.router.is_some()
    }

    fn deliver(&mut self, to: usize, from: usize, priority: u8, interval_cs: u16) {
        // A packet in flight still arrives if its sender died meanwhile.
        let (nf, nt) = (&self.nodes[from], &self.nodes[to]);
        if nf.group != nt.group || !nf.link_up || !nt.link_up || nt.router.is_none() {
            return;
        }
        let meta = AdvertMeta {
            ts_ns: self.now,
            src: self.nodes[from].cfg.primary_addr,
            ttl: xvrrpd_common::VRRP_TTL,
            unicast: false,
            addrs_not_carried: 0,
        };
        let advert = &mut self.adverts[from];
        advert.priority = priority;
        advert.interval_cs = interval_cs;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if let Some(r) = self.nodes[to].router.as_mut() {
            r.on_advert(self.now, meta, &self.adverts[from], &mut out);
        }
        self.apply_actions(to, &mut out);
        self.out = out;
    }

    fn feed(&mut self, node: usize, input: Input) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if let Some(r) = self.nodes[node].router.as_mut() {
            r.handle_into(self.now, input, &mut out);
        }
        self.apply_actions(node, &mut out);
        self.out = out;
    }

    fn apply_actions(&mut self, node: usize, out: &mut Vec<Action>) {
        let mut master_changed = false;
        for action in out.drain(..) {
            match action {
                Action::SendAdvert {
                    priority,
                    interval_cs,
                } => self.broadcast(node, priority, interval_cs),
                Action::ArmTimer { kind, at_ns } => {
                    let g = &mut self.nodes[node].generations[kind.index()];
                    *g = g.wrapping_add(1);
                    let generation = *g;
                    self.push(
                        at_ns.max(self.now),
                        EvKind::Timer {
                            node: node as u32,
                            kind,
                            generation,
                        },
                    );
                }
                Action::CancelTimer(kind) => {
                    let g = &mut self.nodes[node].generations[kind.index()];
                    *g = g.wrapping_add(1);
                }
                Action::AddVips => self.nodes[node].holds_vips = true,
                Action::RemoveVips => self.nodes[node].holds_vips = false,
                Action::Transition(t) => {
                    master_changed |= t.from == State::Master || t.to == State::Master;
                    if let Some(trace) = self.trace.as_mut() {
                        trace.push(format!(
                            "{:>12} ns  node {node}: {:?} -> {:?} ({:?}, prio {})",
                            t.at_ns, t.from, t.to, t.reason, t.priority
                        ));
                    }
                }
                _ => {}
            }
        }
        if master_changed && self.monitor {
            self.check_overlaps();
        }
    }

    fn broadcast(&mut self, from: usize, priority: u8, interval_cs: u16) {
        let seg = self.nodes[from].segment as usize;
        for i in 0..self.segments[seg].len() {
            let to = self.segments[seg][i] as usize;
            if to == from || !self.reachable(from, to) {
                continue;
            }
            let (la, lb) = (self.nodes[from].link, self.nodes[to].link);
            if self.rng.chance(la.loss) || self.rng.chance(lb.loss) {
                continue;
            }
            let copies = if self.rng.chance(la.dup) || self.rng.chance(lb.dup) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = self.rng.below(la.jitter_ns + lb.jitter_ns);
                let at = self.now + la.delay_ns + lb.delay_ns + jitter;
                self.push(
                    at,
                    EvKind::Deliver {
                        to: to as u32,
                        from: from as u32,
                        priority,
                        interval_cs,
                    },
                );
            }
        }
    }

    fn note(&mut self, text: String) {
        let now = self.now;
        if let Some(trace) = self.trace.as_mut() {
            trace.push(format!("{now:>12} ns  {text}"));
        }
    }

    fn set_world(&mut self, node: usize, id: TrackerId, state: TrackState) {
        if let Some(slot) = self.nodes[node].world.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = state;
        }
    }

    fn apply_fault(&mut self, fault: Fault) {
        self.note(format!("fault {fault:?}"));
        match fault {
            Fault::Crash(n) if n < self.nodes.len() => {
                let node = &mut self.nodes[n];
                node.router = None;
                node.holds_vips = false;
                for g in &mut node.generations {
                    *g = g.wrapping_add(1);
                }
            }
            Fault::Stop(n) if n < self.nodes.len() => {
                self.feed(n, Input::Shutdown);
                let node = &mut self.nodes[n];
                node.router = None;
                for g in &mut node.generations {
                    *g = g.wrapping_add(1);
                }
            }
            Fault::Restart(n) if n < self.nodes.len() => {
                if self.nodes[n].router.is_some() {
                    return;
                }
                let mut cfg = self.nodes[n].cfg.clone();
                for t in &mut cfg.trackers {
                    if let Some((_, s)) = self.nodes[n].world.iter().find(|(i, _)| *i == t.id) {
                        t.initial = *s;
                    }
                }
                // The configuration was validated when the router was added.
                if let Ok(r) = Router::new(cfg) {
                    self.nodes[n].router = Some(r);
                    self.feed(n, Input::Startup);
                }
            }
            Fault::LinkDown(n) if n < self.nodes.len() => {
                self.nodes[n].link_up = false;
                self.set_world(n, IFACE_TRACKER, TrackState::Down);
                self.feed(
                    n,
                    Input::Track {
                        id: IFACE_TRACKER,
                        state: TrackState::Down,
                    },
                );
            }
            Fault::LinkUp(n) if n < self.nodes.len() => {
                self.nodes[n].link_up = true;
                self.set_world(n, IFACE_TRACKER, TrackState::Up);
                self.feed(
                    n,
                    Input::Track {
                        id: IFACE_TRACKER,
                        state: TrackState::Up,
                    },
                );
            }
            Fault::Partition(groups) => {
                for (node, g) in self
                    .nodes
                    .iter_mut()
                    .zip(groups.iter().copied().chain(std::iter::repeat(0)))
                {
                    node.group = g;
                }
            }
            Fault::Heal => {
                for node in &mut self.nodes {
                    node.group = 0;
                }
            }
            Fault::Track { node, id, state } if node < self.nodes.len() => {
                self.set_world(node, id, state);
                self.feed(node, Input::Track { id, state });
            }
            _ => {}
        }
        if self.monitor {
            self.check_overlaps();
        }
    }

    /// Components: routers that can hear each other (same segment and
    /// group, daemon running, link up). Returns (segment, group, members).
    pub fn components(&self) -> Vec<(u32, u8, Vec<NodeId>)> {
        let mut comps: Vec<(u32, u8, Vec<NodeId>)> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.router.is_none() || !n.link_up {
                continue;
            }
            match comps
                .iter_mut()
                .find(|(s, g, _)| *s == n.segment && *g == n.group)
            {
                Some(c) => c.2.push(i),
                None => comps.push((n.segment, n.group, vec![i])),
            }
        }
        comps
    }

    /// Masters of every component.
    pub fn masters(&self) -> Vec<(u32, u8, Vec<NodeId>)> {
        self.components()
            .into_iter()
            .map(|(s, g, members)| {
                let masters = members
                    .into_iter()
                    .filter(|&i| self.state(i) == Some(State::Master))
                    .collect();
                (s, g, masters)
            })
            .collect()
    }

    fn check_overlaps(&mut self) {
        let now = self.now;
        let multi: Vec<(u32, u8)> = self
            .masters()
            .into_iter()
            .filter(|(_, _, m)| m.len() > 1)
            .map(|(s, g, _)| (s, g))
            .collect();
        let mut closed = Vec::new();
        self.open_overlaps.retain(|&(s, g, since)| {
            if multi.contains(&(s, g)) {
                true
            } else {
                closed.push(Overlap {
                    segment: s,
                    group: g,
                    from_ns: since,
                    to_ns: now,
                });
                false
            }
        });
        self.overlaps.extend(closed);
        for (s, g) in multi {
            if !self
                .open_overlaps
                .iter()
                .any(|&(os, og, _)| (os, og) == (s, g))
            {
                self.open_overlaps.push((s, g, now));
            }
        }
    }

    /// The primary address of a router.
    pub fn addr(&self, node: NodeId) -> Option<IpAddr> {
        self.nodes.get(node).map(|n| n.cfg.primary_addr)
    }
}
