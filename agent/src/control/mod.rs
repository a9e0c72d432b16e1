//! Control and observability: the status socket and report, Prometheus
//! metrics, systemd notification and privilege dropping.

pub mod metrics;
pub mod socket;
pub mod status;
