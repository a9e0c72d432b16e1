//! `vrrp_instance NAME { ... }`: one virtual router.

use std::{net::IpAddr, time::Duration};

use super::{
    super::{diag::Loc, lexer::Token, model::*, tree::Node},
    Builder,
    keywords::{Shape, TIMER_MAX_SEC, Table, leaf, unchecked},
    routes::Owner,
    track_refs::PendingTracks,
    tracking::{self, NOTIFY, TRACK_REFS, Tracking},
};

/// What resolving the file needs about an instance beyond the model.
pub(super) struct InstMeta {
    pub(super) loc: Loc,
    pub(super) tracks: PendingTracks,
    /// A valid virtual_router_id was given.
    pub(super) vrid_set: bool,
}

/// An instance as read, with what its cross-keyword checks need.
pub(super) struct InstanceDraft {
    pub(super) v: VrrpInstance,
    pub(super) m: InstMeta,
    /// "vrrp_instance NAME", as its notify scripts are checked under.
    owner: String,
    /// A virtual_router_id line was there, valid or not (one error is enough).
    pub(super) vrid_line: bool,
    pub(super) explicit_version: Option<(u8, Loc)>,
    pub(super) explicit_accept: Option<bool>,
    pub(super) advert: Option<(Duration, Loc)>,
    pub(super) nopreempt_loc: Option<Loc>,
    pub(super) preempt_delay_loc: Option<Loc>,
    pub(super) auth_loc: Option<Loc>,
    pub(super) strict_loc: Option<Loc>,
    /// garp_lower_prio_{delay,repeat} given in the instance.
    pub(super) lp_delay_set: bool,
    pub(super) lp_repeat_set: bool,
    /// Where each line of the virtual_ipaddress blocks is, parsed or not.
    pub(super) vip_locs: Vec<Loc>,
}

impl Builder<'_> {
    pub(super) fn vrrp_instance(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        if self.cfg.instance(&name.text).is_some() {
            self.defined_twice(n, &name);
            return;
        }
        let mut draft = InstanceDraft {
            v: instance_from_globals(&name.text, &self.cfg.global_defs),
            m: InstMeta {
                loc: name.loc,
                tracks: PendingTracks::default(),
                vrid_set: false,
            },
            owner: format!("vrrp_instance {}", name.text),
            vrid_line: false,
            explicit_version: None,
            explicit_accept: None,
            advert: None,
            nopreempt_loc: None,
            preempt_delay_loc: None,
            auth_loc: None,
            strict_loc: None,
            lp_delay_set: false,
            lp_repeat_set: false,
            vip_locs: Vec::new(),
        };
        self.read_block(&VRRP_INSTANCE, &mut draft, n.children());
        self.validate_instance(&mut draft);
        self.cfg.vrrp_instance.push(draft.v);
        self.inst_meta.push(draft.m);
    }
}

tracking::impl_tracking!(InstanceDraft, v);

/// A new instance: keepalived's defaults, and the global_defs read so far.
fn instance_from_globals(name: &str, g: &GlobalDefs) -> VrrpInstance {
    VrrpInstance {
        name: name.to_string(),
        state: State::Backup,
        interface: None,
        vrf: None,
        virtual_router_id: 0,
        priority: 100,
        advert_int: Duration::from_secs(1),
        advert_int_centis: 100,
        version: g.vrrp_version,
        family: Family::Inet,
        nopreempt: false,
        preempt_delay: Duration::ZERO,
        virtual_ipaddress: Vec::new(),
        virtual_ipaddress_excluded: Vec::new(),
        unicast_src_ip: None,
        mcast_src_ip: None,
        unicast_peer: Vec::new(),
        mcast_dst_ip: None,
        unicast_ttl: None,
        unicast_fault_no_peer: false,
        track_src_ip: false,
        old_unicast_checksum: OldUnicastChecksum::Detect,
        promote_secondaries: false,
        authentication: None,
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
        notify_master_rx_lower_pri: None,
        notify_deleted: false,
        notify_deleted_script: None,
        accept: true,
        dont_track_primary: false,
        garp_master_delay: g.vrrp_garp_master_delay,
        garp_master_repeat: g.vrrp_garp_master_repeat,
        garp_lower_prio_delay: g.vrrp_garp_lower_prio_delay,
        garp_lower_prio_repeat: g.vrrp_garp_lower_prio_repeat,
        garp_master_refresh: g.vrrp_garp_master_refresh,
        garp_master_refresh_repeat: g.vrrp_garp_master_refresh_repeat,
        lower_prio_no_advert: g.vrrp_lower_prio_no_advert,
        higher_prio_send_advert: g.vrrp_higher_prio_send_advert,
        notify_priority_changes: g.vrrp_notify_priority_changes,
        skip_check_adv_addr: g.vrrp_skip_check_adv_addr,
        strict_mode: g.vrrp_strict,
        check_unicast_src: g.vrrp_check_unicast_src,
        down_timer_adverts: g.vrrp_down_timer_adverts,
        use_vmac: None,
        use_ipvlan: None,
        vmac_xmit_base: false,
        use_vmac_addr: false,
        garp_extra_if: g.vrrp_garp_extra_if,
        virtual_routes: Vec::new(),
        virtual_rules: Vec::new(),
        smtp_alert: false,
        sync_group: None,
    }
}

