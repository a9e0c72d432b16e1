//! Script command lines and the user they run as, as keepalived reads them.
//!
//! keepalived splits a `script`/`notify*` string into argv itself (quotes and
//! backslash escapes, `alloc_strvec_quoted_escaped()` in parser.c) and execs
//! it directly; only a script that cannot be exec'd (no `#!`, or a bare
//! `</path` redirection) goes through `/bin/sh -c` (see [`super::security`]).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;

use nix::unistd::{Gid, Group, Uid, User};
use thiserror::Error;

/// The account keepalived runs scripts as when none is configured.
pub const DEFAULT_SCRIPT_USER: &str = "keepalived_script";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("script string '{0}' is empty")]
    Empty(String),
    #[error("string '{0}': missing terminating {1}")]
    UnmatchedQuote(String, char),
    #[error("missing escape char at end: '{0}'")]
    TrailingBackslash(String),
    #[error("script user '{0}' does not exist")]
    NoSuchUser(String),
    #[error("script group '{0}' does not exist")]
    NoSuchGroup(String),
    #[error("unable to resolve script user or group '{0}': {1}")]
    Lookup(String, String),
    #[error("unable to set default user {DEFAULT_SCRIPT_USER} for script")]
    NoDefaultUser,
}

/// `user [:][group]` as written in the config (`user`, `script_user`, or the
/// trailing words of a `notify*` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    /// A leading `:` asks for the user's supplementary groups as well.
    pub group: Option<String>,
}

/// Credentials a script runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups to set; empty clears them (keepalived's default).
    pub groups: Vec<u32>,
}

impl RunAs {
    /// The daemon's own effective credentials.
    pub fn current() -> Self {
        Self {
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
            groups: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Resolves `user [:][group]` like keepalived's `set_uid_gid()`: the group
    /// defaults to the user's primary group; supplementary groups are set when
    /// `set_supplementary_groups` (global) or the group starts with `:`.
    pub fn resolve(spec: &UserSpec, set_supplementary_groups: bool) -> Result<Self, CommandError> {
        let user = User::from_name(&spec.user)
            .map_err(|e| CommandError::Lookup(spec.user.clone(), e.to_string()))?
            .ok_or_else(|| CommandError::NoSuchUser(spec.user.clone()))?;
        let mut want_groups = set_supplementary_groups;
        let mut group_name = spec.group.as_deref();
        if let Some(g) = group_name
            && let Some(rest) = g.strip_prefix(':')
        {
            want_groups = true;
            group_name = (!rest.is_empty()).then_some(rest);
        }
        let gid = match group_name {
            Some(name) => {
                Group::from_name(name)
                    .map_err(|e| CommandError::Lookup(name.to_owned(), e.to_string()))?
                    .ok_or_else(|| CommandError::NoSuchGroup(name.to_owned()))?
                    .gid
            }
            None => user.gid,
        };
        let groups = if want_groups {
            supplementary_groups(&spec.user, user.gid)
        } else {
            Vec::new()
        };
        Ok(Self {
            uid: user.uid.as_raw(),
            gid: gid.as_raw(),
            groups,
        })
    }
}

fn supplementary_groups(user: &str, primary: Gid) -> Vec<u32> {
    let Ok(name) = CString::new(user) else {
        return Vec::new();
    };
    match nix::unistd::getgrouplist(&name, primary) {
        Ok(list) => list.into_iter().map(Gid::as_raw).collect(),
        Err(e) => {
            tracing::info!("get supplementary groups for {user} returned {e}");
            Vec::new()
        }
    }
}

/// The default user for scripts without their own `user`, resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultScriptUser {
    pub run_as: RunAs,
    /// Messages keepalived logs while resolving it.
    pub warnings: Vec<String>,
}

/// keepalived's `get_default_script_user()`: the global `script_user` if set;
/// otherwise `keepalived_script` if that account exists; otherwise the
/// daemon's own uid/gid (root) with a warning, unless `enable_script_security`
/// is on, in which case scripts without an explicit user are refused.
pub fn default_script_user(
    configured: Option<&UserSpec>,
    script_security: bool,
    set_supplementary_groups: bool,
) -> Result<DefaultScriptUser, CommandError> {
    if let Some(spec) = configured {
        return RunAs::resolve(spec, set_supplementary_groups).map(|run_as| DefaultScriptUser {
            run_as,
            warnings: Vec::new(),
        });
    }
    let spec = UserSpec {
        user: DEFAULT_SCRIPT_USER.to_owned(),
        group: None,
    };
    match RunAs::resolve(&spec, set_supplementary_groups) {
        Ok(run_as) => Ok(DefaultScriptUser {
            warnings: vec![format!(
                "Setting default script user to '{DEFAULT_SCRIPT_USER}', uid:gid {}:{}",
                run_as.uid, run_as.gid
            )],
            run_as,
        }),
        Err(_) if script_security => Err(CommandError::NoDefaultUser),
        Err(_) => Ok(DefaultScriptUser {
            run_as: RunAs::current(),
            warnings: vec![format!(
                "WARNING - default user '{DEFAULT_SCRIPT_USER}' for script execution does not exist - please create."
            )],
        }),
    }
}

/// A script as configured: its words and who runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCommand {
    pub argv: Vec<OsString>,
}

