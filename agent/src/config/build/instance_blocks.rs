//! The blocks inside a `vrrp_instance` that hold one item per line:
//! `virtual_ipaddress`, `unicast_peer` and `authentication`.

use std::{
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use super::{
    super::{lexer::Token, model::*, tree::Node},
    Builder,
    keywords::{Shape, Table, leaf},
};

/// The `authentication` block as read, before it is known to be complete.
struct AuthDraft {
    instance: String,
    auth_type: Option<AuthType>,
    pass: Option<String>,
}

/// Address options followed by a value.
const ADDRESS_VALUED: &[&str] = &[
    "brd",
    "broadcast",
    "dev",
    "scope",
    "label",
    "peer",
    "preferred_lft",
];

impl Builder<'_> {
    pub(super) fn addresses(&mut self, n: &Node) -> Vec<VirtualAddress> {
        let mut out = Vec::new();
        if !self.shape(n, Shape::Block) {
            return out;
        }
        self.extra(n, 0);
        for c in n.children() {
            if let Some(a) = self.address(c) {
                out.push(a);
            }
        }
        out
    }

    /// `ADDRESS[/PREFIX] [OPTION [VALUE]]...`
    fn address(&mut self, c: &Node) -> Option<VirtualAddress> {
        let t = &c.key;
        let (addr_s, mask_s) = match t.text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (t.text.as_str(), None),
        };
        let Ok(address) = IpAddr::from_str(addr_s) else {
            self.d
                .error(&t.loc, format!("'{}' is not an IP address", t.text))
                .hint("write ADDRESS[/PREFIX] [dev IF] [label LABEL] ..., one address per line");
            return None;
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match mask_s {
            None => max,
            Some(m) => match m.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    self.d
                        .error(
                            &t.loc,
                            format!("invalid prefix length '/{m}' in '{}'", t.text),
                        )
                        .hint(format!("the prefix length is 0..{max}"));
                    return None;
                }
            },
        };
        let mut va = VirtualAddress {
            address,
            prefix_len,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            no_track: false,
            preferred_lft: None,
            flags: Vec::new(),
        };
        let mut i = 0;
        while let Some(a) = c.args.get(i) {
            if !ADDRESS_VALUED.contains(&a.text.as_str()) {
                i += self.address_flag(&mut va, a);
                continue;
            }
            match c.args.get(i + 1) {
                Some(v) => self.address_value(&mut va, mask_s.is_some(), a, v),
                None => {
                    self.d
                        .error(&a.loc, format!("'{}' needs a value", a.text))
                        .hint(format!("write: {} <value>", a.text));
                }
            }
            i += 2;
        }
        // keepalived deprecates a /128 IPv6 VIP (preferred_lft 0) unless told otherwise.
        if address.is_ipv6() && prefix_len == 128 && va.preferred_lft.is_none() {
            va.preferred_lft = Some(PreferredLft::Seconds(0));
        }
        Some(va)
    }

    /// An address option without a value; how many words it took.
    fn address_flag(&mut self, va: &mut VirtualAddress, a: &Token) -> usize {
        match a.text.as_str() {
            "no_track" => va.no_track = true,
            "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
            | "use_vmac" => va.flags.push(a.text.clone()),
            "track_group" => {
                self.d.warn(
                    &a.loc,
                    "'track_group' applies only to static addresses; ignored here",
                );
                return 2;
            }
            _ => {
                self.d
                    .error(&a.loc, format!("unknown configuration entry '{}' for ip address", a.text))
                    .hint("one address per line; options are brd, dev, scope, label, peer, no_track, preferred_lft");
            }
        }
        1
    }

    fn address_value(&mut self, va: &mut VirtualAddress, has_prefix: bool, a: &Token, v: &Token) {
        let address = va.address;
        match a.text.as_str() {
            "brd" | "broadcast" => match Ipv4Addr::from_str(&v.text) {
                Ok(b) if address.is_ipv4() => va.brd = Some(b),
                _ => {
                    self.d
                        .error(&v.loc, format!("invalid broadcast address '{}'", v.text))
                        .hint("brd takes an IPv4 address, for IPv4 addresses only");
                }
            },
            "dev" => {
                va.dev = Some(v.text.clone());
                self.check_interface(v, "virtual address");
            }
            "scope" => {
                if matches!(
                    v.text.as_str(),
                    "site" | "link" | "host" | "nowhere" | "global"
                ) || v.text.parse::<u8>().is_ok()
                {
                    va.scope = Some(v.text.clone());
                } else {
                    self.d
                        .error(&v.loc, format!("invalid scope '{}'", v.text))
                        .hint("scope is site, link, host, nowhere or global");
                }
            }
            "label" => {
                if v.text.len() > 15 {
                    self.d
                        .error(
                            &v.loc,
                            format!("label '{}' is longer than 15 characters", v.text),
                        )
                        .hint("Linux limits labels to IFNAMSIZ-1 characters");
                }
                va.label = Some(v.text.clone());
            }
            "peer" => {
                if has_prefix {
                    self.d
                        .error(
                            &v.loc,
                            "cannot specify an address prefix together with a peer address",
                        )
                        .hint("keepalived takes ADDR peer PEER, both without a prefix");
                }
                match IpAddr::from_str(&v.text) {
                    Ok(pa) if pa.is_ipv4() == address.is_ipv4() => va.peer = Some(pa),
                    _ => {
                        self.d
                            .error(&v.loc, format!("invalid peer address '{}'", v.text))
                            .hint("peer takes an address of the same family");
                    }
                }
            }
            _ => {
                if v.text == "forever" {
                    va.preferred_lft = Some(PreferredLft::Forever(Forever::Forever));
                } else if let Ok(s) = v.text.parse::<u32>() {
                    va.preferred_lft = Some(PreferredLft::Seconds(s));
                } else {
                    self.d
                        .error(&v.loc, format!("invalid preferred_lft '{}'", v.text))
                        .hint("use a number of seconds or 'forever'");
                }
            }
        }
    }

    /// `ADDRESS [min_ttl N] [max_ttl N]`; a TTL bound turns on source
    /// checking, as in keepalived.
    pub(super) fn peer(&mut self, p: &Node, check_unicast_src: &mut bool) -> Option<UnicastPeer> {
        let addr = self.ip(&p.key, "unicast_peer")?;
        let mut peer = UnicastPeer {
            address: addr,
            min_ttl: None,
            max_ttl: None,
        };
        let mut args = p.args.iter().peekable();
        while let Some(a) = args.next() {
            let bound = match a.text.as_str() {
                "min_ttl" => Some(&mut peer.min_ttl),
                "max_ttl" => Some(&mut peer.max_ttl),
                _ => None,
            };
            let (Some(bound), Some(val)) = (bound, args.peek()) else {
                self.d
                    .error(&a.loc, format!("unknown unicast_peer option '{}'", a.text))
                    .hint("write: ADDRESS [min_ttl N] [max_ttl N], one peer per line");
                continue;
            };
            match val.text.parse::<u8>() {
                Ok(x) => {
                    *bound = Some(x);
                    *check_unicast_src = true;
                }
                Err(_) => {
                    self.d
                        .error(
                            &val.loc,
                            format!("{} '{}' must be 0..255", a.text, val.text),
                        )
                        .hint("TTLs are 0..255");
                }
            }
            args.next();
        }
        if let (Some(lo), Some(hi)) = (peer.min_ttl, peer.max_ttl)
            && lo > hi
        {
            self.d
                .error(
                    &p.key.loc,
                    format!("unicast_peer {addr}: min_ttl {lo} is above max_ttl {hi}"),
                )
                .hint("swap them");
        }
        Some(peer)
    }

    /// The `authentication` block: none without an `auth_type`.
    pub(super) fn authentication(&mut self, c: &Node, instance: &str) -> Option<Authentication> {
        let mut draft = AuthDraft {
            instance: instance.to_string(),
            auth_type: None,
            pass: None,
        };
        self.read_block(&AUTHENTICATION, &mut draft, c.children());
        match draft.auth_type {
            Some(auth_type) => Some(Authentication {
                auth_type,
                auth_pass: draft.pass,
            }),
            None => {
                if draft.pass.is_some() {
                    self.d
                        .warn(
                            &c.key.loc,
                            format!(
                                "({instance}) auth_pass without auth_type - authentication is off"
                            ),
                        )
                        .hint("add: auth_type PASS");
                }
                None
            }
        }
    }
}

