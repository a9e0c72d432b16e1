//! Keywords `vrrp_instance` and `vrrp_sync_group` share: what they track,
//! their notify scripts and `smtp_alert`, handled once for both tables.

use super::{
    super::{
        UnsupportedKind,
        model::{Script, TrackInterface},
        tree::Node,
    },
    Builder,
    track_refs::{PendingTracks, TrackKind},
};

/// The notify keywords, in the order of [`Tracking::notify_slots`].
pub(super) const NOTIFY: &[&str] = &[
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
];

pub(super) const TRACK_REFS: &[&str] =
    &["track_script", "track_file", "track_process", "track_bfd"];

/// A block draft with tracking and notify scripts.
pub(super) trait Tracking {
    fn track_interface(&mut self) -> &mut Vec<TrackInterface>;
    fn tracks(&mut self) -> &mut PendingTracks;
    /// The owner the scripts are checked under, and one slot per [`NOTIFY`] keyword.
    fn notify_slots(&mut self) -> (&str, [&mut Option<Script>; 5]);
    fn smtp_alert(&mut self) -> &mut bool;
}

pub(super) fn track_interface<S: Tracking>(b: &mut Builder<'_>, d: &mut S, n: &Node) {
    let tracked = b.track_interfaces(n);
    d.track_interface().extend(tracked);
}

pub(super) fn track_refs<S: Tracking>(b: &mut Builder<'_>, d: &mut S, n: &Node) {
    let kind = match n.name() {
        "track_script" => TrackKind::Script,
        "track_file" => TrackKind::File,
        "track_bfd" => TrackKind::Bfd,
        _ => TrackKind::Process,
    };
    b.track_block(n, kind, d.tracks());
}

/// `notify_* COMMAND [USER [GROUP]]`. A second line of a kind is refused,
/// and leaves the kind with no script at all.
pub(super) fn notify<S: Tracking>(b: &mut Builder<'_>, d: &mut S, n: &Node) {
    let (owner, slots) = d.notify_slots();
    let slot = NOTIFY
        .iter()
        .zip(slots)
        .find_map(|(keyword, slot)| (*keyword == n.name()).then_some(slot));
    let Some(slot) = slot else {
        return;
    };
    if slot.is_some() {
        b.d.error(
            &n.key.loc,
            format!("{} script already specified - ignoring this one", n.name()),
        )
        .hint("keep one line per notify kind");
        *slot = None;
        return;
    }
    *slot = b.script(n, owner, false);
}

pub(super) fn smtp_alert<S: Tracking>(b: &mut Builder<'_>, d: &mut S, n: &Node) {
    b.set_flag(n, d.smtp_alert());
    b.unsupported(
        n,
        UnsupportedKind::Ignored,
        "is ignored: xvrrpd sends no mail",
    );
}

/// The [`Tracking`] accessors of a draft whose model (`$model`) holds the
/// notify scripts and track_interface, and whose meta (`m`) the pending refs.
macro_rules! impl_tracking {
    ($draft:ty, $model:ident) => {
        impl Tracking for $draft {
            fn track_interface(&mut self) -> &mut Vec<TrackInterface> {
                &mut self.$model.track_interface
            }

            fn tracks(&mut self) -> &mut PendingTracks {
                &mut self.m.tracks
            }

            fn notify_slots(&mut self) -> (&str, [&mut Option<Script>; 5]) {
                let model = &mut self.$model;
                let slots = [
                    &mut model.notify_master,
                    &mut model.notify_backup,
                    &mut model.notify_fault,
                    &mut model.notify_stop,
                    &mut model.notify,
                ];
                (&self.owner, slots)
            }

            fn smtp_alert(&mut self) -> &mut bool {
                &mut self.$model.smtp_alert
            }
        }
    };
}
pub(super) use impl_tracking;
