//! The master-down timer in the kernel (BPF timers, kernel ≥ 5.15): kept
//! adverts of a healthy master move its VRID's deadline; when the deadline
//! comes with no newer advert, the agent gets a [`DownEvent`]
//! `DOWN_TIMER_LEAD_NS` before it and spins the rest. A backup hearing its
//! master wakes nobody.
//!
//! An advert only records its time (and starts the timer when it is not
//! running): restarting an hrtimer per advert costs more than the advert.
//! The timer, when it fires, looks at the last advert's time and either
//! re-arms itself for the deadline that time gives or reports.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_timer},
    btf_maps,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    },
};
use xvrrpd_common::{Counter, DOWN_TIMER_LEAD_NS, DownEvent, VridKey};

const CLOCK_MONOTONIC: u64 = 1;

/// One VRID's timer (kernel-only: a write from user space would cancel it).
/// The kernel finds the timer through BTF: the field's type is named
/// `bpf_timer`.
#[repr(C)]
pub struct DownTimer {
    timer: bpf_timer,
    /// When the last kept advert came (the deadline counts from it).
    last_ns: u64,
    /// 1 while the timer is running.
    armed: u64,
}

pub type TimerMap = btf_maps::HashMap<VridKey, DownTimer, 4096>;

/// The time from `now` until the wake-up for a deadline (a spin lead before
/// it); at least 1 ns.
#[inline(always)]
fn wake_in(deadline_ns: u64, now: u64) -> u64 {
    let wake = deadline_ns.saturating_sub(DOWN_TIMER_LEAD_NS);
    if wake > now { wake - now } else { 1 }
}

/// Records an advert kept at `now` for `key`; starts its timer if it is not
/// running. Returns whether the timer runs: starting one can fail for a
/// while (the kernel allocates it atomically, and a burst of a thousand
/// VRIDs empties its cache), and the next kept advert tries again.
#[inline(always)]
pub fn heard(timers: &TimerMap, key: VridKey, now: u64, down_ns: u64) -> bool {
    let mut entry = timers.get_ptr_mut(key);
    if entry.is_none() {
        // SAFETY: all-zero is the kernel's "not initialized" timer.
        let zero: DownTimer = unsafe { core::mem::zeroed() };
        let _ = timers.insert(key, &zero, BPF_NOEXIST as u64);
        entry = timers.get_ptr_mut(key);
    }
    let Some(e) = entry else {
        return false;
    };
    // SAFETY: a map value pointer valid for this run; the timer helpers
    // take the timer inside it and the map that holds it. A callback
    // racing with this write sees either time, both of this master.
    unsafe {
        if (*e).last_ns < now {
            (*e).last_ns = now;
        }
        if (*e).armed != 0 {
            return true;
        }
        let timer = &raw mut (*e).timer;
        let map = (timers as *const TimerMap).cast_mut().cast::<c_void>();
        // 0 the first time, -EBUSY once initialized; -ENOMEM: not now.
        match bpf_timer_init(timer, map, CLOCK_MONOTONIC) {
            0 => {
                if bpf_timer_set_callback(timer, on_down as *mut c_void) != 0 {
                    return false;
                }
            }
            EBUSY => {}
            _ => return false,
        }
        if bpf_timer_start(timer, wake_in(now + down_ns, now), 0) != 0 {
            return false;
        }
        (*e).armed = 1;
        true
    }
}

const EBUSY: i64 = -16;

/// The timer ran: re-arm for the deadline the last advert gives, or tell
/// the agent it has come (if it still wants the VRID timed). A static
/// subprogram (the verifier's rule for callbacks) returning 0.
#[inline(never)]
extern "C" fn on_down(_map: *mut c_void, key: *mut VridKey, value: *mut DownTimer) -> i32 {
    // SAFETY: the kernel passes the element's key and value.
    let (key, last_ns) = unsafe { (*key, (*value).last_ns) };
    // SAFETY: read-only lookup of a plain value.
    let down_ns = match unsafe { crate::QUIET.get(key) } {
        Some(q) if q.down_ns != 0 => q.down_ns,
        _ => {
            // SAFETY: the element's value, valid during the callback.
            unsafe { (*value).armed = 0 };
            return 0;
        }
    };
    let deadline_ns = last_ns + down_ns;
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now + DOWN_TIMER_LEAD_NS < deadline_ns {
        // A later advert moved the deadline.
        // SAFETY: the element's own timer, restarted from its callback;
        // if that fails, the next kept advert starts it again.
        unsafe {
            if bpf_timer_start(&raw mut (*value).timer, wake_in(deadline_ns, now), 0) != 0 {
                (*value).armed = 0;
            }
        }
        return 0;
    }
    // SAFETY: as above.
    unsafe { (*value).armed = 0 };
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
    0
}
