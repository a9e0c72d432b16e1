//! Test harness for xvrrpd's privileged tests: a lab of network namespaces
//! joined by veth pairs to a bridge, torn down even when a test fails.
//!
//! Only documentation and benchmarking ranges are used (192.0.2.0/24,
//! 198.51.100.0/24, 2001:db8::/32; 198.18.0.0/15 for many instances, see
//! [`scale`]) and only inside the lab's own namespaces.
//!
//! # The VRRP lab
//!
//! Daemon-agnostic: the same scenarios drive the real `xvrrpd` binary and
//! Debian's keepalived 2.2.7.
//!
//! * [`kconf`]: one description of a router's VRRP setup ([`kconf::RouterConfig`],
//!   [`kconf::Instance`], scripts, sync groups, notify) rendered as
//!   keepalived.conf for either [`kconf::Daemon`];
//! * [`router`]: [`router::RouterNode`], a namespace running one daemon
//!   (start, kill -9 of its process group, SIGTERM, SIGHUP, restart, link
//!   down/up on either side, VIPs, notify FIFO and scripts, xvrrpd status);
//! * [`vrrp_lab`]: [`vrrp_lab::VrrpLab`], the lab with its directory
//!   (kept and reported when a test fails) and the xvrrpd binary lookup;
//! * [`wire`]: tcpdump on the bridge, nanosecond timestamps; [`pcap`]
//!   reads and decodes the file (adverts, GARP, NA, echoes);
//! * [`prober`]: a client pinging a VIP every millisecond, recording which
//!   MAC answered, and outages as runs of lost probes;
//! * [`addr_watch`]: every address change on a host, from rtnetlink;
//! * [`analysis`]: `Skew_Time`, `Master_Down_Interval`, takeovers on the
//!   wire, who advertised when, who held the VIP when;
//! * [`scenario`]: [`scenario::Cluster`] and its steps (election, crash,
//!   SIGTERM, link failure, rejoin, preemption) checked on the wire, on the
//!   hosts and from the client; [`scenario::interop_cycle`] for issue #6;
//! * [`craft`]: hand-made adverts to probe a daemon with;
//! * [`bench`]: what the benchmarks share (their `main`, the capture
//!   filter, real-time prober threads);
//! * [`stall`]: a real-time thread that notices when the whole host
//!   stalls, so a timing failure it caused is told from one of a daemon;
//! * [`retry`]: [`retry::lab_test`], which runs a lab test once more only
//!   when such a stall explains its failure.
//!
//! Switches: `XVRRPD_LAB_DAEMON=keepalived` runs the xvrrpd scenarios with
//! keepalived (to check the scenarios themselves); `XVRRPD_BIN` picks the
//! xvrrpd binary (default `target/debug/xvrrpd`, built by `cargo xtask
//! test` before these tests run); `XVRRPD_LAB_XVRRPD_ARGS` adds arguments
//! to every lab xvrrpd (e.g. `--no-ebpf`); `XVRRPD_LAB_KEEP` keeps a
//! passing lab's files. Figures are printed: run with `--nocapture`.

pub mod addr_watch;
pub mod analysis;
pub mod bench;
pub mod clock;
pub mod craft;
pub mod kconf;
pub mod lab;
pub mod pcap;
pub mod plot;
pub mod prober;
pub mod retry;
pub mod router;
pub mod scale;
pub mod scenario;
pub mod stall;
pub mod vm;
pub mod vrrp_lab;
pub mod wire;

pub use lab::{Capture, FrameInjector, Host, Lab, frame_injector, require_root, run, wait_until};
