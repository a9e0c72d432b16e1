//! Rules 70–73: reload (SIGHUP).

use super::*;

#[test]
fn reload_as_master_keeps_state_without_regarp() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let mut c = r.config().clone();
    c.priority = 120;
    let a = r.handle(t0 + 1, Input::Reload(Box::new(c)));
    assert_eq!(r.state(), State::Master);
    assert_eq!(r.priority(), 120);
    assert!(!a.iter().any(|x| matches!(
        x,
        Action::SendGratuitous { .. }
            | Action::AddVips
            | Action::RemoveVips
            | Action::Transition(_)
    )));
}

#[test]
fn reload_changed_vips_updates_only_difference() {
    let mut c = cfg(Version::V3, 100);
    c.vips = vec![ip("192.0.2.100"), ip("192.0.2.101")];
    let (mut r, t0) = master(c.clone());
    c.vips = vec![ip("192.0.2.101"), ip("192.0.2.102")];
    let a = r.handle(t0 + 1, Input::Reload(Box::new(c)));
    assert_eq!(
        a,
        vec![Action::UpdateVips {
            added: vec![ip("192.0.2.102")],
            removed: vec![ip("192.0.2.100")]
        }]
    );
}

#[test]
fn reload_invalid_config_is_rejected() {
    let (mut r, t0) = master(cfg(Version::V3, 100));
    let mut c = r.config().clone();
    c.vips.clear();
    let a = r.handle(t0 + 1, Input::Reload(Box::new(c)));
    assert_eq!(a, vec![Action::ReloadRejected(ConfigError::NoVips)]);
    assert_eq!(r.config().vips.len(), 1);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn reload_priority_change_rearms_down_timer() {
    let mut r = started(cfg(Version::V3, 100));
    rx(&mut r, S, S, "192.0.2.20", 250);
    let mut c = r.config().clone();
    c.priority = 200;
    let a = r.handle(S + 5, Input::Reload(Box::new(c)));
    assert_eq!(
        armed(&a, TimerKind::MasterDown),
        Some(S + r.master_down_ns())
    );
    assert_eq!(r.state(), State::Backup);
}
