//! Test harness for xvrrpd's privileged tests: a lab of network namespaces
//! joined by veth pairs to a bridge, torn down even when a test fails.
//!
//! Only documentation ranges are used (192.0.2.0/24, 198.51.100.0/24,
//! 2001:db8::/32) and only inside the lab's own namespaces.

pub mod addr_watch;
pub mod analysis;
pub mod clock;
pub mod craft;
pub mod kconf;
pub mod lab;
pub mod pcap;
pub mod prober;
pub mod router;
pub mod scenario;
pub mod vrrp_lab;
pub mod wire;

pub use lab::{Capture, FrameInjector, Host, Lab, frame_injector, require_root, run, wait_until};
