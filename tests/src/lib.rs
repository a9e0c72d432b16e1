//! Test harness for xvrrpd's privileged tests: a lab of network namespaces
//! joined by veth pairs to a bridge, torn down even when a test fails.
//!
//! Only documentation ranges are used (192.0.2.0/24, 198.51.100.0/24,
//! 2001:db8::/32) and only inside the lab's own namespaces.

pub mod lab;

pub use lab::{Capture, FrameInjector, Host, Lab, frame_injector, require_root, run, wait_until};
