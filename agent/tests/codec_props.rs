//! Property tests of the VRRP codec.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use xvrrpd::packet::{self, Advert, Auth, V3Ipv4Checksum, Version};
use xvrrpd_common::ChecksumForm;

fn v4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn v6() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![Just(Auth::None), any::<[u8; 8]>().prop_map(Auth::Pass)]
}

/// (advert, src, dst) for VRRPv2 over IPv4.
fn v2_case() -> impl Strategy<Value = (Advert, IpAddr, IpAddr)> {
    (
        any::<u8>(),
        any::<u8>(),
        1u16..=255,
        prop::collection::vec(v4(), 1..=40),
        auth(),
        v4(),
        v4(),
    )
        .prop_map(|(vrid, priority, secs, addrs, auth, s, d)| {
            (
                Advert {
                    version: Version::V2,
                    vrid,
                    priority,
                    interval_cs: secs * 100,
                    addrs,
                    auth,
                },
                s,
                d,
            )
        })
}

/// (advert, src, dst) for VRRPv3 over either family.
fn v3_case() -> impl Strategy<Value = (Advert, IpAddr, IpAddr)> {
    let body = (any::<u8>(), any::<u8>(), 1u16..=4095);
    prop_oneof![
        (
            body.clone(),
            prop::collection::vec(v4(), 1..=40),
            v4(),
            v4()
        ),
        (body, prop::collection::vec(v6(), 1..=20), v6(), v6()),
    ]
    .prop_map(|((vrid, priority, interval_cs), addrs, s, d)| {
        (
            Advert {
                version: Version::V3,
                vrid,
                priority,
                interval_cs,
                addrs,
                auth: Auth::None,
            },
            s,
            d,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v2_encode_decode_is_identity((adv, s, d) in v2_case()) {
        let bytes = packet::encode(&adv, s, d, V3Ipv4Checksum::default()).expect("encodable");
        let (back, form) = packet::decode(&bytes, s, d).expect("decodes");
        prop_assert_eq!(back, adv);
        prop_assert_eq!(form, ChecksumForm::V2Message);
    }

    #[test]
    fn v3_encode_decode_is_identity((adv, s, d) in v3_case(), plain in any::<bool>()) {
        let mode = if plain { V3Ipv4Checksum::Plain } else { V3Ipv4Checksum::PseudoHeader };
        let bytes = packet::encode(&adv, s, d, mode).expect("encodable");
        let (back, form) = packet::decode(&bytes, s, d).expect("decodes");
        prop_assert_eq!(back, adv);
        let want = if s.is_ipv4() && plain { ChecksumForm::V3Plain } else { ChecksumForm::V3PseudoHeader };
        // A plain checksum can also verify with the pseudo-header by chance;
        // decode prefers the pseudo-header form then.
        if form != want {
            prop_assert_eq!(want, ChecksumForm::V3Plain);
        }
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), s in prop_oneof![v4(), v6()], d in prop_oneof![v4(), v6()]) {
        let _ = packet::decode(&bytes, s, d);
        let _ = packet::peek_header(&bytes, s.is_ipv4());
    }

    #[test]
    fn decode_never_panics_on_plausible_headers(
        first in prop_oneof![Just(0x21u8), Just(0x31u8), any::<u8>()],
        count in any::<u8>(),
        rest in prop::collection::vec(any::<u8>(), 0..300),
        s in prop_oneof![v4(), v6()],
    ) {
        let mut bytes = vec![first, 1, 100, count];
        bytes.extend(rest);
        let d = if s.is_ipv4() { "224.0.0.18".parse().expect("addr") } else { "ff02::12".parse().expect("addr") };
        let _ = packet::decode(&bytes, s, d);
    }

    #[test]
    fn single_bit_flip_is_rejected_or_changes_the_advert(
        (adv, s, d) in prop_oneof![v2_case(), v3_case()],
        bit in any::<prop::sample::Index>(),
    ) {
        let bytes = packet::encode(&adv, s, d, V3Ipv4Checksum::default()).expect("encodable");
        let original = packet::decode(&bytes, s, d).expect("decodes");
        let mut flipped = bytes.clone();
        let i = bit.index(bytes.len() * 8);
        flipped[i / 8] ^= 1 << (i % 8);
        match packet::decode(&flipped, s, d) {
            Err(_) => {}
            Ok(other) => prop_assert_ne!(other, original, "bit {} flipped unnoticed", i),
        }
    }

    #[test]
    fn v2_and_v6_single_bit_flips_outside_count_are_always_detected(
        (adv, s, d) in prop_oneof![v2_case(), v3_case().prop_filter("IPv6", |(_, s, _)| s.is_ipv6())],
        bit in any::<prop::sample::Index>(),
    ) {
        // The ones' complement sum catches every single-bit error when only
        // one checksum form is accepted and the length is unchanged.
        let bytes = packet::encode(&adv, s, d, V3Ipv4Checksum::default()).expect("encodable");
        let i = bit.index(bytes.len() * 8);
        prop_assume!(i / 8 != 3);
        let mut flipped = bytes.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        prop_assert!(packet::decode(&flipped, s, d).is_err());
    }
}
