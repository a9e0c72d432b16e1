//! BFD control packet, RFC 5880 §4.1, without the authentication section.
//!
//! Decoding applies the §6.8.6 checks that need no session, so a packet that
//! reaches a session is well formed.

use std::fmt;

use thiserror::Error;

/// UDP destination port of single-hop sessions (RFC 5881).
pub const CONTROL_PORT: u16 = 3784;
/// UDP destination port of multihop sessions (RFC 5883).
pub const MULTIHOP_PORT: u16 = 4784;
/// Length of the mandatory section, the whole packet when unauthenticated.
pub const CONTROL_LEN: usize = 24;

const VERSION: u8 = 1;
const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// Session state as carried in the State field (§4.1, §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl SessionState {
    fn from_bits(bits: u8) -> Self {
        match bits & 0x3 {
            0 => SessionState::AdminDown,
            1 => SessionState::Down,
            2 => SessionState::Init,
            _ => SessionState::Up,
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionState::AdminDown => "AdminDown",
            SessionState::Down => "Down",
            SessionState::Init => "Init",
            SessionState::Up => "Up",
        })
    }
}

/// Why the sender's session last left Up (§4.1 Diagnostic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Diag {
    None = 0,
    ControlDetectionExpired = 1,
    EchoFailed = 2,
    NeighborSignaledDown = 3,
    ForwardingPlaneReset = 4,
    PathDown = 5,
    ConcatPathDown = 6,
    AdministrativelyDown = 7,
    ReverseConcatPathDown = 8,
}

impl Diag {
    /// The code as defined by RFC 5880; `None` for values it reserves, which
    /// a peer may still send (the packet keeps the raw code).
    pub fn from_u8(code: u8) -> Option<Diag> {
        Some(match code {
            0 => Diag::None,
            1 => Diag::ControlDetectionExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatPathDown,
            _ => return None,
        })
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Diag::None => "no diagnostic",
            Diag::ControlDetectionExpired => "control detection time expired",
            Diag::EchoFailed => "echo function failed",
            Diag::NeighborSignaledDown => "neighbor signaled session down",
            Diag::ForwardingPlaneReset => "forwarding plane reset",
            Diag::PathDown => "path down",
            Diag::ConcatPathDown => "concatenated path down",
            Diag::AdministrativelyDown => "administratively down",
            Diag::ReverseConcatPathDown => "reverse concatenated path down",
        })
    }
}

/// The mandatory section of a control packet; intervals in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    /// Raw code, see [`Diag::from_u8`].
    pub diag: u8,
    pub state: SessionState,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (§6.8.6).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    #[error("truncated BFD control packet: {0} bytes, need {CONTROL_LEN}")]
    Truncated(usize),
    #[error("unsupported BFD version {0} (only 1 exists)")]
    BadVersion(u8),
    #[error("length field {0} is below the {CONTROL_LEN}-byte minimum")]
    LengthTooShort(u8),
    #[error("length field {length} exceeds the {received} bytes received")]
    LengthBeyondPayload { length: u8, received: usize },
    #[error("packet is authenticated (A bit set); BFD authentication is not supported")]
    Authenticated,
    #[error("detect multiplier is 0")]
    ZeroDetectMult,
    #[error("multipoint bit set; it must be 0")]
    Multipoint,
    #[error("my discriminator is 0")]
    ZeroMyDisc,
    #[error("your discriminator is 0 in state {0}, allowed only in Down and AdminDown")]
    ZeroYourDisc(SessionState),
}

