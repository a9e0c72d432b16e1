//! `vrrp_sync_group NAME { ... }`: instances that change state together.

use super::{
    super::{
        diag::Loc,
        model::{Script, SyncGroup, TrackInterface},
        tree::Node,
    },
    Builder,
    keywords::{Shape, Table, leaf, unchecked},
    track_refs::PendingTracks,
    tracking::{self, NOTIFY, TRACK_REFS, Tracking},
};

/// What resolving the file needs about a sync group beyond the model.
pub(super) struct GroupMeta {
    pub(super) loc: Loc,
    /// Member names as written, resolved once every instance is read.
    pub(super) members: Vec<(String, Loc)>,
    pub(super) tracks: PendingTracks,
    /// Members keep their own tracking weights.
    pub(super) tracking_weight: bool,
}

pub(super) struct GroupDraft {
    g: SyncGroup,
    m: GroupMeta,
    /// "vrrp_sync_group NAME", as its notify scripts are checked under.
    owner: String,
}

impl Builder<'_> {
    pub(super) fn vrrp_sync_group(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        let mut draft = GroupDraft {
            g: SyncGroup {
                name: name.text.clone(),
                group: Vec::new(),
                track_interface: Vec::new(),
                track_script: Vec::new(),
                track_file: Vec::new(),
                track_process: Vec::new(),
                track_bfd: Vec::new(),
                notify_master: None,
                notify_backup: None,
                notify_fault: None,
                notify_stop: None,
                notify: None,
                smtp_alert: false,
            },
            m: GroupMeta {
                loc: name.loc,
                members: Vec::new(),
                tracks: PendingTracks::default(),
                tracking_weight: false,
            },
            owner: format!("vrrp_sync_group {}", name.text),
        };
        self.read_block(&VRRP_SYNC_GROUP, &mut draft, n.children());
        self.cfg.vrrp_sync_group.push(draft.g);
        self.group_meta.push(draft.m);
    }
}

tracking::impl_tracking!(GroupDraft, g);

/// `group { NAME... }`: any number of names per line.
fn group(b: &mut Builder<'_>, d: &mut GroupDraft, n: &Node) {
    if !b.shape(n, Shape::Block) {
        return;
    }
    for l in n.children() {
        for t in std::iter::once(&l.key).chain(&l.args) {
            d.m.members.push((t.text.clone(), t.loc.clone()));
        }
    }
}

fn global_tracking(b: &mut Builder<'_>, d: &mut GroupDraft, n: &Node) {
    b.set_on(n, &mut d.m.tracking_weight);
    b.d.note(&n.key.loc, "'global_tracking' is deprecated")
        .hint("use sync_group_tracking_weight, or track_* in the sync group");
}

static VRRP_SYNC_GROUP: Table<GroupDraft> = Table {
    context: "vrrp_sync_group",
    unknown_leaf: true,
    keywords: &[
        unchecked(&["group"], group),
        unchecked(&["track_interface"], tracking::track_interface),
        unchecked(TRACK_REFS, tracking::track_refs),
        leaf(NOTIFY, tracking::notify),
        leaf(&["smtp_alert"], tracking::smtp_alert),
        leaf(&["sync_group_tracking_weight"], |b, d, n| {
            b.set_on(n, &mut d.m.tracking_weight)
        }),
        leaf(&["global_tracking"], global_tracking),
        leaf(&["notify_priority_changes"], |b, _, n| b.ignored(n)),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    VRRP_SYNC_GROUP.names().collect()
}
