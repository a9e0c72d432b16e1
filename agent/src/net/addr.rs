//! Virtual IP addresses through rtnetlink, each carrying xvrrpd's marker.
//!
//! # The marker
//!
//! A daemon killed with `kill -9` cannot remove its VIPs; the next start must
//! find them without confusing them with addresses an administrator or
//! another daemon configured. Every address xvrrpd adds is therefore marked:
//!
//! * **Kernel ≥ 5.18: `IFA_PROTO` = [`XVRRPD_IFA_PROTO`] (112).** The kernel
//!   stores the byte with the address and reports it in every dump and
//!   notification; it changes nothing else. 112 is VRRP's IP protocol number.
//!   `ip addr` prints it as `proto 112`; adding the line `112 xvrrpd` to
//!   `/etc/iproute2/rt_addrprotos` makes it print `proto xvrrpd`.
//! * **Older kernels (3.9 – 5.17): a valid lifetime of
//!   [`FALLBACK_VALID_LFT`] seconds** (0xFFFFFFFE, about 136 years). It works
//!   for both families (IPv6 addresses have no label to mark). The kernel
//!   counts it down, so an address counts as marked while its remaining valid
//!   lifetime is at least [`FALLBACK_MARK_MIN`] (0xF0000000 s): that holds
//!   for 8.5 years after it was added.
//!
//! What the fallback cannot do, said plainly:
//! * it is a convention, not a tag: an address someone else gave a valid
//!   lifetime above 0xF0000000 s is taken for xvrrpd's and removed by
//!   [`VipManager::remove_stale_marked`];
//! * the address is not "permanent": `ip addr` shows `valid_lft 4294967xxxsec
//!   dynamic` instead of `forever`, and with `keep_addr_on_down=1` the kernel
//!   flushes such IPv6 addresses when the link is set down (xvrrpd removes
//!   VIPs on a link fault anyway);
//! * a `preferred_lft` above the valid lifetime is clamped to it.
//!
//! An IPv4 label suffix was considered and rejected: keepalived configs set
//! their own `label`, labels are limited to 15 bytes including the
//! interface name, and IPv6 has no labels at all.
//!
//! Listing always accepts both marks, so a kernel upgrade or a forced
//! [`MarkerMode`] never loses track of a VIP. The mark says "added by an
//! xvrrpd", not by which instance: two xvrrpd processes in one network
//! namespace would see each other's VIPs as theirs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::{
    AddressFamily,
    address::{
        AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, AddressScope, CacheInfo,
    },
};
use thiserror::Error;
use tokio::sync::Mutex;

use super::nl::{
    self, NLM_F_CREATE, NLM_F_EXCL, NlError, NlSocket, RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR,
};
use netlink_packet_core::Parseable;

/// The `IFA_PROTO` value on every address xvrrpd adds (VRRP's IP protocol
/// number). Kernels ≥ 5.18 keep it with the address.
pub const XVRRPD_IFA_PROTO: u8 = 112;
/// The valid lifetime (seconds) that marks an address on kernels without
/// `IFA_PROTO`.
pub const FALLBACK_VALID_LFT: u32 = 0xFFFF_FFFE;
/// A remaining valid lifetime at or above this (and not infinite) marks an
/// address as xvrrpd's.
pub const FALLBACK_MARK_MIN: u32 = 0xF000_0000;
/// "Forever" in netlink lifetimes.
pub const LIFETIME_INFINITE: u32 = u32::MAX;

const IFA_F_NODAD: u32 = 0x02;
const IFA_F_HOMEADDRESS: u32 = 0x10;
const IFA_F_SECONDARY: u32 = 0x01;
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_DEPRECATED: u32 = 0x20;
const IFA_F_TENTATIVE: u32 = 0x40;
const IFA_F_NOPREFIXROUTE: u32 = 0x200;
const IFA_F_MCAUTOJOIN: u32 = 0x400;

/// Netlink ack errors are small, but keep room for a burst of changes.
const RCVBUF: usize = 1 << 20;

/// Which mark [`VipManager`] writes on the addresses it adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkerMode {
    /// `IFA_PROTO` = [`XVRRPD_IFA_PROTO`] (kernel ≥ 5.18).
    IfaProto,
    /// Valid lifetime [`FALLBACK_VALID_LFT`] (kernels before 5.18).
    Lifetime,
}

