//! Types shared by the kernel datapath (`xvrrpd-ebpf`) and the agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding so that the byte layout
//! is identical on both sides and `bytemuck::Pod` can be derived user-side.
#![no_std]

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// TTL / hop limit every VRRP advert must carry (RFC 9568 §7.1).
pub const VRRP_TTL: u8 = 255;
/// VRRP header length before the address list.
pub const VRRP_HEADER_LEN: usize = 8;
/// VRRPv2 authentication data length.
pub const VRRP_AUTH_LEN: usize = 8;
/// Longest VRRP message both validators check. Longer ones count as `BadLength`:
/// it bounds the checksum loop in the kernel and still fits any 1500-byte MTU.
pub const MAX_MESSAGE_LEN: usize = 2048;
/// IP packets longer than this (total length, or IPv6 payload length) are
/// no adverts: both validators count them `BadLength` (the kernel's
/// verifier needs a bound it tracks before such a length offsets a packet
/// pointer). The longest advert is
/// IPv6 with 255 addresses: 4,088 bytes of VRRP.
pub const MAX_VRRP_PACKET: usize = 8192;
/// Bytes of address list copied into an [`AdvertEvent`]: 64 IPv4 or 16 IPv6 addresses.
pub const EVENT_ADDR_BYTES: usize = 256;

pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// Which checksum form a received advert used.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumForm {
    /// VRRPv2: over the VRRP message only.
    V2Message = 0,
    /// VRRPv3 with the IP pseudo-header (IPv6 always; IPv4 keepalived's default).
    V3PseudoHeader = 1,
    /// VRRPv3/IPv4 without pseudo-header (RFC 9568 text, keepalived `v3_checksum_as_v2`).
    V3Plain = 2,
    /// VRRPv3/IPv4 unicast with the pseudo-header's destination taken as
    /// 224.0.0.18, not the peer (keepalived 1.3.5 and before; its
    /// `old_unicast_checksum`). Accepted only with [`VRID_FLAG_OLD_CHECKSUM`].
    V3OldUnicast = 3,
}

impl ChecksumForm {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::V2Message),
            1 => Some(Self::V3PseudoHeader),
            2 => Some(Self::V3Plain),
            3 => Some(Self::V3OldUnicast),
            _ => None,
        }
    }
}

/// `AdvertEvent::flags`: the advert had more addresses than the event holds.
pub const EVENT_FLAG_ADDRS_TRUNCATED: u8 = 1;
/// `AdvertEvent::flags`: the destination was not a multicast address (unicast peer).
pub const EVENT_FLAG_UNICAST: u8 = 2;

/// A validated VRRP advertisement, as pushed to the ring buffer by the kernel
/// (or produced by the raw-socket fallback, which fills the same record).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct AdvertEvent {
    /// CLOCK_MONOTONIC nanoseconds at reception (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    pub ifindex: u32,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Advert interval in centiseconds (VRRPv2 seconds × 100).
    pub interval_cs: u16,
    /// Address count as sent in the header.
    pub addr_count: u8,
    /// VRRPv2 auth type (0 for VRRPv3).
    pub auth_type: u8,
    /// A [`ChecksumForm`] value.
    pub checksum_form: u8,
    /// `EVENT_FLAG_*` bits.
    pub flags: u8,
    /// TTL / hop limit as received.
    pub ttl: u8,
    pub _pad0: u8,
    /// Number of valid bytes in `addrs`.
    pub addr_bytes: u16,
    pub _pad1: [u8; 6],
    /// Source address; IPv4 in the first four bytes, rest zero.
    pub src: [u8; 16],
    /// Destination address; IPv4 in the first four bytes, rest zero.
    pub dst: [u8; 16],
    /// VRRPv2 authentication data (zero for VRRPv3).
    pub auth_data: [u8; 8],
    /// The advert's addresses in network order, back to back.
    pub addrs: [u8; EVENT_ADDR_BYTES],
}

impl AdvertEvent {
    pub const fn zeroed() -> Self {
        Self {
            ts_ns: 0,
            ifindex: 0,
            family: 0,
            version: 0,
            vrid: 0,
            priority: 0,
            interval_cs: 0,
            addr_count: 0,
            auth_type: 0,
            checksum_form: 0,
            flags: 0,
            ttl: 0,
            _pad0: 0,
            addr_bytes: 0,
            _pad1: [0; 6],
            src: [0; 16],
            dst: [0; 16],
            auth_data: [0; 8],
            addrs: [0; EVENT_ADDR_BYTES],
        }
    }
}

