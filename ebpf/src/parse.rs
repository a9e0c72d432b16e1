//! Packet classification shared by the XDP and TC programs.
//!
//! Written for the verifier: every packet read is preceded by an explicit
//! bounds check against `data_end`, and every loop has a constant bound.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    maps::{HashMap, RingBuf},
};
use xvrrpd_common::{
    AdvertEvent, ChecksumForm, Counter, EVENT_ADDR_BYTES, EVENT_FLAG_ADDRS_TRUNCATED,
    EVENT_FLAG_UNICAST, FAMILY_IPV4, FAMILY_IPV6, IPPROTO_VRRP, MAX_MESSAGE_LEN,
    VRID_FLAG_CHECK_TTL, VRRP_AUTH_LEN, VRRP_HEADER_LEN, VRRP_TTL, VridConfig, VridKey,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV6_HLEN: usize = 40;
const MAX_MESSAGE_WORDS: usize = MAX_MESSAGE_LEN / 4;
const EVENT_ADDR_WORDS: usize = EVENT_ADDR_BYTES / 4;

pub enum Outcome {
    NotVrrp,
    Counted(Counter),
}

/// Where the VRRP message sits and what the IP header said about it.
struct IpInfo {
    family: u8,
    ttl: u8,
    /// Offset of source address; destination follows (4 or 16 bytes later).
    addr_off: usize,
    vrrp_off: usize,
    msg_len: usize,
}

#[inline(always)]
fn ptr_at<T>(data: usize, data_end: usize, off: usize) -> Option<*const T> {
    if data + off + core::mem::size_of::<T>() > data_end {
        return None;
    }
    Some((data + off) as *const T)
}

#[inline(always)]
fn byte(data: usize, data_end: usize, off: usize) -> Option<u8> {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<u8>(data, data_end, off).map(|p| unsafe { *p })
}

#[inline(always)]
fn be16(data: usize, data_end: usize, off: usize) -> Option<u16> {
    // SAFETY: bounds checked by ptr_at; unaligned read.
    ptr_at::<u16>(data, data_end, off).map(|p| u16::from_be(unsafe { p.read_unaligned() }))
}

/// Raw 32-bit word as it sits in memory (for checksums and address copies).
#[inline(always)]
fn word(data: usize, data_end: usize, off: usize) -> Option<u32> {
    // SAFETY: bounds checked by ptr_at; unaligned read.
    ptr_at::<u32>(data, data_end, off).map(|p| unsafe { p.read_unaligned() })
}

/// L2 + L3 parse. `None` for anything that is not VRRP.
#[inline(always)]
fn ip_header(data: usize, data_end: usize) -> Option<Result<IpInfo, Counter>> {
    let mut off = ETH_HLEN;
    let mut proto = be16(data, data_end, 12)?;
    if proto == ETH_P_IP {
        return ipv4_header(data, data_end, off);
    }
    if proto == ETH_P_IPV6 {
        return ipv6_header(data, data_end, off);
    }
    // Up to two VLAN tags (802.1Q, or QinQ with an 802.1ad outer tag).
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16(data, data_end, off + 2)?;
        off += 4;
        if proto == ETH_P_8021Q {
            proto = be16(data, data_end, off + 2)?;
            off += 4;
        }
        if proto == ETH_P_IP {
            return ipv4_header(data, data_end, off);
        }
        if proto == ETH_P_IPV6 {
            return ipv6_header(data, data_end, off);
        }
    }
    None
}

#[inline(always)]
fn ipv4_header(data: usize, data_end: usize, off: usize) -> Option<Result<IpInfo, Counter>> {
    if byte(data, data_end, off + 9)? != IPPROTO_VRRP {
        return None;
    }
    let vihl = byte(data, data_end, off)?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Some(Err(Counter::BadLength));
    }
    let total = be16(data, data_end, off + 2)? as usize;
    if be16(data, data_end, off + 6)? & 0x3fff != 0 {
        return Some(Err(Counter::Fragment));
    }
    if total < ihl || data + off + total > data_end {
        return Some(Err(Counter::BadLength));
    }
    Some(Ok(IpInfo {
        family: FAMILY_IPV4,
        ttl: byte(data, data_end, off + 8)?,
        addr_off: off + 12,
        vrrp_off: off + ihl,
        msg_len: total - ihl,
    }))
}

