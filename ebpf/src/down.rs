//! The master-down timer in the kernel (BPF timers, kernel ≥ 5.15): one
//! timer for the whole datapath watches the deadlines of every VRID whose
//! master the kernel keeps (`QUIET`). A backup hearing its masters wakes
//! nobody; when a deadline comes with no newer advert, the agent gets a
//! [`DownEvent`] `DOWN_TIMER_LEAD_NS` before it and spins the rest.
//!
//! One timer, not one per VRID: the kernel allocates a timer without locks
//! and, on a busy host, refuses a thousand of them for seconds on end; and
//! one wake-up that looks at every VRID costs less than a wake-up per VRID.
//! A kept advert only records its time (in `HEARD`) and checks that the
//! timer wakes by its deadline; in steady state it always does. When the
//! timer fires it reports every VRID whose deadline has come and re-arms
//! itself for the earliest of the others.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_timer,
    btf_maps,
    helpers::{
        bpf_ktime_get_ns,
        generated::{
            bpf_for_each_map_elem, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start,
        },
    },
};
use xvrrpd_common::{Counter, DOWN_TIMER_LEAD_NS, DownEvent, QuietAdvert, VridKey};

const CLOCK_MONOTONIC: u64 = 1;

/// The datapath's one down timer (kernel-only: a write from user space
/// would cancel it). The kernel finds the timer through BTF: the field's
/// type is named `bpf_timer`.
#[repr(C)]
pub struct HostTimer {
    timer: bpf_timer,
    /// When the timer is set to wake (0: not running, or running its
    /// callback right now).
    wake_ns: u64,
}

pub type TimerMap = btf_maps::Array<HostTimer, 1>;

/// When to wake for a deadline: a spin lead before it.
#[inline(always)]
fn wake_for(deadline_ns: u64) -> u64 {
    deadline_ns.saturating_sub(DOWN_TIMER_LEAD_NS)
}

/// Starts `timer` (or moves it) to wake at `wake_ns`; false if the kernel
/// refused.
///
/// # Safety
/// `t` is the element of [`TimerMap`] the caller holds.
#[inline(always)]
unsafe fn start(t: *mut HostTimer, wake_ns: u64, now: u64) -> bool {
    let delay = if wake_ns > now { wake_ns - now } else { 1 };
    // SAFETY: the element's own timer (caller's contract).
    unsafe {
        if bpf_timer_start(&raw mut (*t).timer, delay, 0) != 0 {
            return false;
        }
        (*t).wake_ns = wake_ns.max(1);
    }
    true
}

/// A kept advert at `now` moved a VRID's deadline to `deadline_ns`: makes
/// sure the host timer wakes by then (it starts it the first time, and
/// moves it earlier if needed). Returns whether the kernel watches that
/// deadline: starting the timer can fail for a while (the kernel allocates
/// it without locks), and the next kept advert tries again.
#[inline(always)]
pub fn watch(timers: &TimerMap, deadline_ns: u64, now: u64) -> bool {
    let Some(t) = timers.get_ptr_mut(0) else {
        return false;
    };
    let wake_ns = wake_for(deadline_ns);
    // SAFETY: a map value pointer valid for this run; the timer helpers
    // take the timer inside it and the map that holds it. A callback racing
    // with this check re-arms for the earliest deadline it saw, or keeps an
    // earlier wake-up set here meanwhile.
    unsafe {
        let set = (*t).wake_ns;
        if set != 0 && set <= wake_ns {
            return true;
        }
        let timer = &raw mut (*t).timer;
        let map = (timers as *const TimerMap).cast_mut().cast::<c_void>();
        // 0 the first time, -EBUSY once initialized; -ENOMEM: not now.
        match bpf_timer_init(timer, map, CLOCK_MONOTONIC) {
            0 => {
                if bpf_timer_set_callback(timer, on_wake as *mut c_void) != 0 {
                    return false;
                }
            }
            EBUSY => {}
            _ => return false,
        }
        start(t, wake_ns, now)
    }
}

const EBUSY: i64 = -16;

/// What one wake-up found.
#[repr(C)]
struct Scan {
    now: u64,
    /// The earliest deadline not yet due (`u64::MAX`: none).
    next_ns: u64,
}

/// The timer ran: report every watched VRID whose deadline has come and
/// re-arm for the earliest of the others. A static subprogram (the
/// verifier's rule for callbacks) returning 0.
#[inline(never)]
extern "C" fn on_wake(_map: *mut c_void, _key: *mut u32, value: *mut HostTimer) -> i32 {
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // A kept advert seeing 0 from now on moves the timer itself.
    // SAFETY: the element's value, valid during the callback.
    unsafe { (*value).wake_ns = 0 };
    let mut scan = Scan {
        now,
        next_ns: u64::MAX,
    };
    // SAFETY: QUIET is a map of this program; the callback and its context
    // match what the helper passes.
    unsafe {
        bpf_for_each_map_elem(
            (&raw const crate::QUIET).cast_mut().cast::<c_void>(),
            on_quiet as *mut c_void,
            (&raw mut scan).cast::<c_void>(),
            0,
        );
    }
    if scan.next_ns != u64::MAX {
        let wake_ns = wake_for(scan.next_ns);
        // SAFETY: as above.
        unsafe {
            let set = (*value).wake_ns;
            if set == 0 || wake_ns < set {
                // If this fails the next kept advert starts it again.
                start(value, wake_ns, now);
            }
        }
    }
    0
}

/// One VRID the kernel keeps adverts of: due (reported, and unwatched until
/// its next kept advert) or a candidate for the next wake-up.
#[inline(never)]
extern "C" fn on_quiet(
    _map: *mut c_void,
    key: *mut VridKey,
    quiet: *mut QuietAdvert,
    scan: *mut Scan,
) -> i64 {
    // SAFETY: the element's key and value and the caller's context, valid
    // during the callback.
    let (key, down_ns, now) = unsafe { (*key, (*quiet).down_ns, (*scan).now) };
    if down_ns == 0 {
        return 0;
    }
    let Some(heard) = crate::HEARD.get_ptr_mut(key) else {
        return 0;
    };
    // SAFETY: a map value pointer valid for this run; a kept advert racing
    // with this write is at most one advert the timer does not watch, and
    // the next one watches again.
    unsafe {
        if (*heard).timed == 0 {
            return 0;
        }
        let last_ns = (*heard).last_ns;
        let deadline_ns = last_ns + down_ns;
        if now + DOWN_TIMER_LEAD_NS < deadline_ns {
            if deadline_ns < (*scan).next_ns {
                (*scan).next_ns = deadline_ns;
            }
            return 0;
        }
        (*heard).timed = 0;
        crate::count(Counter::DownExpired);
        if let Some(mut entry) = crate::EVENTS.reserve::<DownEvent>(0) {
            entry.write(DownEvent {
                fired_ns: now,
                deadline_ns,
                last_ns,
                key,
            });
            entry.submit(0);
        }
    }
    0
}
