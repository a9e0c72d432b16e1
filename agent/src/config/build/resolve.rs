//! Checks between blocks, once the whole file is read: track references,
//! sync group members, VRIDs shared on an interface, and the scripts.

use std::collections::BTreeMap;

use super::{
    super::model::Family, Builder, track_refs::TrackKind, vrrp_instance::InstMeta,
    vrrp_sync_group::GroupMeta,
};

impl Builder<'_> {
    pub(super) fn resolve(&mut self) {
        let metas = std::mem::take(&mut self.inst_meta);
        for (i, m) in metas.iter().enumerate() {
            let owner = self.cfg.vrrp_instance[i].name.clone();
            let ts = self.resolve_refs(&m.tracks.script, TrackKind::Script, &owner);
            let tf = self.resolve_refs(&m.tracks.file, TrackKind::File, &owner);
            let tp = self.resolve_refs(&m.tracks.process, TrackKind::Process, &owner);
            let tb = self.resolve_refs(&m.tracks.bfd, TrackKind::Bfd, &owner);
            let v = &mut self.cfg.vrrp_instance[i];
            v.track_script = ts;
            v.track_file = tf;
            v.track_process = tp;
            v.track_bfd = tb;
        }
        let groups = std::mem::take(&mut self.group_meta);
        for (gi, m) in groups.iter().enumerate() {
            self.resolve_group(gi, m, &metas);
        }
        self.duplicate_vrids(&metas);
        self.check_scripts();
    }

    fn resolve_group(&mut self, gi: usize, m: &GroupMeta, metas: &[InstMeta]) {
        let gname = self.cfg.vrrp_sync_group[gi].name.clone();
        let ts = self.resolve_refs(&m.tracks.script, TrackKind::Script, &gname);
        let tf = self.resolve_refs(&m.tracks.file, TrackKind::File, &gname);
        let tp = self.resolve_refs(&m.tracks.process, TrackKind::Process, &gname);
        let tb = self.resolve_refs(&m.tracks.bfd, TrackKind::Bfd, &gname);
        let mut members = Vec::new();
        for (mname, loc) in &m.members {
            let Some(idx) = self.cfg.vrrp_instance.iter().position(|v| &v.name == mname) else {
                self.d
                    .error(
                        loc,
                        format!(
                            "virtual router {mname} specified in sync group {gname} doesn't exist"
                        ),
                    )
                    .hint("list vrrp_instance names in the group block");
                continue;
            };
            if let Some(other) = &self.cfg.vrrp_instance[idx].sync_group {
                self.d
                    .error(
                        loc,
                        format!("vrrp_instance {mname} is already in sync group {other}"),
                    )
                    .hint("an instance belongs to one sync group at most");
                continue;
            }
            self.cfg.vrrp_instance[idx].sync_group = Some(gname.clone());
            if !m.tracking_weight && self.zero_tracking_weights(idx) {
                self.d
                    .warn(&metas[idx].loc, format!("({mname}) tracking weights set to 0: the instance is in sync group {gname}"))
                    .hint("track in the sync group instead, or add sync_group_tracking_weight to the group");
            }
            members.push(mname.clone());
        }
        if members.len() < 2 {
            self.d
                .warn(&m.loc, format!("sync group {gname} has only {} virtual router(s) - this probably isn't what you want", members.len()))
                .hint("a sync group ties two or more vrrp_instances together");
        }
        let g = &mut self.cfg.vrrp_sync_group[gi];
        g.group = members;
        g.track_script = ts;
        g.track_file = tf;
        g.track_process = tp;
        g.track_bfd = tb;
    }

    /// keepalived zeroes member tracking weights so the members' priorities
    /// stay in step. True when there was a weight to zero.
    fn zero_tracking_weights(&mut self, idx: usize) -> bool {
        let v = &mut self.cfg.vrrp_instance[idx];
        let weighted = v
            .track_script
            .iter()
            .chain(&v.track_file)
            .chain(&v.track_process)
            .chain(&v.track_bfd)
            .any(|t| t.weight != 0)
            || v.track_interface.iter().any(|t| t.weight != 0);
        if weighted {
            for t in v
                .track_script
                .iter_mut()
                .chain(v.track_file.iter_mut())
                .chain(v.track_process.iter_mut())
                .chain(v.track_bfd.iter_mut())
            {
                t.weight = 0;
            }
            for t in v.track_interface.iter_mut() {
                t.weight = 0;
            }
        }
        weighted
    }

    /// Two instances on one interface and family with one VRID clash unless
    /// both are unicast to distinct peers.
    fn duplicate_vrids(&mut self, metas: &[InstMeta]) {
        let mut by_key: BTreeMap<(String, bool, u8), Vec<usize>> = BTreeMap::new();
        for (i, v) in self.cfg.vrrp_instance.iter().enumerate() {
            if let (Some(ifn), true) = (&v.interface, metas[i].vrid_set) {
                by_key
                    .entry((ifn.clone(), v.family == Family::Inet6, v.virtual_router_id))
                    .or_default()
                    .push(i);
            }
        }
        for ((ifn, v6, vrid), idxs) in by_key {
            for (a, &i) in idxs.iter().enumerate() {
                for &j in &idxs[a + 1..] {
                    let (x, y) = (&self.cfg.vrrp_instance[i], &self.cfg.vrrp_instance[j]);
                    let clash = x.unicast_peer.is_empty() && y.unicast_peer.is_empty()
                        || x.unicast_peer
                            .iter()
                            .any(|p| y.unicast_peer.iter().any(|q| q.address == p.address));
                    if clash {
                        let msg = format!(
                            "{} and {} both use VRID {vrid} with {} on interface {ifn}",
                            x.name,
                            y.name,
                            if v6 { "IPv6" } else { "IPv4" }
                        );
                        self.d
                            .error(&metas[j].loc, msg)
                            .hint("give each instance on an interface its own virtual_router_id");
                    }
                }
            }
        }
    }
}
