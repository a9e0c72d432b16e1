//! `use_vmac`: the macvlan that carries an instance's VIPs with the RFC's
//! virtual MAC, made as keepalived makes it. Private mode, so that a frame
//! whose source is the virtual MAC (the master's adverts, seen by a backup
//! that has the same MAC) is handed to this macvlan and not dropped; no
//! IPv6 address generation, so a backup never sends from the virtual MAC
//! and never moves it in the switches; the ARP settings keepalived sets on
//! it and on its base, so only the VMAC answers ARP for the VIPs.
//!
//! `use_ipvlan`: an L2 ipvlan instead, made as keepalived makes it. It
//! shares its base's MAC, so it needs no ARP settings; it carries its own
//! address (the adverts' source) besides the VIPs.

use netlink_packet_core::Emitable;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoIpVlan, InfoKind, InfoMacVlan,
    IpVlanFlags, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use std::net::IpAddr;
use thiserror::Error;

use super::{
    NlError,
    devconf::{self, DevConf},
    link::LinkError,
    nl::{
        NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NlSocket, RTM_DELADDR, RTM_DELLINK, RTM_GETLINK,
        RTM_NEWADDR, RTM_NEWLINK, RTM_SETLINK,
    },
};
use netlink_packet_core::Parseable;

/// One VMAC (or ipvlan) as an instance needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmacSpec {
    pub name: String,
    /// The interface it sits on (the instance's `interface`).
    pub base: u32,
    pub kind: VmacKind,
    /// The link group; the base's when not configured, as in keepalived.
    pub group: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmacKind {
    /// `use_vmac`: a private macvlan with this MAC.
    Macvlan { mac: [u8; 6] },
    /// `use_ipvlan`: an L2 ipvlan with these flags (`IPVLAN_F_*`) and its
    /// own address.
    Ipvlan {
        flags: u16,
        address: Option<(IpAddr, u8)>,
    },
}

impl VmacKind {
    pub fn is_ipvlan(&self) -> bool {
        matches!(self, Self::Ipvlan { .. })
    }
}

/// `IPVLAN_F_PRIVATE` and `IPVLAN_F_VEPA` (linux/if_link.h).
pub const IPVLAN_F_PRIVATE: u16 = 1;
pub const IPVLAN_F_VEPA: u16 = 2;

#[derive(Debug, Error)]
pub enum VmacError {
    #[error(
        "interface {0} exists and is not a macvlan or ipvlan: xvrrpd will not replace it; rename it, or name the VMAC with `use_vmac NAME` (`use_ipvlan NAME`)"
    )]
    NotMacvlan(String),
    #[error("VMAC {name}: {step}: {source}")]
    Netlink {
        name: String,
        step: &'static str,
        source: LinkError,
    },
}

/// An existing link as far as a VMAC cares.
#[derive(Clone, Debug, Default)]
struct Found {
    ifindex: u32,
    macvlan: bool,
    private: bool,
    ipvlan: bool,
    /// An ipvlan's mode is L2 and these are its flags.
    ipvlan_l2_flags: Option<u16>,
    base: Option<u32>,
    mac: Option<[u8; 6]>,
    group: Option<u32>,
}

