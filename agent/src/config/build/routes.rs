//! Route and rule lines (`virtual_routes` and `virtual_rules` in a
//! vrrp_instance, the top-level `static_routes` and `static_rules`) and the
//! top-level `static_ipaddress`, read as keepalived 2.2.7 reads them
//! (alloc_route in vrrp_iproute.c, alloc_rule in vrrp_iprule.c,
//! alloc_ipaddress in vrrp_ipaddress.c).
//!
//! A line keepalived drops is an error here and is dropped too. An option
//! keepalived acts on that the model has no field for is a warning naming
//! it, and the line is kept without it.

use std::{
    iter,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use super::{
    super::{Unsupported, UnsupportedKind, diag::Loc, lexer::Token, model::*, tree::Node},
    Builder,
    keywords::Shape,
};

/// keepalived's RULE_START_PRIORITY: rules without a preference get this,
/// then one less for each further one of the same family.
pub(super) const RULE_START_PRIORITY: u32 = 16384;

/// RTPROT_KEEPALIVED: the protocol keepalived gives the routes and rules it tracks.
const RTPROT_KEEPALIVED: u64 = 18;

/// The interface keepalived puts a static address on without `dev`
/// (DFLT_INT; xvrrpd does not take `default_interface`).
const DEFAULT_INTERFACE: &str = "eth0";

/// Where a block of routes, rules or addresses is.
#[derive(Clone, Copy)]
pub(super) enum Owner<'a> {
    /// Top level (`static_*`): these also take `track_group`.
    Static,
    /// `virtual_*` in the named vrrp_instance.
    Instance(&'a str),
}

impl Owner<'_> {
    /// "a static route", "a rule of vrrp_instance VI_1".
    fn describe(self, kind: &str) -> String {
        match self {
            Owner::Static => format!("a static {kind}"),
            Owner::Instance(name) => format!("a {kind} of vrrp_instance {name}"),
        }
    }
}

/// The words of one line, read left to right.
struct Words<'a> {
    words: Vec<&'a Token>,
    next: usize,
}

impl<'a> Words<'a> {
    fn new(l: &'a Node) -> Self {
        Self {
            words: iter::once(&l.key).chain(&l.args).collect(),
            next: 0,
        }
    }

    fn next(&mut self) -> Option<&'a Token> {
        let t = self.peek()?;
        self.next += 1;
        Some(t)
    }

    fn peek(&self) -> Option<&'a Token> {
        self.words.get(self.next).copied()
    }

    /// `lock` before a metric's value (`mtu lock 1400`).
    fn lock(&mut self) -> Option<&'a Token> {
        if self.peek().is_some_and(|t| t.text == "lock") {
            self.next()
        } else {
            None
        }
    }

    /// The line as written, words joined by one space.
    fn text(&self) -> String {
        let words: Vec<&str> = self.words.iter().map(|t| t.text.as_str()).collect();
        words.join(" ")
    }
}

/// The family a line has settled on so far (true: IPv6).
type Fam = Option<bool>;

/// What a line gathers besides its fields.
#[derive(Default)]
struct LineState {
    fam: Fam,
    /// Options xvrrpd does not support (where, which): reported once the
    /// line is known to be kept.
    unsupported: Vec<(Loc, String)>,
}

impl LineState {
    fn skip(&mut self, loc: &Loc, option: &str) {
        self.unsupported.push((loc.clone(), option.to_string()));
    }
}

fn family_name(v6: bool) -> &'static str {
    if v6 { "IPv6" } else { "IPv4" }
}

/// A route destination or rule selector as keepalived's parse_route reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    /// `default`, `any`, `all` (family from the rest of the line), or
    /// `default6` (IPv6).
    Any(Fam),
    Net(Prefix),
}

