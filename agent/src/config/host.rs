//! What the checks need to know about the machine: interfaces, users,
//! scripts. Behind a trait so tests and the corpus run the same anywhere.

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// How a script's executable looks on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptStatus {
    /// Exists, is executable, and no part of its path is writable by non-root.
    Ok,
    NotFound,
    NotExecutable,
    /// Runnable, but some part of the path is writable by a non-root user
    /// (keepalived refuses to run it as root under `enable_script_security`).
    Insecure,
}

/// The machine the configuration is checked against.
pub trait Host {
    /// None when it cannot be told (no /sys/class/net).
    fn interface_exists(&self, name: &str) -> Option<bool>;
    fn user_exists(&self, name: &str) -> bool;
    fn group_exists(&self, name: &str) -> bool;
    /// `program` is the first word of a script command (a path, or a name looked up in PATH).
    fn script_status(&self, program: &str) -> ScriptStatus;
    /// keepalived's config id for `@ID` lines: by default the node name.
    fn config_id(&self) -> Option<String>;
}

/// The real machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemHost;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Host for SystemHost {
    fn interface_exists(&self, name: &str) -> Option<bool> {
        // Asked of the kernel in this thread's network namespace: /sys shows
        // the namespace it was mounted in, which after `net_namespace`
        // (setns without a new mount namespace) is not ours.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
            return Some(false);
        }
        match nix::net::if_::if_nametoindex(name) {
            Ok(_) => Some(true),
            Err(nix::errno::Errno::ENODEV) => Some(false),
            // No socket to ask with (a sandbox): unknown, not absent.
            Err(_) => None,
        }
    }

    fn user_exists(&self, name: &str) -> bool {
        matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
    }

    fn group_exists(&self, name: &str) -> bool {
        matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
    }

    fn script_status(&self, program: &str) -> ScriptStatus {
        let Some(path) = resolve(program) else {
            return ScriptStatus::NotFound;
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            return ScriptStatus::NotFound;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return ScriptStatus::NotExecutable;
        }
        // The same rule the daemon applies before it runs a script as root.
        use crate::script::{
            command::{RunAs, ScriptCommand},
            security::{ScriptRejected, check_script},
        };
        let cmd = ScriptCommand::from_argv([path.as_os_str()]);
        let root = RunAs {
            uid: 0,
            gid: 0,
            ..RunAs::current()
        };
        match check_script(&cmd, &root, true) {
            Ok(_) => ScriptStatus::Ok,
            Err(ScriptRejected::Insecure(_) | ScriptRejected::PathPermission(_)) => {
                ScriptStatus::Insecure
            }
            Err(ScriptRejected::NotExecutable { .. }) => ScriptStatus::NotExecutable,
            Err(_) => ScriptStatus::NotFound,
        }
    }

    fn config_id(&self) -> Option<String> {
        // keepalived: the node name up to its first dot.
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|s| s.trim().split('.').next().map(str::to_string))
            .filter(|s| !s.is_empty())
    }
}

fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A machine described by lists, for tests and the corpus.
#[derive(Clone, Debug, Default)]
pub struct FixedHost {
    pub interfaces: BTreeSet<String>,
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    /// Executables that exist and are safe; any other script is not found.
    pub scripts: BTreeSet<String>,
    pub config_id: Option<String>,
}

impl Host for FixedHost {
    fn interface_exists(&self, name: &str) -> Option<bool> {
        Some(self.interfaces.contains(name))
    }

    fn user_exists(&self, name: &str) -> bool {
        self.users.contains(name)
    }

    fn group_exists(&self, name: &str) -> bool {
        self.groups.contains(name)
    }

    fn script_status(&self, program: &str) -> ScriptStatus {
        let found = if program.contains('/') {
            self.scripts.contains(program)
        } else {
            self.scripts
                .iter()
                .any(|s| s.rsplit('/').next() == Some(program))
        };
        if found {
            ScriptStatus::Ok
        } else {
            ScriptStatus::NotFound
        }
    }

    fn config_id(&self) -> Option<String> {
        self.config_id.clone()
    }
}
