//! One BFD session in asynchronous mode (RFC 5880 §6.2, §6.8.1–§6.8.7).
//!
//! Time is nanoseconds on the caller's monotonic clock; the caller runs
//! [`Session::poll`] at [`Session::next_deadline`] and on every valid packet
//! addressed to the session calls [`Session::receive`].

use std::num::NonZeroU32;

use super::packet::{ControlPacket, Diag, SessionState};

/// Timer parameters, intervals in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Desired Min TX Interval once the session is Up.
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    /// Transmit interval while not Up (RFC 5880 §6.8.3 wants >= 1 s;
    /// keepalived's `idle_tx`).
    pub idle_tx_us: u32,
    pub detect_mult: u8,
    /// Wait for the peer to speak first (§6.1).
    pub passive: bool,
}

/// What the caller must do; `Up`/`Down` are reported only on a change into
/// or out of Up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send(ControlPacket),
    Up,
    Down(Diag),
}

#[derive(Clone, Debug)]
pub struct Session {
    cfg: SessionConfig,
    local_disc: u32,
    state: SessionState,
    local_diag: Diag,
    remote_disc: u32,
    remote_state: SessionState,
    remote_min_rx_us: u32,
    /// 0 until the peer is heard.
    remote_desired_min_tx_us: u32,
    remote_detect_mult: u8,
    /// Desired Min TX as advertised; during a Poll Sequence, the new value.
    desired_min_tx_us: u32,
    /// Desired Min TX governing our transmissions: an increase only takes
    /// effect once the peer acknowledged it (§6.8.3).
    tx_basis_us: u32,
    poll_active: bool,
    next_tx_ns: Option<u64>,
    last_rx_ns: Option<u64>,
    jitter_state: u32,
}

