//! What the benchmarks share: their `main`, the bridge capture filter and
//! real-time threads for the prober.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};

use crate::{pcap::Mac, require_root};

/// A benchmark's `main`: parses its arguments (`Ok(None)`: print `usage`),
/// needs root, runs it; exit 2 for bad arguments, 1 for a failed run.
pub fn main<O>(
    name: &str,
    usage: &str,
    parse: impl FnOnce() -> Result<Option<O>>,
    run: impl FnOnce(&O) -> Result<()>,
) -> ExitCode {
    let opts = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    require_root();
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A capture filter for the bridge: VRRP and ARP from the routers only
/// (junk from the client and the client's pings are left out).
pub fn router_filter(macs: &[Mac]) -> String {
    let src = macs
        .iter()
        .map(|m| format!("ether src {m}"))
        .collect::<Vec<_>>()
        .join(" or ");
    format!("({src}) and (ip proto 112 or arp)")
}

/// Runs `f` with the calling thread on SCHED_RR priority `prio`, so that
/// threads `f` spawns inherit it, then puts the thread back on the normal
/// scheduler. Processes started meanwhile would inherit it too: `f` must
/// only start threads.
pub fn with_rt_threads<T>(prio: i32, f: impl FnOnce() -> T) -> T {
    let rr = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sched_setscheduler on the calling thread with a valid param.
    let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &rr) } == 0;
    let out = f();
    if ok {
        let normal = libc::sched_param { sched_priority: 0 };
        // SAFETY: as above.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &normal) };
    }
    out
}

/// Where benchmarks write their reports: `<target>/bench`.
pub fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
        .join("bench")
}

/// Writes `<stem>.md` and `<stem>.json` to [`out_dir`]; returns their paths.
pub fn write_report(stem: &str, md: &str, js: &serde_json::Value) -> Result<(PathBuf, PathBuf)> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let md_path = dir.join(format!("{stem}.md"));
    let js_path = dir.join(format!("{stem}.json"));
    std::fs::write(&md_path, md)?;
    std::fs::write(&js_path, serde_json::to_string_pretty(js)?)?;
    Ok((md_path, js_path))
}
