//! How a tracker's state changes an instance's priority, exactly as keepalived
//! computes it (vrrp_track.c, track_file.c). Pure; for the state machine.

/// What one tracked object contributes to one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The instance must go to FAULT.
    Fault,
    /// Added to the base priority (the sum is then clamped to 1..=254).
    Priority(i32),
}

/// keepalived's FAULT marker for track_file results.
const FILE_FAULT: i64 = -254;
const FILE_MAX: i64 = 253;

/// Effect of a script, process or interface in state `ok` tracked with
/// `weight` (and `reverse`).
///
/// * weight 0: FAULT when down (with `reverse`: FAULT when up);
/// * weight > 0: `+weight` when up (`reverse`: `-weight`), nothing when down;
/// * weight < 0: `weight` when down (`reverse`: `-weight`), nothing when up.
pub fn status_effect(ok: bool, weight: i32, reverse: bool) -> Effect {
    let multiplier = if reverse { -1 } else { 1 };
    if weight == 0 {
        return if ok != (multiplier == 1) {
            Effect::Fault
        } else {
            Effect::Priority(0)
        };
    }
    if (ok && weight > 0) || (!ok && weight < 0) {
        Effect::Priority(weight.saturating_mul(multiplier))
    } else {
        Effect::Priority(0)
    }
}

/// Effect of a track_file holding `value`, tracked with `weight` (and
/// `reverse`).
///
/// * weight 0: a non-zero value is FAULT, zero is OK (`reverse` swaps them);
/// * otherwise `value × weight` (negated by `reverse`), clamped to
///   `-254..=253`, where `-254` means FAULT.
pub fn file_effect(value: i32, weight: i32, reverse: bool) -> Effect {
    let multiplier: i64 = if reverse { -1 } else { 1 };
    if weight == 0 {
        return if (value != 0) == (multiplier == 1) {
            Effect::Fault
        } else {
            Effect::Priority(0)
        };
    }
    let status = (i64::from(value) * i64::from(weight) * multiplier).clamp(FILE_FAULT, FILE_MAX);
    if status == FILE_FAULT {
        Effect::Fault
    } else {
        // In range by the clamp above.
        Effect::Priority(i32::try_from(status).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unweighted_faults_when_down_and_reverse_when_up() {
        assert_eq!(status_effect(false, 0, false), Effect::Fault);
        assert_eq!(status_effect(true, 0, false), Effect::Priority(0));
        assert_eq!(status_effect(true, 0, true), Effect::Fault);
        assert_eq!(status_effect(false, 0, true), Effect::Priority(0));
    }

    #[test]
    fn weight_table_from_keepalived_conf() {
        // Weight  Reverse  up      down
        //  +ve     no      prio +  -
        //  -ve     no      -       prio -
        //  +ve     yes     prio -  -
        //  -ve     yes     -       prio +
        assert_eq!(status_effect(true, 10, false), Effect::Priority(10));
        assert_eq!(status_effect(false, 10, false), Effect::Priority(0));
        assert_eq!(status_effect(true, -10, false), Effect::Priority(0));
        assert_eq!(status_effect(false, -10, false), Effect::Priority(-10));
        assert_eq!(status_effect(true, 10, true), Effect::Priority(-10));
        assert_eq!(status_effect(false, 10, true), Effect::Priority(0));
        assert_eq!(status_effect(true, -10, true), Effect::Priority(0));
        assert_eq!(status_effect(false, -10, true), Effect::Priority(10));
    }

    #[test]
    fn file_weight_zero_is_fault_on_non_zero() {
        assert_eq!(file_effect(0, 0, false), Effect::Priority(0));
        assert_eq!(file_effect(5, 0, false), Effect::Fault);
        assert_eq!(file_effect(-1, 0, false), Effect::Fault);
        assert_eq!(file_effect(0, 0, true), Effect::Fault);
        assert_eq!(file_effect(7, 0, true), Effect::Priority(0));
    }

    #[test]
    fn file_value_times_weight_clamped() {
        assert_eq!(file_effect(3, 1, false), Effect::Priority(3));
        assert_eq!(file_effect(3, -2, false), Effect::Priority(-6));
        assert_eq!(file_effect(3, 2, true), Effect::Priority(-6));
        assert_eq!(file_effect(1000, 1, false), Effect::Priority(253));
        assert_eq!(file_effect(-253, 1, false), Effect::Priority(-253));
        assert_eq!(file_effect(-254, 1, false), Effect::Fault);
        assert_eq!(file_effect(-1000, 1, false), Effect::Fault);
        assert_eq!(
            file_effect(i32::MAX, i32::MAX, false),
            Effect::Priority(253)
        );
        assert_eq!(file_effect(i32::MIN, i32::MAX, false), Effect::Fault);
    }
}
