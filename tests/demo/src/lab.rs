//! The demo's lab, made of the harness's parts: a [`VrrpLab`] with three
//! routers running xvrrpd, a client pinging both VIPs every millisecond,
//! a capture of the bridge, and a thread that shows who is master.
//!
//! ```text
//!   r1 (priority 150) ─┐
//!   r2 (priority 100) ─┼─ br0 ── client (pings 192.0.2.100 and 2001:db8::100)
//!   r3 (priority  50) ─┘
//! ```
//!
//! Every router runs the same keepalived.conf but for its priority: two
//! VRRPv3 instances with 10 ms adverts (VI_4: 192.0.2.100, VI_6:
//! 2001:db8::100), both tracking `chk_health`, a script that passes while
//! the router's `healthy` file exists (weight −60: a failing check takes
//! r1 from 150 to 90, below r2).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use xvrrpd::control::{socket::fetch_status, status::StatusReport};
use xvrrpd_tests::{
    analysis::{master_down_ns, skew_ns},
    kconf::{Daemon, Global, Instance, RouterConfig, TrackScript, VrrpScript},
    lab::Host,
    prober::{ProbeConfig, ProbeLog, Prober},
    router::RouterNode,
    scenario::{CLIENT_CIDRS, router_cidrs},
    vrrp_lab::VrrpLab,
    wire::BridgeCapture,
};

use crate::{
    signals,
    term::{bold, green, red, term, yellow},
};

/// The routers: name and priority.
pub const ROUTERS: [(&str, u8); 3] = [("r1", 150), ("r2", 100), ("r3", 50)];
pub const ADVERT_INT: Duration = Duration::from_millis(10);
pub const HEALTH_SCRIPT: &str = "chk_health";
pub const HEALTH_WEIGHT: i32 = -60;
/// keepalived takes a `vrrp_script` interval in whole seconds.
pub const HEALTH_INTERVAL_S: u32 = 1;

/// What the bridge capture keeps: adverts, ARP, neighbour advertisements
/// (not the client's pings: the prober records those itself).
const CAPTURE_FILTER: &str = "ip proto 112 or ip6 proto 112 or arp or (icmp6 and ip6[40] == 136)";

/// One VRRP instance of the demo (one per address family).
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub inst: &'static str,
    pub vrid: u8,
    pub cidr: &'static str,
    pub label: &'static str,
}

impl Family {
    pub fn vip(&self) -> IpAddr {
        self.cidr
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("the demo's VIPs are addresses")
    }
    pub fn v6(&self) -> bool {
        self.vip().is_ipv6()
    }
}

pub const FAMILIES: [Family; 2] = [
    Family {
        inst: "VI_4",
        vrid: 51,
        cidr: "192.0.2.100/24",
        label: "IPv4",
    },
    Family {
        inst: "VI_6",
        vrid: 52,
        cidr: "2001:db8::100/64",
        label: "IPv6",
    },
];

/// The demo's lab. Fields drop in order: the live view, the probers, the
/// capture, the routers (daemons killed), then the lab (namespaces and
/// its directory removed).
pub struct DemoLab {
    monitor: Option<Monitor>,
    probers: Vec<Prober>,
    pub capture: Option<BridgeCapture>,
    pub routers: Vec<RouterNode>,
    pub client: Host,
    pub lab: VrrpLab,
}

/// A router's config: both instances at `priority`, the health check.
pub fn router_config(node: &RouterNode, priority: u8) -> Result<RouterConfig> {
    let check = node.write_script(
        "check-health.sh",
        &format!(
            "#!/bin/sh\n# Passes while the file exists (the demo removes it to fail the check).\n\
             [ -e {} ]\n",
            health_file(node).display()
        ),
    )?;
    let mut script = VrrpScript::new(HEALTH_SCRIPT, &check.display().to_string());
    script.interval_s = HEALTH_INTERVAL_S;
    script.weight = Some(HEALTH_WEIGHT);
    script.fall = Some(1);
    script.rise = Some(1);
    let instances = FAMILIES
        .iter()
        .map(|f| {
            let mut i = Instance::new(f.inst, f.vrid, &[f.cidr]);
            i.priority = priority;
            i.advert_int = ADVERT_INT;
            i.track_scripts = vec![TrackScript {
                name: HEALTH_SCRIPT.into(),
                weight: None,
            }];
            i
        })
        .collect();
    Ok(RouterConfig {
        global: Global::default(),
        scripts: vec![script],
        instances,
        sync_groups: Vec::new(),
    })
}

