//! The one retry of a failed lab test, allowed only after a proven host
//! stall.
//!
//! A whole-host stall stops every router of a lab at once (see
//! [`crate::stall`]), which no daemon can tell from a dead master. So when a
//! lab test fails, [`lab_test`] asks the stall monitor whether the host
//! stalled where and as long as it takes to explain that failure; only then
//! is the test run once more, and that run must pass. Where and how long
//! depends on the failure ([`explaining_window`]):
//!
//! * a take-over later than its bound carries a [`LateTakeover`]: a stall
//!   overlapping `[deadline − 1 ms, first advert]`, at least as long as the
//!   lateness beyond the tolerance;
//! * an old master still advertising after the new one's first advert and
//!   the grace carries a [`LateYield`]: a stall overlapping `[first
//!   advert, last stray advert]`, at least as long as that advert was late;
//! * any other failure of a lab step carries a [`StepFailed`]: a stall of
//!   one advert interval (at least 5 ms), during the step or one
//!   `Master_Down_Interval` before it (that still delays what the step
//!   measures);
//! * any other failure: a stall of at least [`TEST_RETRY_STALL`] within
//!   [`TEST_RETRY_WINDOW`] before it.

use std::{
    any::Any,
    io::Write,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    time::Duration,
};

use anyhow::Result;

use crate::{
    clock::{mono_ns, ms},
    scenario::{LateTakeover, LateYield, StepFailed},
    stall::{self, Stall, StallWindow},
    vrrp_lab,
};

/// A failure outside a lab step is explained by a host stall at least this
/// long: one advert interval of the labs' `advert_int 0.01`.
pub const TEST_RETRY_STALL: Duration = Duration::from_millis(10);

/// How shortly before such a failure: the longest a lab check looks back (a
/// settle time of one `advert_int 1` plus a take-over's margin).
pub const TEST_RETRY_WINDOW: Duration = Duration::from_secs(2);

/// Runs the lab test `name` (see the module documentation). The labs it
/// makes keep their files, and report them, when it fails, by an error as
/// well as by a panic.
pub fn lab_test(name: &str, body: impl Fn() -> Result<()>) -> Result<()> {
    let monitor = stall::host();
    let run_from = mono_ns();
    let failure = match run_once(&body) {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    let failed_at = mono_ns();
    let error = match &failure {
        Failure::Error(e) => Some(e),
        Failure::Panic(_) => None,
    };
    let window = explaining_window(error, run_from, failed_at);
    let Some(stall) = window.longest_explaining(&monitor.records()) else {
        eprintln!(
            "{name}: not run again: the stall monitor saw no host stall ≥ {} there (worst {})",
            ms(window.min.as_nanos() as i128),
            ms(monitor.worst_between(window.from_mono, window.to_mono) as i128)
        );
        return match failure {
            Failure::Error(e) => Err(e),
            Failure::Panic(p) => resume_unwind(p),
        };
    };
    say(&format!(
        "{name}: failed {:.2} s after the whole host stalled for {} (every router stopped at \
         once, not a fault of a daemon): running it once more.\n  the failure: {failure}",
        failed_at.saturating_sub(stall.end_mono()) as f64 / 1e9,
        ms(stall.late_ns as i128)
    ));
    match run_once(&body) {
        Ok(()) => Ok(()),
        Err(Failure::Error(e)) => Err(e),
        Err(Failure::Panic(p)) => resume_unwind(p),
    }
}

/// Where a host stall must have been, and how long, to explain `failure`
/// (`None`: a panic) of a run that started at `run_from` and failed at
/// `failed_at` (CLOCK_MONOTONIC): the window of a [`LateTakeover`] or of a
/// [`StepFailed`] in its chain, else [`TEST_RETRY_STALL`] within
/// [`TEST_RETRY_WINDOW`] before the failure.
pub fn explaining_window(
    failure: Option<&anyhow::Error>,
    run_from: u64,
    failed_at: u64,
) -> StallWindow {
    if let Some(e) = failure {
        if let Some(late) = e.downcast_ref::<LateTakeover>() {
            return late.stall_window();
        }
        if let Some(late) = e.downcast_ref::<LateYield>() {
            return late.stall_window();
        }
        if let Some(step) = e.downcast_ref::<StepFailed>() {
            return step.stall_window;
        }
    }
    StallWindow {
        from_mono: failed_at
            .saturating_sub(TEST_RETRY_WINDOW.as_nanos() as u64)
            .max(run_from),
        to_mono: failed_at,
        min: TEST_RETRY_STALL,
    }
}

/// The stall among `stalls` that explains `failure`, if one does (see
/// [`explaining_window`]).
pub fn explaining_stall(
    failure: Option<&anyhow::Error>,
    run_from: u64,
    failed_at: u64,
    stalls: &[Stall],
) -> Option<Stall> {
    explaining_window(failure, run_from, failed_at).longest_explaining(stalls)
}

enum Failure {
    Error(anyhow::Error),
    Panic(Box<dyn Any + Send>),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "{e:#}"),
            Failure::Panic(p) => f.write_str(
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)"),
            ),
        }
    }
}

/// One run of `body`. The labs it made are gone by the time an error
/// reaches here, so they hand their files over ([`vrrp_lab::collect_ended`])
/// and this keeps them when the run failed.
fn run_once(body: &impl Fn() -> Result<()>) -> Result<(), Failure> {
    let (outcome, labs) = vrrp_lab::collect_ended(|| catch_unwind(AssertUnwindSafe(body)));
    let outcome = match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Error(e)),
        Err(p) => Err(Failure::Panic(p)),
    };
    for lab in labs {
        lab.close(outcome.is_err());
    }
    outcome
}

