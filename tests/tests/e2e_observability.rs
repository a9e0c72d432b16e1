//! Observability of a running xvrrpd (issue #7): the Prometheus endpoint
//! serves every metric family it documents, with the instance's real state,
//! and `xvrrpd status` answers as a table and as JSON.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, Result};
use xvrrpd::control::metrics::METRIC_NAMES;
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    retry::lab_test,
    scenario::Cluster,
};

const METRICS_PORT: u16 = 9477;

/// GET /metrics on the router's own loopback, from inside its namespace.
fn scrape(c: &Cluster, router: &str) -> Result<String> {
    let host = c.router(router).host.clone();
    host.run_in(move || {
        let mut s = TcpStream::connect(("127.0.0.1", METRICS_PORT))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })
}

#[test]
fn metrics_endpoint_serves_every_metric_and_status_agrees() -> Result<()> {
    lab_test(
        "metrics_endpoint_serves_every_metric_and_status_agrees",
        || {
            let mut c = Cluster::new(
                "metrics",
                Instance::new("VI_1", 51, &["192.0.2.100/24"]),
                &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
                false,
                |_, _| Ok(()),
            )?;
            for r in &mut c.routers {
                r.extra_args = vec![
                    "--metrics-listen".into(),
                    format!("127.0.0.1:{METRICS_PORT}"),
                ];
            }
            c.start_all()?;
            c.expect_master("r1", Duration::from_secs(10))?;
            let text = scrape(&c, "r1")?;
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "not a 200 answer: {}",
                &text[..text.len().min(200)]
            );
            for name in METRIC_NAMES {
                assert!(
                    text.contains(name),
                    "metric {name} missing from /metrics:\n{text}"
                );
            }
            let master_line = text
                .lines()
                .find(|l| l.starts_with("xvrrpd_instance_state{") && l.contains("state=\"MASTER\""))
                .unwrap_or_default();
            assert!(
                master_line.contains("instance=\"VI_1\"") && master_line.ends_with(" 1"),
                "r1 is master but its state metric says: {master_line:?}"
            );
            let sent = text
                .lines()
                .find(|l| l.starts_with("xvrrpd_instance_adverts_sent_total{"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            assert!(sent >= 10.0, "a master at 10 ms has sent {sent} adverts");
            // The daemon reads the kernel counters for each scrape.
            let accepted = |text: &str| {
                text.lines().any(|l| {
                    l.starts_with("xvrrpd_datapath_packets")
                        && l.contains("\"accepted\"")
                        && !l.ends_with(" 0")
                })
            };
            let mut backup = scrape(&c, "r2")?;
            for _ in 0..30 {
                if accepted(&backup) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                backup = scrape(&c, "r2")?;
            }
            assert!(
                accepted(&backup),
                "r2's datapath counters show no accepted advert after 3 s:\n{backup}"
            );
            c.check_xvrrpd_status("r1")?;
            let r1 = c.router("r1");
            let out = std::process::Command::new(&r1.bin)
                .args(["status", "--control-socket"])
                .arg(&r1.control_socket)
                .output()
                .context("running xvrrpd status")?;
            assert!(out.status.success(), "xvrrpd status failed: {out:?}");
            let table = String::from_utf8_lossy(&out.stdout);
            assert!(
                table.contains("VI_1")
                    && table.contains("MASTER")
                    && table.contains("192.0.2.100/24"),
                "status table:\n{table}"
            );
            c.finish()
        },
    )
}
