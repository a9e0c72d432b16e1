//! keepalived's `check_script_secure()`: find the script, check the user can
//! execute it and, when it runs with root privileges, that no non-root user
//! can modify the file or any directory on its path.
//!
//! Without `enable_script_security` an unsafe script still runs (keepalived
//! logs "Unsafe permissions found for script …" and the summary warning from
//! [`security_summary`]); with it, the script is refused.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use super::command::{RunAs, ScriptCommand};

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IWGRP: u32 = 0o020;
const S_IWOTH: u32 = 0o002;
const S_IXUSR: u32 = 0o100;
const S_IXGRP: u32 = 0o010;
const S_IXOTH: u32 = 0o001;

/// Why a script will not be run.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScriptRejected {
    #[error("Cannot find script {0} in path - disabling")]
    NotInPath(String),
    #[error("Permissions failure for script {0} in path - disabling")]
    PathPermission(String),
    #[error("Script {0} cannot be accessed - {1}")]
    NotAccessible(String, String),
    #[error("WARNING - script '{script}' is not executable for uid:gid {uid}:{gid} - disabling.")]
    NotExecutable { script: String, uid: u32, gid: u32 },
    #[error("Wrong file type found in script path '{0}'.")]
    WrongFileType(String),
    #[error("Unsafe permissions found for script '{0}' - disabling.")]
    Insecure(String),
}

/// How the script is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecMode {
    /// execve(program, argv): the file has a `#!` line or is a binary.
    Direct,
    /// `/bin/sh -c` with keepalived's quoting of the words (`cmd_str()`):
    /// files without `#!`, and `</path…` redirection checks.
    Shell,
}

/// A script that passed the checks, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedScript {
    /// What is exec'd (the resolved file); `argv[0]` stays as configured.
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    pub mode: ExecMode,
    pub run_as: RunAs,
    /// keepalived's SC_ISSCRIPT: a real file was found (feeds the summary).
    pub is_script: bool,
    /// Unsafe permissions were found but `enable_script_security` is off.
    pub insecure: bool,
    /// Messages to log about this script (path search, missing `#!`, unsafe).
    pub warnings: Vec<String>,
}

impl CheckedScript {
    /// A script run exactly as given, with no checks: for tests and for
    /// callers that did their own.
    pub fn unchecked(argv: Vec<OsString>, run_as: RunAs) -> Self {
        Self {
            program: PathBuf::from(argv.first().cloned().unwrap_or_default()),
            argv,
            mode: ExecMode::Direct,
            run_as,
            is_script: true,
            insecure: false,
            warnings: Vec::new(),
        }
    }

    /// The `/bin/sh -c` command string keepalived builds: every word in
    /// single quotes (embedded `'` as `'\''`), except a first word starting
    /// with `<` or `>` (a redirection-only file test).
    pub fn shell_string(&self, extra: &[OsString]) -> OsString {
        let mut out = Vec::new();
        for (i, w) in self.argv.iter().chain(extra.iter()).enumerate() {
            let w = w.as_bytes();
            if i > 0 {
                out.push(b' ');
            }
            if i == 0 && matches!(w.first(), Some(b'<' | b'>')) {
                out.extend_from_slice(w);
                continue;
            }
            out.push(b'\'');
            for &c in w {
                if c == b'\'' {
                    out.extend_from_slice(b"'\\''");
                } else {
                    out.push(c);
                }
            }
            out.push(b'\'');
        }
        OsString::from_vec(out)
    }
}

/// keepalived's `is_executable()`: note it looks only at the primary group.
pub fn is_executable(mode: u32, file_uid: u32, file_gid: u32, uid: u32, gid: u32) -> bool {
    (uid == 0 && mode & (S_IXUSR | S_IXGRP | S_IXOTH) != 0)
        || (uid == file_uid && mode & S_IXUSR != 0)
        || (uid != file_uid
            && ((gid == file_gid && mode & S_IXGRP != 0)
                || (gid != file_gid && mode & S_IXOTH != 0)))
}

