//! vrrp_script runner against real processes (no root needed).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TempDir, write_script};
use tokio::sync::mpsc;
use xvrrpd::script::exec::{self, RunLimits, ScriptOutcome};
use xvrrpd::script::security::{self, CheckedScript, ExecMode};
use xvrrpd::script::{RunAs, ScriptCommand};
use xvrrpd::tracker::TrackerEvent;
use xvrrpd::tracker::script::{self, ScriptTrackerConfig};
use xvrrpd::vrrp::{TrackState, TrackerId};

fn checked(path: &Path, args: &[&str]) -> CheckedScript {
    let mut argv = vec![path.as_os_str().to_owned()];
    argv.extend(args.iter().map(Into::into));
    security::check_script(&ScriptCommand { argv }, &RunAs::current(), false)
        .expect("script passes checks")
}

fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; only its parent's reaping is left.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    for _ in 0..1000 {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

async fn next_event(
    rx: &mut mpsc::Receiver<TrackerEvent>,
    limit: Duration,
) -> Option<TrackerEvent> {
    tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let dir = TempDir::new("grp");
    let pidfile = dir.path().join("child.pid");
    // Ignores SIGTERM (so SIGKILL is needed) and leaves a background child.
    let script = write_script(
        dir.path(),
        "hang.sh",
        &format!(
            "#!/bin/sh\ntrap '' TERM\nsleep 1000 &\necho $! > {}\nwhile :; do sleep 0.05; done\n",
            pidfile.display()
        ),
    );
    let s = checked(&script, &[]);
    assert_eq!(s.mode, ExecMode::Direct);
    let limits = RunLimits {
        timeout: Some(Duration::from_millis(400)),
        kill_grace: Duration::from_millis(300),
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), exec::run(&s, &[], limits))
        .await
        .expect("run finishes after the kill");
    assert_eq!(outcome, ScriptOutcome::TimedOut);
    assert!(!outcome.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let child: i32 = std::fs::read_to_string(&pidfile)
        .expect("script wrote its child's pid")
        .trim()
        .parse()
        .expect("pid is a number");
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(child)).await,
        "background child {child} of the timed-out script survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_and_signals() {
    let dir = TempDir::new("exit");
    let ok = write_script(dir.path(), "ok.sh", "#!/bin/sh\nexit 0\n");
    let bad = write_script(dir.path(), "bad.sh", "#!/bin/sh\nexit 3\n");
    let sig = write_script(dir.path(), "sig.sh", "#!/bin/sh\nkill -USR1 $$\nsleep 5\n");
    let limits = RunLimits {
        timeout: Some(Duration::from_secs(5)),
        kill_grace: Duration::from_millis(200),
    };
    assert_eq!(
        exec::run(&checked(&ok, &[]), &[], limits).await,
        ScriptOutcome::Exited(0)
    );
    assert_eq!(
        exec::run(&checked(&bad, &[]), &[], limits).await,
        ScriptOutcome::Exited(3)
    );
    assert_eq!(
        exec::run(&checked(&sig, &[]), &[], limits).await,
        ScriptOutcome::Signaled(libc::SIGUSR1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_passed_without_a_shell() {
    let dir = TempDir::new("args");
    let out = dir.path().join("out");
    let script = write_script(
        dir.path(),
        "args.sh",
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done > {}\n",
            out.display()
        ),
    );
    let cmd = ScriptCommand::parse(&format!(r#"{} "a b" '$HOME' c\"d"#, script.display()))
        .expect("parses");
    let s = security::check_script(&cmd, &RunAs::current(), false).expect("passes checks");
    let r = exec::run(&s, &["extra".into()], RunLimits::unlimited()).await;
    assert_eq!(r, ScriptOutcome::Exited(0));
    let text = std::fs::read_to_string(&out).expect("script wrote its arguments");
    assert_eq!(text, "[a b]\n[$HOME]\n[c\"d]\n[extra]\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_without_shebang_runs_through_the_shell() {
    let dir = TempDir::new("nosb");
    let out = dir.path().join("out");
    let script = write_script(
        dir.path(),
        "plain",
        &format!("echo \"$1\" > {}\n", out.display()),
    );
    let s = checked(&script, &["it's"]);
    assert_eq!(s.mode, ExecMode::Shell);
    assert!(s.warnings.iter().any(|w| w.contains("shebang")));
    assert_eq!(
        exec::run(&s, &[], RunLimits::unlimited()).await,
        ScriptOutcome::Exited(0)
    );
    assert_eq!(std::fs::read_to_string(&out).expect("output"), "it's\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_name_is_found_in_path_with_a_warning() {
    let s = security::check_script(
        &ScriptCommand::parse("true").expect("parses"),
        &RunAs::current(),
        false,
    )
    .expect("true is in PATH");
    assert!(s.program.is_absolute());
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("resolved by path search"))
    );
    assert_eq!(
        exec::run(&s, &[], RunLimits::unlimited()).await,
        ScriptOutcome::Exited(0)
    );
    let missing = security::check_script(
        &ScriptCommand::parse("no-such-command-xvrrpd").expect("parses"),
        &RunAs::current(),
        false,
    );
    assert!(matches!(
        missing,
        Err(security::ScriptRejected::NotInPath(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_reports_rise_and_fall_changes_only() {
    let dir = TempDir::new("rf");
    let flag = dir.path().join("up");
    let script = write_script(
        dir.path(),
        "chk.sh",
        &format!("#!/bin/sh\ntest -e {}\n", flag.display()),
    );
    let mut cfg = ScriptTrackerConfig::new(TrackerId(7), "chk", checked(&script, &[]));
    cfg.interval = Duration::from_millis(50);
    cfg.rise = 2;
    cfg.fall = 3;
    assert_eq!(cfg.initial_state(), None);
    let (tx, mut rx) = mpsc::channel(16);
    let handle = script::spawn(cfg, tx);

    // First result (failure) is reported from the init state.
    let ev = next_event(&mut rx, Duration::from_secs(5))
        .await
        .expect("first result");
    assert_eq!((ev.id, ev.state), (TrackerId(7), TrackState::Down));
    std::fs::write(&flag, "").expect("create flag");
    let ev = next_event(&mut rx, Duration::from_secs(5))
        .await
        .expect("rise");
    assert_eq!(ev.state, TrackState::Up);
    std::fs::remove_file(&flag).expect("remove flag");
    let ev = next_event(&mut rx, Duration::from_secs(5))
        .await
        .expect("fall");
    assert_eq!(ev.state, TrackState::Down);
    // Still failing: no further event.
    assert!(
        next_event(&mut rx, Duration::from_millis(400))
            .await
            .is_none()
    );
    handle.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_fail_starts_failed_and_timeouts_count_as_failures() {
    let dir = TempDir::new("initf");
    let script = write_script(dir.path(), "slow.sh", "#!/bin/sh\nsleep 30\n");
    let mut cfg = ScriptTrackerConfig::new(TrackerId(1), "slow", checked(&script, &[]));
    cfg.interval = Duration::from_millis(100);
    cfg.timeout = Some(Duration::from_millis(100));
    cfg.kill_grace = Duration::from_millis(100);
    cfg.init_fail = true;
    assert_eq!(cfg.initial_state(), Some(TrackState::Down));
    let (tx, mut rx) = mpsc::channel(16);
    let handle = script::spawn(cfg, tx);
    // Already failed, failing again is no change.
    assert!(
        next_event(&mut rx, Duration::from_millis(800))
            .await
            .is_none()
    );
    handle.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_skipped_while_the_previous_one_runs() {
    let dir = TempDir::new("skip");
    let log = dir.path().join("runs");
    let script = write_script(
        dir.path(),
        "slow.sh",
        &format!("#!/bin/sh\necho run >> {}\nsleep 0.5\n", log.display()),
    );
    let mut cfg = ScriptTrackerConfig::new(TrackerId(2), "slow", checked(&script, &[]));
    cfg.interval = Duration::from_millis(100);
    cfg.timeout = Some(Duration::from_secs(5));
    let (tx, _rx) = mpsc::channel(16);
    let handle = script::spawn(cfg, tx);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    handle.shutdown(Duration::from_secs(5)).await;
    let runs = std::fs::read_to_string(&log)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    // 13 ticks, but each run lasts 5 of them.
    assert!((1..=4).contains(&runs), "{runs} runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_a_running_script_group() {
    let dir = TempDir::new("stop");
    let pidfile = dir.path().join("pid");
    let script = write_script(
        dir.path(),
        "long.sh",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\nwait\n",
            pidfile.display()
        ),
    );
    let mut cfg = ScriptTrackerConfig::new(TrackerId(3), "long", checked(&script, &[]));
    cfg.interval = Duration::from_secs(60);
    let (tx, _rx) = mpsc::channel(16);
    let handle = script::spawn(cfg, tx);
    assert!(wait_until(Duration::from_secs(5), || pidfile.exists()).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let child: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    handle.shutdown(Duration::from_secs(2)).await;
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(child)).await,
        "child {child} survived shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirection_check_runs_through_sh() {
    let ok = security::check_script(
        &ScriptCommand::parse("</dev/null").expect("parses"),
        &RunAs::current(),
        true,
    )
    .expect("accepted");
    assert_eq!(ok.mode, ExecMode::Shell);
    assert_eq!(
        exec::run(&ok, &[], RunLimits::unlimited()).await,
        ScriptOutcome::Exited(0)
    );
    let missing = security::check_script(
        &ScriptCommand::parse("</nonexistent/xvrrpd").expect("parses"),
        &RunAs::current(),
        true,
    )
    .expect("accepted");
    assert!(
        !exec::run(&missing, &[], RunLimits::unlimited())
            .await
            .success()
    );
}
