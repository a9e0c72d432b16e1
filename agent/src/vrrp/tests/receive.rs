//! Rules 38–49: the receive checks that discard an advert (RFC 3768 §7.1, RFC 9568 §7.1).

use super::*;

#[test]
fn rfc3768_7_1_interval_mismatch_discarded() {
    let mut r = started(cfg(Version::V2, 100));
    let mut adv = advert_for(&r, 200);
    adv.interval_cs = 200;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::IntervalMismatch {
            ours_cs: 100,
            theirs_cs: 200
        })
    );
    assert_eq!(r.master_adver_int_cs(), 100);
}

#[test]
fn rfc3768_7_1_auth_type_mismatch_discarded() {
    let mut c = cfg(Version::V2, 100);
    c.auth = Auth::pass("secret");
    let mut r = started(c);
    let mut adv = advert_for(&r, 200);
    adv.auth = Auth::None;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::AuthTypeMismatch { ours: 1, theirs: 0 })
    );
}

#[test]
fn keepalived_auth_pass_mismatch_discarded() {
    let mut c = cfg(Version::V2, 100);
    c.auth = Auth::pass("secret");
    let mut r = started(c);
    let mut adv = advert_for(&r, 200);
    adv.auth = Auth::pass("secreT");
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::AuthPassMismatch));
    let a = rx(&mut r, S, S, "192.0.2.20", 200);
    assert_eq!(discarded(&a), None);
}

#[test]
fn rfc9568_7_1_ttl_not_255_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut m = meta(S, "192.0.2.20");
    m.ttl = 254;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::BadTtl(254)));
}

#[test]
fn keepalived_unicast_skips_ttl_check() {
    let mut c = cfg(Version::V3, 100);
    c.unicast_peers = vec![ip("192.0.2.20")];
    let mut r = started(c);
    let mut m = meta(S, "192.0.2.20");
    m.ttl = 63;
    m.unicast = true;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), None);
}

#[test]
fn rfc9568_7_1_wrong_vrid_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.vrid = 52;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::WrongVrid));
}

#[test]
fn rfc9568_7_1_wrong_version_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.version = Version::V2;
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::WrongVersion));
}

#[test]
fn keepalived_address_list_mismatch_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut adv = advert_for(&r, 200);
    adv.addrs = vec![ip("192.0.2.100"), ip("192.0.2.101")];
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv.clone());
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::AddressCountMismatch { ours: 1, theirs: 2 })
    );
    adv.addrs = vec![ip("192.0.2.101")];
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), adv);
    assert_eq!(discarded(&a), Some(DiscardReason::AddressListMismatch));
}

#[test]
fn large_advert_counted_from_header_and_carried_addresses_checked() {
    let mut c = cfg(Version::V3, 100);
    c.vips = (1..=200u8).map(|n| ip(&format!("198.18.0.{n}"))).collect();
    let mut r = started(c);
    // The datapath carried the first 64 of 200 addresses.
    let mut adv = advert_for(&r, 200);
    adv.addrs.truncate(64);
    let mut m = meta(S, "192.0.2.20");
    m.addrs_not_carried = 136;
    let a = rx_adv(&mut r, S, m, adv.clone());
    assert_eq!(discarded(&a), None, "a complete advert cut by the datapath");
    assert!(armed(&a, TimerKind::MasterDown).is_some());
    // One address fewer in the header: the count is wrong.
    m.addrs_not_carried = 135;
    let a = rx_adv(&mut r, 2 * S, m, adv.clone());
    assert_eq!(
        discarded(&a),
        Some(DiscardReason::AddressCountMismatch {
            ours: 200,
            theirs: 199
        })
    );
    // A carried address that is not ours.
    m.addrs_not_carried = 136;
    adv.addrs[3] = ip("203.0.113.1");
    let a = rx_adv(&mut r, 3 * S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::AddressListMismatch));
}

#[test]
fn keepalived_skip_check_adv_addr_for_known_master() {
    let mut c = cfg(Version::V3, 100);
    c.skip_check_adv_addr = true;
    let mut r = started(c);
    let mut odd = advert_for(&r, 200);
    odd.addrs = vec![ip("192.0.2.101")];
    // Unknown master: checked.
    let a = rx_adv(&mut r, S, meta(S, "192.0.2.20"), odd.clone());
    assert_eq!(discarded(&a), Some(DiscardReason::AddressListMismatch));
    // Known master: skipped.
    rx(&mut r, S, S, "192.0.2.20", 200);
    let a = rx_adv(&mut r, 2 * S, meta(2 * S, "192.0.2.20"), odd);
    assert_eq!(discarded(&a), None);
}

#[test]
fn keepalived_check_unicast_src_rejects_strangers() {
    let mut c = cfg(Version::V3, 100);
    c.unicast_peers = vec![ip("192.0.2.20")];
    c.check_unicast_src = true;
    let mut r = started(c);
    let mut m = meta(S, "192.0.2.21");
    m.unicast = true;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::UnicastSourceNotPeer));
}

#[test]
fn keepalived_unicast_multicast_mismatch_discarded() {
    let mut r = started(cfg(Version::V3, 100));
    let mut m = meta(S, "192.0.2.20");
    m.unicast = true;
    let adv = advert_for(&r, 200);
    let a = rx_adv(&mut r, S, m, adv);
    assert_eq!(discarded(&a), Some(DiscardReason::UnicastMismatch));
    let mut c = cfg(Version::V3, 100);
    c.unicast_peers = vec![ip("192.0.2.20")];
    let mut r = started(c);
    let a = rx(&mut r, S, S, "192.0.2.20", 200);
    assert_eq!(discarded(&a), Some(DiscardReason::UnicastMismatch));
}

#[test]
fn keepalived_fault_ignores_adverts() {
    let mut r = router(cfg(Version::V3, 100));
    let a = rx(&mut r, S, S, "192.0.2.20", 200);
    assert_eq!(discarded(&a), Some(DiscardReason::NotRunning));
    let mut c = cfg(Version::V3, 100);
    c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Down)];
    let mut r = started(c);
    let a = rx(&mut r, S, S, "192.0.2.20", 0);
    assert_eq!(discarded(&a), Some(DiscardReason::NotRunning));
    assert_eq!(r.state(), State::Fault);
}