/// Key of the VRID map: which `(ifindex, family, vrid)` the agent runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct VridKey {
    pub ifindex: u32,
    pub family: u8,
    pub vrid: u8,
    pub _pad: [u8; 2],
}

impl VridKey {
    pub const fn new(ifindex: u32, family: u8, vrid: u8) -> Self {
        Self {
            ifindex,
            family,
            vrid,
            _pad: [0; 2],
        }
    }
}

/// `VridConfig::flags`: require TTL / hop limit 255 (off for keepalived-style unicast).
pub const VRID_FLAG_CHECK_TTL: u8 = 1;
/// Accept VRRPv3/IPv4 adverts whose checksum is [`ChecksumForm::V3OldUnicast`].
pub const VRID_FLAG_OLD_CHECKSUM: u8 = 2;
/// The destination keepalived 1.3.5 and before put in a unicast VRRPv3
/// advert's pseudo-header: the IPv4 VRRP group.
pub const OLD_UNICAST_CHECKSUM_GROUP: [u8; 4] = [224, 0, 0, 18];

/// What the kernel checks for one configured VRID before it wakes the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct VridConfig {
    /// `VRID_FLAG_*` bits.
    pub flags: u8,
    /// VRRPv2 auth type expected (0 none, 1 PASS, 2 AH); ignored for VRRPv3.
    pub auth_type: u8,
    /// VRRPv2 advert interval in seconds that must match (0: do not check).
    pub v2_interval_s: u8,
    pub _pad: [u8; 5],
    /// VRRPv2 PASS data, zero padded.
    pub auth_data: [u8; 8],
}

/// Per-interface policy: what happens to adverts after classification.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct IfacePolicy {
    /// 1: drop invalid adverts in the kernel (default); 0: pass them to the stack.
    pub drop_invalid: u8,
    /// 1: drop adverts for VRIDs not configured here; 0: pass them (default), so
    /// other VRRP daemons on the host still see theirs.
    pub drop_unknown_vrid: u8,
    /// 1: drop valid adverts once delivered to the agent (default); 0: also pass
    /// them to the stack (e.g. for a local packet capture).
    pub drop_delivered: u8,
    pub _pad: [u8; 5],
}

impl IfacePolicy {
    pub const DEFAULT: Self = Self {
        drop_invalid: 1,
        drop_unknown_vrid: 0,
        drop_delivered: 1,
        _pad: [0; 5],
    };
}

/// Kernel counters, one slot each in a per-CPU array. Non-VRRP traffic is not
/// counted: that path must stay as short as possible.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Valid advert delivered to the agent.
    Accepted = 0,
    /// VRRP for a VRID not configured on this interface, passed to the stack.
    Passed = 1,
    BadTtl = 2,
    BadVersion = 3,
    BadType = 4,
    BadLength = 5,
    BadChecksum = 6,
    UnknownVrid = 7,
    RingbufFull = 8,
    BadAddrCount = 9,
    BadInterval = 10,
    BadAuth = 11,
    /// IPv4 fragment carrying VRRP: never valid.
    Fragment = 12,
    /// A foreign MAC claimed a guarded VIP; reported to the agent.
    ClaimReported = 13,
    /// Such a claim within the VIP's report interval: not reported again.
    ClaimLimited = 14,
    /// Another router's advert for a VRID whose lease had lapsed (the agent
    /// died or hung while MASTER): its VIPs are fenced towards that router.
    FenceEngaged = 15,
    /// An ARP request, neighbour solicitation or packet for a fenced VIP
    /// dropped (packets that could not be turned into an announcement).
    FenceDropped = 16,
    /// A packet for a fenced VIP answered with an announcement of the owner.
    FenceRedirected = 17,
    /// A valid advert identical to the one the agent accepted from the
    /// master: its time recorded in the kernel, the agent not woken.
    Heard = 18,
    /// A master-down timer ran out in the kernel (no kept advert for a
    /// Master_Down_Interval): the agent was told.
    DownExpired = 19,
    /// A packet to a VIP of a master in non-accept mode (`no_accept`, or
    /// strict mode), dropped (RFC 9568 §6.4.3).
    NotAccepted = 20,
}

