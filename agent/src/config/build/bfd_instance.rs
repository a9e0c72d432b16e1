//! `bfd_instance NAME { ... }`: a BFD session (RFC 5880/5881) to a
//! neighbour, which `track_bfd` turns into priority or FAULT.

use std::net::IpAddr;

use super::{
    super::{model::BfdInstance, tree::Node},
    Builder,
    keywords::{Table, leaf},
};

/// keepalived's bounds, in milliseconds (`bfd.h`).
const INTERVAL_MIN_MS: u64 = 1;
const IDLE_TX_MIN_MS: u64 = 1000;
const INTERVAL_MAX_MS: u64 = u32::MAX as u64 / 1000;
const SENSIBLE_MAX_MS: u64 = 10_000;
const TTL_IPV4: u8 = 255;
/// keepalived's `BFD_INAME_MAX`, with its terminating zero.
const NAME_MAX: usize = 32;
const HOPLIMIT_IPV6: u8 = 64;

/// The draft of a block: the neighbour may come late, the TTL's default
/// depends on its family.
struct Draft {
    bfd: BfdInstance,
    neighbor: Option<IpAddr>,
    ttl: Option<u8>,
    vrrp: bool,
    checker: bool,
}

impl Builder<'_> {
    pub(super) fn bfd_instance(&mut self, n: &Node) {
        let Some(name) = self.block_name(n) else {
            return;
        };
        if name.text.len() >= NAME_MAX {
            self.d
                .error(&name.loc, format!("BFD name {} too long", name.text))
                .hint(format!(
                    "keepalived takes at most {} characters",
                    NAME_MAX - 1
                ));
            return;
        }
        if self.cfg.bfd_instance.iter().any(|b| b.name == name.text) {
            self.defined_twice(n, &name);
            return;
        }
        let mut d = Draft {
            bfd: BfdInstance {
                name: name.text.clone(),
                neighbor_ip: IpAddr::from([0, 0, 0, 0]),
                source_ip: None,
                min_rx_us: 10_000,
                min_tx_us: 10_000,
                idle_tx_us: 1_000_000,
                multiplier: 5,
                passive: false,
                ttl: TTL_IPV4,
                max_hops: 0,
                multihop: false,
                weight: 0,
                weight_reverse: false,
                vrrp: true,
            },
            neighbor: None,
            ttl: None,
            vrrp: false,
            checker: false,
        };
        self.read_block(&BFD_INSTANCE, &mut d, n.children());
        let Some(neighbor) = d.neighbor else {
            self.d
                .error(
                    &name.loc,
                    format!("BFD instance {} has no neighbor address set", name.text),
                )
                .hint("add: neighbor_ip <address of the BFD peer>");
            return;
        };
        let mut b = d.bfd;
        b.neighbor_ip = neighbor;
        if let Some(src) = b.source_ip
            && src.is_ipv4() != neighbor.is_ipv4()
        {
            self.d
                .error(
                    &name.loc,
                    format!(
                        "BFD instance {}: source address {src} and neighbor address \
                         {neighbor} are not of the same family",
                        b.name
                    ),
                )
                .hint("use a source address of the neighbor's family");
            return;
        }
        let same = self.cfg.bfd_instance.iter().find(|o| {
            o.neighbor_ip == b.neighbor_ip && o.source_ip == b.source_ip && o.multihop == b.multihop
        });
        if let Some(other) = same {
            self.d
                .error(
                    &name.loc,
                    format!(
                        "BFD instance {} has the same source/neighbor addresses as {}",
                        b.name, other.name
                    ),
                )
                .hint("one session per neighbor (and source): track the same bfd_instance");
            return;
        }
        b.ttl = d.ttl.unwrap_or(if neighbor.is_ipv4() {
            TTL_IPV4
        } else {
            HOPLIMIT_IPV6
        });
        if b.max_hops != i32::from(u8::MAX) && b.max_hops > i32::from(b.ttl) {
            self.d
                .warn(
                    &name.loc,
                    format!(
                        "BFD instance {}: max_hops exceeds ttl/hoplimit - setting to ttl/hoplimit",
                        b.name
                    ),
                )
                .hint("max_hops is how far below the sent TTL a received one may be");
            b.max_hops = i32::from(b.ttl);
        }
        // `vrrp`/`checker` name who hears its events; naming only the
        // checker keeps it from VRRP.
        b.vrrp = d.vrrp || !d.checker;
        self.cfg.bfd_instance.push(b);
    }

    /// A decimal number of milliseconds, to microseconds (keepalived's
    /// resolution), within `[min, max]` ms; values above 10 s are noted.
    fn bfd_interval(&mut self, n: &Node, d: &Draft, min: u64) -> Option<u32> {
        let t = self.word(n, "milliseconds")?;
        let us = parse_decimal_ms(&t.text)
            .filter(|us| (min * 1000..=INTERVAL_MAX_MS * 1000).contains(&u64::from(*us)));
        let Some(us) = us else {
            self.d
                .error(
                    &t.loc,
                    format!(
                        "BFD instance {}: {} value {} is not valid (must be in range [{min}-{INTERVAL_MAX_MS}])",
                        d.bfd.name,
                        n.name(),
                        t.text
                    ),
                )
                .hint("milliseconds, with up to three decimals (e.g. 10 or 2.5)");
            return None;
        };
        if u64::from(us) > SENSIBLE_MAX_MS * 1000 {
            self.d
                .note(
                    &t.loc,
                    format!(
                        "BFD instance {}: {} value {} is larger than max sensible ({SENSIBLE_MAX_MS})",
                        d.bfd.name,
                        n.name(),
                        t.text
                    ),
                )
                .hint("BFD is for fast detection: tens of milliseconds");
        }
        Some(us)
    }
}

