//! Inputs, actions and records the state machine exchanges with its runtime.

use std::net::IpAddr;

use crate::packet::Advert;

use super::config::ConfigError;
use super::tracked::{TrackState, TrackerId};

/// keepalived's instance states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// Not started yet, or stopped after [`Input::Shutdown`] (keepalived's
    /// STOP notify maps onto a transition to this state).
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    /// The word keepalived's notify scripts and FIFO use.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            State::Initialize => "STOP",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }

    /// The state [`State::keepalived_name`] names.
    pub fn from_keepalived_name(name: &str) -> Option<Self> {
        [
            State::Initialize,
            State::Backup,
            State::Master,
            State::Fault,
        ]
        .into_iter()
        .find(|s| s.keepalived_name() == name)
    }
}

/// The timers a router asks its runtime to run. Each kind has at most one
/// deadline at a time: arming re-arms, and a stale fire (the kind is no longer
/// armed, or `now` is before its current deadline) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum TimerKind {
    /// Master: time to send the next advert.
    Advert,
    /// Backup: no advert from the master in Master_Down_Interval.
    MasterDown,
    /// Backup: `preempt_delay` after the first preemptable advert has passed.
    PreemptDelay,
    /// Master: second GARP/NA batch, `garp_master_delay` after taking over.
    GarpDelay,
    /// Master: periodic GARP/NA batch (`garp_master_refresh`).
    GarpRefresh,
    /// Master: delayed GARP/NA batch after a lower-priority advert
    /// (`garp_lower_prio_delay`).
    GarpLowerPrio,
    /// Master: one advert interval after a re-announce, look whether the VIP
    /// was claimed again meanwhile (claims inside the interval are not
    /// answered at once): the owner has the last word.
    ClaimCheck,
    /// Master: the periodic GARP/NA on the VIPs' other interfaces
    /// (`garp_extra_if`).
    GarpExtraIf,
}

impl TimerKind {
    pub const ALL: [TimerKind; 8] = [
        TimerKind::Advert,
        TimerKind::MasterDown,
        TimerKind::PreemptDelay,
        TimerKind::GarpDelay,
        TimerKind::GarpRefresh,
        TimerKind::GarpLowerPrio,
        TimerKind::ClaimCheck,
        TimerKind::GarpExtraIf,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Everything about a received advert except the advert itself. `Copy`, so
/// a simulator or a runtime can deliver one advert to many routers by
/// reference ([`super::Router::on_advert`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertMeta {
    /// CLOCK_MONOTONIC ns at which the kernel received the packet. The down
    /// timer is armed from this, not from when userspace handled it. 0 (or a
    /// value after `now`) means unknown: `now` is used.
    pub ts_ns: u64,
    /// The IP source address.
    pub src: IpAddr,
    /// TTL / hop limit as received.
    pub ttl: u8,
    /// The destination was not the VRRP multicast group.
    pub unicast: bool,
    /// Addresses the advert carries beyond those in `Advert::addrs`: the
    /// datapath's record holds the first 64 IPv4 / 16 IPv6 addresses of a
    /// larger advert (its checksum covered them all). They are counted, not
    /// compared.
    pub addrs_not_carried: u8,
}

/// A decoded advert with its reception metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedAdvert {
    pub meta: AdvertMeta,
    pub advert: Advert,
}

/// Everything that can happen to a router.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The daemon starts the instance.
    Startup,
    Advert(ReceivedAdvert),
    TimerFired(TimerKind),
    /// A tracked object changed state.
    Track {
        id: TrackerId,
        state: TrackState,
    },
    /// SIGTERM: leave gracefully.
    Shutdown,
    /// SIGHUP with a new configuration for this instance (same instance
    /// identity; the runtime decides what is the same instance).
    Reload(Box<super::config::RouterConfig>),
    /// The master whose advert was accepted last advertised again, the
    /// same advert, at `at_ns` (kernel receive time): the datapath kept
    /// the repeats from the agent ([`super::Router::quiet_master`]) and
    /// timed them. Handled as that advert would be.
    Heard {
        at_ns: u64,
    },
    /// Another MAC announced `addr`, one of this instance's VIPs (the
    /// datapath's conflict guard). `at_ns` is the kernel receive time.
    Conflict {
        addr: IpAddr,
        mac: [u8; 6],
        at_ns: u64,
    },
}

