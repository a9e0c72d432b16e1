//! The state machine's own configuration: plain values, keepalived defaults.
//!
//! The runtime maps keepalived's `vrrp_instance` (plus `global_defs`
//! defaults) onto [`RouterConfig`]. [`RouterConfig::normalize`] applies the
//! adjustments keepalived makes with a warning ("resetting ..."), and
//! [`RouterConfig::validate`] refuses what keepalived refuses.

use std::net::IpAddr;

use thiserror::Error;

use crate::packet::{Auth, Version};

use super::tracked::{TrackState, TrackerId};

/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;
/// Nanoseconds per centisecond.
pub const NS_PER_CS: u64 = 10_000_000;
/// The address owner's priority.
pub const PRIORITY_OWNER: u8 = 255;
/// Priority of the advert a master sends when it stops.
pub const PRIORITY_STOP: u8 = 0;

/// Address family of the instance (VRRPv3 runs one router per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// keepalived `state MASTER|BACKUP`: only a hint. A non-owner always starts
/// in Backup; MASTER only disables `nopreempt` and `preempt_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum InitialState {
    Master,
    #[default]
    Backup,
}

/// Gratuitous ARP / unsolicited NA scheduling (keepalived names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GarpConfig {
    /// `garp_master_delay`: second batch after becoming master (0 = none).
    pub master_delay_ns: u64,
    /// `garp_master_repeat`: messages per address per batch.
    pub master_repeat: u32,
    /// `garp_master_refresh`: periodic batch while master (0 = off).
    pub master_refresh_ns: u64,
    /// `garp_master_refresh_repeat`.
    pub master_refresh_repeat: u32,
    /// `garp_lower_prio_delay`: delayed batch after a lower-priority advert.
    pub lower_prio_delay_ns: u64,
    /// `garp_lower_prio_repeat`: batch sent when a lower-priority advert is
    /// seen as master (re-announces after a split brain heals).
    pub lower_prio_repeat: u32,
    /// `garp_interval`: spacing between GARPs (IPv4).
    pub interval_ns: u64,
    /// `gna_interval`: spacing between unsolicited NAs (IPv6).
    pub na_interval_ns: u64,
    /// `garp_extra_if`: while master, one GARP/NA for each VIP on another
    /// interface than the instance's, this often (0 = off), so the
    /// switches keep the MACs that carry no adverts.
    pub extra_if_ns: u64,
}

impl Default for GarpConfig {
    /// keepalived's defaults: 5 messages at once and 5 more 5 s later, no
    /// refresh; the lower-priority batch copies the master values.
    fn default() -> Self {
        Self {
            master_delay_ns: 5 * NS_PER_S,
            master_repeat: 5,
            master_refresh_ns: 0,
            master_refresh_repeat: 1,
            lower_prio_delay_ns: 5 * NS_PER_S,
            lower_prio_repeat: 5,
            interval_ns: 0,
            na_interval_ns: 0,
            extra_if_ns: 0,
        }
    }
}

impl GarpConfig {
    /// keepalived `vrrp_min_garp`: one message, no second batch, no refresh.
    pub fn min_garp() -> Self {
        Self {
            master_delay_ns: 0,
            master_repeat: 1,
            master_refresh_ns: 0,
            master_refresh_repeat: 0,
            lower_prio_delay_ns: 0,
            lower_prio_repeat: 1,
            ..Self::default()
        }
    }
}

/// How a tracked object's state turns into priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackerKind {
    /// Up/down objects: `track_interface`, `track_script`, `track_process`,
    /// `track_bfd`.
    Binary,
    /// `track_file`: the file's number times the weight.
    Value,
}

/// One tracked object as the instance sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    pub id: TrackerId,
    pub kind: TrackerKind,
    /// -254..=254; 0 means "failure puts the instance in FAULT".
    pub weight: i32,
    /// keepalived `reverse`: the adjustment goes the other way.
    pub reverse: bool,
    /// State assumed until the first report.
    pub initial: TrackState,
}

