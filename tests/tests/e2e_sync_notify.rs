//! Sync groups and notifications (issue #5), with the real xvrrpd
//! (`XVRRPD_LAB_DAEMON=keepalived`: the same scenarios with keepalived).

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::Result;
use xvrrpd_tests::{
    analysis::{adverts, check_sole_advertiser},
    clock::{Stamp, ms},
    craft::vrrp_v3_ipv4_frame,
    frame_injector,
    kconf::{Instance, Notify, RouterConfig, SyncGroup, TrackScript, VrrpScript},
    pcap::{ChecksumKind, Mac},
    retry::lab_test,
    router::{FIFO_EVENTS, LinkSide, NotifyCall, RouterNode},
    scenario::Cluster,
    vrrp_lab::{VrrpLab, scenario_daemon, xvrrpd_only},
};

/// The states a router reported on its FIFO, with priorities (event lines
/// left out).
fn fifo_states(r: &RouterNode, subject: &str, name: &str) -> Vec<(String, Option<u32>)> {
    r.fifo_lines()
        .into_iter()
        .filter(|l| l.subject == subject && l.name == name)
        .filter(|l| !FIFO_EVENTS.contains(&l.state.as_str()))
        .map(|l| (l.state, l.priority))
        .collect()
}

/// Event lines carry the router's own effective priority, as keepalived's
/// `send_event_notify()` writes them.
fn check_fifo_events(r: &RouterNode, name: &str, own_priority: u32) {
    for l in r.fifo_lines().iter().filter(|l| l.name == name) {
        if FIFO_EVENTS.contains(&l.state.as_str()) {
            assert_eq!(
                l.priority,
                Some(own_priority),
                "{}: FIFO event line {:?} should carry the router's own priority, as keepalived's",
                r.name,
                l.raw
            );
        }
    }
}

/// Checks the notify calls of one router against the transitions it went
/// through. Each transition runs the state's own script (no arguments)
/// and the generic one (`INSTANCE VI_1 STATE PRIO`); keepalived starts both
/// at once, so their order within one transition is not fixed, but every
/// call of a transition comes before any call of the next.
fn check_notify_calls(r: &RouterNode, states: &[&str], prio: u32, strict_pairs: bool) {
    let calls = r.notify_calls();
    let own: Vec<&NotifyCall> = calls.iter().filter(|c| c.kind != "notify").collect();
    let generic: Vec<&NotifyCall> = calls.iter().filter(|c| c.kind == "notify").collect();
    let want_own: Vec<String> = states.iter().map(|s| s.to_lowercase()).collect();
    let got_own: Vec<String> = own.iter().map(|c| c.kind.clone()).collect();
    assert_eq!(
        got_own, want_own,
        "{}: the per-state notify scripts, in order",
        r.name
    );
    for c in &own {
        assert!(
            c.args.is_empty(),
            "{}: notify_{} got arguments {:?}",
            r.name,
            c.kind,
            c.args
        );
    }
    let want_generic: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            vec![
                "INSTANCE".to_string(),
                "VI_1".to_string(),
                s.to_string(),
                prio.to_string(),
            ]
        })
        .collect();
    let got_generic: Vec<Vec<String>> = generic.iter().map(|c| c.args.clone()).collect();
    assert_eq!(
        got_generic, want_generic,
        "{}: the generic notify script's arguments, in order",
        r.name
    );
    for k in 1..states.len() {
        let prev = own[k - 1].rt_ns.max(generic[k - 1].rt_ns);
        let next = own[k].rt_ns.min(generic[k].rt_ns);
        assert!(
            prev <= next,
            "{}: a script of transition {k} ({}) ran before one of transition {} ({})",
            r.name,
            states[k],
            k - 1,
            states[k - 1]
        );
    }
    if strict_pairs {
        // xvrrpd runs one instance's scripts one after another: the
        // state's own script, then the generic one, transition by
        // transition.
        let order: Vec<String> = calls.iter().map(|c| c.kind.clone()).collect();
        let want: Vec<String> = want_own
            .iter()
            .flat_map(|s| [s.clone(), "notify".to_string()])
            .collect();
        assert_eq!(
            order, want,
            "{}: notify scripts in the order they ran",
            r.name
        );
    }
}

