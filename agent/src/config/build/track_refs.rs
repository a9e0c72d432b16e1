//! `track_interface`, `track_script`, `track_file`, `track_process` and `track_bfd`
//! blocks of instances and sync groups, and their resolution against the
//! definitions once the whole file is read.

use super::{
    super::{
        diag::Loc,
        model::{TrackInterface, TrackRef},
        tree::Node,
    },
    Builder,
    keywords::Shape,
};

/// A track_* line before its name is looked up.
pub(super) struct PendingRef {
    name: String,
    loc: Loc,
    weight: Option<i32>,
    reverse: Option<bool>,
}

/// The `track_*` references of an instance or sync group, unresolved.
#[derive(Default)]
pub(super) struct PendingTracks {
    pub(super) script: Vec<PendingRef>,
    pub(super) file: Vec<PendingRef>,
    pub(super) process: Vec<PendingRef>,
    pub(super) bfd: Vec<PendingRef>,
}

/// What a `track_*` line names, with its block keyword and weight bound.
#[derive(Clone, Copy)]
pub(super) enum TrackKind {
    Script,
    File,
    Process,
    Bfd,
}

impl TrackKind {
    fn keyword(self) -> &'static str {
        match self {
            TrackKind::Script => "track_script",
            TrackKind::File => "track_file",
            TrackKind::Process => "track_process",
            TrackKind::Bfd => "track_bfd",
        }
    }

    fn definition(self) -> &'static str {
        match self {
            TrackKind::Script => "vrrp_script",
            TrackKind::File => "vrrp_track_file",
            TrackKind::Process => "vrrp_track_process",
            TrackKind::Bfd => "bfd_instance",
        }
    }

    fn weight_range(self) -> i64 {
        match self {
            TrackKind::Script | TrackKind::Bfd => 253,
            TrackKind::File | TrackKind::Process => 254,
        }
    }
}

impl PendingTracks {
    pub(super) fn of(&mut self, kind: TrackKind) -> &mut Vec<PendingRef> {
        match kind {
            TrackKind::Script => &mut self.script,
            TrackKind::File => &mut self.file,
            TrackKind::Process => &mut self.process,
            TrackKind::Bfd => &mut self.bfd,
        }
    }
}

impl Builder<'_> {
    /// A `track_interface` block (instance or sync group); names that do not
    /// exist on this host are warned about, as keepalived does.
    pub(super) fn track_interfaces(&mut self, n: &Node) -> Vec<TrackInterface> {
        let mut out = Vec::new();
        for r in self.track_lines(n, "track_interface", 253) {
            if self.host.interface_exists(&r.name) == Some(false) {
                self.d
                    .warn(
                        &r.loc,
                        format!("interface {} for track_interface doesn't exist", r.name),
                    )
                    .hint("check the name with `ip link`");
            }
            out.push(TrackInterface {
                name: r.name,
                weight: r.weight.unwrap_or(0),
                weight_reverse: r.reverse.unwrap_or(false),
            });
        }
        out
    }

    /// A `track_script`/`track_file`/`track_process`/`track_bfd` block, added to `tracks`.
    pub(super) fn track_block(&mut self, n: &Node, kind: TrackKind, tracks: &mut PendingTracks) {
        let refs = self.track_lines(n, kind.keyword(), kind.weight_range());
        tracks.of(kind).extend(refs);
    }

    fn track_lines(&mut self, n: &Node, kind: &str, weight_range: i64) -> Vec<PendingRef> {
        if !self.shape(n, Shape::Block) {
            return Vec::new();
        }
        self.extra(n, 0);
        n.children()
            .iter()
            .map(|c| self.track_line(c, kind, weight_range))
            .collect()
    }

    /// `NAME [weight N] [reverse|noreverse]`.
    fn track_line(&mut self, c: &Node, kind: &str, weight_range: i64) -> PendingRef {
        let mut r = PendingRef {
            name: c.key.text.clone(),
            loc: c.key.loc.clone(),
            weight: None,
            reverse: None,
        };
        let mut args = c.args.iter();
        while let Some(a) = args.next() {
            match a.text.as_str() {
                "weight" => match args.next() {
                    Some(w) => {
                        let what = format!("{kind} {} weight", r.name);
                        r.weight = self.int_tok(w, &what, -weight_range, weight_range);
                    }
                    None => {
                        self.d
                            .error(&a.loc, format!("{kind} {}: weight without a value", r.name))
                            .hint("write: NAME weight <number>");
                    }
                },
                "reverse" => r.reverse = Some(true),
                "noreverse" | "no_reverse" => r.reverse = Some(false),
                _ => {
                    self.d
                        .error(
                            &a.loc,
                            format!("{kind} {}: unknown option '{}'", r.name, a.text),
                        )
                        .hint("options are: weight <n>, reverse, noreverse");
                }
            }
        }
        r
    }

    /// Looks each reference up in its definitions; the line's weight and
    /// direction win over the definition's.
    pub(super) fn resolve_refs(
        &mut self,
        refs: &[PendingRef],
        kind: TrackKind,
        owner: &str,
    ) -> Vec<TrackRef> {
        let mut out = Vec::new();
        for r in refs {
            let defined = self.track_definitions(kind);
            let found = defined.iter().find(|(name, _, _)| *name == r.name);
            let Some(&(_, w, rev)) = found else {
                let known: Vec<String> = defined
                    .iter()
                    .map(|(name, _, _)| name.to_string())
                    .collect();
                self.ref_not_found(r, kind, owner, &known);
                continue;
            };
            out.push(TrackRef {
                name: r.name.clone(),
                weight: r.weight.unwrap_or(w),
                weight_reverse: r.reverse.unwrap_or(rev),
            });
        }
        out
    }

    fn ref_not_found(&mut self, r: &PendingRef, kind: TrackKind, owner: &str, known: &[String]) {
        let (keyword, defn) = (kind.keyword(), kind.definition());
        let hint = if known.is_empty() {
            format!("define it with {defn} {} {{ ... }}", r.name)
        } else {
            format!("defined {defn}s: {}", known.join(", "))
        };
        self.d
            .error(&r.loc, format!("({owner}) {keyword} {} not found", r.name))
            .hint(hint);
    }

    /// (name, weight, reverse) of every definition of `kind`, in file order.
    fn track_definitions(&self, kind: TrackKind) -> Vec<(&str, i32, bool)> {
        let c = &self.cfg;
        match kind {
            TrackKind::Script => c
                .vrrp_script
                .iter()
                .map(|s| (s.name.as_str(), s.weight, s.weight_reverse))
                .collect(),
            TrackKind::File => c
                .vrrp_track_file
                .iter()
                .map(|f| (f.name.as_str(), f.weight, f.weight_reverse))
                .collect(),
            TrackKind::Process => c
                .vrrp_track_process
                .iter()
                .map(|p| (p.name.as_str(), p.weight, p.weight_reverse))
                .collect(),
            // Only those whose events reach VRRP (keepalived drops the others
            // from its VRRP process).
            TrackKind::Bfd => c
                .bfd_instance
                .iter()
                .filter(|b| b.vrrp)
                .map(|b| (b.name.as_str(), b.weight, b.weight_reverse))
                .collect(),
        }
    }
}
