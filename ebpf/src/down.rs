//! The master-down timer in the kernel (BPF timers, kernel ≥ 5.15): each
//! kept advert of a healthy master re-arms its VRID's timer; when one runs
//! out, the agent gets a [`DownEvent`] `DOWN_TIMER_LEAD_NS` before the
//! deadline and spins the rest. A backup hearing its master wakes nobody.

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
    last_ns: u64,
    deadline_ns: u64,
}

pub type TimerMap = btf_maps::HashMap<VridKey, DownTimer, 4096>;

/// (Re)arms `key`'s timer for an advert kept at `last_ns`.
#[inline(always)]
pub fn arm(timers: &TimerMap, key: VridKey, last_ns: u64, down_ns: u64) {
    let mut entry = timers.get_ptr_mut(key);
    if entry.is_none() {
        // SAFETY: all-zero is the kernel's "not initialized" timer.
        let zero: DownTimer = unsafe { core::mem::zeroed() };
        let _ = timers.insert(key, &zero, BPF_NOEXIST as u64);
        entry = timers.get_ptr_mut(key);
    }
    let Some(e) = entry else {
        return;
    };
    // SAFETY: a map value pointer valid for this run; the timer helpers
    // take the timer inside it and the map that holds it.
    unsafe {
        let timer = &raw mut (*e).timer;
        let map = (timers as *const TimerMap).cast_mut().cast::<c_void>();
        // 0 the first time, -EBUSY once initialized.
        if bpf_timer_init(timer, map, CLOCK_MONOTONIC) == 0 {
            bpf_timer_set_callback(timer, on_down as *mut c_void);
        }
        (*e).last_ns = last_ns;
        (*e).deadline_ns = last_ns + down_ns;
        let wake = if down_ns > DOWN_TIMER_LEAD_NS {
            down_ns - DOWN_TIMER_LEAD_NS
        } else {
            1
        };
        bpf_timer_start(timer, wake, 0);
    }
}

/// The timer ran out: tell the agent, if it still wants the VRID timed.
/// A static subprogram (the verifier's rule for callbacks) returning 0.
#[inline(never)]
extern "C" fn on_down(_map: *mut c_void, key: *mut VridKey, value: *mut DownTimer) -> i32 {
    // SAFETY: the kernel passes the element's key and value.
    let (key, last_ns, deadline_ns) = unsafe { (*key, (*value).last_ns, (*value).deadline_ns) };
    // SAFETY: read-only lookup of a plain value.
    match unsafe { crate::QUIET.get(key) } {
        Some(q) if q.down_ns != 0 => {}
        _ => return 0,
    }
    crate::count(Counter::DownExpired);
    if let Some(mut entry) = crate::EVENTS.reserve::<DownEvent>(0) {
        // SAFETY: a helper call without arguments.
        let fired_ns = unsafe { bpf_ktime_get_ns() };
        entry.write(DownEvent {
            fired_ns,
            deadline_ns,
            last_ns,
            key,
        });
        entry.submit(0);
    }
    0
}
