//! `net_namespace NAME`: moving the daemon into a named network namespace
//! before it opens anything, as keepalived does.

use std::{fs::File, path::PathBuf};

use nix::sched::{CloneFlags, setns};

/// Where `ip netns add NAME` puts the namespace's handle.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "network namespace {name}: cannot open {path}: {source} (create it with `ip netns add {name}`, \
         or fix net_namespace / --namespace)"
    )]
    Open {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "network namespace {name}: setns failed: {source} (entering a namespace needs CAP_SYS_ADMIN)"
    )]
    Enter { name: String, source: nix::Error },
}

/// Moves the calling thread into the namespace `ip netns` calls `name`.
/// Only this thread moves: call it before any other thread starts, so
/// that everything the daemon starts (runtime, workers, scripts) inherits
/// it. `/sys` keeps showing the namespace it was mounted in, so its pins
/// directory stays shared with the host.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let path = PathBuf::from(NETNS_RUN_DIR).join(name);
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        name: name.to_string(),
        source,
    })
}
