//! Notify scripts run in order per instance; the FIFO gets keepalived's
//! lines and never stalls the caller (no root needed).

mod common;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TempDir, write_script};
use xvrrpd::notify::{
    FifoConfig, Notifier, NotifierOptions, NotifyFifo, NotifyScripts, NotifyState, Subject,
};
use xvrrpd::script::security::{self, CheckedScript};
use xvrrpd::script::{RunAs, ScriptCommand};

fn script(dir: &Path, name: &str, body: &str) -> CheckedScript {
    let p = write_script(dir, name, body);
    security::check_script(
        &ScriptCommand::from_argv([p.into_os_string()]),
        &RunAs::current(),
        false,
    )
    .expect("script passes checks")
}

async fn wait_for_lines(path: &Path, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default();
        if lines.len() >= n || start.elapsed() > limit {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_quick_transitions_run_in_order() {
    let dir = TempDir::new("order");
    let out = dir.path().join("out");
    // A random short sleep makes overtaking likely if runs were concurrent.
    let generic = script(
        dir.path(),
        "notify.sh",
        &format!(
            "#!/bin/sh\nsleep 0.0$(($$ % 3))\necho \"$1 $2 $3 $4 $(date +%s%N)\" >> {}\n",
            out.display()
        ),
    );
    let master = script(
        dir.path(),
        "master.sh",
        &format!("#!/bin/sh\necho \"to-master\" >> {}\n", out.display()),
    );
    let mut n = Notifier::new(Vec::new(), NotifierOptions::default());
    n.add(
        Subject::Instance,
        "VI_1",
        NotifyScripts {
            notify: Some(generic),
            master: Some(master),
            ..Default::default()
        },
    );
    let started = Instant::now();
    for i in 0..50u8 {
        let state = if i % 2 == 0 {
            NotifyState::Master
        } else {
            NotifyState::Backup
        };
        n.state_change(Subject::Instance, "VI_1", state, 100 + i);
    }
    // The caller never waits for the scripts.
    assert!(started.elapsed() < Duration::from_millis(200));

    let lines = wait_for_lines(&out, 75, Duration::from_secs(60)).await;
    assert_eq!(lines.len(), 75, "{lines:#?}");
    let mut it = lines.iter();
    let mut last_ts = 0u128;
    for i in 0..50u8 {
        let state = if i % 2 == 0 { "MASTER" } else { "BACKUP" };
        if i % 2 == 0 {
            // notify_master runs before the generic notify of the same transition.
            assert_eq!(it.next().map(String::as_str), Some("to-master"));
        }
        let line = it.next().expect("generic notify line");
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(&f[..4], ["INSTANCE", "VI_1", state, &(100 + i).to_string()]);
        let ts: u128 = f[4].parse().expect("timestamp");
        assert!(ts >= last_ts);
        last_ts = ts;
    }
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_lines_have_keepalived_format() {
    let dir = TempDir::new("fifo");
    let path = dir.path().join("notify.fifo");
    let fifo = NotifyFifo::open(FifoConfig::new(&path)).expect("fifo opens");
    assert!(
        std::fs::metadata(&path)
            .expect("created")
            .file_type()
            .is_fifo_like()
    );
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .expect("open reader");
    let mut n = Notifier::new(vec![fifo], NotifierOptions::default());
    n.add(Subject::Instance, "VI_1", NotifyScripts::default());
    n.state_change(Subject::Instance, "VI_1", NotifyState::Master, 100);
    n.state_change(Subject::Group, "G1", NotifyState::Backup, 0);
    n.master_rx_lower_pri("VI_1", 100);
    n.priority_change("VI_1", true, 98);
    n.priority_change("VI_1", false, 90);
    n.state_change(Subject::Instance, "VI_1", NotifyState::Stop, 90);

    let want = "INSTANCE \"VI_1\" MASTER 100\nGROUP \"G1\" BACKUP 0\nINSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 100\n\
                INSTANCE \"VI_1\" MASTER_PRIORITY 98\nINSTANCE \"VI_1\" BACKUP_PRIORITY 90\nINSTANCE \"VI_1\" STOP 90\n";
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while got.len() < want.len() && start.elapsed() < Duration::from_secs(5) {
        match reader.read(&mut buf) {
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), want);
    n.shutdown(Duration::from_secs(2)).await;
    // We created the FIFO, so it is removed on close.
    assert!(!path.exists());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_nobody_reads_never_stalls() {
    let dir = TempDir::new("stall");
    let path = dir.path().join("notify.fifo");
    let mut cfg = FifoConfig::new(&path);
    cfg.queue = 64;
    let fifo = NotifyFifo::open(cfg).expect("fifo opens");
    let started = Instant::now();
    let mut accepted = 0u32;
    // ~100 bytes a line: far more than the 64 KiB pipe plus the queue.
    for i in 0..20_000u32 {
        if fifo.send_line(&format!("INSTANCE \"VI_{i:0>70}\" MASTER 100\n")) {
            accepted += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "sending took {elapsed:?}");
    assert!(fifo.dropped() > 0);
    assert!(accepted > 0);
    tokio::time::timeout(
        Duration::from_secs(5),
        fifo.close(Duration::from_millis(100)),
    )
    .await
    .expect("close does not hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_script_consumes_the_fifo_and_is_stopped_on_close() {
    let dir = TempDir::new("fscript");
    let path = dir.path().join("notify.fifo");
    let out = dir.path().join("out");
    let pidfile = dir.path().join("pid");
    let reader = script(
        dir.path(),
        "reader.sh",
        &format!(
            "#!/bin/sh\necho $$ > {}\nwhile read -r line; do echo \"$line\" >> {}; done < \"$1\"\n",
            pidfile.display(),
            out.display()
        ),
    );
    let mut cfg = FifoConfig::new(&path);
    cfg.script = Some(reader);
    let fifo = NotifyFifo::open(cfg).expect("fifo opens");
    let n = Notifier::new(vec![fifo], NotifierOptions::default());
    for p in 0..5u8 {
        n.state_change(Subject::Instance, "VI_2", NotifyState::Backup, p);
    }
    let lines = wait_for_lines(&out, 5, Duration::from_secs(10)).await;
    let want: Vec<String> = (0..5)
        .map(|p| format!("INSTANCE \"VI_2\" BACKUP {p}"))
        .collect();
    assert_eq!(lines, want);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    n.shutdown(Duration::from_secs(2)).await;
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && start.elapsed() < Duration::from_secs(5)
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z')),
        "fifo script {pid} still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_do_not_wait_for_each_other() {
    let dir = TempDir::new("indep");
    let out = dir.path().join("out");
    let slow = script(dir.path(), "slow.sh", "#!/bin/sh\nsleep 30\n");
    let fast = script(
        dir.path(),
        "fast.sh",
        &format!("#!/bin/sh\necho \"$2\" >> {}\n", out.display()),
    );
    let mut n = Notifier::new(Vec::new(), NotifierOptions::default());
    n.add(
        Subject::Instance,
        "SLOW",
        NotifyScripts {
            master: Some(slow),
            ..Default::default()
        },
    );
    n.add(
        Subject::Instance,
        "FAST",
        NotifyScripts {
            notify: Some(fast),
            ..Default::default()
        },
    );
    n.state_change(Subject::Instance, "SLOW", NotifyState::Master, 100);
    n.state_change(Subject::Instance, "FAST", NotifyState::Master, 100);
    let lines = wait_for_lines(&out, 1, Duration::from_secs(10)).await;
    assert_eq!(lines, ["FAST"]);
    // Shutdown kills the still-running slow script within the grace period.
    tokio::time::timeout(
        Duration::from_secs(10),
        n.shutdown(Duration::from_millis(300)),
    )
    .await
    .expect("shutdown is bounded");
}