fn found_of(payload: &[u8]) -> Option<(String, Found)> {
    let msg = LinkMessage::parse(payload).ok()?;
    let mut f = Found {
        ifindex: msg.header.index,
        ..Found::default()
    };
    let mut name = None;
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Link(l) => f.base = Some(*l),
            LinkAttribute::Group(g) => f.group = Some(*g),
            LinkAttribute::Address(m) if m.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(m);
                f.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(InfoKind::MacVlan) => f.macvlan = true,
                        LinkInfo::Kind(InfoKind::IpVlan) => f.ipvlan = true,
                        LinkInfo::Data(InfoData::IpVlan(d)) => {
                            let l2 = d
                                .iter()
                                .any(|x| matches!(x, InfoIpVlan::Mode(IpVlanMode::L2)));
                            let flags = d.iter().find_map(|x| match x {
                                InfoIpVlan::Flags(f) => Some(f.bits()),
                                _ => None,
                            });
                            f.ipvlan_l2_flags = l2.then_some(flags.unwrap_or(0));
                        }
                        LinkInfo::Data(InfoData::MacVlan(d)) => {
                            f.private = d
                                .iter()
                                .any(|x| matches!(x, InfoMacVlan::Mode(MacVlanMode::Private)));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((name?, f))
}

async fn links() -> Result<Vec<(String, Found)>, LinkError> {
    let mut sock = NlSocket::open(&[], 4 << 20)?;
    let mut out = Vec::new();
    sock.dump(RTM_GETLINK, &[0u8; 16], |kind, payload| {
        if kind == RTM_NEWLINK
            && let Some(f) = found_of(payload)
        {
            out.push(f);
        }
    })
    .await?;
    Ok(out)
}

async fn request(kind: u16, flags: u16, msg: &impl Emitable) -> Result<(), LinkError> {
    let mut sock = NlSocket::open(&[], 1 << 16)?;
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf);
    sock.request_acked(kind, flags, &[super::nl::RawPayload(&buf)])
        .await
        .into_iter()
        .next()
        .unwrap_or(Err(NlError::Overrun))
        .map_err(LinkError::from)
}

fn header(ifindex: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.interface_family = AddressFamily::Unspec;
    m.header.index = ifindex;
    m
}

/// The VMAC is there, private, on its base, with its MAC, configured and
/// up: made, or taken over from a previous run (or put right when it
/// differs). Returns its index and whether it was made now.
pub async fn ensure(spec: &VmacSpec) -> Result<(u32, bool), VmacError> {
    let nl = |step: &'static str| {
        let name = spec.name.clone();
        move |source: LinkError| VmacError::Netlink {
            name: name.clone(),
            step,
            source,
        }
    };
    let all = links().await.map_err(nl("listing interfaces"))?;
    let existing = all.iter().find(|(n, _)| *n == spec.name).map(|(_, f)| f);
    let mut made = false;
    let ifindex = match existing {
        Some(f) if !f.macvlan && !f.ipvlan => {
            return Err(VmacError::NotMacvlan(spec.name.clone()));
        }
        Some(f) if f.base == Some(spec.base) && f.is(&spec.kind) => f.ifindex,
        other => {
            if let Some(f) = other {
                // A macvlan or ipvlan of ours from another configuration
                // (other base, kind, MAC or mode): keepalived replaces it too.
                request(RTM_DELLINK, 0, &header(f.ifindex))
                    .await
                    .map_err(nl("removing the old link"))?;
            }
            let group = spec.group.or_else(|| {
                all.iter()
                    .find(|(_, f)| f.ifindex == spec.base)
                    .and_then(|(_, f)| f.group)
            });
            let mut m = header(0);
            m.attributes.push(LinkAttribute::IfName(spec.name.clone()));
            m.attributes.push(LinkAttribute::Link(spec.base));
            if let Some(g) = group {
                m.attributes.push(LinkAttribute::Group(g));
            }
            match spec.kind {
                VmacKind::Macvlan { mac } => {
                    m.attributes.push(LinkAttribute::Address(mac.to_vec()));
                    m.attributes.push(LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::MacVlan),
                        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                            MacVlanMode::Private,
                        )])),
                    ]));
                }
                VmacKind::Ipvlan { flags, .. } => {
                    m.attributes.push(LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::IpVlan),
                        LinkInfo::Data(InfoData::IpVlan(vec![
                            InfoIpVlan::Mode(IpVlanMode::L2),
                            InfoIpVlan::Flags(IpVlanFlags::from_bits_retain(flags)),
                        ])),
                    ]));
                }
            }
            request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &m)
                .await
                .map_err(nl("creating the link"))?;
            made = true;
            super::link::ifindex_by_name(&spec.name).map_err(nl("finding the new link"))?
        }
    };
    // Before it is up: no link-local address, so nothing is ever sent from
    // the virtual MAC but what xvrrpd sends (the kernel ignores this
    // attribute when a link is created).
    let mut m = header(ifindex);
    m.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    request(RTM_SETLINK, 0, &m)
        .await
        .map_err(nl("turning IPv6 address generation off"))?;
    if !spec.kind.is_ipvlan() {
        devconf::set(
            ifindex,
            &[
                (DevConf::ArpIgnore, 1),
                (DevConf::AcceptLocal, 1),
                (DevConf::RpFilter, 0),
                (DevConf::PromoteSecondaries, 1),
            ],
        )
        .await
        .map_err(nl("setting arp_ignore, accept_local, rp_filter"))?;
    }
    let mut m = header(ifindex);
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    request(RTM_SETLINK, 0, &m)
        .await
        .map_err(nl("setting it up"))?;
    if let VmacKind::Ipvlan { address, .. } = spec.kind {
        // A taken-over ipvlan may carry the address of an older
        // configuration: only VIPs (marked), link-local addresses and the
        // configured one stay.
        let own = address.map(|(a, _)| a);
        for old in super::link::interface_addrs(ifindex)
            .await
            .map_err(nl("listing its addresses"))?
        {
            let link_local =
                matches!(old.addr, IpAddr::V6(a) if super::addr::is_ipv6_link_local(&a));
            if !old.is_marked() && !link_local && Some(old.addr) != own {
                own_address(RTM_DELADDR, ifindex, old.addr, old.prefix_len)
                    .await
                    .map_err(nl("removing an address of an older configuration"))?;
            }
        }
        if let Some((addr, prefix_len)) = address {
            own_address(RTM_NEWADDR, ifindex, addr, prefix_len)
                .await
                .map_err(nl("adding its address"))?;
        }
    }
    Ok((ifindex, made))
}