/// A master whose adverts, repeated unchanged, only re-arm the down timer
/// ([`super::Router::quiet_master`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietMaster {
    pub addr: IpAddr,
    pub priority: u8,
    /// Master_Down_Interval counted from each of its adverts.
    pub down_ns: u64,
}

/// Why a state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    /// Startup as a non-owner: wait in Backup for the down timer.
    Startup,
    /// Startup (or recovery from fault) as the address owner (priority 255).
    Owner,
    /// Master_Down_Timer expired (no advert, or a priority-0 advert, or a
    /// lower-priority master being preempted).
    MasterDown,
    /// As Master, received a higher-priority advert.
    HigherPriority,
    /// As Master, received an equal-priority advert from a greater address.
    EqualPriorityGreaterAddress,
    /// A tracked object with weight 0 failed (or the sync group faulted).
    Fault,
    /// All faults cleared.
    FaultCleared,
    /// Moved by the sync group.
    SyncGroup,
    /// SIGTERM.
    Shutdown,
    /// A reload changed something that needs a new state.
    Reload,
}

/// A state change with the facts that led to it. The runtime adds the
/// times of its own effects (VIP added, first GARP sent) to make the
/// complete timeline.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: Reason,
    /// `now` of the input that caused it.
    pub at_ns: u64,
    /// Kernel timestamp of the last advert accepted from the master.
    pub last_advert_ts_ns: Option<u64>,
    /// The deadline of the timer that caused it.
    pub deadline_ns: Option<u64>,
    /// When that timer was handled (the input's `now`).
    pub fired_at_ns: Option<u64>,
    /// Our effective priority at the time.
    pub priority: u8,
    /// The master's address and priority as last seen.
    pub master_addr: Option<IpAddr>,
    pub master_priority: Option<u8>,
}

/// Why an advert was not acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DiscardReason {
    /// Not running (Initialize) or in Fault.
    NotRunning,
    WrongVrid,
    WrongVersion,
    /// Source or address list of another family than the instance's.
    WrongFamily,
    /// TTL / hop limit not 255 on a multicast instance.
    BadTtl(u8),
    /// VRRPv2 auth type differs from ours.
    AuthTypeMismatch {
        ours: u8,
        theirs: u8,
    },
    /// VRRPv2 PASS data differs.
    AuthPassMismatch,
    /// VRRPv2 IPsec AH: not implemented, so never accepted.
    AuthAhUnsupported,
    /// VRRPv2 advert interval differs from ours (RFC 3768 §7.1).
    IntervalMismatch {
        ours_cs: u16,
        theirs_cs: u16,
    },
    /// Multicast advert on a unicast instance, or the reverse.
    UnicastMismatch,
    /// Address count differs from our VIP count.
    AddressCountMismatch {
        ours: usize,
        theirs: usize,
    },
    /// One of our VIPs is not in the advert.
    AddressListMismatch,
    /// `check_unicast_src`: source is not a configured peer.
    UnicastSourceNotPeer,
    /// Backup with preemption: lower-priority advert ignored so that the
    /// down timer runs out and we take over.
    LowerPriority,
}

impl DiscardReason {
    /// Every value [`DiscardReason::label`] returns.
    pub const LABELS: [&'static str; 14] = [
        "not_running",
        "wrong_vrid",
        "wrong_version",
        "wrong_family",
        "bad_ttl",
        "auth_type_mismatch",
        "auth_pass_mismatch",
        "auth_ah_unsupported",
        "interval_mismatch",
        "unicast_mismatch",
        "address_count_mismatch",
        "address_list_mismatch",
        "unicast_source_not_peer",
        "lower_priority",
    ];