/// Writes past the test harness's output capture: a retry must show in the
/// log of a run even when the test then passes.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[cfg(test)]
mod tests {
    use anyhow::anyhow;

    use super::*;

    const MS: u64 = 1_000_000;

    fn stall(due_ms: u64, late_ms: u64) -> Stall {
        Stall {
            due_mono: due_ms * MS,
            late_ns: late_ms * MS,
        }
    }

    fn step_failed(from_ms: u64, to_ms: u64) -> StepFailed {
        StepFailed {
            what: "crash r1 → r2".into(),
            stall_window: StallWindow {
                from_mono: from_ms * MS,
                to_mono: to_ms * MS,
                min: Duration::from_millis(10),
            },
        }
    }

    /// A take-over 3 ms late beyond the tolerance, deadline at 1000 ms,
    /// first advert at 1020 ms, inside a step of [500, 1200] ms.
    fn late_takeover() -> anyhow::Error {
        anyhow!("r2 detecting r1's crash: 23 ms after the last advert")
            .context(LateTakeover {
                deadline_mono: 1000 * MS,
                first_advert_mono: 1020 * MS,
                excess_ns: 3 * MS,
            })
            .context(step_failed(500, 1200))
    }

    #[test]
    fn a_late_takeover_is_explained_only_around_its_deadline_and_by_its_lateness() {
        let e = late_takeover();
        let explains = |s: Stall| explaining_stall(Some(&e), 0, 5000 * MS, &[s]).is_some();
        // Overlapping [deadline − 1 ms, first advert], at least 3 ms.
        assert!(explains(stall(1005, 3)));
        assert!(
            explains(stall(996, 3)),
            "ends at 999 ms, the window's start"
        );
        assert!(!explains(stall(1005, 2)), "shorter than the lateness");
        assert!(!explains(stall(995, 3)), "over before the deadline − 1 ms");
        assert!(!explains(stall(1021, 50)), "after the first advert");
        // The step's own window does not apply: this one would fit it.
        assert!(!explains(stall(600, 50)));
    }

    #[test]
    fn a_late_takeover_needs_a_stall_of_at_least_1_ms() {
        let e = anyhow!("late").context(LateTakeover {
            deadline_mono: 1000 * MS,
            first_advert_mono: 1020 * MS,
            excess_ns: 1000,
        });
        let w = explaining_window(Some(&e), 0, 5000 * MS);
        assert_eq!(w.min, Duration::from_millis(1));
        assert_eq!((w.from_mono, w.to_mono), (999 * MS, 1020 * MS));
    }

    #[test]
    fn another_step_failure_is_explained_only_by_a_stall_within_the_step() {
        let e = anyhow!("r2 did not take the VIP").context(step_failed(500, 1200));
        let e = e.context("while checking the status");
        let explains = |s: Stall| explaining_stall(Some(&e), 0, 5000 * MS, &[s]).is_some();
        assert!(explains(stall(600, 10)));
        assert!(explains(stall(495, 10)), "ends inside the step");
        assert!(
            !explains(stall(600, 9)),
            "shorter than the explaining stall"
        );
        assert!(!explains(stall(480, 10)), "over before the step's window");
        assert!(
            !explains(stall(1300, 50)),
            "after the step, though within 2 s of the failure"
        );
    }

    #[test]
    fn a_late_yield_is_explained_by_a_stall_as_long_as_its_lateness() {
        // The CI failure this models: the new master's first advert at
        // 1000 ms, the old one's reply 3.3 ms later (grace 2 ms), a host
        // stall of 2.07 ms at 1000.9 ms.
        let late = LateYield {
            first_advert_mono: 1000 * MS,
            last_stray_mono: 1000 * MS + 3_300_000,
            excess_ns: 1_300_000,
        };
        let e = anyhow!("expected adverts from r1 only")
            .context(late)
            .context(step_failed(500, 1200));
        let explains = |due: u64, late_ns: u64| {
            let s = Stall {
                due_mono: due,
                late_ns,
            };
            explaining_stall(Some(&e), 0, 5000 * MS, &[s]).is_some()
        };
        assert!(explains(1000 * MS + 900_000, 2_070_000));
        assert!(!explains(1000 * MS + 900_000, 1_200_000), "shorter");
        assert!(!explains(990 * MS, 2_070_000), "over before the advert");
        assert!(!explains(1010 * MS, 50 * MS), "after the stray advert");
    }

    #[test]
    fn a_failure_outside_steps_is_explained_by_10_ms_within_2_s_before_it() {
        let e = anyhow!("r1 never advertised its lowered priority 90");
        let failed_at = 5000 * MS;
        for failure in [Some(&e), None] {
            let explains =
                |s: Stall| explaining_stall(failure, 1000 * MS, failed_at, &[s]).is_some();
            assert!(explains(stall(4000, 10)));
            assert!(explains(stall(2995, 10)), "ends 2 s before the failure");
            assert!(!explains(stall(4000, 9)), "shorter than 10 ms");
            assert!(
                !explains(stall(2900, 10)),
                "more than 2 s before the failure"
            );
        }
        // Never a stall from before the run started.
        let e = anyhow!("a check failed");
        assert!(explaining_stall(Some(&e), 4500 * MS, failed_at, &[stall(4000, 100)]).is_none());
    }

    #[test]
    fn the_longest_explaining_stall_is_reported() {
        let e = anyhow!("failed");
        let stalls = [stall(4000, 12), stall(4500, 30), stall(4700, 11)];
        assert_eq!(
            explaining_stall(Some(&e), 0, 5000 * MS, &stalls),
            Some(stall(4500, 30))
        );
    }
}