impl Dest {
    fn family(self) -> Fam {
        match self {
            Dest::Any(f) => f,
            Dest::Net(p) => Some(p.address.is_ipv6()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum PrefixError {
    NotAddress,
    BadLength { max: u8 },
}

/// `ADDRESS[/LEN]`; without a length, a host (/32 or /128).
fn parse_prefix(s: &str) -> Result<Prefix, PrefixError> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let address = IpAddr::from_str(addr).map_err(|_| PrefixError::NotAddress)?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(l) => decimal(l)
            .filter(|&l| l <= u64::from(max))
            .and_then(|l| u8::try_from(l).ok())
            .ok_or(PrefixError::BadLength { max })?,
    };
    Ok(Prefix {
        address,
        prefix_len,
    })
}

fn parse_dest(s: &str) -> Result<Dest, PrefixError> {
    match s {
        "default" | "any" | "all" => Ok(Dest::Any(None)),
        "default6" => Ok(Dest::Any(Some(true))),
        _ => parse_prefix(s).map(Dest::Net),
    }
}

/// strtoul with base 0, as keepalived reads table, scope, protocol, tos
/// numbers and rule preferences: `0x…` hex, `0…` octal, else decimal.
fn number(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A plain decimal, as keepalived's read_unsigned takes it.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A time for `rtt`, `rttvar`, `rto_min`: a decimal, optionally in s or ms
/// (get_time_rtt).
fn is_rtt(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let num = ["msecs", "msec", "ms", "secs", "sec", "s"]
        .iter()
        .find_map(|u| lower.strip_suffix(u))
        .unwrap_or(&lower);
    !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.chars().filter(|&c| c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
}

/// A route type word (find_rttables_rtntype): its number.
fn rtn_type(word: &str) -> Option<u64> {
    const TYPES: &[(&str, u64)] = &[
        ("unicast", 1),
        ("local", 2),
        ("broadcast", 3),
        ("brd", 3),
        ("anycast", 4),
        ("multicast", 5),
        ("blackhole", 6),
        ("unreachable", 7),
        ("prohibit", 8),
        ("throw", 9),
        ("nat", 10),
        ("xresolve", 11),
    ];
    match TYPES.iter().find(|(n, _)| *n == word) {
        Some((_, id)) => Some(*id),
        None => number(word).filter(|&n| n <= 255),
    }
}

/// The route types the model has.
fn route_type(id: u64) -> Option<RouteType> {
    match id {
        1 => Some(RouteType::Unicast),
        6 => Some(RouteType::Blackhole),
        7 => Some(RouteType::Unreachable),
        8 => Some(RouteType::Prohibit),
        9 => Some(RouteType::Throw),
        _ => None,
    }
}

/// One of iproute2's name files, as keepalived reads it (rttables.c).
struct NameFile {
    file: &'static str,
    what: &'static str,
    /// keepalived's built-in names, used besides the file.
    builtin: &'static [(&'static str, u64)],
    max: u64,
}

const TABLES: NameFile = NameFile {
    file: "rt_tables",
    what: "routing table",
    builtin: &[("default", 253), ("main", 254), ("local", 255)],
    max: u32::MAX as u64,
};

const PROTOCOLS: NameFile = NameFile {
    file: "rt_protos",
    what: "protocol",
    // keepalived's list, and `keepalived` itself (Debian's rt_protos has it;
    // built in here so the check does not depend on the file).
    builtin: &[
        ("none", 0),
        ("redirect", 1),
        ("kernel", 2),
        ("boot", 3),
        ("static", 4),
        ("gated", 8),
        ("ra", 9),
        ("mrt", 10),
        ("zebra", 11),
        ("bird", 12),
        ("dnrouted", 13),
        ("xorp", 14),
        ("ntk", 15),
        ("dhcp", 16),
        ("keepalived", 18),
        ("babel", 42),
    ],
    max: 255,
};

const SCOPES: NameFile = NameFile {
    file: "rt_scopes",
    what: "scope",
    builtin: &[
        ("global", 0),
        ("site", 200),
        ("link", 253),
        ("host", 254),
        ("nowhere", 255),
    ],
    max: 255,
};

const DSFIELDS: NameFile = NameFile {
    file: "rt_dsfield",
    what: "TOS value",
    builtin: &[],
    max: 255,
};

const REALMS: NameFile = NameFile {
    file: "rt_realms",
    what: "realm",
    builtin: &[],
    max: 255,
};

const GROUPS: NameFile = NameFile {
    file: "group",
    what: "interface group",
    builtin: &[],
    max: i32::MAX as u64,
};

impl NameFile {
    /// A number up to `max`, or a name: (its number, the text to keep —
    /// numbers in decimal, names as written).
    fn lookup(&self, text: &str) -> Option<(u64, String)> {
        if let Some(n) = number(text) {
            return (n <= self.max).then(|| (n, n.to_string()));
        }
        // keepalived reads /etc/iproute2; newer iproute2 keeps its defaults
        // in /usr/share or /usr/lib, where the daemon also looks. The Host has
        // no hook for these files.
        let from_file: String = ["/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"]
            .iter()
            .filter_map(|dir| std::fs::read_to_string(format!("{dir}/{}", self.file)).ok())
            .collect::<Vec<_>>()
            .join("\n");
        let found = from_file.lines().find_map(|l| {
            // alloc_strvec drops what follows '#'; a line is "NUMBER NAME".
            let l = l.split('#').next().unwrap_or("");
            let mut ws = l.split_whitespace();
            let (id, name) = (number(ws.next()?)?, ws.next()?);
            (ws.next().is_none() && name == text && id <= self.max).then_some(id)
        });
        let id = found.or_else(|| {
            self.builtin
                .iter()
                .find(|(n, _)| *n == text)
                .map(|(_, id)| *id)
        })?;
        Some((id, text.to_string()))
    }

    fn hint(&self) -> String {
        let names: Vec<&str> = self.builtin.iter().map(|(n, _)| *n).collect();
        let names = if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        };
        format!(
            "use a number up to {}, or a name from /etc/iproute2/{}{names}",
            self.max, self.file
        )
    }
}

/// The number of a routing table, protocol or scope named as a file may
/// name it (a number, or a name from iproute2's files or the built-ins),
/// for the runtime, which installs what the reader accepted.
pub(crate) fn iproute2_number(kind: Iproute2Name, text: &str) -> Option<u64> {
    let file = match kind {
        Iproute2Name::Table => &TABLES,
        Iproute2Name::Protocol => &PROTOCOLS,
        Iproute2Name::Scope => &SCOPES,
        Iproute2Name::Group => &GROUPS,
    };
    file.lookup(text).map(|(n, _)| n)
}

/// Which of iproute2's name files [`iproute2_number`] reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Iproute2Name {
    Table,
    Protocol,
    Scope,
    Group,
}

/// `ipproto`: a number up to 127 (keepalived's bound) or a name from
/// /etc/protocols.
fn is_ip_proto(s: &str) -> bool {
    if let Some(n) = decimal(s) {
        return n <= 127;
    }
    match std::fs::read_to_string("/etc/protocols") {
        Ok(text) => text.lines().any(|l| {
            let l = l.split('#').next().unwrap_or("");
            let mut ws = l.split_whitespace();
            let name = ws.next();
            let _number = ws.next();
            name == Some(s) || ws.any(|alias| alias == s)
        }),
        // No file to ask: take the name, getprotobyname might know it.
        Err(_) => s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    }
}

