//! `vrrp_track_process NAME { ... }`: a process whose presence is tracked.

use super::{
    super::{model::TrackProcess, tree::Node},
    Builder,
    keywords::{Table, leaf},
};

impl Builder<'_> {
    pub(super) fn track_process(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        let mut p = TrackProcess {
            name: name.text,
            process: String::new(),
            params: Vec::new(),
            param_match: None,
            weight: 1,
            weight_reverse: false,
            quorum: 1,
            quorum_max: u32::from(u16::MAX),
            fork_delay: None,
            terminate_delay: None,
            full_command: false,
        };
        self.read_block(&TRACK_PROCESS, &mut p, n.children());
        if p.process.is_empty() {
            self.d
                .error(
                    &n.key.loc,
                    format!("track process '{}' process name not specified", p.name),
                )
                .hint("add: process NAME");
            return;
        }
        self.cfg.vrrp_track_process.push(p);
    }
}

/// `process NAME [PARAM...]`: parameters mean the full command line is matched.
fn process(b: &mut Builder<'_>, p: &mut TrackProcess, n: &Node) {
    let Some(t) = b.arg(n, 0, "process name") else {
        return;
    };
    p.process = t.text.clone();
    p.params = n.args[1..].iter().map(|t| t.text.clone()).collect();
    if !p.params.is_empty() {
        p.full_command = true;
        p.param_match.get_or_insert_with(|| "exact".to_string());
    }
}

fn param_match(b: &mut Builder<'_>, p: &mut TrackProcess, n: &Node) {
    b.extra(n, 1);
    match n.args.first() {
        None => p.param_match = Some("exact".into()),
        Some(m) if matches!(m.text.as_str(), "initial" | "partial") => {
            p.param_match = Some(m.text.clone());
        }
        Some(other) => {
            b.d.error(
                &other.loc,
                format!("invalid param_match type {}", other.text),
            )
            .hint("use initial or partial");
        }
    }
    p.full_command = true;
}

/// `fork_delay`, `terminate_delay`, or `delay` for both.
fn delay(b: &mut Builder<'_>, p: &mut TrackProcess, n: &Node) {
    if let Some(v) = b.secs(n, 0.000001, 3600.0) {
        if n.name() != "terminate_delay" {
            p.fork_delay = Some(v);
        }
        if n.name() != "fork_delay" {
            p.terminate_delay = Some(v);
        }
    }
}

static TRACK_PROCESS: Table<TrackProcess> = Table {
    context: "vrrp_track_process",
    unknown_leaf: true,
    keywords: &[
        leaf(&["process"], process),
        leaf(&["param_match"], param_match),
        leaf(&["weight"], |b, p, n| {
            let fields = (&mut p.weight, &mut p.weight_reverse);
            b.set_weight_reverse(n, "vrrp_track_process weight", 254, fields)
        }),
        leaf(&["quorum"], |b, p, n| {
            b.set_uint(n, 1, 65535, &mut p.quorum)
        }),
        leaf(&["quorum_max"], |b, p, n| {
            if let Some(v) = b.uint(n, 0, 65535) {
                p.quorum_max = v as u32;
                if v == 0 {
                    p.quorum = 0;
                }
            }
        }),
        leaf(&["fork_delay", "terminate_delay", "delay"], delay),
        leaf(&["full_command"], |b, p, n| {
            b.set_on(n, &mut p.full_command)
        }),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    TRACK_PROCESS.names().collect()
}
