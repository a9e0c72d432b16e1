//! Many VRRP instances between the same routers: their configs and the
//! VLAN sub-interfaces they need.
//!
//! A VRID is 8 bits, unique per interface and address family, so more
//! than [`PER_INTERFACE`] IPv4 instances on one segment need more
//! interfaces: VLAN sub-interfaces of the routers' `eth0`. The lab's
//! bridge has no `vlan_filtering`, so tagged frames pass between routers
//! as they are. On a kernel without 802.1Q, [`add_vlans`] makes each VLAN
//! a veth pair on a bridge of its own instead ([`VlanKind::VethBridge`]).
//!
//! Addressing (IPv4, VRRPv3):
//!
//! * n ≤ 100: on `eth0`, VRIDs 1…n, VIPs 192.0.2.100 … 192.0.2.(99+n)/24
//!   (what the CPU benchmark always used, so results stay comparable);
//! * 101 ≤ n ≤ 250: on `eth0`, VRIDs 1…n, VIPs 198.51.100.1 …
//!   198.51.100.n/24;
//! * n > 250: VLAN index k = 0, 1, … is `eth0.<10+k>` (VLAN id 10 + k),
//!   250 instances each, VRIDs 1…250 on every VLAN. VLAN k is the /23
//!   198.18.(2k).0/23 of the benchmarking range 198.18.0.0/15 (RFC 2544,
//!   never routed): VIP j (0-based) is 198.18.(2k).(j+1)/23 and router i
//!   (0-based, as in [`crate::scenario::router_cidrs`]) has
//!   198.18.(2k+1).(i+1)/23, its only (so primary) address on the VLAN and
//!   the source of its adverts there.
//!
//! Instances are named `VI_1` … `VI_n` throughout.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    kconf::Instance,
    lab::{Lab, run},
    router::RouterNode,
};

/// Instances per interface: VRIDs 1…250 (of 1…255).
pub const PER_INTERFACE: usize = 250;
/// The VLAN id of the first VLAN sub-interface.
pub const FIRST_VLAN_ID: usize = 10;
/// At most this many VLANs: one /23 of 198.18.0.0/16 each.
pub const MAX_VLANS: usize = 128;
/// The most instances [`instances`] describes.
pub const MAX_INSTANCES: usize = MAX_VLANS * PER_INTERFACE;
/// The highest router index with an address on the VLANs (x.254 of the
/// /23's upper half; .255 is its broadcast).
pub const MAX_ROUTER_INDEX: usize = 253;

/// VLAN sub-interfaces `n` instances need (0: all on `eth0`).
pub fn vlans_needed(n: usize) -> usize {
    if n <= PER_INTERFACE {
        0
    } else {
        n.div_ceil(PER_INTERFACE)
    }
}

/// The name of VLAN sub-interface `k` (0-based): `eth0.10`, `eth0.11`, ….
pub fn vlan_ifname(k: usize) -> String {
    format!("eth0.{}", FIRST_VLAN_ID + k)
}

/// Router `router_index`'s address on VLAN `k` (CIDR).
pub fn router_vlan_cidr(k: usize, router_index: usize) -> String {
    format!("198.18.{}.{}/23", 2 * k + 1, router_index + 1)
}

/// Interface, VRID and VIP (CIDR) of instance `i` (0-based) of `n`.
pub fn placement(n: usize, i: usize) -> (String, u8, String) {
    assert!(
        n <= MAX_INSTANCES,
        "{n} instances: at most {MAX_INSTANCES} (VLAN subnets of 198.18.0.0/16)"
    );
    assert!(i < n, "instance {i} of {n}");
    if n <= 100 {
        (
            "eth0".into(),
            (i + 1) as u8,
            format!("192.0.2.{}/24", 100 + i),
        )
    } else if n <= PER_INTERFACE {
        (
            "eth0".into(),
            (i + 1) as u8,
            format!("198.51.100.{}/24", i + 1),
        )
    } else {
        let (k, j) = (i / PER_INTERFACE, i % PER_INTERFACE);
        (
            vlan_ifname(k),
            (j + 1) as u8,
            format!("198.18.{}.{}/23", 2 * k, j + 1),
        )
    }
}

