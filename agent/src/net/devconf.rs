//! Per-interface IPv4 settings (`net.ipv4.conf.IF.*`) xvrrpd changes:
//! `promote_secondaries`, and for a VMAC the ARP and source checks
//! keepalived sets. Read and set over rtnetlink, because under the
//! shipped unit /proc/sys is read-only.

use super::{
    NlError,
    link::LinkError,
    nl::{NlSocket, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK, RawPayload},
};

const IFINFOMSG_LEN: usize = 16;
const IFLA_AF_SPEC: u16 = 26;
const AF_INET: u16 = 2;
const IFLA_INET_CONF: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// An `IPV4_DEVCONF_*` setting (include/uapi/linux/ip.h): the attribute
/// type when set, the 1-based index in the array when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum DevConf {
    RpFilter = 8,
    ArpFilter = 13,
    ArpAnnounce = 18,
    ArpIgnore = 19,
    PromoteSecondaries = 20,
    AcceptLocal = 23,
}

/// The attributes of a netlink attribute stream: (type, value).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let kind = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & NLA_TYPE_MASK;
        let value = b.get(4..len)?;
        b = b.get(((len + 3) & !3).min(b.len())..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// `setting` of one RTM_NEWLINK payload, if it reports one.
fn read_from(payload: &[u8], setting: DevConf) -> Option<u32> {
    let (_, af_spec) = attrs(payload.get(IFINFOMSG_LEN..)?).find(|(k, _)| *k == IFLA_AF_SPEC)?;
    let (_, inet) = attrs(af_spec).find(|(k, _)| *k == AF_INET)?;
    let (_, conf) = attrs(inet).find(|(k, _)| *k == IFLA_INET_CONF)?;
    let at = usize::from(setting as u16 - 1) * 4;
    let v = conf.get(at..at + 4)?;
    Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
}

fn ifindex_of(payload: &[u8]) -> Option<u32> {
    let b = payload.get(4..8)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The value of `setting` on the interface `ifindex`.
pub async fn get(ifindex: u32, setting: DevConf) -> Result<u32, LinkError> {
    let mut sock = NlSocket::open(&[], 1 << 20)?;
    let mut found = None;
    sock.dump(RTM_GETLINK, &[0u8; IFINFOMSG_LEN], |kind, payload| {
        if kind == RTM_NEWLINK && ifindex_of(payload) == Some(ifindex) {
            found = read_from(payload, setting);
        }
    })
    .await?;
    found.ok_or(LinkError::NoSuchIndex(ifindex))
}

/// Whether `promote_secondaries` is on for the interface `ifindex`.
pub async fn promote_secondaries(ifindex: u32) -> Result<bool, LinkError> {
    Ok(get(ifindex, DevConf::PromoteSecondaries).await? != 0)
}

/// The RTM_SETLINK payload that sets each of `settings`.
fn set_message(ifindex: u32, settings: &[(DevConf, u32)]) -> Vec<u8> {
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + value.len() + 3);
        out.extend(
            u16::try_from(4 + value.len())
                .unwrap_or(u16::MAX)
                .to_ne_bytes(),
        );
        out.extend(kind.to_ne_bytes());
        out.extend(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }
    let conf: Vec<u8> = settings
        .iter()
        .flat_map(|(k, v)| nla(*k as u16, &v.to_ne_bytes()))
        .collect();
    let spec = nla(IFLA_AF_SPEC, &nla(AF_INET, &nla(IFLA_INET_CONF, &conf)));
    let mut msg = vec![0u8; IFINFOMSG_LEN];
    msg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    msg.extend(spec);
    msg
}

/// Sets each of `settings` on the interface `ifindex`, in one request.
pub async fn set(ifindex: u32, settings: &[(DevConf, u32)]) -> Result<(), LinkError> {
    let mut sock = NlSocket::open(&[], 1 << 16)?;
    let msg = set_message(ifindex, settings);
    sock.request_acked(RTM_SETLINK, 0, &[RawPayload(&msg)])
        .await
        .into_iter()
        .next()
        .unwrap_or(Err(NlError::Overrun))
        .map_err(LinkError::from)
}

/// Sets `promote_secondaries` on the interface `ifindex`.
pub async fn set_promote_secondaries(ifindex: u32, on: bool) -> Result<(), LinkError> {
    set(ifindex, &[(DevConf::PromoteSecondaries, u32::from(on))]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_read_back_from_what_would_set_it() {
        // A set message has the same nesting a dump's IFLA_INET_CONF has,
        // but one attribute instead of the array: check the nesting, and
        // read an array built by hand.
        let msg = set_message(7, &[(DevConf::PromoteSecondaries, 1)]);
        assert_eq!(ifindex_of(&msg), Some(7));
        let (k, spec) = attrs(&msg[IFINFOMSG_LEN..]).next().unwrap_or((0, &[]));
        assert_eq!(k, IFLA_AF_SPEC);
        let (k, inet) = attrs(spec).next().unwrap_or((0, &[]));
        assert_eq!(k, AF_INET);
        let (k, conf) = attrs(inet).next().unwrap_or((0, &[]));
        assert_eq!(k, IFLA_INET_CONF);
        let (k, v) = attrs(conf).next().unwrap_or((0, &[]));
        assert_eq!(
            (k, v),
            (DevConf::PromoteSecondaries as u16, &1u32.to_ne_bytes()[..])
        );

        let mut array = vec![0u8; 32 * 4];
        array[19 * 4..20 * 4].copy_from_slice(&1u32.to_ne_bytes());
        let mut dump = vec![0u8; IFINFOMSG_LEN];
        let nla = |kind: u16, value: &[u8]| {
            let mut out = (4 + value.len() as u16).to_ne_bytes().to_vec();
            out.extend(kind.to_ne_bytes());
            out.extend(value);
            out
        };
        dump.extend(nla(
            IFLA_AF_SPEC,
            &nla(AF_INET, &nla(IFLA_INET_CONF, &array)),
        ));
        assert_eq!(read_from(&dump, DevConf::PromoteSecondaries), Some(1));
        array[19 * 4..20 * 4].copy_from_slice(&0u32.to_ne_bytes());
        let mut off = vec![0u8; IFINFOMSG_LEN];
        off.extend(nla(
            IFLA_AF_SPEC,
            &nla(AF_INET, &nla(IFLA_INET_CONF, &array)),
        ));
        assert_eq!(read_from(&off, DevConf::PromoteSecondaries), Some(0));
    }
}
