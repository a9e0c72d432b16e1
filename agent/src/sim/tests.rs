//! Seeded fault sequences on a simulated LAN, checked after every fault.
//!
//! A failing seed panics with the seed and the event trace; rerun it with
//! `SIM_SEED=<seed> cargo test -p xvrrpd --lib sim::`.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::packet::Version;
use crate::vrrp::{NS_PER_CS, RouterConfig, TrackerConfig, TrackerId, TrackerKind, master_down_ns};

const BOOST: TrackerId = TrackerId(1);
const SCRIPT: TrackerId = TrackerId(2);

#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    preempt: bool,
    interval_cs: u16,
    link: LinkParams,
    priorities: Vec<u8>,
    boosts: Vec<i32>,
}

impl Scenario {
    fn random(seed: u64, preempt: bool) -> Self {
        let mut rng = Rng::new(seed ^ 0x5151_0000);
        let n = 2 + rng.below(4) as usize;
        let interval_cs = [1u16, 2, 5][rng.below(3) as usize];
        let lossy = rng.chance(0.5);
        let link = LinkParams {
            delay_ns: 20_000 + rng.below(1_000_000),
            jitter_ns: rng.below(500_000),
            loss: if lossy { 0.01 } else { 0.0 },
            dup: if rng.chance(0.5) { 0.05 } else { 0.0 },
        };
        // Distinct base priorities, so the expected winner is well defined.
        let mut pool: Vec<u8> = (1..=250).step_by(7).collect();
        let mut priorities = Vec::with_capacity(n);
        for _ in 0..n {
            let i = rng.below(pool.len() as u64) as usize;
            priorities.push(pool.swap_remove(i));
        }
        if preempt && rng.chance(0.2) {
            priorities[0] = 255;
        }
        let boosts = (0..n).map(|_| 1 + rng.below(60) as i32).collect();
        Self {
            seed,
            preempt,
            interval_cs,
            link,
            priorities,
            boosts,
        }
    }

    fn config(&self, i: usize) -> RouterConfig {
        let primary = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i as u8));
        let mut c = RouterConfig::new(
            format!("r{i}"),
            7,
            Version::V3,
            self.priorities[i],
            primary,
            vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        );
        c.advert_int_cs = self.interval_cs;
        c.nopreempt = !self.preempt;
        c.trackers = vec![
            TrackerConfig {
                id: BOOST,
                kind: TrackerKind::Binary,
                weight: self.boosts[i],
                reverse: false,
                initial: TrackState::Down,
            },
            TrackerConfig {
                id: SCRIPT,
                kind: TrackerKind::Binary,
                weight: 0,
                reverse: false,
                initial: TrackState::Up,
            },
        ];
        c
    }

    /// Master_Down_Interval of the slowest router plus the network's worst
    /// delay both ways and one advert interval of slack for loss and jitter.
    fn bound_ns(&self) -> u64 {
        let net = 2 * (2 * self.link.delay_ns + 2 * self.link.jitter_ns);
        master_down_ns(Version::V3, 1, self.interval_cs, 3)
            + net
            + 2 * u64::from(self.interval_cs) * NS_PER_CS
    }
}

/// What the generator knows about the world, to pick meaningful faults.
#[derive(Clone, Debug)]
struct World {
    running: Vec<bool>,
    link_up: Vec<bool>,
    boosted: Vec<bool>,
    script_ok: Vec<bool>,
    partitioned: bool,
}

