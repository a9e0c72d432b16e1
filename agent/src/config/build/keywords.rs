//! Keyword tables, and the readers and setters every table shares, so that a
//! value means and is reported the same wherever its keyword appears.

use std::{net::IpAddr, str::FromStr, time::Duration};

use super::{
    super::{Unsupported, UnsupportedKind, lexer::Token, model::GarpExtraIf, tree::Node},
    Builder,
};

/// Handles one keyword line of a block whose draft is `S`.
pub(super) type Handler<S> = fn(&mut Builder<'_>, &mut S, &Node);

/// keepalived's TIMER_MAX_SEC: the upper bound of preempt_delay.
pub(super) const TIMER_MAX_SEC: u64 = 1000;

/// The largest whole number of seconds keepalived keeps in its microsecond timers.
pub(super) const MAX_WHOLE_SECS: u64 = u32::MAX as u64 / 1_000_000;

pub(super) struct Keyword<S: 'static> {
    names: &'static [&'static str],
    /// Refused with a block before its handler runs. Block keywords check
    /// their own shape; global_defs and the top level never checked theirs.
    leaf: bool,
    handle: Handler<S>,
}

/// A line keyword: a block after it is an error and the line is skipped.
pub(super) const fn leaf<S>(names: &'static [&'static str], handle: Handler<S>) -> Keyword<S> {
    Keyword {
        names,
        leaf: true,
        handle,
    }
}

/// A keyword whose handler checks its shape itself.
pub(super) const fn unchecked<S>(names: &'static [&'static str], handle: Handler<S>) -> Keyword<S> {
    Keyword {
        names,
        leaf: false,
        handle,
    }
}

/// The keywords of one kind of block, looked up by name in order.
pub(super) struct Table<S: 'static> {
    /// Named in "unknown keyword 'x' in {context}".
    pub(super) context: &'static str,
    /// Whether an unknown keyword with a block is refused as a block rather
    /// than reported as unknown.
    pub(super) unknown_leaf: bool,
    pub(super) keywords: &'static [Keyword<S>],
}

impl<S> Table<S> {
    /// Every name the table answers to, aliases included, in table order.
    pub(super) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keywords.iter().flat_map(|k| k.names.iter().copied())
    }
}

/// Whether a keyword takes a block.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Block,
    Leaf,
}

