//! Fuzzes the VRRP decoder the way the datapath feeds it: arbitrary message
//! bytes with IPv4 or IPv6 addresses taken from the input. Decoding must
//! never panic, and whatever decodes must re-encode to bytes that decode to
//! the same advert.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use xvrrpd::packet::{self, V3Ipv4Checksum};
use xvrrpd_common::ChecksumForm;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (src, dst, msg) = if selector & 1 == 0 {
        if rest.len() < 8 {
            return;
        }
        let s = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
        let d = Ipv4Addr::new(rest[4], rest[5], rest[6], rest[7]);
        (IpAddr::V4(s), IpAddr::V4(d), &rest[8..])
    } else {
        if rest.len() < 32 {
            return;
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&rest[..16]);
        d.copy_from_slice(&rest[16..32]);
        (
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(d)),
            &rest[32..],
        )
    };
    let _ = packet::peek_header(msg, src.is_ipv4());
    if let Ok((advert, form)) = packet::decode(msg, src, dst) {
        let mode = if form == ChecksumForm::V3Plain {
            V3Ipv4Checksum::Plain
        } else {
            V3Ipv4Checksum::PseudoHeader
        };
        let bytes = packet::encode(&advert, src, dst, mode).expect("a decoded advert re-encodes");
        let (again, _) = packet::decode(&bytes, src, dst).expect("re-encoded advert decodes");
        assert_eq!(again, advert);
    }
});
