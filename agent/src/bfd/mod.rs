//! BFD (RFC 5880) asynchronous mode: fast liveness detection of a peer.
//!
//! Pure, like `vrrp`: the caller owns sockets and clocks, passes received
//! packets and the current time in, and carries out the returned actions.
//!
//! * [`packet`] — the control packet (§4.1) and the reception checks that do
//!   not need a session (§6.8.6); UDP ports of RFC 5881 and RFC 5883.
//! * [`session`] — one session's state machine (§6.2), timers and Poll
//!   Sequence (§6.5, §6.8.1–§6.8.7), including the passive role (§6.1).
//!
//! Not implemented: authentication (packets carrying it are rejected),
//! demand mode and the echo function. Finding the session a packet belongs
//! to (by Your Discriminator, or by address while it is 0) is the caller's.

pub mod packet;
pub mod session;

pub use packet::{
    CONTROL_LEN, CONTROL_PORT, ControlPacket, Diag, MULTIHOP_PORT, PacketError, SessionState,
};
pub use session::{Action, Session, SessionConfig};