pub const COUNTER_COUNT: u32 = 21;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Accepted,
        Counter::Passed,
        Counter::BadTtl,
        Counter::BadVersion,
        Counter::BadType,
        Counter::BadLength,
        Counter::BadChecksum,
        Counter::UnknownVrid,
        Counter::RingbufFull,
        Counter::BadAddrCount,
        Counter::BadInterval,
        Counter::BadAuth,
        Counter::Fragment,
        Counter::ClaimReported,
        Counter::ClaimLimited,
        Counter::FenceEngaged,
        Counter::FenceDropped,
        Counter::FenceRedirected,
        Counter::Heard,
        Counter::DownExpired,
        Counter::NotAccepted,
    ];

    /// Stable snake_case name used in status output and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Accepted => "accepted",
            Counter::Passed => "passed",
            Counter::BadTtl => "bad_ttl",
            Counter::BadVersion => "bad_version",
            Counter::BadType => "bad_type",
            Counter::BadLength => "bad_length",
            Counter::BadChecksum => "bad_checksum",
            Counter::UnknownVrid => "unknown_vrid",
            Counter::RingbufFull => "ringbuf_full",
            Counter::BadAddrCount => "bad_addr_count",
            Counter::BadInterval => "bad_interval",
            Counter::BadAuth => "bad_auth",
            Counter::Fragment => "fragment",
            Counter::ClaimReported => "claim_reported",
            Counter::ClaimLimited => "claim_limited",
            Counter::FenceEngaged => "fence_engaged",
            Counter::FenceDropped => "fence_dropped",
            Counter::FenceRedirected => "fence_redirected",
            Counter::Heard => "heard",
            Counter::DownExpired => "down_expired",
            Counter::NotAccepted => "not_accepted",
        }
    }

    /// Whether this outcome is an invalid advert (subject to `drop_invalid`).
    pub const fn is_invalid(self) -> bool {
        !matches!(
            self,
            Counter::Accepted
                | Counter::Passed
                | Counter::UnknownVrid
                | Counter::RingbufFull
                | Counter::ClaimReported
                | Counter::ClaimLimited
                | Counter::FenceEngaged
                | Counter::FenceDropped
                | Counter::FenceRedirected
                | Counter::Heard
                | Counter::DownExpired
                | Counter::NotAccepted
        )
    }
}

/// Key of the guard map: one of our VIPs on an interface the datapath
/// watches. IPv4 in the first four bytes of `addr`, rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct GuardKey {
    pub ifindex: u32,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}

impl GuardKey {
    pub const fn new(ifindex: u32, family: u8, addr: [u8; 16]) -> Self {
        Self {
            ifindex,
            family,
            _pad: [0; 3],
            addr,
        }
    }
}

/// A guarded VIP: whose MAC may claim it, and how often the kernel may
/// report a foreign claim (the agent writes those, the kernel the times
/// and the last claimant).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct GuardValue {
    /// The MAC our own announcements carry.
    pub mac: [u8; 6],
    /// The VRID and family of the instance holding the VIP: its lease
    /// (keyed like the VRID map) decides the fence.
    pub vrid: u8,
    pub family: u8,
    /// At most one report per this many nanoseconds (the advert interval).
    pub min_interval_ns: u64,
    /// `bpf_ktime_get_ns` of the last report (0: none yet).
    pub last_report_ns: u64,
    /// `bpf_ktime_get_ns` of the last foreign claim, reported or not (0:
    /// none): the agent looks at it one interval after a re-announce.
    pub last_claim_ns: u64,
    /// Who made that claim.
    pub last_claim_mac: [u8; 6],
    /// `GUARD_FLAG_*`.
    pub flags: u8,
    pub _pad2: u8,
}

/// The guard's MAC is a VMAC every router of the VRID owns: a fenced
/// packet is dropped, never answered, since any frame sent from that MAC
/// would move it to this host in every switch.
pub const GUARD_FLAG_SHARED_MAC: u8 = 1;
/// The instance is in non-accept mode: IP packets to the VIP are dropped
/// while [`MAP_NO_ACCEPT`]'s slot is set (ARP and neighbour discovery pass).
pub const GUARD_FLAG_NO_ACCEPT: u8 = 2;

