//! xvrrpd: a VRRP failover daemon with an eBPF datapath, configured by
//! keepalived.conf.
//!
//! Data flows one way: `config` → typed model; kernel `datapath`, netlink
//! link watch and `tracker`s → events → `vrrp` (pure state machines) →
//! actions → `net` effects, wired together by `runtime`; `control` serves
//! status and metrics.
//!
//! Below them, low-level modules that any of them may use and that use none
//! of them: `clock` (the daemon's CLOCK_MONOTONIC time base), `script`
//! (parsing, security checks and running of tracker and notify scripts),
//! `reactor` (descriptors registered with tokio), `packet` (the VRRP wire
//! format), `bfd` (the BFD protocol, pure; `tracker::bfd` runs its
//! sessions). `vrrp` depends only on `packet`; its tracked-object vocabulary
//! (`TrackerId`, `TrackState`) is what trackers report in.
//!
//! Test tooling is not part of the shipped daemon: `sim` (a LAN simulator
//! driving the real state machines) and `datapath::spec` (the table of
//! crafted frames both datapaths are checked against) exist with the
//! `testkit` feature and in the crate's own tests.

pub mod bfd;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod datapath;
pub mod net;
pub mod notify;
pub mod packet;
pub mod reactor;
pub mod runtime;
pub mod script;
#[cfg(any(test, feature = "testkit"))]
pub mod sim;
pub mod tracker;
pub mod vrrp;
