//! Checks between the keywords of one block, once the block is read:
//! defaults that follow other keywords, family and version consistency,
//! conflicts.

use std::{net::IpAddr, time::Duration};

use super::{
    super::model::{Family, GlobalDefs, State},
    Builder,
    vrrp_instance::InstanceDraft,
};

impl Builder<'_> {
    /// Lower-priority GARP settings follow the master ones unless given.
    pub(super) fn default_lower_prio_garp(&self, g: &mut GlobalDefs) {
        if !self.lp_delay_set {
            g.vrrp_garp_lower_prio_delay = g.vrrp_garp_master_delay;
        }
        if !self.lp_repeat_set {
            g.vrrp_garp_lower_prio_repeat = g.vrrp_garp_master_repeat;
        }
    }

    pub(super) fn validate_instance(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        if !d.lp_delay_set && !self.lp_delay_set {
            v.garp_lower_prio_delay = v.garp_master_delay;
        }
        if !d.lp_repeat_set && !self.lp_repeat_set {
            v.garp_lower_prio_repeat = v.garp_master_repeat;
        }
        self.instance_family(d);
        self.instance_version(d);
        self.instance_advert(d);
        self.master_without_preempt(d);
        self.strict_mode(d);
        self.interfaceless(d);
        self.ipvlan(d);
        self.vmac(d);
        self.instance_required(d);
        // Addresses without `dev` go on the instance's interface.
        let v = &mut d.v;
        if let Some(ifname) = &v.interface {
            for a in v
                .virtual_ipaddress
                .iter_mut()
                .chain(v.virtual_ipaddress_excluded.iter_mut())
            {
                if a.dev.is_none() {
                    a.dev = Some(ifname.clone());
                }
            }
        }
    }

    /// The first VIP decides the family (else the source or first peer);
    /// everything else must agree with it.
    fn instance_family(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        let decides = v.virtual_ipaddress.first().map(|a| a.address).or(v
            .unicast_src_ip
            .or(v.mcast_src_ip)
            .or(v.unicast_peer.first().map(|p| p.address))
            .or(v.use_ipvlan.as_ref().and_then(|u| u.address)));
        if let Some(a) = decides {
            v.family = if a.is_ipv6() {
                Family::Inet6
            } else {
                Family::Inet
            };
        }
        let v6 = v.family == Family::Inet6;
        let (v, name, at) = (&d.v, &d.v.name, &d.m.loc);
        // The n-th address is reported at the n-th line, as keepalived counts.
        for (i, a) in v.virtual_ipaddress.iter().enumerate() {
            if a.address.is_ipv6() != v6 {
                let loc = d.vip_locs.get(i).unwrap_or(at);
                let addr = a.address;
                self.d
                    .error(loc, format!("({name}) address family must match VRRP instance [{addr}]"))
                    .hint("one address family per instance: put the other family in its own vrrp_instance or in virtual_ipaddress_excluded");
            }
        }
        let first_not_link_local = v
            .virtual_ipaddress
            .first()
            .is_some_and(|a| a.address.is_ipv6() && !is_link_local_v6(a.address));
        if v6
            && first_not_link_local
            && let Some(loc) = d.vip_locs.first()
        {
            self.d
                .note(
                    loc,
                    format!("({name}) the first IPv6 address is not link-local"),
                )
                .hint("RFC 5798 wants a link-local address first; keepalived sends it as given");
        }
        for (what, a) in [
            ("unicast_src_ip", v.unicast_src_ip),
            ("mcast_src_ip", v.mcast_src_ip),
            ("mcast_dst_ip", v.mcast_dst_ip),
        ] {
            if let Some(a) = a
                && a.is_ipv6() != v6
            {
                self.d
                    .error(
                        at,
                        format!("({name}) {what} {a} is not of the instance's address family"),
                    )
                    .hint("use an address of the same family as the virtual addresses");
            }
        }
        if v.unicast_peer.iter().any(|p| p.address.is_ipv6() != v6) {
            self.d
                .error(
                    at,
                    format!("({name}) unicast peers must be of the instance's address family"),
                )
                .hint("split IPv4 and IPv6 into separate instances");
        }
    }

    /// IPv6 means VRRPv3; otherwise the instance's `version`, else the global one.
    fn instance_version(&mut self, d: &mut InstanceDraft) {
        let v6 = d.v.family == Family::Inet6;
        d.v.version = match (&d.explicit_version, v6) {
            (Some((2, loc)), true) => {
                self.d
                    .error(
                        loc,
                        format!(
                            "({}) vrrp_version 2 conflicts with IPv6 addresses",
                            d.v.name
                        ),
                    )
                    .hint("IPv6 needs VRRPv3: use version 3 or drop the line");
                3
            }
            (Some((ver, _)), _) => *ver,
            (None, true) => 3,
            (None, false) => d.v.version,
        };
    }

    /// Whole seconds on v2, centiseconds (max 40.95 s) on v3.
    fn instance_advert(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        let name = &v.name;
        if let Some((given, loc)) = &d.advert {
            let micros = given.as_micros() as u64;
            let secs = given.as_secs_f64();
            v.advert_int = if v.version == 2 {
                if !micros.is_multiple_of(1_000_000) {
                    let rounded = ((micros + 500_000) / 1_000_000).max(1);
                    self.d
                        .warn(loc, format!("({name}) VRRPv2 advertisement interval {secs}s must be an integer, rounding to {rounded}s"))
                        .hint("VRRPv2 carries whole seconds; use version 3 for sub-second adverts");
                    Duration::from_secs(rounded)
                } else {
                    *given
                }
            } else if micros > 40_950_000 {
                self.d
                    .warn(loc, format!("({name}) VRRPv3 advertisement interval {secs}s is out of range, must be less than 40.96s; using 40.95s"))
                    .hint("VRRPv3 carries 12 bits of centiseconds");
                Duration::from_millis(40_950)
            } else if !micros.is_multiple_of(10_000) {
                let cs = ((micros + 5_000) / 10_000).max(1);
                self.d
                    .warn(loc, format!("({name}) VRRPv3 advertisement interval {secs}s is not whole centiseconds, rounding to {}s", cs as f64 / 100.0))
                    .hint("VRRPv3 carries centiseconds");
                Duration::from_millis(cs * 10)
            } else {
                *given
            };
        }
        v.advert_int_centis = u16::try_from(v.advert_int.as_millis() / 10).unwrap_or(u16::MAX);
    }

    /// An instance that starts as MASTER neither waits nor stays back.
    fn master_without_preempt(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        if v.state != State::Master {
            return;
        }
        let name = &v.name;
        if let Some(loc) = &d.nopreempt_loc {
            self.d
                .warn(
                    loc,
                    format!(
                        "({name}) nopreempt will not work with initial state MASTER - clearing"
                    ),
                )
                .hint("use state BACKUP on every router with nopreempt");
            v.nopreempt = false;
        }
        if let Some(loc) = &d.preempt_delay_loc
            && !v.preempt_delay.is_zero()
        {
            self.d
                .warn(
                    loc,
                    format!(
                        "({name}) preempt delay will not work with initial state MASTER - clearing"
                    ),
                )
                .hint("use state BACKUP with preempt_delay");
            v.preempt_delay = Duration::ZERO;
        }
    }

    /// Accept mode (keepalived's default: on, except in strict mode unless
    /// owner), what strict mode forbids, and authentication under VRRPv3.
    fn strict_mode(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        let name = &v.name;
        v.accept = d
            .explicit_accept
            .unwrap_or(!v.strict_mode || v.priority == 255);
        if v.strict_mode {
            let at = d.strict_loc.as_ref().unwrap_or(&d.m.loc);
            if !v.unicast_peer.is_empty() {
                self.d
                    .warn(
                        at,
                        format!("({name}) strict mode does not support unicast peers"),
                    )
                    .hint("drop vrrp_strict/strict_mode or the unicast_peer block");
            }
            if v.authentication.is_some() {
                self.d
                    .warn(
                        at,
                        format!("({name}) strict mode does not support authentication - ignoring"),
                    )
                    .hint("drop the authentication block");
                v.authentication = None;
            }
            if !v.preempt_delay.is_zero() {
                self.d
                    .warn(
                        at,
                        format!("({name}) strict mode does not support preempt_delay - ignoring"),
                    )
                    .hint("drop preempt_delay");
                v.preempt_delay = Duration::ZERO;
            }
            if v.virtual_ipaddress.is_empty() {
                self.d
                    .error(
                        at,
                        format!("({name}) strict mode requires at least one virtual address"),
                    )
                    .hint("add a virtual_ipaddress block");
            }
        }
        if v.version == 3
            && let (Some(_), Some(loc)) = (&v.authentication, &d.auth_loc)
        {
            self.d
                .warn(
                    loc,
                    format!("({name}) authentication is not part of VRRPv3 - ignoring"),
                )
                .hint("remove the authentication block, or use version 2");
            v.authentication = None;
        }
    }

    /// `use_vmac` with what keepalived corrects in it, and the VRID as the
    /// last octet of a five-octet MAC.
    fn vmac(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        let name = &v.name;
        let Some(u) = &mut v.use_vmac else {
            return;
        };
        if let Some(mac) = &mut u.mac
            && mac.ends_with(':')
        {
            mac.push_str(&format!("{:02x}", v.virtual_router_id));
        }
        if v.vmac_xmit_base && v.strict_mode {
            self.d
                .warn(
                    &d.m.loc,
                    format!("({name}) xmit_base is incompatible with strict mode - resetting"),
                )
                .hint("drop vmac_xmit_base, or strict mode");
            v.vmac_xmit_base = false;
        }
        if !v.unicast_peer.is_empty() && !v.vmac_xmit_base {
            self.d
                .warn(
                    &d.m.loc,
                    format!("({name}) unicast with use_vmac requires vmac_xmit_base - setting"),
                )
                .hint("add vmac_xmit_base");
            v.vmac_xmit_base = true;
        }
    }

    /// A unicast instance may leave out `interface` (it runs on the one
    /// its peers' routes leave by, in `vrf`'s table when given); `vrf`
    /// only applies then, and no VMAC or ipvlan can be made without a base
    /// (keepalived's rules).
    fn interfaceless(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        let (name, at) = (&v.name, &d.m.loc);
        if v.interface.is_some() {
            if let Some(vrf) = v.vrf.take() {
                self.d
                    .error(
                        at,
                        format!("({name}) Cannot specify VRF interface and interface - ignoring vrf {vrf}"),
                    )
                    .hint("an instance with `interface` runs in that interface's VRF; drop the vrf line");
            }
            return;
        }
        if v.unicast_peer.is_empty() {
            return;
        }
        if v.use_vmac.is_some() || v.use_ipvlan.is_some() {
            self.d
                .error(
                    at,
                    format!("({name}): Cannot use VMAC/ipvlan with unicast and no interface - clearing use_vmac"),
                )
                .hint("add `interface` (the VMAC's base), or drop use_vmac/use_ipvlan");
            v.use_vmac = None;
            v.use_ipvlan = None;
        }
        if let Some(p) = v.unicast_peer.iter().find(|p| is_link_local_v6(p.address)) {
            self.d
                .error(
                    at,
                    format!(
                        "({name}) unicast peer {} is link-local: it needs `interface`",
                        p.address
                    ),
                )
                .hint("add `interface` (the link the peer is on)");
        }
    }

    /// `use_ipvlan` as keepalived takes it: it wins over `use_vmac`, its
    /// address is of the instance's family, and an IPv4 one has an address
    /// (its adverts' source).
    fn ipvlan(&mut self, d: &mut InstanceDraft) {
        let v = &mut d.v;
        let (name, at) = (&v.name, &d.m.loc);
        let Some(u) = &mut v.use_ipvlan else {
            return;
        };
        if v.use_vmac.is_some() {
            self.d
                .warn(
                    at,
                    format!("({name}) use_vmac and use_ipvlan both given: the ipvlan is made, as keepalived does - ignoring use_vmac"),
                )
                .hint("keep one of use_vmac and use_ipvlan");
            v.use_vmac = None;
        }
        if let Some(a) = u.address
            && a.is_ipv6() != (v.family == Family::Inet6)
        {
            self.d
                .error(
                    at,
                    format!("({name}) ipvlan address [{a}] MUST match vrrp instance family !!! Skipping..."),
                )
                .hint("give the ipvlan an address of the instance's family");
            u.address = None;
            u.prefix_len = None;
        }
        if v.family == Family::Inet && u.address.is_none() {
            self.d
                .error(
                    at,
                    format!("({name}) IPv4 ipvlan requires a source ip address to be configured"),
                )
                .hint("add the ipvlan's own address: use_ipvlan [NAME] 192.0.2.5/24");
        }
        if v.vmac_xmit_base {
            self.d
                .warn(
                    at,
                    format!("({name}) vmac_xmit_base is only valid with a vmac"),
                )
                .hint("drop vmac_xmit_base: an ipvlan shares its base's MAC");
            v.vmac_xmit_base = false;
        }
    }

    /// A VRID, an interface (unless unicast), and at least one VIP.
    fn instance_required(&mut self, d: &InstanceDraft) {
        let (v, name, at) = (&d.v, &d.v.name, &d.m.loc);
        if !d.m.vrid_set && !d.vrid_line {
            self.d
                .error(at, format!("({name}) the virtual router id must be set"))
                .hint("add: virtual_router_id 1..255 (the same on every router of this group)");
        }
        if v.interface.is_none() && v.unicast_peer.is_empty() {
            self.d
                .error(at, format!("({name}) no interface given"))
                .hint("add: interface eth0 (only unicast instances may leave it out)");
        }
        if v.virtual_ipaddress.is_empty() {
            self.d
                .warn(
                    at,
                    format!("({name}) no VIP specified; at least one is sensible"),
                )
                .hint("add a virtual_ipaddress block");
        }
    }
}

/// fe80::/10.
fn is_link_local_v6(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(x) if x.segments()[0] & 0xffc0 == 0xfe80)
}
