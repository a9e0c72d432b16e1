//! VRRP timing theory and what the lab's recordings say against it.
//!
//! Wire times are the bridge capture's (CLOCK_REALTIME, one clock for all
//! frames); VIP times are the address watches' (CLOCK_MONOTONIC, one clock
//! for all namespaces). Times of one kind are only compared with each
//! other, or through a [`Stamp`](crate::clock::Stamp) taken at the event.

use std::{net::IpAddr, time::Duration};

use anyhow::{Result, bail};

use crate::{
    addr_watch::Held,
    clock::ms,
    kconf::Daemon,
    pcap::{ChecksumKind, Mac, WireEvent},
};

/// `Skew_Time`: VRRPv2 `(256 − prio) / 256` s; VRRPv3
/// `(256 − prio) × interval / 256`; in ns, not rounded.
pub fn skew_ns(version: u8, priority: u8, interval: Duration) -> u64 {
    let p = 256 - u64::from(priority);
    match version {
        2 => p * 1_000_000_000 / 256,
        _ => p * interval.as_nanos() as u64 / 256,
    }
}

/// `Master_Down_Interval = 3 × interval + Skew_Time`, in ns.
pub fn master_down_ns(version: u8, priority: u8, interval: Duration) -> u64 {
    3 * interval.as_nanos() as u64 + skew_ns(version, priority, interval)
}

/// How late after the protocol's bound a takeover may be seen on the wire
/// and still pass. xvrrpd: 2 ms (its promise). keepalived: 10 ms (what it
/// does in this lab is well inside that; see the baseline test's figures).
pub fn late_tolerance(daemon: Daemon) -> Duration {
    match daemon {
        Daemon::Xvrrpd => Duration::from_millis(2),
        Daemon::Keepalived => Duration::from_millis(10),
    }
}

/// How early a takeover may come: the wire time of the last advert is a
/// little before the backup's receive time, never after it.
pub const EARLY_TOLERANCE: Duration = Duration::from_micros(500);

/// An advert as seen on the bridge.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvertSeen {
    pub t_ns: u64,
    pub mac: Mac,
    pub src: IpAddr,
    pub vrid: u8,
    pub priority: u8,
    pub version: u8,
    pub interval_cs: u32,
    pub ttl: u8,
    pub checksum: ChecksumKind,
}

/// The adverts of one virtual router (VRID and family), in capture order.
pub fn adverts(events: &[WireEvent], vrid: u8, v6: bool) -> Vec<AdvertSeen> {
    events
        .iter()
        .filter_map(|e| {
            let a = e.advert()?;
            (a.vrid == vrid && a.src.is_ipv6() == v6 && a.kind == 1).then_some(AdvertSeen {
                t_ns: e.t_ns,
                mac: e.src_mac,
                src: a.src,
                vrid: a.vrid,
                priority: a.priority,
                version: a.version,
                interval_cs: a.interval_cs,
                ttl: a.ttl,
                checksum: a.checksum,
            })
        })
        .collect()
}

/// A change of master seen on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Takeover {
    /// The old master's last advert before the new master's first.
    pub old_last: AdvertSeen,
    /// The new master's first advert (priority > 0) after the event.
    pub new_first: AdvertSeen,
    /// The new master's first gratuitous ARP / unsolicited NA for the VIP
    /// at or after its first advert.
    pub announce_ns: Option<u64>,
    /// `new_first − old_last`.
    pub gap_ns: u64,
}

/// Finds the takeover from `old` to `new` after `after_rt`.
pub fn takeover(
    events: &[WireEvent],
    vrid: u8,
    vip: IpAddr,
    old: Mac,
    new: Mac,
    after_rt: u64,
) -> Result<Takeover> {
    let ads = adverts(events, vrid, vip.is_ipv6());
    let Some(new_first) = ads
        .iter()
        .find(|a| a.mac == new && a.t_ns >= after_rt && a.priority > 0)
        .copied()
    else {
        bail!(
            "no advert from {new} (the expected new master) on the wire after the event \
             ({} adverts of VRID {vrid} in the capture)",
            ads.len()
        );
    };
    let Some(old_last) = ads
        .iter()
        .rev()
        .find(|a| a.mac == old && a.t_ns < new_first.t_ns)
        .copied()
    else {
        bail!("no advert from {old} (the old master) before {new}'s first advert");
    };
    let announce_ns = events
        .iter()
        .find(|e| e.src_mac == new && e.t_ns >= new_first.t_ns && e.announces(vip))
        .map(|e| e.t_ns);
    Ok(Takeover {
        old_last,
        new_first,
        announce_ns,
        gap_ns: new_first.t_ns - old_last.t_ns,
    })
}

/// Checks `measured` against `theory` with the given tolerances.
pub fn check_bound(
    what: &str,
    measured_ns: u64,
    theory_ns: u64,
    early: Duration,
    late: Duration,
) -> Result<()> {
    let err = measured_ns as i128 - theory_ns as i128;
    if err > late.as_nanos() as i128 {
        bail!(
            "{what}: {} measured on the wire, the protocol says {}: {} late (tolerance {:?})",
            ms(measured_ns as i128),
            ms(theory_ns as i128),
            ms(err),
            late
        );
    }
    if -err > early.as_nanos() as i128 {
        bail!(
            "{what}: {} measured on the wire, the protocol says {}: {} early (tolerance {:?})",
            ms(measured_ns as i128),
            ms(theory_ns as i128),
            ms(-err),
            early
        );
    }
    Ok(())
}

/// A run of consecutive adverts with priority > 0 from one router.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvertRun {
    pub mac: Mac,
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: usize,
    pub priority: u8,
}