fn state(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let Some(t) = b.word(n, "state") else {
        return;
    };
    match t.text.as_str() {
        "MASTER" => d.v.state = State::Master,
        "BACKUP" => d.v.state = State::Backup,
        other => {
            b.d.error(&t.loc, format!("({}) unknown state '{other}'", d.v.name))
                .hint("state is MASTER or BACKUP (upper case)");
        }
    }
}

fn interface(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    if let Some(t) = b.word(n, "interface name") {
        d.v.interface = Some(t.text.clone());
        b.check_interface(&t, &format!("vrrp_instance {}", d.v.name));
    }
}

/// `vrf NAME`, as keepalived reads it (checked against `interface` once
/// the block is read).
fn vrf(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let Some(t) = b.word(n, "VRF interface name") else {
        return;
    };
    if d.v.vrf.is_some() {
        b.d.error(
            &t.loc,
            format!("({}) VRF interface already specified - ignoring", d.v.name),
        )
        .hint("give one vrf line");
        return;
    }
    if !valid_ifname(&t.text) {
        b.d.error(
            &t.loc,
            format!(
                "({}) VRF interface name '{}' too long - ignoring",
                d.v.name, t.text
            ),
        )
        .hint("an interface name has at most 15 characters and no '/', ':' or spaces");
        return;
    }
    b.check_interface(&t, &format!("vrrp_instance {} (vrf)", d.v.name));
    d.v.vrf = Some(t.text.clone());
}

fn virtual_router_id(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    d.vrid_line = true;
    let Some(t) = b.word(n, "VRID") else {
        return;
    };
    match t.text.parse::<i64>() {
        Ok(id) => match u8::try_from(id) {
            Ok(id) if id >= 1 => {
                d.v.virtual_router_id = id;
                d.m.vrid_set = true;
            }
            _ => {
                b.d.error(
                    &t.loc,
                    format!("virtual_router_id {id} is out of range 1..255"),
                )
                .hint("a VRID is 1..255 and must match on every router of the group");
            }
        },
        Err(_) => {
            b.d.error(
                &t.loc,
                format!("virtual_router_id '{}' is not a number", t.text),
            )
            .hint("a VRID is 1..255");
        }
    }
}

fn priority(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let Some(t) = b.word(n, "priority") else {
        return;
    };
    match t
        .text
        .parse::<i64>()
        .ok()
        .and_then(|p| u8::try_from(p).ok())
    {
        Some(p) if p >= 1 => d.v.priority = p,
        _ => {
            b.d.error(&t.loc, format!("({}) priority '{}' is out of range 1..255", d.v.name, t.text))
                .hint("use 1..254 (255 only on the router that owns the addresses); keepalived falls back to 100");
        }
    }
}

/// Kept as given: the version decides how it is rounded.
fn advert_int(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    if let Some(t) = b.word(n, "interval")
        && let Some(secs) = b.secs_tok(&t, "advert_int", 0.01, 255.0)
    {
        d.advert = Some((secs, t.loc));
    }
}

fn source_ip(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let Some(t) = b.word(n, "address") else {
        return;
    };
    if let Some(a) = b.ip(&t, n.name()) {
        match n.name() {
            "unicast_src_ip" => d.v.unicast_src_ip = Some(a),
            _ => d.v.mcast_src_ip = Some(a),
        }
    }
}

