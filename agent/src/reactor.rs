//! Registering descriptors with tokio's reactor, for the modules that wait
//! on descriptors they open themselves (track_file's inotify, the process
//! connector, the notify FIFO).

use std::os::fd::AsRawFd;

use tokio::io::{Interest, unix::AsyncFd};

/// Registers a descriptor-owning value with the tokio reactor.
///
/// Only for types that own their descriptor (OwnedFd, Inotify, File), so the
/// fd stays open and unchanged for the AsyncFd's whole life.
pub(crate) fn register_fd<T: AsRawFd>(inner: T, interest: Interest) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: per the contract above, `inner` owns its descriptor.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(Into::into)
}
