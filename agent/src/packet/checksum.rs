//! The Internet checksum (RFC 1071) and the pseudo-headers VRRP uses.

use std::net::IpAddr;

use xvrrpd_common::IPPROTO_VRRP;

/// Ones' complement sum of `bytes` as big-endian 16-bit words (odd tail padded).
pub fn sum(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    let mut acc: u32 = 0;
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a 32-bit accumulator into the 16-bit ones' complement sum.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Sum of the IPv4 or IPv6 pseudo-header for a VRRP message of `len` bytes.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum(&s.octets()) + sum(&d.octets()) + u32::from(IPPROTO_VRRP) + (len as u32 & 0xffff)
        }
        (s, d) => {
            let s = to_v6_octets(s);
            let d = to_v6_octets(d);
            let len = len as u32;
            sum(&s) + sum(&d) + (len >> 16) + (len & 0xffff) + u32::from(IPPROTO_VRRP)
        }
    }
}

fn to_v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Checksum field value for `bytes` (checksum field zeroed) plus `extra` sum.
pub fn compute(bytes: &[u8], extra: u32) -> u16 {
    !fold(sum(bytes).wrapping_add(extra))
}

/// Whether `bytes` (checksum field included) plus `extra` verifies.
pub fn verifies(bytes: &[u8], extra: u32) -> bool {
    fold(sum(bytes).wrapping_add(extra)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 §3 numerical example.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&bytes)), 0xddf2);
    }

    #[test]
    fn computed_checksum_verifies() {
        let mut msg = vec![0x31, 7, 100, 1, 0, 100, 0, 0, 10, 0, 0, 1];
        let c = compute(&msg, 0);
        msg[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(&msg, 0));
        msg[2] = 101;
        assert!(!verifies(&msg, 0));
    }
}