/// Pure configuration of one VRRP instance.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    pub name: String,
    pub vrid: u8,
    pub version: Version,
    pub family: Family,
    /// Base priority 1..=255 (255 = address owner).
    pub priority: u8,
    /// Our advert interval in centiseconds (VRRPv2: a multiple of 100).
    pub advert_int_cs: u16,
    pub initial_state: InitialState,
    pub nopreempt: bool,
    pub preempt_delay_ns: u64,
    /// Accept mode (keepalived default on); used by the runtime only.
    pub accept: bool,
    pub lower_prio_no_advert: bool,
    pub higher_prio_send_advert: bool,
    /// Adverts missed before the master is declared down (RFC: 3).
    pub down_timer_adverts: u32,
    /// VRRPv2 authentication; `Auth::None` for VRRPv3.
    pub auth: Auth,
    /// Our primary address: advert source and tie-break value.
    pub primary_addr: IpAddr,
    /// The advertised virtual addresses (IPv6: the first is link-local).
    pub vips: Vec<IpAddr>,
    pub strict: bool,
    pub garp: GarpConfig,
    /// keepalived `skip_check_adv_addr`: skip the address-list check when
    /// the advert comes from the master we already know.
    pub skip_check_adv_addr: bool,
    /// keepalived `check_unicast_src`.
    pub check_unicast_src: bool,
    /// Unicast peers; empty = multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Check TTL/hop limit = 255 on multicast adverts (keepalived always
    /// does; unicast is never checked).
    pub check_ttl: bool,
    pub trackers: Vec<TrackerConfig>,
}

impl RouterConfig {
    /// A configuration with keepalived's defaults for everything not given.
    pub fn new(
        name: impl Into<String>,
        vrid: u8,
        version: Version,
        priority: u8,
        primary_addr: IpAddr,
        vips: Vec<IpAddr>,
    ) -> Self {
        Self {
            name: name.into(),
            vrid,
            version,
            family: Family::of(&primary_addr),
            priority,
            advert_int_cs: 100,
            initial_state: InitialState::Backup,
            nopreempt: false,
            preempt_delay_ns: 0,
            accept: true,
            lower_prio_no_advert: false,
            higher_prio_send_advert: false,
            down_timer_adverts: 3,
            auth: Auth::None,
            primary_addr,
            vips,
            strict: false,
            garp: GarpConfig::default(),
            skip_check_adv_addr: false,
            check_unicast_src: false,
            unicast_peers: Vec::new(),
            check_ttl: true,
            trackers: Vec::new(),
        }
    }

