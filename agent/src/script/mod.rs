//! External scripts, run as keepalived runs them: parsing a script line and
//! resolving its user (`command`), keepalived's `enable_script_security` rule
//! (`security`), and running a checked script in its own process group with
//! a timeout (`exec`).
//!
//! A low-level module: the `vrrp_script` tracker, the notify scripts and
//! FIFO, the configuration's host checks and the runtime's plan all use it.

pub mod command;
pub mod exec;
pub mod security;

pub use command::{RunAs, ScriptCommand, UserSpec};
pub use exec::ScriptOutcome;
pub use security::CheckedScript;
