//! A reload is one transaction: a configuration whose resources cannot all
//! be had leaves everything running as it was, and a configuration that is
//! taken brings its trackers and priorities along whole.
//!
//! xvrrpd only: keepalived reloads by re-reading everything.

use std::{net::IpAddr, path::Path, time::Duration};

use anyhow::{Context, Result};
use xvrrpd_tests::{
    analysis::{adverts, held_throughout, max_advert_gap},
    clock::{Stamp, ms},
    kconf::{Daemon, Instance, RouterConfig, TrackScript, VrrpScript},
    retry::lab_test,
    scenario::Cluster,
};

const VIP: &str = "192.0.2.100";
const METRICS_PORT: u16 = 9478;

fn pair(test: &str, metrics: bool) -> Result<Cluster> {
    let mut c = Cluster::new(
        test,
        Instance::new("VI_1", 51, &["192.0.2.100/24"]),
        &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
        false,
        |_, _| Ok(()),
    )?;
    if metrics {
        c.router_mut("r1").extra_args = vec![
            "--metrics-listen".into(),
            format!("127.0.0.1:{METRICS_PORT}"),
        ];
    }
    Ok(c)
}

/// r1's configuration text with `blocks` added at the top level.
fn with_blocks(cfg: &RouterConfig, blocks: &str) -> Result<String> {
    Ok(cfg.render(Daemon::Xvrrpd)? + blocks)
}

