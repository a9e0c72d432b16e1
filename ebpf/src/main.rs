//! The kernel half of xvrrpd's datapath.
//!
//! One classifier ([`classify`]) shared by an XDP program and a TC (clsact
//! ingress) program. Non-VRRP traffic returns after reading the EtherType and,
//! for IP, one more byte: this runs for every packet a load balancer receives.
//! VRRP adverts are validated here (TTL, version, type, lengths, checksum,
//! configured VRID, v2 auth and interval), stamped with `bpf_ktime_get_ns` and
//! pushed to a ring buffer; everything else is counted per reason.
//!
//! The same rules are implemented in Rust for the raw-socket fallback
//! (`agent/src/datapath/validate.rs`); one table of crafted packets tests both.
#![no_std]
#![no_main]

mod answer;
mod down;
mod parse;
mod vmac;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    helpers::bpf_redirect,
    macros::{btf_map, classifier, map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use down::TimerMap;
use parse::{Frame, Maps, Outcome, Redirect, classify};
use xvrrpd_common::{
    COUNTER_COUNT, Counter, FenceOwner, GuardKey, GuardValue, Heard, IfacePolicy, QuietAdvert,
    VmacBase, VridConfig, VridKey,
};

/// Adverts for the agent. 4 MiB holds ~12,000 events: a burst of a thousand
/// instances' adverts (a master batches them) many times over, so
/// `ringbuf_full` only counts a stalled agent.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// `(ifindex, family, vrid)` the agent runs, with what to check for each.
#[map(name = "VRIDS")]
static VRIDS: HashMap<VridKey, VridConfig> = HashMap::with_max_entries(4096, 0);

/// VIPs this daemon holds as master, per interface: claims of them by
/// another MAC are reported (see `parse::report`).
#[map(name = "GUARDS")]
static GUARDS: HashMap<GuardKey, GuardValue> = HashMap::with_max_entries(4096, 0);

/// Per VRID: CLOCK_MONOTONIC ns until which the agent vouches for being
/// MASTER (renewed with each advert it sends; see `parse`'s fence).
#[map(name = "LEASES")]
static LEASES: HashMap<VridKey, u64> = HashMap::with_max_entries(4096, 0);

/// Per VRID: the router seen advertising it after our lease lapsed.
#[map(name = "OWNERS")]
static OWNERS: HashMap<VridKey, FenceOwner> = HashMap::with_max_entries(4096, 0);

/// Slot 0: until when any fence may hold (0: none).
#[map(name = "ARMED")]
static ARMED: Array<u64> = Array::with_max_entries(1, 0);

/// Per VRID: the advert the agent accepted from a healthy master (see
/// `parse::heard`).
#[map(name = "QUIET")]
static QUIET: HashMap<VridKey, QuietAdvert> = HashMap::with_max_entries(4096, 0);

/// Per VRID: when the kernel last heard such an advert, and how many.
#[map(name = "HEARD")]
static HEARD: HashMap<VridKey, Heard> = HashMap::with_max_entries(4096, 0);

/// The kernel's down timer, one for the datapath (programs without
/// `_plain` only).
#[btf_map(name = "TIMERS")]
static TIMERS: TimerMap = TimerMap::new();

/// Slot 0: nonzero while a guarded VIP is in non-accept mode, so other
/// traffic looks its destination up only then.
#[map(name = "NO_ACCEPT")]
static NO_ACCEPT: Array<u32> = Array::with_max_entries(1, 0);

/// Per-interface drop/pass policy; absent means [`IfacePolicy::DEFAULT`].
#[map(name = "POLICY")]
static POLICY: HashMap<u32, IfacePolicy> = HashMap::with_max_entries(1024, 0);

/// Per VMAC (its ifindex): where its IGMP/MLD reports leave (see `vmac`).
#[map(name = "VMAC_BASES")]
static VMAC_BASES: HashMap<u32, VmacBase> = HashMap::with_max_entries(1024, 0);

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// What happens to a packet.
enum Verdict {
    Pass,
    Drop,
    /// Answer it with the owner's announcement.
    Redirect(Redirect),
}

#[inline(always)]
fn verdict<F: Frame>(frame: &F, ifindex: u32, timers: Option<&TimerMap>) -> Verdict {
    let maps = Maps {
        vrids: &VRIDS,
        guards: &GUARDS,
        events: &EVENTS,
        leases: &LEASES,
        owners: &OWNERS,
        armed: &ARMED,
        no_accept: &NO_ACCEPT,
        quiet: &QUIET,
        heard: &HEARD,
        timers,
    };
    let counter = match classify(frame, ifindex, &maps, count) {
        Outcome::NotVrrp => return Verdict::Pass,
        Outcome::Fenced => {
            count(Counter::FenceDropped);
            return Verdict::Drop;
        }
        Outcome::NotAccepted => {
            count(Counter::NotAccepted);
            return Verdict::Drop;
        }
        Outcome::Redirect(r) => return Verdict::Redirect(r),
        Outcome::Counted(counter) => counter,
    };
    if advert_passes(counter, ifindex) {
        Verdict::Pass
    } else {
        Verdict::Drop
    }
}

/// Whether an advert (or VRRP junk) goes on to the stack (`true`) or is
/// dropped here.
#[inline(always)]
fn advert_passes(counter: Counter, ifindex: u32) -> bool {
    count(counter);
    // SAFETY: read-only lookup of a plain value type.
    let policy = unsafe { POLICY.get(ifindex) }
        .copied()
        .unwrap_or(IfacePolicy::DEFAULT);
    let drop = match counter {
        Counter::Accepted | Counter::Heard => policy.drop_delivered != 0,
        Counter::UnknownVrid => policy.drop_unknown_vrid != 0,
        // The agent never saw it: let the stack have it rather than lose an advert.
        Counter::RingbufFull => false,
        _ => policy.drop_invalid != 0,
    };
    if !drop && !matches!(counter, Counter::Accepted | Counter::Heard) {
        count(Counter::Passed);
    }
    !drop
}

struct XdpFrame<'a>(&'a XdpContext);

