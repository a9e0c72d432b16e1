//! Control and observability: the status socket and report.

pub mod socket;
pub mod status;
