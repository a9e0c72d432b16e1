//! What operators watch, on a real failover: `xvrrpd events --json`
//! follows the transitions in order; a follower that stops reading is cut
//! off while the daemon's adverts go on undelayed; HTTP `/status` answers
//! what `status --json` answers; `status --watch` in a pseudo-terminal
//! (util-linux `script`) shows the failover as it happens and ends cleanly
//! on Ctrl-C; every metric the shipped Grafana dashboard queries is in a
//! live scrape.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    pcap::WireKind,
    retry::lab_test,
    scenario::Cluster,
};

const METRICS_PORT: u16 = 9652;

fn pair(test: &str) -> Result<Cluster> {
    let mut c = Cluster::new(
        test,
        Instance::new("VI_1", 53, &["192.0.2.100/24"]),
        &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
        false,
        |_, _| Ok(()),
    )?;
    c.router_mut("r2").extra_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{METRICS_PORT}"),
    ];
    Ok(c)
}

/// Lines a child prints, collected by a thread as they come.
struct Lines {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn spawn(cmd: &mut Command) -> Result<Lines> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning")?;
        let out = child.stdout.take().context("stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push(l);
                }
            }
        });
        Ok(Lines { child, lines })
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if done(&self.snapshot()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{what}: not within {timeout:?}; got {:?}", self.snapshot())
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (from, to) of the VI_1 transitions among JSON event lines, with
/// their sequence numbers.
fn transitions(lines: &[String]) -> Vec<(u64, String, String)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "transition" && v["instance"] == "VI_1")
        .map(|v| {
            (
                v["seq"].as_u64().unwrap_or(0),
                v["transition"]["from"].as_str().unwrap_or("").to_string(),
                v["transition"]["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `GET path` from inside `r2`'s namespace: the whole response.
fn http_get(c: &Cluster, path: &str) -> Result<String> {
    let host = c.router("r2").host.clone();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    host.run_in(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(request.as_bytes())?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })
}

/// The metric names the dashboard's queries and annotations use.
fn dashboard_metrics() -> Result<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana/xvrrpd-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{} is JSON", path.display()))?;
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().context("panels")? {
        for t in p["targets"].as_array().context("targets")? {
            exprs.push(t["expr"].as_str().context("expr")?.to_string());
        }
    }
    for a in dash["annotations"]["list"]
        .as_array()
        .context("annotations")?
    {
        if let Some(e) = a["expr"].as_str() {
            exprs.push(e.to_string());
        }
    }
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("xvrrpd_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    ensure!(names.len() > 10, "the dashboard names only {names:?}");
    Ok(names)
}

/// Whether a scrape has samples of `name`, or declares its family (a
/// labelled family with no series yet).
fn exposed(scrape: &str, name: &str) -> bool {
    let family = ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    scrape.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            || l.strip_prefix("# TYPE ")
                .and_then(|r| r.split_whitespace().next())
                == Some(family)
    })
}

fn write_value(path: &Path, v: i32) -> Result<()> {
    std::fs::write(path, format!("{v}\n")).with_context(|| format!("writing {}", path.display()))
}

#[test]
fn events_follow_a_failover_and_a_stalled_follower_is_cut_off() -> Result<()> {
    lab_test(
        "events_follow_a_failover_and_a_stalled_follower_is_cut_off",
        || {
            let mut c = pair("observe-events")?;
            // r2 tracks a file (weight 1): flipping it makes a tracker event
            // each time without changing any state.
            let level = c.router("r2").dir.join("level");
            write_value(&level, 0)?;
            let mut cfg = c.router("r2").config().context("r2 has a config")?.clone();
            cfg.instances[0].extra.extend([
                "track_file {".into(),
                "    level weight 1".into(),
                "}".into(),
            ]);
            let text = cfg.render(Daemon::Xvrrpd)?
                + &format!(
                    "vrrp_track_file level {{\n    file {}\n}}\n",
                    level.display()
                );
            c.router_mut("r2").write_config_text(&text)?;
            c.start_all()?;
            c.expect_master("r1", Duration::from_secs(10))?;

            let r2 = c.router("r2");
            let (bin, sock) = (r2.bin.clone(), r2.control_socket.clone());
            let follower = Lines::spawn(
                Command::new(&bin)
                    .args(["events", "--json", "--control-socket"])
                    .arg(&sock),
            )?;
            // A follower that asks and never reads.
            let mut stalled = std::os::unix::net::UnixStream::connect(&sock)?;
            stalled.write_all(b"events json\n")?;
            std::thread::sleep(Duration::from_millis(300));

            // kill -9 of r1: r2 takes over within its bound (the checks of
            // `crash`), with two followers attached.
            println!("{}", c.crash("r1", "r2")?.summary());
            follower.wait_for(
                "r2's take-over on the event stream",
                Duration::from_secs(5),
                |l| {
                    transitions(l)
                        .iter()
                        .any(|(_, f, t)| f == "BACKUP" && t == "MASTER")
                },
            )?;

            // The stalled follower falls behind while r2, master, goes on
            // advertising: thousands of tracker events (hundreds of KiB)
            // overfill its socket whatever its buffer.
            let flips_from = c.lab.mark("flips").rt_ns;
            for n in 0..3000 {
                write_value(&level, n % 2)?;
                std::thread::sleep(Duration::from_millis(1));
            }
            let flips_to = c.lab.mark("flips done").rt_ns;
            // Cut off: its socket reaches its end once the daemon gave up
            // writing (2 s), whatever it had queued.
            stalled.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut sink = Vec::new();
            let cut = stalled.read_to_end(&mut sink);
            ensure!(
                cut.is_ok(),
                "the stalled follower was not cut off: {cut:?} after {} bytes; the reading one saw {} lines",
                sink.len(),
                follower.snapshot().len()
            );
            // r2's adverts during the flips: no gap a follower could explain.
            let src = c.router("r2").addr(false);
            let times: Vec<u64> = c
                .wire()?
                .iter()
                .filter(|e| e.t_ns >= flips_from && e.t_ns <= flips_to)
                .filter(|e| matches!(&e.kind, WireKind::Advert(a) if a.src == src))
                .map(|e| e.t_ns)
                .collect();
            ensure!(
                times.len() > 20,
                "r2 sent {} adverts while the files flipped",
                times.len()
            );
            let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            ensure!(
                worst < 250_000_000,
                "r2's adverts paused {:.1} ms while a follower stalled",
                worst as f64 / 1e6
            );
            let trackers = follower
                .snapshot()
                .iter()
                .filter(|l| l.contains("\"event\":\"tracker\""))
                .count();
            ensure!(
                trackers > 100,
                "the reading follower saw {trackers} tracker events"
            );

            // r1 back: r2 yields; the reading follower sees it after the
            // take-over, in order.
            println!("{}", c.rejoin("r1", "r2")?.summary());
            follower.wait_for(
                "r2 yielding on the event stream",
                Duration::from_secs(5),
                |l| {
                    transitions(l)
                        .iter()
                        .any(|(_, f, t)| f == "MASTER" && t == "BACKUP")
                },
            )?;
            let seen = transitions(&follower.snapshot());
            let order: Vec<(&str, &str)> = seen
                .iter()
                .map(|(_, f, t)| (f.as_str(), t.as_str()))
                .collect();
            ensure!(
                order == [("BACKUP", "MASTER"), ("MASTER", "BACKUP")],
                "r2's transitions on the stream: {order:?}"
            );
            ensure!(
                seen[0].0 < seen[1].0,
                "sequence numbers out of order: {seen:?}"
            );

            // HTTP /status answers what `status --json` answers.
            let http = http_get(&c, "/status")?;
            let (head, body) = http.split_once("\r\n\r\n").context("an HTTP response")?;
            ensure!(head.starts_with("HTTP/1.1 200"), "GET /status: {head}");
            let over_http: xvrrpd::control::status::StatusReport =
                serde_json::from_str(body).context("GET /status is a status report")?;
            let direct = c.router("r2").status()?;
            ensure!(
                over_http.daemon.pid == direct.daemon.pid,
                "not the same daemon"
            );
            let summary = |r: &xvrrpd::control::status::StatusReport| -> Vec<(String, String, u8)> {
                r.instances
                    .iter()
                    .map(|i| (i.name.clone(), i.state.clone(), i.effective_priority))
                    .collect()
            };
            ensure!(summary(&over_http) == summary(&direct), "instances differ");
            ensure!(
                over_http.instances[0].transitions == direct.instances[0].transitions,
                "transitions differ between /status and status --json"
            );

            // Every metric the shipped dashboard queries is in a live scrape.
            let scrape = http_get(&c, "/metrics")?;
            let missing = dashboard_metrics()?
                .into_iter()
                .filter(|m| !exposed(&scrape, m))
                .collect::<Vec<_>>();
            ensure!(
                missing.is_empty(),
                "dist/grafana/xvrrpd-dashboard.json queries metrics the daemon does not expose: {missing:?}"
            );
            c.finish()
        },
    )
}

#[test]
fn status_watch_shows_a_failover_in_a_terminal() -> Result<()> {
    lab_test("status_watch_shows_a_failover_in_a_terminal", || {
        let mut c = pair("observe-watch")?;
        c.start_all()?;
        c.expect_master("r1", Duration::from_secs(10))?;
        let r2 = c.router("r2");
        // `exec`: whatever shell script(1) starts must not stay between the
        // terminal and the view, or Ctrl-C ends the shell (dash does not
        // exec a lone command) and the view's exit status is lost.
        let watch = format!(
            "exec {} status --watch --control-socket {}",
            r2.bin.display(),
            r2.control_socket.display()
        );
        // `script` gives the view a pseudo-terminal; its output is the
        // terminal's, escape sequences included.
        let mut child = Command::new("script")
            .args(["-qfec", &watch, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running script(1) from util-linux")?;
        let mut out = child.stdout.take().context("stdout")?;
        let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.extend_from_slice(&buf[..n]);
                }
            }
        });
        let text = || {
            String::from_utf8_lossy(&screen.lock().map(|s| s.clone()).unwrap_or_default())
                .into_owned()
        };
        let wait = |what: &str, f: &dyn Fn(&str) -> bool| -> Result<()> {
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if f(&text()) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            bail!(
                "{what}: the screen shows {:?}",
                text()
                    .chars()
                    .rev()
                    .take(600)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            )
        };
        let row = |state: &'static str| {
            move |t: &str| {
                t.lines()
                    .any(|l| l.starts_with("VI_1") && l.split_whitespace().nth(1) == Some(state))
            }
        };
        wait("r2 BACKUP on the live view", &row("BACKUP"))?;
        let before = text().len();
        println!("{}", c.crash("r1", "r2")?.summary());
        wait("r2 MASTER on the live view after the crash", &|t: &str| {
            row("MASTER")(&t[before.min(t.len())..])
        })?;
        let shown = text();
        ensure!(
            shown.contains("\x1b[H") && shown.contains("SINCE"),
            "the view does not redraw in place with its SINCE column"
        );
        // Ctrl-C through the terminal: it ends, and gives the cursor back.
        if let Some(stdin) = child.stdin.as_mut() {
            stdin.write_all(b"\x03")?;
            stdin.flush()?;
        }
        let end = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > end {
                let _ = child.kill();
                bail!("status --watch did not end on Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = reader.join();
        ensure!(
            status.success(),
            "status --watch ended with {status} on Ctrl-C"
        );
        ensure!(
            text().contains("\x1b[?25h"),
            "status --watch left the cursor hidden"
        );
        c.finish()
    })
}
