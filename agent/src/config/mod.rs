//! keepalived.conf, read as keepalived reads it: parser, typed model, and
//! `xvrrpd check`.
//!
//! * [`lexer`](self) — comments (`!` and `#` anywhere outside double quotes),
//!   quoted strings, `include`/`includet` with globs relative to the including
//!   file, `$NAME=value` definitions and `@ID` lines; every brace stands alone.
//! * `expand` — keepalived's line generation: definitions (multi-line ones
//!   expand into lines), `~SEQ`/`~SEQx`/`~LST` and the built-ins
//!   (`${_INSTANCE}`, `${_PWD}`, `${_RANDOM}`, `${_HASH}`, `${_BANG}`), each
//!   bounded so a runaway expansion is an error, not a hang.
//! * `tree` — keywords and their blocks, whether `{` is on the keyword's line
//!   or the next; an unclosed block or a stray `}` is an error with its place.
//! * `build` — the typed [`Config`], defaulted and validated as keepalived
//!   does (VRID 1..255, priority 1..255, advert_int rounding for VRRPv2,
//!   one family per instance, duplicate VRIDs, tracking references, script
//!   security, interfaces that do not exist).
//!
//! Every finding is a [`Diagnostic`] printed as
//! `keepalived.conf:12:5: error: virtual_router_id 300 is out of range 1..255 (hint: ...)`.
//! Errors mean the file does not run as written (keepalived would drop or
//! replace the value); warnings mean it runs but something is off (keepalived
//! `-t` reports these too); notes are information only (LVS blocks and mail
//! settings, which xvrrpd ignores by design).
//!
//! # `xvrrpd check` exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 ([`EXIT_CLEAN`]) | the file runs cleanly (notes may be printed) |
//! | 1 ([`EXIT_WARNINGS`]) | warnings only: the file runs, but read them |
//! | 2 ([`EXIT_ERRORS`]) | errors: the file cannot be read, or does not run as written |
//!
//! keepalived's own `-t` exits 0 when clean and non-zero (4–7) on any
//! report, warnings included; the agreement test compares on that basis.

mod build;
mod diag;
mod expand;
mod host;
mod lexer;
pub mod model;
mod tree;

use std::{io::Write, path::Path, process::ExitCode};

use serde::Serialize;

pub use build::keyword_catalog;
pub(crate) use build::{Iproute2Name, iproute2_number};
pub use diag::{ConfigErrors, Diagnostic, Loc, Severity};
pub use host::{FixedHost, Host, ScriptStatus, SystemHost};
pub use model::*;

/// Exit code of `xvrrpd check`: the file runs cleanly.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code of `xvrrpd check`: warnings only.
pub const EXIT_WARNINGS: u8 = 1;
/// Exit code of `xvrrpd check`: errors.
pub const EXIT_ERRORS: u8 = 2;

/// Why a keyword is not acted on.
#[derive(Serialize, PartialEq, Eq, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
pub enum UnsupportedKind {
    /// Out of xvrrpd's scope by design (LVS, mail): reported as a note.
    Ignored,
    /// VRRP behaviour xvrrpd does not implement yet: reported as a warning.
    NotSupported,
}

/// A keyword that was parsed but is not acted on.
#[derive(Serialize, PartialEq, Eq, Clone, Debug)]
pub struct Unsupported {
    pub keyword: String,
    pub location: Loc,
    pub kind: UnsupportedKind,
    pub reason: String,
}

/// A configuration that loaded without errors.
#[derive(Serialize, PartialEq, Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// Warnings and notes, in file order.
    pub warnings: Vec<Diagnostic>,
    pub unsupported: Vec<Unsupported>,
}

