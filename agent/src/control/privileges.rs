//! Dropping the capabilities the daemon no longer needs once the datapath
//! is attached.
//!
//! Loading eBPF programs takes CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN
//! before Linux 5.8); running takes only CAP_NET_ADMIN (VIPs, links,
//! attaching to a new interface on reload), CAP_NET_RAW (advert and GARP
//! sockets) and CAP_SETUID, CAP_SETGID, CAP_KILL (scripts as `script_user`,
//! killing their process groups). [`drop_after_attach`] removes everything
//! else from the effective, permitted, inheritable and ambient sets and from
//! the bounding set, so a script that runs as root cannot get them back.
//!
//! Capabilities belong to threads, not processes: call it before any other
//! thread exists (a `current_thread` tokio runtime, before the first
//! `spawn_blocking`). Threads created afterwards inherit the reduced sets;
//! if an older thread still holds a capability to drop, the call refuses
//! and changes nothing.
//!
//! Kernels before 5.19 with `kernel.unprivileged_bpf_disabled` set check
//! CAP_BPF (or CAP_SYS_ADMIN) on every bpf() call, including the map
//! updates and counter reads the running daemon makes; there
//! [`Plan::for_this_kernel`] keeps that one capability and says so in the
//! report.

use std::fs;

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};
use thiserror::Error;

/// What the daemon needs after attach, on every kernel.
pub const KEPT: [Capability; 5] = [
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_KILL,
];

/// What only startup needs (the rest of dist/xvrrpd.service's bounding set).
pub const STARTUP_ONLY: [Capability; 4] = [
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SETPCAP,
];

#[derive(Debug, Error)]
pub enum PrivError {
    #[error(
        "capabilities are per thread and threads {threads:?} still hold {caps}: call \
         drop_after_attach before starting other threads (current_thread runtime, before \
         spawn_blocking); nothing was dropped"
    )]
    OtherThreads { threads: Vec<u32>, caps: String },
    #[error("reading this process's capabilities failed: {0} (is /proc mounted?)")]
    Read(String),
    #[error("dropping {what} failed: {detail}")]
    Drop { what: &'static str, detail: String },
    #[error("after the drop this thread still holds {0}: refusing to run with it")]
    StillHeld(String),
}

/// Which capabilities to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub keep: CapsHashSet,
    /// Why more than [`KEPT`] is kept, if it is.
    pub note: Option<String>,
}

impl Plan {
    /// Exactly [`KEPT`].
    pub fn strict() -> Self {
        Self {
            keep: KEPT.into_iter().collect(),
            note: None,
        }
    }

    /// [`KEPT`], plus the bpf() capability on kernels that check it for map
    /// access (before 5.19, with unprivileged bpf disabled).
    pub fn for_this_kernel() -> Self {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let disabled = fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        Self::for_kernel(kernel_version(&release), disabled)
    }

    /// The plan for a kernel `(major, minor)` and its
    /// `unprivileged_bpf_disabled` value.
    pub fn for_kernel(version: Option<(u32, u32)>, unprivileged_bpf_disabled: u32) -> Self {
        let mut plan = Self::strict();
        let old = version.is_none_or(|v| v < (5, 19));
        if old && unprivileged_bpf_disabled != 0 {
            // CAP_BPF exists from 5.8; before that bpf() wants CAP_SYS_ADMIN.
            let cap = if version.is_some_and(|v| v >= (5, 8)) {
                Capability::CAP_BPF
            } else {
                Capability::CAP_SYS_ADMIN
            };
            plan.keep.insert(cap);
            plan.note = Some(format!(
                "kept {cap}: before Linux 5.19, with kernel.unprivileged_bpf_disabled set, every \
                 bpf() call (map updates on reload, counter reads) needs it"
            ));
        }
        plan
    }
}

/// `"6.18.44-foo"` → `(6, 18)`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What [`drop_after_attach`] did; the runtime logs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DroppedReport {
    /// Were in the permitted set, are gone.
    pub dropped: Vec<Capability>,
    /// Held now (effective = permitted).
    pub kept: Vec<Capability>,
    /// Wanted but not held when called: what needs them will fail (e.g.
    /// without CAP_KILL scripts of another user cannot be killed).
    pub missing: Vec<Capability>,
    /// Removed from the bounding set.
    pub bounding_dropped: Vec<Capability>,
    /// Left in the bounding set because CAP_SETPCAP was not held: a script
    /// running as root would get them back. Warn about it.
    pub bounding_left: Vec<Capability>,
    /// Why more than [`KEPT`] was kept, if it was.
    pub note: Option<String>,
}