impl Builder<'_> {
    /// Reads `nodes` into `draft`, each by its entry in `table`.
    pub(super) fn read_block<S>(&mut self, table: &Table<S>, draft: &mut S, nodes: &[Node]) {
        for n in nodes {
            let keyword = table.keywords.iter().find(|k| k.names.contains(&n.name()));
            let leaf = keyword.map_or(table.unknown_leaf, |k| k.leaf);
            if leaf && !self.shape(n, Shape::Leaf) {
                continue;
            }
            match keyword {
                Some(k) => (k.handle)(self, draft, n),
                None => self.unknown(n, table.context),
            }
        }
    }

    pub(super) fn shape(&mut self, n: &Node, kw: Shape) -> bool {
        match (kw, &n.block) {
            (Shape::Block, None) => {
                self.d
                    .error(&n.key.loc, format!("missing '{{' after '{}'", n.name()))
                    .hint("a block opens with '{' on the keyword's line or the next one");
                false
            }
            (Shape::Leaf, Some(b)) => {
                self.d
                    .error(&b.open, format!("'{}' does not take a block", n.name()))
                    .hint("remove the braces, or check for a misspelt keyword");
                false
            }
            _ => true,
        }
    }

    pub(super) fn arg<'n>(&mut self, n: &'n Node, idx: usize, what: &str) -> Option<&'n Token> {
        let t = n.args.get(idx);
        if t.is_none() {
            self.d
                .error(&n.key.loc, format!("'{}' is missing its {what}", n.name()))
                .hint(format!("write it as: {} <{what}>", n.name()));
        }
        t
    }

    /// `KEYWORD <what>`: the one word, with anything after it warned about.
    pub(super) fn word(&mut self, n: &Node, what: &str) -> Option<Token> {
        let t = self.arg(n, 0, what)?.clone();
        self.extra(n, 1);
        Some(t)
    }

    /// A word that names a file (a namespace under /run/netns, a socket):
    /// no '/', not `.` or `..`.
    pub(super) fn file_name_word(&mut self, n: &Node, what: &str) -> Option<String> {
        let t = self.word(n, what)?;
        if t.text.contains('/') || t.text == "." || t.text == ".." || t.text.contains('\0') {
            self.d
                .error(&t.loc, format!("'{}' is not a valid {what}", t.text))
                .hint("use a plain name without '/', as `ip netns list` shows them");
            return None;
        }
        Some(t.text)
    }

    pub(super) fn extra(&mut self, n: &Node, max: usize) {
        if let Some(t) = n.args.get(max) {
            let rest: Vec<&str> = n.args[max..].iter().map(|t| t.text.as_str()).collect();
            self.d
                .warn(
                    &t.loc,
                    format!(
                        "extra words after '{}' are ignored: {}",
                        n.name(),
                        rest.join(" ")
                    ),
                )
                .hint("keepalived reads one keyword per line; put each setting on its own line");
        }
    }

    pub(super) fn uint(&mut self, n: &Node, min: u64, max: u64) -> Option<u64> {
        let t = self.word(n, "value")?;
        let hint = format!("use a whole number from {min} to {max}");
        match t.text.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            Ok(v) => {
                let msg = format!("{} {v} is out of range {min}..{max}", n.name());
                self.d.error(&t.loc, msg).hint(hint);
                None
            }
            Err(_) => {
                let msg = format!("{} '{}' is not a whole number", n.name(), t.text);
                self.d.error(&t.loc, msg).hint(hint);
                None
            }
        }
    }

    pub(super) fn int_tok(&mut self, t: &Token, what: &str, min: i64, max: i64) -> Option<i32> {
        match t.text.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => i32::try_from(v).ok(),
            _ => {
                self.d
                    .error(
                        &t.loc,
                        format!("{what} '{}' must be in [{min}, {max}]", t.text),
                    )
                    .hint(format!("use a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// A decimal number of seconds (keepalived's resolution: microseconds).
    pub(super) fn secs(&mut self, n: &Node, min: f64, max: f64) -> Option<Duration> {
        let t = self.word(n, "value")?;
        self.secs_tok(&t, n.name(), min, max)
    }

    pub(super) fn secs_tok(
        &mut self,
        t: &Token,
        what: &str,
        min: f64,
        max: f64,
    ) -> Option<Duration> {
        let ok = t
            .text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= min && *v <= max && is_decimal(&t.text));
        match ok {
            Some(v) => Some(Duration::from_micros((v * 1e6).round() as u64)),
            None => {
                self.d
                    .error(
                        &t.loc,
                        format!(
                            "{what} '{}' is outside range [{min}, {max}] seconds",
                            t.text
                        ),
                    )
                    .hint("write a number of seconds, e.g. 1 or 0.5");
                None
            }
        }
    }

    /// `KEYWORD [<BOOL>]`: no value means true.
    pub(super) fn flag(&mut self, n: &Node) -> Option<bool> {
        self.extra(n, 1);
        let Some(t) = n.args.first() else {
            return Some(true);
        };
        match t.text.as_str() {
            "true" | "on" | "yes" => Some(true),
            "false" | "off" | "no" => Some(false),
            _ => {
                self.d
                    .error(
                        &t.loc,
                        format!("{} '{}' is not a boolean", n.name(), t.text),
                    )
                    .hint("use on|off, true|false or yes|no, or nothing for on");
                None
            }
        }
    }

    pub(super) fn no_args(&mut self, n: &Node) {
        self.extra(n, 0);
    }

    /// A `KEYWORD N` counter where 0 is taken as 1, with a warning.
    pub(super) fn repeat(&mut self, n: &Node) -> Option<u32> {
        let v = self.uint(n, 0, i32::MAX as u64)?;
        if v == 0 {
            self.d
                .warn(
                    &n.key.loc,
                    format!("{} must be greater than 0, setting to 1", n.name()),
                )
                .hint("use at least 1");
            return Some(1);
        }
        u32::try_from(v).ok()
    }

    pub(super) fn ip(&mut self, t: &Token, what: &str) -> Option<IpAddr> {
        match IpAddr::from_str(&t.text) {
            Ok(a) => Some(a),
            Err(_) => {
                self.d
                    .error(&t.loc, format!("{what} '{}' is not an IP address", t.text))
                    .hint("write an IPv4 (192.0.2.1) or IPv6 (2001:db8::1) address");
                None
            }
        }
    }

    /// `weight W`, the first word of the line, within ±`range`.
    pub(super) fn weight(&mut self, n: &Node, what: &str, range: i64) -> Option<i32> {
        let t = self.arg(n, 0, "weight")?.clone();
        self.int_tok(&t, what, -range, range)
    }

    // ---- setters: a valid value replaces the field, an invalid one leaves it ----

    /// `KEYWORD`, a switch with no value.
    pub(super) fn set_on(&mut self, n: &Node, field: &mut bool) {
        self.no_args(n);
        *field = true;
    }

    pub(super) fn set_flag(&mut self, n: &Node, field: &mut bool) {
        if let Some(v) = self.flag(n) {
            *field = v;
        }
    }

    pub(super) fn set_uint<T: TryFrom<u64>>(
        &mut self,
        n: &Node,
        min: u64,
        max: u64,
        field: &mut T,
    ) {
        if let Some(v) = self.uint(n, min, max)
            && let Ok(v) = T::try_from(v)
        {
            *field = v;
        }
    }

    pub(super) fn set_secs(&mut self, n: &Node, min: f64, max: f64, field: &mut Duration) -> bool {
        let v = self.secs(n, min, max);
        v.map(|v| *field = v).is_some()
    }

    /// The GARP delays: whole seconds. True when the field was set.
    pub(super) fn set_whole_secs(&mut self, n: &Node, field: &mut Duration) -> bool {
        let v = self.uint(n, 0, MAX_WHOLE_SECS);
        v.map(|v| *field = Duration::from_secs(v)).is_some()
    }

    /// True when the field was set.
    pub(super) fn set_repeat(&mut self, n: &Node, field: &mut u32) -> bool {
        let v = self.repeat(n);
        v.map(|v| *field = v).is_some()
    }

    /// `weight W [reverse]` of a tracked file or process: anything but
    /// `reverse` after the weight means not reversed.
    pub(super) fn set_weight_reverse(
        &mut self,
        n: &Node,
        what: &str,
        range: i64,
        (weight, reverse): (&mut i32, &mut bool),
    ) {
        if let Some(w) = self.weight(n, what, range) {
            *weight = w;
        }
        *reverse = n.args.get(1).is_some_and(|t| t.text == "reverse");
        self.extra(n, 2);
    }

    /// `garp_extra_if [all] SECONDS` (and its old name): `Some(None)` for 0
    /// (off), `None` when the line is ignored, as keepalived ignores it.
    pub(super) fn garp_extra_if(
        &mut self,
        n: &Node,
        min: u64,
        name: &str,
    ) -> Option<Option<GarpExtraIf>> {
        if n.name() != name {
            self.d
                .warn(
                    &n.key.loc,
                    format!(
                        "Keyword \"{}\" is deprecated - please use \"{name}\"",
                        n.name()
                    ),
                )
                .hint(format!("write {name}"));
        }
        let mut all = false;
        let mut secs = None;
        for t in &n.args {
            if t.text == "all" {
                all = true;
                continue;
            }
            match t.text.parse::<u64>() {
                Ok(v) if (min..=86_400).contains(&v) => secs = Some(v),
                _ => {
                    self.d
                        .error(
                            &t.loc,
                            format!("{} '{}' invalid - ignoring", n.name(), t.text),
                        )
                        .hint(format!("seconds from {min} to 86400, and `all` if wanted"));
                    return None;
                }
            }
        }
        let Some(secs) = secs else {
            self.d
                .error(
                    &n.key.loc,
                    format!("{} specified without time - ignoring", n.name()),
                )
                .hint(format!("write {name} [all] SECONDS"));
            return None;
        };
        Some((secs > 0).then(|| GarpExtraIf {
            interval: Duration::from_secs(secs),
            all,
        }))
    }

    // ---- keywords not acted on -----------------------------------------

    pub(super) fn unsupported(&mut self, n: &Node, kind: UnsupportedKind, reason: &str) {
        let msg = format!("'{}' {reason}", n.name());
        match kind {
            UnsupportedKind::Ignored => {
                self.d.note(&n.key.loc, msg);
            }
            UnsupportedKind::NotSupported => {
                self.d
                    .warn(&n.key.loc, msg)
                    .hint("xvrrpd runs the rest of the configuration without it");
            }
        }
        self.unsupported.push(Unsupported {
            keyword: n.name().to_string(),
            location: n.key.loc.clone(),
            kind,
            reason: reason.to_string(),
        });
    }

    pub(super) fn ignored(&mut self, n: &Node) {
        self.unsupported(
            n,
            UnsupportedKind::Ignored,
            "is accepted and ignored: it has no effect on xvrrpd",
        );
    }

    pub(super) fn not_supported(&mut self, n: &Node) {
        self.unsupported(
            n,
            UnsupportedKind::NotSupported,
            "is not supported by xvrrpd yet",
        );
    }

    pub(super) fn unknown(&mut self, n: &Node, ctx: &str) {
        self.d
            .warn(
                &n.key.loc,
                format!("unknown keyword '{}' in {ctx}", n.name()),
            )
            .hint("check the spelling and the block it is in (keepalived reports it too)");
    }

    pub(super) fn check_interface(&mut self, t: &Token, what: &str) {
        if self.host.interface_exists(&t.text) == Some(false) {
            self.d
                .warn(
                    &t.loc,
                    format!("interface {} for {what} doesn't exist", t.text),
                )
                .hint("check the name with `ip link`; keepalived warns the same way");
        }
    }
}

/// A plain decimal (strtod would also take hex, inf and exponents, which keepalived then rejects or misreads).
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|&c| c == '.').count() <= 1
        && s.chars().any(|c| c.is_ascii_digit())
}