fn unicast_peer(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    if b.shape(n, Shape::Block) {
        for p in n.children() {
            if let Some(peer) = b.peer(p, &mut d.v.check_unicast_src) {
                d.v.unicast_peer.push(peer);
            }
        }
    }
}

/// `notify_deleted [SCRIPT [USER [GROUP]]]`: DELETED instead of FAULT when a
/// reload removes the instance, and a script to run then.
fn notify_deleted(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    if d.v.notify_deleted {
        b.d.error(
            &n.key.loc,
            "notify_deleted already specified - ignoring this one",
        )
        .hint("keep one notify_deleted line");
        return;
    }
    d.v.notify_deleted = true;
    if !n.args.is_empty() {
        d.v.notify_deleted_script = b.script(n, &d.owner, false);
    }
}

/// `mcast_dst_ip GROUP`: a multicast group; an IPv6 one link-local
/// (ffX2::), as keepalived requires.
fn mcast_dst_ip(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let Some(t) = b.word(n, "group") else {
        return;
    };
    let Some(a) = b.ip(&t, n.name()) else {
        return;
    };
    let link_local_v6 = |g: &std::net::Ipv6Addr| g.segments()[0] & 0xff0f == 0xff02;
    let ok = match a {
        IpAddr::V4(g) => g.is_multicast(),
        IpAddr::V6(g) => g.is_multicast() && link_local_v6(&g),
    };
    if ok {
        d.v.mcast_dst_ip = Some(a);
    } else {
        b.d.error(
            &t.loc,
            format!("mcast_dst_ip {a} is not a multicast group VRRP can use"),
        )
        .hint("use a group in 224.0.0.0/4, or a link-local IPv6 one (ffX2::)");
    }
}

/// `old_unicast_checksum [never]`.
fn old_unicast_checksum(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    b.extra(n, 1);
    match n.args.first() {
        None => d.v.old_unicast_checksum = OldUnicastChecksum::Always,
        Some(t) if t.text == "never" => d.v.old_unicast_checksum = OldUnicastChecksum::Never,
        Some(t) => {
            b.d.error(
                &t.loc,
                format!("old_unicast_checksum '{}' is not a mode", t.text),
            )
            .hint("write old_unicast_checksum alone (send the old checksum) or with never");
        }
    }
}

/// `use_vmac [[name] IFNAME] [MAC] [netlink_notify_msg] [group GROUP]`, read
/// as keepalived reads it: a word with ':' is the MAC.
fn use_vmac(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let mut u = UseVmac {
        interface: None,
        mac: None,
        group: None,
    };
    let mut args = n.args.iter();
    while let Some(a) = args.next() {
        let word = a.text.as_str();
        if word.contains(':') {
            if u.mac.is_some() {
                b.d.error(&a.loc, "VMAC interface address already specified")
                    .hint("give one MAC");
                continue;
            }
            match vmac_address(word) {
                Ok(mac) => u.mac = Some(mac),
                Err(why) => {
                    b.d.error(&a.loc, format!("VMAC {why} {word} - ignoring"))
                        .hint("give a unicast MAC such as 02:00:5e:00:01:07, or five octets and the VRID as the sixth");
                }
            }
            continue;
        }
        match word {
            // Only keepalived's own netlink cache needs the extra message.
            "netlink_notify_msg" => continue,
            "group" => {
                if let Some(g) = link_group(b, a, args.next(), "VMAC") {
                    u.group = Some(g);
                }
                continue;
            }
            _ => {}
        }
        if let Some(name) = link_name(b, a, &mut args, u.interface.is_some(), "VMAC") {
            u.interface = Some(name);
        }
    }
    d.v.use_vmac = Some(u);
}

