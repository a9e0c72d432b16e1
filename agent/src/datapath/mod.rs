//! The datapath: how VRRP adverts reach the agent.
//!
//! The eBPF programs (XDP, TC fallback) validate adverts in the kernel and
//! push [`AdvertEvent`]s to a ring buffer; without eBPF a raw socket and the
//! same rules in Rust ([`validate`]) produce the same events. The rest of the
//! agent cannot tell which one runs.

pub mod ebpf;
pub mod spec;
pub mod validate;

pub use xvrrpd_common::{AdvertEvent, Counter};
