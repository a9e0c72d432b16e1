//! Daemons in network namespaces of one host, as keepalived users run
//! them: with no options, each namespace gets its own control socket
//! (`/run/xvrrpd/netns/NAME/xvrrpd.sock`), `ip netns exec NAME xvrrpd
//! status` reaches that namespace's daemon, and a second daemon in the
//! same namespace refuses and names the pid that serves the socket.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use xvrrpd::control::status::StatusReport;
use xvrrpd_tests::{
    lab::{Host, Lab},
    vrrp_lab::xvrrpd_binary,
};

/// Removes what the daemons of the test leave under /run/xvrrpd (their
/// per-namespace socket directories) and the test's own files, even when
/// the test fails.
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
        // The parent only if the test made it (nothing else is in it).
        let _ = std::fs::remove_dir("/run/xvrrpd/netns");
    }
}

fn config(dir: &Path, name: &str, vrid: u8) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(
        &path,
        format!(
            "vrrp_instance {name} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  \
             priority 100\n  advert_int 1\n  virtual_ipaddress {{\n    192.0.2.{vrid}/24\n  }}\n}}\n"
        ),
    )?;
    Ok(path)
}

/// `xvrrpd run` in `host`'s namespace with default options but the
/// configuration (and no pinning: the test is about the control socket).
fn daemon(host: &Host, cfg: &Path, log: &Path) -> Result<std::process::Child> {
    let bin = xvrrpd_binary()?;
    let log = std::fs::File::create(log)?;
    Command::new("ip")
        .args(["netns", "exec", &host.ns])
        .arg(&bin)
        .args(["run", "-f"])
        .arg(cfg)
        .args(["--bpf-pin-dir", "none"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning xvrrpd")
}

/// `xvrrpd status --json` run in `host`'s namespace with default options.
fn status(host: &Host) -> Result<StatusReport> {
    let out = Command::new("ip")
        .args(["netns", "exec", &host.ns])
        .arg(xvrrpd_binary()?)
        .args(["status", "--json"])
        .output()?;
    ensure!(
        out.status.success(),
        "status in {}: {}",
        host.ns,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn wait_status(host: &Host) -> Result<StatusReport> {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        match status(host) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn daemons_in_two_namespaces_start_with_no_options_and_status_reaches_each() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("nsa", &["192.0.2.1/24"])?;
    let b = lab.add_host("nsb", &["192.0.2.2/24"])?;
    let dir = std::env::temp_dir().join(format!("xvt-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _leftovers = Leftovers(vec![
        dir.clone(),
        Path::new("/run/xvrrpd/netns").join(&a.ns),
        Path::new("/run/xvrrpd/netns").join(&b.ns),
    ]);
    let (cfg_a, cfg_b) = (config(&dir, "VI_A", 61)?, config(&dir, "VI_B", 62)?);
    let first = daemon(&a, &cfg_a, &dir.join("a.log"))?;
    let first_pid = first.id();
    lab.adopt(first);
    lab.adopt(daemon(&b, &cfg_b, &dir.join("b.log"))?);

    for (host, want) in [(&a, "VI_A"), (&b, "VI_B")] {
        let s = wait_status(host).with_context(|| {
            let log =
                std::fs::read_to_string(dir.join(if want == "VI_A" { "a.log" } else { "b.log" }))
                    .unwrap_or_default();
            format!("no status from {}'s daemon; its log:\n{log}", host.ns)
        })?;
        let names: Vec<&str> = s.instances.iter().map(|i| i.name.as_str()).collect();
        ensure!(
            names == [want],
            "{}: status answered for {names:?}, not {want}",
            host.ns
        );
        let socket = Path::new("/run/xvrrpd/netns")
            .join(&host.ns)
            .join("xvrrpd.sock");
        ensure!(socket.exists(), "{} is missing", socket.display());
    }

    // A second daemon in the first namespace: refused, naming the first.
    let mut second = daemon(&a, &cfg_a, &dir.join("a2.log"))?;
    let end = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(code) = second.try_wait()? {
            break code;
        }
        if Instant::now() >= end {
            let _ = second.kill();
            let _ = second.wait();
            bail!("a second daemon in {} kept running", a.ns);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(dir.join("a2.log"))?;
    ensure!(
        !code.success(),
        "the second daemon exited with success: {said}"
    );
    // `ip netns exec` execs the daemon, so the pid it was spawned with
    // serves the socket (its children are looked at too, should an `ip`
    // fork first).
    let serving = std::fs::read_to_string(format!("/proc/{first_pid}/task/{first_pid}/children"))
        .unwrap_or_default();
    let pids: Vec<String> = std::iter::once(first_pid.to_string())
        .chain(serving.split_whitespace().map(str::to_string))
        .collect();
    ensure!(
        pids.iter().any(|p| said.contains(&format!("pid {p}"))),
        "the refusal does not name the serving pid ({pids:?}): {said}"
    );
    // The first still answers.
    let s = status(&a)?;
    ensure!(s.instances.len() == 1, "{} lost its daemon", a.ns);
    Ok(())
}

/// `ip -n NS -br addr show dev eth0` has `vip`.
fn has_address(ns: &str, vip: &str) -> Result<bool> {
    let out = Command::new("ip")
        .args(["-n", ns, "-br", "addr", "show", "dev", "eth0"])
        .output()?;
    ensure!(out.status.success(), "ip -n {ns} addr: {:?}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(vip)))
}

/// `ip addr` of this (the test's own) namespace has `vip`.
fn host_has_address(vip: &str) -> Result<bool> {
    let out = Command::new("ip").args(["-br", "addr"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(vip)))
}

/// `xvrrpd status --json -f cfg` run where the test runs, with `prefix`
/// (e.g. `ip netns exec NS`) before it.
fn status_via(prefix: &[&str], cfg: &Path) -> Result<StatusReport> {
    let bin = xvrrpd_binary()?;
    let mut c = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let out = c.args(["status", "--json", "-f"]).arg(cfg).output()?;
    ensure!(
        out.status.success(),
        "status {prefix:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if done()? {
            return Ok(());
        }
        ensure!(Instant::now() < end, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn net_namespace_runs_the_instances_there_and_instance_names_socket_and_pid_file() -> Result<()> {
    let mut lab = Lab::new()?;
    let a = lab.add_host("nsn", &["192.0.2.1/24"])?;
    let dir = std::env::temp_dir().join(format!("xvt-netns-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let run_dir = Path::new("/run/xvrrpd/netns").join(&a.ns);
    let _leftovers = Leftovers(vec![dir.clone(), run_dir.clone()]);
    let vip = "192.0.2.71";
    let text = |instance: &str| {
        format!(
            "net_namespace {}\ninstance {instance}\n\
             vrrp_instance VI_N {{\n  state MASTER\n  interface eth0\n  virtual_router_id 71\n  \
             priority 150\n  advert_int 1\n  virtual_ipaddress {{\n    {vip}/24\n  }}\n}}\n",
            a.ns
        )
    };
    let cfg = dir.join("ns.conf");
    std::fs::write(&cfg, text("lb1"))?;
    let log_path = dir.join("ns.log");
    let log = std::fs::File::create(&log_path)?;
    // Started in the test's own namespace: the configuration moves it.
    let child = Command::new(xvrrpd_binary()?)
        .args(["run", "-f"])
        .arg(&cfg)
        .args(["--bpf-pin-dir", "none"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning xvrrpd")?;
    let pid = child.id();
    lab.adopt(child);
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    wait_for("the VIP in the configured namespace", 20, || {
        has_address(&a.ns, vip)
    })
    .with_context(|| format!("daemon log:\n{}", log_text()))?;
    ensure!(
        !host_has_address(vip)?,
        "{vip} was added in the namespace xvrrpd started in"
    );
    let socket = run_dir.join("xvrrpd_lb1.sock");
    ensure!(socket.exists(), "{} is missing", socket.display());
    let pid_file = run_dir.join("xvrrpd_lb1.pid");
    let wrote = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    ensure!(
        wrote.trim() == pid.to_string(),
        "{} holds {wrote:?}, the daemon is {pid}",
        pid_file.display()
    );
    // `status -f` finds the daemon from outside the namespace and inside.
    for prefix in [&[][..], &["ip", "netns", "exec", a.ns.as_str()][..]] {
        let s = status_via(prefix, &cfg)?;
        ensure!(
            s.instances.len() == 1 && s.instances[0].name == "VI_N",
            "status {prefix:?} answered for {:?}",
            s.instances.iter().map(|i| &i.name).collect::<Vec<_>>()
        );
    }

    // A reload may not rename the instance: refused, the daemon unchanged.
    std::fs::write(&cfg, text("lb2"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    wait_for("the refused reload in the log", 10, || {
        Ok(log_text().contains("instance changes from lb1 to lb2"))
    })
    .with_context(|| format!("daemon log:\n{}", log_text()))?;
    ensure!(socket.exists(), "the socket went with the refused reload");
    ensure!(
        has_address(&a.ns, vip)?,
        "the VIP went with the refused reload"
    );
    std::fs::write(&cfg, text("lb1"))?;

    // SIGTERM: the VIP and the pid file go.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    wait_for("the VIP removed at stop", 15, || {
        Ok(!has_address(&a.ns, vip)?)
    })?;
    wait_for(
        "the pid file removed at stop",
        15,
        || Ok(!pid_file.exists()),
    )?;
    Ok(())
}

#[test]
fn a_missing_net_namespace_refuses_to_start_and_says_how_to_make_it() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("xvt-netns-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _leftovers = Leftovers(vec![dir.clone()]);
    let cfg = dir.join("missing.conf");
    std::fs::write(
        &cfg,
        "net_namespace xvt-no-such-namespace\n\
         vrrp_instance VI_M {\n  interface eth0\n  virtual_router_id 72\n  priority 100\n  \
         virtual_ipaddress {\n    192.0.2.72/24\n  }\n}\n",
    )?;
    let out = Command::new(xvrrpd_binary()?)
        .args(["run", "-f"])
        .arg(&cfg)
        .args(["--bpf-pin-dir", "none"])
        .stdin(Stdio::null())
        .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "it started: {said}");
    ensure!(
        said.contains("xvt-no-such-namespace") && said.contains("ip netns add"),
        "the refusal does not name the namespace and the fix: {said}"
    );
    Ok(())
}