/// `use_ipvlan [[name] IFNAME] [ADDRESS[/PREFIX]] [bridge|private|vepa]
/// [group GROUP]`, read as keepalived reads it: a word that is an address
/// is the ipvlan's address, the mode words are the mode, the rest a name.
fn use_ipvlan(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    if d.v.use_ipvlan.is_some() {
        b.d.error(
            &n.key.loc,
            format!("({}) use_ipvlan already specified", d.v.name),
        )
        .hint("give one use_ipvlan line");
        return;
    }
    let mut u = UseIpvlan {
        interface: None,
        address: None,
        prefix_len: None,
        mode: IpvlanMode::default(),
        group: None,
    };
    let mut mode_set = false;
    let mut args = n.args.iter();
    while let Some(a) = args.next() {
        let word = a.text.as_str();
        let mode = match word {
            "bridge" => Some(IpvlanMode::Bridge),
            "private" => Some(IpvlanMode::Private),
            "vepa" => Some(IpvlanMode::Vepa),
            _ => None,
        };
        if let Some(m) = mode {
            if mode_set {
                b.d.error(
                    &a.loc,
                    format!("ipvlan type already specified - ignoring '{word}'"),
                )
                .hint("give one of bridge, private, vepa");
            } else {
                u.mode = m;
                mode_set = true;
            }
            continue;
        }
        if word == "group" {
            if let Some(g) = link_group(b, a, args.next(), "ipvlan") {
                u.group = Some(g);
            }
            continue;
        }
        let (addr_text, prefix_text) = match word.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (word, None),
        };
        if let Ok(addr) = addr_text.parse::<IpAddr>() {
            if u.address.is_some() {
                b.d.error(
                    &a.loc,
                    format!("ipvlan address already specified - ignoring '{word}'"),
                )
                .hint("give one address");
                continue;
            }
            let max = if addr.is_ipv4() { 32 } else { 128 };
            match prefix_text.map(str::parse::<u8>) {
                None => u.prefix_len = None,
                Some(Ok(p)) if p <= max => u.prefix_len = Some(p),
                Some(_) => {
                    b.d.error(&a.loc, format!("invalid prefix length in '{word}'"))
                        .hint(format!("the prefix length is 0..{max}"));
                    continue;
                }
            }
            u.address = Some(addr);
            continue;
        }
        if let Some(name) = link_name(b, a, &mut args, u.interface.is_some(), "IPVLAN") {
            u.interface = Some(name);
        }
    }
    d.v.use_ipvlan = Some(u);
}

/// `group GROUP` on a `use_vmac` / `use_ipvlan` line (`what` names it in
/// messages): the link group, by number or /etc/iproute2/group name.
fn link_group(b: &mut Builder<'_>, at: &Token, value: Option<&Token>, what: &str) -> Option<u32> {
    let Some(g) = value else {
        b.d.error(&at.loc, format!("{what} group is missing its value"))
            .hint("write group NUMBER, or a name from /etc/iproute2/group");
        return None;
    };
    let group = super::routes::iproute2_number(super::routes::Iproute2Name::Group, &g.text)
        .and_then(|v| u32::try_from(v).ok());
    if group.is_none() {
        b.d.error(&g.loc, format!("{what} group {} not found", g.text))
            .hint("use a number, or a name from /etc/iproute2/group");
    }
    group
}

/// The link's name on a `use_vmac` / `use_ipvlan` line: `word` itself, or
/// the word after it when it is `name` (keepalived 2.3); `None` (reported)
/// when missing, second or not an interface name.
fn link_name<'t>(
    b: &mut Builder<'_>,
    word: &'t Token,
    args: &mut std::slice::Iter<'t, Token>,
    named_already: bool,
    what: &str,
) -> Option<String> {
    let name_tok = if word.text == "name" {
        let Some(t) = args.next() else {
            b.d.error(
                &word.loc,
                format!("{what} 'name' is missing the interface name"),
            )
            .hint("write name IFNAME");
            return None;
        };
        t
    } else {
        word
    };
    if named_already {
        b.d.error(
            &name_tok.loc,
            format!(
                "{what} interface name already specified - ignoring '{}'",
                name_tok.text
            ),
        )
        .hint("give one name");
        return None;
    }
    if !valid_ifname(&name_tok.text) {
        b.d.error(
            &name_tok.loc,
            format!(
                "{what} interface name '{}' too long or invalid characters - ignoring",
                name_tok.text
            ),
        )
        .hint("an interface name has at most 15 characters and no '/', ':' or spaces");
        return None;
    }
    Some(name_tok.text.clone())
}

/// An interface name the kernel takes (keepalived's `dev_name_valid`).
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// A MAC for `use_vmac`: six octets, or five (the VRID completes it, shown
/// as `xx:..:xx:` ), unicast and not the RFC's own range.
fn vmac_address(text: &str) -> Result<String, &'static str> {
    let octets: Vec<&str> = text.trim_end_matches(':').split(':').collect();
    if !(5..=6).contains(&octets.len())
        || octets
            .iter()
            .any(|o| o.is_empty() || o.len() > 2 || !o.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return Err("invalid MAC address");
    }
    let bytes: Vec<u8> = octets
        .iter()
        .filter_map(|o| u8::from_str_radix(o, 16).ok())
        .collect();
    if bytes[0] & 1 != 0 {
        return Err("MAC address is multicast");
    }
    if bytes[..4] == [0, 0, 0x5e, 0] && matches!(bytes[4], 1 | 2) {
        return Err("MAC address not allowed to be RFC5798 address");
    }
    let mut out: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if out.len() == 5 {
        out.push(String::new());
    }
    Ok(out.join(":"))
}

