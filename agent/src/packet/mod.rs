//! VRRP advertisement codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 9568), IPv4 and IPv6.
//!
//! Pure: bytes in, typed values out. Decoding follows the same order of checks
//! as the kernel datapath so both classify a malformed advert identically.

pub mod checksum;
pub mod frame;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use xvrrpd_common::{ChecksumForm, MAX_MESSAGE_LEN, VRRP_AUTH_LEN, VRRP_HEADER_LEN};

/// VRRP message type: the only one defined.
pub const VRRP_TYPE_ADVERTISEMENT: u8 = 1;
/// VRRPv2 authentication types (RFC 2338 / keepalived).
pub const AUTH_NONE: u8 = 0;
pub const AUTH_PASS: u8 = 1;
pub const AUTH_AH: u8 = 2;

/// VRRPv2 authentication as carried in the advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    None,
    /// Simple text password, zero padded to 8 bytes.
    Pass([u8; 8]),
    /// IPsec AH: parsed so it can be reported; xvrrpd does not implement it.
    Ah([u8; 8]),
    /// Any other type, kept for diagnostics.
    Other(u8, [u8; 8]),
}

impl Auth {
    pub fn type_code(&self) -> u8 {
        match self {
            Auth::None => AUTH_NONE,
            Auth::Pass(_) => AUTH_PASS,
            Auth::Ah(_) => AUTH_AH,
            Auth::Other(t, _) => *t,
        }
    }

    pub fn data(&self) -> [u8; 8] {
        match self {
            Auth::None => [0; 8],
            Auth::Pass(d) | Auth::Ah(d) | Auth::Other(_, d) => *d,
        }
    }

    pub fn from_wire(kind: u8, data: [u8; 8]) -> Self {
        match kind {
            AUTH_NONE => Auth::None,
            AUTH_PASS => Auth::Pass(data),
            AUTH_AH => Auth::Ah(data),
            other => Auth::Other(other, data),
        }
    }

    /// keepalived's `auth_pass`: at most 8 bytes, zero padded.
    pub fn pass(password: &str) -> Self {
        let mut data = [0u8; 8];
        for (d, b) in data.iter_mut().zip(password.bytes()) {
            *d = b;
        }
        Auth::Pass(data)
    }
}

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// One VRRP advertisement, independent of its wire form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advert interval in centiseconds (VRRPv2 carries whole seconds).
    pub interval_cs: u16,
    /// Virtual addresses; all of one family, the family of the IP header.
    pub addrs: Vec<IpAddr>,
    /// VRRPv2 only; `Auth::None` for VRRPv3.
    pub auth: Auth,
}

/// How a VRRPv3-over-IPv4 checksum is computed when sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum V3Ipv4Checksum {
    /// keepalived's default: with the IPv4 pseudo-header.
    #[default]
    PseudoHeader,
    /// RFC 9568's text / keepalived `v3_checksum_as_v2`: message only.
    Plain,
    /// keepalived 1.3.5 and before over unicast (`old_unicast_checksum`):
    /// the pseudo-header with 224.0.0.18 as its destination, whatever the
    /// peer, so every peer gets the same bytes.
    OldUnicast,
}

/// The pseudo-header destination of [`V3Ipv4Checksum::OldUnicast`].
pub fn old_unicast_checksum_group() -> IpAddr {
    IpAddr::from(xvrrpd_common::OLD_UNICAST_CHECKSUM_GROUP)
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated advert: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("advert of {0} bytes is longer than the {MAX_MESSAGE_LEN}-byte limit")]
    TooLong(usize),
    #[error("unsupported VRRP version {version} over {family}")]
    BadVersion { version: u8, family: &'static str },
    #[error("unknown VRRP message type {0} (only 1, advertisement, exists)")]
    BadType(u8),
    #[error("advert carries no addresses (count 0)")]
    ZeroAddrCount,
    #[error("advert interval is 0")]
    ZeroInterval,
    #[error("bad checksum")]
    BadChecksum,
    #[error("source and destination addresses are of different families")]
    MixedFamilies,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    #[error("an advert needs at least one address")]
    NoAddresses,
    #[error("{0} addresses do not fit in one advert (max 255 and {MAX_MESSAGE_LEN} bytes)")]
    TooManyAddresses(usize),
    #[error("address {0} is not of the advert's family")]
    WrongFamily(IpAddr),
    #[error("VRRPv2 is IPv4 only")]
    V2OverIpv6,
    #[error(
        "advert interval {0} cs cannot be sent: VRRPv2 needs whole seconds 1..255, VRRPv3 1..4095 cs"
    )]
    BadInterval(u16),
}

