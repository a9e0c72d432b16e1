//! `promote_secondaries`: an interface's IPv4 setting that keeps the other
//! addresses of a subnet when its primary one is removed. Set over
//! rtnetlink, because under the shipped unit /proc/sys is read-only.

use super::{
    NlError,
    link::LinkError,
    nl::{NlSocket, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK, RawPayload},
};

const IFINFOMSG_LEN: usize = 16;
const IFLA_AF_SPEC: u16 = 26;
const AF_INET: u16 = 2;
const IFLA_INET_CONF: u16 = 1;
/// `IPV4_DEVCONF_PROMOTE_SECONDARIES` (include/uapi/linux/ip.h): the
/// attribute type when set, the 1-based index in the array when read.
const DEVCONF_PROMOTE_SECONDARIES: u16 = 20;
const NLA_TYPE_MASK: u16 = 0x3fff;

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

/// `promote_secondaries` of one RTM_NEWLINK payload, if it reports one.
fn read_from(payload: &[u8]) -> Option<bool> {
    let (_, af_spec) = attrs(payload.get(IFINFOMSG_LEN..)?).find(|(k, _)| *k == IFLA_AF_SPEC)?;
    let (_, inet) = attrs(af_spec).find(|(k, _)| *k == AF_INET)?;
    let (_, conf) = attrs(inet).find(|(k, _)| *k == IFLA_INET_CONF)?;
    let at = usize::from(DEVCONF_PROMOTE_SECONDARIES - 1) * 4;
    let v = conf.get(at..at + 4)?;
    Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]) != 0)
}

fn ifindex_of(payload: &[u8]) -> Option<u32> {
    let b = payload.get(4..8)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether `promote_secondaries` is on for the interface `ifindex`.
pub async fn promote_secondaries(ifindex: u32) -> Result<bool, LinkError> {
    let mut sock = NlSocket::open(&[], 1 << 20)?;
    let mut found = None;
    sock.dump(RTM_GETLINK, &[0u8; IFINFOMSG_LEN], |kind, payload| {
        if kind == RTM_NEWLINK && ifindex_of(payload) == Some(ifindex) {
            found = read_from(payload);
        }
    })
    .await?;
    found.ok_or(LinkError::NoSuchIndex(ifindex))
}

/// The RTM_SETLINK payload that sets `promote_secondaries` to `on`.
fn set_message(ifindex: u32, on: bool) -> Vec<u8> {
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
    let conf = nla(DEVCONF_PROMOTE_SECONDARIES, &u32::from(on).to_ne_bytes());
    let spec = nla(IFLA_AF_SPEC, &nla(AF_INET, &nla(IFLA_INET_CONF, &conf)));
    let mut msg = vec![0u8; IFINFOMSG_LEN];
    msg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    msg.extend(spec);
    msg
}

/// Sets `promote_secondaries` on the interface `ifindex`.
pub async fn set_promote_secondaries(ifindex: u32, on: bool) -> Result<(), LinkError> {
    let mut sock = NlSocket::open(&[], 1 << 16)?;
    let msg = set_message(ifindex, on);
    sock.request_acked(RTM_SETLINK, 0, &[RawPayload(&msg)])
        .await
        .into_iter()
        .next()
        .unwrap_or(Err(NlError::Overrun))
        .map_err(LinkError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_read_back_from_what_would_set_it() {
        // A set message has the same nesting a dump's IFLA_INET_CONF has,
        // but one attribute instead of the array: check the nesting, and
        // read an array built by hand.
        let msg = set_message(7, true);
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
            (DEVCONF_PROMOTE_SECONDARIES, &1u32.to_ne_bytes()[..])
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
        assert_eq!(read_from(&dump), Some(true));
        array[19 * 4..20 * 4].copy_from_slice(&0u32.to_ne_bytes());
        let mut off = vec![0u8; IFINFOMSG_LEN];
        off.extend(nla(
            IFLA_AF_SPEC,
            &nla(AF_INET, &nla(IFLA_INET_CONF, &array)),
        ));
        assert_eq!(read_from(&off), Some(false));
    }
}
