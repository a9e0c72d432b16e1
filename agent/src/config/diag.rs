//! Diagnostics: where a problem is, how bad it is, and what to do about it.

use std::{fmt, sync::Arc};

use serde::{Serialize, Serializer};

/// A position in a configuration file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    /// The file, relative to the main file's directory (the main file by its name).
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Serialize for Loc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How a diagnostic affects the verdict of `xvrrpd check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: the file runs exactly as written (e.g. LVS blocks ignored).
    Note,
    /// The file runs, but not the way it reads, or something looks wrong.
    Warning,
    /// The file does not run as written (keepalived would drop or replace the value).
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding about the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// None for problems of the file set as a whole (e.g. the main file is missing).
    pub location: Option<Loc>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(severity: Severity, location: Option<Loc>, message: impl Into<String>) -> Self {
        Self {
            severity,
            location,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: severity: message (hint: ...)`, as compilers print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        write!(f, "{}: {}", self.severity, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// The configuration could not be loaded: at least one diagnostic is an error.
///
/// `diagnostics` holds every finding (errors, warnings and notes) in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in the configuration; first: {}", self.error_count(), self.first_error())]
pub struct ConfigErrors {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigErrors {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    fn error_count(&self) -> usize {
        self.errors().count()
    }

    fn first_error(&self) -> String {
        self.errors()
            .next()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// Collects diagnostics while the configuration is read.
#[derive(Default, Debug)]
pub(crate) struct Diags {
    pub(crate) list: Vec<Diagnostic>,
}

impl Diags {
    pub(crate) fn error(&mut self, loc: &Loc, msg: impl Into<String>) -> &mut Diagnostic {
        self.add(Severity::Error, Some(loc.clone()), msg)
    }

    pub(crate) fn warn(&mut self, loc: &Loc, msg: impl Into<String>) -> &mut Diagnostic {
        self.add(Severity::Warning, Some(loc.clone()), msg)
    }

    pub(crate) fn note(&mut self, loc: &Loc, msg: impl Into<String>) -> &mut Diagnostic {
        self.add(Severity::Note, Some(loc.clone()), msg)
    }

    pub(crate) fn add(
        &mut self,
        severity: Severity,
        loc: Option<Loc>,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        self.list.push(Diagnostic::new(severity, loc, msg));
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    #[cfg(test)]
    pub(crate) fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }
}

impl Diagnostic {
    /// Adds a hint in place (for use on `Diags::error(..)` results).
    pub(crate) fn hint(&mut self, hint: impl Into<String>) {
        self.hint = Some(hint.into());
    }
}