/// `n` VRRPv3 instances `VI_1`…`VI_n` at `priority` and `advert_int`, one
/// VIP each, placed as the module says.
pub fn instances(n: usize, priority: u8, advert_int: Duration) -> Vec<Instance> {
    (0..n)
        .map(|i| {
            let (ifname, vrid, vip) = placement(n, i);
            let mut inst = Instance::new(&format!("VI_{}", i + 1), vrid, &[&vip]);
            inst.interface = ifname;
            inst.priority = priority;
            inst.advert_int = advert_int;
            inst
        })
        .collect()
}

/// How [`add_vlans`] made the VLAN interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanKind {
    /// Fewer than 251 instances: none needed.
    None,
    /// 802.1Q sub-interfaces of `eth0` (`type vlan`): tagged frames on
    /// the lab's bridge, which passes them as they are.
    Dot1q,
    /// The kernel has no 802.1Q (`CONFIG_VLAN_8021Q` unset: "Unknown
    /// device type"): each "VLAN" is a veth pair of its own, `eth0.<id>`
    /// on the router and its peer on a bridge `br<id>` of the switch
    /// namespace, one bridge per VLAN id — the same separate broadcast
    /// domains, untagged. Unlike a real sub-interface it does not follow
    /// `eth0`'s link state.
    VethBridge,
}

impl VlanKind {
    pub fn describe(self) -> &'static str {
        match self {
            VlanKind::None => "eth0 only",
            VlanKind::Dot1q => "802.1Q VLAN sub-interfaces of eth0 (tagged on the lab bridge)",
            VlanKind::VethBridge => {
                "no 802.1Q in this kernel: each VLAN is a veth pair eth0.<id> of its own on a \
                 bridge br<id> of its own (separate broadcast domains, untagged)"
            }
        }
    }
}

/// Creates the VLAN interfaces `n` instances need on router `r` (none for
/// n ≤ 250): `eth0.10`, `eth0.11`, …, each up with the router's address
/// of [`router_vlan_cidr`] and IPv6 off (no link-local address, DAD, MLD
/// or router solicitations: the instances are IPv4). `router_index` is
/// the router's place in the lab (0-based, as its `eth0` address); `lab`
/// is the router's lab ([`crate::vrrp_lab::VrrpLab::net`]), for the
/// fallback of [`VlanKind::VethBridge`] when the kernel has no 802.1Q.
/// Call it once per router before its daemon starts, e.g. right after
/// [`crate::scenario::Cluster::new`] for each of `cluster.routers` in
/// order.
pub fn add_vlans(lab: &Lab, r: &RouterNode, router_index: usize, n: usize) -> Result<VlanKind> {
    let vlans = vlans_needed(n);
    if vlans == 0 {
        return Ok(VlanKind::None);
    }
    if vlans > MAX_VLANS {
        bail!("{n} instances need {vlans} VLANs: at most {MAX_VLANS}");
    }
    if router_index > MAX_ROUTER_INDEX {
        bail!("router index {router_index}: at most {MAX_ROUTER_INDEX} routers on the VLANs");
    }
    let mut kind = VlanKind::Dot1q;
    for k in 0..vlans {
        let name = vlan_ifname(k);
        let id = (FIRST_VLAN_ID + k).to_string();
        if kind == VlanKind::Dot1q {
            let made = r.host.exec(&[
                "ip", "link", "add", "link", "eth0", "name", &name, "type", "vlan", "id", &id,
            ]);
            match made {
                Ok(_) => {}
                Err(e) if k == 0 && format!("{e:#}").contains("Unknown device type") => {
                    kind = VlanKind::VethBridge;
                }
                Err(e) => return Err(e).with_context(|| format!("{}: VLAN {name}", r.name)),
            }
        }
        if kind == VlanKind::VethBridge {
            veth_vlan(lab, r, &name, &id)?;
        }
        let cidr = router_vlan_cidr(k, router_index);
        // sysctl spells a dot of an interface name as a slash.
        let ipv6_off = format!("net.ipv6.conf.{}.disable_ipv6=1", name.replace('.', "/"));
        let steps: [&[&str]; 3] = [
            &["sysctl", "-qw", &ipv6_off],
            &["ip", "addr", "add", &cidr, "dev", &name],
            &["ip", "link", "set", &name, "up"],
        ];
        for args in steps {
            r.host
                .exec(args)
                .with_context(|| format!("{}: {}", r.name, args.join(" ")))?;
        }
    }
    Ok(kind)
}