    /// Refuses what no VRRP router can run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vrid == 0 {
            return Err(ConfigError::ZeroVrid);
        }
        if self.priority == 0 {
            return Err(ConfigError::ZeroPriority);
        }
        match self.version {
            Version::V2 => {
                if self.family == Family::V6 {
                    return Err(ConfigError::V2OverIpv6);
                }
                let cs = self.advert_int_cs;
                if cs == 0 || !cs.is_multiple_of(100) || cs / 100 > 255 {
                    return Err(ConfigError::BadInterval(cs));
                }
                if matches!(self.auth, Auth::Ah(_) | Auth::Other(..)) {
                    return Err(ConfigError::UnsupportedAuth(self.auth.type_code()));
                }
            }
            Version::V3 => {
                if self.advert_int_cs == 0 || self.advert_int_cs > 4095 {
                    return Err(ConfigError::BadInterval(self.advert_int_cs));
                }
                if self.auth != Auth::None {
                    return Err(ConfigError::AuthWithV3);
                }
            }
        }
        if self.down_timer_adverts == 0 {
            return Err(ConfigError::ZeroDownTimerAdverts);
        }
        if Family::of(&self.primary_addr) != self.family {
            return Err(ConfigError::WrongFamily(self.primary_addr));
        }
        if self.vips.is_empty() {
            return Err(ConfigError::NoVips);
        }
        if self.vips.len() > 255 {
            return Err(ConfigError::TooManyVips(self.vips.len()));
        }
        if let Some(bad) = self
            .vips
            .iter()
            .chain(&self.unicast_peers)
            .find(|a| Family::of(a) != self.family)
        {
            return Err(ConfigError::WrongFamily(*bad));
        }
        if self.strict {
            if self.auth != Auth::None {
                return Err(ConfigError::StrictAuth);
            }
            if !self.unicast_peers.is_empty() {
                return Err(ConfigError::StrictUnicast);
            }
            if let (Family::V6, Some(IpAddr::V6(first))) = (self.family, self.vips.first())
                && !first.is_unicast_link_local()
            {
                return Err(ConfigError::StrictFirstV6NotLinkLocal);
            }
        }
        for t in &self.trackers {
            if !(-254..=254).contains(&t.weight) {
                return Err(ConfigError::BadWeight(t.id, t.weight));
            }
        }
        let mut ids: Vec<TrackerId> = self.trackers.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateTracker(w[0]));
        }
        Ok(())
    }

    /// keepalived's silent or warned adjustments ("... - resetting").
    pub fn normalize(&mut self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        if self.priority == PRIORITY_OWNER && self.nopreempt {
            self.nopreempt = false;
            warnings.push(ConfigWarning::NopreemptWithOwner);
        }
        if self.initial_state == InitialState::Master {
            if self.nopreempt {
                self.nopreempt = false;
                warnings.push(ConfigWarning::NopreemptWithStateMaster);
            }
            if self.preempt_delay_ns != 0 {
                self.preempt_delay_ns = 0;
                warnings.push(ConfigWarning::PreemptDelayWithStateMaster);
            }
        }
        if self.preempt_delay_ns != 0 && self.nopreempt {
            self.preempt_delay_ns = 0;
            warnings.push(ConfigWarning::PreemptDelayWithNopreempt);
        }
        if self.strict {
            if self.preempt_delay_ns != 0 {
                self.preempt_delay_ns = 0;
                warnings.push(ConfigWarning::StrictPreemptDelay);
            }
            // In strict mode keepalived defaults this on and forces it on.
            self.lower_prio_no_advert = true;
            if self.higher_prio_send_advert {
                self.higher_prio_send_advert = false;
                warnings.push(ConfigWarning::StrictHigherPrioSendAdvert);
            }
            if self.garp.lower_prio_repeat != 0 || self.garp.lower_prio_delay_ns != 0 {
                self.garp.lower_prio_repeat = 0;
                self.garp.lower_prio_delay_ns = 0;
            }
            if self.accept && self.priority != PRIORITY_OWNER && self.version == Version::V2 {
                self.accept = false;
                warnings.push(ConfigWarning::StrictAcceptV2);
            }
            self.check_ttl = true;
        }
        warnings
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("virtual_router_id must be 1..255")]
    ZeroVrid,
    #[error("priority must be 1..255")]
    ZeroPriority,
    #[error("VRRPv2 runs over IPv4 only")]
    V2OverIpv6,
    #[error(
        "advert interval {0} cs is invalid: VRRPv2 needs whole seconds 1..255, VRRPv3 1..4095 cs"
    )]
    BadInterval(u16),
    #[error("authentication type {0} is not supported (PASS only; IPsec AH is not implemented)")]
    UnsupportedAuth(u8),
    #[error("authentication exists in VRRPv2 only")]
    AuthWithV3,
    #[error("down_timer_adverts must be at least 1")]
    ZeroDownTimerAdverts,
    #[error("address {0} is not of the instance's family")]
    WrongFamily(IpAddr),
    #[error("an instance needs at least one virtual address")]
    NoVips,
    #[error("{0} virtual addresses do not fit in an advert (max 255)")]
    TooManyVips(usize),
    #[error("vrrp_strict forbids authentication")]
    StrictAuth,
    #[error("vrrp_strict forbids unicast peers")]
    StrictUnicast,
    #[error("vrrp_strict: the first IPv6 virtual address must be link-local")]
    StrictFirstV6NotLinkLocal,
    #[error("tracker {0:?}: weight {1} outside -254..254")]
    BadWeight(TrackerId, i32),
    #[error("tracker {0:?} is listed twice")]
    DuplicateTracker(TrackerId),
}

/// Settings keepalived changes with a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigWarning {
    NopreemptWithOwner,
    NopreemptWithStateMaster,
    PreemptDelayWithStateMaster,
    PreemptDelayWithNopreempt,
    StrictPreemptDelay,
    StrictHigherPrioSendAdvert,
    StrictAcceptV2,
}

/// Skew_Time in ns, exact: VRRPv2 `(256 − prio) / 256` s; VRRPv3
/// `(256 − prio) × interval / 256` (floored to the ns: the exact value can
/// end in half a nanosecond).
pub fn skew_ns(version: Version, priority: u8, master_adver_int_cs: u16) -> u64 {
    let k = 256 - u64::from(priority);
    match version {
        Version::V2 => k * NS_PER_S / 256,
        Version::V3 => k * u64::from(master_adver_int_cs) * NS_PER_CS / 256,
    }
}

/// Master_Down_Interval in ns: `adverts × Master_Adver_Interval + Skew_Time`,
/// computed with one division so nothing is rounded twice.
pub fn master_down_ns(
    version: Version,
    priority: u8,
    master_adver_int_cs: u16,
    down_timer_adverts: u32,
) -> u64 {
    let interval_ns = u128::from(master_adver_int_cs) * u128::from(NS_PER_CS);
    let k = 256 - u128::from(priority);
    let total = match version {
        Version::V2 => {
            u128::from(down_timer_adverts) * interval_ns + k * u128::from(NS_PER_S) / 256
        }
        Version::V3 => (u128::from(down_timer_adverts) * 256 + k) * interval_ns / 256,
    };
    u64::try_from(total).unwrap_or(u64::MAX)
}
