//! A daemon started with every capability keeps only what running needs,
//! in every thread: capabilities belong to threads, so one thread left
//! holding CAP_SYS_ADMIN or CAP_BPF keeps them for the whole process (and
//! the daemon then refuses to drop any, saying so).

use std::time::Duration;

use anyhow::{Context, Result};
use caps::Capability;
use xvrrpd::control::privileges::Plan;
use xvrrpd_tests::{
    kconf::{Daemon, Instance},
    retry::lab_test,
    scenario::Cluster,
};

fn mask(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn names(bits: u64) -> Vec<String> {
    caps::all()
        .into_iter()
        .filter(|c| bits & c.bitmask() != 0)
        .map(|c| c.to_string())
        .collect()
}

/// Every thread's effective, permitted and bounding sets after the datapath
/// settled, on the master and on the backup, across restarts (a restart
/// adopts the pinned datapath and takes another path to the drop).
#[test]
fn every_thread_keeps_only_the_running_capabilities() -> Result<()> {
    lab_test("every_thread_keeps_only_the_running_capabilities", || {
        let mut c = Cluster::new(
            "privileges",
            Instance::new("VI_1", 61, &["192.0.2.100/24"]),
            &[("r1", Daemon::Xvrrpd, 150), ("r2", Daemon::Xvrrpd, 100)],
            false,
            |_, _| Ok(()),
        )?;
        let keep: u64 = Plan::for_this_kernel()
            .keep
            .iter()
            .fold(0, |m, c: &Capability| m | c.bitmask());
        c.start_all()?;
        for round in 0..3 {
            for name in ["r1", "r2"] {
                if round > 0 {
                    c.router_mut(name).restart()?;
                }
                let r = c.router(name);
                let pid = r.pid().context("the daemon is not running")?;
                // The drop runs in the turn that takes eBPF over, before
                // the status that says so is answered.
                r.wait_datapath_settled(Duration::from_secs(15))?;
                let starts = r.log().matches("===== lab: start").count();
                let log = r.log();
                let this_run = log.rsplit("===== lab: start").next().unwrap_or_default();
                assert!(
                    this_run.contains("capabilities kept"),
                    "{name} (start {starts}) reported no capability drop:\n{}",
                    r.log_tail(30)
                );
                assert!(
                    !this_run.contains("keeping capabilities"),
                    "{name} (start {starts}) kept every capability:\n{}",
                    r.log_tail(30)
                );
                let mut threads = 0;
                for task in std::fs::read_dir(format!("/proc/{pid}/task"))
                    .with_context(|| format!("reading /proc/{pid}/task"))?
                {
                    let task = task?;
                    // A thread may end between the listing and the read.
                    let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                        continue;
                    };
                    threads += 1;
                    for key in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
                        let bits = mask(&status, key)
                            .with_context(|| format!("no {key} in {:?}", task.path()))?;
                        assert!(
                            bits & !keep == 0,
                            "{name} (start {starts}): thread {:?} ({}) still holds {:?} in {key}",
                            task.file_name(),
                            status.lines().next().unwrap_or_default(),
                            names(bits & !keep)
                        );
                    }
                }
                assert!(threads >= 2, "{name}: {threads} thread(s) read");
            }
        }
        Ok(())
    })
}