/// The file a router's health check looks for.
pub fn health_file(node: &RouterNode) -> PathBuf {
    node.dir.join("healthy")
}

impl DemoLab {
    /// Namespaces, bridge, routers with their configs (not started, run
    /// with `daemon_args` added), the client, and the capture.
    pub fn build(daemon_args: &[String]) -> Result<DemoLab> {
        let mut lab = VrrpLab::new("demo")?;
        signals::set_lab_dir(lab.dir.clone());
        let mut routers = Vec::new();
        for (i, (name, prio)) in ROUTERS.iter().enumerate() {
            signals::check()?;
            let c = router_cidrs(i);
            let mut node = lab.add_router(name, Daemon::Xvrrpd, &[&c[0], &c[1]])?;
            node.extra_args = daemon_args.to_vec();
            let cfg = router_config(&node, *prio)?;
            node.write_config(&cfg)?;
            std::fs::write(health_file(&node), "ok\n")?;
            routers.push(node);
        }
        let client = lab.add_client("client", &CLIENT_CIDRS)?;
        let path = lab.dir.join("bridge.pcap");
        lab.note_file("bridge capture", &path);
        let capture = BridgeCapture::start(&lab.net, &path, CAPTURE_FILTER)?;
        Ok(DemoLab {
            monitor: None,
            probers: Vec::new(),
            capture: Some(capture),
            routers,
            client,
            lab,
        })
    }

    pub fn idx(&self, name: &str) -> usize {
        self.routers
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no router {name}"))
    }

    pub fn router(&self, name: &str) -> &RouterNode {
        &self.routers[self.idx(name)]
    }

    pub fn router_mut(&mut self, name: &str) -> &mut RouterNode {
        let i = self.idx(name);
        &mut self.routers[i]
    }

    /// The configured priority of `name`.
    pub fn priority(&self, name: &str) -> u8 {
        ROUTERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .unwrap_or(100)
    }

    pub fn mdi_ns(&self, name: &str) -> u64 {
        master_down_ns(3, self.priority(name), ADVERT_INT)
    }

    pub fn skew_ns(&self, name: &str) -> u64 {
        skew_ns(3, self.priority(name), ADVERT_INT)
    }

    /// Starts the routers one after another (r1 first: it is alone for a
    /// moment and becomes master; the others find it there).
    pub fn start_routers(&mut self) -> Result<()> {
        for i in 0..self.routers.len() {
            signals::check()?;
            self.routers[i].start()?;
        }
        Ok(())
    }

    /// Starts pinging both VIPs from the client (1 ms, bounded).
    pub fn start_probes(&mut self) -> Result<()> {
        let cfg = ProbeConfig {
            interval: Duration::from_millis(1),
            max_duration: Duration::from_secs(240),
            max_count: 240_000,
        };
        for f in FAMILIES {
            self.probers
                .push(Prober::start(&self.client, f.vip(), cfg)?);
        }
        Ok(())
    }

    /// What the probers saw so far, by family (empty before they start).
    pub fn probe_logs(&self) -> Vec<ProbeLog> {
        self.probers.iter().map(|p| p.snapshot()).collect()
    }

    /// Starts the live view of who is master.
    pub fn start_monitor(&mut self) -> Result<()> {
        let socks = self
            .routers
            .iter()
            .map(|r| (r.name.clone(), r.control_socket.clone()))
            .collect();
        self.monitor = Some(Monitor::start(socks)?);
        Ok(())
    }