/// `12`, `2.5`, `3.312` milliseconds as microseconds (at most three
/// decimals, as keepalived reads them).
fn parse_decimal_ms(text: &str) -> Option<u32> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 3
        || !(whole.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    u32::try_from(whole.checked_mul(1000)?.checked_add(frac)?).ok()
}

static BFD_INSTANCE: Table<Draft> = Table {
    context: "bfd_instance",
    unknown_leaf: true,
    keywords: &[
        leaf(&["neighbor_ip", "neighbour_ip"], |b, d, n| {
            if let Some(t) = b.word(n, "address") {
                d.neighbor = b.ip(&t, n.name());
            }
        }),
        leaf(&["source_ip"], |b, d, n| {
            if let Some(t) = b.word(n, "address") {
                d.bfd.source_ip = b.ip(&t, "source_ip").or(d.bfd.source_ip);
            }
        }),
        leaf(&["min_rx"], |b, d, n| {
            if let Some(v) = b.bfd_interval(n, d, INTERVAL_MIN_MS) {
                d.bfd.min_rx_us = v;
            }
        }),
        leaf(&["min_tx"], |b, d, n| {
            if let Some(v) = b.bfd_interval(n, d, INTERVAL_MIN_MS) {
                d.bfd.min_tx_us = v;
            }
        }),
        leaf(&["idle_tx"], |b, d, n| {
            if let Some(v) = b.bfd_interval(n, d, IDLE_TX_MIN_MS) {
                d.bfd.idle_tx_us = v;
            }
        }),
        leaf(&["multiplier"], |b, d, n| {
            b.set_uint(n, 1, 255, &mut d.bfd.multiplier)
        }),
        leaf(&["passive"], |b, d, n| b.set_on(n, &mut d.bfd.passive)),
        leaf(&["ttl", "hoplimit"], |b, d, n| {
            if let Some(v) = b.uint(n, 1, 255) {
                d.ttl = u8::try_from(v).ok();
            }
        }),
        leaf(&["max_hops"], |b, d, n| {
            if let Some(t) = b.word(n, "value")
                && let Some(v) = b.int_tok(&t, "max_hops", -1, 255)
            {
                d.bfd.max_hops = v;
            }
        }),
        leaf(&["multihop"], |b, d, n| b.set_flag(n, &mut d.bfd.multihop)),
        leaf(&["weight"], |b, d, n| {
            let fields = (&mut d.bfd.weight, &mut d.bfd.weight_reverse);
            b.set_weight_reverse(n, "bfd_instance weight", 253, fields)
        }),
        leaf(&["vrrp"], |b, d, n| b.set_on(n, &mut d.vrrp)),
        leaf(&["checker"], |b, d, n| b.set_on(n, &mut d.checker)),
    ],
};

/// The names of this block's keywords (see `keyword_catalog`).
pub(super) fn keyword_names() -> Vec<&'static str> {
    BFD_INSTANCE.names().collect()
}

#[cfg(test)]
mod tests {
    use super::parse_decimal_ms;

    #[test]
    fn milliseconds_with_up_to_three_decimals() {
        assert_eq!(parse_decimal_ms("10"), Some(10_000));
        assert_eq!(parse_decimal_ms("2.5"), Some(2_500));
        assert_eq!(parse_decimal_ms("3.312"), Some(3_312));
        for bad in ["", ".5", "1.2345", "-1", "1e3", "x", "1.", "4294968"] {
            let got = parse_decimal_ms(bad);
            assert!(got.is_none() || bad == "1.", "{bad}: {got:?}");
        }
        assert_eq!(parse_decimal_ms("1."), Some(1_000));
    }
}
