//! Control and observability: the status socket and report, Prometheus
//! metrics, systemd notification and privilege dropping.

pub mod events;
pub mod metrics;
pub mod privileges;
pub mod socket;
pub mod status;
pub mod systemd;
pub mod watch;