    /// Stops the live view (its line is removed).
    pub fn stop_monitor(&mut self) {
        self.monitor.take();
        term().end_live();
    }

    /// Stops the probers; returns their logs.
    pub fn stop_probes(&mut self) -> Result<Vec<ProbeLog>> {
        self.probers.drain(..).map(|p| p.stop()).collect()
    }

    /// `xvrrpd status --json` of `name`, waiting up to `timeout` for `want`
    /// to be true of it.
    pub fn wait_status(
        &self,
        name: &str,
        timeout: Duration,
        mut want: impl FnMut(&StatusReport) -> bool,
    ) -> Result<StatusReport> {
        let end = Instant::now() + timeout;
        let node = self.router(name);
        loop {
            signals::check()?;
            let rep = node.status();
            if let Ok(r) = &rep
                && want(r)
            {
                return rep;
            }
            if Instant::now() >= end {
                return match rep {
                    Ok(r) => bail!(
                        "{name}: after {timeout:?} its status still says {}; log {}",
                        states_text(&r),
                        node.log_path.display()
                    ),
                    Err(e) => Err(e),
                };
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One line per router: state of each instance and the VIPs it holds.
    pub fn state_report(&self) -> String {
        self.routers
            .iter()
            .map(|r| {
                let st = match fetch_status(&r.control_socket) {
                    Ok(rep) => states_text(&rep),
                    Err(_) => "not running".into(),
                };
                let held: Vec<String> = FAMILIES
                    .iter()
                    .filter(|f| r.has_vip(f.vip()))
                    .map(|f| f.vip().to_string())
                    .collect();
                format!(
                    "{}: {st}; holds {}",
                    r.name,
                    if held.is_empty() {
                        "no VIP".to_string()
                    } else {
                        held.join(", ")
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n    ")
    }

    /// The lab's directory (configs, daemon logs, capture).
    pub fn dir(&self) -> &Path {
        &self.lab.dir
    }
}

/// `VI_4 MASTER 150, VI_6 MASTER 150`.
pub fn states_text(rep: &StatusReport) -> String {
    rep.instances
        .iter()
        .map(|i| format!("{} {} {}", i.name, i.state, i.effective_priority))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Polls every router's status report four times a second and shows who
/// is master on the live line.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(socks: Vec<(String, PathBuf)>) -> Result<Monitor> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("live-view".into())
            .spawn(move || {
                let started = Instant::now();
                // Bounded: stopped by the demo; ends by itself after 10 min.
                while !flag.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600)
                {
                    term().live(&live_line(&socks));
                    for _ in 0..25 {
                        if flag.load(Ordering::Relaxed) {
                            break;
                        }
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            })
            .context("starting the live view")?;
        Ok(Monitor {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `now  r1 MASTER 150 · r2 BACKUP 100 · r3 BACKUP 50`.
fn live_line(socks: &[(String, PathBuf)]) -> String {
    let parts: Vec<String> = socks
        .iter()
        .map(|(name, sock)| match fetch_status(sock) {
            Err(_) => format!("{} {}", bold(name), red("down")),
            Ok(rep) => {
                let mut states: Vec<&str> =
                    rep.instances.iter().map(|i| i.state.as_str()).collect();
                states.dedup();
                let state = states.join("/");
                let state = match state.as_str() {
                    "MASTER" => green(&bold("MASTER")),
                    "FAULT" => yellow("FAULT"),
                    "BACKUP" => "BACKUP".to_string(),
                    other => yellow(other),
                };
                let prio = rep
                    .instances
                    .first()
                    .map(|i| {
                        if i.effective_priority == i.base_priority {
                            i.effective_priority.to_string()
                        } else {
                            yellow(&format!(
                                "{} (base {})",
                                i.effective_priority, i.base_priority
                            ))
                        }
                    })
                    .unwrap_or_default();
                format!("{} {state} {prio}", bold(name))
            }
        })
        .collect();
    parts.join(" · ")
}
