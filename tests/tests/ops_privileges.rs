//! `control::privileges::drop_after_attach` in a child process: the eBPF
//! datapath is loaded and attached, capabilities are dropped, and then the
//! child proves that what it dropped is gone (its own sets, the bounding set
//! as seen by a root child, loading programs, CAP_SYS_ADMIN) and that what it
//! kept still works (raw sockets, VIPs, scripts as another user, killing
//! them, eBPF map updates, counter reads, attaching to another interface).
//!
//! Capabilities are per thread and libtest runs each test on a thread of
//! its own, so this target has no libtest harness: `main` is the parent,
//! and re-executes itself as a single-threaded child.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{Command, ExitCode},
    sync::mpsc,
};

use xvrrpd::{
    control::privileges::{self, Capability, KEPT, PrivError},
    datapath::ebpf::{AttachPreference, EbpfDatapath},
    net::addr::{Vip, VipManager},
};
use xvrrpd_common::{FAMILY_IPV4, IfacePolicy, VridConfig, VridKey};

const TEST_NAME: &str = "drop_after_attach_in_a_child";
const CHILD_ENV: &str = "XVRRPD_OPS_PRIV_CHILD";
const NOBODY: u32 = 65534;

/// Every check the child must report, in order.
const CHECKS: &[&str] = &[
    "refused-with-another-thread",
    "report",
    "own-sets",
    "root-child-bounded",
    "no-sys-admin",
    "no-bpf-load",
    "net-raw",
    "net-admin",
    "setuid-setgid",
    "kill",
    "bpf-maps",
    "attach-another-interface",
];

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !TEST_NAME.contains(f.as_str())) {
        println!("\nrunning 0 tests\n");
        println!("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    let outcome = parent();
    match &outcome {
        Ok(()) => {
            println!("test {TEST_NAME} ... ok\n");
            println!(
                "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n"
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("test {TEST_NAME} ... FAILED\n\n{why}\n");
            println!(
                "test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n"
            );
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(
            "this test needs root (a network namespace, eBPF, capabilities): \
                    run it with `cargo xtask test` as root"
                .into(),
        );
    }
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out = Command::new(exe)
        .env(CHILD_ENV, "1")
        .output()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let transcript = format!("child stdout:\n{stdout}\nchild stderr:\n{stderr}");
    if !out.status.success() {
        return Err(format!("the child failed ({}):\n{transcript}", out.status));
    }
    let done: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("CHECK "))
        .filter_map(|l| l.strip_suffix(" ok"))
        .collect();
    if done != CHECKS {
        return Err(format!(
            "checks reported {done:?}, expected {CHECKS:?}\n{transcript}"
        ));
    }
    print!("{stdout}");
    Ok(())
}

fn ok(name: &str) {
    println!("CHECK {name} ok");
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| {
            panic!("running {args:?}: {e} (is iproute2 installed? cargo xtask setup)")
        });
    assert!(st.success(), "{args:?} failed: {st}");
}

/// A `Cap…:` line of a /proc status text, as a bit mask.
fn mask(status: &str, key: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} missing from status"));
    u64::from_str_radix(hex.trim(), 16).expect("hex capability mask")
}

fn bits(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or_else(|e| panic!("ifindex of {name}: {e}"))
}

fn vrid(index: u32, id: u8) -> (VridKey, VridConfig) {
    (
        VridKey::new(index, FAMILY_IPV4, id),
        VridConfig {
            flags: 1,
            auth_type: 0,
            v2_interval_s: 0,
            _pad: [0; 5],
            auth_data: [0; 8],
        },
    )
}

fn child() {
    let (mut dp, k) = namespace_with_datapath();
    refused_with_another_thread();
    ok("refused-with-another-thread");
    let kept = drop_and_check_report();
    ok("report");
    check_own_sets(kept);
    ok("own-sets");
    check_root_child_bounded(kept);
    ok("root-child-bounded");

    let err = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .expect_err("a mount namespace needs CAP_SYS_ADMIN, which is gone");
    assert_eq!(err, nix::errno::Errno::EPERM);
    ok("no-sys-admin");

    assert!(
        EbpfDatapath::load(true).is_err(),
        "loading programs must fail without CAP_BPF"
    );
    ok("no-bpf-load");

    check_net_raw();
    ok("net-raw");
    check_net_admin();
    ok("net-admin");
    check_setuid_setgid();
    ok("setuid-setgid");
    check_kill();
    ok("kill");
    check_bpf_maps(&mut dp, &k);
    ok("bpf-maps");

    let mode = dp
        .attach("xo1", AttachPreference::Auto)
        .expect("attach the loaded program to another interface after the drop");
    dp.set_policy(ifindex("xo1"), IfacePolicy::DEFAULT)
        .expect("policy for xo1");
    println!("attached xo1 in mode {mode}");
    ok("attach-another-interface");
}