impl std::fmt::Display for DroppedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[Capability]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        write!(
            f,
            "capabilities kept: {}; dropped: {}",
            names(&self.kept),
            names(&self.dropped)
        )?;
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", names(&self.missing))?;
        }
        if !self.bounding_left.is_empty() {
            write!(
                f,
                "; still in the bounding set (no CAP_SETPCAP): {}",
                names(&self.bounding_left)
            )?;
        }
        if let Some(n) = &self.note {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

fn read(set: CapSet) -> Result<CapsHashSet, PrivError> {
    caps::read(None, set).map_err(|e| PrivError::Read(e.to_string()))
}

fn sorted(set: impl IntoIterator<Item = Capability>) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.into_iter().collect();
    v.sort_by_key(|c| c.index());
    v
}

fn names(set: &CapsHashSet) -> String {
    sorted(set.iter().copied())
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a `Cap…:` line of /proc/…/status into capabilities.
fn parse_mask(hex: &str) -> CapsHashSet {
    let mask = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect()
}

/// Threads other than the caller that hold (effective or permitted) any
/// capability outside `keep`.
fn privileged_threads(keep: &CapsHashSet) -> Result<(Vec<u32>, CapsHashSet), PrivError> {
    let me = nix::unistd::gettid().as_raw() as u32;
    let tasks = fs::read_dir("/proc/self/task").map_err(|e| PrivError::Read(e.to_string()))?;
    let mut threads = Vec::new();
    let mut held = CapsHashSet::new();
    for entry in tasks.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if tid == me {
            continue;
        }
        // A thread that exited meanwhile has nothing left to hold.
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let mut extra = CapsHashSet::new();
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("CapEff:")
                .or_else(|| line.strip_prefix("CapPrm:"))
            {
                extra.extend(parse_mask(v).into_iter().filter(|c| !keep.contains(c)));
            }
        }
        if !extra.is_empty() {
            threads.push(tid);
            held.extend(extra);
        }
    }
    threads.sort_unstable();
    Ok((threads, held))
}

/// Drops what the running daemon does not need ([`Plan::for_this_kernel`]).
/// Call once, after the datapath is attached and before other threads start.
pub fn drop_after_attach() -> Result<DroppedReport, PrivError> {
    drop_with(&Plan::for_this_kernel())
}

/// Drops every capability not in `plan.keep` from this thread's sets and,
/// with CAP_SETPCAP, from the bounding set; refuses (changing nothing) while
/// another thread still holds one (see [`drop_in_this_thread`]).
pub fn drop_with(plan: &Plan) -> Result<DroppedReport, PrivError> {
    let (threads, held) = privileged_threads(&plan.keep)?;
    if !threads.is_empty() {
        return Err(PrivError::OtherThreads {
            threads,
            caps: names(&held),
        });
    }
    drop_in_this_thread(plan)
}