/// Everything the checker found, errors included.
#[derive(PartialEq, Clone, Debug)]
pub struct Report {
    /// The model as far as it could be built (values in error are defaulted).
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
    pub unsupported: Vec<Unsupported>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    pub fn count(&self, s: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == s).count()
    }

    /// The exit code of `xvrrpd check` for this report.
    pub fn exit_code(&self) -> u8 {
        if self.has_errors() {
            EXIT_ERRORS
        } else if self.count(Severity::Warning) > 0 {
            EXIT_WARNINGS
        } else {
            EXIT_CLEAN
        }
    }

    /// The normalized model as `--dump-json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Dump<'a> {
            #[serde(flatten)]
            config: &'a Config,
            unsupported: &'a [Unsupported],
            warnings: Vec<&'a Diagnostic>,
            notes: Vec<&'a Diagnostic>,
        }
        let by = |s| self.diagnostics.iter().filter(move |d| d.severity == s);
        let dump = Dump {
            config: &self.config,
            unsupported: &self.unsupported,
            warnings: by(Severity::Warning).collect(),
            notes: by(Severity::Note).collect(),
        };
        serde_json::to_value(dump).unwrap_or(serde_json::Value::Null)
    }
}

/// Reads, validates and reports on a configuration, against `host`.
pub fn analyze(path: &Path, host: &dyn Host) -> Report {
    let mut d = diag::Diags::default();
    let config_id = host.config_id();
    let lines = lexer::read(
        path,
        lexer::LexOptions {
            config_id: config_id.as_deref(),
            follow_includes: true,
        },
        &mut d,
    );
    finish(lines, d, host)
}

/// Checks configuration text with no file behind it (`include` is not
/// followed); `name` is used in locations. For tests and fuzzing.
pub fn analyze_source(text: &[u8], name: &str, host: &dyn Host) -> Report {
    let mut d = diag::Diags::default();
    let config_id = host.config_id();
    let lines = lexer::read_source(
        text,
        name,
        lexer::LexOptions {
            config_id: config_id.as_deref(),
            follow_includes: false,
        },
        &mut d,
    );
    finish(lines, d, host)
}

fn finish(lines: Vec<lexer::Line>, mut d: diag::Diags, host: &dyn Host) -> Report {
    let top = tree::build(&lines, &mut d);
    let (config, unsupported) = build::Builder::new(host, &mut d).run(&top);
    Report {
        config,
        diagnostics: d.list,
        unsupported,
    }
}

/// Loads a configuration against `host`: the model, or every diagnostic if
/// any of them is an error.
pub fn load_with(path: &Path, host: &dyn Host) -> Result<Loaded, ConfigErrors> {
    let r = analyze(path, host);
    if r.has_errors() {
        return Err(ConfigErrors {
            diagnostics: r.diagnostics,
        });
    }
    Ok(Loaded {
        config: r.config,
        warnings: r.diagnostics,
        unsupported: r.unsupported,
    })
}

/// Loads a configuration against this machine (interfaces, users, scripts).
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with(path, &SystemHost)
}

/// `xvrrpd check -f FILE [--dump-json]` (and keepalived's `-t -f FILE`).
///
/// Diagnostics go to stderr, the JSON model (when asked for and error-free)
/// to stdout. Exit codes: [`EXIT_CLEAN`], [`EXIT_WARNINGS`], [`EXIT_ERRORS`].
pub fn check_command(path: &Path, dump_json: bool) -> ExitCode {
    let r = analyze(path, &SystemHost);
    let mut err = std::io::stderr().lock();
    for d in &r.diagnostics {
        let _ = writeln!(err, "{d}");
    }
    let (e, w, n) = (
        r.count(Severity::Error),
        r.count(Severity::Warning),
        r.count(Severity::Note),
    );
    let _ = if e + w == 0 {
        writeln!(err, "{}: configuration OK ({n} note(s))", path.display())
    } else {
        writeln!(
            err,
            "{}: {e} error(s), {w} warning(s), {n} note(s)",
            path.display()
        )
    };
    if dump_json && !r.has_errors() {
        let text = serde_json::to_string_pretty(&r.to_json()).unwrap_or_default();
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    ExitCode::from(r.exit_code())
}