fn auth_type(b: &mut Builder<'_>, d: &mut AuthDraft, n: &Node) {
    let Some(t) = b.word(n, "type") else {
        return;
    };
    match t.text.as_str() {
        "PASS" => d.auth_type = Some(AuthType::Pass),
        "AH" => d.auth_type = Some(AuthType::Ah),
        other => {
            b.d.error(
                &t.loc,
                format!("({}) unknown auth_type '{other}'", d.instance),
            )
            .hint("auth_type is PASS or AH");
        }
    }
}

/// VRRPv2 carries 8 bytes of password: longer ones are cut, as keepalived does.
fn auth_pass(b: &mut Builder<'_>, d: &mut AuthDraft, n: &Node) {
    let Some(t) = b.word(n, "password") else {
        return;
    };
    let mut p = t.text;
    if p.len() > 8 {
        b.d.warn(&t.loc, "truncating auth_pass to 8 characters")
            .hint("VRRPv2 carries 8 bytes of password; only the first 8 count");
        let mut cut = 8;
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        p.truncate(cut);
    }
    d.pass = Some(p);
}

static AUTHENTICATION: Table<AuthDraft> = Table {
    context: "authentication",
    unknown_leaf: true,
    keywords: &[
        leaf(&["auth_type"], auth_type),
        leaf(&["auth_pass"], auth_pass),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    AUTHENTICATION.names().collect()
}