#[test]
fn notify_scripts_and_fifo_in_order() -> Result<()> {
    lab_test("notify_scripts_and_fifo_in_order", || {
        let d = scenario_daemon();
        let mut c = Cluster::new(
            "notify",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[("r1", d, 150), ("r2", d, 100)],
            false,
            |r, cfg| {
                cfg.instances[0].notify = Notify {
                    master: Some(r.notify_script("master")?),
                    backup: Some(r.notify_script("backup")?),
                    fault: Some(r.notify_script("fault")?),
                    stop: Some(r.notify_script("stop")?),
                    generic: Some(r.notify_script("notify")?),
                };
                Ok(())
            },
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        c.link_fail("r1", "r2", LinkSide::Switch)?;
        c.link_restore("r1", "r2", LinkSide::Switch)?;
        c.terminate("r1", "r2")?;
        // Notify scripts are not waited for: give the last ones time to write.
        let r1_states = ["BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER", "STOP"];
        let r2_states = ["BACKUP", "MASTER", "BACKUP", "MASTER"];
        let done =
            xvrrpd_tests::wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
                c.router("r1").notify_calls().len() >= 2 * r1_states.len()
                    && c.router("r2").notify_calls().len() >= 2 * r2_states.len()
            });
        assert!(done, "the notify scripts did not all run within 3 s");
        let strict = xvrrpd_only(d, "the order of the two scripts within one transition");
        for (name, states, prio) in [("r1", &r1_states[..], 150), ("r2", &r2_states[..], 100)] {
            let r = c.router(name);
            let want: Vec<(String, Option<u32>)> =
                states.iter().map(|s| (s.to_string(), Some(prio))).collect();
            assert_eq!(
                fifo_states(r, "INSTANCE", "VI_1"),
                want,
                "{name}: the notify FIFO's lines"
            );
            check_fifo_events(r, "VI_1", prio);
            check_notify_calls(r, states, prio, strict);
        }
        c.finish()
    })
}

/// A master that receives a lower-priority advert writes the event
/// `INSTANCE "VI_1" MASTER_RX_LOWER_PRI <its own priority>` on the FIFO
/// (keepalived's `send_event_notify()`), and stays master.
#[test]
fn master_receiving_a_lower_priority_advert_reports_it_on_the_fifo() -> Result<()> {
    lab_test(
        "master_receiving_a_lower_priority_advert_reports_it_on_the_fifo",
        || {
            let d = scenario_daemon();
            let mut lab = VrrpLab::new("rx-lower-pri")?;
            let mut r1 = lab.add_router("r1", d, &["192.0.2.11/24"])?;
            let fake = lab.add_client("fake", &["192.0.2.99/24"])?;
            let mut vi1 = Instance::new("VI_1", 51, &["192.0.2.100/24"]).with_priority(150);
            vi1.extra.push(format!(
                "notify_master_rx_lower_pri {}",
                r1.notify_script("rx_lower_pri")?
            ));
            r1.write_config(&RouterConfig::single(vi1))?;
            r1.start()?;
            r1.wait_state("VI_1", "MASTER", Duration::from_secs(5))?;
            let inj = frame_injector(&fake, "eth0")?;
            let frame = vrrp_v3_ipv4_frame(
                Mac([2, 0, 0, 0, 0, 0x63]),
                Ipv4Addr::new(192, 0, 2, 99),
                51,
                50,
                1,
                &[Ipv4Addr::new(192, 0, 2, 100)],
                ChecksumKind::PseudoHeader,
            );
            inj.send(&frame)?;
            let seen =
                xvrrpd_tests::wait_until(Duration::from_secs(1), Duration::from_millis(5), || {
                    r1.fifo_lines()
                        .iter()
                        .any(|l| l.state == "MASTER_RX_LOWER_PRI")
                });
            assert!(
                seen,
                "r1 wrote no MASTER_RX_LOWER_PRI line after a priority-50 advert; FIFO: {:?}",
                r1.fifo_lines()
                    .iter()
                    .map(|l| l.raw.clone())
                    .collect::<Vec<_>>()
            );
            check_fifo_events(&r1, "VI_1", 150);
            // `notify_master_rx_lower_pri`: its script runs, with no arguments.
            let ran =
                xvrrpd_tests::wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
                    r1.notify_calls().iter().any(|c| c.kind == "rx_lower_pri")
                });
            assert!(ran, "notify_master_rx_lower_pri's script did not run");
            let call = r1
                .notify_calls()
                .into_iter()
                .find(|c| c.kind == "rx_lower_pri");
            assert_eq!(
                call.map(|c| c.args),
                Some(Vec::new()),
                "notify_master_rx_lower_pri's script got arguments"
            );
            assert_eq!(
                r1.fifo_state("VI_1").as_deref(),
                Some("MASTER"),
                "r1 left MASTER"
            );
            assert!(
                r1.has_vip("192.0.2.100".parse().unwrap()),
                "r1 dropped the VIP"
            );
            Ok(())
        },
    )
}

