//! xvrrpd and keepalived 2.2.7 on one segment, VRRPv2 (issue #6), with and
//! without `authentication { auth_type PASS }`, `advert_int 1` (VRRPv2
//! carries whole seconds). Each test runs one role order: election, a crash
//! of the master (the other daemon detects it within
//! `Master_Down_Interval`), preemption back, SIGTERM (hand-over within
//! `Skew_Time`), preemption back; after each step's bound only one router
//! advertises, holds the VIP and answers the client.

use std::time::Duration;

use anyhow::Result;
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    retry::lab_test,
    scenario::interop_cycle,
};

fn v2(auth: Option<&str>) -> Instance {
    let mut i = Instance::new("VI_1", 21, &["192.0.2.100/24"]);
    i.version = 2;
    i.advert_int = Duration::from_secs(1);
    i.auth_pass = auth.map(String::from);
    i
}

fn run(test: &str, auth: Option<&str>, first: Daemon, second: Daemon) -> Result<()> {
    let (mut c, _) = interop_cycle(test, v2(auth), false, first, second, |_, _| Ok(()))?;
    let events = c.wire()?;
    let ads: Vec<_> = events
        .iter()
        .filter_map(|e| e.advert().map(|a| (e.src_mac, a.clone())))
        .collect();
    assert!(!ads.is_empty(), "no adverts captured");
    for (mac, a) in &ads {
        assert_eq!(a.version, 2, "an advert from {mac} is not VRRPv2");
        assert_eq!(a.interval_cs, 100, "an advert from {mac} does not say 1 s");
        match auth {
            Some(p) => {
                let mut want = [0u8; 8];
                want[..p.len()].copy_from_slice(p.as_bytes());
                assert_eq!(
                    (a.auth_type, a.auth_data),
                    (1, Some(want)),
                    "an advert from {mac} lacks the simple-text password"
                );
            }
            None => assert_eq!(a.auth_type, 0, "an advert from {mac} has authentication"),
        }
    }
    c.finish()
}

#[test]
fn v2_xvrrpd_master_keepalived_backup() -> Result<()> {
    lab_test("v2_xvrrpd_master_keepalived_backup", || {
        run("v2-x-k", None, Daemon::Xvrrpd, Daemon::Keepalived)?;
        Ok(())
    })
}

#[test]
fn v2_keepalived_master_xvrrpd_backup() -> Result<()> {
    lab_test("v2_keepalived_master_xvrrpd_backup", || {
        run("v2-k-x", None, Daemon::Keepalived, Daemon::Xvrrpd)?;
        Ok(())
    })
}

#[test]
fn v2_auth_pass_xvrrpd_master_keepalived_backup() -> Result<()> {
    lab_test("v2_auth_pass_xvrrpd_master_keepalived_backup", || {
        run(
            "v2auth-x-k",
            Some("secret"),
            Daemon::Xvrrpd,
            Daemon::Keepalived,
        )?;
        Ok(())
    })
}

#[test]
fn v2_auth_pass_keepalived_master_xvrrpd_backup() -> Result<()> {
    lab_test("v2_auth_pass_keepalived_master_xvrrpd_backup", || {
        run(
            "v2auth-k-x",
            Some("secret"),
            Daemon::Keepalived,
            Daemon::Xvrrpd,
        )?;
        Ok(())
    })
}