impl MarkerMode {
    /// Picks the mode for the running kernel (`/proc/sys/kernel/osrelease`);
    /// `IfaProto` when the version cannot be read.
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| Self::for_kernel_release(&r))
            .unwrap_or(MarkerMode::IfaProto)
    }

    /// The mode for a kernel release string such as `6.1.0-18-amd64`.
    pub fn for_kernel_release(release: &str) -> Self {
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
        match (major, minor) {
            (Some(ma), Some(mi)) if (ma, mi) < (5, 18) => MarkerMode::Lifetime,
            _ => MarkerMode::IfaProto,
        }
    }
}

/// Which mark an address was found with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    IfaProto,
    Lifetime,
}

/// Address scope (`ip addr … scope`). The kernel derives IPv6 scopes from
/// the address itself and ignores this for IPv6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    #[default]
    Global,
    Site,
    Link,
    Host,
    Nowhere,
    Other(u8),
}

impl Scope {
    pub fn code(self) -> u8 {
        match self {
            Scope::Global => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(c) => c,
        }
    }

    pub fn from_code(c: u8) -> Self {
        match c {
            0 => Scope::Global,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            c => Scope::Other(c),
        }
    }
}

/// keepalived's per-address flags (`-nodad`, `noprefixroute`, `home`,
/// `autojoin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipFlags {
    /// IPv6: skip duplicate address detection so the VIP is usable at once.
    pub nodad: bool,
    /// Do not install the prefix route for the address's subnet.
    pub noprefixroute: bool,
    /// IPv6 mobility home address.
    pub home: bool,
    /// Join the multicast group for a multicast address.
    pub autojoin: bool,
}

impl Default for VipFlags {
    fn default() -> Self {
        VipFlags {
            nodad: true,
            noprefixroute: false,
            home: false,
            autojoin: false,
        }
    }
}

/// Identity of an address on a link: what the kernel matches on removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// One virtual IP address as keepalived's `virtual_ipaddress` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Vip {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Point-to-point peer (`peer`).
    pub peer: Option<IpAddr>,
    /// IPv4 broadcast (`brd`); `None` sets none, like `ip addr add` without
    /// `brd`. [`ipv4_broadcast`] computes `brd +`.
    pub broadcast: Option<Ipv4Addr>,
    pub scope: Scope,
    /// IPv4 label (`label`), at most 15 bytes.
    pub label: Option<String>,
    /// Preferred lifetime in seconds (`preferred_lft`); `None` = forever,
    /// `Some(0)` = deprecated (never chosen as a source address). With an
    /// infinite valid lifetime, IPv4 shows this only as the `deprecated`
    /// flag.
    pub preferred_lft: Option<u32>,
    pub flags: VipFlags,
}