/// Enters a network namespace of its own with a veth pair, loads the
/// datapath and attaches it to `xo0` with VRID 51 set (its key returned),
/// all before the drop.
fn namespace_with_datapath() -> (EbpfDatapath, VridKey) {
    // A namespace of our own: interfaces and addresses vanish with us.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare a network namespace (needs CAP_SYS_ADMIN)");
    sh(&["ip", "link", "set", "lo", "up"]);
    sh(&[
        "ip", "link", "add", "xo0", "type", "veth", "peer", "name", "xo1",
    ]);
    sh(&["ip", "link", "set", "xo0", "up"]);
    sh(&["ip", "link", "set", "xo1", "up"]);

    let mut dp =
        EbpfDatapath::load(true).expect("load the eBPF datapath (build with XVRRPD_EBPF=require)");
    dp.attach("xo0", AttachPreference::Auto)
        .expect("attach to xo0");
    dp.set_policy(ifindex("xo0"), IfacePolicy::DEFAULT)
        .expect("policy for xo0");
    let (k, v) = vrid(ifindex("xo0"), 51);
    dp.set_vrid(k, v).expect("VRID before the drop");

    (dp, k)
}

/// Another thread that still holds everything: the call must refuse and
/// change nothing.
fn refused_with_another_thread() {
    let before = std::fs::read_to_string("/proc/self/status").expect("own status");
    let (tx, rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    match privileges::drop_after_attach() {
        Err(PrivError::OtherThreads { threads, caps }) => {
            assert_eq!(threads.len(), 1, "one other thread");
            assert!(caps.contains("CAP_BPF"), "{caps}");
        }
        other => panic!("expected a refusal with another thread alive, got {other:?}"),
    }
    let after = std::fs::read_to_string("/proc/self/status").expect("own status");
    assert_eq!(mask(&before, "CapEff:"), mask(&after, "CapEff:"));
    assert_eq!(mask(&before, "CapBnd:"), mask(&after, "CapBnd:"));
    let _ = tx.send(());
    other.join().expect("the other thread ends");
}

/// Drops the capabilities; the report must match `KEPT`. Returns its bits.
fn drop_and_check_report() -> u64 {
    let report = privileges::drop_after_attach().expect("drop capabilities");
    println!("report: {report}");
    let kept = bits(&KEPT);
    assert_eq!(bits(&report.kept), kept, "{report:?}");
    assert!(report.missing.is_empty(), "{report:?}");
    assert!(report.bounding_left.is_empty(), "{report:?}");
    for c in [
        Capability::CAP_BPF,
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_PERFMON,
        Capability::CAP_SETPCAP,
        Capability::CAP_DAC_OVERRIDE,
    ] {
        assert!(report.dropped.contains(&c), "{c} not reported dropped");
        assert!(
            report.bounding_dropped.contains(&c),
            "{c} not out of bounding"
        );
    }
    assert!(
        report.note.is_none(),
        "this kernel needs no extra capability"
    );
    kept
}

fn check_own_sets(kept: u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("own status");
    assert_eq!(mask(&status, "CapEff:"), kept, "effective");
    assert_eq!(mask(&status, "CapPrm:"), kept, "permitted");
    assert_eq!(mask(&status, "CapBnd:"), kept, "bounding");
    assert_eq!(mask(&status, "CapInh:") & !kept, 0, "inheritable");
    assert_eq!(mask(&status, "CapAmb:") & !kept, 0, "ambient");
}

/// A script running as root gets the bounding set at exec, no more.
fn check_root_child_bounded(kept: u64) {
    let out = Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .expect("run cat as root");
    let script = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        mask(&script, "CapEff:"),
        kept,
        "a root script's effective set"
    );
}

fn check_net_raw() {
    // SAFETY: plain socket(2); the fd is closed right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, 112) };
    assert!(
        fd >= 0,
        "a raw VRRP socket with CAP_NET_RAW: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
}

fn check_net_admin() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let vips = VipManager::new().expect("netlink socket");
        let vip = Vip::host(ifindex("xo0"), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 51)));
        vips.add_vip(&vip)
            .await
            .expect("add a VIP with CAP_NET_ADMIN");
        let listed = vips.list_marked().await.expect("list VIPs");
        assert!(
            listed.iter().any(|a| a.key() == vip.key()),
            "the VIP is on xo0: {listed:?}"
        );
        vips.remove_vip(&vip).await.expect("remove the VIP");
    });
    drop(rt);
}

fn check_setuid_setgid() {
    let out = Command::new("id")
        .args(["-u"])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run id as nobody (CAP_SETUID, CAP_SETGID)");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        NOBODY.to_string()
    );
}

/// A script run as another user can be killed with CAP_KILL.
fn check_kill() {
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .expect("start a script as nobody");
    let pid = nix::unistd::Pid::from_raw(sleeper.id() as i32);
    let killed = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    if killed.is_err() {
        let _ = sleeper.kill();
    }
    killed.expect("kill another user's process with CAP_KILL");
    let st = sleeper.wait().expect("reap it");
    assert_eq!(st.signal(), Some(9), "killed by SIGKILL");
}

/// The maps still take updates (a reload) and counters can be read.
fn check_bpf_maps(dp: &mut EbpfDatapath, k: &VridKey) {
    let (k2, v2) = vrid(ifindex("xo0"), 52);
    dp.set_vrid(k2, v2)
        .expect("update the VRID map after the drop (reload)");
    dp.remove_vrid(k).expect("delete from the VRID map");
    dp.counters()
        .expect("read the kernel counters after the drop");
}