/// Where IGMP/MLD reports leaving a VMAC go instead (keyed by the VMAC's
/// ifindex): out of its base, from the base's MAC, so no switch learns the
/// VMAC on a host that does not own it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct VmacBase {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// A claim of a guarded VIP by a foreign MAC (gratuitous ARP, ARP reply, or
/// neighbour advertisement), pushed to the same ring as [`AdvertEvent`]s.
/// The agent tells the two apart by record length (this one is far shorter),
/// so advert readers that skip unknown records keep working.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ClaimEvent {
    /// CLOCK_MONOTONIC nanoseconds at reception.
    pub ts_ns: u64,
    pub ifindex: u32,
    /// [`FAMILY_IPV4`] (ARP) or [`FAMILY_IPV6`] (NA).
    pub family: u8,
    pub _pad0: [u8; 3],
    /// The claimed address; IPv4 in the first four bytes.
    pub addr: [u8; 16],
    /// The claimant: ARP sender hardware address, or the NA's target
    /// link-layer address option (the Ethernet source without one).
    pub mac: [u8; 6],
    pub _pad1: [u8; 2],
}

/// The router the kernel saw advertising a VRID after this daemon's lease
/// for it lapsed (written by the kernel only). While `valid_until_ns` is
/// ahead, the VRID's guarded VIPs are fenced: ARP requests and neighbour
/// solicitations for them are dropped, and packets sent to them are answered
/// with an announcement that the VIP is at `mac`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FenceOwner {
    /// CLOCK_MONOTONIC ns until which the owner counts as alive (four of its
    /// advert intervals after its last advert).
    pub valid_until_ns: u64,
    /// The advert's Ethernet source.
    pub mac: [u8; 6],
    pub priority: u8,
    pub _pad: u8,
}

/// Four advert intervals: the owner's adverts refresh the fence well before
/// it lifts, and a fence outlives a dead owner by about a master-down interval.
pub const FENCE_OWNER_INTERVALS: u64 = 4;

/// What a healthy master's adverts look like, as the agent accepted them
/// (agent-written, map `QUIET`). While an advert for the VRID matches every
/// field but `down_ns`, the kernel records when it came (map `HEARD`) and
/// wakes nobody: a backup hearing a healthy master sleeps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct QuietAdvert {
    /// Source address; IPv4 in the first four bytes.
    pub src: [u8; 16],
    /// [`addr_hash_step`] over the advert's address list words as carried
    /// in an [`AdvertEvent`] (its first [`EVENT_ADDR_BYTES`]).
    pub addr_hash: u32,
    pub priority: u8,
    pub version: u8,
    pub ttl: u8,
    /// `EVENT_FLAG_*` bits.
    pub flags: u8,
    pub interval_cs: u16,
    pub addr_count: u8,
    pub auth_type: u8,
    pub checksum_form: u8,
    pub _pad: [u8; 3],
    pub auth_data: [u8; 8],
    /// Master_Down_Interval the agent counts from each of these adverts
    /// (not compared).
    pub down_ns: u64,
}

/// Words of a [`QuietAdvert`] compared against a received advert (all but
/// `down_ns`).
pub const QUIET_COMPARED_WORDS: usize = 5;

/// One step of the address-list hash (FNV-1a over 32-bit words as they
/// sit in memory), the same in the kernel and in the agent.
#[inline(always)]
pub const fn addr_hash_step(hash: u32, word: u32) -> u32 {
    (hash ^ word).wrapping_mul(0x0100_0193)
}

/// Start value of the address-list hash.
pub const ADDR_HASH_SEED: u32 = 0x811c_9dc5;

impl QuietAdvert {
    /// The fingerprint of a delivered advert, as the kernel computes it for
    /// the same packet.
    pub fn of_event(ev: &AdvertEvent) -> Self {
        let bytes = if (ev.addr_bytes as usize) < EVENT_ADDR_BYTES {
            ev.addr_bytes as usize
        } else {
            EVENT_ADDR_BYTES
        };
        let mut hash = ADDR_HASH_SEED;
        let mut i = 0;
        while i + 4 <= bytes {
            let w = u32::from_ne_bytes([
                ev.addrs[i],
                ev.addrs[i + 1],
                ev.addrs[i + 2],
                ev.addrs[i + 3],
            ]);
            hash = addr_hash_step(hash, w);
            i += 4;
        }
        Self {
            src: ev.src,
            addr_hash: hash,
            priority: ev.priority,
            version: ev.version,
            ttl: ev.ttl,
            flags: ev.flags,
            interval_cs: ev.interval_cs,
            addr_count: ev.addr_count,
            auth_type: ev.auth_type,
            checksum_form: ev.checksum_form,
            _pad: [0; 3],
            auth_data: ev.auth_data,
            down_ns: 0,
        }
    }
}