impl Vip {
    /// A VIP with keepalived's defaults: scope global, no broadcast, no
    /// label, forever, `nodad`.
    pub fn new(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Self {
        Vip {
            ifindex,
            addr,
            prefix_len,
            peer: None,
            broadcast: None,
            scope: Scope::Global,
            label: None,
            preferred_lft: None,
            flags: VipFlags::default(),
        }
    }

    /// A host VIP: /32 or /128, keepalived's default without a mask.
    pub fn host(ifindex: u32, addr: IpAddr) -> Self {
        Vip::new(ifindex, addr, if addr.is_ipv4() { 32 } else { 128 })
    }

    pub fn key(&self) -> VipKey {
        VipKey {
            ifindex: self.ifindex,
            addr: self.addr,
            prefix_len: self.prefix_len,
        }
    }

    /// Checks what the kernel would refuse or silently ignore.
    pub fn validate(&self) -> Result<(), AddrError> {
        let bad = |why: &str| AddrError::InvalidVip {
            vip: self.addr,
            why: why.to_owned(),
        };
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.ifindex == 0 {
            return Err(bad("no interface (ifindex 0)"));
        }
        if self.prefix_len > max {
            return Err(bad(&format!(
                "prefix length {} is above {max}",
                self.prefix_len
            )));
        }
        if self.addr.is_unspecified() || (self.addr.is_multicast() && !self.flags.autojoin) {
            return Err(bad("not a unicast address"));
        }
        if let Some(p) = self.peer
            && p.is_ipv4() != self.addr.is_ipv4()
        {
            return Err(bad("peer is of the other address family"));
        }
        if self.addr.is_ipv6() {
            if self.broadcast.is_some() {
                return Err(bad("IPv6 has no broadcast address; drop `brd`"));
            }
            if self.label.is_some() {
                return Err(bad("IPv6 addresses cannot carry a label; drop `label`"));
            }
        }
        if let Some(l) = &self.label
            && (l.is_empty() || l.len() > 15 || l.as_bytes().contains(&0))
        {
            return Err(bad("a label is 1 to 15 bytes without NUL"));
        }
        Ok(())
    }

    fn message(&self, mode: MarkerMode) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = if self.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = self.prefix_len;
        m.header.scope = AddressScope::from(self.scope.code());
        m.header.index = self.ifindex;
        let a = &mut m.attributes;
        a.push(AddressAttribute::Local(self.addr));
        a.push(AddressAttribute::Address(self.peer.unwrap_or(self.addr)));
        if let Some(b) = self.broadcast {
            a.push(AddressAttribute::Broadcast(b));
        }
        if let Some(l) = &self.label {
            a.push(AddressAttribute::Label(l.clone()));
        }
        let mut flags = 0u32;
        if self.addr.is_ipv6() && self.flags.nodad {
            flags |= IFA_F_NODAD;
        }
        if self.flags.home {
            flags |= IFA_F_HOMEADDRESS;
        }
        if self.flags.noprefixroute {
            flags |= IFA_F_NOPREFIXROUTE;
        }
        if self.flags.autojoin {
            flags |= IFA_F_MCAUTOJOIN;
        }
        if flags != 0 {
            // The header byte holds the low flags for old kernels; IFA_FLAGS
            // the full set.
            m.header.flags = netlink_packet_route::address::AddressHeaderFlags::from_bits_retain(
                (flags & 0xff) as u8,
            );
            a.push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                flags,
            )));
        }
        let valid = match mode {
            MarkerMode::IfaProto => LIFETIME_INFINITE,
            MarkerMode::Lifetime => FALLBACK_VALID_LFT,
        };
        let preferred = self.preferred_lft.unwrap_or(LIFETIME_INFINITE).min(valid);
        if valid != LIFETIME_INFINITE || preferred != LIFETIME_INFINITE {
            let mut ci = CacheInfo::default();
            ci.ifa_preferred = preferred;
            ci.ifa_valid = valid;
            a.push(AddressAttribute::CacheInfo(ci));
        }
        if mode == MarkerMode::IfaProto {
            a.push(AddressAttribute::Protocol(AddressProtocol::from(
                XVRRPD_IFA_PROTO,
            )));
        }
        m
    }

    fn delete_message(&self) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = if self.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = self.prefix_len;
        m.header.index = self.ifindex;
        m.attributes.push(AddressAttribute::Local(self.addr));
        m.attributes
            .push(AddressAttribute::Address(self.peer.unwrap_or(self.addr)));
        m
    }
}

/// `brd +`: the subnet's broadcast address.
pub fn ipv4_broadcast(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let host_bits = 32u32.saturating_sub(u32::from(prefix_len.min(32)));
    let mask = if host_bits == 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    Ipv4Addr::from(u32::from(addr) | mask)
}

/// An address as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub peer: Option<IpAddr>,
    pub label: Option<String>,
    pub scope: Scope,
    /// `IFA_F_*` flags.
    pub flags: u32,
    /// `IFA_PROTO`, when the kernel reported one.
    pub proto: Option<u8>,
    /// Remaining valid lifetime in seconds; `None` = forever.
    pub valid_lft: Option<u32>,
    /// Remaining preferred lifetime in seconds; `None` = forever.
    pub preferred_lft: Option<u32>,
}

impl AddrInfo {
    /// Which xvrrpd mark the address carries, if any.
    pub fn marker(&self) -> Option<Marker> {
        if self.proto == Some(XVRRPD_IFA_PROTO) {
            Some(Marker::IfaProto)
        } else if matches!(self.valid_lft, Some(v) if v >= FALLBACK_MARK_MIN) {
            Some(Marker::Lifetime)
        } else {
            None
        }
    }

    pub fn is_marked(&self) -> bool {
        self.marker().is_some()
    }

    pub fn key(&self) -> VipKey {
        VipKey {
            ifindex: self.ifindex,
            addr: self.addr,
            prefix_len: self.prefix_len,
        }
    }

    pub fn is_secondary(&self) -> bool {
        self.flags & IFA_F_SECONDARY != 0
    }