impl Session {
    pub fn new(cfg: SessionConfig, local_disc: NonZeroU32, now_ns: u64) -> Self {
        // The wire forbids a multiplier of 0; peers would discard every packet.
        let cfg = SessionConfig {
            detect_mult: cfg.detect_mult.max(1),
            ..cfg
        };
        let idle_us = cfg.idle_tx_us.max(cfg.desired_min_tx_us);
        Session {
            cfg,
            local_disc: local_disc.get(),
            state: SessionState::Down,
            local_diag: Diag::None,
            remote_disc: 0,
            remote_state: SessionState::Down,
            remote_min_rx_us: 1,
            remote_desired_min_tx_us: 0,
            remote_detect_mult: 0,
            desired_min_tx_us: idle_us,
            tx_basis_us: idle_us,
            poll_active: false,
            next_tx_ns: (!cfg.passive).then_some(now_ns),
            last_rx_ns: None,
            jitter_state: local_disc.get(),
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn remote_state(&self) -> SessionState {
        self.remote_state
    }

    pub fn local_disc(&self) -> u32 {
        self.local_disc
    }

    /// 0 until the peer is heard, and again after its detection time expired.
    pub fn remote_disc(&self) -> u32 {
        self.remote_disc
    }

    /// Remote multiplier × the slower of our receive and its transmit
    /// interval (§6.8.4); 0 until the peer is heard.
    pub fn detection_time_us(&self) -> u64 {
        let interval = self
            .cfg
            .required_min_rx_us
            .max(self.remote_desired_min_tx_us);
        u64::from(self.remote_detect_mult) * u64::from(interval)
    }

    /// Interval of periodic transmission before jitter; 0 while there is none
    /// (passive and unheard, peer asked for none, or AdminDown).
    pub fn tx_interval_us(&self) -> u64 {
        self.periodic_interval_us().unwrap_or(0)
    }

    pub fn next_deadline(&self) -> Option<u64> {
        match (self.next_tx_ns, self.detection_deadline_ns()) {
            (Some(tx), Some(detect)) => Some(tx.min(detect)),
            (tx, detect) => tx.or(detect),
        }
    }

    /// Timers: sends the periodic packet when due, declares the session down
    /// when the detection time passed.
    pub fn poll(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        if self
            .detection_deadline_ns()
            .is_some_and(|deadline| now_ns >= deadline)
        {
            // §6.8.1 and §6.8.18: forget the peer so it is demultiplexed anew
            // and its last Required Min RX no longer binds us.
            self.remote_disc = 0;
            self.remote_state = SessionState::Down;
            self.remote_min_rx_us = 1;
            self.last_rx_ns = None;
            self.go_down(SessionState::Down, Diag::ControlDetectionExpired, out);
            if self.may_transmit() {
                out.push(Action::Send(self.control_packet()));
            }
            self.next_tx_ns = self.schedule_after(now_ns);
        }
        if self.next_tx_ns.is_some_and(|due| now_ns >= due) {
            out.push(Action::Send(self.control_packet()));
            self.next_tx_ns = self.schedule_after(now_ns);
        }
    }

    /// Takes a packet that passed [`ControlPacket::decode`] and was addressed
    /// to this session (§6.8.6).
    pub fn receive(&mut self, pkt: &ControlPacket, now_ns: u64, out: &mut Vec<Action>) {
        if self.state == SessionState::AdminDown {
            return;
        }
        self.remote_disc = pkt.my_disc;
        self.remote_state = pkt.state;
        self.remote_min_rx_us = pkt.required_min_rx_us;
        self.remote_desired_min_tx_us = pkt.desired_min_tx_us;
        self.remote_detect_mult = pkt.detect_mult;
        self.last_rx_ns = Some(now_ns);
        if pkt.final_ && self.poll_active {
            self.poll_active = false;
            self.tx_basis_us = self.desired_min_tx_us;
        }

        let before = self.state;
        match (self.state, pkt.state) {
            (SessionState::Down, SessionState::AdminDown) => {}
            (_, SessionState::AdminDown) | (SessionState::Up, SessionState::Down) => {
                self.go_down(SessionState::Down, Diag::NeighborSignaledDown, out)
            }
            (SessionState::Down, SessionState::Down) => self.state = SessionState::Init,
            (SessionState::Down, SessionState::Init)
            | (SessionState::Init, SessionState::Init | SessionState::Up) => self.go_up(out),
            _ => {}
        }

        let changed = self.state != before;
        if pkt.poll {
            // The Final answers at once and also carries any state change;
            // our own Poll rides on the next periodic packet, as one packet
            // must not carry both.
            let reply = ControlPacket {
                poll: false,
                final_: true,
                ..self.control_packet()
            };
            out.push(Action::Send(reply));
        } else if changed {
            // Tell the peer now rather than at the next tick.
            out.push(Action::Send(self.control_packet()));
        }
        if changed {
            self.next_tx_ns = self.schedule_after(now_ns);
        } else {
            self.refresh_schedule(now_ns);
        }
    }

    fn go_up(&mut self, out: &mut Vec<Action>) {
        self.state = SessionState::Up;
        self.local_diag = Diag::None;
        let desired_us = self.cfg.desired_min_tx_us;
        // A slower rate waits for the peer's Final: until then it may still
        // time us out with the detection time derived from the old one.
        if desired_us <= self.tx_basis_us {
            self.tx_basis_us = desired_us;
        }
        self.desired_min_tx_us = desired_us;
        self.poll_active = true;
        out.push(Action::Up);
    }

    fn go_down(&mut self, state: SessionState, diag: Diag, out: &mut Vec<Action>) {
        let was_up = self.state == SessionState::Up;
        self.state = state;
        self.local_diag = diag;
        // Outside Up the idle rate applies at once and needs no Poll.
        self.poll_active = false;
        self.desired_min_tx_us = self.cfg.idle_tx_us.max(self.cfg.desired_min_tx_us);
        self.tx_basis_us = self.desired_min_tx_us;
        if was_up {
            out.push(Action::Down(diag));
        }
    }

    /// After a packet that changed no state: starts, stops or hastens the
    /// periodic schedule as the new remote parameters demand.
    fn refresh_schedule(&mut self, now_ns: u64) {
        let Some(interval_us) = self.periodic_interval_us() else {
            self.next_tx_ns = None;
            return;
        };
        match self.next_tx_ns {
            None => self.next_tx_ns = Some(now_ns),
            Some(due) if due > now_ns.saturating_add(interval_us * 1000) => {
                self.next_tx_ns = self.schedule_after(now_ns)
            }
            Some(_) => {}
        }
    }

    /// §6.8.7: a passive session stays silent until it knows its peer.
    fn may_transmit(&self) -> bool {
        !(self.cfg.passive && self.remote_disc == 0)
    }

    fn periodic_interval_us(&self) -> Option<u64> {
        // A Required Min RX of 0 asks for no periodic packets at all (§6.8.3).
        let periodic = self.state != SessionState::AdminDown && self.remote_min_rx_us != 0;
        (periodic && self.may_transmit())
            .then(|| u64::from(self.tx_basis_us.max(self.remote_min_rx_us)))
    }

    /// §6.8.7: 75–100 % of the interval so sessions do not synchronise;
    /// at most 90 % with a multiplier of 1, where one late packet would
    /// otherwise expire the peer's detection time.
    fn schedule_after(&mut self, now_ns: u64) -> Option<u64> {
        let interval_us = self.periodic_interval_us()?;
        let span = if self.cfg.detect_mult == 1 { 151 } else { 251 };
        let per_mille = 750 + u64::from(self.next_random() % span);
        // µs × ‰ is ns.
        Some(now_ns.saturating_add(interval_us * per_mille))
    }

    /// xorshift32: deterministic per discriminator, which is nonzero.
    fn next_random(&mut self) -> u32 {
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.jitter_state = x;
        x
    }

    fn detection_deadline_ns(&self) -> Option<u64> {
        if !matches!(self.state, SessionState::Init | SessionState::Up) {
            return None;
        }
        let last_rx = self.last_rx_ns?;
        Some(last_rx.saturating_add(self.detection_time_us().saturating_mul(1000)))
    }

    fn control_packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag as u8,
            state: self.state,
            poll: self.poll_active,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx_us: self.desired_min_tx_us,
            required_min_rx_us: self.cfg.required_min_rx_us,
            required_min_echo_rx_us: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use SessionState::{AdminDown, Down, Init, Up};

    const MS: u64 = 1_000_000;

    fn session(desired_min_tx_us: u32, detect_mult: u8, passive: bool, disc: u32) -> Session {
        let cfg = SessionConfig {
            desired_min_tx_us,
            required_min_rx_us: 10_000,
            idle_tx_us: 1_000_000,
            detect_mult,
            passive,
        };
        Session::new(cfg, NonZeroU32::new(disc).unwrap(), 0)
    }

    fn feed(session: &mut Session, pkt: ControlPacket, now_ns: u64) -> Vec<Action> {
        let mut out = Vec::new();
        session.receive(&pkt, now_ns, &mut out);
        out
    }

    /// Two sessions wired back to back with no delay, in simulated time.
    struct Pair {
        sides: [Session; 2],
        now: u64,
        /// Whether what each side sends reaches the other.
        delivering: [bool; 2],
        /// (time, acting side, action) for everything either side did.
        log: Vec<(u64, usize, Action)>,
    }

    impl Pair {
        fn new(b: Session) -> Self {
            let a = session(10_000, 3, false, 1);
            Pair {
                sides: [a, b],
                now: 0,
                delivering: [true; 2],
                log: Vec::new(),
            }
        }

        fn up() -> Self {
            let mut pair = Pair::new(session(10_000, 3, false, 2));
            pair.run_until(1000 * MS);
            assert_eq!(pair.states(), [Up, Up]);
            pair
        }

        fn states(&self) -> [SessionState; 2] {
            [self.sides[0].state(), self.sides[1].state()]
        }

        fn run_until(&mut self, until: u64) {
            while let Some(due) = self.sides.iter().filter_map(Session::next_deadline).min() {
                if due > until {
                    break;
                }
                self.now = self.now.max(due);
                for side in 0..2 {
                    let mut out = Vec::new();
                    self.sides[side].poll(self.now, &mut out);
                    self.dispatch(side, out);
                }
            }
            self.now = until;
        }

        fn dispatch(&mut self, from: usize, actions: Vec<Action>) {
            let mut queue: VecDeque<_> = actions.into_iter().map(|a| (from, a)).collect();
            while let Some((side, action)) = queue.pop_front() {
                self.log.push((self.now, side, action.clone()));
                let Action::Send(pkt) = action else { continue };
                if self.delivering[side] {
                    // Through the codec, so what is sent is also valid on the wire.
                    let pkt = ControlPacket::decode(&pkt.encode()).unwrap();
                    let out = feed(&mut self.sides[1 - side], pkt, self.now);
                    queue.extend(out.into_iter().map(|a| (1 - side, a)));
                }
            }
        }

        fn sent(&self, side: usize) -> Vec<(u64, ControlPacket)> {
            let sends = self.log.iter().filter(|(_, s, _)| *s == side);
            sends
                .filter_map(|(t, _, a)| match a {
                    Action::Send(p) => Some((*t, *p)),
                    _ => None,
                })
                .collect()
        }

        fn events(&self, side: usize) -> Vec<Action> {
            let own = self.log.iter().filter(|(_, s, _)| *s == side);
            own.filter(|(_, _, a)| !matches!(a, Action::Send(_)))
                .map(|(_, _, a)| a.clone())
                .collect()
        }
    }

    #[test]
    fn two_active_sessions_come_up_by_three_way_handshake() {
        let mut pair = Pair::new(session(10_000, 3, false, 2));
        assert_eq!(pair.sides[0].next_deadline(), Some(0));
        pair.run_until(0);
        assert_eq!(pair.states(), [Up, Up]);
        assert!(pair.log.len() <= 8, "{:#?}", pair.log);
        let states = |side| {
            pair.sent(side)
                .iter()
                .map(|(_, p)| p.state)
                .collect::<Vec<_>>()
        };
        assert_eq!(states(0)[..2], [Down, Up]);
        assert_eq!(states(1)[..2], [Init, Up]);
        assert_eq!(pair.sent(0)[0].1.your_disc, 0);
        assert_eq!(
            (pair.sides[0].remote_disc(), pair.sides[1].remote_disc()),
            (2, 1)
        );
        assert_eq!(
            (pair.events(0), pair.events(1)),
            (vec![Action::Up], vec![Action::Up])
        );
    }

    #[test]
    fn up_sessions_send_at_the_desired_rate_with_jitter() {
        let mut pair = Pair::up();
        let from = pair.now;
        pair.run_until(from + 2000 * MS);
        for (side, session) in pair.sides.iter().enumerate() {
            assert_eq!(
                (session.tx_interval_us(), session.detection_time_us()),
                (10_000, 30_000)
            );
            let sent = pair.sent(side).into_iter();
            let periodic: Vec<u64> = sent
                .filter(|(t, p)| *t > from && !p.final_)
                .map(|(t, _)| t)
                .collect();
            assert!(periodic.len() > 150, "{}", periodic.len());
            for gap in periodic.windows(2).map(|w| w[1] - w[0]) {
                assert!((7_500_000..=10_000_000).contains(&gap), "gap {gap} ns");
            }
        }
    }

    #[test]
    fn jitter_is_at_most_90_percent_with_a_multiplier_of_1() {
        for (mult, longest) in [(3, 1000), (1, 900)] {
            let mut alone = session(10_000, mult, false, 7);
            let mut sends = Vec::new();
            while let Some(due) = alone.next_deadline().filter(|&t| t < 100_000 * MS) {
                let mut out = Vec::new();
                alone.poll(due, &mut out);
                sends.extend(out.iter().map(|_| due));
            }
            // Down, so the idle interval of 1 s applies.
            for gap in sends.windows(2).map(|w| w[1] - w[0]) {
                assert!(
                    (750 * MS..=longest * MS).contains(&gap),
                    "mult {mult}: {gap}"
                );
            }
        }
    }

    #[test]
    fn each_poll_is_answered_by_a_final_and_ends_the_sequence() {
        let mut pair = Pair::up();
        for side in 0..2 {
            let sent = pair.sent(side);
            let (last_poll_at, _) = *sent.iter().rfind(|(_, p)| p.poll).unwrap();
            let answers = pair
                .sent(1 - side)
                .into_iter()
                .filter(|(t, _)| *t == last_poll_at);
            assert!(
                answers.clone().any(|(_, p)| p.final_ && !p.poll),
                "side {side}"
            );
            let later: Vec<_> = sent.iter().filter(|(t, _)| *t > last_poll_at).collect();
            assert!(later.len() > 10 && later.iter().all(|(_, p)| !p.poll));
        }
        // The Final goes out at once, leaving the periodic schedule alone.
        let deadline = pair.sides[0].next_deadline();
        let probe = ControlPacket {
            poll: true,
            final_: false,
            ..pair.sent(1)[0].1
        };
        let out = feed(
            &mut pair.sides[0],
            ControlPacket { state: Up, ..probe },
            pair.now,
        );
        assert!(matches!(out[..], [Action::Send(p)] if p.final_ && !p.poll && p.state == Up));
        assert_eq!(pair.sides[0].next_deadline(), deadline);
    }

    #[test]
    fn silence_expires_the_detection_time_of_the_remote_multiplier() {
        // Side 1 sends every 20 ms with a multiplier of 5: side 0 allows 100 ms.
        let mut pair = Pair::new(session(20_000, 5, false, 2));
        pair.run_until(1000 * MS);
        assert_eq!(pair.sides[0].detection_time_us(), 100_000);
        pair.delivering[1] = false;
        let last_heard = pair.sent(1).last().unwrap().0;
        pair.run_until(last_heard + 100 * MS - 1);
        assert_eq!(pair.sides[0].state(), Up);
        pair.run_until(last_heard + 100 * MS);
        assert_eq!(
            pair.events(0),
            [Action::Up, Action::Down(Diag::ControlDetectionExpired)]
        );
        assert_eq!(
            (pair.sides[0].state(), pair.sides[0].remote_disc()),
            (Down, 0)
        );
        let (_, told) = *pair.sent(0).last().unwrap();
        assert_eq!((told.state, told.diag, told.your_disc), (Down, 1, 0));
        // The silent side still hears, and learns the session is down.
        assert_eq!(
            pair.events(1),
            [Action::Up, Action::Down(Diag::NeighborSignaledDown)]
        );
    }

    #[test]
    fn a_passive_session_waits_for_its_peer() {
        let mut passive = session(10_000, 3, true, 2);
        assert_eq!(
            (passive.next_deadline(), passive.tx_interval_us()),
            (None, 0)
        );
        let mut out = Vec::new();
        passive.poll(10_000 * MS, &mut out);
        assert!(out.is_empty());
        let mut pair = Pair::new(passive);
        pair.sides[0] = Session::new(pair.sides[0].cfg, NonZeroU32::MIN, 5000 * MS);
        pair.run_until(6000 * MS);
        assert!(pair.sent(1).iter().all(|(t, _)| *t >= 5000 * MS));
        assert_eq!(pair.states(), [Up, Up]);
    }

    #[test]
    fn a_peer_admin_down_holds_the_session_down_until_the_peer_restarts() {
        let pair = Pair::up();
        let (_, last) = *pair.sent(1).last().unwrap();
        // What a peer taking the session down on purpose sends (§6.8.16).
        let bye = ControlPacket {
            state: AdminDown,
            diag: Diag::AdministrativelyDown as u8,
            poll: false,
            final_: false,
            ..last
        };
        let mut local = pair.sides[0].clone();
        assert_eq!(
            feed(&mut local, bye, pair.now),
            [
                Action::Down(Diag::NeighborSignaledDown),
                Action::Send(local.control_packet())
            ]
        );
        assert_eq!(local.state(), Down);
        let local = &mut local;
        let peer = |state| ControlPacket {
            state,
            your_disc: 0,
            ..bye
        };
        for second in 1..5 {
            feed(local, peer(AdminDown), pair.now + second * 1000 * MS);
            assert_eq!(local.state(), Down);
        }
        feed(local, peer(Down), pair.now + 5000 * MS);
        assert_eq!(local.state(), Init);
        feed(
            local,
            ControlPacket {
                your_disc: 1,
                ..peer(Up)
            },
            pair.now + 5001 * MS,
        );
        assert_eq!(local.state(), Up);
    }

    #[test]
    fn no_periodic_packets_when_the_peer_asks_for_none() {
        let mut alone = session(10_000, 3, false, 7);
        let quiet = ControlPacket {
            required_min_rx_us: 0,
            ..Pair::up().sent(0)[0].1
        };
        feed(&mut alone, quiet, 0);
        assert_eq!(alone.tx_interval_us(), 0);
        // Only the detection timer of the Init state remains.
        assert_eq!(
            alone.next_deadline(),
            Some(alone.detection_time_us() * 1000)
        );
    }
}