#[inline(always)]
fn ipv6_header(data: usize, data_end: usize, off: usize) -> Option<Result<IpInfo, Counter>> {
    // Only VRRP directly after the fixed header; extension headers are not
    // used by VRRP senders and are left to the stack.
    if byte(data, data_end, off + 6)? != IPPROTO_VRRP {
        return None;
    }
    let payload = be16(data, data_end, off + 4)? as usize;
    if data + off + IPV6_HLEN + payload > data_end {
        return Some(Err(Counter::BadLength));
    }
    Some(Ok(IpInfo {
        family: FAMILY_IPV6,
        ttl: byte(data, data_end, off + 7)?,
        addr_off: off + 8,
        vrrp_off: off + IPV6_HLEN,
        msg_len: payload,
    }))
}

/// TC only: whether a non-linear skb should be pulled before classifying
/// (it looks like VRRP but the linear part is too short to judge).
#[inline(always)]
pub fn needs_pull(data: usize, data_end: usize) -> bool {
    matches!(ip_header(data, data_end), Some(Err(Counter::BadLength)))
}

/// Ones' complement sum of `len` bytes (a multiple of 4) as 32-bit words.
#[inline(always)]
fn sum_words(data: usize, data_end: usize, off: usize, len: usize) -> Option<u64> {
    let mut sum: u64 = 0;
    let words = len / 4;
    for i in 0..MAX_MESSAGE_WORDS {
        if i >= words {
            break;
        }
        sum += word(data, data_end, off + i * 4)? as u64;
    }
    Some(sum)
}

/// Sum of the source and destination addresses (the pseudo-header's addresses).
#[inline(always)]
fn sum_addrs(data: usize, data_end: usize, ip: &IpInfo) -> Option<u64> {
    let len = if ip.family == FAMILY_IPV4 { 8 } else { 32 };
    let mut sum: u64 = 0;
    for i in 0..8 {
        if i * 4 >= len {
            break;
        }
        sum += word(data, data_end, ip.addr_off + i * 4)? as u64;
    }
    Some(sum)
}

/// Folds a 64-bit one's complement accumulator to 16 bits.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Validates a VRRP packet and delivers it; returns the counter to bump.
#[inline(always)]
pub fn classify(
    data: usize,
    data_end: usize,
    ifindex: u32,
    vrids: &HashMap<VridKey, VridConfig>,
    events: &RingBuf,
) -> Outcome {
    let ip = match ip_header(data, data_end) {
        None => return Outcome::NotVrrp,
        Some(Err(c)) => return Outcome::Counted(c),
        Some(Ok(ip)) => ip,
    };
    Outcome::Counted(
        match check_and_deliver(data, data_end, ifindex, &ip, vrids, events) {
            Some(c) => c,
            // A read past data_end after the length checks: the packet lied.
            None => Counter::BadLength,
        },
    )
}