/// The fixed header: enough to find the instance before the full checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    pub addr_count: u8,
}

fn family_name(v4: bool) -> &'static str {
    if v4 { "IPv4" } else { "IPv6" }
}

/// Reads version, type and VRID; the first checks both validators make.
pub fn peek_header(msg: &[u8], ipv4: bool) -> Result<Header, DecodeError> {
    if msg.len() < VRRP_HEADER_LEN {
        return Err(DecodeError::Truncated {
            have: msg.len(),
            need: VRRP_HEADER_LEN,
        });
    }
    let version = match (msg[0] >> 4, ipv4) {
        (2, true) => Version::V2,
        (3, _) => Version::V3,
        (v, _) => {
            return Err(DecodeError::BadVersion {
                version: v,
                family: family_name(ipv4),
            });
        }
    };
    let kind = msg[0] & 0x0f;
    if kind != VRRP_TYPE_ADVERTISEMENT {
        return Err(DecodeError::BadType(kind));
    }
    Ok(Header {
        version,
        vrid: msg[1],
        priority: msg[2],
        addr_count: msg[3],
    })
}

/// Length of the message a header announces (header, addresses, v2 auth).
pub fn expected_len(version: Version, ipv4: bool, count: u8) -> usize {
    let alen = if ipv4 { 4 } else { 16 };
    VRRP_HEADER_LEN
        + usize::from(count) * alen
        + if version == Version::V2 {
            VRRP_AUTH_LEN
        } else {
            0
        }
}

/// Decodes and verifies one VRRP message; `src`/`dst` are the IP header's.
pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<(Advert, ChecksumForm), DecodeError> {
    let ipv4 = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(_), IpAddr::V6(_)) => false,
        _ => return Err(DecodeError::MixedFamilies),
    };
    let header = peek_header(msg, ipv4)?;
    if header.addr_count == 0 {
        return Err(DecodeError::ZeroAddrCount);
    }
    let need = expected_len(header.version, ipv4, header.addr_count);
    if need > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong(need));
    }
    if msg.len() < need {
        return Err(DecodeError::Truncated {
            have: msg.len(),
            need,
        });
    }
    let msg = &msg[..need];
    let interval_cs = match header.version {
        Version::V2 => u16::from(msg[5]) * 100,
        Version::V3 => u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff,
    };
    if interval_cs == 0 {
        return Err(DecodeError::ZeroInterval);
    }
    let form = match header.version {
        Version::V2 if checksum::verifies(msg, 0) => ChecksumForm::V2Message,
        Version::V2 => return Err(DecodeError::BadChecksum),
        Version::V3 => {
            if checksum::verifies(msg, checksum::pseudo_header_sum(src, dst, need)) {
                ChecksumForm::V3PseudoHeader
            } else if ipv4 && checksum::verifies(msg, 0) {
                ChecksumForm::V3Plain
            } else if ipv4
                && dst != old_unicast_checksum_group()
                && checksum::verifies(
                    msg,
                    checksum::pseudo_header_sum(src, old_unicast_checksum_group(), need),
                )
            {
                // Whether it is welcome is the receiver's to say.
                ChecksumForm::V3OldUnicast
            } else {
                return Err(DecodeError::BadChecksum);
            }
        }
    };
    let addr_bytes = &msg[VRRP_HEADER_LEN
        ..VRRP_HEADER_LEN + usize::from(header.addr_count) * if ipv4 { 4 } else { 16 }];
    let addrs = parse_addrs(addr_bytes, ipv4);
    let auth = match header.version {
        Version::V2 => {
            let mut data = [0u8; 8];
            data.copy_from_slice(&msg[need - VRRP_AUTH_LEN..need]);
            Auth::from_wire(msg[4], data)
        }
        Version::V3 => Auth::None,
    };
    Ok((
        Advert {
            version: header.version,
            vrid: header.vrid,
            priority: header.priority,
            interval_cs,
            addrs,
            auth,
        },
        form,
    ))
}

/// Addresses packed back to back in network order.
pub fn parse_addrs(bytes: &[u8], ipv4: bool) -> Vec<IpAddr> {
    if ipv4 {
        bytes
            .chunks_exact(4)
            .map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])))
            .collect()
    } else {
        bytes
            .chunks_exact(16)
            .map(|c| {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            })
            .collect()
    }
}