/// Adds (`RTM_NEWADDR`) or removes (`RTM_DELADDR`) the ipvlan's own
/// address: a plain one, without xvrrpd's VIP marker, so no clean-up of
/// VIPs ever takes it; it goes with the link.
async fn own_address(
    kind: u16,
    ifindex: u32,
    addr: IpAddr,
    prefix_len: u8,
) -> Result<(), LinkError> {
    let mut m = AddressMessage::default();
    m.header.family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.prefix_len = prefix_len;
    m.header.index = ifindex;
    m.attributes.push(AddressAttribute::Local(addr));
    m.attributes.push(AddressAttribute::Address(addr));
    let flags = if kind == RTM_NEWADDR {
        NLM_F_CREATE | NLM_F_REPLACE
    } else {
        0
    };
    request(kind, flags, &m).await
}

impl Found {
    /// It is the link `kind` asks for (a macvlan's base is checked apart).
    fn is(&self, kind: &VmacKind) -> bool {
        match kind {
            VmacKind::Macvlan { mac } => self.macvlan && self.private && self.mac == Some(*mac),
            VmacKind::Ipvlan { flags, .. } => self.ipvlan && self.ipvlan_l2_flags == Some(*flags),
        }
    }
}

/// Removes the macvlan or ipvlan `name` if it is one (an interface of
/// another kind by that name is left alone).
pub async fn remove(name: &str) -> Result<bool, VmacError> {
    let nl = |step: &'static str| {
        let name = name.to_string();
        move |source: LinkError| VmacError::Netlink {
            name: name.clone(),
            step,
            source,
        }
    };
    let all = links().await.map_err(nl("listing interfaces"))?;
    let Some((_, f)) = all
        .iter()
        .find(|(n, f)| n == name && (f.macvlan || f.ipvlan))
    else {
        return Ok(false);
    };
    request(RTM_DELLINK, 0, &header(f.ifindex))
        .await
        .map_err(nl("removing it"))?;
    Ok(true)
}

