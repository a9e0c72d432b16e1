//! xvrrpd: a VRRP failover daemon with an eBPF datapath, configured by
//! keepalived.conf.
//!
//! Data flows one way: `config` → typed model; kernel `datapath`, netlink
//! link watch and `tracker`s → events → `vrrp` (pure state machines) →
//! actions → `net` effects, wired together by `runtime`; `control` serves
//! status and metrics.

pub mod cli;
pub mod config;
pub mod control;
pub mod datapath;
pub mod net;
pub mod notify;
pub mod packet;
pub mod runtime;
pub mod sim;
pub mod tracker;
pub mod vrrp;