/// Who advertised as master in `[from_rt, to_rt]`, as runs in time order.
/// One master means one run; two routers both believing they are master
/// show as alternating runs.
pub fn advertisers(ads: &[AdvertSeen], from_rt: u64, to_rt: u64) -> Vec<AdvertRun> {
    let mut out: Vec<AdvertRun> = Vec::new();
    for a in ads
        .iter()
        .filter(|a| a.priority > 0 && a.t_ns >= from_rt && a.t_ns <= to_rt)
    {
        match out.last_mut() {
            Some(r) if r.mac == a.mac => {
                r.last_ns = a.t_ns;
                r.count += 1;
            }
            _ => out.push(AdvertRun {
                mac: a.mac,
                first_ns: a.t_ns,
                last_ns: a.t_ns,
                count: 1,
                priority: a.priority,
            }),
        }
    }
    out
}

/// Fails unless every advert with priority > 0 in the window comes from
/// `master`, and there is at least one.
pub fn check_sole_advertiser(
    ads: &[AdvertSeen],
    master: Mac,
    from_rt: u64,
    to_rt: u64,
    origin_rt: u64,
) -> Result<()> {
    let runs = advertisers(ads, from_rt, to_rt);
    if runs.len() == 1 && runs[0].mac == master {
        return Ok(());
    }
    bail!(
        "on the wire from +{:.1} ms to +{:.1} ms, expected adverts from {master} only; saw: {}",
        (from_rt as f64 - origin_rt as f64) / 1e6,
        (to_rt as f64 - origin_rt as f64) / 1e6,
        describe_runs(&runs, origin_rt)
    )
}

pub fn describe_runs(runs: &[AdvertRun], origin_rt: u64) -> String {
    if runs.is_empty() {
        return "no adverts".into();
    }
    runs.iter()
        .map(|r| {
            format!(
                "{} prio {} ×{} [+{:.1} … +{:.1} ms]",
                r.mac,
                r.priority,
                r.count,
                (r.first_ns as f64 - origin_rt as f64) / 1e6,
                (r.last_ns as f64 - origin_rt as f64) / 1e6
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a host held the VIP at any time in `[from, to]` (monotonic).
pub fn held_during(spans: &[Held], from: u64, to: u64) -> bool {
    spans
        .iter()
        .any(|h| h.from <= to && h.to.is_none_or(|t| t >= from))
}

/// Whether a host held the VIP during the whole of `[from, to]`.
pub fn held_throughout(spans: &[Held], from: u64, to: u64) -> bool {
    spans
        .iter()
        .any(|h| h.from <= from && h.to.is_none_or(|t| t >= to))
}

/// Largest gap between consecutive adverts from `mac` in a window.
pub fn max_advert_gap(ads: &[AdvertSeen], mac: Mac, from_rt: u64, to_rt: u64) -> Option<u64> {
    let ts: Vec<u64> = ads
        .iter()
        .filter(|a| a.mac == mac && a.priority > 0 && a.t_ns >= from_rt && a.t_ns <= to_rt)
        .map(|a| a.t_ns)
        .collect();
    ts.windows(2).map(|w| w[1] - w[0]).max()
}

/// The last advert from `mac` with priority `prio` before `before_rt`.
pub fn last_advert_with(
    ads: &[AdvertSeen],
    mac: Mac,
    prio: u8,
    before_rt: u64,
) -> Option<AdvertSeen> {
    ads.iter()
        .rev()
        .find(|a| a.mac == mac && a.priority == prio && a.t_ns < before_rt)
        .copied()
}

/// The first advert from `mac` with priority > 0 at or after `from_rt`.
pub fn first_advert_from(ads: &[AdvertSeen], mac: Mac, from_rt: u64) -> Option<AdvertSeen> {
    ads.iter()
        .find(|a| a.mac == mac && a.priority > 0 && a.t_ns >= from_rt)
        .copied()
}

/// Gratuitous ARPs / unsolicited NAs for `vip` from `mac` in a window.
pub fn announcements(
    events: &[WireEvent],
    vip: IpAddr,
    mac: Mac,
    from_rt: u64,
    to_rt: u64,
) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.src_mac == mac && e.t_ns >= from_rt && e.t_ns <= to_rt && e.announces(vip))
        .map(|e| e.t_ns)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theory_in_nanoseconds() {
        let i = Duration::from_millis(10);
        // 3 × 10 ms + 156/256 × 10 ms = 36.09375 ms.
        assert_eq!(master_down_ns(3, 100, i), 36_093_750);
        assert_eq!(skew_ns(3, 254, i), 78_125);
        // VRRPv2: the skew is in seconds whatever the interval.
        assert_eq!(skew_ns(2, 100, Duration::from_secs(1)), 609_375_000);
        assert_eq!(
            master_down_ns(2, 100, Duration::from_secs(1)),
            3_609_375_000
        );
    }

    #[test]
    fn runs_of_advertisers() {
        let a = Mac([2, 0, 0, 0, 0, 1]);
        let b = Mac([2, 0, 0, 0, 0, 2]);
        let ad = |t, mac, priority| AdvertSeen {
            t_ns: t,
            mac,
            src: "192.0.2.1".parse().unwrap(),
            vrid: 1,
            priority,
            version: 3,
            interval_cs: 1,
            ttl: 255,
            checksum: ChecksumKind::PseudoHeader,
        };
        let ads = vec![
            ad(1, a, 150),
            ad(2, a, 0),
            ad(3, b, 100),
            ad(4, a, 150),
            ad(5, b, 100),
        ];
        assert_eq!(advertisers(&ads, 0, 10).len(), 4);
        assert!(check_sole_advertiser(&ads, b, 2, 3, 0).is_ok());
        assert!(check_sole_advertiser(&ads, b, 2, 5, 0).is_err());
    }
}
