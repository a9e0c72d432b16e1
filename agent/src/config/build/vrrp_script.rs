//! `vrrp_script NAME { ... }`: a command whose exit status is tracked.

use std::time::Duration;

use super::{
    super::{
        diag::Loc,
        lexer::Token,
        model::{Script, VrrpScript},
        tree::Node,
    },
    Builder,
    keywords::{MAX_WHOLE_SECS, Table, leaf},
};

pub(super) struct ScriptDraft {
    s: VrrpScript,
    /// "vrrp_script NAME", as its command is checked under.
    owner: String,
    have_script: bool,
    /// `user USER [GROUP]`: applies to the script wherever the line is.
    user: Option<(String, Option<String>)>,
}

impl Builder<'_> {
    pub(super) fn vrrp_script(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        if self.cfg.script(&name.text).is_some() {
            self.defined_twice(n, &name);
            return;
        }
        let mut draft = ScriptDraft {
            s: VrrpScript {
                name: name.text.clone(),
                script: Script {
                    command: String::new(),
                    argv: Vec::new(),
                    user: None,
                    group: None,
                },
                interval: Duration::from_secs(1),
                timeout: None,
                weight: 0,
                weight_reverse: false,
                rise: 1,
                fall: 1,
                init_fail: false,
            },
            owner: format!("vrrp_script {}", name.text),
            have_script: false,
            user: None,
        };
        self.read_block(&VRRP_SCRIPT, &mut draft, n.children());
        self.finish_vrrp_script(&n.key.loc, draft);
    }

    fn finish_vrrp_script(&mut self, at: &Loc, draft: ScriptDraft) {
        let ScriptDraft {
            mut s,
            owner,
            have_script,
            user,
        } = draft;
        if let Some((u, g)) = user {
            s.script.user = Some(u.clone());
            s.script.group = g.clone();
            if let Some(last) = self.scripts.iter_mut().rev().find(|p| p.owner == owner) {
                last.script.user = Some(u);
                last.script.group = g;
            }
        }
        if !have_script {
            self.d
                .error(at, format!("no script set for vrrp_script {}", s.name))
                .hint("add: script \"/path/to/check args\"");
            return;
        }
        self.cfg.vrrp_script.push(s);
    }

    /// `interval`/`timeout N`: whole seconds, 0 taken as 1 with a warning.
    fn script_secs(&mut self, n: &Node, name: &str) -> Option<Duration> {
        let v = self.uint(n, 0, MAX_WHOLE_SECS)?;
        if v == 0 {
            let msg = format!(
                "({name}): vrrp script {} must be greater than 0, setting to 1",
                n.name()
            );
            self.d.warn(&n.key.loc, msg);
        }
        Some(Duration::from_secs(v.max(1)))
    }

    fn script_user_line(&mut self, n: &Node, name: &str) -> Option<(String, Option<String>)> {
        let u: Token = self.arg(n, 0, "user name")?.clone();
        self.extra(n, 2);
        if !self.host.user_exists(&u.text) {
            self.d
                .error(
                    &u.loc,
                    format!("unknown user '{}' for vrrp_script {name}", u.text),
                )
                .hint("create the user or name an existing one");
        }
        Some((u.text, n.args.get(1).map(|g| g.text.clone())))
    }
}

/// `weight W [reverse]`; a later line without `reverse` keeps an earlier one.
fn weight(b: &mut Builder<'_>, d: &mut ScriptDraft, n: &Node) {
    let name = &d.s.name;
    if let Some(w) = b.weight(n, &format!("vrrp_script {name} weight"), 253) {
        d.s.weight = w;
    }
    if let Some(o) = n.args.get(1) {
        if o.text == "reverse" {
            d.s.weight_reverse = true;
        } else {
            b.d.error(
                &o.loc,
                format!("vrrp_script {name} unknown weight option {}", o.text),
            )
            .hint("the only option is 'reverse'");
        }
    }
    b.extra(n, 2);
}

static VRRP_SCRIPT: Table<ScriptDraft> = Table {
    context: "vrrp_script",
    unknown_leaf: true,
    keywords: &[
        leaf(&["script"], |b, d, n| {
            if let Some(sc) = b.script(n, &d.owner, true) {
                d.s.script = sc;
                d.have_script = true;
            }
        }),
        leaf(&["interval"], |b, d, n| {
            if let Some(v) = b.script_secs(n, &d.s.name) {
                d.s.interval = v;
            }
        }),
        leaf(&["timeout"], |b, d, n| {
            if let Some(v) = b.script_secs(n, &d.s.name) {
                d.s.timeout = Some(v);
            }
        }),
        leaf(&["weight"], weight),
        leaf(&["rise"], |b, d, n| {
            b.set_uint(n, 1, i32::MAX as u64, &mut d.s.rise)
        }),
        leaf(&["fall"], |b, d, n| {
            b.set_uint(n, 1, i32::MAX as u64, &mut d.s.fall)
        }),
        leaf(&["user"], |b, d, n| {
            if let Some(u) = b.script_user_line(n, &d.s.name) {
                d.user = Some(u);
            }
        }),
        leaf(&["init_fail"], |b, d, n| b.set_on(n, &mut d.s.init_fail)),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    VRRP_SCRIPT.names().collect()
}
