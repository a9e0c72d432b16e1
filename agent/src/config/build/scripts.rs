//! Commands keepalived runs (notify scripts, `vrrp_script`'s script), the
//! notify FIFOs, and the check of every command against the machine.

use super::{
    super::{diag::Loc, host::ScriptStatus, lexer::Token, model::*, tree::Node},
    Builder,
};

/// A command to check against the machine once the whole file is read.
pub(super) struct PendingScript {
    pub(super) loc: Loc,
    /// "vrrp_instance NAME", "vrrp_script NAME", ...: named in diagnostics.
    pub(super) owner: String,
    pub(super) script: Script,
    pub(super) is_vrrp_script: bool,
}

impl Builder<'_> {
    pub(super) fn script(&mut self, n: &Node, owner: &str, is_vrrp_script: bool) -> Option<Script> {
        let t = self.arg(n, 0, "command")?.clone();
        let (command, argv, user, group) = if is_vrrp_script {
            let (command, argv) = whole_line_command(&n.args);
            (command, argv, None, None)
        } else {
            self.extra(n, 3);
            (
                t.text.clone(),
                split_command(&t.text),
                n.args.get(1).cloned(),
                n.args.get(2).cloned(),
            )
        };
        if argv.is_empty() {
            self.d
                .error(&t.loc, format!("{} has an empty command", n.name()))
                .hint("give the path of the program to run");
            return None;
        }
        let host = self.host;
        for (t, what, exists) in [
            (
                &user,
                "user",
                user.as_ref().is_none_or(|u| host.user_exists(&u.text)),
            ),
            (
                &group,
                "group",
                group.as_ref().is_none_or(|g| host.group_exists(&g.text)),
            ),
        ] {
            if let Some(t) = t
                && !exists
            {
                self.d
                    .error(
                        &t.loc,
                        format!("unknown {what} '{}' for {}", t.text, n.name()),
                    )
                    .hint(format!("create the {what} or name an existing one"));
            }
        }
        let script = Script {
            command,
            argv,
            user: user.map(|u| u.text),
            group: group.map(|g| g.text),
        };
        self.scripts.push(PendingScript {
            loc: t.loc,
            owner: owner.to_string(),
            script: script.clone(),
            is_vrrp_script,
        });
        Some(script)
    }

    pub(super) fn fifo(&mut self, n: &Node) -> Option<Fifo> {
        let path = self.arg(n, 0, "FIFO path")?.text.clone();
        self.extra(n, 3);
        Some(Fifo {
            path,
            user: n.args.get(1).map(|t| t.text.clone()),
            group: n.args.get(2).map(|t| t.text.clone()),
        })
    }

    /// Checks every command read against the machine and script security,
    /// in file order; a `vrrp_script` that cannot run is dropped.
    pub(super) fn check_scripts(&mut self) {
        let g = self.cfg.global_defs.clone();
        let default_user_ok = g.script_user.is_some() || self.host.user_exists("keepalived_script");
        let mut runnable_first: Option<Loc> = None;
        let scripts = std::mem::take(&mut self.scripts);
        for p in &scripts {
            let (loc, owner) = (&p.loc, &p.owner);
            let Some(program) = p.script.argv.first() else {
                continue;
            };
            if g.enable_script_security && p.script.user.is_none() && !default_user_ok {
                self.d
                    .error(loc, format!("unable to set default user keepalived_script for script of {owner}"))
                    .hint("add `script_user root` (or another user) to global_defs, or create the user keepalived_script");
                self.drop_vrrp_script(p);
                continue;
            }
            match self.host.script_status(program) {
                ScriptStatus::Ok => {
                    runnable_first.get_or_insert_with(|| loc.clone());
                }
                ScriptStatus::Insecure => {
                    if g.enable_script_security {
                        self.d
                            .warn(loc, format!("unsafe permissions found for script '{program}' of {owner} - disabling"))
                            .hint("make the script and every directory above it writable by root only");
                        self.drop_vrrp_script(p);
                    } else {
                        runnable_first.get_or_insert_with(|| loc.clone());
                    }
                }
                ScriptStatus::NotFound | ScriptStatus::NotExecutable => {
                    if p.is_vrrp_script {
                        self.d
                            .warn(loc, format!("disabling {owner}: script '{program}' not found or not executable"))
                            .hint("install the program or fix the path; the instances tracking it would never see it succeed");
                    } else {
                        self.d
                            .note(
                                loc,
                                format!(
                                    "{owner}: notify script '{program}' not found or not executable"
                                ),
                            )
                            .hint(
                                "keepalived -t does not report this, but the script will not run",
                            );
                    }
                }
            }
        }
        if let Some(loc) = runnable_first
            && !g.enable_script_security
        {
            self.d
                .warn(&loc, "SECURITY VIOLATION - scripts are being executed but script_security not enabled")
                .hint("add enable_script_security (and script_user root, or create user keepalived_script) to global_defs");
        }
    }

    fn drop_vrrp_script(&mut self, p: &PendingScript) {
        if p.is_vrrp_script
            && let Some(name) = p.owner.strip_prefix("vrrp_script ")
        {
            self.cfg.vrrp_script.retain(|s| s.name != name);
        }
    }
}

/// `script` takes the rest of the line as the command and its arguments;
/// one word is split as a command line.
fn whole_line_command(words: &[Token]) -> (String, Vec<String>) {
    let command = words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let argv = match words {
        [one] => split_command(&one.text),
        _ => words.iter().map(|w| w.text.clone()).collect(),
    };
    (command, argv)
}

/// Splits a command line into words as keepalived does for scripts: blanks
/// separate, '…' and "…" group, backslash escapes the next character.
fn split_command(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ' | '\t') => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}
