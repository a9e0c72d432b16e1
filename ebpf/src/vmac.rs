//! TC egress of a VMAC (macvlan) xvrrpd made: IGMP and MLD reports leave
//! from its base instead, with the base's MAC, and router solicitations
//! are dropped. A router that is not master still reports group changes
//! on its VMAC — the solicited-node group of a VIP it just removed, after
//! a random delay — and every switch would then send the VMAC's traffic
//! to that router instead of the master. From the base the membership
//! still reaches snooping switches, and the VMAC hears the group there.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_redirect,
    maps::HashMap,
    programs::TcContext,
};
use xvrrpd_common::VmacBase;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_IGMP: u8 = 2;
const IPPROTO_ICMPV6: u8 = 58;
const IPV6_HLEN: usize = 40;
const MLD_LISTENER_REPORT: u8 = 131;
const MLD_LISTENER_DONE: u8 = 132;
const ND_ROUTER_SOLICIT: u8 = 133;
const MLD2_LISTENER_REPORT: u8 = 143;

enum Kind {
    Report,
    RouterSolicit,
    Other,
}

#[inline(always)]
fn kind(ctx: &TcContext) -> Kind {
    let Ok(proto) = ctx.load::<u16>(12) else {
        return Kind::Other;
    };
    match u16::from_be(proto) {
        ETH_P_IP => match ctx.load::<u8>(ETH_HLEN + 9) {
            Ok(IPPROTO_IGMP) => Kind::Report,
            _ => Kind::Other,
        },
        ETH_P_IPV6 => {
            let l4 = ETH_HLEN + IPV6_HLEN;
            let icmp = match ctx.load::<u8>(ETH_HLEN + 6) {
                Ok(IPPROTO_ICMPV6) => l4,
                // MLD always comes behind a hop-by-hop header (router alert).
                Ok(IPPROTO_HOPOPTS) => {
                    let (Ok(next), Ok(len)) = (ctx.load::<u8>(l4), ctx.load::<u8>(l4 + 1)) else {
                        return Kind::Other;
                    };
                    if next != IPPROTO_ICMPV6 {
                        return Kind::Other;
                    }
                    l4 + (len as usize + 1) * 8
                }
                _ => return Kind::Other,
            };
            match ctx.load::<u8>(icmp) {
                Ok(MLD_LISTENER_REPORT | MLD_LISTENER_DONE | MLD2_LISTENER_REPORT) => Kind::Report,
                Ok(ND_ROUTER_SOLICIT) => Kind::RouterSolicit,
                _ => Kind::Other,
            }
        }
        _ => Kind::Other,
    }
}

#[inline(always)]
pub fn egress(ctx: &TcContext, bases: &HashMap<u32, VmacBase>) -> i32 {
    match kind(ctx) {
        Kind::Other => TC_ACT_UNSPEC,
        Kind::RouterSolicit => TC_ACT_SHOT,
        Kind::Report => {
            // SAFETY: the context pointer is valid for the program's run.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            // SAFETY: read-only lookup of a plain value.
            let Some(base) = (unsafe { bases.get(ifindex) }).copied() else {
                // Not one the agent registered: as without this program.
                return TC_ACT_UNSPEC;
            };
            if ctx.store(6, &base.mac, 0).is_err() {
                return TC_ACT_SHOT;
            }
            // SAFETY: a plain helper call; TC_ACT_REDIRECT on success.
            unsafe { bpf_redirect(base.ifindex, 0) as i32 }
        }
    }
}