/// The kernel's down timer (kernels with BPF timers) fires this long before
/// the deadline: the agent, woken, spins the rest while still watching for
/// the master, as for its own down timers.
pub const DOWN_TIMER_LEAD_NS: u64 = 600_000;

/// A VRID's down timer ran out in the kernel: no advert was kept for it
/// since `last_ns` and its deadline is `DOWN_TIMER_LEAD_NS` away. Pushed
/// to the same ring as [`AdvertEvent`]s, told apart by length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct DownEvent {
    /// CLOCK_MONOTONIC ns when the timer fired.
    pub fired_ns: u64,
    /// The last kept advert's receive time + the agent's `down_ns`.
    pub deadline_ns: u64,
    /// When the last kept advert came.
    pub last_ns: u64,
    pub key: VridKey,
}

/// What the kernel recorded of the adverts it kept from the agent
/// (kernel-written, map `HEARD`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Heard {
    /// CLOCK_MONOTONIC ns of the last such advert.
    pub last_ns: u64,
    /// How many there were.
    pub count: u64,
    /// 1: the kernel's down timer for the VRID runs since that advert (0:
    /// it could not start one, or the programs have no timers).
    pub timed: u64,
}

const _: () = assert!(core::mem::size_of::<QuietAdvert>() == (QUIET_COMPARED_WORDS + 1) * 8);
// The agent's record demultiplexing relies on these two sizes differing.
const _: () = assert!(core::mem::size_of::<ClaimEvent>() != core::mem::size_of::<AdvertEvent>());
const _: () = assert!(core::mem::size_of::<DownEvent>() != core::mem::size_of::<AdvertEvent>());
const _: () = assert!(core::mem::size_of::<DownEvent>() != core::mem::size_of::<ClaimEvent>());

/// Map names in the eBPF object.
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_VRIDS: &str = "VRIDS";
pub const MAP_POLICY: &str = "POLICY";
pub const MAP_GUARDS: &str = "GUARDS";
pub const MAP_LEASES: &str = "LEASES";
pub const MAP_OWNERS: &str = "OWNERS";
pub const MAP_ARMED: &str = "ARMED";
pub const MAP_QUIET: &str = "QUIET";
pub const MAP_HEARD: &str = "HEARD";
pub const MAP_TIMERS: &str = "TIMERS";
pub const MAP_VMAC_BASES: &str = "VMAC_BASES";
pub const MAP_NO_ACCEPT: &str = "NO_ACCEPT";
/// Program names in the eBPF object: with the kernel down timer (BPF
/// timers, kernel ≥ 5.15) and without it (`_plain`).
pub const PROG_XDP: &str = "xvrrpd_xdp";
pub const PROG_TC: &str = "xvrrpd_tc";
pub const PROG_XDP_PLAIN: &str = "xvrrpd_xdp_plain";
pub const PROG_TC_PLAIN: &str = "xvrrpd_tc_plain";
/// TC egress of a VMAC: moves its IGMP/MLD reports to its base ([`VmacBase`]).
pub const PROG_VMAC_EGRESS: &str = "xvrrpd_vmac_out";

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of them are #[repr(C)], Copy, and bytemuck::Pod (no padding, any bit pattern valid).
    unsafe impl aya::Pod for super::AdvertEvent {}
    unsafe impl aya::Pod for super::VridKey {}
    unsafe impl aya::Pod for super::VridConfig {}
    unsafe impl aya::Pod for super::IfacePolicy {}
    unsafe impl aya::Pod for super::GuardKey {}
    unsafe impl aya::Pod for super::GuardValue {}
    unsafe impl aya::Pod for super::ClaimEvent {}
    unsafe impl aya::Pod for super::FenceOwner {}
    unsafe impl aya::Pod for super::VmacBase {}
    unsafe impl aya::Pod for super::QuietAdvert {}
    unsafe impl aya::Pod for super::Heard {}
    unsafe impl aya::Pod for super::DownEvent {}
}