/// One gauge of r1's VI_1 from its metrics endpoint.
fn gauge(c: &Cluster, name: &str) -> Result<Option<f64>> {
    let host = c.router("r1").host.clone();
    let text = host.run_in(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })?;
    Ok(text
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("instance=\"VI_1\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok()))
}

/// A new instance whose advert socket cannot be opened (its source is no
/// address of the host) makes the whole reload refused: VI_1 keeps running
/// as master — no transition, no priority-0 advert, adverts every
/// interval, the VIP held — and status still lists exactly VI_1.
#[test]
fn a_reload_that_cannot_open_a_socket_changes_nothing() -> Result<()> {
    lab_test("a_reload_that_cannot_open_a_socket_changes_nothing", || {
        let mut c = pair("reload-refused", false)?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        let mut cfg = c.router("r1").config().context("r1 has a config")?.clone();
        let mut vi2 = cfg.instances[0].clone();
        vi2.name = "VI_2".into();
        vi2.vrid = 52;
        vi2.vips = vec!["198.51.100.100/24".into()];
        // TEST-NET-3: never an address of the lab's hosts.
        vi2.extra.push("mcast_src_ip 203.0.113.250".into());
        cfg.instances.push(vi2);
        c.router_mut("r1").write_config(&cfg)?;
        let hup = c.router_mut("r1").sighup()?;
        c.lab
            .mark_at("SIGHUP r1 (VI_2 cannot open its socket)", hup);
        std::thread::sleep(Duration::from_secs(1));
        let r1 = c.router_mut("r1");
        assert!(r1.is_running(), "r1 exited on the refused reload");
        let now = Stamp::now();
        let r1 = c.router("r1");
        let rep = r1.status()?;
        let names: Vec<(&str, &str)> = rep
            .instances
            .iter()
            .map(|i| (i.name.as_str(), i.state.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("VI_1", "MASTER")],
            "status after the refused reload"
        );
        assert_eq!(rep.daemon.reloads, 0, "a refused reload is not counted");
        assert!(
            r1.fifo_lines().iter().all(|l| l.at.mono_ns < hup.mono_ns),
            "VI_1 went through a transition on the refused reload"
        );
        let vip: IpAddr = VIP.parse().unwrap();
        assert!(
            held_throughout(&r1.watch.held(vip), hup.mono_ns, now.mono_ns),
            "r1 did not hold {vip} throughout the refused reload: {:?}",
            r1.watch.held(vip)
        );
        let ads = adverts(&c.wire()?, 51, false);
        assert!(
            !ads.iter()
                .any(|a| a.mac == r1.mac && a.priority == 0 && a.t_ns >= hup.rt_ns),
            "r1 sent a priority-0 advert on the refused reload"
        );
        let gap = max_advert_gap(&ads, r1.mac, hup.rt_ns, now.rt_ns).unwrap_or(u64::MAX);
        assert!(
            gap <= 25_000_000,
            "r1's adverts stopped for {} around the refused reload",
            ms(gap as i128)
        );
        let log = r1.log();
        assert!(
            log.contains("reload refused") && log.contains("VI_2"),
            "r1's log does not say the reload was refused for VI_2:\n{}",
            r1.log_tail(20)
        );
        c.finish()?;
        Ok(())
    })
}

/// SIGHUP with the file unchanged: r1 keeps the `effective` priority its
/// trackers made, in status and in the gauge, and the configured 150 as its
/// base; `reloads` counts this one.
fn unchanged_reload_keeps(c: &mut Cluster, effective: u8, reloads: u64) -> Result<()> {
    let hup = c.router_mut("r1").sighup()?;
    c.lab.mark_at("SIGHUP r1 (unchanged)", hup);
    std::thread::sleep(Duration::from_millis(500));
    let rep = c.router("r1").status()?;
    assert_eq!(rep.daemon.reloads, reloads);
    assert_eq!(
        rep.instances[0].effective_priority, effective,
        "status after the reload"
    );
    assert_eq!(
        gauge(c, "xvrrpd_instance_effective_priority")?,
        Some(f64::from(effective)),
        "the effective-priority gauge after an unchanged reload"
    );
    assert_eq!(gauge(c, "xvrrpd_instance_base_priority")?, Some(150.0));
    Ok(())
}

fn write_value(path: &Path, v: i32) -> Result<()> {
    std::fs::write(path, format!("{v}\n")).with_context(|| format!("writing {}", path.display()))
}

/// A `track_file` whose path changes on reload follows the new file (and
/// leaves the old one), and the priority it makes survives the reload in
/// status and in the effective-priority gauge.
#[test]
fn a_reload_moves_a_track_file_and_keeps_the_priority_it_makes() -> Result<()> {
    lab_test(
        "a_reload_moves_a_track_file_and_keeps_the_priority_it_makes",
        || {
            let mut c = pair("reload-track-file", true)?;
            let dir = c.router("r1").dir.clone();
            let (a, b) = (dir.join("weight-a"), dir.join("weight-b"));
            write_value(&a, 0)?;
            write_value(&b, 0)?;
            let mut cfg = c.router("r1").config().context("r1 has a config")?.clone();
            cfg.instances[0].extra.extend([
                "track_file {".into(),
                "    level weight 1".into(),
                "}".into(),
            ]);
            let block =
                |p: &Path| format!("vrrp_track_file level {{\n    file {}\n}}\n", p.display());
            let text_a = with_blocks(&cfg, &block(&a))?;
            c.router_mut("r1").write_config_text(&text_a)?;
            c.start_all()?;
            c.expect_master("r1", Duration::from_secs(10))?;

            // The same configuration but for the file's path.
            let text_b = with_blocks(&cfg, &block(&b))?;
            c.router_mut("r1").write_config_text(&text_b)?;
            let hup = c.router_mut("r1").sighup()?;
            c.lab
                .mark_at("SIGHUP r1 (track_file moved to weight-b)", hup);
            std::thread::sleep(Duration::from_millis(500));
            // The old file no longer counts...
            write_value(&a, -80)?;
            std::thread::sleep(Duration::from_millis(500));
            let rep = c.router("r1").status()?;
            assert_eq!(
                rep.instances[0].effective_priority, 150,
                "r1 still follows the track_file's old path after the reload"
            );
            // ...the new one does: 150 - 60 = 90 < 100, r2 takes over.
            write_value(&b, -60)?;
            let vip: IpAddr = VIP.parse().unwrap();
            assert!(
                c.router("r2").wait_vip(vip, true, Duration::from_secs(3)),
                "r2 did not take over when r1's new track_file lowered it to 90: {}",
                c.router("r1").log_tail(10)
            );
            let rep = c.router("r1").status()?;
            assert_eq!(
                rep.instances[0].effective_priority, 90,
                "status after the file changed"
            );
            assert_eq!(gauge(&c, "xvrrpd_instance_effective_priority")?, Some(90.0));

            // An unchanged reload keeps the priority the tracker made.
            unchanged_reload_keeps(&mut c, 90, 2)?;
            c.finish()?;
            Ok(())
        },
    )
}

/// A failing health check lowers r1 to 150 − 60 = 90; an unchanged reload
/// keeps that priority in status and in the effective-priority gauge
/// instead of resetting the gauge to the configured 150.
#[test]
fn an_unchanged_reload_keeps_the_effective_priority_gauge() -> Result<()> {
    lab_test(
        "an_unchanged_reload_keeps_the_effective_priority_gauge",
        || {
            let mut c = Cluster::new(
                "reload-priority-gauge",
                Instance::new("VI_1", 51, &["192.0.2.100/24"]),
                &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
                false,
                |r, cfg| {
                    if r.name == "r1" {
                        let path = r.check_script("chk")?;
                        cfg.scripts.push(VrrpScript::new("chk", &path));
                        cfg.instances[0].track_scripts.push(TrackScript {
                            name: "chk".into(),
                            weight: Some(-60),
                        });
                    }
                    Ok(())
                },
            )?;
            c.router_mut("r1").extra_args = vec![
                "--metrics-listen".into(),
                format!("127.0.0.1:{METRICS_PORT}"),
            ];
            c.start_all()?;
            c.expect_master("r1", Duration::from_secs(10))?;
            c.router("r1").set_check("chk", false)?;
            let vip: IpAddr = VIP.parse().unwrap();
            assert!(
                c.router("r2").wait_vip(vip, true, Duration::from_secs(3)),
                "r2 did not take over when r1's check failed (150 - 60 = 90 < 100)"
            );
            assert_eq!(gauge(&c, "xvrrpd_instance_effective_priority")?, Some(90.0));
            unchanged_reload_keeps(&mut c, 90, 1)?;
            c.finish()?;
            Ok(())
        },
    )
}