/// [`VlanKind::VethBridge`]: `name` on the router, its peer `p<port>v<id>`
/// on bridge `br<id>` of the switch namespace (made by the first router),
/// with the MAC of the router's `eth0` as a sub-interface would have.
fn veth_vlan(lab: &Lab, r: &RouterNode, name: &str, id: &str) -> Result<()> {
    let port = lab
        .switch_port(&r.host)
        .with_context(|| format!("{} is not a host of this lab", r.name))?;
    let peer = format!("{port}v{id}");
    let bridge = format!("br{id}");
    let has_bridge = lab
        .switch_cmd(&["ip", "link", "show", "dev", &bridge])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_bridge {
        lab.add_bridge(&bridge)?;
    }
    run(Command::new("ip").args([
        "link",
        "add",
        name,
        "netns",
        &r.host.ns,
        "type",
        "veth",
        "peer",
        "name",
        &peer,
        "netns",
        lab.switch_ns(),
    ]))
    .with_context(|| format!("{}: veth {name}", r.name))?;
    run(&mut lab.switch_cmd(&["ip", "link", "set", &peer, "master", &bridge, "up"]))?;
    r.host
        .exec(&["ip", "link", "set", name, "address", &r.mac.to_string()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_counts_keep_their_addresses() {
        let v = instances(100, 150, Duration::from_millis(10));
        assert_eq!(v.len(), 100);
        assert_eq!(v[0].vips, ["192.0.2.100/24"]);
        assert_eq!(v[99].vips, ["192.0.2.199/24"]);
        assert_eq!(v[99].vrid, 100);
        assert!(v.iter().all(|i| i.interface == "eth0" && i.priority == 150));
        let v = instances(250, 100, Duration::from_millis(10));
        assert_eq!(v[249].vips, ["198.51.100.250/24"]);
        assert_eq!(v[249].vrid, 250);
    }

    #[test]
    fn a_thousand_take_four_vlans() {
        let v = instances(1000, 100, Duration::from_secs(1));
        assert_eq!(vlans_needed(1000), 4);
        assert_eq!(vlans_needed(251), 2);
        assert_eq!(vlans_needed(250), 0);
        assert_eq!(v[0].interface, "eth0.10");
        assert_eq!(v[0].vrid, 1);
        assert_eq!(v[0].vips, ["198.18.0.1/23"]);
        assert_eq!(v[250].interface, "eth0.11");
        assert_eq!(v[250].vrid, 1);
        assert_eq!(v[999].interface, "eth0.13");
        assert_eq!(v[999].vrid, 250);
        assert_eq!(v[999].vips, ["198.18.6.250/23"]);
        assert_eq!(router_vlan_cidr(3, 1), "198.18.7.2/23");
        let mut keys: Vec<(String, u8)> = v.iter().map(|i| (i.interface.clone(), i.vrid)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 1000, "(interface, VRID) unique");
        let mut vips: Vec<_> = v.iter().flat_map(|i| i.vip_addrs()).collect();
        vips.sort();
        vips.dedup();
        assert_eq!(vips.len(), 1000);
        let text = crate::kconf::RouterConfig {
            instances: v,
            ..Default::default()
        }
        .render(crate::kconf::Daemon::Keepalived)
        .unwrap();
        assert!(text.contains("    interface eth0.13\n"), "{text}");
        assert!(text.contains("    advert_int 1\n"), "{text}");
    }
}
