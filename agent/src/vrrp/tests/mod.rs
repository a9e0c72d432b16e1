//! One test per rule; the table in the module docs lists them. This file
//! holds the shared builders and action queries; the tests live in one
//! file per topic.

use std::net::IpAddr;

use super::*;
use crate::packet::{Advert, Auth, Version};

const S: u64 = NS_PER_S;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn cfg(version: Version, prio: u8) -> RouterConfig {
    let mut c = RouterConfig::new(
        "vi",
        51,
        version,
        prio,
        ip("192.0.2.10"),
        vec![ip("192.0.2.100")],
    );
    c.garp = GarpConfig::default();
    c
}

fn cfg6(prio: u8) -> RouterConfig {
    RouterConfig::new(
        "vi6",
        51,
        Version::V3,
        prio,
        ip("fe80::10"),
        vec![ip("fe80::100"), ip("2001:db8::100")],
    )
}

fn router(c: RouterConfig) -> Router {
    Router::new(c).expect("valid config")
}

/// A router started at t=0 (Backup unless owner).
fn started(c: RouterConfig) -> Router {
    let mut r = router(c);
    r.handle(0, Input::Startup);
    r
}

/// A router that became master through its down timer at `master_down`.
fn master(c: RouterConfig) -> (Router, u64) {
    let mut r = started(c);
    let t = r.deadline(TimerKind::MasterDown).expect("down timer armed");
    r.handle(t, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(r.state(), State::Master);
    (r, t)
}

fn advert_for(r: &Router, prio: u8) -> Advert {
    let c = r.config();
    Advert {
        version: c.version,
        vrid: c.vrid,
        priority: prio,
        interval_cs: c.advert_int_cs,
        addrs: c.vips.clone(),
        auth: c.auth,
    }
}

fn meta(ts: u64, src: &str) -> AdvertMeta {
    AdvertMeta {
        ts_ns: ts,
        src: ip(src),
        ttl: 255,
        unicast: false,
        addrs_not_carried: 0,
    }
}

fn rx(r: &mut Router, now: u64, ts: u64, src: &str, prio: u8) -> Vec<Action> {
    let advert = advert_for(r, prio);
    r.handle(
        now,
        Input::Advert(ReceivedAdvert {
            meta: meta(ts, src),
            advert,
        }),
    )
}

fn rx_adv(r: &mut Router, now: u64, m: AdvertMeta, advert: Advert) -> Vec<Action> {
    r.handle(now, Input::Advert(ReceivedAdvert { meta: m, advert }))
}

fn armed(actions: &[Action], kind: TimerKind) -> Option<u64> {
    actions.iter().rev().find_map(|a| match a {
        Action::ArmTimer { kind: k, at_ns } if *k == kind => Some(*at_ns),
        _ => None,
    })
}

fn adverts_sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert { priority, .. } => Some(*priority),
            _ => None,
        })
        .collect()
}

fn has(actions: &[Action], want: &Action) -> bool {
    actions.contains(want)
}

fn discarded(actions: &[Action]) -> Option<DiscardReason> {
    actions.iter().find_map(|a| match a {
        Action::Discarded(d) => Some(*d),
        _ => None,
    })
}

fn transition(actions: &[Action]) -> Option<&Transition> {
    actions.iter().find_map(|a| match a {
        Action::Transition(t) => Some(t),
        _ => None,
    })
}

fn tracker(
    id: u32,
    kind: TrackerKind,
    weight: i32,
    reverse: bool,
    initial: TrackState,
) -> TrackerConfig {
    TrackerConfig {
        id: TrackerId(id),
        kind,
        weight,
        reverse,
        initial,
    }
}

mod backup;
mod configuration;
mod gratuitous;
mod master;
mod receive;
mod reload;
mod startup;
mod sync_groups;
mod timers;
mod tracking;
