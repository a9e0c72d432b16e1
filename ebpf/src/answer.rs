//! The fence's answer: a packet sent to a fenced VIP is turned, in place,
//! into an announcement that the VIP lives at the owner's MAC and sent back
//! to its sender (XDP: `XDP_TX`; TC: redirected to the interface's egress):
//! a gratuitous ARP request for IPv4, an unsolicited neighbour advertisement
//! with the override flag for IPv6. The sender's neighbour entry then points
//! at the owner: its next packet goes there. The reply is never larger than
//! the packet, and goes only to the MAC that sent it.

use aya_ebpf::{
    bindings::BPF_F_RECOMPUTE_CSUM,
    helpers::{bpf_skb_change_tail, bpf_xdp_adjust_tail},
    programs::{TcContext, XdpContext},
};
use xvrrpd_common::FAMILY_IPV4;

use crate::parse::Redirect;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARP_LEN: usize = 28;
const NA_LEN: usize = 72;
/// Shortest Ethernet frame without its FCS.
const MIN_FRAME: usize = 60;

/// A frame the answer is written into: XDP's buffer, or TC's skb.
pub trait Reply {
    fn len(&self) -> usize;
    fn get<T: Copy>(&self, off: usize) -> Option<T>;
    /// Writes `value` at `off`; `false` if the frame is too short.
    fn put<T>(&self, off: usize, value: T) -> bool;
    /// Cuts the frame to `len` bytes (never grows it).
    fn truncate(&self, len: usize) -> bool;
}

impl Reply for XdpContext {
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }

    #[inline(always)]
    fn get<T: Copy>(&self, off: usize) -> Option<T> {
        let (data, data_end) = (self.data(), self.data_end());
        if data + off + core::mem::size_of::<T>() > data_end {
            return None;
        }
        // SAFETY: bounds checked above; unaligned read of plain bytes.
        Some(unsafe { ((data + off) as *const T).read_unaligned() })
    }

    #[inline(always)]
    fn put<T>(&self, off: usize, value: T) -> bool {
        let (data, data_end) = (self.data(), self.data_end());
        if data + off + core::mem::size_of::<T>() > data_end {
            return false;
        }
        // SAFETY: bounds checked above; unaligned write of plain bytes.
        unsafe { ((data + off) as *mut T).write_unaligned(value) };
        true
    }

    #[inline(always)]
    fn truncate(&self, len: usize) -> bool {
        let now = Reply::len(self);
        // SAFETY: the context is the program's own; a negative delta only
        // shrinks the frame.
        now <= len || unsafe { bpf_xdp_adjust_tail(self.ctx, len as i32 - now as i32) } == 0
    }
}

/// On TC every write goes through the store helper, which makes a shared
/// skb private and keeps a `CHECKSUM_COMPLETE` sum true to the new bytes.
impl Reply for TcContext {
    #[inline(always)]
    fn len(&self) -> usize {
        self.skb.len() as usize
    }

    #[inline(always)]
    fn get<T: Copy>(&self, off: usize) -> Option<T> {
        self.skb.load::<T>(off).ok()
    }

    #[inline(always)]
    fn put<T>(&self, off: usize, value: T) -> bool {
        self.skb
            .store(off, &value, BPF_F_RECOMPUTE_CSUM as u64)
            .is_ok()
    }

    #[inline(always)]
    fn truncate(&self, len: usize) -> bool {
        // SAFETY: the skb is the program's own; the helper only shrinks it here.
        Reply::len(self) <= len || unsafe { bpf_skb_change_tail(self.skb.skb, len as u32, 0) } == 0
    }
}

/// Rewrites the packet into the owner's announcement; `false` when it is
/// too short to hold one (it is dropped then).
#[inline(always)]
pub fn announce_owner<F: Reply>(frame: &F, r: &Redirect) -> bool {
    let l3 = r.l3_off;
    let body = if r.family == FAMILY_IPV4 {
        ARP_LEN
    } else {
        NA_LEN
    };
    let want = if l3 + body < MIN_FRAME {
        MIN_FRAME
    } else {
        l3 + body
    };
    if l3 < 14 || want > frame.len() {
        return false;
    }
    // The sender's MAC, before the header is rewritten.
    let Some(client) = frame.get::<[u8; 6]>(6) else {
        return false;
    };
    if client[0] & 1 != 0 {
        return false;
    }
    let ethertype = if r.family == FAMILY_IPV4 {
        ETH_P_ARP
    } else {
        ETH_P_IPV6
    };
    let written = frame.put(0, client)
        && frame.put(6, r.ours)
        && frame.put(l3 - 2, ethertype.to_be_bytes())
        && if r.family == FAMILY_IPV4 {
            frame.put(l3, garp(r)) && zero(frame, l3 + ARP_LEN, want)
        } else {
            frame.put(l3, na(r))
        };
    written && frame.truncate(want)
}

/// A gratuitous ARP request: "the VIP is at the owner's MAC".
#[inline(always)]
fn garp(r: &Redirect) -> Arp {
    let vip = r.vip[0].to_ne_bytes();
    Arp {
        head: [0, 1, 0x08, 0x00, 6, 4, 0, 1],
        sha: r.owner,
        spa: vip,
        tha: [0; 6],
        tpa: vip,
    }
}

#[repr(C)]
struct Arp {
    head: [u8; 8],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
}

/// An unsolicited neighbour advertisement with the override flag, from the
/// VIP to the sender, with the owner's MAC as target link-layer address.
#[repr(C)]
struct Na {
    ver_class_flow: [u8; 4],
    payload_len: [u8; 2],
    next_header: u8,
    hop_limit: u8,
    src: [u32; 4],
    dst: [u32; 4],
    icmp_type: u8,
    code: u8,
    checksum: [u8; 2],
    flags: [u8; 4],
    target: [u32; 4],
    option: [u8; 2],
    tlla: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<Na>() == NA_LEN);
const _: () = assert!(core::mem::size_of::<Arp>() == ARP_LEN);

#[inline(always)]
fn na(r: &Redirect) -> Na {
    let mut na = Na {
        ver_class_flow: [0x60, 0, 0, 0],
        payload_len: [0, 32],
        next_header: 58,
        hop_limit: 255,
        src: r.vip,
        dst: r.peer,
        icmp_type: 136,
        code: 0,
        checksum: [0, 0],
        flags: [0x20, 0, 0, 0],
        target: r.vip,
        option: [2, 1],
        tlla: r.owner,
    };
    // Ones' complement sum of the pseudo-header and the message, as words
    // in memory order (the result is stored in the same order).
    let o = r.owner;
    let mut sum: u64 = u32::from_ne_bytes(32u32.to_be_bytes()) as u64
        + u32::from_ne_bytes(58u32.to_be_bytes()) as u64
        + u32::from_ne_bytes([136, 0, 0, 0]) as u64
        + u32::from_ne_bytes(na.flags) as u64
        + u32::from_ne_bytes([2, 1, o[0], o[1]]) as u64
        + u32::from_ne_bytes([o[2], o[3], o[4], o[5]]) as u64;
    for i in 0..4 {
        sum += 2 * r.vip[i] as u64 + r.peer[i] as u64;
    }
    na.checksum = (!fold(sum)).to_ne_bytes();
    na
}

#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    for _ in 0..4 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Zeroes `from..to` (at most the few bytes of Ethernet padding).
#[inline(always)]
fn zero<F: Reply>(frame: &F, from: usize, to: usize) -> bool {
    for i in 0..MIN_FRAME {
        let at = from + i;
        if at >= to {
            break;
        }
        if !frame.put(at, 0u8) {
            return false;
        }
    }
    true
}