    /// IPv6 DAD still running or failed: the address cannot be used yet.
    pub fn is_tentative(&self) -> bool {
        self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0
    }

    pub fn is_deprecated(&self) -> bool {
        self.flags & IFA_F_DEPRECATED != 0
    }

    /// Parses an `ifaddrmsg` payload (dump entry or notification).
    pub(crate) fn parse(payload: &[u8]) -> Option<AddrInfo> {
        let m = AddressMessage::parse(payload).ok()?;
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut flags = u32::from(m.header.flags.bits());
        let mut proto = None;
        let mut cache = None;
        for a in m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                AddressAttribute::Label(l) => label = Some(l),
                AddressAttribute::Flags(f) => flags = f.bits(),
                AddressAttribute::Protocol(p) => proto = Some(u8::from(p)),
                AddressAttribute::CacheInfo(c) => cache = Some(c),
                _ => {}
            }
        }
        let addr = local.or(address)?;
        let peer = match (local, address) {
            (Some(l), Some(a)) if l != a => Some(a),
            _ => None,
        };
        let lft = |v: u32| (v != LIFETIME_INFINITE).then_some(v);
        Some(AddrInfo {
            ifindex: m.header.index,
            addr,
            prefix_len: m.header.prefix_len,
            peer,
            label,
            scope: Scope::from_code(u8::from(m.header.scope)),
            flags,
            proto,
            valid_lft: cache.and_then(|c| lft(c.ifa_valid)),
            preferred_lft: cache.and_then(|c| lft(c.ifa_preferred)),
        })
    }
}

/// What an add did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// The address was already on the link (EEXIST). It may lack xvrrpd's
    /// mark if someone else configured it: see [`AddrInfo::is_marked`].
    AlreadyPresent,
}

/// What a removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed,
    /// The address was not on the link (EADDRNOTAVAIL / ENODEV).
    NotPresent,
}

/// Result of [`VipManager::remove_stale_marked`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaleCleanup {
    /// Marked addresses removed.
    pub removed: Vec<AddrInfo>,
    /// Marked addresses kept because they were in `except`.
    pub kept: Vec<AddrInfo>,
    /// Marked addresses that could not be removed, with why.
    pub failed: Vec<(AddrInfo, AddrError)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddrError {
    #[error("invalid virtual address {vip}: {why}; fix it in virtual_ipaddress")]
    InvalidVip { vip: IpAddr, why: String },
    #[error("cannot add {vip} on ifindex {ifindex}: {source}")]
    Add {
        vip: IpAddr,
        ifindex: u32,
        source: NlError,
    },
    #[error("cannot remove {vip} from ifindex {ifindex}: {source}")]
    Remove {
        vip: IpAddr,
        ifindex: u32,
        source: NlError,
    },
    #[error("cannot list addresses: {0}")]
    List(NlError),
    #[error("{0}")]
    Netlink(NlError),
    #[error("the thread that adds and removes VIPs stopped: restart xvrrpd")]
    WorkerGone,
}

/// Adds and removes VIPs; one netlink socket, shared behind a lock so the
/// runtime can call it from any task.
pub struct VipManager {
    sock: Mutex<NlSocket>,
    mode: MarkerMode,
}

impl VipManager {
    /// Opens the netlink socket with the marker mode of the running kernel.
    /// Call inside a tokio runtime with IO (and time) enabled.
    pub fn new() -> Result<Self, AddrError> {
        Self::with_marker_mode(MarkerMode::detect())
    }

    /// Like [`new`](Self::new) with a chosen marker mode (tests, or kernels
    /// with `IFA_PROTO` backported under an older version number).
    pub fn with_marker_mode(mode: MarkerMode) -> Result<Self, AddrError> {
        Ok(VipManager {
            sock: Mutex::new(NlSocket::open(&[], RCVBUF).map_err(AddrError::Netlink)?),
            mode,
        })
    }

    pub fn marker_mode(&self) -> MarkerMode {
        self.mode
    }

    /// Adds one VIP; an address already present is success.
    pub async fn add_vip(&self, vip: &Vip) -> Result<AddOutcome, AddrError> {
        self.add_vips(std::slice::from_ref(vip))
            .await
            .pop()
            .unwrap_or(Err(AddrError::Netlink(NlError::Overrun)))
    }

