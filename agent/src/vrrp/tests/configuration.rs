//! Rules 59–65: configuration checks and `vrrp_strict`.

use super::*;

#[test]
fn keepalived_nopreempt_needs_state_backup() {
    let mut c = cfg(Version::V3, 100);
    c.nopreempt = true;
    c.initial_state = InitialState::Master;
    let r = router(c);
    assert!(!r.config().nopreempt);
    assert!(
        r.warnings()
            .contains(&ConfigWarning::NopreemptWithStateMaster)
    );
}

#[test]
fn keepalived_nopreempt_reset_for_owner() {
    let mut c = cfg(Version::V3, 255);
    c.nopreempt = true;
    let r = router(c);
    assert!(!r.config().nopreempt);
    assert!(r.warnings().contains(&ConfigWarning::NopreemptWithOwner));
}

#[test]
fn keepalived_strict_forbids_auth() {
    let mut c = cfg(Version::V2, 100);
    c.strict = true;
    c.auth = Auth::pass("x");
    assert_eq!(Router::new(c).err(), Some(ConfigError::StrictAuth));
}

#[test]
fn keepalived_strict_forbids_unicast() {
    let mut c = cfg(Version::V3, 100);
    c.strict = true;
    c.unicast_peers = vec![ip("192.0.2.20")];
    assert_eq!(Router::new(c).err(), Some(ConfigError::StrictUnicast));
}

#[test]
fn keepalived_strict_forces_rfc_master_behaviour() {
    let mut c = cfg(Version::V3, 100);
    c.strict = true;
    c.higher_prio_send_advert = true;
    let r = router(c);
    assert!(r.config().lower_prio_no_advert);
    assert!(!r.config().higher_prio_send_advert);
    assert_eq!(r.config().garp.lower_prio_repeat, 0);
    let (mut r, t0) = master(r.config().clone());
    let a = rx(&mut r, t0 + 1, t0 + 1, "192.0.2.20", 50);
    assert!(adverts_sent(&a).is_empty());
    assert!(!a.iter().any(|x| matches!(x, Action::SendGratuitous { .. })));
}

#[test]
fn keepalived_strict_disables_preempt_delay() {
    let mut c = cfg(Version::V3, 100);
    c.strict = true;
    c.preempt_delay_ns = S;
    let r = router(c);
    assert_eq!(r.config().preempt_delay_ns, 0);
    assert!(r.warnings().contains(&ConfigWarning::StrictPreemptDelay));
}

#[test]
fn invalid_configurations_are_refused() {
    let mut c = cfg6(100);
    c.version = Version::V2;
    c.advert_int_cs = 100;
    assert_eq!(Router::new(c).err(), Some(ConfigError::V2OverIpv6));
    let mut c = cfg(Version::V3, 100);
    c.vrid = 0;
    assert_eq!(Router::new(c).err(), Some(ConfigError::ZeroVrid));
    let mut c = cfg(Version::V3, 100);
    c.vips.clear();
    assert_eq!(Router::new(c).err(), Some(ConfigError::NoVips));
    let mut c = cfg(Version::V2, 100);
    c.advert_int_cs = 50;
    assert_eq!(Router::new(c).err(), Some(ConfigError::BadInterval(50)));
    let mut c = cfg(Version::V3, 100);
    c.vips.push(ip("2001:db8::1"));
    assert!(matches!(
        Router::new(c).err(),
        Some(ConfigError::WrongFamily(_))
    ));
    let mut c = cfg(Version::V3, 100);
    c.priority = 0;
    assert_eq!(Router::new(c).err(), Some(ConfigError::ZeroPriority));
}