/// A reload that removes instances notifies keepalived's way: the generic
/// script gets FAULT by default, DELETED with `notify_deleted` (whose own
/// script runs; `notify_fault` does not), never STOP. The FIFO gets the
/// same states from xvrrpd; keepalived 2.2.7 in this lab writes nothing
/// on the FIFO after a reload (its log: "Failed to set default user for
/// vrrp_ fifo (null)"), so that part is xvrrpd's alone here.
#[test]
fn a_reload_that_removes_instances_notifies_fault_or_deleted() -> Result<()> {
    lab_test(
        "a_reload_that_removes_instances_notifies_fault_or_deleted",
        || {
            let d = scenario_daemon();
            let mut lab = VrrpLab::new("deleted")?;
            let mut r1 = lab.add_router("r1", d, &["192.0.2.11/24"])?;
            let inst = |name: &str, vrid: u8, vip: &str| {
                Instance::new(name, vrid, &[vip]).with_priority(150)
            };
            let mut plain = inst("VI_PLAIN", 61, "192.0.2.161/24");
            plain.notify = Notify {
                fault: Some(r1.notify_script("fault")?),
                stop: Some(r1.notify_script("stop")?),
                generic: Some(r1.notify_script("notify")?),
                ..Notify::default()
            };
            let mut del = inst("VI_DEL", 62, "192.0.2.162/24");
            del.extra
                .push(format!("notify_deleted {}", r1.notify_script("deleted")?));
            let keep = inst("VI_KEEP", 63, "192.0.2.163/24");
            let mut cfg = RouterConfig::single(plain);
            cfg.instances.push(del);
            cfg.instances.push(keep.clone());
            r1.write_config(&cfg)?;
            r1.start()?;
            for name in ["VI_PLAIN", "VI_DEL", "VI_KEEP"] {
                r1.wait_state(name, "MASTER", Duration::from_secs(5))?;
            }
            r1.write_config(&RouterConfig::single(keep))?;
            r1.sighup()?;
            let done =
                xvrrpd_tests::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                    let calls = r1.notify_calls();
                    calls.iter().any(|c| c.kind == "deleted")
                        && calls.iter().any(|c| {
                            c.kind == "notify" && c.args.get(2).is_some_and(|s| s == "FAULT")
                        })
                });
            let fifo: Vec<String> = r1.fifo_lines().into_iter().map(|l| l.raw).collect();
            let calls: Vec<String> = r1
                .notify_calls()
                .into_iter()
                .map(|c| format!("{} {}", c.kind, c.args.join(" ")))
                .collect();
            assert!(
                done,
                "expected FAULT for VI_PLAIN and DELETED for VI_DEL; FIFO: {fifo:?}; scripts: {calls:?}"
            );
            assert!(
                calls.contains(&"notify INSTANCE VI_PLAIN FAULT 150".to_string()),
                "the generic script's FAULT line for VI_PLAIN: {calls:?}"
            );
            assert!(
                !calls.iter().any(|c| c.trim() == "fault"),
                "notify_fault ran for a removed instance (keepalived does not run it): {calls:?}"
            );
            if xvrrpd_only(d, "FAULT / DELETED on the FIFO for removed instances") {
                for want in [
                    "INSTANCE \"VI_PLAIN\" FAULT 150",
                    "INSTANCE \"VI_DEL\" DELETED 150",
                ] {
                    let seen = xvrrpd_tests::wait_until(
                        Duration::from_secs(2),
                        Duration::from_millis(10),
                        || r1.fifo_lines().iter().any(|l| l.raw == want),
                    );
                    assert!(seen, "no FIFO line {want:?}: {fifo:?}");
                }
            }
            assert!(
                !calls.iter().any(|c| c.starts_with("stop")),
                "a removed instance ran notify_stop: {calls:?}"
            );
            assert!(
                !fifo.iter().any(|l| l.contains("STOP")),
                "a removed instance wrote STOP: {fifo:?}"
            );
            assert_eq!(
                r1.fifo_state("VI_KEEP").as_deref(),
                Some("MASTER"),
                "the kept instance moved"
            );
            Ok(())
        },
    )
}