#[inline(always)]
fn check_and_deliver(
    data: usize,
    data_end: usize,
    ifindex: u32,
    ip: &IpInfo,
    vrids: &HashMap<VridKey, VridConfig>,
    events: &RingBuf,
) -> Option<Counter> {
    let v = ip.vrrp_off;
    if ip.msg_len < VRRP_HEADER_LEN {
        return Some(Counter::BadLength);
    }
    let vt = byte(data, data_end, v)?;
    let version = vt >> 4;
    if !(version == 3 || (version == 2 && ip.family == FAMILY_IPV4)) {
        return Some(Counter::BadVersion);
    }
    if vt & 0x0f != 1 {
        return Some(Counter::BadType);
    }
    let vrid = byte(data, data_end, v + 1)?;
    // SAFETY: read-only lookup of a plain value type.
    let cfg = match unsafe { vrids.get(VridKey::new(ifindex, ip.family, vrid)) } {
        Some(cfg) => *cfg,
        None => return Some(Counter::UnknownVrid),
    };
    if cfg.flags & VRID_FLAG_CHECK_TTL != 0 && ip.ttl != VRRP_TTL {
        return Some(Counter::BadTtl);
    }
    let count = byte(data, data_end, v + 3)? as usize;
    if count == 0 {
        return Some(Counter::BadAddrCount);
    }
    let alen = if ip.family == FAMILY_IPV4 { 4 } else { 16 };
    let addrs_len = count * alen;
    let expected = VRRP_HEADER_LEN + addrs_len + if version == 2 { VRRP_AUTH_LEN } else { 0 };
    if ip.msg_len < expected || expected > MAX_MESSAGE_LEN {
        return Some(Counter::BadLength);
    }
    let interval_cs: u16 = if version == 2 {
        byte(data, data_end, v + 5)? as u16 * 100
    } else {
        be16(data, data_end, v + 4)? & 0x0fff
    };
    if interval_cs == 0 {
        return Some(Counter::BadInterval);
    }

    let msg_sum = sum_words(data, data_end, v, expected)?;
    let form = if version == 2 {
        if fold(msg_sum) != 0xffff {
            return Some(Counter::BadChecksum);
        }
        ChecksumForm::V2Message
    } else {
        // Pseudo-header words as they sit in memory: protocol and length are
        // added in the same byte order as the packet words read above.
        let tail: u64 = if ip.family == FAMILY_IPV4 {
            u32::from_le_bytes([0, IPPROTO_VRRP, (expected >> 8) as u8, expected as u8]) as u64
        } else {
            u32::from_le_bytes((expected as u32).to_be_bytes()) as u64
                + u32::from_le_bytes([0, 0, 0, IPPROTO_VRRP]) as u64
        };
        let pseudo = sum_addrs(data, data_end, ip)? + tail;
        if fold(msg_sum + pseudo) == 0xffff {
            ChecksumForm::V3PseudoHeader
        } else if ip.family == FAMILY_IPV4 && fold(msg_sum) == 0xffff {
            ChecksumForm::V3Plain
        } else {
            return Some(Counter::BadChecksum);
        }
    };

    let mut auth_type = 0u8;
    let mut auth_data = [0u8; 8];
    if version == 2 {
        auth_type = byte(data, data_end, v + 4)?;
        if auth_type != cfg.auth_type {
            return Some(Counter::BadAuth);
        }
        let a = v + VRRP_HEADER_LEN + addrs_len;
        let lo = word(data, data_end, a)?;
        let hi = word(data, data_end, a + 4)?;
        auth_data[..4].copy_from_slice(&lo.to_ne_bytes());
        auth_data[4..].copy_from_slice(&hi.to_ne_bytes());
        if auth_type == 1 && auth_data != cfg.auth_data {
            return Some(Counter::BadAuth);
        }
        if cfg.v2_interval_s != 0 && interval_cs != cfg.v2_interval_s as u16 * 100 {
            return Some(Counter::BadInterval);
        }
    }

    let priority = byte(data, data_end, v + 2)?;
    let Some(mut entry) = events.reserve::<AdvertEvent>(0) else {
        return Some(Counter::RingbufFull);
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot;
    // every field is written before submit.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).ifindex = ifindex;
        (*ev).family = ip.family;
        (*ev).version = version;
        (*ev).vrid = vrid;
        (*ev).priority = priority;
        (*ev).interval_cs = interval_cs;
        (*ev).addr_count = count as u8;
        (*ev).auth_type = auth_type;
        (*ev).checksum_form = form as u8;
        (*ev).ttl = ip.ttl;
        (*ev)._pad0 = 0;
        (*ev)._pad1 = [0; 6];
        (*ev).auth_data = auth_data;
        let copied = if addrs_len > EVENT_ADDR_BYTES {
            EVENT_ADDR_BYTES
        } else {
            addrs_len
        };
        (*ev).addr_bytes = copied as u16;
        let mut flags = 0u8;
        if addrs_len > EVENT_ADDR_BYTES {
            flags |= EVENT_FLAG_ADDRS_TRUNCATED;
        }
        let mut src = [0u32; 4];
        let mut dst = [0u32; 4];
        let awords = alen / 4;
        for i in 0..4 {
            if i < awords {
                src[i] = match word(data, data_end, ip.addr_off + i * 4) {
                    Some(w) => w,
                    None => 0,
                };
                dst[i] = match word(data, data_end, ip.addr_off + alen + i * 4) {
                    Some(w) => w,
                    None => 0,
                };
            }
        }
        let dst_first = dst[0].to_ne_bytes()[0];
        let multicast = if ip.family == FAMILY_IPV4 {
            dst_first & 0xf0 == 0xe0
        } else {
            dst_first == 0xff
        };
        if !multicast {
            flags |= EVENT_FLAG_UNICAST;
        }
        (*ev).flags = flags;
        (*ev).src = core::mem::transmute::<[u32; 4], [u8; 16]>(src);
        (*ev).dst = core::mem::transmute::<[u32; 4], [u8; 16]>(dst);
        let addrs = (*ev).addrs.as_mut_ptr() as *mut u32;
        let words = copied / 4;
        let base = v + VRRP_HEADER_LEN;
        for i in 0..EVENT_ADDR_WORDS {
            let w = if i < words {
                match word(data, data_end, base + i * 4) {
                    Some(w) => w,
                    None => 0,
                }
            } else {
                0
            };
            addrs.add(i).write_unaligned(w);
        }
    }
    entry.submit(0);
    Some(Counter::Accepted)
}