/// Kind of a path component, from lstat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// keepalived's per-component rule: the owner must be root, and a file or a
/// directory without the sticky bit must be writable neither by a non-root
/// group nor by others.
pub fn component_is_unsafe(kind: NodeKind, uid: u32, gid: u32, mode: u32) -> bool {
    let checked_kind = (kind == NodeKind::Dir && mode & S_ISVTX == 0) || kind == NodeKind::File;
    uid != 0 || (checked_kind && ((gid != 0 && mode & S_IWGRP != 0) || mode & S_IWOTH != 0))
}

/// Result of walking one path.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    Safe,
    Unsafe,
}

/// Checks `/`, every directory and the file itself of absolute `path`,
/// without following the last component (like keepalived's fstatat with
/// AT_SYMLINK_NOFOLLOW). Symlinked directories along a configured path are
/// accepted here because the resolved path is walked as well.
fn walk_path(path: &Path) -> Result<Walk, ScriptRejected> {
    let display = path.display().to_string();
    let mut prefix = PathBuf::new();
    let comps: Vec<Component<'_>> = path.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        prefix.push(comp.as_os_str());
        let last = i + 1 == comps.len();
        let md = std::fs::symlink_metadata(&prefix)
            .map_err(|e| ScriptRejected::NotAccessible(display.clone(), e.to_string()))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else {
            NodeKind::Other
        };
        let type_ok = if last {
            matches!(kind, NodeKind::File | NodeKind::Symlink)
        } else {
            matches!(kind, NodeKind::Dir | NodeKind::Symlink)
        };
        if !type_ok {
            return Err(ScriptRejected::WrongFileType(display));
        }
        if component_is_unsafe(kind, md.uid(), md.gid(), md.mode()) {
            return Ok(Walk::Unsafe);
        }
    }
    Ok(Walk::Safe)
}

/// Removes `.`, `..` and repeated `/` lexically (keepalived's `clean_path()`),
/// keeping symlinks as written.
fn clean_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The `PATH` keepalived searches (its environment, else `_CS_PATH`).
fn search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"))
}

/// glibc-style PATH search for a bare script name, as keepalived's
/// `find_path()`: the first regular file executable by the script's user.
fn find_in_path(name: &std::ffi::OsStr, run_as: &RunAs) -> Result<PathBuf, ScriptRejected> {
    let display = name.to_string_lossy().into_owned();
    let mut denied = false;
    for dir in std::env::split_paths(&search_path()) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        let Ok(md) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !md.file_type().is_file()
            || !is_executable(md.mode(), md.uid(), md.gid(), run_as.uid, run_as.gid)
        {
            denied = true;
            continue;
        }
        return Ok(candidate);
    }
    Err(if denied {
        ScriptRejected::PathPermission(display)
    } else {
        ScriptRejected::NotInPath(display)
    })
}

/// True when `</path` (spaces allowed after `<`): a redirection-only check
/// that keepalived hands to the shell without any file checks.
fn is_redirection_check(word: &[u8]) -> bool {
    word.first() == Some(&b'<')
        && word[1..]
            .iter()
            .find(|c| **c != b' ' && **c != b'\t')
            .is_some_and(|c| *c == b'/')
}

/// Whether the file can be exec'd directly: libmagic-built keepalived runs
/// anything that is not " executable" (no `#!`, not ELF) through the shell.
fn has_exec_magic(path: &Path) -> bool {
    let mut head = [0u8; 4];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    head[..n].starts_with(b"#!") || head[..n].starts_with(b"\x7fELF")
}