/// `virtual_routes`/`virtual_rules`: installed while master.
fn routes_or_rules(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    let owner = Owner::Instance(&d.v.name);
    match n.name() {
        "virtual_routes" => {
            let r = b.routes(n, owner);
            d.v.virtual_routes.extend(r);
        }
        _ => {
            let r = b.rules(n, owner);
            d.v.virtual_rules.extend(r);
        }
    }
}

fn native_ipv6(b: &mut Builder<'_>, d: &mut InstanceDraft, n: &Node) {
    b.no_args(n);
    d.v.family = Family::Inet6;
    b.d.note(
        &n.key.loc,
        "'native_ipv6' is deprecated; the addresses set the family",
    )
    .hint("remove it");
}

static VRRP_INSTANCE: Table<InstanceDraft> = Table {
    context: "vrrp_instance",
    unknown_leaf: true,
    keywords: &[
        leaf(&["state"], state),
        leaf(&["interface"], interface),
        leaf(&["vrf"], vrf),
        leaf(&["virtual_router_id"], virtual_router_id),
        leaf(&["priority"], priority),
        leaf(&["advert_int"], advert_int),
        leaf(&["version"], |b, d, n| {
            if let Some(ver) = b.uint(n, 2, 3) {
                d.explicit_version = Some((ver as u8, n.key.loc.clone()));
            }
        }),
        leaf(&["nopreempt", "no_preempt"], |b, d, n| {
            b.set_on(n, &mut d.v.nopreempt);
            d.nopreempt_loc = Some(n.key.loc.clone());
        }),
        leaf(&["preempt"], |b, d, n| {
            b.no_args(n);
            d.v.nopreempt = false;
            d.nopreempt_loc = None;
        }),
        leaf(&["preempt_delay"], |b, d, n| {
            if b.set_secs(n, 0.0, TIMER_MAX_SEC as f64, &mut d.v.preempt_delay) {
                d.preempt_delay_loc = Some(n.key.loc.clone());
            }
        }),
        unchecked(&["virtual_ipaddress"], |b, d, n| {
            let lines = n.children().iter().map(|l| l.key.loc.clone());
            d.vip_locs.extend(lines);
            let a = b.addresses(n);
            d.v.virtual_ipaddress.extend(a);
        }),
        unchecked(&["virtual_ipaddress_excluded"], |b, d, n| {
            let a = b.addresses(n);
            d.v.virtual_ipaddress_excluded.extend(a);
        }),
        leaf(&["unicast_src_ip", "mcast_src_ip"], source_ip),
        unchecked(&["unicast_peer"], unicast_peer),
        unchecked(&["authentication"], |b, d, n| {
            if b.shape(n, Shape::Block) {
                d.auth_loc = Some(n.key.loc.clone());
                d.v.authentication = b.authentication(n, &d.v.name);
            }
        }),
        unchecked(&["track_interface"], tracking::track_interface),
        unchecked(TRACK_REFS, tracking::track_refs),
        leaf(NOTIFY, tracking::notify),
        leaf(&["notify_master_rx_lower_pri"], |b, d, n| {
            if d.v.notify_master_rx_lower_pri.is_some() {
                b.d.error(
                    &n.key.loc,
                    "notify_master_rx_lower_pri script already specified - ignoring this one",
                )
                .hint("keep one line per notify kind");
                return;
            }
            d.v.notify_master_rx_lower_pri = b.script(n, &d.owner, false);
        }),
        leaf(&["notify_deleted"], notify_deleted),
        leaf(&["accept"], |b, d, n| {
            b.no_args(n);
            d.explicit_accept = Some(true);
        }),
        leaf(&["no_accept"], |b, d, n| {
            b.no_args(n);
            d.explicit_accept = Some(false);
        }),
        leaf(&["dont_track_primary"], |b, d, n| {
            b.set_on(n, &mut d.v.dont_track_primary)
        }),
        leaf(&["garp_master_delay"], |b, d, n| {
            b.set_whole_secs(n, &mut d.v.garp_master_delay);
        }),
        leaf(&["garp_lower_prio_delay"], |b, d, n| {
            if b.set_whole_secs(n, &mut d.v.garp_lower_prio_delay) {
                d.lp_delay_set = true;
            }
        }),
        leaf(&["garp_master_refresh"], |b, d, n| {
            b.set_whole_secs(n, &mut d.v.garp_master_refresh);
        }),
        leaf(&["garp_master_repeat"], |b, d, n| {
            b.set_repeat(n, &mut d.v.garp_master_repeat);
        }),
        leaf(&["garp_lower_prio_repeat"], |b, d, n| {
            if b.set_repeat(n, &mut d.v.garp_lower_prio_repeat) {
                d.lp_repeat_set = true;
            }
        }),
        leaf(&["garp_master_refresh_repeat"], |b, d, n| {
            b.set_repeat(n, &mut d.v.garp_master_refresh_repeat);
        }),
        leaf(&["lower_prio_no_advert"], |b, d, n| {
            b.set_flag(n, &mut d.v.lower_prio_no_advert)
        }),
        leaf(&["notify_priority_changes"], |b, d, n| {
            b.set_flag(n, &mut d.v.notify_priority_changes)
        }),
        leaf(&["higher_prio_send_advert"], |b, d, n| {
            b.set_flag(n, &mut d.v.higher_prio_send_advert)
        }),
        leaf(&["skip_check_adv_addr"], |b, d, n| {
            b.set_flag(n, &mut d.v.skip_check_adv_addr)
        }),
        leaf(&["strict_mode"], |b, d, n| {
            if let Some(on) = b.flag(n) {
                d.v.strict_mode = on;
                d.strict_loc = Some(n.key.loc.clone());
            }
        }),
        leaf(&["check_unicast_src"], |b, d, n| {
            b.set_on(n, &mut d.v.check_unicast_src)
        }),
        leaf(&["mcast_dst_ip"], mcast_dst_ip),
        leaf(&["unicast_ttl"], |b, d, n| {
            if let Some(ttl) = b.uint(n, 0, 255) {
                d.v.unicast_ttl = u8::try_from(ttl).ok();
            }
        }),
        leaf(&["unicast_fault_no_peer"], |b, d, n| {
            b.set_on(n, &mut d.v.unicast_fault_no_peer)
        }),
        leaf(&["track_src_ip"], |b, d, n| {
            b.set_on(n, &mut d.v.track_src_ip)
        }),
        leaf(&["old_unicast_checksum"], old_unicast_checksum),
        leaf(&["promote_secondaries"], |b, d, n| {
            b.set_on(n, &mut d.v.promote_secondaries)
        }),
        leaf(&["down_timer_adverts"], |b, d, n| {
            b.set_uint(n, 1, 100, &mut d.v.down_timer_adverts)
        }),
        leaf(&["use_vmac"], use_vmac),
        leaf(&["use_ipvlan"], use_ipvlan),
        leaf(&["garp_extra_if", "vmac_garp_intvl"], |b, d, n| {
            if let Some(v) = b.garp_extra_if(n, 0, "garp_extra_if") {
                d.v.garp_extra_if = v;
            }
        }),
        leaf(&["vmac_xmit_base"], |b, d, n| {
            b.no_args(n);
            d.v.vmac_xmit_base = true;
        }),
        leaf(&["use_vmac_addr"], |b, d, n| {
            b.no_args(n);
            d.v.use_vmac_addr = true;
        }),
        unchecked(&["virtual_routes", "virtual_rules"], routes_or_rules),
        leaf(&["smtp_alert"], tracking::smtp_alert),
        leaf(&["native_ipv6"], native_ipv6),
        leaf(
            &[
                "debug",
                "kernel_rx_buf_size",
                "linkbeat_use_polling",
                "lvs_sync_daemon_interface",
            ],
            |b, _, n| b.ignored(n),
        ),
        // Named in keepalived's manual, taken by no keepalived parser.
        leaf(&["garp_extra_if_vmac"], |b, _, n| {
            b.unsupported(
                n,
                crate::config::UnsupportedKind::NotSupported,
                "is named in keepalived's manual but no keepalived takes it (2.2.7 rejects it as unknown): use garp_extra_if",
            )
        }),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    VRRP_INSTANCE.names().collect()
}