    /// The name status and metrics count this reason under.
    pub fn label(&self) -> &'static str {
        match self {
            DiscardReason::NotRunning => "not_running",
            DiscardReason::WrongVrid => "wrong_vrid",
            DiscardReason::WrongVersion => "wrong_version",
            DiscardReason::WrongFamily => "wrong_family",
            DiscardReason::BadTtl(_) => "bad_ttl",
            DiscardReason::AuthTypeMismatch { .. } => "auth_type_mismatch",
            DiscardReason::AuthPassMismatch => "auth_pass_mismatch",
            DiscardReason::AuthAhUnsupported => "auth_ah_unsupported",
            DiscardReason::IntervalMismatch { .. } => "interval_mismatch",
            DiscardReason::UnicastMismatch => "unicast_mismatch",
            DiscardReason::AddressCountMismatch { .. } => "address_count_mismatch",
            DiscardReason::AddressListMismatch => "address_list_mismatch",
            DiscardReason::UnicastSourceNotPeer => "unicast_source_not_peer",
            DiscardReason::LowerPriority => "lower_priority",
        }
    }
}

/// keepalived events that are not state changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Event {
    /// Effective priority changed (tracking weights, owner conflict, reload).
    PriorityChanged { from: u8, to: u8 },
    /// As Master, saw a lower-priority advert: another router thinks it is
    /// master (keepalived's `notify_master_rx_lower_pri`).
    MasterRxLowerPriority { from: IpAddr, priority: u8 },
    /// Another router also claims priority 255; ours drops to 254
    /// (keepalived's workaround for this configuration error).
    OwnerConflict { other: IpAddr },
    /// Equal-priority advert carrying our own primary address.
    OwnAddressSeen,
    /// As Master, another MAC claimed one of our VIPs; `reannounced` says
    /// whether we answered (at most once per advert interval per VIP).
    VipClaimed {
        addr: IpAddr,
        mac: [u8; 6],
        reannounced: bool,
    },
}

/// What the runtime must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Record the transition (first, so its time precedes its effects).
    Transition(Transition),
    /// Send one advert with these fields and the configured VIPs.
    SendAdvert {
        priority: u8,
        interval_cs: u16,
    },
    /// Add every configured VIP.
    AddVips,
    /// Remove every configured VIP.
    RemoveVips,
    /// Reload while Master changed the VIP list: add and remove these, and
    /// announce the added ones.
    UpdateVips {
        added: Vec<IpAddr>,
        removed: Vec<IpAddr>,
    },
    /// Announce every VIP: gratuitous ARP (IPv4) or unsolicited NA (IPv6),
    /// `count` times per address, `spacing_ns` apart on the interface
    /// (`garp_interval` / `gna_interval`). The sender does the spacing: the
    /// state machine only decides when a batch starts.
    SendGratuitous {
        count: u32,
        spacing_ns: u64,
    },
    /// Announce once each VIP that lives on another interface than the
    /// instance's (`garp_extra_if`).
    SendGratuitousExtraIf,
    /// Announce one VIP once, now (a claim of it by another MAC): one
    /// gratuitous ARP or unsolicited NA.
    Reannounce {
        addr: IpAddr,
    },
    /// For each VIP, whether another MAC claimed it after the time given
    /// (when it was last re-announced); the runtime answers each such claim
    /// with an [`Input::Conflict`] carrying its time.
    CheckClaims {
        since: Vec<(IpAddr, u64)>,
    },
    /// Run notify scripts / write the notify FIFO, in order.
    Notify {
        from: State,
        to: State,
    },
    /// Arm (or re-arm) a timer at an absolute CLOCK_MONOTONIC deadline; a
    /// deadline not after now means "fire at once".
    ArmTimer {
        kind: TimerKind,
        at_ns: u64,
    },
    CancelTimer(TimerKind),
    /// An advert that was not acted on (for counters and logs).
    Discarded(DiscardReason),
    Event(Event),
    /// A reload was refused; the old configuration stays.
    ReloadRejected(ConfigError),
    /// Sync-group member only: the down timer expired but the group holds
    /// the member in Backup until all members can become master. Consumed
    /// by [`super::SyncGroup`]; a runtime driving a plain router never sees it.
    SyncWantMaster,
}
