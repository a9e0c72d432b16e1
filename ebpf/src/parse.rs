//! Packet classification shared by the XDP and TC programs.
//!
//! Written for the verifier: every packet read is preceded by an explicit
//! bounds check against `data_end`, and every loop has a constant bound.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    maps::{Array, HashMap, RingBuf},
};
use xvrrpd_common::{
    ADDR_HASH_SEED, AdvertEvent, ChecksumForm, ClaimEvent, Counter, EVENT_ADDR_BYTES,
    EVENT_FLAG_ADDRS_TRUNCATED, EVENT_FLAG_UNICAST, FAMILY_IPV4, FAMILY_IPV6,
    FENCE_OWNER_INTERVALS, FenceOwner, GUARD_FLAG_NO_ACCEPT, GUARD_FLAG_SHARED_MAC, GuardKey,
    GuardValue, Heard, IPPROTO_VRRP, MAX_MESSAGE_LEN, MAX_VRRP_PACKET, OLD_UNICAST_CHECKSUM_GROUP,
    QUIET_COMPARED_WORDS, QuietAdvert, VRID_FLAG_CHECK_TTL, VRID_FLAG_OLD_CHECKSUM, VRRP_AUTH_LEN,
    VRRP_HEADER_LEN, VRRP_TTL, VridConfig, VridKey, addr_hash_step,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_ARP: u16 = 0x0806;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;
/// Neighbour discovery's message types: router solicitation to redirect.
const ICMPV6_RS: u8 = 133;
const ICMPV6_REDIRECT: u8 = 137;
const IPV6_HLEN: usize = 40;
const MAX_MESSAGE_WORDS: usize = MAX_MESSAGE_LEN / 4;
const EVENT_ADDR_WORDS: usize = EVENT_ADDR_BYTES / 4;

pub enum Outcome {
    NotVrrp,
    Counted(Counter),
    /// Dropped by the fence (see [`lapsed_owner`]).
    Fenced,
    /// Sent to a VIP of a master in non-accept mode (see [`to_guarded_vip`]).
    NotAccepted,
    /// A packet for a fenced VIP: the XDP program answers it with an
    /// announcement of the owner, the TC program drops it.
    Redirect(Redirect),
}

/// What the answer to a packet sent to a fenced VIP needs.
pub struct Redirect {
    pub family: u8,
    /// Offset of the L3 header (after any VLAN tags, which are kept).
    pub l3_off: usize,
    /// The VIP, as it sits in the packet (IPv4 in the first word).
    pub vip: [u32; 4],
    /// The sender's IPv6 address (the NA goes back to it); unused for IPv4.
    pub peer: [u32; 4],
    /// Our MAC (the frame's source) and the owner's (what the announcement says).
    pub ours: [u8; 6],
    pub owner: [u8; 6],
}

/// What the L2/L3 dispatch found worth a closer look.
enum L3 {
    Vrrp(Result<IpInfo, Counter>),
    /// An ARP packet at this offset.
    Arp(usize),
    /// An ICMPv6 packet; the offset is its IPv6 header's.
    Icmp6(usize),
    /// Any other IP packet (looked at only while a fence is armed); the
    /// offset is its IP header's.
    Other(u8, usize),
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

/// An offset or length computed from packet bytes, bounded in a way the
/// verifier tracks. LLVM may take such a value apart and put it together
/// again (low byte | high bytes) so that verifiers before Linux 6.x lose
/// its bounds, drops a compare it can prove, and reloads a value instead of
/// reusing the compared register. A mask of the value hidden from LLVM is a
/// new value that it can neither fold nor rebuild.
#[inline(always)]
fn verifier_bounded(v: usize) -> Option<usize> {
    if v > MAX_VRRP_PACKET {
        return None;
    }
    // MAX_VRRP_PACKET <= 0x3fff: the mask changes no bounded value.
    Some(core::hint::black_box(v) & 0x3fff)
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

/// L2 + L3 parse. `None` for anything that is neither VRRP, ARP nor ICMPv6:
/// IPv4 pays what it always did, IPv6 one compare more, ARP is found only
/// after both IP EtherTypes missed.
#[inline(always)]
fn ip_header(data: usize, data_end: usize) -> Option<L3> {
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
    if proto == ETH_P_ARP {
        return Some(L3::Arp(off));
    }
    None
}

#[inline(always)]
fn ipv4_header(data: usize, data_end: usize, off: usize) -> Option<L3> {
    if byte(data, data_end, off + 9)? != IPPROTO_VRRP {
        return Some(L3::Other(FAMILY_IPV4, off));
    }
    ipv4_vrrp(data, data_end, off).map(L3::Vrrp)
}

#[inline(always)]
fn ipv4_vrrp(data: usize, data_end: usize, off: usize) -> Option<Result<IpInfo, Counter>> {
    // One constant-size check for the fixed header: later reads need no
    // per-field check the compiler could fold away behind the verifier's back.
    ptr_at::<[u8; 20]>(data, data_end, off)?;
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
    // Verifiers before Linux 6.x keep no bounds across a byte swap: bound
    // the length with a compare they track before it offsets a packet
    // pointer (a longer packet is no advert anyway).
    if total < ihl || total > MAX_VRRP_PACKET {
        return Some(Err(Counter::BadLength));
    }
    if data + off + total > data_end {
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
fn ipv6_header(data: usize, data_end: usize, off: usize) -> Option<L3> {
    // Only VRRP (or a neighbour advertisement) directly after the fixed
    // header; extension headers are not used by their senders and are left
    // to the stack.
    let next = byte(data, data_end, off + 6)?;
    if next != IPPROTO_VRRP {
        if next == IPPROTO_ICMPV6 {
            return Some(L3::Icmp6(off));
        }
        return Some(L3::Other(FAMILY_IPV6, off));
    }
    if ptr_at::<[u8; IPV6_HLEN]>(data, data_end, off).is_none() {
        return Some(L3::Vrrp(Err(Counter::BadLength)));
    }
    let payload = be16(data, data_end, off + 4)? as usize;
    let ttl = byte(data, data_end, off + 7)?;
    // Bounded before it offsets a packet pointer, as in `ipv4_vrrp`.
    if payload > MAX_VRRP_PACKET {
        return Some(L3::Vrrp(Err(Counter::BadLength)));
    }
    if data + off + IPV6_HLEN + payload > data_end {
        return Some(L3::Vrrp(Err(Counter::BadLength)));
    }
    Some(L3::Vrrp(Ok(IpInfo {
        family: FAMILY_IPV6,
        ttl,
        addr_off: off + 8,
        vrrp_off: off + IPV6_HLEN,
        msg_len: payload,
    })))
}

/// TC only: whether a non-linear skb should be pulled before classifying
/// (it looks like VRRP but the linear part is too short to judge).
#[inline(always)]
pub fn needs_pull(data: usize, data_end: usize) -> bool {
    matches!(
        ip_header(data, data_end),
        Some(L3::Vrrp(Err(Counter::BadLength)))
    )
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

/// The IPv4 pseudo-header's addresses as keepalived 1.3.5 and before
/// summed them for a unicast advert: the source, and 224.0.0.18 in place
/// of the peer. (A multicast advert verifies with its own destination
/// first, so the group never reaches here as the destination.)
#[inline(always)]
fn old_unicast_pseudo(data: usize, data_end: usize, ip: &IpInfo) -> Option<u64> {
    let src = word(data, data_end, ip.addr_off)? as u64;
    Some(src + u32::from_ne_bytes(OLD_UNICAST_CHECKSUM_GROUP) as u64)
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

/// Re-reads the packet bounds from the program context. The classifier calls
/// it between its two phases so the verifier sees fresh packet pointers: the
/// checksum loop's exits then converge to one state instead of each dragging
/// its own proven packet range through the rest of the program.
pub trait Frame {
    fn bounds(&self) -> (usize, usize);
}

/// What phase one proved, as plain scalars.
struct Checked {
    family: u8,
    ttl: u8,
    version: u8,
    vrid: u8,
    count: u8,
    /// The header's priority and (VRRPv2) authentication type bytes.
    priority: u8,
    auth_type: u8,
    form: ChecksumForm,
    interval_cs: u16,
    alen: usize,
    addrs_len: usize,
    addr_off: usize,
    vrrp_off: usize,
    cfg: VridConfig,
}

/// The maps the classifier reads and writes.
pub struct Maps<'a> {
    pub vrids: &'a HashMap<VridKey, VridConfig>,
    pub guards: &'a HashMap<GuardKey, GuardValue>,
    pub events: &'a RingBuf,
    /// Per VRID: until when the agent vouches for being MASTER (it renews
    /// this with every advert it sends).
    pub leases: &'a HashMap<VridKey, u64>,
    /// Per VRID: who advertised it after the lease lapsed.
    pub owners: &'a HashMap<VridKey, FenceOwner>,
    /// Slot 0: until when any fence may hold (0: none). Traffic other than
    /// VRRP, ARP and neighbour discovery pays this read and `no_accept`'s.
    pub armed: &'a Array<u64>,
    /// Slot 0: nonzero while a guarded VIP is in non-accept mode.
    pub no_accept: &'a Array<u32>,
    /// Per VRID: the advert the agent accepted from a healthy master.
    pub quiet: &'a HashMap<VridKey, QuietAdvert>,
    /// Per VRID: when such an advert was last heard, and how many.
    pub heard: &'a HashMap<VridKey, Heard>,
    /// The kernel's down timer, watching the deadline of each VRID with a
    /// kept advert (`None`: the program without BPF timers; the agent
    /// times alone).
    pub timers: Option<&'a crate::down::TimerMap>,
}

/// Validates a VRRP packet and delivers it; returns the counter to bump.
/// ARP and neighbour advertisements are looked at for claims of guarded
/// VIPs and always go on to the stack (`NotVrrp`).
#[inline(always)]
pub fn classify<F: Frame>(
    frame: &F,
    ifindex: u32,
    maps: &Maps,
    count: impl Fn(Counter),
) -> Outcome {
    let (data, data_end) = frame.bounds();
    let ip = match ip_header(data, data_end) {
        None => return Outcome::NotVrrp,
        Some(L3::Other(family, off)) => {
            return to_guarded_vip(data, data_end, ifindex, family, off, maps);
        }
        Some(L3::Arp(off)) => {
            if let Some(claim) = arp_claim(data, data_end, off) {
                report(ifindex, claim, maps, count);
            }
            return fence_arp(data, data_end, ifindex, off, maps);
        }
        Some(L3::Icmp6(off)) => {
            if let Some(claim) = na_claim(data, data_end, off) {
                report(ifindex, claim, maps, count);
                return Outcome::NotVrrp;
            }
            return fence_icmp6(data, data_end, ifindex, off, maps);
        }
        Some(L3::Vrrp(Err(c))) => return Outcome::Counted(c),
        Some(L3::Vrrp(Ok(ip))) => ip,
    };
    let checked = match check(data, data_end, ifindex, &ip, maps.vrids) {
        Ok(c) => c,
        Err(c) => return Outcome::Counted(c),
    };
    let (data, data_end) = frame.bounds();
    // A read past data_end after the length checks means the packet lied.
    Outcome::Counted(
        deliver(data, data_end, ifindex, &checked, maps, count).unwrap_or(Counter::BadLength),
    )
}

/// Phase one: header, configured VRID, TTL, lengths, interval, checksum.
#[inline(always)]
fn check(
    data: usize,
    data_end: usize,
    ifindex: u32,
    ip: &IpInfo,
    vrids: &HashMap<VridKey, VridConfig>,
) -> Result<Checked, Counter> {
    // Bounded where it is used: LLVM may take the value apart and put it
    // together again (low byte | high bytes) after any earlier bound.
    let v = verifier_bounded(ip.vrrp_off).ok_or(Counter::BadLength)?;
    if ip.msg_len < VRRP_HEADER_LEN {
        return Err(Counter::BadLength);
    }
    // The fixed header read once through the pointer just checked: a
    // pointer computed again for each field carries no checked range on
    // older verifiers.
    // SAFETY: bounds checked by ptr_at; unaligned read.
    let hdr = ptr_at::<[u8; VRRP_HEADER_LEN]>(data, data_end, v)
        .map(|p| unsafe { p.read_unaligned() })
        .ok_or(Counter::BadLength)?;
    let vt = hdr[0];
    let version = vt >> 4;
    if !(version == 3 || (version == 2 && ip.family == FAMILY_IPV4)) {
        return Err(Counter::BadVersion);
    }
    if vt & 0x0f != 1 {
        return Err(Counter::BadType);
    }
    let vrid = hdr[1];
    // SAFETY: read-only lookup of a plain value type.
    let cfg = match unsafe { vrids.get(VridKey::new(ifindex, ip.family, vrid)) } {
        Some(cfg) => *cfg,
        None => return Err(Counter::UnknownVrid),
    };
    if cfg.flags & VRID_FLAG_CHECK_TTL != 0 && ip.ttl != VRRP_TTL {
        return Err(Counter::BadTtl);
    }
    let count = hdr[3];
    if count == 0 {
        return Err(Counter::BadAddrCount);
    }
    let alen = if ip.family == FAMILY_IPV4 { 4 } else { 16 };
    let addrs_len = count as usize * alen;
    let expected = VRRP_HEADER_LEN + addrs_len + if version == 2 { VRRP_AUTH_LEN } else { 0 };
    if ip.msg_len < expected || expected > MAX_MESSAGE_LEN {
        return Err(Counter::BadLength);
    }
    let interval_cs: u16 = if version == 2 {
        hdr[5] as u16 * 100
    } else {
        u16::from_be_bytes([hdr[4], hdr[5]]) & 0x0fff
    };
    if interval_cs == 0 {
        return Err(Counter::BadInterval);
    }
    // Pseudo-header words as they sit in memory: protocol and length are
    // added in the same byte order as the packet words summed below.
    let tail: u64 = if ip.family == FAMILY_IPV4 {
        u32::from_le_bytes([0, IPPROTO_VRRP, (expected >> 8) as u8, expected as u8]) as u64
    } else {
        u32::from_le_bytes((expected as u32).to_be_bytes()) as u64
            + u32::from_le_bytes([0, 0, 0, IPPROTO_VRRP]) as u64
    };
    let pseudo = sum_addrs(data, data_end, ip).ok_or(Counter::BadLength)? + tail;
    let msg_sum = sum_words(data, data_end, v, expected).ok_or(Counter::BadLength)?;
    let form = if version == 2 {
        if fold(msg_sum) != 0xffff {
            return Err(Counter::BadChecksum);
        }
        ChecksumForm::V2Message
    } else if fold(msg_sum + pseudo) == 0xffff {
        ChecksumForm::V3PseudoHeader
    } else if ip.family == FAMILY_IPV4 && fold(msg_sum) == 0xffff {
        ChecksumForm::V3Plain
    } else if ip.family == FAMILY_IPV4
        && cfg.flags & VRID_FLAG_OLD_CHECKSUM != 0
        && fold(msg_sum + old_unicast_pseudo(data, data_end, ip).ok_or(Counter::BadLength)? + tail)
            == 0xffff
    {
        ChecksumForm::V3OldUnicast
    } else {
        return Err(Counter::BadChecksum);
    };
    Ok(Checked {
        family: ip.family,
        ttl: ip.ttl,
        version,
        vrid,
        count,
        priority: hdr[2],
        auth_type: hdr[4],
        form,
        interval_cs,
        alen,
        addrs_len,
        addr_off: ip.addr_off,
        vrrp_off: v,
        cfg,
    })
}

/// Phase two: v2 authentication and interval, then the event.
#[inline(always)]
fn deliver(
    data: usize,
    data_end: usize,
    ifindex: u32,
    c: &Checked,
    maps: &Maps,
    count: impl Fn(Counter),
) -> Option<Counter> {
    let v = c.vrrp_off;
    let mut auth_type = 0u8;
    let mut auth_lo = 0u32;
    let mut auth_hi = 0u32;
    if c.version == 2 {
        auth_type = c.auth_type;
        if auth_type != c.cfg.auth_type {
            return Some(Counter::BadAuth);
        }
        let a = v + VRRP_HEADER_LEN + c.addrs_len;
        auth_lo = word(data, data_end, a)?;
        auth_hi = word(data, data_end, a + 4)?;
        let want = c.cfg.auth_data;
        if auth_type == 1
            && (auth_lo.to_ne_bytes() != [want[0], want[1], want[2], want[3]]
                || auth_hi.to_ne_bytes() != [want[4], want[5], want[6], want[7]])
        {
            return Some(Counter::BadAuth);
        }
        if c.cfg.v2_interval_s != 0 && c.interval_cs != c.cfg.v2_interval_s as u16 * 100 {
            return Some(Counter::BadInterval);
        }
    }
    let priority = c.priority;
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // Before the ring: with the agent dead the ring is full, and this is
    // exactly when the fence must still learn the owner.
    if priority != 0 {
        note_owner(data, data_end, ifindex, c, priority, now, maps, count);
    }
    let awords = c.alen / 4;
    let mut src = [0u32; 4];
    let mut dst = [0u32; 4];
    for i in 0..4 {
        if i >= awords {
            break;
        }
        src[i] = word(data, data_end, c.addr_off + i * 4)?;
        dst[i] = word(data, data_end, c.addr_off + c.alen + i * 4)?;
    }
    let dst_first = dst[0].to_ne_bytes()[0];
    let multicast = if c.family == FAMILY_IPV4 {
        dst_first & 0xf0 == 0xe0
    } else {
        dst_first == 0xff
    };
    let copied = if c.addrs_len > EVENT_ADDR_BYTES {
        EVENT_ADDR_BYTES
    } else {
        c.addrs_len
    };
    let mut flags = 0u8;
    if c.addrs_len > EVENT_ADDR_BYTES {
        flags |= EVENT_FLAG_ADDRS_TRUNCATED;
    }
    if !multicast {
        flags |= EVENT_FLAG_UNICAST;
    }

    // Only a VRID whose master the agent asked to keep pays for the
    // fingerprint.
    let key = VridKey::new(ifindex, c.family, c.vrid);
    let base = v + VRRP_HEADER_LEN;
    if let Some(want) = maps.quiet.get_ptr(key) {
        let mut hash = ADDR_HASH_SEED;
        for i in 0..EVENT_ADDR_WORDS {
            if i >= copied / 4 {
                break;
            }
            hash = addr_hash_step(hash, word(data, data_end, base + i * 4)?);
        }
        let seen = QuietAdvert {
            // SAFETY: same size, both plain bytes.
            src: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(src) },
            addr_hash: hash,
            priority,
            version: c.version,
            ttl: c.ttl,
            flags,
            interval_cs: c.interval_cs,
            addr_count: c.count,
            auth_type,
            checksum_form: c.form as u8,
            _pad: [0; 3],
            auth_data: {
                let (lo, hi) = (auth_lo.to_ne_bytes(), auth_hi.to_ne_bytes());
                [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
            },
            down_ns: 0,
        };
        if heard(key, want, &seen, now, maps) {
            return Some(Counter::Heard);
        }
    }

    let Some(mut entry) = maps.events.reserve::<AdvertEvent>(0) else {
        return Some(Counter::RingbufFull);
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot;
    // every field is written before submit.
    unsafe {
        (*ev).ts_ns = now;
        (*ev).ifindex = ifindex;
        (*ev).family = c.family;
        (*ev).version = c.version;
        (*ev).vrid = c.vrid;
        (*ev).priority = priority;
        (*ev).interval_cs = c.interval_cs;
        (*ev).addr_count = c.count;
        (*ev).auth_type = auth_type;
        (*ev).checksum_form = c.form as u8;
        (*ev).flags = flags;
        (*ev).ttl = c.ttl;
        (*ev)._pad0 = 0;
        (*ev).addr_bytes = copied as u16;
        (*ev)._pad1 = [0; 6];
        (*ev).src = core::mem::transmute::<[u32; 4], [u8; 16]>(src);
        (*ev).dst = core::mem::transmute::<[u32; 4], [u8; 16]>(dst);
        let auth = (*ev).auth_data.as_mut_ptr() as *mut u32;
        auth.write_unaligned(auth_lo);
        auth.add(1).write_unaligned(auth_hi);
        let addrs = (*ev).addrs.as_mut_ptr() as *mut u32;
        // Zero first, then copy: the copy loop's exits lead straight to submit.
        for i in 0..EVENT_ADDR_WORDS {
            addrs.add(i).write_unaligned(0);
        }
        let words = copied / 4;
        for i in 0..EVENT_ADDR_WORDS {
            if i >= words {
                break;
            }
            match word(data, data_end, base + i * 4) {
                Some(w) => addrs.add(i).write_unaligned(w),
                None => break,
            }
        }
    }
    entry.submit(0);
    Some(Counter::Accepted)
}

/// Whether `seen` is the advert the agent accepted from the VRID's master
/// (it said so in `QUIET`): then only its time is recorded, in `HEARD`, and
/// the agent sleeps on. Anything else about it (another sender, priority,
/// interval, address list, …) wakes the agent, which decides again.
#[inline(always)]
fn heard(
    key: VridKey,
    want: *const QuietAdvert,
    seen: &QuietAdvert,
    now: u64,
    maps: &Maps,
) -> bool {
    // SAFETY: a map value pointer valid for this run.
    let down_ns = unsafe { (*want).down_ns };
    // Compared as words: the BPF target has no memcmp.
    let seen = seen as *const QuietAdvert as *const u64;
    let want = want as *const u64;
    for i in 0..QUIET_COMPARED_WORDS {
        // SAFETY: both point at a whole QuietAdvert (the map value and a
        // local), which holds QUIET_COMPARED_WORDS + 1 words.
        if unsafe { seen.add(i).read_unaligned() != want.add(i).read_unaligned() } {
            return false;
        }
    }
    // The time first, then the timer: a wake-up racing with this advert
    // sees its time.
    let h = match maps.heard.get_ptr_mut(key) {
        Some(h) => h,
        None => {
            let first = Heard {
                last_ns: now,
                count: 0,
                timed: 0,
            };
            if maps.heard.insert(key, first, 0).is_err() {
                return false;
            }
            match maps.heard.get_ptr_mut(key) {
                Some(h) => h,
                None => return false,
            }
        }
    };
    // SAFETY: a map value pointer valid for this run; two CPUs racing here
    // write times a few nanoseconds apart.
    unsafe {
        if (*h).last_ns < now {
            (*h).last_ns = now;
        }
        (*h).count += 1;
    }
    // The record says whether the kernel's down timer watches the VRID.
    let timed = match maps.timers {
        Some(timers) if down_ns != 0 => crate::down::watch(timers, now + down_ns, now),
        _ => false,
    };
    // SAFETY: as above.
    unsafe { (*h).timed = timed as u64 };
    true
}

/// Who announced which address (an ARP or NA parsed, not yet checked
/// against the guard map).
struct Claimant {
    family: u8,
    addr: [u8; 16],
    mac: [u8; 6],
}

/// An ARP request or reply whose sender protocol address is a guarded VIP
/// (a gratuitous ARP, or an answer for the address) is a claim by its
/// sender hardware address. Requests from other hosts carry their own
/// address as sender and are not claims.
#[inline(always)]
fn arp_claim(data: usize, data_end: usize, off: usize) -> Option<Claimant> {
    // htype, ptype, hlen, plen, oper, sha, spa (tha, tpa unused).
    ptr_at::<[u8; 18]>(data, data_end, off)?;
    if be16(data, data_end, off)? != 1
        || be16(data, data_end, off + 2)? != ETH_P_IP
        || be16(data, data_end, off + 4)? != 0x0604
    {
        return None;
    }
    let op = be16(data, data_end, off + 6)?;
    if op != 1 && op != 2 {
        return None;
    }
    let mac = mac_at(data, data_end, off + 8)?;
    let spa = word(data, data_end, off + 14)?;
    // SAFETY: same size, both plain bytes.
    let addr = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>([spa, 0, 0, 0]) };
    Some(Claimant {
        family: FAMILY_IPV4,
        addr,
        mac,
    })
}

/// A neighbour advertisement (hop limit 255, as the stack requires) for a
/// guarded VIP is a claim by its target link-layer address option, or by
/// the Ethernet source when it has none. The ICMPv6 checksum is left to the
/// stack: a forged NA costs at most one rate-limited re-announce.
#[inline(always)]
fn na_claim(data: usize, data_end: usize, off: usize) -> Option<Claimant> {
    let icmp = off + IPV6_HLEN;
    // Type, code, checksum, flags, target.
    ptr_at::<[u8; 24]>(data, data_end, icmp)?;
    if byte(data, data_end, icmp)? != ICMPV6_NA
        || byte(data, data_end, icmp + 1)? != 0
        || byte(data, data_end, off + 7)? != VRRP_TTL
    {
        return None;
    }
    let mut target = [0u32; 4];
    for (i, w) in target.iter_mut().enumerate() {
        *w = word(data, data_end, icmp + 8 + i * 4)?;
    }
    // SAFETY: same size, both plain bytes.
    let addr = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(target) };
    let tlla = icmp + 24;
    let mac = if ptr_at::<[u8; 8]>(data, data_end, tlla).is_some()
        && byte(data, data_end, tlla)? == 2
        && byte(data, data_end, tlla + 1)? == 1
    {
        mac_at(data, data_end, tlla + 2)?
    } else {
        mac_at(data, data_end, 6)?
    };
    Some(Claimant {
        family: FAMILY_IPV6,
        addr,
        mac,
    })
}

#[inline(always)]
fn mac_at(data: usize, data_end: usize, off: usize) -> Option<[u8; 6]> {
    let p = ptr_at::<[u8; 6]>(data, data_end, off)?;
    // SAFETY: bounds checked by ptr_at; byte array, no alignment needed.
    Some(unsafe { p.read_unaligned() })
}

/// A MAC as one integer: compared without a `bcmp` call the BPF target
/// cannot link.
#[inline(always)]
fn mac_bits(m: [u8; 6]) -> u64 {
    (m[0] as u64) << 40
        | (m[1] as u64) << 32
        | (m[2] as u64) << 24
        | (m[3] as u64) << 16
        | (m[4] as u64) << 8
        | m[5] as u64
}

/// Reports a claim of a guarded VIP by a MAC other than ours, at most once
/// per the VIP's interval: a flood of claims wakes the agent a bounded
/// number of times.
#[inline(always)]
fn report(ifindex: u32, claim: Claimant, maps: &Maps, count: impl Fn(Counter)) {
    let Claimant { family, addr, mac } = claim;
    let key = GuardKey::new(ifindex, family, addr);
    let Some(guard) = maps.guards.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a map value pointer, valid for this run. Two CPUs racing here
    // may both report once: the agent's own rule bounds re-announces anyway.
    unsafe {
        if mac_bits((*guard).mac) == mac_bits(mac) {
            return;
        }
        (*guard).last_claim_ns = now;
        (*guard).last_claim_mac = mac;
        let last = (*guard).last_report_ns;
        if last != 0 && now.wrapping_sub(last) < (*guard).min_interval_ns {
            count(Counter::ClaimLimited);
            return;
        }
        (*guard).last_report_ns = now;
    }
    let Some(mut entry) = maps.events.reserve::<ClaimEvent>(0) else {
        count(Counter::RingbufFull);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: a reserved, exclusively owned slot; every field written.
    unsafe {
        (*ev).ts_ns = now;
        (*ev).ifindex = ifindex;
        (*ev).family = family;
        (*ev)._pad0 = [0; 3];
        (*ev).addr = addr;
        (*ev).mac = mac;
        (*ev)._pad1 = [0; 2];
    }
    entry.submit(0);
    count(Counter::ClaimReported);
}

// ---------------------------------------------------------------- fence
//
// The agent renews a lease per VRID with every advert it sends as MASTER.
// When it dies or hangs the lease lapses; the first advert of another
// router for that VRID then records that router as the owner, and until the
// owner goes quiet this host stops claiming the VRID's VIPs: no ARP or ND
// answers, and a packet still sent here for a VIP is answered with an
// announcement that the VIP lives at the owner's MAC, so its sender moves
// there at once. Nothing changes while no other router advertises the VRID.

/// An advert from another router (priority > 0): if our lease for its VRID
/// has lapsed, that router owns the VRID now.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn note_owner(
    data: usize,
    data_end: usize,
    ifindex: u32,
    c: &Checked,
    priority: u8,
    now: u64,
    maps: &Maps,
    count: impl Fn(Counter),
) {
    let key = VridKey::new(ifindex, c.family, c.vrid);
    // SAFETY: read-only lookup of a plain value.
    let Some(lease) = (unsafe { maps.leases.get(key) }).copied() else {
        return;
    };
    if now <= lease {
        return;
    }
    let Some(mac) = mac_at(data, data_end, 6) else {
        return;
    };
    let until = now + FENCE_OWNER_INTERVALS * c.interval_cs as u64 * 10_000_000;
    let owner = FenceOwner {
        valid_until_ns: until,
        mac,
        priority,
        _pad: 0,
    };
    if maps.owners.insert(key, owner, 0).is_err() {
        return;
    }
    if let Some(slot) = maps.armed.get_ptr_mut(0) {
        // SAFETY: a map value pointer valid for this run; a racing CPU
        // writes a time as good as ours.
        unsafe {
            if *slot < until {
                *slot = until;
            }
        }
    }
    count(Counter::FenceEngaged);
}

/// `Some(now)` while a fence may hold; disarms once every fence has lifted.
#[inline(always)]
fn armed(maps: &Maps) -> Option<u64> {
    let slot = maps.armed.get_ptr_mut(0)?;
    // SAFETY: a map value pointer valid for this run.
    let until = unsafe { *slot };
    if until == 0 {
        return None;
    }
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now > until {
        // SAFETY: as above; a racing re-arm is at most one advert late.
        unsafe { *slot = 0 };
        return None;
    }
    Some(now)
}

/// The owner's MAC when `guard`'s instance let its lease lapse while
/// another router advertises its VRID.
#[inline(always)]
fn lapsed_owner(guard: &GuardValue, ifindex: u32, maps: &Maps, now: u64) -> Option<[u8; 6]> {
    let key = VridKey::new(ifindex, guard.family, guard.vrid);
    // SAFETY: read-only lookups of plain values.
    let lease = unsafe { maps.leases.get(key) }.copied().unwrap_or(0);
    if now <= lease {
        return None;
    }
    // SAFETY: as above.
    let owner = unsafe { maps.owners.get(key) }?;
    if now > owner.valid_until_ns {
        return None;
    }
    Some(owner.mac)
}

/// Whether `addr` is a VIP this daemon guarded that another router owns
/// now (its instance's lease lapsed).
#[inline(always)]
fn fenced(ifindex: u32, family: u8, addr: [u8; 16], maps: &Maps, now: u64) -> bool {
    // SAFETY: read-only lookup of a plain value.
    match unsafe { maps.guards.get(GuardKey::new(ifindex, family, addr)) } {
        Some(guard) => lapsed_owner(guard, ifindex, maps, now).is_some(),
        None => false,
    }
}

#[inline(always)]
fn addr4(w: u32) -> [u8; 16] {
    // SAFETY: same size, both plain bytes.
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>([w, 0, 0, 0]) }
}

#[inline(always)]
fn addr6(data: usize, data_end: usize, off: usize) -> Option<[u32; 4]> {
    let mut a = [0u32; 4];
    for (i, w) in a.iter_mut().enumerate() {
        *w = word(data, data_end, off + i * 4)?;
    }
    Some(a)
}

/// An IP packet (not VRRP, ARP or neighbour discovery) sent to one of our
/// guarded VIPs, looked at only while a fence is armed or a VIP is in
/// non-accept mode (two array reads otherwise). A fenced VIP's packet is
/// answered with the owner's announcement, or dropped when the VIP is on
/// a VMAC (every router has that MAC: the sender already has the owner's,
/// and an answer from it would move it here in every switch). Else a
/// master in non-accept mode takes no packet for it (RFC 9568 §6.4.3; the
/// agent leaves the flag off for the address owner).
#[inline(always)]
fn to_guarded_vip(
    data: usize,
    data_end: usize,
    ifindex: u32,
    family: u8,
    off: usize,
    maps: &Maps,
) -> Outcome {
    let fence = armed(maps);
    if fence.is_none() && maps.no_accept.get(0).copied().unwrap_or(0) == 0 {
        return Outcome::NotVrrp;
    }
    let vip = if family == FAMILY_IPV4 {
        word(data, data_end, off + 16).map(|w| [w, 0, 0, 0])
    } else {
        addr6(data, data_end, off + 24)
    };
    let Some(vip) = vip else {
        return Outcome::NotVrrp;
    };
    // SAFETY: same size, both plain bytes.
    let key = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(vip) };
    // SAFETY: read-only lookup of a plain value.
    let Some(guard) = (unsafe { maps.guards.get(GuardKey::new(ifindex, family, key)) }) else {
        return Outcome::NotVrrp;
    };
    if let Some(now) = fence
        && let Some(owner) = lapsed_owner(guard, ifindex, maps, now)
    {
        if guard.flags & GUARD_FLAG_SHARED_MAC != 0 {
            return Outcome::Fenced;
        }
        let peer = if family == FAMILY_IPV4 {
            Some([0; 4])
        } else {
            addr6(data, data_end, off + 8)
        };
        return match peer {
            Some(peer) => Outcome::Redirect(Redirect {
                family,
                l3_off: off,
                vip,
                peer,
                ours: guard.mac,
                owner,
            }),
            None => Outcome::NotVrrp,
        };
    }
    if guard.flags & GUARD_FLAG_NO_ACCEPT != 0 {
        Outcome::NotAccepted
    } else {
        Outcome::NotVrrp
    }
}

/// An ARP request for a fenced VIP gets no answer from this host.
#[inline(always)]
fn fence_arp(data: usize, data_end: usize, ifindex: u32, off: usize, maps: &Maps) -> Outcome {
    let Some(now) = armed(maps) else {
        return Outcome::NotVrrp;
    };
    if be16(data, data_end, off + 6) != Some(1) {
        return Outcome::NotVrrp;
    }
    let Some(tpa) = word(data, data_end, off + 24) else {
        return Outcome::NotVrrp;
    };
    if fenced(ifindex, FAMILY_IPV4, addr4(tpa), maps, now) {
        Outcome::Fenced
    } else {
        Outcome::NotVrrp
    }
}

/// A neighbour solicitation for a fenced VIP gets no answer; any other
/// ICMPv6 sent to one (an echo request) is answered like other traffic.
#[inline(always)]
fn fence_icmp6(data: usize, data_end: usize, ifindex: u32, off: usize, maps: &Maps) -> Outcome {
    let icmp = off + IPV6_HLEN;
    match byte(data, data_end, icmp) {
        Some(ICMPV6_NS) => {
            let Some(now) = armed(maps) else {
                return Outcome::NotVrrp;
            };
            let Some(target) = addr6(data, data_end, icmp + 8) else {
                return Outcome::NotVrrp;
            };
            // SAFETY: same size, both plain bytes.
            let key = unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(target) };
            if fenced(ifindex, FAMILY_IPV6, key, maps, now) {
                Outcome::Fenced
            } else {
                Outcome::NotVrrp
            }
        }
        // The rest of neighbour discovery is left to the stack.
        Some(ICMPV6_RS..=ICMPV6_REDIRECT) => Outcome::NotVrrp,
        _ => to_guarded_vip(data, data_end, ifindex, FAMILY_IPV6, off, maps),
    }
}