fn pick_fault(rng: &mut Rng, w: &mut World) -> Fault {
    let n = w.running.len();
    loop {
        let i = rng.below(n as u64) as usize;
        let f = match rng.below(10) {
            0 if w.running[i] => {
                w.running[i] = false;
                Fault::Crash(i)
            }
            1 if w.running[i] => {
                w.running[i] = false;
                Fault::Stop(i)
            }
            2 if !w.running[i] => {
                w.running[i] = true;
                Fault::Restart(i)
            }
            3 if w.link_up[i] => {
                w.link_up[i] = false;
                Fault::LinkDown(i)
            }
            4 if !w.link_up[i] => {
                w.link_up[i] = true;
                Fault::LinkUp(i)
            }
            5 if !w.partitioned && n > 2 => {
                w.partitioned = true;
                Fault::Partition((0..n).map(|_| rng.below(2) as u8).collect())
            }
            6 if w.partitioned => {
                w.partitioned = false;
                Fault::Heal
            }
            7 => {
                w.boosted[i] = !w.boosted[i];
                Fault::Track {
                    node: i,
                    id: BOOST,
                    state: if w.boosted[i] {
                        TrackState::Up
                    } else {
                        TrackState::Down
                    },
                }
            }
            8 | 9 => {
                w.script_ok[i] = !w.script_ok[i];
                Fault::Track {
                    node: i,
                    id: SCRIPT,
                    state: if w.script_ok[i] {
                        TrackState::Up
                    } else {
                        TrackState::Down
                    },
                }
            }
            _ => continue,
        };
        return f;
    }
}

fn fail(sim: &Sim, sc: &Scenario, what: String) -> ! {
    let trace = sim.trace();
    let tail = &trace[trace.len().saturating_sub(120)..];
    panic!(
        "seed {} failed at {} ns: {what}\nscenario: {sc:?}\ntrace (last {} lines):\n{}",
        sc.seed,
        sim.now(),
        tail.len(),
        tail.join("\n")
    );
}

/// Checks the invariants that must hold `bound` after a fault.
fn check_converged(sim: &Sim, sc: &Scenario, prev_masters: &[NodeId], fault: &Fault) {
    let bound = sc.bound_ns();
    for &(s, g, since) in sim.open_overlaps() {
        if sim.now() - since > bound {
            fail(
                sim,
                sc,
                format!("segment {s} group {g}: two masters since {since}"),
            );
        }
    }
    for o in sim.overlaps() {
        if o.to_ns - o.from_ns > bound {
            fail(
                sim,
                sc,
                format!("masters overlapped too long: {o:?} (bound {bound})"),
            );
        }
    }
    for (_, _, members) in sim.components() {
        let eligible: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&i| sim.state(i) != Some(State::Fault))
            .collect();
        let masters: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&i| sim.state(i) == Some(State::Master))
            .collect();
        let want = usize::from(!eligible.is_empty());
        if masters.len() != want {
            fail(
                sim,
                sc,
                format!("component {members:?}: masters {masters:?}, expected {want}"),
            );
        }
        for &i in &members {
            let is_master = sim.state(i) == Some(State::Master);
            if sim.holds_vips(i) != is_master {
                fail(
                    sim,
                    sc,
                    format!(
                        "node {i}: VIPs {} but master {is_master}",
                        sim.holds_vips(i)
                    ),
                );
            }
        }
        let Some(&m) = masters.first() else {
            continue;
        };
        let prio = |i: NodeId| sim.router(i).map_or(0, Router::priority);
        if sc.preempt {
            let best = eligible.iter().map(|&i| prio(i)).max().unwrap_or(0);
            if prio(m) != best {
                fail(
                    sim,
                    sc,
                    format!(
                        "preemption: master {m} has priority {}, best is {best}",
                        prio(m)
                    ),
                );
            }
        } else if !matches!(fault, Fault::Heal) {
            // nopreempt: a master that is still eligible here keeps the role.
            if let Some(&old) = prev_masters.iter().find(|&&p| eligible.contains(&p))
                && old != m
            {
                fail(
                    sim,
                    sc,
                    format!("nopreempt: master moved from {old} to {m} after {fault:?}"),
                );
            }
        }
    }
}