/// `fifo_write_vrrp_states_on_reload`: after a reload that changes nothing,
/// the FIFO gets the state of each instance again (a reader that started
/// late learns where things stand), with no transition and no script.
#[test]
fn fifo_write_vrrp_states_on_reload_repeats_the_states() -> Result<()> {
    lab_test(
        "fifo_write_vrrp_states_on_reload_repeats_the_states",
        || {
            let d = scenario_daemon();
            let mut lab = VrrpLab::new("restate")?;
            let mut r1 = lab.add_router("r1", d, &["192.0.2.11/24"])?;
            let mut vi1 = Instance::new("VI_1", 51, &["192.0.2.100/24"]).with_priority(150);
            vi1.notify.generic = Some(r1.notify_script("notify")?);
            let mut cfg = RouterConfig::single(vi1);
            cfg.global
                .extra
                .push("fifo_write_vrrp_states_on_reload".into());
            r1.write_config(&cfg)?;
            r1.start()?;
            r1.wait_state("VI_1", "MASTER", Duration::from_secs(5))?;
            let masters = |r: &RouterNode| {
                r.fifo_lines()
                    .iter()
                    .filter(|l| l.raw == "INSTANCE \"VI_1\" MASTER 150")
                    .count()
            };
            assert_eq!(masters(&r1), 1);
            // The generic script of BACKUP and of MASTER, run after their
            // FIFO lines: both are done before counting.
            let settled =
                xvrrpd_tests::wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
                    r1.notify_calls().len() >= 2
                });
            assert!(settled, "the notify scripts of the start did not run");
            let scripts_before = r1.notify_calls().len();
            r1.sighup()?;
            if !xvrrpd_only(d, "the FIFO after a reload") {
                // keepalived 2.2.7 in this lab has no FIFO after a reload: its
                // log says "Failed to set default user for vrrp_ fifo (null)".
                return Ok(());
            }
            let again =
                xvrrpd_tests::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                    masters(&r1) == 2
                });
            assert!(
                again,
                "no second MASTER line after the reload: {:?}",
                r1.fifo_lines()
                    .iter()
                    .map(|l| l.raw.clone())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(
                r1.notify_calls().len(),
                scripts_before,
                "a script ran for the repeated state"
            );
            Ok(())
        },
    )
}

/// `startup_script` runs before the instances start and is waited for, up
/// to `startup_script_timeout` (then killed); `shutdown_script` runs once
/// the instances stopped and their VIPs are gone.
#[test]
fn startup_and_shutdown_scripts_run_around_the_instances() -> Result<()> {
    lab_test(
        "startup_and_shutdown_scripts_run_around_the_instances",
        || {
            let d = scenario_daemon();
            let mut lab = VrrpLab::new("startstop")?;
            let mut r1 = lab.add_router("r1", d, &["192.0.2.11/24"])?;
            let log = r1.notify_log.display().to_string();
            // Writes its line, then outlives its 1 s timeout.
            let startup = r1.write_script(
                "startup.sh",
                &format!("#!/bin/sh\necho \"$(date +%s%N) startup\" >> {log}\nsleep 30\n"),
            )?;
            // Says whether the VIP is still on the interface when it runs.
            let shutdown = r1.write_script(
            "shutdown.sh",
            &format!(
                "#!/bin/sh\nif ip -br addr | grep -q 192.0.2.100/; then held=held; else held=gone; fi\n\
                 echo \"$(date +%s%N) shutdown $held\" >> {log}\n"
            ),
        )?;
            let mut cfg = RouterConfig::single(
                Instance::new("VI_1", 51, &["192.0.2.100/24"]).with_priority(150),
            );
            cfg.global.extra.extend([
                format!("startup_script {}", startup.display()),
                "startup_script_timeout 1".to_string(),
                format!("shutdown_script {}", shutdown.display()),
            ]);
            r1.write_config(&cfg)?;
            r1.start()?;
            r1.wait_state("VI_1", "MASTER", Duration::from_secs(15))?;
            let master_rt = r1
                .fifo_lines()
                .iter()
                .find(|l| l.state == "MASTER")
                .map(|l| l.at.rt_ns)
                .unwrap_or(0);
            let started = r1
                .notify_calls()
                .into_iter()
                .find(|c| c.kind == "startup")
                .map(|c| c.rt_ns);
            let Some(started) = started else {
                panic!("the startup script did not run: {:?}", r1.notify_calls());
            };
            assert!(
                master_rt >= started + 900_000_000,
                "MASTER came {} after the startup script started: it was not waited for up to its 1 s timeout",
                ms(master_rt as i128 - started as i128)
            );
            r1.sigterm()?;
            let ran =
                xvrrpd_tests::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                    r1.notify_calls().iter().any(|c| c.kind == "shutdown")
                });
            let calls = r1.notify_calls();
            assert!(ran, "the shutdown script did not run: {calls:?}");
            let held: Vec<&str> = calls
                .iter()
                .filter(|c| c.kind == "shutdown")
                .filter_map(|c| c.args.first().map(String::as_str))
                .collect();
            assert_eq!(held, ["gone"], "the VIP when the shutdown script ran");
            Ok(())
        },
    )
}