impl ScriptCommand {
    /// Splits the script string (already unquoted by the config reader) into
    /// words.
    pub fn parse(script: &str) -> Result<Self, CommandError> {
        let argv = split_script_words(script)?;
        if argv.is_empty() {
            return Err(CommandError::Empty(script.to_owned()));
        }
        Ok(Self { argv })
    }

    pub fn from_argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
        }
    }

    /// The line as keepalived shows it in logs: words joined by spaces.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

const WHITE_SPACE: &[u8] = b" \t\x0c\n\r\x0b";

/// keepalived's `alloc_strvec_quoted_escaped()`: words separated by white
/// space; `'…'` and `"…"` quote (and may join a word, as in a shell);
/// backslash escapes work everywhere, including inside quotes: `\a \b \E \f
/// \n \r \t \v`, `\xHH…`, `\cX` (control char), `\NNN` (octal, up to 3
/// digits), and `\<any>` for that char.
pub fn split_script_words(src: &str) -> Result<Vec<OsString>, CommandError> {
    let b = src.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        while i < b.len() && WHITE_SPACE.contains(&b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let mut word = Vec::new();
        while i < b.len() {
            let c = b[i];
            let special = match quote {
                Some(q) => c == q || c == b'\\',
                None => WHITE_SPACE.contains(&c) || c == b'\'' || c == b'"' || c == b'\\',
            };
            if !special {
                word.push(c);
                i += 1;
                continue;
            }
            if c == b'\\' {
                i += 1;
                if i >= b.len() {
                    return Err(CommandError::TrailingBackslash(src.to_owned()));
                }
                let (ch, used) = unescape(&b[i..]);
                word.push(ch);
                i += used;
                continue;
            }
            if quote.is_some() {
                // The closing quote.
                quote = None;
                i += 1;
                continue;
            }
            if c == b'\'' || c == b'"' {
                quote = Some(c);
                i += 1;
                continue;
            }
            // Unquoted white space ends the word.
            break;
        }
        if let Some(q) = quote {
            return Err(CommandError::UnmatchedQuote(src.to_owned(), char::from(q)));
        }
        words.push(OsString::from_vec(word));
    }
    if let Some(q) = quote {
        return Err(CommandError::UnmatchedQuote(src.to_owned(), char::from(q)));
    }
    Ok(words)
}

/// Decodes one escape; `s` starts just after the backslash and is non-empty.
/// Returns the byte and how many input bytes it used.
fn unescape(s: &[u8]) -> (u8, usize) {
    let c = s[0];
    if c == b'x' && s.get(1).is_some_and(u8::is_ascii_hexdigit) {
        let mut v: u8 = 0;
        let mut n = 1;
        while let Some(d) = s.get(n).filter(|d| d.is_ascii_hexdigit()) {
            // keepalived accumulates into a char, so extra digits wrap.
            let digit = char::from(*d).to_digit(16).unwrap_or(0) as u8;
            v = v.wrapping_shl(4) | digit;
            n += 1;
        }
        return (v, n);
    }
    if c == b'c' && s.len() > 1 {
        return (s[1] & 0x1f, 2);
    }
    if (b'0'..=b'7').contains(&c) {
        let mut v: u8 = c - b'0';
        let mut n = 1;
        while n < 3 && s.get(n).is_some_and(|d| (b'0'..=b'7').contains(d)) {
            v = v.wrapping_shl(3).wrapping_add(s[n] - b'0');
            n += 1;
        }
        return (v, n);
    }
    let v = match c {
        b'a' => 0x07,
        b'b' => 0x08,
        b'E' => 0x1b,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        other => other,
    };
    (v, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_script_words(s)
            .expect("valid")
            .into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn splits_on_white_space() {
        assert_eq!(
            words("/usr/bin/killall -0   haproxy"),
            ["/usr/bin/killall", "-0", "haproxy"]
        );
        assert_eq!(words("  a\tb\n"), ["a", "b"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn quotes_group_and_join() {
        assert_eq!(
            words(r#"/bin/echo "a b" 'c d'"#),
            ["/bin/echo", "a b", "c d"]
        );
        assert_eq!(words(r#"x"y z"w"#), ["xy zw"]);
        assert_eq!(words(r#"'it"s'"#), [r#"it"s"#]);
        assert_eq!(words(r#""""#), [""]);
    }

    #[test]
    fn escapes() {
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words(r"\x41\102\cA\t"), ["AB\u{1}\t"]);
        assert_eq!(words(r#""a\"b""#), [r#"a"b"#]);
        assert_eq!(words(r"\q"), ["q"]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            split_script_words("'abc"),
            Err(CommandError::UnmatchedQuote(_, '\''))
        ));
        assert!(matches!(
            split_script_words("abc\\"),
            Err(CommandError::TrailingBackslash(_))
        ));
        assert!(matches!(
            ScriptCommand::parse("  "),
            Err(CommandError::Empty(_))
        ));
    }

    #[test]
    fn resolves_root_and_missing_user() {
        let root = RunAs::resolve(
            &UserSpec {
                user: "root".into(),
                group: None,
            },
            false,
        )
        .expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.is_empty());
        let err = RunAs::resolve(
            &UserSpec {
                user: "no-such-user-xvrrpd".into(),
                group: None,
            },
            false,
        );
        assert!(matches!(err, Err(CommandError::NoSuchUser(_))));
        let with_groups = RunAs::resolve(
            &UserSpec {
                user: "root".into(),
                group: Some(":".into()),
            },
            false,
        )
        .expect("root exists");
        assert!(with_groups.groups.contains(&0));
    }
}