impl ControlPacket {
    /// Always version 1, unauthenticated, point to point.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        let mut buf = [0u8; CONTROL_LEN];
        buf[0] = (VERSION << 5) | (self.diag & 0x1f);
        buf[1] = ((self.state as u8) << 6)
            | flag(self.poll, FLAG_POLL)
            | flag(self.final_, FLAG_FINAL)
            | flag(self.cpi, FLAG_CPI)
            | flag(self.demand, FLAG_DEMAND);
        buf[2] = self.detect_mult;
        buf[3] = CONTROL_LEN as u8;
        let words = [
            self.my_disc,
            self.your_disc,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ];
        for (chunk, word) in buf[4..].chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        buf
    }

    /// `buf` is the UDP payload; bytes past the Length field are ignored.
    pub fn decode(buf: &[u8]) -> Result<Self, PacketError> {
        let Some(head) = buf.first_chunk::<CONTROL_LEN>() else {
            return Err(PacketError::Truncated(buf.len()));
        };
        let version = head[0] >> 5;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let length = head[3];
        if usize::from(length) < CONTROL_LEN {
            return Err(PacketError::LengthTooShort(length));
        }
        if usize::from(length) > buf.len() {
            return Err(PacketError::LengthBeyondPayload {
                length,
                received: buf.len(),
            });
        }
        let flags = head[1];
        if flags & FLAG_AUTH != 0 {
            return Err(PacketError::Authenticated);
        }
        let detect_mult = head[2];
        if detect_mult == 0 {
            return Err(PacketError::ZeroDetectMult);
        }
        if flags & FLAG_MULTIPOINT != 0 {
            return Err(PacketError::Multipoint);
        }
        let word =
            |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let (my_disc, your_disc) = (word(4), word(8));
        if my_disc == 0 {
            return Err(PacketError::ZeroMyDisc);
        }
        let state = SessionState::from_bits(flags >> 6);
        if your_disc == 0 && !matches!(state, SessionState::Down | SessionState::AdminDown) {
            return Err(PacketError::ZeroYourDisc(state));
        }
        Ok(ControlPacket {
            diag: head[0] & 0x1f,
            state,
            poll: flags & FLAG_POLL != 0,
            final_: flags & FLAG_FINAL != 0,
            cpi: flags & FLAG_CPI != 0,
            demand: flags & FLAG_DEMAND != 0,
            detect_mult,
            my_disc,
            your_disc,
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [SessionState; 4] = [
        SessionState::AdminDown,
        SessionState::Down,
        SessionState::Init,
        SessionState::Up,
    ];

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diag::NeighborSignaledDown as u8,
            state: SessionState::Up,
            poll: false,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_disc: 0x0102_0304,
            your_disc: 0xa0b0_c0d0,
            desired_min_tx_us: 300_000,
            required_min_rx_us: 250_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn every_state_and_flag_round_trips() {
        for state in STATES {
            for flags in 0..16u8 {
                let pkt = ControlPacket {
                    state,
                    poll: flags & 1 != 0,
                    final_: flags & 2 != 0,
                    cpi: flags & 4 != 0,
                    demand: flags & 8 != 0,
                    ..sample()
                };
                let wire = pkt.encode();
                assert_eq!(wire[3], 24);
                assert_eq!(wire[1] & (FLAG_AUTH | FLAG_MULTIPOINT), 0);
                assert_eq!(
                    ControlPacket::decode(&wire),
                    Ok(pkt),
                    "{state} flags {flags:04b}"
                );
            }
        }
    }

    #[test]
    fn hand_built_packet_decodes_to_its_fields() {
        let wire: [u8; 24] = [
            0x20, 0xc0, 5, 24, // version 1, diag 0, Up, no flags, mult 5, length 24
            0, 0, 0, 1, 0, 0, 0, 2, // my 1, your 2
            0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10, 0, 0, 0, 0, // 10 ms, 10 ms, no echo
        ];
        let pkt = ControlPacket::decode(&wire).unwrap();
        assert_eq!(
            (pkt.diag, pkt.state, pkt.detect_mult),
            (0, SessionState::Up, 5)
        );
        assert_eq!((pkt.my_disc, pkt.your_disc), (1, 2));
        assert_eq!(
            (pkt.desired_min_tx_us, pkt.required_min_rx_us),
            (10_000, 10_000)
        );
        assert_eq!(pkt.required_min_echo_rx_us, 0);
        assert!(!(pkt.poll || pkt.final_ || pkt.cpi || pkt.demand));
        assert_eq!(pkt.encode(), wire);
    }

    #[test]
    fn a_longer_length_within_the_payload_is_accepted() {
        let mut wire = sample().encode().to_vec();
        wire.extend_from_slice(&[0xee; 4]);
        wire[3] = 28;
        assert_eq!(ControlPacket::decode(&wire), Ok(sample()));
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        let good = sample().encode();
        let with = |at: usize, value: u8| {
            let mut wire = good;
            wire[at] = value;
            ControlPacket::decode(&wire)
        };
        assert_eq!(
            ControlPacket::decode(&good[..23]),
            Err(PacketError::Truncated(23))
        );
        assert_eq!(with(0, 2 << 5), Err(PacketError::BadVersion(2)));
        assert_eq!(with(3, 23), Err(PacketError::LengthTooShort(23)));
        assert_eq!(
            with(3, 25),
            Err(PacketError::LengthBeyondPayload {
                length: 25,
                received: 24
            })
        );
        assert_eq!(
            with(1, good[1] | FLAG_AUTH),
            Err(PacketError::Authenticated)
        );
        assert_eq!(with(2, 0), Err(PacketError::ZeroDetectMult));
        assert_eq!(
            with(1, good[1] | FLAG_MULTIPOINT),
            Err(PacketError::Multipoint)
        );
        let zero_disc = |pkt: ControlPacket| ControlPacket::decode(&pkt.encode());
        assert_eq!(
            zero_disc(ControlPacket {
                my_disc: 0,
                ..sample()
            }),
            Err(PacketError::ZeroMyDisc)
        );
        for state in STATES {
            let result = zero_disc(ControlPacket {
                your_disc: 0,
                state,
                ..sample()
            });
            match state {
                SessionState::Down | SessionState::AdminDown => assert!(result.is_ok()),
                _ => assert_eq!(result, Err(PacketError::ZeroYourDisc(state))),
            }
        }
    }

    #[test]
    fn diagnostic_codes_have_names() {
        assert_eq!(Diag::from_u8(1), Some(Diag::ControlDetectionExpired));
        assert_eq!(Diag::from_u8(8), Some(Diag::ReverseConcatPathDown));
        assert_eq!(Diag::from_u8(9), None);
        assert_eq!(
            Diag::NeighborSignaledDown.to_string(),
            "neighbor signaled session down"
        );
        assert_eq!(
            Diag::AdministrativelyDown.to_string(),
            "administratively down"
        );
    }
}