/// [`drop_with`] for the calling thread alone, whatever other threads hold:
/// for a worker thread started before the drop, which drops its own before
/// the main thread drops with [`drop_with`].
pub fn drop_in_this_thread(plan: &Plan) -> Result<DroppedReport, PrivError> {
    let keep = &plan.keep;
    let permitted = read(CapSet::Permitted)?;
    let effective = read(CapSet::Effective)?;
    let inheritable = read(CapSet::Inheritable)?;
    let bounding = read(CapSet::Bounding)?;
    let ambient = caps::read(None, CapSet::Ambient).unwrap_or_default();

    let mut report = DroppedReport {
        dropped: sorted(permitted.iter().copied().filter(|c| !keep.contains(c))),
        kept: sorted(permitted.iter().copied().filter(|c| keep.contains(c))),
        missing: sorted(keep.iter().copied().filter(|c| !permitted.contains(c))),
        note: plan.note.clone(),
        ..DroppedReport::default()
    };

    // Bounding set first: PR_CAPBSET_DROP needs CAP_SETPCAP in effective,
    // and CAP_SETPCAP itself goes last.
    let to_bound: Vec<Capability> = sorted(bounding.iter().copied().filter(|c| !keep.contains(c)));
    let can_setpcap = permitted.contains(&Capability::CAP_SETPCAP);
    if can_setpcap && !effective.contains(&Capability::CAP_SETPCAP) {
        caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP).map_err(|e| {
            PrivError::Drop {
                what: "the bounding set (raising CAP_SETPCAP)",
                detail: e.to_string(),
            }
        })?;
    }
    if can_setpcap {
        let (last, first): (Vec<Capability>, Vec<Capability>) = to_bound
            .iter()
            .partition(|c| **c == Capability::CAP_SETPCAP);
        for c in first.into_iter().chain(last) {
            caps::drop(None, CapSet::Bounding, c).map_err(|e| PrivError::Drop {
                what: "the bounding set",
                detail: format!("{c}: {e}"),
            })?;
            report.bounding_dropped.push(c);
        }
    } else {
        report.bounding_left = to_bound;
    }

    // Ambient ⊆ permitted ∩ inheritable: clear it before shrinking those.
    for c in ambient.iter().filter(|c| !keep.contains(c)) {
        caps::drop(None, CapSet::Ambient, *c).map_err(|e| PrivError::Drop {
            what: "the ambient set",
            detail: format!("{c}: {e}"),
        })?;
    }
    let new: CapsHashSet = permitted
        .iter()
        .copied()
        .filter(|c| keep.contains(c))
        .collect();
    let new_inh: CapsHashSet = inheritable
        .iter()
        .copied()
        .filter(|c| keep.contains(c))
        .collect();
    // Effective before permitted: the kernel wants effective ⊆ permitted at
    // every step. Kept capabilities that were only permitted are raised.
    for (set, value, what) in [
        (CapSet::Effective, &new, "the effective set"),
        (CapSet::Permitted, &new, "the permitted set"),
        (CapSet::Inheritable, &new_inh, "the inheritable set"),
    ] {
        caps::set(None, set, value).map_err(|e| PrivError::Drop {
            what,
            detail: e.to_string(),
        })?;
    }

    // Trust, but verify: nothing outside `keep` may remain.
    let mut left = CapsHashSet::new();
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        left.extend(read(set)?.into_iter().filter(|c| !keep.contains(c)));
    }
    if can_setpcap {
        left.extend(
            read(CapSet::Bounding)?
                .into_iter()
                .filter(|c| !keep.contains(c)),
        );
    }
    if !left.is_empty() {
        return Err(PrivError::StillHeld(names(&left)));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_strings() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic\n"), Some((5, 4)));
        assert_eq!(kernel_version("6.1"), Some((6, 1)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn plans_keep_the_bpf_capability_only_where_map_access_needs_it() {
        let strict: CapsHashSet = KEPT.into_iter().collect();
        assert_eq!(Plan::for_kernel(Some((6, 1)), 2).keep, strict);
        assert_eq!(Plan::for_kernel(Some((5, 19)), 1).keep, strict);
        assert_eq!(Plan::for_kernel(Some((5, 15)), 0).keep, strict);
        let p = Plan::for_kernel(Some((5, 15)), 2);
        assert!(p.keep.contains(&Capability::CAP_BPF));
        assert!(!p.keep.contains(&Capability::CAP_SYS_ADMIN));
        assert!(p.note.as_deref().is_some_and(|n| n.contains("5.19")));
        let p = Plan::for_kernel(Some((5, 4)), 1);
        assert!(p.keep.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!p.keep.contains(&Capability::CAP_BPF));
        // Unknown release: assume the old rules rather than break reloads.
        assert!(Plan::for_kernel(None, 2).keep.len() > KEPT.len());
    }

    #[test]
    fn kept_and_startup_sets_are_disjoint() {
        for c in STARTUP_ONLY {
            assert!(!KEPT.contains(&c), "{c} in both");
        }
    }

    #[test]
    fn status_masks_parse() {
        let set = parse_mask("0000000000003000");
        assert_eq!(
            set,
            [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW]
                .into_iter()
                .collect()
        );
        assert!(parse_mask("zz").is_empty());
    }

    #[test]
    fn the_report_reads_well() {
        let r = DroppedReport {
            dropped: vec![Capability::CAP_BPF],
            kept: vec![Capability::CAP_NET_ADMIN],
            bounding_left: vec![Capability::CAP_SYS_ADMIN],
            ..DroppedReport::default()
        };
        let s = r.to_string();
        assert!(s.contains("kept: CAP_NET_ADMIN"), "{s}");
        assert!(s.contains("dropped: CAP_BPF"), "{s}");
        assert!(s.contains("CAP_SETPCAP"), "{s}");
    }
}