/// Encodes `advert` as sent from `src` to `dst` (used only for the checksum).
pub fn encode(
    advert: &Advert,
    src: IpAddr,
    dst: IpAddr,
    v3_ipv4: V3Ipv4Checksum,
) -> Result<Vec<u8>, EncodeError> {
    let ipv4 = src.is_ipv4();
    if advert.addrs.is_empty() {
        return Err(EncodeError::NoAddresses);
    }
    if let Some(bad) = advert.addrs.iter().find(|a| a.is_ipv4() != ipv4) {
        return Err(EncodeError::WrongFamily(*bad));
    }
    let count = u8::try_from(advert.addrs.len())
        .map_err(|_| EncodeError::TooManyAddresses(advert.addrs.len()))?;
    let len = expected_len(advert.version, ipv4, count);
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooManyAddresses(advert.addrs.len()));
    }
    let mut out = Vec::with_capacity(len);
    out.push((advert.version.number() << 4) | VRRP_TYPE_ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    out.push(count);
    match advert.version {
        Version::V2 => {
            if !ipv4 {
                return Err(EncodeError::V2OverIpv6);
            }
            let cs = advert.interval_cs;
            if cs == 0 || !cs.is_multiple_of(100) || cs / 100 > 255 {
                return Err(EncodeError::BadInterval(cs));
            }
            out.push(advert.auth.type_code());
            out.push((cs / 100) as u8);
        }
        Version::V3 => {
            let cs = advert.interval_cs;
            if cs == 0 || cs > 0x0fff {
                return Err(EncodeError::BadInterval(cs));
            }
            out.extend_from_slice(&cs.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0]);
    for a in &advert.addrs {
        match a {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
    if advert.version == Version::V2 {
        out.extend_from_slice(&advert.auth.data());
    }
    let pseudo = match (advert.version, ipv4, v3_ipv4) {
        (Version::V2, _, _) | (Version::V3, true, V3Ipv4Checksum::Plain) => 0,
        (Version::V3, true, V3Ipv4Checksum::OldUnicast) => {
            checksum::pseudo_header_sum(src, old_unicast_checksum_group(), len)
        }
        (Version::V3, _, _) => checksum::pseudo_header_sum(src, dst, len),
    };
    let sum = checksum::compute(&out, pseudo);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn sample(version: Version, addrs: &[&str]) -> Advert {
        Advert {
            version,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: addrs.iter().map(|a| v4(a)).collect(),
            auth: Auth::None,
        }
    }

    #[test]
    fn v2_round_trips_with_pass_auth() {
        let mut a = sample(Version::V2, &["192.168.1.10"]);
        a.auth = Auth::pass("secret");
        let bytes = encode(
            &a,
            v4("192.168.1.2"),
            v4("224.0.0.18"),
            V3Ipv4Checksum::default(),
        )
        .expect("encode");
        assert_eq!(bytes.len(), 20);
        let (b, form) = decode(&bytes, v4("192.168.1.2"), v4("224.0.0.18")).expect("decode");
        assert_eq!(a, b);
        assert_eq!(form, ChecksumForm::V2Message);
    }

    #[test]
    fn v3_ipv4_both_checksum_forms_are_accepted_and_reported() {
        let a = sample(Version::V3, &["10.0.0.1", "10.0.0.2"]);
        let (s, d) = (v4("10.0.0.9"), v4("224.0.0.18"));
        for (mode, want) in [
            (V3Ipv4Checksum::PseudoHeader, ChecksumForm::V3PseudoHeader),
            (V3Ipv4Checksum::Plain, ChecksumForm::V3Plain),
        ] {
            let bytes = encode(&a, s, d, mode).expect("encode");
            let (b, form) = decode(&bytes, s, d).expect("decode");
            assert_eq!(a, b);
            assert_eq!(form, want);
        }
    }

    #[test]
    fn the_old_unicast_checksum_names_the_group_for_every_peer() {
        let a = sample(Version::V3, &["10.0.0.1"]);
        let s = v4("10.0.0.9");
        let bytes = encode(&a, s, v4("10.0.0.7"), V3Ipv4Checksum::OldUnicast).expect("encode");
        for peer in ["10.0.0.7", "10.0.0.8"] {
            let (b, form) = decode(&bytes, s, v4(peer)).expect("decode");
            assert_eq!((b, form), (a.clone(), ChecksumForm::V3OldUnicast), "{peer}");
        }
        // Sent to the group itself, the two forms are one.
        let group = v4("224.0.0.18");
        let mcast = encode(&a, s, group, V3Ipv4Checksum::OldUnicast).expect("encode");
        assert_eq!(
            mcast,
            encode(&a, s, group, V3Ipv4Checksum::PseudoHeader).expect("encode")
        );
        assert_eq!(
            decode(&mcast, s, group).expect("decode").1,
            ChecksumForm::V3PseudoHeader
        );
        // Today's form to a peer is not mistaken for the old one.
        let new = encode(&a, s, v4("10.0.0.7"), V3Ipv4Checksum::PseudoHeader).expect("encode");
        assert_eq!(
            decode(&new, s, v4("10.0.0.7")).expect("decode").1,
            ChecksumForm::V3PseudoHeader
        );
        assert_eq!(
            decode(&new, s, v4("10.0.0.8")),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn v3_ipv6_uses_pseudo_header() {
        let a = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 200,
            interval_cs: 1,
            addrs: vec![v4("fe80::1"), v4("2001:db8::1")],
            auth: Auth::None,
        };
        let (s, d) = (v4("fe80::2"), v4("ff02::12"));
        let mut bytes = encode(&a, s, d, V3Ipv4Checksum::Plain).expect("encode");
        assert_eq!(
            decode(&bytes, s, d).expect("decode").1,
            ChecksumForm::V3PseudoHeader
        );
        // The pseudo-header binds the source: another source fails.
        assert_eq!(
            decode(&bytes, v4("fe80::3"), d),
            Err(DecodeError::BadChecksum)
        );
        bytes[2] ^= 1;
        assert_eq!(decode(&bytes, s, d), Err(DecodeError::BadChecksum));
    }

    #[test]
    fn decode_reports_each_malformation() {
        let (s, d) = (v4("10.0.0.9"), v4("224.0.0.18"));
        let good = encode(
            &sample(Version::V3, &["10.0.0.1"]),
            s,
            d,
            V3Ipv4Checksum::default(),
        )
        .expect("encode");
        assert!(matches!(
            decode(&good[..7], s, d),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&good[..11], s, d),
            Err(DecodeError::Truncated { .. })
        ));
        let mut b = good.clone();
        b[0] = 0x41;
        assert!(matches!(
            decode(&b, s, d),
            Err(DecodeError::BadVersion { version: 4, .. })
        ));
        b[0] = 0x32;
        assert_eq!(decode(&b, s, d), Err(DecodeError::BadType(2)));
        let mut b = good.clone();
        b[3] = 0;
        assert_eq!(decode(&b, s, d), Err(DecodeError::ZeroAddrCount));
        let mut b = good.clone();
        b[4] = 0xf0;
        b[5] = 0;
        assert_eq!(decode(&b, s, d), Err(DecodeError::ZeroInterval));
        assert_eq!(
            decode(&good, s, v4("fe80::1")),
            Err(DecodeError::MixedFamilies)
        );
        let v6 = v4("fe80::1");
        let mut b = good.clone();
        b[0] = 0x21;
        assert!(matches!(
            decode(&b, v6, v6),
            Err(DecodeError::BadVersion { version: 2, .. })
        ));
    }

    #[test]
    fn encode_refuses_what_the_wire_cannot_carry() {
        let (s, d) = (v4("10.0.0.9"), v4("224.0.0.18"));
        let mut a = sample(Version::V2, &["10.0.0.1"]);
        a.interval_cs = 50;
        assert_eq!(
            encode(&a, s, d, V3Ipv4Checksum::default()),
            Err(EncodeError::BadInterval(50))
        );
        let mut a = sample(Version::V3, &[]);
        assert_eq!(
            encode(&a, s, d, V3Ipv4Checksum::default()),
            Err(EncodeError::NoAddresses)
        );
        a.addrs = vec![v4("fe80::1")];
        assert!(matches!(
            encode(&a, s, d, V3Ipv4Checksum::default()),
            Err(EncodeError::WrongFamily(_))
        ));
        let a = sample(Version::V2, &["10.0.0.1"]);
        let v6 = v4("fe80::1");
        let mut a6 = a.clone();
        a6.addrs = vec![v6];
        assert_eq!(
            encode(&a6, v6, v6, V3Ipv4Checksum::default()),
            Err(EncodeError::V2OverIpv6)
        );
    }
}
