//! vrrp_track_process in /proc polling mode (no root needed); the
//! connector mode is covered by the privileged suite.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use xvrrpd::tracker::TrackerEvent;
use xvrrpd::tracker::process::{
    MonitorMode, MonitorOptions, ProcessMatch, ProcessMonitor, ProcessTrackerConfig,
};
use xvrrpd::vrrp::{TrackState, TrackerId};

/// A copy of `sleep` under a name no other process has (comm is 15 bytes).
struct UniqueSleep {
    dir: PathBuf,
    exe: PathBuf,
    name: String,
}

impl UniqueSleep {
    fn new(tag: &str) -> Self {
        let name = format!("xv{tag}{}", std::process::id() % 1_000_000);
        let dir = std::env::temp_dir().join(format!("xvt-proc-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let exe = dir.join(&name);
        std::fs::copy("/bin/sleep", &exe).expect("copy sleep");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self { dir, exe, name }
    }

    fn start(&self) -> Child {
        Command::new(&self.exe)
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn")
    }
}

impl Drop for UniqueSleep {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

async fn next_state(rx: &mut mpsc::Receiver<TrackerEvent>, limit: Duration) -> Option<TrackState> {
    tokio::time::timeout(limit, rx.recv())
        .await
        .ok()
        .flatten()
        .map(|e| e.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_sees_a_process_start_and_stop() {
    let s = UniqueSleep::new("p");
    let cfg = ProcessTrackerConfig::new(
        TrackerId(4),
        "tp",
        ProcessMatch::new(&s.name, &[], None, false),
    );
    let (tx, mut rx) = mpsc::channel(16);
    let opts = MonitorOptions {
        poll_interval: Duration::from_millis(50),
        force_polling: true,
    };
    let m = ProcessMonitor::spawn(vec![cfg], tx, opts).expect("monitor starts");
    assert_eq!(m.mode, MonitorMode::Polling(Duration::from_millis(50)));
    assert_eq!(m.initial, [(TrackerId(4), TrackState::Down)]);

    let child = s.start();
    assert_eq!(
        next_state(&mut rx, Duration::from_secs(5)).await,
        Some(TrackState::Up)
    );
    stop(child);
    assert_eq!(
        next_state(&mut rx, Duration::from_secs(5)).await,
        Some(TrackState::Down)
    );
    m.handle.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_and_full_command_with_params() {
    let s = UniqueSleep::new("q");
    let exe = s.exe.to_string_lossy().into_owned();
    let mut cfg = ProcessTrackerConfig::new(
        TrackerId(5),
        "tq",
        ProcessMatch::new(&exe, &["1000".to_owned()], None, false),
    );
    cfg.quorum = 2;
    cfg.quorum_max = 2;
    let (tx, mut rx) = mpsc::channel(16);
    let opts = MonitorOptions {
        poll_interval: Duration::from_millis(50),
        force_polling: true,
    };
    let a = s.start();
    let m = ProcessMonitor::spawn(vec![cfg], tx, opts).expect("monitor starts");
    assert_eq!(m.initial, [(TrackerId(5), TrackState::Down)]);
    let b = s.start();
    assert_eq!(
        next_state(&mut rx, Duration::from_secs(5)).await,
        Some(TrackState::Up)
    );
    // A third one breaks quorum_max.
    let c = s.start();
    assert_eq!(
        next_state(&mut rx, Duration::from_secs(5)).await,
        Some(TrackState::Down)
    );
    // Different parameters do not count.
    let other = Command::new(&s.exe).arg("999").spawn().expect("spawn");
    stop(c);
    assert_eq!(
        next_state(&mut rx, Duration::from_secs(5)).await,
        Some(TrackState::Up)
    );
    stop(other);
    stop(a);
    stop(b);
    assert_eq!(
        next_state(&mut rx, Duration::from_secs(5)).await,
        Some(TrackState::Down)
    );
    m.handle.shutdown(Duration::from_secs(2)).await;
}