/// The base's ARP settings before xvrrpd set them for its VMACs, to put
/// back when the last VMAC on it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseArp {
    pub arp_ignore: u32,
    pub arp_filter: u32,
    pub arp_announce: u32,
}

/// What a VMAC's base needs: `arp_ignore=1` and `arp_filter=1` (as
/// keepalived sets them), so it never answers ARP for a VIP on the VMAC
/// with its own MAC; and `arp_announce=2`, so the ARP requests it sends
/// (the master answering a client is one) name its own address, not a VIP
/// — otherwise they rewrite the clients' entries for the VIP to the base's
/// MAC, and a failover moves them again. Returns what was there.
pub async fn claim_base(base: u32) -> Result<BaseArp, LinkError> {
    let before = BaseArp {
        arp_ignore: devconf::get(base, DevConf::ArpIgnore).await?,
        arp_filter: devconf::get(base, DevConf::ArpFilter).await?,
        arp_announce: devconf::get(base, DevConf::ArpAnnounce).await?,
    };
    devconf::set(
        base,
        &[
            (DevConf::ArpIgnore, before.arp_ignore.max(1)),
            (DevConf::ArpFilter, 1),
            (DevConf::ArpAnnounce, 2),
        ],
    )
    .await?;
    Ok(before)
}

/// Puts a base's ARP settings back.
pub async fn release_base(base: u32, before: BaseArp) -> Result<(), LinkError> {
    devconf::set(
        base,
        &[
            (DevConf::ArpIgnore, before.arp_ignore),
            (DevConf::ArpFilter, before.arp_filter),
            (DevConf::ArpAnnounce, before.arp_announce),
        ],
    )
    .await
}

/// The RFC 5798 virtual MAC of a VRID: 00:00:5e:00:01:VRID for IPv4,
/// 00:00:5e:00:02:VRID for IPv6.
pub fn rfc_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0, 0, 0x5e, 0, if ipv6 { 2 } else { 1 }, vrid]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_mac_carries_family_and_vrid() {
        assert_eq!(rfc_mac(7, false), [0, 0, 0x5e, 0, 1, 7]);
        assert_eq!(rfc_mac(255, true), [0, 0, 0x5e, 0, 2, 255]);
    }

    #[test]
    fn a_created_macvlan_reads_back_as_one() {
        let mut m = header(9);
        m.attributes.push(LinkAttribute::IfName("vrrp.7".into()));
        m.attributes.push(LinkAttribute::Link(3));
        m.attributes
            .push(LinkAttribute::Address(rfc_mac(7, false).to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Private,
            )])),
        ]));
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        let (name, f) = found_of(&buf).expect("parses");
        assert_eq!(name, "vrrp.7");
        assert!(f.macvlan && f.private);
        assert_eq!(
            (f.ifindex, f.base, f.mac),
            (9, Some(3), Some(rfc_mac(7, false)))
        );
    }

    #[test]
    fn a_created_ipvlan_reads_back_as_one_of_its_mode() {
        let mut m = header(11);
        m.attributes.push(LinkAttribute::IfName("vip51".into()));
        m.attributes.push(LinkAttribute::Link(3));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::IpVlan),
            LinkInfo::Data(InfoData::IpVlan(vec![
                InfoIpVlan::Mode(IpVlanMode::L2),
                InfoIpVlan::Flags(IpVlanFlags::from_bits_retain(IPVLAN_F_PRIVATE)),
            ])),
        ]));
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        let (name, f) = found_of(&buf).expect("parses");
        assert_eq!((name.as_str(), f.base), ("vip51", Some(3)));
        let private = VmacKind::Ipvlan {
            flags: IPVLAN_F_PRIVATE,
            address: None,
        };
        let bridge = VmacKind::Ipvlan {
            flags: 0,
            address: None,
        };
        // Taken over only in the mode asked for; never as a macvlan.
        assert!(f.is(&private));
        assert!(!f.is(&bridge));
        assert!(!f.is(&VmacKind::Macvlan {
            mac: rfc_mac(51, false)
        }));
    }
}