#[test]
fn sync_group_members_move_together() -> Result<()> {
    lab_test("sync_group_members_move_together", || {
        let d = scenario_daemon();
        let vip2: IpAddr = "198.51.100.100".parse().unwrap();
        let mut c = Cluster::new(
            "syncgroup",
            Instance::new("VI_1", 51, &["192.0.2.100/24"]),
            &[("r1", d, 150), ("r2", d, 100)],
            false,
            |r, cfg| {
                let mut vi2 = cfg.instances[0].clone();
                vi2.name = "VI_2".into();
                vi2.vrid = 52;
                vi2.vips = vec!["198.51.100.100/24".into()];
                if r.name == "r1" {
                    // Only VI_2 tracks the script; its failure faults the group.
                    let path = r.check_script("chk")?;
                    cfg.scripts.push(VrrpScript::new("chk", &path));
                    vi2.track_scripts.push(TrackScript {
                        name: "chk".into(),
                        weight: None,
                    });
                }
                cfg.instances.push(vi2);
                cfg.sync_groups.push(SyncGroup {
                    name: "G1".into(),
                    members: vec!["VI_1".into(), "VI_2".into()],
                    notify: Notify::default(),
                });
                Ok(())
            },
        )?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        assert!(
            c.router("r1").wait_vip(vip2, true, Duration::from_secs(2)),
            "r1 is master of VI_1 but does not hold VI_2's VIP {vip2}"
        );
        assert!(
            !c.router("r2").has_vip(vip2),
            "r2 holds VI_2's VIP {vip2} while r1 is master"
        );

        // VI_2's script fails on r1: the whole group goes FAULT and both
        // instances move to r2.
        let event = c.lab.mark("VI_2's check fails on r1");
        c.router("r1").set_check("chk", false)?;
        let (tk, now) = c.await_takeover("r1", "r2", event, Duration::from_secs(3))?;
        c.check_after("r2", event, &tk, Duration::from_millis(1), now, &[])?;
        assert!(
            c.router("r2").wait_vip(vip2, true, Duration::from_secs(1)),
            "VI_1 moved to r2 but VI_2's VIP {vip2} did not"
        );
        assert!(
            c.router("r1").wait_vip(vip2, false, Duration::from_secs(1)),
            "r1 is in FAULT but kept VI_2's VIP {vip2}"
        );
        let (a1, a2) = (
            c.router("r2").watch.added_at(c.vip).unwrap(),
            c.router("r2").watch.added_at(vip2).unwrap(),
        );
        assert!(
            a1.abs_diff(a2) < 50_000_000,
            "r2 took the two members' VIPs {} ms apart",
            a1.abs_diff(a2) as f64 / 1e6
        );
        let ads2 = adverts(&c.wire()?, 52, false);
        check_sole_advertiser(
            &ads2,
            c.router("r2").mac,
            tk.new_first.t_ns + 20_000_000,
            Stamp::now().rt_ns,
            c.lab.origin.rt_ns,
        )?;
        let r1 = c.router("r1");
        for inst in ["VI_1", "VI_2"] {
            assert_eq!(
                fifo_states(r1, "INSTANCE", inst)
                    .last()
                    .map(|s| s.0.as_str()),
                Some("FAULT"),
                "r1: {inst}'s last FIFO state"
            );
        }
        assert_eq!(
            fifo_states(r1, "GROUP", "G1").last().map(|s| s.0.as_str()),
            Some("FAULT"),
            "r1: the group's last FIFO state"
        );

        // The script passes again: the group comes back and preempts, whole.
        let event = c.lab.mark("VI_2's check passes on r1");
        c.router("r1").set_check("chk", true)?;
        let back = c.preempted_by("r1", "r2", event, "group back")?;
        println!("{}", back.summary());
        assert!(
            c.router("r1").wait_vip(vip2, true, Duration::from_secs(1)),
            "VI_1 came back to r1 but VI_2's VIP {vip2} did not"
        );
        assert!(
            c.router("r2").wait_vip(vip2, false, Duration::from_secs(1)),
            "r2 kept VI_2's VIP {vip2} after r1 took the group back"
        );
        assert_eq!(
            fifo_states(c.router("r1"), "GROUP", "G1")
                .last()
                .map(|s| s.0.as_str()),
            Some("MASTER"),
            "r1: the group's last FIFO state"
        );
        c.finish()
    })
}
