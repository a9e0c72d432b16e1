//! sd_notify messages as systemd receives them, over a datagram socket that
//! stands in for $NOTIFY_SOCKET.
//!
//! This file holds a single test on purpose: it changes the environment,
//! which is only sound while no other thread reads it.

use std::{os::unix::net::UnixDatagram, path::PathBuf, time::Duration};

use xvrrpd::control::systemd;

fn set(key: &str, value: &str) {
    // SAFETY: the only test in this binary; nothing else reads the
    // environment while it runs.
    unsafe { std::env::set_var(key, value) }
}

fn unset(key: &str) {
    // SAFETY: as in `set`.
    unsafe { std::env::remove_var(key) }
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notifications_and_watchdog_follow_the_environment() {
    for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        unset(k);
    }

    // Not under systemd: everything is a quiet no-op.
    assert!(!systemd::notify_socket_set());
    systemd::ready().expect("no-op without NOTIFY_SOCKET");
    systemd::reloading().expect("no-op without NOTIFY_SOCKET");
    systemd::watchdog().expect("no-op without NOTIFY_SOCKET");
    assert_eq!(systemd::watchdog_interval(), None);

    let dir: PathBuf = std::env::temp_dir().join(format!("xvrrpd-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("notify");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("bind the stand-in notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    set("NOTIFY_SOCKET", path.to_str().expect("utf-8 temp path"));
    assert!(systemd::notify_socket_set());

    systemd::ready().expect("send READY");
    assert_eq!(recv(&sock), "READY=1\n");

    systemd::ready_with_status("2 instances: 1 MASTER\nSTOPPING=1").expect("send READY+STATUS");
    assert_eq!(
        recv(&sock),
        "READY=1\nSTATUS=2 instances: 1 MASTER STOPPING=1\n",
        "a newline in the status must not become a field of its own"
    );

    systemd::status("VI_1 MASTER").expect("send STATUS");
    assert_eq!(recv(&sock), "STATUS=VI_1 MASTER\n");

    systemd::reloading().expect("send RELOADING");
    let msg = recv(&sock);
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC follows RELOADING")
        .parse()
        .expect("a number");
    assert!(usec > 0);

    systemd::stopping().expect("send STOPPING");
    assert_eq!(recv(&sock), "STOPPING=1\n");
    systemd::watchdog().expect("send WATCHDOG");
    assert_eq!(recv(&sock), "WATCHDOG=1\n");

    // Watchdog: ours when WATCHDOG_PID is our pid or absent, not otherwise.
    set("WATCHDOG_USEC", "5000000");
    set("WATCHDOG_PID", &std::process::id().to_string());
    assert_eq!(systemd::watchdog_timeout(), Some(Duration::from_secs(5)));
    assert_eq!(
        systemd::watchdog_interval(),
        Some(Duration::from_millis(2500))
    );
    set("WATCHDOG_PID", "1");
    assert_eq!(
        systemd::watchdog_interval(),
        None,
        "another process's watchdog"
    );
    unset("WATCHDOG_PID");
    assert_eq!(systemd::watchdog_timeout(), Some(Duration::from_secs(5)));
    set("WATCHDOG_USEC", "0");
    assert_eq!(systemd::watchdog_interval(), None, "0 means disabled");

    // A socket that went away is an error that says what to do.
    drop(sock);
    std::fs::remove_file(&path).expect("remove the socket");
    let err = systemd::ready().expect_err("nobody listens");
    assert!(err.to_string().contains("READY=1"), "{err}");
    assert!(err.to_string().contains("NOTIFY_SOCKET"), "{err}");

    unset("NOTIFY_SOCKET");
    let _ = std::fs::remove_dir(&dir);
}