fn run_scenario(seed: u64, preempt: bool, faults: usize) -> u64 {
    let sc = Scenario::random(seed, preempt);
    let mut sim = Sim::new(seed);
    sim.enable_trace();
    let n = sc.priorities.len();
    for i in 0..n {
        sim.add_router(sc.config(i), 0, sc.link)
            .expect("valid scenario config");
    }
    for i in 0..n {
        sim.start(i);
    }
    let bound = sc.bound_ns();
    let mut t = bound;
    sim.run_until(t);
    check_converged(&sim, &sc, &[], &Fault::Heal);
    let mut rng = Rng::new(seed ^ 0xfa17);
    let mut world = World {
        running: vec![true; n],
        link_up: vec![true; n],
        boosted: vec![false; n],
        script_ok: vec![true; n],
        partitioned: false,
    };
    for _ in 0..faults {
        let prev: Vec<NodeId> = sim.masters().into_iter().flat_map(|(_, _, m)| m).collect();
        let fault = pick_fault(&mut rng, &mut world);
        // Faults land at a random point of the advert cycle.
        t += rng.below(u64::from(sc.interval_cs) * NS_PER_CS);
        sim.schedule(t, fault.clone());
        t += bound;
        sim.run_until(t);
        check_converged(&sim, &sc, &prev, &fault);
    }
    sim.events()
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => default.collect(),
    }
}

#[test]
fn random_faults_with_preemption_elect_the_best_router() {
    for seed in seeds(0..1000) {
        run_scenario(seed, true, 20);
    }
}

#[test]
fn random_faults_with_nopreempt_keep_the_master() {
    for seed in seeds(1000..2000) {
        run_scenario(seed, false, 20);
    }
}

#[test]
fn same_seed_same_run() {
    assert_eq!(run_scenario(42, true, 10), run_scenario(42, true, 10));
}

#[test]
fn crash_of_master_fails_over_within_master_down_interval() {
    let sc = Scenario {
        seed: 0,
        preempt: true,
        interval_cs: 1,
        link: LinkParams::default(),
        priorities: vec![200, 100],
        boosts: vec![1, 1],
    };
    let mut sim = Sim::new(1);
    for i in 0..2 {
        sim.add_router(sc.config(i), 0, sc.link).expect("config");
        sim.start(i);
    }
    sim.run_until(100 * NS_PER_CS);
    assert_eq!(sim.state(0), Some(State::Master));
    let crash_at = sim.now() + 3_000_000;
    sim.schedule(crash_at, Fault::Crash(0));
    sim.run_until(crash_at);
    let last = sim
        .router(1)
        .and_then(|r| r.deadline(TimerKind::MasterDown))
        .expect("backup armed");
    let md = master_down_ns(Version::V3, 100, 1, 3);
    // The backup's deadline counts from the last advert's arrival.
    assert!(last <= crash_at + md);
    sim.run_until(last);
    assert_eq!(sim.state(1), Some(State::Master));
    assert!(sim.holds_vips(1));
}

#[test]
fn stop_of_master_hands_over_after_skew_only() {
    let sc = Scenario {
        seed: 0,
        preempt: true,
        interval_cs: 100,
        link: LinkParams::default(),
        priorities: vec![200, 100],
        boosts: vec![1, 1],
    };
    let mut sim = Sim::new(2);
    for i in 0..2 {
        sim.add_router(sc.config(i), 0, sc.link).expect("config");
        sim.start(i);
    }
    sim.run_until(5 * NS_PER_S);
    let stop_at = sim.now();
    sim.schedule(stop_at, Fault::Stop(0));
    let skew = crate::vrrp::skew_ns(Version::V3, 100, 100);
    sim.run_until(stop_at + 2 * LinkParams::default().delay_ns + skew);
    assert_eq!(sim.state(1), Some(State::Master));
}

#[test]
fn partition_elects_one_master_per_side_and_heal_resolves() {
    let sc = Scenario::random(7, true);
    let sc = Scenario {
        priorities: vec![50, 100, 150, 200],
        boosts: vec![1; 4],
        ..sc
    };
    let mut sim = Sim::new(3);
    for i in 0..4 {
        sim.add_router(sc.config(i), 0, sc.link).expect("config");
        sim.start(i);
    }
    let b = sc.bound_ns();
    sim.run_until(b);
    sim.schedule(b, Fault::Partition(vec![0, 0, 1, 1]));
    sim.run_until(3 * b);
    assert_eq!(sim.state(1), Some(State::Master));
    assert_eq!(sim.state(3), Some(State::Master));
    sim.schedule(3 * b, Fault::Heal);
    sim.run_until(5 * b);
    assert_eq!(sim.state(1), Some(State::Backup));
    assert_eq!(sim.state(3), Some(State::Master));
}

use crate::vrrp::NS_PER_S;