/// Checks the directories the script's user must traverse: keepalived
/// resolves the path with the user's euid, so a directory the user cannot
/// search makes the script inaccessible.
fn user_can_reach(real: &Path, run_as: &RunAs) -> bool {
    if run_as.uid == 0 {
        return true;
    }
    let mut prefix = PathBuf::new();
    let comps: Vec<Component<'_>> = real.components().collect();
    for comp in comps.iter().take(comps.len().saturating_sub(1)) {
        prefix.push(comp.as_os_str());
        let Ok(md) = std::fs::metadata(&prefix) else {
            return false;
        };
        let m = md.permissions().mode();
        let ok = if run_as.uid == md.uid() {
            m & S_IXUSR != 0
        } else if run_as.gid == md.gid() || run_as.groups.contains(&md.gid()) {
            m & S_IXGRP != 0
        } else {
            m & S_IXOTH != 0
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Checks one script (keepalived's `check_script_secure()`), for a vrrp_script
/// or a notify script alike. `script_security` is `enable_script_security`.
pub fn check_script(
    cmd: &ScriptCommand,
    run_as: &RunAs,
    script_security: bool,
) -> Result<CheckedScript, ScriptRejected> {
    let Some(first) = cmd.argv.first() else {
        return Err(ScriptRejected::NotInPath(String::new()));
    };
    let mut warnings = Vec::new();

    if is_redirection_check(first.as_bytes()) {
        return Ok(CheckedScript {
            program: PathBuf::from("/bin/sh"),
            argv: cmd.argv.clone(),
            mode: ExecMode::Shell,
            run_as: run_as.clone(),
            is_script: false,
            insecure: false,
            warnings,
        });
    }

    let name = first.to_string_lossy().into_owned();
    let configured: PathBuf = if first.as_bytes().contains(&b'/') {
        PathBuf::from(first)
    } else {
        let found = find_in_path(first, run_as)?;
        warnings.push(format!(
            "WARNING - script `{name}` resolved by path search to `{}`. Please specify full path.",
            found.display()
        ));
        found
    };
    let real = std::fs::canonicalize(&configured)
        .map_err(|e| ScriptRejected::NotAccessible(name.clone(), e.to_string()))?;
    if !user_can_reach(&real, run_as) {
        return Err(ScriptRejected::NotAccessible(
            name.clone(),
            "Permission denied".to_owned(),
        ));
    }
    let md = std::fs::metadata(&real)
        .map_err(|e| ScriptRejected::NotAccessible(name.clone(), e.to_string()))?;
    let mode = md.mode();
    if !md.file_type().is_file() || !is_executable(mode, md.uid(), md.gid(), run_as.uid, run_as.gid)
    {
        return Err(ScriptRejected::NotExecutable {
            script: name,
            uid: run_as.uid,
            gid: run_as.gid,
        });
    }
    let exec_mode = if has_exec_magic(&real) {
        ExecMode::Direct
    } else {
        warnings.push(format!("Please add a #! shebang to script {name}"));
        ExecMode::Shell
    };

    let needs_protection = run_as.uid == 0
        || run_as.gid == 0
        || (md.uid() == 0 && mode & S_IXUSR != 0 && mode & S_ISUID != 0)
        || (md.gid() == 0 && mode & S_IXGRP != 0 && mode & S_ISGID != 0);
    let mut insecure = false;
    if needs_protection {
        // Both the path as configured (its symlinks could be replaced) and the
        // file that actually runs.
        let as_written = clean_path(&configured);
        let unsafe_found =
            walk_path(&as_written)? == Walk::Unsafe || walk_path(&real)? == Walk::Unsafe;
        if unsafe_found {
            if script_security {
                return Err(ScriptRejected::Insecure(name));
            }
            warnings.push(format!("Unsafe permissions found for script '{name}'."));
            insecure = true;
        }
    }

    // keepalived keeps argv[0] as written and execs the resolved file.
    let mut argv = cmd.argv.clone();
    if !first.as_bytes().contains(&b'/') {
        argv[0] = configured.clone().into_os_string();
    }
    Ok(CheckedScript {
        program: real,
        argv,
        mode: exec_mode,
        run_as: run_as.clone(),
        is_script: true,
        insecure,
        warnings,
    })
}

/// Checks a notify script (`notify*`, `*_notify_fifo_script`): as
/// [`check_script`], except that a `</path` redirection check, which
/// keepalived accepts for a vrrp_script only, is refused.
pub fn check_notify_script(
    cmd: &ScriptCommand,
    run_as: &RunAs,
    script_security: bool,
) -> Result<CheckedScript, ScriptRejected> {
    let s = check_script(cmd, run_as, script_security)?;
    if !s.is_script {
        return Err(ScriptRejected::NotExecutable {
            script: cmd.display(),
            uid: run_as.uid,
            gid: run_as.gid,
        });
    }
    Ok(s)
}

/// The summary keepalived logs after checking every script: when scripts
/// are configured and `enable_script_security` is off.
pub fn security_summary<'a>(
    script_security: bool,
    scripts: impl IntoIterator<Item = &'a CheckedScript>,
) -> Option<String> {
    if script_security {
        return None;
    }
    let mut any = false;
    let mut insecure = false;
    for s in scripts {
        any |= s.is_script;
        insecure |= s.insecure;
    }
    any.then(|| {
        format!(
            "SECURITY VIOLATION - scripts are being executed but script_security not enabled.{}",
            if insecure {
                " There are insecure scripts."
            } else {
                ""
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_rules_match_keepalived() {
        // root may run anything with any x bit.
        assert!(is_executable(0o001, 5, 5, 0, 0));
        assert!(!is_executable(0o644, 5, 5, 0, 0));
        // owner uses the user bits only.
        assert!(is_executable(0o700, 7, 7, 7, 9));
        assert!(!is_executable(0o077, 7, 7, 7, 7));
        // group member (primary gid) uses the group bits only.
        assert!(is_executable(0o010, 1, 9, 7, 9));
        assert!(!is_executable(0o001, 1, 9, 7, 9));
        // others.
        assert!(is_executable(0o001, 1, 2, 7, 9));
    }

    #[test]
    fn component_rules() {
        assert!(!component_is_unsafe(NodeKind::Dir, 0, 0, 0o755));
        assert!(!component_is_unsafe(NodeKind::File, 0, 0, 0o775)); // root group may write
        assert!(component_is_unsafe(NodeKind::File, 0, 5, 0o775));
        assert!(component_is_unsafe(NodeKind::File, 0, 0, 0o757));
        assert!(component_is_unsafe(NodeKind::Dir, 0, 0, 0o777));
        assert!(!component_is_unsafe(NodeKind::Dir, 0, 0, 0o1777)); // /tmp
        assert!(component_is_unsafe(NodeKind::Dir, 1000, 0, 0o755));
        assert!(component_is_unsafe(NodeKind::Symlink, 1000, 0, 0o777));
        assert!(!component_is_unsafe(NodeKind::Symlink, 0, 0, 0o777));
    }

    #[test]
    fn redirection_and_shell_quoting() {
        assert!(is_redirection_check(b"</dev/tcp/127.0.0.1/80"));
        assert!(is_redirection_check(b"<  /etc/x"));
        assert!(!is_redirection_check(b"<x"));
        let s = CheckedScript::unchecked(
            vec!["/bin/x".into(), "it's".into(), "a b".into()],
            RunAs::current(),
        );
        assert_eq!(
            s.shell_string(&[]),
            OsString::from(r"'/bin/x' 'it'\''s' 'a b'")
        );
        let r = CheckedScript::unchecked(vec!["</dev/null".into()], RunAs::current());
        assert_eq!(
            r.shell_string(&["X".into()]),
            OsString::from("</dev/null 'X'")
        );
    }

    #[test]
    fn redirection_is_a_track_script_only() {
        let cmd = ScriptCommand::parse("</dev/null").expect("parses");
        let s = check_script(&cmd, &RunAs::current(), true).expect("accepted as vrrp_script");
        assert_eq!(s.mode, ExecMode::Shell);
        assert!(!s.is_script);
        assert!(check_notify_script(&cmd, &RunAs::current(), true).is_err());
    }

    #[test]
    fn clean_path_is_lexical() {
        assert_eq!(
            clean_path(Path::new("/a/./b//c/../d")),
            PathBuf::from("/a/b/d")
        );
        assert_eq!(clean_path(Path::new("/../x")), PathBuf::from("/x"));
    }

    #[test]
    fn summary_only_without_security() {
        let mut s = CheckedScript::unchecked(vec!["/bin/true".into()], RunAs::current());
        assert!(security_summary(true, [&s]).is_none());
        assert_eq!(
            security_summary(false, [&s]).as_deref(),
            Some(
                "SECURITY VIOLATION - scripts are being executed but script_security not enabled."
            )
        );
        s.insecure = true;
        assert!(
            security_summary(false, [&s])
                .is_some_and(|m| m.ends_with(" There are insecure scripts."))
        );
        s.is_script = false;
        s.insecure = false;
        assert!(security_summary(false, [&s]).is_none());
    }
}
