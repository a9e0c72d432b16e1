//! The kernel fence as seen from user space: which VIPs a dead agent held
//! that another router now owns. Read from the maps pinned beside the XDP
//! links, by the warden that outlives the agent (`runtime::warden`).

use std::{collections::HashMap, net::IpAddr};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use xvrrpd_common::{
    FAMILY_IPV4, FenceOwner, GuardKey, GuardValue, MAP_GUARDS, MAP_LEASES, MAP_OWNERS, VridKey,
};

use super::{ebpf::DatapathError, pin::PinDir};

/// A copy of the fence's maps at one moment.
#[derive(Clone, Debug, Default)]
pub struct FenceView {
    pub guards: Vec<(GuardKey, GuardValue)>,
    pub leases: HashMap<VridKey, u64>,
    pub owners: HashMap<VridKey, FenceOwner>,
}

/// A guarded VIP another router owns now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fenced {
    pub ifindex: u32,
    pub addr: IpAddr,
    /// The owner's MAC, as its adverts carry it.
    pub owner: [u8; 6],
}

impl FenceView {
    /// Reads the maps pinned in `dir`.
    pub fn read(dir: &PinDir) -> Result<Self, DatapathError> {
        Ok(Self {
            guards: entries(dir, MAP_GUARDS)?,
            leases: entries(dir, MAP_LEASES)?.into_iter().collect(),
            owners: entries(dir, MAP_OWNERS)?.into_iter().collect(),
        })
    }

    /// The guarded VIPs whose instance's lease had lapsed at `now_ns`
    /// while another router advertised its VRID (the kernel's own rule).
    pub fn fenced(&self, now_ns: u64) -> Vec<Fenced> {
        self.guards
            .iter()
            .filter_map(|(key, guard)| {
                let vrid = VridKey::new(key.ifindex, guard.family, guard.vrid);
                let lease = self.leases.get(&vrid).copied().unwrap_or(0);
                let owner = self.owners.get(&vrid)?;
                (now_ns > lease && now_ns <= owner.valid_until_ns).then(|| Fenced {
                    ifindex: key.ifindex,
                    addr: guard_addr(key),
                    owner: owner.mac,
                })
            })
            .collect()
    }
}

/// Ends the leases of `vrids` in the maps pinned in `dir`, as a daemon's
/// own priority-0 advert does: the fence answers for the new owner as soon
/// as it advertises, instead of once the lease would have lapsed.
pub fn end_leases(dir: &PinDir, vrids: &[VridKey]) -> Result<(), DatapathError> {
    let map_err = |source| DatapathError::Map {
        name: MAP_LEASES,
        source,
    };
    let data = MapData::from_pin(dir.map(MAP_LEASES)).map_err(map_err)?;
    let mut map: BpfHashMap<_, VridKey, u64> =
        BpfHashMap::try_from(Map::HashMap(data)).map_err(map_err)?;
    for k in vrids {
        map.insert(k, 0, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Every entry of the hash map `name` pinned in `dir`.
fn entries<K: aya::Pod, V: aya::Pod>(
    dir: &PinDir,
    name: &'static str,
) -> Result<Vec<(K, V)>, DatapathError> {
    let map_err = |source| DatapathError::Map { name, source };
    let data = MapData::from_pin(dir.map(name)).map_err(map_err)?;
    let map: BpfHashMap<_, K, V> = BpfHashMap::try_from(Map::HashMap(data)).map_err(map_err)?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

/// The VIP a guard map key names.
pub fn guard_addr(key: &GuardKey) -> IpAddr {
    if key.family == FAMILY_IPV4 {
        IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]])
    } else {
        IpAddr::from(key.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::guard_key;
    use xvrrpd_common::FAMILY_IPV6;

    const OWNER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn view(lease: u64, owner_until: Option<u64>) -> FenceView {
        let vip4: IpAddr = "192.0.2.100".parse().unwrap();
        let vip6: IpAddr = "2001:db8::100".parse().unwrap();
        let guard = GuardValue {
            mac: [2, 0, 0, 0, 0, 1],
            vrid: 51,
            family: FAMILY_IPV4,
            min_interval_ns: 0,
            last_report_ns: 0,
            last_claim_ns: 0,
            last_claim_mac: [0; 6],
            flags: 0,
            _pad2: 0,
        };
        let mut v = FenceView::default();
        // Both VIPs belong to the IPv4 instance (VRID 51) on ifindex 3.
        v.guards.push((guard_key(3, vip4), guard));
        v.guards.push((guard_key(3, vip6), guard));
        let key = VridKey::new(3, FAMILY_IPV4, 51);
        v.leases.insert(key, lease);
        if let Some(until) = owner_until {
            let owner = FenceOwner {
                valid_until_ns: until,
                mac: OWNER,
                priority: 100,
                _pad: 0,
            };
            v.owners.insert(key, owner);
            // Another instance's owner changes nothing here.
            v.owners.insert(VridKey::new(3, FAMILY_IPV6, 51), owner);
        }
        v
    }

    #[test]
    fn a_lapsed_lease_and_a_live_owner_fence_every_vip_of_the_instance() {
        let f = view(1_000, Some(5_000)).fenced(2_000);
        let addrs: Vec<String> = f.iter().map(|x| x.addr.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.100", "2001:db8::100"]);
        assert!(f.iter().all(|x| x.ifindex == 3 && x.owner == OWNER));
    }

    #[test]
    fn a_live_lease_no_owner_or_a_silent_owner_fence_nothing() {
        assert!(view(3_000, Some(5_000)).fenced(2_000).is_empty());
        assert!(view(1_000, None).fenced(2_000).is_empty());
        assert!(view(1_000, Some(5_000)).fenced(6_000).is_empty());
    }
}
