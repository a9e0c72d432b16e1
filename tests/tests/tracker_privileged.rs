//! Trackers and scripts where root matters: running scripts as another user,
//! keepalived's script security checks on root-owned paths, and the kernel
//! process-events connector.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use xvrrpd::script::command::{self, CommandError, UserSpec};
use xvrrpd::script::exec::{self, RunLimits, ScriptOutcome};
use xvrrpd::script::security::{self, ScriptRejected};
use xvrrpd::script::{RunAs, ScriptCommand};
use xvrrpd::tracker::TrackerEvent;
use xvrrpd::tracker::process::{
    MonitorMode, MonitorOptions, ProcessMatch, ProcessMonitor, ProcessTrackerConfig,
};
use xvrrpd::vrrp::{TrackState, TrackerId};
use xvrrpd_tests::require_root;

const NOBODY: u32 = 65534;

/// A root-owned 0755 directory under /tmp (itself root-owned and sticky).
struct RootDir(PathBuf);

impl RootDir {
    fn new(tag: &str) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = PathBuf::from(format!("/tmp/xvt-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).expect("mkdir");
        chmod(&p, 0o755);
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RootDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("chown");
}

fn write_script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    chmod(&p, mode);
    p
}

fn cmd(p: &Path) -> ScriptCommand {
    ScriptCommand::from_argv([p.as_os_str().to_owned()])
}

fn root() -> RunAs {
    RunAs {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_runs_as_its_user_with_supplementary_groups() {
    require_root();
    let dir = RootDir::new("user");
    let out = dir.path().join("out");
    std::fs::write(&out, "").expect("create out");
    chown(&out, NOBODY, NOBODY);
    let script = write_script(
        dir.path(),
        "id.sh",
        &format!(
            "#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G)\" > {}\n",
            out.display()
        ),
        0o755,
    );
    let run_as = RunAs {
        uid: NOBODY,
        gid: NOBODY,
        groups: vec![NOBODY, 100],
    };
    let s = security::check_script(&cmd(&script), &run_as, true).expect("secure script for nobody");
    assert!(!s.insecure);
    assert_eq!(
        exec::run(&s, &[], RunLimits::unlimited()).await,
        ScriptOutcome::Exited(0)
    );
    let got = std::fs::read_to_string(&out).expect("output");
    let f: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(&f[..2], ["65534", "65534"]);
    let mut groups: Vec<&str> = f[2..].to_vec();
    groups.sort_unstable();
    assert_eq!(groups, ["100", "65534"]);

    // Without explicit groups, root's supplementary groups are cleared.
    let plain = RunAs {
        uid: NOBODY,
        gid: NOBODY,
        groups: Vec::new(),
    };
    let s = security::check_script(&cmd(&script), &plain, true).expect("checks");
    assert_eq!(
        exec::run(&s, &[], RunLimits::unlimited()).await,
        ScriptOutcome::Exited(0)
    );
    let got = std::fs::read_to_string(&out).expect("output");
    assert_eq!(got.trim(), "65534 65534 65534");
}

#[test]
fn a_user_who_cannot_execute_the_script_is_refused() {
    require_root();
    let dir = RootDir::new("noexec");
    let script = write_script(dir.path(), "private.sh", "#!/bin/sh\n", 0o700);
    let nobody = RunAs {
        uid: NOBODY,
        gid: NOBODY,
        groups: Vec::new(),
    };
    assert!(matches!(
        security::check_script(&cmd(&script), &nobody, false),
        Err(ScriptRejected::NotExecutable { uid: NOBODY, .. })
    ));
    // A directory nobody cannot enter hides the script.
    let inner = dir.path().join("closed");
    std::fs::create_dir(&inner).expect("mkdir");
    chmod(&inner, 0o700);
    let hidden = write_script(&inner, "x.sh", "#!/bin/sh\n", 0o755);
    assert!(matches!(
        security::check_script(&cmd(&hidden), &nobody, false),
        Err(ScriptRejected::NotAccessible(..))
    ));
}

#[test]
fn strict_permissions_pass_script_security() {
    require_root();
    let dir = RootDir::new("strict");
    let script = write_script(dir.path(), "ok.sh", "#!/bin/sh\n", 0o755);
    let s = security::check_script(&cmd(&script), &root(), true).expect("secure");
    assert!(!s.insecure);
    assert!(s.is_script);
    assert!(security::security_summary(true, [&s]).is_none());
    // Without enable_script_security keepalived still logs the violation.
    assert_eq!(
        security::security_summary(false, [&s]).as_deref(),
        Some("SECURITY VIOLATION - scripts are being executed but script_security not enabled.")
    );
    // Group write by root's group is allowed.
    chmod(&script, 0o775);
    assert!(security::check_script(&cmd(&script), &root(), true).is_ok());
}

#[test]
fn loose_permissions_are_refused_with_security_and_flagged_without() {
    require_root();
    // Each case loosens the script's directory or the script itself.
    type Loosen = Box<dyn Fn(&Path, &Path)>;
    let cases: Vec<(&str, Loosen)> = vec![
        (
            "world-writable file",
            Box::new(|_d: &Path, f: &Path| chmod(f, 0o757)),
        ),
        (
            "group-writable file, non-root group",
            Box::new(|_d: &Path, f: &Path| {
                chown(f, 0, NOBODY);
                chmod(f, 0o775);
            }),
        ),
        (
            "file owned by a user",
            Box::new(|_d: &Path, f: &Path| chown(f, NOBODY, 0)),
        ),
        (
            "world-writable directory",
            Box::new(|d: &Path, _f: &Path| chmod(d, 0o777)),
        ),
        (
            "directory owned by a user",
            Box::new(|d: &Path, _f: &Path| chown(d, NOBODY, NOBODY)),
        ),
    ];
    for (what, loosen) in cases {
        let dir = RootDir::new("loose");
        let sub = dir.path().join("bin");
        std::fs::create_dir(&sub).expect("mkdir");
        chmod(&sub, 0o755);
        let script = write_script(&sub, "chk.sh", "#!/bin/sh\n", 0o755);
        loosen(&sub, &script);
        let strict = security::check_script(&cmd(&script), &root(), true);
        assert!(
            matches!(strict, Err(ScriptRejected::Insecure(_))),
            "{what}: {strict:?}"
        );
        let lax =
            security::check_script(&cmd(&script), &root(), false).expect("runs without security");
        assert!(lax.insecure, "{what}");
        assert!(
            security::security_summary(false, [&lax])
                .is_some_and(|m| m.ends_with(" There are insecure scripts.")),
            "{what}"
        );
        // The same file run as an unprivileged user needs no protection.
        let nobody = RunAs {
            uid: NOBODY,
            gid: NOBODY,
            groups: Vec::new(),
        };
        if let Ok(s) = security::check_script(&cmd(&script), &nobody, true) {
            assert!(!s.insecure, "{what}");
        }
    }
}

#[test]
fn symlinks_are_resolved_and_both_paths_checked() {
    require_root();
    let dir = RootDir::new("link");
    let safe = dir.path().join("safe");
    std::fs::create_dir(&safe).expect("mkdir");
    chmod(&safe, 0o755);
    let target = write_script(&safe, "real.sh", "#!/bin/sh\n", 0o755);

    // A root-owned link in a safe directory to a safe file: fine, and the
    // resolved file is what runs.
    let good_link = dir.path().join("good.sh");
    symlink(&target, &good_link).expect("symlink");
    let s = security::check_script(&cmd(&good_link), &root(), true).expect("secure");
    assert_eq!(s.program, target);
    assert_eq!(s.argv[0], good_link.as_os_str());

    // A link in a world-writable directory could be swapped: refused.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let bad_link = open.join("bad.sh");
    symlink(&target, &bad_link).expect("symlink");
    assert!(matches!(
        security::check_script(&cmd(&bad_link), &root(), true),
        Err(ScriptRejected::Insecure(_))
    ));

    // A safe link to a file in an unsafe place: refused too.
    let loose_target = write_script(&open, "loose.sh", "#!/bin/sh\n", 0o755);
    let link_to_loose = dir.path().join("to-loose.sh");
    symlink(&loose_target, &link_to_loose).expect("symlink");
    assert!(matches!(
        security::check_script(&cmd(&link_to_loose), &root(), true),
        Err(ScriptRejected::Insecure(_))
    ));
}

#[test]
fn setuid_root_script_needs_protection_even_for_a_user() {
    require_root();
    let dir = RootDir::new("suid");
    chmod(dir.path(), 0o777);
    let script = write_script(dir.path(), "suid", "#!/bin/sh\n", 0o4755);
    let nobody = RunAs {
        uid: NOBODY,
        gid: NOBODY,
        groups: Vec::new(),
    };
    assert!(matches!(
        security::check_script(&cmd(&script), &nobody, true),
        Err(ScriptRejected::Insecure(_))
    ));
}

#[test]
fn default_script_user_follows_keepalived() {
    require_root();
    let exists = nix::unistd::User::from_name(command::DEFAULT_SCRIPT_USER)
        .ok()
        .flatten()
        .is_some();
    if exists {
        let d = command::default_script_user(None, true, false).expect("keepalived_script");
        assert_ne!(d.run_as.uid, 0);
    } else {
        let d = command::default_script_user(None, false, false).expect("falls back to root");
        assert_eq!(d.run_as.uid, 0);
        assert!(d.warnings.iter().any(|w| w.contains(
            "WARNING - default user 'keepalived_script' for script execution does not exist - please create."
        )));
        assert_eq!(
            command::default_script_user(None, true, false),
            Err(CommandError::NoDefaultUser)
        );
    }
    let spec = UserSpec {
        user: "nobody".into(),
        group: None,
    };
    let d = command::default_script_user(Some(&spec), true, false).expect("script_user nobody");
    assert_eq!(d.run_as.uid, NOBODY);
}

/// A started process, killed when dropped: a failing test leaves no
/// process behind (one would also hold the test's output open).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_named(dir: &Path, name: &str) -> Running {
    let exe = dir.join(name);
    if !exe.exists() {
        std::fs::copy("/bin/sleep", &exe).expect("copy sleep");
        chmod(&exe, 0o755);
    }
    let child = Running(
        Command::new(&exe)
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    // spawn() returns once exec has taken the memory over, which can be
    // before the kernel renames the task: wait for the name the tracker
    // matches, so a scan right after sees the process.
    let comm = format!("/proc/{}/comm", child.id());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !std::fs::read_to_string(&comm).is_ok_and(|c| c.trim_end() == name) {
        assert!(Instant::now() < deadline, "{name} never showed its name");
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

async fn next_event(
    rx: &mut mpsc::Receiver<TrackerEvent>,
    limit: Duration,
) -> Option<TrackerEvent> {
    tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_sees_processes_start_and_stop_at_once() {
    require_root();
    let dir = RootDir::new("cn");
    let name = format!("xvcn{}", std::process::id() % 1_000_000);
    let cfg = ProcessTrackerConfig::new(
        TrackerId(1),
        "cn",
        ProcessMatch::new(&name, &[], None, false),
    );
    let (tx, mut rx) = mpsc::channel(16);
    let m =
        ProcessMonitor::spawn(vec![cfg], tx, MonitorOptions::default()).expect("monitor starts");
    assert_eq!(
        m.mode,
        MonitorMode::Connector,
        "CONFIG_PROC_EVENTS missing?"
    );
    assert_eq!(m.initial, [(TrackerId(1), TrackState::Down)]);

    let mut child = start_named(dir.path(), &name);
    let t0 = Instant::now();
    let ev = next_event(&mut rx, Duration::from_secs(5))
        .await
        .expect("start seen");
    assert_eq!(ev.state, TrackState::Up);
    // Event driven: well under the 1 s polling fallback.
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );

    let _ = child.kill();
    let _ = child.wait();
    let t0 = Instant::now();
    let ev = next_event(&mut rx, Duration::from_secs(5))
        .await
        .expect("exit seen");
    assert_eq!(ev.state, TrackState::Down);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    m.handle.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_terminate_delay_hides_a_quick_restart() {
    require_root();
    let dir = RootDir::new("cnd");
    let name = format!("xvcd{}", std::process::id() % 1_000_000);
    let mut cfg = ProcessTrackerConfig::new(
        TrackerId(2),
        "cnd",
        ProcessMatch::new(&name, &[], None, false),
    );
    cfg.terminate_delay = Duration::from_millis(800);
    let mut first = start_named(dir.path(), &name);
    let (tx, mut rx) = mpsc::channel(16);
    let m =
        ProcessMonitor::spawn(vec![cfg], tx, MonitorOptions::default()).expect("monitor starts");
    assert_eq!(m.initial, [(TrackerId(2), TrackState::Up)]);

    let _ = first.kill();
    let _ = first.wait();
    let mut second = start_named(dir.path(), &name);
    let early = next_event(&mut rx, Duration::from_millis(1500)).await;
    assert!(
        early.is_none(),
        "restart within terminate_delay must not be reported, got {early:?}"
    );
    let _ = second.kill();
    let _ = second.wait();
    let ev = next_event(&mut rx, Duration::from_secs(5))
        .await
        .expect("loss after delay");
    assert_eq!(ev.state, TrackState::Down);
    m.handle.shutdown(Duration::from_secs(2)).await;
}
