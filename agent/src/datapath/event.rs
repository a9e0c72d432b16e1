//! The one place the datapath's records become typed adverts.
//!
//! The kernel programs and the raw-socket receiver both produce
//! [`AdvertEvent`]s (a `#[repr(C)]` record with flag bits); everything past
//! the datapath sees a [`Received`] advert: which instance it is for, the
//! decoded message and its receive metadata. The kernel's [`ClaimEvent`]s
//! (a foreign MAC announcing one of our VIPs) become [`Claim`]s.

use std::net::IpAddr;

use xvrrpd_common::{
    AdvertEvent, ChecksumForm, ClaimEvent, EVENT_FLAG_UNICAST, FAMILY_IPV4, QuietAdvert, VridKey,
};

use crate::{
    packet::{self, Advert, Auth, Version},
    vrrp::{AdvertMeta, ReceivedAdvert},
};

/// A valid advert and the (interface, family, VRID) it arrived for.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub key: VridKey,
    pub advert: ReceivedAdvert,
    /// The advert as the kernel compares later ones with it: written back
    /// when the state machine says a repeat of it only re-arms the down
    /// timer ([`crate::vrrp::Router::quiet_master`]).
    pub fingerprint: QuietAdvert,
    /// Its checksum was keepalived 1.3.5's unicast one (accepted only where
    /// the instance allows it).
    pub old_checksum: bool,
}

/// Decodes one datapath record.
pub fn decode(ev: &AdvertEvent) -> Received {
    let ipv4 = ev.family == FAMILY_IPV4;
    let src = if ipv4 {
        IpAddr::from([ev.src[0], ev.src[1], ev.src[2], ev.src[3]])
    } else {
        IpAddr::from(ev.src)
    };
    let version = if ev.version == 2 {
        Version::V2
    } else {
        Version::V3
    };
    let addr_bytes = usize::from(ev.addr_bytes).min(ev.addrs.len());
    let carried = (addr_bytes / if ipv4 { 4 } else { 16 }) as u8;
    Received {
        key: VridKey::new(ev.ifindex, ev.family, ev.vrid),
        fingerprint: QuietAdvert::of_event(ev),
        old_checksum: ev.checksum_form == ChecksumForm::V3OldUnicast as u8,
        advert: ReceivedAdvert {
            meta: AdvertMeta {
                ts_ns: ev.ts_ns,
                src,
                ttl: ev.ttl,
                unicast: ev.flags & EVENT_FLAG_UNICAST != 0,
                addrs_not_carried: ev.addr_count.saturating_sub(carried),
            },
            advert: Advert {
                version,
                vrid: ev.vrid,
                priority: ev.priority,
                interval_cs: ev.interval_cs,
                addrs: packet::parse_addrs(&ev.addrs[..addr_bytes], ipv4),
                auth: Auth::from_wire(ev.auth_type, ev.auth_data),
            },
        },
    }
}

/// Another MAC claimed one of the VIPs we hold as master on `ifindex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub mac: [u8; 6],
    /// Kernel receive time (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
}

/// Decodes one claim record.
pub fn decode_claim(ev: &ClaimEvent) -> Claim {
    let addr = if ev.family == FAMILY_IPV4 {
        IpAddr::from([ev.addr[0], ev.addr[1], ev.addr[2], ev.addr[3]])
    } else {
        IpAddr::from(ev.addr)
    };
    Claim {
        ifindex: ev.ifindex,
        addr,
        mac: ev.mac,
        ts_ns: ev.ts_ns,
    }
}

/// `aa:bb:cc:dd:ee:ff`, for logs and status.
pub fn mac_string(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use xvrrpd_common::{EVENT_FLAG_ADDRS_TRUNCATED, FAMILY_IPV6};

    use super::*;

    fn event_v4() -> AdvertEvent {
        let mut ev = AdvertEvent::zeroed();
        ev.ts_ns = 42;
        ev.ifindex = 7;
        ev.family = FAMILY_IPV4;
        ev.version = 2;
        ev.vrid = 51;
        ev.priority = 100;
        ev.interval_cs = 100;
        ev.ttl = 255;
        ev.auth_type = 1;
        ev.auth_data = *b"secret\0\0";
        ev.src[..4].copy_from_slice(&[192, 0, 2, 11]);
        ev.addrs[..8].copy_from_slice(&[192, 0, 2, 100, 192, 0, 2, 101]);
        ev.addr_bytes = 8;
        ev.addr_count = 2;
        ev
    }

    #[test]
    fn ipv4_v2_with_auth() {
        let r = decode(&event_v4());
        assert_eq!(r.key, VridKey::new(7, FAMILY_IPV4, 51));
        assert_eq!(r.advert.meta.ts_ns, 42);
        assert_eq!(r.advert.meta.src, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)));
        assert!(!r.advert.meta.unicast);
        assert_eq!(r.advert.advert.version, Version::V2);
        assert_eq!(r.advert.advert.auth, Auth::Pass(*b"secret\0\0"));
        assert_eq!(
            r.advert.advert.addrs,
            vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 101))
            ]
        );
    }

    #[test]
    fn addresses_beyond_the_record_are_counted() {
        let mut ev = event_v4();
        ev.addr_count = 200;
        ev.addr_bytes = xvrrpd_common::EVENT_ADDR_BYTES as u16;
        let r = decode(&ev);
        assert_eq!(r.advert.advert.addrs.len(), 64);
        assert_eq!(r.advert.meta.addrs_not_carried, 136);
    }

    #[test]
    fn unicast_flag_and_other_flags() {
        let mut ev = event_v4();
        ev.flags = EVENT_FLAG_ADDRS_TRUNCATED;
        assert!(!decode(&ev).advert.meta.unicast);
        ev.flags |= EVENT_FLAG_UNICAST;
        assert!(decode(&ev).advert.meta.unicast);
    }

    #[test]
    fn ipv6_v3_and_an_addr_count_past_the_buffer() {
        let mut ev = AdvertEvent::zeroed();
        ev.family = FAMILY_IPV6;
        ev.version = 3;
        ev.src = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        ev.addrs[..16].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        // A record claiming more bytes than it carries is cut, not trusted.
        ev.addr_bytes = u16::MAX;
        ev.addr_count = 1;
        let r = decode(&ev);
        assert_eq!(r.advert.meta.addrs_not_carried, 0);
        assert_eq!(r.advert.advert.version, Version::V3);
        assert_eq!(r.advert.advert.auth, Auth::None);
        assert_eq!(r.advert.meta.src, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            r.advert.advert.addrs[0],
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn claims_of_both_families() {
        let mut ev = ClaimEvent {
            ts_ns: 9,
            ifindex: 3,
            family: FAMILY_IPV4,
            _pad0: [0; 3],
            addr: [0; 16],
            mac: [2, 0, 0, 0, 0, 0xab],
            _pad1: [0; 2],
        };
        ev.addr[..4].copy_from_slice(&[192, 0, 2, 100]);
        let c = decode_claim(&ev);
        assert_eq!(c.addr, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)));
        assert_eq!((c.ifindex, c.ts_ns), (3, 9));
        assert_eq!(mac_string(&c.mac), "02:00:00:00:00:ab");
        ev.family = FAMILY_IPV6;
        ev.addr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            decode_claim(&ev).addr,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