    /// Removes one VIP; an address already gone is success.
    pub async fn remove_vip(&self, vip: &Vip) -> Result<RemoveOutcome, AddrError> {
        self.remove_vips(std::slice::from_ref(vip))
            .await
            .pop()
            .unwrap_or(Err(AddrError::Netlink(NlError::Overrun)))
    }

    /// Adds many VIPs in pipelined batches; one result per VIP, in order.
    /// A failure of one VIP does not stop the others.
    pub async fn add_vips(&self, vips: &[Vip]) -> Vec<Result<AddOutcome, AddrError>> {
        let mut out: Vec<Option<Result<AddOutcome, AddrError>>> = vec![None; vips.len()];
        let mut idx = Vec::with_capacity(vips.len());
        let mut msgs = Vec::with_capacity(vips.len());
        for (i, v) in vips.iter().enumerate() {
            match v.validate() {
                Ok(()) => {
                    idx.push(i);
                    msgs.push(v.message(self.mode));
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let acks = self
            .sock
            .lock()
            .await
            .request_acked(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &msgs)
            .await;
        for (i, ack) in idx.into_iter().zip(acks) {
            let v = &vips[i];
            out[i] = Some(match ack {
                Ok(()) => Ok(AddOutcome::Added),
                Err(e) if e.errno() == Some(libc::EEXIST) => Ok(AddOutcome::AlreadyPresent),
                Err(source) => Err(AddrError::Add {
                    vip: v.addr,
                    ifindex: v.ifindex,
                    source,
                }),
            });
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(AddrError::Netlink(NlError::Overrun))))
            .collect()
    }

    /// Removes many VIPs in pipelined batches; one result per VIP, in order.
    pub async fn remove_vips(&self, vips: &[Vip]) -> Vec<Result<RemoveOutcome, AddrError>> {
        let msgs: Vec<AddressMessage> = vips.iter().map(Vip::delete_message).collect();
        let acks = self
            .sock
            .lock()
            .await
            .request_acked(RTM_DELADDR, 0, &msgs)
            .await;
        vips.iter()
            .zip(acks)
            .map(|(v, ack)| match ack {
                Ok(()) => Ok(RemoveOutcome::Removed),
                // ENODEV: the link itself is gone, and the address with it.
                Err(e) if matches!(e.errno(), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => {
                    Ok(RemoveOutcome::NotPresent)
                }
                Err(source) => Err(AddrError::Remove {
                    vip: v.addr,
                    ifindex: v.ifindex,
                    source,
                }),
            })
            .collect()
    }

    /// Every address in this network namespace, as the kernel lists them.
    pub async fn list_all(&self) -> Result<Vec<AddrInfo>, AddrError> {
        let mut sock = self.sock.lock().await;
        dump_addrs(&mut sock, 0).await.map_err(AddrError::List)
    }

    /// Addresses carrying xvrrpd's mark (either kind).
    pub async fn list_marked(&self) -> Result<Vec<AddrInfo>, AddrError> {
        let mut all = self.list_all().await?;
        all.retain(AddrInfo::is_marked);
        Ok(all)
    }

    /// Startup cleanup: removes every marked address not in `except` (the
    /// VIPs the new configuration will hold right away, so they do not
    /// flap).
    pub async fn remove_stale_marked(&self, except: &[VipKey]) -> Result<StaleCleanup, AddrError> {
        let marked = self.list_marked().await?;
        let (kept, stale): (Vec<_>, Vec<_>) =
            marked.into_iter().partition(|a| except.contains(&a.key()));
        let vips: Vec<Vip> = stale
            .iter()
            .map(|a| {
                let mut v = Vip::new(a.ifindex, a.addr, a.prefix_len);
                v.peer = a.peer;
                v
            })
            .collect();
        let results = self.remove_vips(&vips).await;
        let mut report = StaleCleanup {
            kept,
            ..StaleCleanup::default()
        };
        for (a, r) in stale.into_iter().zip(results) {
            match r {
                Ok(_) => report.removed.push(a),
                Err(e) => report.failed.push((a, e)),
            }
        }
        Ok(report)
    }
}

/// Dumps addresses of both families; `ifindex` 0 means every link.
pub(crate) async fn dump_addrs(
    sock: &mut NlSocket,
    ifindex: u32,
) -> Result<Vec<AddrInfo>, NlError> {
    let mut out = Vec::new();
    sock.dump(RTM_GETADDR, &[0u8; 8], |kind, payload| {
        if kind == nl::RTM_NEWADDR
            && let Some(a) = AddrInfo::parse(payload)
            && (ifindex == 0 || a.ifindex == ifindex)
        {
            out.push(a);
        }
    })
    .await?;
    Ok(out)
}

/// Whether `a` is an IPv6 link-local unicast address (fe80::/10).
pub fn is_ipv6_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn kernel_release_picks_marker_mode() {
        assert_eq!(
            MarkerMode::for_kernel_release("6.18.44-fc-v669"),
            MarkerMode::IfaProto
        );
        assert_eq!(
            MarkerMode::for_kernel_release("5.18.0"),
            MarkerMode::IfaProto
        );
        assert_eq!(
            MarkerMode::for_kernel_release("5.17.15-arch1"),
            MarkerMode::Lifetime
        );
        assert_eq!(
            MarkerMode::for_kernel_release("4.19.0-27-amd64\n"),
            MarkerMode::Lifetime
        );
        assert_eq!(
            MarkerMode::for_kernel_release("garbage"),
            MarkerMode::IfaProto
        );
    }

    #[test]
    fn broadcast_plus() {
        let a = Ipv4Addr::new(192, 0, 2, 10);
        assert_eq!(ipv4_broadcast(a, 24), Ipv4Addr::new(192, 0, 2, 255));
        assert_eq!(ipv4_broadcast(a, 32), a);
        assert_eq!(ipv4_broadcast(a, 0), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn validation_rejects_what_the_kernel_would() {
        let v6: IpAddr = "2001:db8::1".parse().expect("literal");
        let mut v = Vip::new(2, v6, 64);
        assert!(v.validate().is_ok());
        v.label = Some("eth0:1".into());
        assert!(v.validate().is_err());
        let mut v = Vip::new(2, "192.0.2.1".parse().expect("literal"), 33);
        assert!(v.validate().is_err());
        v.prefix_len = 24;
        v.label = Some("a-very-long-label".into());
        assert!(v.validate().is_err());
        v.label = Some("eth0:vip".into());
        assert!(v.validate().is_ok());
        assert!(Vip::host(0, v6).validate().is_err());
    }

    fn roundtrip(v: &Vip, mode: MarkerMode) -> AddrInfo {
        let m = v.message(mode);
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        AddrInfo::parse(&buf).expect("own message parses")
    }

    #[test]
    fn messages_carry_every_attribute_and_the_mark() {
        let mut v = Vip::new(3, "192.0.2.10".parse().expect("literal"), 24);
        v.broadcast = Some(ipv4_broadcast(Ipv4Addr::new(192, 0, 2, 10), 24));
        v.label = Some("eth0:vip".into());
        v.scope = Scope::Link;
        v.preferred_lft = Some(0);
        let a = roundtrip(&v, MarkerMode::IfaProto);
        assert_eq!(a.ifindex, 3);
        assert_eq!(a.prefix_len, 24);
        assert_eq!(a.label.as_deref(), Some("eth0:vip"));
        assert_eq!(a.scope, Scope::Link);
        assert_eq!(a.preferred_lft, Some(0));
        assert_eq!(a.valid_lft, None);
        assert_eq!(a.marker(), Some(Marker::IfaProto));

        let v6 = Vip::new(3, "2001:db8::10".parse().expect("literal"), 64);
        let a = roundtrip(&v6, MarkerMode::Lifetime);
        assert_eq!(a.flags & IFA_F_NODAD, IFA_F_NODAD);
        assert_eq!(a.proto, None);
        assert_eq!(a.valid_lft, Some(FALLBACK_VALID_LFT));
        assert_eq!(
            a.preferred_lft,
            Some(FALLBACK_VALID_LFT),
            "forever clamps to valid"
        );
        assert_eq!(a.marker(), Some(Marker::Lifetime));
    }

    #[test]
    fn ordinary_addresses_are_not_marked() {
        let mut a = roundtrip(
            &Vip::new(3, "192.0.2.10".parse().expect("literal"), 24),
            MarkerMode::IfaProto,
        );
        a.proto = None;
        assert!(!a.is_marked());
        a.valid_lft = Some(2_592_000); // a typical SLAAC lifetime
        assert!(!a.is_marked());
        a.valid_lft = Some(FALLBACK_MARK_MIN);
        assert!(a.is_marked());
    }
}