impl Frame for XdpFrame<'_> {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        // SAFETY: the context is valid for the program's run; volatile so each
        // call is a real context load (see `Frame`).
        unsafe {
            (
                core::ptr::read_volatile(&(*self.0.ctx).data) as usize,
                core::ptr::read_volatile(&(*self.0.ctx).data_end) as usize,
            )
        }
    }
}

struct TcFrame<'a>(&'a TcContext);

impl Frame for TcFrame<'_> {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        // SAFETY: as for XdpFrame.
        unsafe {
            (
                core::ptr::read_volatile(&(*self.0.skb.skb).data) as usize,
                core::ptr::read_volatile(&(*self.0.skb.skb).data_end) as usize,
            )
        }
    }
}

/// With the kernel down timer (BPF timers, kernel ≥ 5.15).
#[xdp]
pub fn xvrrpd_xdp(ctx: XdpContext) -> u32 {
    xdp_verdict(&ctx, Some(&TIMERS))
}

/// Without it: the agent runs every down timer.
#[xdp]
pub fn xvrrpd_xdp_plain(ctx: XdpContext) -> u32 {
    xdp_verdict(&ctx, None)
}

#[inline(always)]
fn xdp_verdict(ctx: &XdpContext, timers: Option<&TimerMap>) -> u32 {
    match verdict(&XdpFrame(ctx), ctx.ingress_ifindex() as u32, timers) {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Redirect(r) => {
            if answer::announce_owner(ctx, &r) {
                count(Counter::FenceRedirected);
                xdp_action::XDP_TX
            } else {
                count(Counter::FenceDropped);
                xdp_action::XDP_DROP
            }
        }
    }
}

/// With the kernel down timer, as [`xvrrpd_xdp`].
#[classifier]
pub fn xvrrpd_tc(ctx: TcContext) -> i32 {
    tc_verdict(&ctx, Some(&TIMERS))
}

/// Without it, as [`xvrrpd_xdp_plain`].
#[classifier]
pub fn xvrrpd_tc_plain(ctx: TcContext) -> i32 {
    tc_verdict(&ctx, None)
}

#[inline(always)]
fn tc_verdict(ctx: &TcContext, timers: Option<&TimerMap>) -> i32 {
    // SAFETY: the context pointer is valid for the duration of the program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // VRRP is small and normally linear; pull only when the classifier needs
    // bytes beyond the linear part, so other traffic never pays for it.
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < ctx.len() && parse::needs_pull(ctx.data(), ctx.data_end()) {
        let want = if ctx.len() > 2048 { 2048 } else { ctx.len() };
        if ctx.pull_data(want).is_err() {
            return TC_ACT_UNSPEC;
        }
    }
    match verdict(&TcFrame(ctx), ifindex, timers) {
        // "Not ours": the programs after this one on the hook (tcx links
        // attached later, clsact filters, a load balancer's) still run.
        // TC_ACT_OK would end the hook's chain here.
        Verdict::Pass => TC_ACT_UNSPEC,
        Verdict::Drop => TC_ACT_SHOT,
        // Out of the interface it came in on, back to its sender.
        Verdict::Redirect(r) => {
            if answer::announce_owner(ctx, &r) {
                count(Counter::FenceRedirected);
                // SAFETY: a plain helper call; TC_ACT_REDIRECT on success.
                unsafe { bpf_redirect(ifindex, 0) as i32 }
            } else {
                count(Counter::FenceDropped);
                TC_ACT_SHOT
            }
        }
    }
}

/// TC egress of each VMAC xvrrpd made (see `vmac`).
#[classifier]
pub fn xvrrpd_vmac_out(ctx: TcContext) -> i32 {
    vmac::egress(&ctx, &VMAC_BASES)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// Benchmark references, never attached: the cheapest XDP program, and the
/// usual "count every packet and pass" program, measured beside ours.
#[map(name = "BENCH_COUNT")]
static BENCH_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn xvrrpd_bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn xvrrpd_bench_count(_ctx: XdpContext) -> u32 {
    if let Some(slot) = BENCH_COUNT.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
    xdp_action::XDP_PASS
}