/// `A-B` with both ends numbers of type T (uidrange, sport, dport).
fn range<T: FromStr + PartialOrd>(s: &str) -> Option<(T, T)> {
    let (a, b) = s.split_once('-')?;
    if decimal(a).is_none() || decimal(b).is_none() {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `MARK[/MASK]`, each a number as strtoul base 0 reads it.
fn fwmark(s: &str) -> Option<(u32, Option<u32>)> {
    let (mark, mask) = match s.split_once('/') {
        Some((m, k)) => (m, Some(k)),
        None => (s, None),
    };
    let mark = u32::try_from(number(mark)?).ok()?;
    let mask = match mask {
        Some(k) => Some(u32::try_from(number(k)?).ok()?),
        None => None,
    };
    Some((mark, mask))
}

/// Options of `encap ip` / `encap ip6`, each followed by a value.
const ENCAP_IP: &[&str] = &["id", "dst", "src", "tos", "ttl", "flags"];
const ENCAP_IP6: &[&str] = &["id", "dst", "src", "tc", "hoplimit", "flags"];

/// Address options (static_ipaddress) followed by a value.
const ADDRESS_VALUED: &[&str] = &[
    "brd",
    "broadcast",
    "dev",
    "scope",
    "label",
    "peer",
    "preferred_lft",
    "track_group",
];

impl Builder<'_> {
    /// A `virtual_routes` / `static_routes` block.
    pub(super) fn routes(&mut self, n: &Node, owner: Owner<'_>) -> Vec<Route> {
        if !self.shape(n, Shape::Block) {
            return Vec::new();
        }
        self.extra(n, 0);
        let mut out = Vec::new();
        for l in n.children() {
            if self.no_block(l)
                && let Some(r) = self.route(l, owner)
            {
                out.push(r);
            }
        }
        out
    }

    /// A `virtual_rules` / `static_rules` block.
    pub(super) fn rules(&mut self, n: &Node, owner: Owner<'_>) -> Vec<Rule> {
        if !self.shape(n, Shape::Block) {
            return Vec::new();
        }
        self.extra(n, 0);
        let mut out = Vec::new();
        for l in n.children() {
            if self.no_block(l)
                && let Some(r) = self.rule(l, owner)
            {
                out.push(r);
            }
        }
        out
    }

    /// `static_ipaddress`: virtual_ipaddress's syntax, plus `track_group`
    /// (not supported) and without `use_vmac`; no `dev` means eth0.
    pub(super) fn static_addresses(&mut self, n: &Node) -> Vec<VirtualAddress> {
        if !self.shape(n, Shape::Block) {
            return Vec::new();
        }
        let mut lines = n.clone();
        if let Some(b) = &mut lines.block {
            for c in &mut b.children {
                c.args = self.static_address_args(c);
            }
        }
        let mut out = self.addresses(&lines);
        for a in &mut out {
            if a.dev.is_none() {
                a.dev = Some(DEFAULT_INTERFACE.to_string());
            }
        }
        out
    }

    /// The words of a static address line that `addresses` reads: the ones
    /// only static addresses take are reported and left out.
    fn static_address_args(&mut self, c: &Node) -> Vec<Token> {
        let mut kept = Vec::new();
        let mut has_dev = false;
        let mut i = 0;
        while let Some(a) = c.args.get(i) {
            let valued = ADDRESS_VALUED.contains(&a.text.as_str());
            let take = if valued { 2 } else { 1 };
            match a.text.as_str() {
                "track_group" => self.report_unsupported(&a.loc, "track_group", "address"),
                "use_vmac" => {
                    self.d
                        .error(
                            &a.loc,
                            "unknown configuration entry 'use_vmac' for a static address",
                        )
                        .hint(
                            "use_vmac applies to virtual_ipaddress only; keepalived says the same",
                        );
                }
                _ => {
                    has_dev |= a.text == "dev";
                    kept.extend(c.args[i..].iter().take(take).cloned());
                }
            }
            i += take;
        }
        if !has_dev && self.host.interface_exists(DEFAULT_INTERFACE) == Some(false) {
            self.d
                .error(
                    &c.key.loc,
                    format!(
                        "static address {} has no dev, and the default interface {DEFAULT_INTERFACE} does not exist",
                        c.key.text
                    ),
                )
                .hint("add: dev IF (keepalived puts it on eth0, or stops)");
        }
        kept
    }

    /// A line of a route or rule block is one line, not a block.
    fn no_block(&mut self, l: &Node) -> bool {
        match &l.block {
            None => true,
            Some(b) => {
                self.d
                    .error(&b.open, format!("'{}' does not take a block", l.key.text))
                    .hint("one route or rule per line; remove the braces");
                false
            }
        }
    }

    /// One route line, or None (reported) if keepalived would drop it.
    fn route(&mut self, l: &Node, owner: Owner<'_>) -> Option<Route> {
        let mut w = Words::new(l);
        let what = owner.describe("route");
        let mut st = LineState::default();
        let mut r = Route {
            route_type: RouteType::Unicast,
            to: Prefix {
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix_len: 0,
            },
            src: None,
            via: None,
            or_via: None,
            dev: None,
            scope: None,
            table: None,
            metric: None,
            protocol: None,
            tos: None,
            mtu: None,
            onlink: false,
            nexthops: Vec::new(),
            no_track: false,
            text: w.text(),
        };
        let mut dest: Option<(Dest, &Token)> = None;
        let mut other_type: Option<&Token> = None;
        let mut protocol: Option<(&Token, u64)> = None;
        while let Some(t) = w.next() {
            match t.text.as_str() {
                "inet" | "inet6" => self.family_word(&mut w, t, &mut st.fam, "route")?,
                "src" => {
                    let v = self.value(&mut w, t)?;
                    let a = self.address_word(v, "route src address")?;
                    self.mix(&mut st.fam, a.is_ipv6(), v, "route")?;
                    r.src = Some(a);
                }
                "via" | "gw" => {
                    if t.text == "gw" {
                        self.d
                            .warn(&t.loc, "\"gw\" for routes is deprecated")
                            .hint("write 'via ADDRESS'; keepalived warns the same");
                    }
                    r.via = Some(self.gateway(&mut w, t, &mut st.fam)?);
                }
                "or" => {
                    self.d
                        .warn(&t.loc, "\"or\" for routes is deprecated")
                        .hint("write 'nexthop via A nexthop via B'; keepalived warns the same");
                    let v = self.value(&mut w, t)?;
                    if r.or_via.is_some() {
                        self.d
                            .error(&t.loc, "\"or\" route already specified")
                            .hint("keepalived ignores a second 'or'; give one");
                        return None;
                    }
                    if r.via.is_none() {
                        self.d
                            .error(&t.loc, "'or' needs 'via ADDRESS' before it")
                            .hint("write: via ADDRESS or OTHER_ADDRESS");
                        return None;
                    }
                    let a = self.address_word(v, "'or' address")?;
                    self.mix(&mut st.fam, a.is_ipv6(), v, "route")?;
                    r.or_via = Some(a);
                }
                "from" => {
                    let v = self.value(&mut w, t)?;
                    match parse_prefix(&v.text) {
                        Ok(p) if p.address.is_ipv6() => {
                            self.mix(&mut st.fam, true, v, "route")?;
                            st.skip(&t.loc, "from");
                        }
                        _ => {
                            self.d
                                .error(
                                    &v.loc,
                                    format!(
                                        "route from address only supported with IPv6 ('{}')",
                                        v.text
                                    ),
                                )
                                .hint("'from PREFIX' is IPv6 source routing; for IPv4 use a rule");
                            return None;
                        }
                    }
                }
                "tos" | "dsfield" => {
                    let v = self.value(&mut w, t)?;
                    r.tos = Some(self.dsfield(v)?);
                }
                "table" => {
                    let v = self.value(&mut w, t)?;
                    r.table = Some(self.name_lookup(v, &TABLES, "route")?.1);
                }
                "protocol" => {
                    let v = self.value(&mut w, t)?;
                    let (id, p) = self.name_lookup(v, &PROTOCOLS, "route")?;
                    r.protocol = Some(p);
                    protocol = Some((v, id));
                }
                "scope" => {
                    let v = self.value(&mut w, t)?;
                    r.scope = Some(self.name_lookup(v, &SCOPES, "route")?.1);
                }
                "metric" | "priority" | "preference" => {
                    let v = self.value(&mut w, t)?;
                    r.metric = Some(self.decimal_value(t, v, u32::MAX.into())? as u32);
                }
                "dev" | "oif" => {
                    let v = self.value(&mut w, t)?;
                    self.check_interface(v, &what);
                    r.dev = Some(v.text.clone());
                }
                "onlink" => r.onlink = true,
                "encap" => {
                    self.encap(&mut w, t)?;
                    st.skip(&t.loc, "encap");
                }
                "expires" => {
                    let v = self.value(&mut w, t)?;
                    self.only_family(&mut st.fam, true, t, "route")?;
                    self.decimal_value(t, v, u32::MAX.into())?;
                    st.skip(&t.loc, "expires");
                }
                "mtu" => {
                    let lock = w.lock();
                    let v = self.value(&mut w, t)?;
                    r.mtu = Some(self.decimal_value(t, v, u32::MAX.into())? as u32);
                    if let Some(lock) = lock {
                        st.skip(&lock.loc, "mtu lock");
                    }
                }
                "hoplimit" => {
                    let v = self.value(&mut w, t)?;
                    self.decimal_value(t, v, 255)?;
                    st.skip(&t.loc, "hoplimit");
                }
                "advmss" | "reordering" | "cwnd" | "ssthresh" => {
                    w.lock();
                    let v = self.value(&mut w, t)?;
                    self.decimal_value(t, v, u32::MAX.into())?;
                    st.skip(&t.loc, &t.text);
                }
                "window" | "initcwnd" | "initrwnd" => {
                    let v = self.value(&mut w, t)?;
                    self.decimal_value(t, v, u32::MAX.into())?;
                    st.skip(&t.loc, &t.text);
                }
                "rtt" | "rttvar" | "rto_min" => {
                    w.lock();
                    let v = self.value(&mut w, t)?;
                    if !is_rtt(&v.text) {
                        self.d
                            .error(&v.loc, format!("invalid {} '{}' for route", t.text, v.text))
                            .hint("a time: a number, optionally with s or ms (e.g. 200ms)");
                        return None;
                    }
                    st.skip(&t.loc, &t.text);
                }
                "realms" => {
                    let v = self.value(&mut w, t)?;
                    self.realms(v)?;
                    self.only_family(&mut st.fam, false, t, "route")?;
                    st.skip(&t.loc, "realms");
                }
                "features" => {
                    let v = self.value(&mut w, t)?;
                    if v.text != "ecn" {
                        self.d
                            .error(&v.loc, format!("feature '{}' not supported", v.text))
                            .hint("the only route feature is ecn");
                        return None;
                    }
                    st.skip(&t.loc, "features");
                }
                "quickack" | "fastopen_no_cookie" => {
                    let v = self.value(&mut w, t)?;
                    self.decimal_value(t, v, 1)?;
                    st.skip(&t.loc, &t.text);
                }
                "congctl" => {
                    w.lock();
                    self.value(&mut w, t)?;
                    st.skip(&t.loc, "congctl");
                }
                "pref" => {
                    let v = self.value(&mut w, t)?;
                    self.only_family(&mut st.fam, true, t, "route")?;
                    let ok = matches!(v.text.as_str(), "low" | "medium" | "high")
                        || decimal(&v.text).is_some_and(|n| n <= 255);
                    if !ok {
                        self.d
                            .error(&v.loc, format!("invalid pref '{}' for route", v.text))
                            .hint("pref is low, medium, high or a number up to 255");
                        return None;
                    }
                    st.skip(&t.loc, "pref");
                }
                "ttl-propagate" => {
                    let v = self.value(&mut w, t)?;
                    if !matches!(v.text.as_str(), "enabled" | "disabled") {
                        self.d
                            .error(
                                &v.loc,
                                format!("ttl-propagate value '{}' not recognised", v.text),
                            )
                            .hint("ttl-propagate is enabled or disabled");
                        return None;
                    }
                    st.skip(&t.loc, "ttl-propagate");
                }
                "add" | "append" => st.skip(&t.loc, &t.text),
                // keepalived's and the kernel's default way of adding a route.
                "prepend" => {}
                "as" => {
                    self.d
                        .error(&t.loc, "\"as to\" is for MPLS routes only")
                        .hint("keepalived ignores it; remove it");
                    return None;
                }
                "nexthop" => {
                    if r.or_via.is_some() {
                        self.d
                            .error(&t.loc, "cannot specify nexthops with an \"or\" route")
                            .hint("write both gateways as nexthops instead of 'or'");
                        return None;
                    }
                    self.nexthops(&mut w, t, &mut st, &mut r.nexthops, &what)?;
                }
                "no_track" => r.no_track = true,
                "track_group" if matches!(owner, Owner::Static) => {
                    self.value(&mut w, t)?;
                    st.skip(&t.loc, "track_group");
                }
                "vrf" => {
                    self.value(&mut w, t)?;
                    st.skip(&t.loc, "vrf");
                }
                "to" => {
                    let v = self.value(&mut w, t)?;
                    let d = self.destination(v, &mut st.fam, "route")?;
                    self.set_dest(&mut dest, d, v);
                }
                word => {
                    let (d, at) = match rtn_type(word) {
                        // `TYPE PREFIX`: the word after a type is the destination.
                        Some(id) => {
                            match route_type(id) {
                                Some(rt) => r.route_type = rt,
                                None => other_type = Some(t),
                            }
                            let v = self.value(&mut w, t)?;
                            (self.destination(v, &mut st.fam, "route")?, v)
                        }
                        None => match parse_dest(word) {
                            Ok(_) => (self.destination(t, &mut st.fam, "route")?, t),
                            Err(PrefixError::BadLength { max }) => {
                                self.bad_length(t, max);
                                return None;
                            }
                            Err(PrefixError::NotAddress) => {
                                self.d
                                    .error(&t.loc, format!("unknown route keyword '{word}'"))
                                    .hint("a route is [TYPE] [to] PREFIX [src A] [via A] [dev IF] [table T] [metric N] ...; keepalived drops the line too");
                                return None;
                            }
                        },
                    };
                    self.set_dest(&mut dest, d, at);
                }
            }
        }
        let Some((d, dt)) = dest else {
            self.d
                .error(&l.key.loc, "route must have a destination")
                .hint("give the prefix it goes to, e.g. 198.51.100.0/24 or default");
            return None;
        };
        if let Some(t) = other_type {
            let reason = format!(
                "route type '{}' is not supported by xvrrpd: this route is not installed",
                t.text
            );
            self.d
                .warn(&t.loc, reason.clone())
                .hint("xvrrpd installs unicast, blackhole, unreachable, prohibit and throw routes");
            self.push_unsupported(&t.loc, &t.text, reason);
            return None;
        }
        if !r.no_track {
            if let Some((pt, id)) = protocol
                && id != RTPROT_KEEPALIVED
            {
                self.d
                    .warn(
                        &pt.loc,
                        format!(
                            "route cannot be tracked if protocol is not keepalived ({RTPROT_KEEPALIVED}): 'protocol {}' is replaced, as keepalived does",
                            pt.text
                        ),
                    )
                    .hint("add no_track to keep this protocol");
                r.protocol = None;
            }
            if r.dev.is_none() {
                self.d
                    .warn(
                        &l.key.loc,
                        format!(
                            "cannot track route {} with no interface specified: it is not tracked, as in keepalived",
                            dt.text
                        ),
                    )
                    .hint("add dev IF to have it tracked, or no_track to say it is not");
                r.no_track = true;
            }
        }
        let v6 = st.fam.unwrap_or(false);
        r.to = match d {
            Dest::Net(p) => p,
            Dest::Any(_) => Prefix {
                address: unspecified(v6),
                prefix_len: 0,
            },
        };
        if let IpAddr::V4(a) = r.to.address {
            let host_bits = u32::MAX
                .checked_shr(u32::from(r.to.prefix_len))
                .unwrap_or(0);
            if u32::from(a) & host_bits != 0 {
                let net = Ipv4Addr::from(u32::from(a) & !host_bits);
                self.d
                    .warn(
                        &dt.loc,
                        format!(
                            "route destination {} has bits set beyond its prefix length: the kernel refuses it",
                            dt.text
                        ),
                    )
                    .hint(format!("write the network: {net}/{}", r.to.prefix_len));
            }
        }
        if self.refuse_widened(&st, "route") {
            return None;
        }
        self.flush_unsupported(st, "route");
        Some(r)
    }

    /// One rule line, or None (reported) if keepalived would drop it.
    fn rule(&mut self, l: &Node, owner: Owner<'_>) -> Option<Rule> {
        let mut w = Words::new(l);
        let what = owner.describe("rule");
        let mut st = LineState::default();
        let mut r = Rule {
            family: Family::Inet,
            invert: false,
            from: None,
            to: None,
            iif: None,
            oif: None,
            tos: None,
            fwmark: None,
            fwmask: None,
            priority: None,
            action: RuleAction::Nop,
            no_track: false,
            text: w.text(),
        };
        let mut action: Option<RuleAction> = None;
        let mut l3mdev: Option<&Token> = None;
        // realms and the suppressors only go with a table action.
        let mut table_option: Option<&Token> = None;
        let mut protocol: Option<(&Token, u64)> = None;
        while let Some(t) = w.next() {
            match t.text.as_str() {
                "inet" | "inet6" => self.family_word(&mut w, t, &mut st.fam, "rule")?,
                "from" | "to" => {
                    let v = self.value(&mut w, t)?;
                    let p = match self.destination(v, &mut st.fam, "rule")? {
                        Dest::Net(p) => Some(p),
                        // `all`: no selector.
                        Dest::Any(_) => None,
                    };
                    if t.text == "from" {
                        r.from = p;
                    } else {
                        r.to = p;
                    }
                }
                "table" | "lookup" => {
                    let v = self.value(&mut w, t)?;
                    let (id, table) = self.name_lookup(v, &TABLES, "rule")?;
                    if id == 0 {
                        self.d
                            .error(&v.loc, "table 0 is not valid for a rule")
                            .hint("use the table's number or name, e.g. main or 100");
                        return None;
                    }
                    self.rule_action(&mut action, l3mdev, RuleAction::Table(table), t)?;
                }
                "not" => r.invert = true,
                "preference" | "order" | "priority" => {
                    let v = self.value(&mut w, t)?;
                    match number(&v.text).and_then(|n| u32::try_from(n).ok()) {
                        Some(p) => r.priority = Some(p),
                        None => {
                            self.d
                                .error(&v.loc, format!("invalid rule preference '{}'", v.text))
                                .hint("a number from 0 to 4294967295");
                            return None;
                        }
                    }
                }
                "tos" | "dsfield" => {
                    let v = self.value(&mut w, t)?;
                    r.tos = Some(self.dsfield(v)?);
                }
                "fwmark" => {
                    let v = self.value(&mut w, t)?;
                    let Some((mark, mask)) = fwmark(&v.text) else {
                        self.d
                            .error(&v.loc, format!("invalid rule fwmark '{}'", v.text))
                            .hint("write MARK or MARK/MASK, numbers (0x… for hex)");
                        return None;
                    };
                    r.fwmark = Some(mark);
                    r.fwmask = mask;
                }
                "realms" => {
                    let v = self.value(&mut w, t)?;
                    self.realms(v)?;
                    self.only_family(&mut st.fam, false, t, "rule")?;
                    table_option = Some(t);
                    st.skip(&t.loc, "realms");
                }
                "suppress_prefixlength" | "sup_pl" => {
                    let v = self.value(&mut w, t)?;
                    self.decimal_value(t, v, i32::MAX as u64)?;
                    table_option = Some(t);
                    st.skip(&t.loc, &t.text);
                }
                "suppress_ifgroup" | "sup_group" => {
                    let v = self.value(&mut w, t)?;
                    self.name_lookup(v, &GROUPS, "rule")?;
                    table_option = Some(t);
                    st.skip(&t.loc, &t.text);
                }
                "dev" | "iif" => {
                    let v = self.value(&mut w, t)?;
                    self.check_interface(v, &what);
                    r.iif = Some(v.text.clone());
                }
                "oif" => {
                    let v = self.value(&mut w, t)?;
                    self.check_interface(v, &what);
                    r.oif = Some(v.text.clone());
                }
                "tunnel-id" => {
                    let v = self.value(&mut w, t)?;
                    self.decimal_value(t, v, u64::MAX)?;
                    st.skip(&t.loc, "tunnel-id");
                }
                "uidrange" => {
                    let v = self.value(&mut w, t)?;
                    if range::<u32>(&v.text).is_none() {
                        self.d
                            .error(&v.loc, format!("invalid uidrange '{}'", v.text))
                            .hint("write FIRST-LAST, e.g. 1000-1999");
                        return None;
                    }
                    st.skip(&t.loc, "uidrange");
                }
                "l3mdev" => {
                    if action.is_some() {
                        self.d
                            .error(&t.loc, "cannot specify l3mdev with another action")
                            .hint("l3mdev is the rule's action; drop table/goto/…");
                        return None;
                    }
                    l3mdev = Some(t);
                }
                "protocol" => {
                    let v = self.value(&mut w, t)?;
                    let p = self.decimal_value(t, v, 255)?;
                    protocol = Some((v, p));
                }
                "ipproto" => {
                    let v = self.value(&mut w, t)?;
                    if !is_ip_proto(&v.text) {
                        self.d
                            .error(&v.loc, format!("invalid ipproto '{}'", v.text))
                            .hint("a protocol name from /etc/protocols (tcp, udp, …) or a number up to 127");
                        return None;
                    }
                    st.skip(&t.loc, "ipproto");
                }
                "sport" | "dport" => {
                    let v = self.value(&mut w, t)?;
                    if range::<u16>(&v.text).is_none() {
                        self.d
                            .error(&v.loc, format!("invalid {} range '{}'", t.text, v.text))
                            .hint("keepalived 2.2.7 takes FIRST-LAST only (one port: 80-80)");
                        return None;
                    }
                    st.skip(&t.loc, &t.text);
                }
                "no_track" => r.no_track = true,
                "track_group" if matches!(owner, Owner::Static) => {
                    self.value(&mut w, t)?;
                    st.skip(&t.loc, "track_group");
                }
                word => {
                    // `[type] goto N|nop|blackhole|unreachable|prohibit`
                    let at = if word == "type" {
                        self.value(&mut w, t)?
                    } else {
                        t
                    };
                    let a = match at.text.as_str() {
                        "goto" => {
                            let v = self.value(&mut w, at)?;
                            RuleAction::Goto(self.decimal_value(at, v, u32::MAX.into())? as u32)
                        }
                        "nop" => RuleAction::Nop,
                        other => match rtn_type(other) {
                            Some(6) => RuleAction::Blackhole,
                            Some(7) => RuleAction::Unreachable,
                            Some(8) => RuleAction::Prohibit,
                            Some(_) => {
                                self.d
                                    .error(&at.loc, format!("invalid rule action '{other}'"))
                                    .hint("a rule's action is table N, goto N, blackhole, unreachable, prohibit or nop");
                                return None;
                            }
                            None => {
                                self.d
                                    .error(&at.loc, format!("unknown rule option '{other}'"))
                                    .hint("a rule is [not] [from P] [to P] [iif IF] [oif IF] [tos N] [fwmark M[/K]] [preference N] ACTION ...; keepalived drops the line too");
                                return None;
                            }
                        },
                    };
                    self.rule_action(&mut action, l3mdev, a, at)?;
                }
            }
        }
        if let Some(RuleAction::Goto(target)) = action {
            match r.priority {
                Some(p) if p >= target => {
                    self.d
                        .error(
                            &l.key.loc,
                            format!("invalid rule - preference {p} >= goto target {target}"),
                        )
                        .hint("a goto jumps forward: its target is a larger preference");
                    return None;
                }
                None => {
                    self.d
                        .error(
                            &l.key.loc,
                            format!(
                                "invalid rule - goto target {target} specified without preference"
                            ),
                        )
                        .hint("add: preference N, with N below the target");
                    return None;
                }
                _ => {}
            }
        }
        if action.is_none() && l3mdev.is_none() {
            self.d
                .error(&l.key.loc, "no action specified for rule")
                .hint("add table N, goto N, blackhole, unreachable, prohibit or nop; keepalived drops the line");
            return None;
        }
        if let Some(t) = table_option
            && l3mdev.is_none()
            && !matches!(action, Some(RuleAction::Table(_)))
        {
            self.d
                .error(
                    &t.loc,
                    format!("'{}' specified for a non-table action", t.text),
                )
                .hint("realms and the suppressors go with 'table T'");
            return None;
        }
        if let Some((pt, id)) = protocol {
            if r.no_track {
                st.skip(&pt.loc, "protocol");
            } else if id != RTPROT_KEEPALIVED {
                self.d
                    .warn(
                        &pt.loc,
                        format!(
                            "rule cannot be tracked if protocol is not keepalived ({RTPROT_KEEPALIVED}): 'protocol {}' is replaced, as keepalived does",
                            pt.text
                        ),
                    )
                    .hint("remove it: a tracked rule gets keepalived's protocol");
            }
        }
        let v6 = st.fam == Some(true);
        r.family = if v6 { Family::Inet6 } else { Family::Inet };
        if r.priority.is_none() {
            let next = if v6 {
                &mut self.next_rule_priority.1
            } else {
                &mut self.next_rule_priority.0
            };
            let p = *next;
            *next = next.saturating_sub(1);
            self.d
                .warn(
                    &l.key.loc,
                    format!("rule has no preference specified - setting to {p}, as keepalived does; this is probably not what you want"),
                )
                .hint("add: preference N (the order rules are added in depends on the transitions)");
            r.priority = Some(p);
        }
        if let Some(t) = l3mdev {
            let reason =
                "'l3mdev' is not supported by xvrrpd: this rule is not installed".to_string();
            self.d
                .warn(&t.loc, reason.clone())
                .hint("xvrrpd has no VRF support");
            self.push_unsupported(&t.loc, "l3mdev", reason);
            return None;
        }
        r.action = action?;
        if self.refuse_widened(&st, "rule") {
            return None;
        }
        self.flush_unsupported(st, "rule");
        Some(r)
    }

    /// The word after an option, or an error if the line ends.
    fn value<'t>(&mut self, w: &mut Words<'t>, opt: &Token) -> Option<&'t Token> {
        let v = w.next();
        if v.is_none() {
            self.d
                .error(&opt.loc, format!("'{}' needs a value", opt.text))
                .hint(format!(
                    "write: {} <value>; keepalived drops the line",
                    opt.text
                ));
        }
        v
    }

    /// Records the line's family, or refuses a second one.
    fn mix(&mut self, fam: &mut Fam, v6: bool, t: &Token, kind: &str) -> Option<()> {
        match *fam {
            Some(f) if f != v6 => {
                self.d
                    .error(
                        &t.loc,
                        format!(
                            "cannot mix IPv4 and IPv6 addresses in a {kind}: '{}' is {}, the {kind} is {}",
                            t.text,
                            family_name(v6),
                            family_name(f)
                        ),
                    )
                    .hint(format!("one family per {kind}: put the other family on its own line"));
                None
            }
            _ => {
                *fam = Some(v6);
                Some(())
            }
        }
    }

    /// An option only one family has (`expires`, `pref`: IPv6; `realms`: IPv4).
    fn only_family(&mut self, fam: &mut Fam, v6: bool, t: &Token, kind: &str) -> Option<()> {
        if *fam == Some(!v6) {
            self.d
                .error(
                    &t.loc,
                    format!("'{}' is only valid for {}", t.text, family_name(v6)),
                )
                .hint(format!(
                    "remove it, or make this an {} {kind}",
                    family_name(v6)
                ));
            return None;
        }
        *fam = Some(v6);
        Some(())
    }

    /// `inet` / `inet6`. keepalived 2.2.7 also steps over the word after
    /// it, so a word there is not read as written.
    fn family_word(
        &mut self,
        w: &mut Words<'_>,
        t: &Token,
        fam: &mut Fam,
        kind: &str,
    ) -> Option<()> {
        self.mix(fam, t.text == "inet6", t, kind)?;
        if let Some(skipped) = w.next() {
            self.d
                .error(
                    &skipped.loc,
                    format!(
                        "keepalived 2.2.7 skips the word after '{}': '{}' would be ignored",
                        t.text, skipped.text
                    ),
                )
                .hint(format!("put '{}' at the end of the line", t.text));
            return None;
        }
        Some(())
    }

    /// `via [inet|inet6] ADDRESS`.
    fn gateway(&mut self, w: &mut Words<'_>, opt: &Token, fam: &mut Fam) -> Option<IpAddr> {
        let mut v = self.value(w, opt)?;
        if v.text == "inet" || v.text == "inet6" {
            self.mix(fam, v.text == "inet6", v, "route")?;
            v = self.value(w, v)?;
        }
        let a = self.address_word(v, "route via address")?;
        self.mix(fam, a.is_ipv6(), v, "route")?;
        Some(a)
    }

    fn address_word(&mut self, v: &Token, what: &str) -> Option<IpAddr> {
        match IpAddr::from_str(&v.text) {
            Ok(a) => Some(a),
            Err(_) => {
                self.d
                    .error(&v.loc, format!("invalid {what} '{}'", v.text))
                    .hint("an IPv4 or IPv6 address, without a prefix length");
                None
            }
        }
    }

    /// A destination or selector; its family must match the line's.
    fn destination(&mut self, v: &Token, fam: &mut Fam, kind: &str) -> Option<Dest> {
        match parse_dest(&v.text) {
            Ok(d) => {
                if v.text == "default6" {
                    self.d
                        .note(&v.loc, "'default6' is deprecated")
                        .hint("write ::/0");
                }
                match d.family() {
                    Some(v6) => self.mix(fam, v6, v, kind)?,
                    // keepalived 2.2.7 compares this word's unset family with
                    // the line's and refuses the line.
                    None if fam.is_some() => {
                        self.d
                            .error(
                                &v.loc,
                                format!("keepalived 2.2.7 refuses '{}' once an address has set the {kind}'s family (\"cannot mix IPv4 and IPv6\")", v.text),
                            )
                            .hint(if kind == "rule" {
                                "put it before the addresses, or leave it out: all is the default"
                            } else {
                                "put the destination first, or write 0.0.0.0/0 or ::/0"
                            });
                        return None;
                    }
                    None => {}
                }
                Some(d)
            }
            Err(PrefixError::BadLength { max }) => {
                self.bad_length(v, max);
                None
            }
            Err(PrefixError::NotAddress) => {
                let hint = if rtn_type(&v.text).is_some() {
                    format!("a route type comes first, without 'to': {} PREFIX", v.text)
                } else {
                    "write ADDRESS[/LENGTH], or default".to_string()
                };
                self.d
                    .error(&v.loc, format!("'{}' is not an address prefix", v.text))
                    .hint(hint);
                None
            }
        }
    }

    fn bad_length(&mut self, v: &Token, max: u8) {
        self.d
            .error(&v.loc, format!("invalid prefix length in '{}'", v.text))
            .hint(format!(
                "the prefix length is 0..{max}; keepalived would use {max}"
            ));
    }

    fn set_dest<'t>(&mut self, dest: &mut Option<(Dest, &'t Token)>, d: Dest, at: &'t Token) {
        if let Some((_, first)) = dest {
            self.d
                .warn(
                    &at.loc,
                    format!(
                        "a second destination '{}': keepalived uses it and forgets '{}'",
                        at.text, first.text
                    ),
                )
                .hint("one destination per route line");
        }
        *dest = Some((d, at));
    }

    fn name_lookup(&mut self, v: &Token, names: &NameFile, kind: &str) -> Option<(u64, String)> {
        let found = names.lookup(&v.text);
        if found.is_none() {
            self.d
                .error(
                    &v.loc,
                    format!("{} '{}' not found for {kind}", names.what, v.text),
                )
                .hint(names.hint());
        }
        found
    }

    fn dsfield(&mut self, v: &Token) -> Option<u8> {
        let (n, _) = self.name_lookup(v, &DSFIELDS, "TOS")?;
        u8::try_from(n).ok()
    }

    /// `realms [FROM/]TO`.
    fn realms(&mut self, v: &Token) -> Option<()> {
        let ok = v.text.split('/').all(|part| REALMS.lookup(part).is_some())
            && v.text.matches('/').count() <= 1;
        if !ok {
            self.d
                .error(&v.loc, format!("invalid realms '{}'", v.text))
                .hint(REALMS.hint());
            return None;
        }
        Some(())
    }

    /// `OPTION N`, N a decimal up to `max`.
    fn decimal_value(&mut self, opt: &Token, v: &Token, max: u64) -> Option<u64> {
        let n = decimal(&v.text).filter(|&n| n <= max);
        if n.is_none() {
            self.d
                .error(&v.loc, format!("invalid {} '{}'", opt.text, v.text))
                .hint(format!("a whole number from 0 to {max}"));
        }
        n
    }

    /// A rule's one action.
    fn rule_action(
        &mut self,
        action: &mut Option<RuleAction>,
        l3mdev: Option<&Token>,
        a: RuleAction,
        at: &Token,
    ) -> Option<()> {
        if action.is_some() || l3mdev.is_some() {
            self.d
                .error(
                    &at.loc,
                    "cannot specify more than one of table/nop/goto/blackhole/prohibit/unreachable/l3mdev for rule",
                )
                .hint("one action per rule");
            return None;
        }
        *action = Some(a);
        Some(())
    }

    /// `nexthop [via A] [dev IF] [weight W] [onlink] ...`, repeated to the
    /// end of the line.
    fn nexthops(
        &mut self,
        w: &mut Words<'_>,
        first: &Token,
        st: &mut LineState,
        out: &mut Vec<NextHop>,
        what: &str,
    ) -> Option<()> {
        let mut start = first;
        loop {
            let mut nh = NextHop {
                via: None,
                dev: None,
                weight: None,
                onlink: false,
            };
            while let Some(t) = w.peek() {
                if t.text == "nexthop" {
                    break;
                }
                w.next();
                match t.text.as_str() {
                    "via" => nh.via = Some(self.gateway(w, t, &mut st.fam)?),
                    "dev" => {
                        let v = self.value(w, t)?;
                        self.check_interface(v, what);
                        nh.dev = Some(v.text.clone());
                    }
                    "weight" => {
                        let v = self.value(w, t)?;
                        match decimal(&v.text).filter(|n| (1..=256).contains(n)) {
                            Some(n) => nh.weight = u16::try_from(n).ok(),
                            None => {
                                self.d
                                    .error(
                                        &v.loc,
                                        format!("invalid weight '{}' specified for route", v.text),
                                    )
                                    .hint("a nexthop weight is 1..256");
                                return None;
                            }
                        }
                    }
                    "onlink" => nh.onlink = true,
                    "encap" => {
                        self.encap(w, t)?;
                        st.skip(&t.loc, "nexthop encap");
                    }
                    "realms" => {
                        let v = self.value(w, t)?;
                        self.realms(v)?;
                        self.only_family(&mut st.fam, false, t, "route")?;
                        st.skip(&t.loc, "nexthop realms");
                    }
                    "as" => {
                        self.d
                            .error(&t.loc, "'as [to]' (nat) not supported")
                            .hint("remove it; keepalived refuses it too");
                        return None;
                    }
                    other => {
                        self.d
                            .error(
                                &t.loc,
                                format!("route has trailing nonsense after nexthops - '{other}'"),
                            )
                            .hint("after the first nexthop only via, dev, weight, onlink and further nexthops follow; put the route's own options before it");
                        return None;
                    }
                }
            }
            if nh.via.is_none() && nh.dev.is_none() {
                self.d
                    .error(&start.loc, "a nexthop needs 'via ADDRESS' or 'dev IF'")
                    .hint("write: nexthop via ADDRESS [dev IF] [weight W] [onlink]");
                return None;
            }
            out.push(nh);
            // The loop above stopped at the end of the line or at "nexthop".
            match w.next() {
                Some(t) => start = t,
                None => return Some(()),
            }
        }
    }

    /// `encap ip|ip6 OPTION VALUE…`, `encap mpls LABELS`, `encap ila
    /// LOCATOR`: checked for shape and stepped over.
    fn encap(&mut self, w: &mut Words<'_>, t: &Token) -> Option<()> {
        let ty = self.value(w, t)?;
        match ty.text.as_str() {
            "ip" | "ip6" => {
                let keys = if ty.text == "ip" { ENCAP_IP } else { ENCAP_IP6 };
                let mut target = false;
                while let Some(k) = w.peek()
                    && keys.contains(&k.text.as_str())
                {
                    w.next();
                    self.value(w, k)?;
                    target |= k.text == "id" || k.text == "dst";
                }
                if !target {
                    self.d
                        .error(
                            &ty.loc,
                            format!("address or id missing for {} encapsulation", ty.text),
                        )
                        .hint("add dst ADDRESS or id N");
                    return None;
                }
            }
            "mpls" | "ila" => {
                self.value(w, ty)?;
            }
            other => {
                self.d
                    .error(&ty.loc, format!("unknown encap type '{other}'"))
                    .hint("encap is ip, ip6, mpls or ila");
                return None;
            }
        }
        Some(())
    }

    /// A selector xvrrpd cannot install narrows what the line matches:
    /// without it the route or rule would catch traffic the file keeps out
    /// (a rule without its `uidrange` sends every user's traffic to its
    /// table). Such a line is not installed at all; each option is warned.
    fn refuse_widened(&mut self, st: &LineState, kind: &str) -> bool {
        let widens = |option: &str| {
            matches!(
                (kind, option),
                (
                    "rule",
                    "uidrange"
                        | "ipproto"
                        | "sport"
                        | "dport"
                        | "tunnel-id"
                        | "suppress_prefixlength"
                        | "sup_pl"
                        | "suppress_ifgroup"
                        | "sup_group"
                ) | ("route", "from")
            )
        };
        if !st.unsupported.iter().any(|(_, o)| widens(o)) {
            return false;
        }
        for (loc, option) in &st.unsupported {
            let reason = if widens(option) {
                format!(
                    "'{option}' is not supported by xvrrpd: without it this {kind} would match \
                     more than written, so it is not installed"
                )
            } else {
                format!("'{option}' is not supported by xvrrpd (this {kind} is not installed)")
            };
            self.d
                .warn(loc, reason.clone())
                .hint("remove the option, or keep this line with keepalived");
            self.push_unsupported(loc, option, reason);
        }
        true
    }

    /// The options of a kept line that xvrrpd does not support.
    fn flush_unsupported(&mut self, st: LineState, kind: &str) {
        for (loc, option) in st.unsupported {
            self.report_unsupported(&loc, &option, kind);
        }
    }

    /// An option keepalived acts on that xvrrpd does not: warned about,
    /// listed as unsupported; the line is kept without it.
    fn report_unsupported(&mut self, loc: &Loc, option: &str, kind: &str) {
        let effect = "";
        let installed = if kind == "address" {
            "configured"
        } else {
            "installed"
        };
        let reason = format!(
            "'{option}' is not supported by xvrrpd: the {kind} is {installed} without it{effect}"
        );
        self.d
            .warn(loc, reason.clone())
            .hint("remove it, or keep this line with keepalived");
        self.push_unsupported(loc, option, reason);
    }

    fn push_unsupported(&mut self, loc: &Loc, option: &str, reason: String) {
        self.unsupported.push(Unsupported {
            keyword: option.to_string(),
            location: loc.clone(),
            kind: UnsupportedKind::NotSupported,
            reason,
        });
    }
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_default_to_host_length() {
        let p = parse_prefix("192.0.2.1").expect("prefix");
        assert_eq!(p.prefix_len, 32);
        let p = parse_prefix("2001:db8::/32").expect("prefix");
        assert_eq!(p.prefix_len, 32);
        assert_eq!(parse_prefix("2001:db8::1").map(|p| p.prefix_len), Ok(128));
        assert_eq!(
            parse_prefix("10.0.0.0/33"),
            Err(PrefixError::BadLength { max: 32 })
        );
        assert_eq!(
            parse_prefix("10.0.0.0/"),
            Err(PrefixError::BadLength { max: 32 })
        );
        assert_eq!(parse_prefix("foo"), Err(PrefixError::NotAddress));
        assert_eq!(parse_dest("all"), Ok(Dest::Any(None)));
        assert_eq!(parse_dest("default6"), Ok(Dest::Any(Some(true))));
    }

    #[test]
    fn numbers_read_as_strtoul_base_0() {
        assert_eq!(number("100"), Some(100));
        assert_eq!(number("0x64"), Some(100));
        assert_eq!(number("0144"), Some(100));
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("0x"), None);
        assert_eq!(number("-1"), None);
        assert_eq!(number("09"), None);
        assert_eq!(decimal("0x10"), None);
        assert_eq!(decimal("18446744073709551616"), None);
    }

    #[test]
    fn small_value_readers() {
        assert!(is_rtt("200ms") && is_rtt("1s") && is_rtt("1.5secs") && is_rtt("102"));
        assert!(!is_rtt("1e3") && !is_rtt("ms") && !is_rtt("5m"));
        assert_eq!(fwmark("0x10/0xff"), Some((16, Some(255))));
        assert_eq!(fwmark("24"), Some((24, None)));
        assert_eq!(fwmark("24/"), None);
        assert_eq!(range::<u16>("10-20"), Some((10, 20)));
        assert_eq!(range::<u16>("30"), None);
        assert_eq!(rtn_type("blackhole"), Some(6));
        assert_eq!(rtn_type("6"), Some(6));
        assert_eq!(rtn_type("10.0.0.0/8"), None);
        assert_eq!(TABLES.lookup("main"), Some((254, "main".to_string())));
        assert_eq!(TABLES.lookup("0x64"), Some((100, "100".to_string())));
        assert_eq!(SCOPES.lookup("256"), None);
    }
}
