//! The vocabulary of tracked objects, shared by the state machine and the
//! trackers that feed it: which object ([`TrackerId`]) and what it reports
//! ([`TrackState`]). A leaf module, so `config` and `types` both use it
//! without importing each other.

/// Identifies a tracked object (the runtime assigns it); trackers report
/// under the same id the instances know the object by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TrackerId(pub u32);

/// What a tracked object reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TrackState {
    /// Interface up, script succeeding, process running, BFD up.
    Up,
    /// Interface down, script failing, process gone, BFD down.
    Down,
    /// `track_file`: the number the file holds. What it does to an instance
    /// depends on that instance's weight ([`super::contribution`]).
    Value(i64),
}
