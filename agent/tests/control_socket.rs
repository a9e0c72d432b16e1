//! The control socket under abuse: out of file descriptors it backs off
//! instead of spinning the event loop's thread, and a client opening many
//! connections gets only a bounded number of them.
//!
//! One test in this binary: it lowers the process's file-descriptor limit.

mod common;

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use xvrrpd::control::{
    events::EventBus,
    socket::{MAX_CONNECTIONS, Request, serve},
    status::{DaemonStatus, SCHEMA_VERSION, StatusReport},
};

fn report() -> StatusReport {
    StatusReport {
        schema: SCHEMA_VERSION,
        daemon: DaemonStatus {
            pid: 1,
            version: "test".into(),
            config_file: String::new(),
            datapath: "raw-socket".into(),
            datapath_fallback_reason: None,
            attachments: Vec::new(),
            uptime_s: 0.0,
            reloads: 0,
            kernel: None,
        },
        instances: Vec::new(),
        sync_groups: Vec::new(),
        datapath_counters: Default::default(),
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the calling thread's CPU clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn set_fd_limit(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let before = lim.rlim_cur;
        lim.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
        before
    }
}

/// Asks for status on a connected client, from a blocking thread.
async fn ask_status(mut client: UnixStream) -> String {
    tokio::task::spawn_blocking(move || {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        client.write_all(b"status\n").expect("send the request");
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("client thread")
}

#[test]
fn the_control_socket_backs_off_when_out_of_descriptors_and_bounds_its_clients() {
    let dir = common::TempDir::new("control");
    let path = dir.path().join("xvrrpd.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel(4);
        let _server = serve(&path, tx, EventBus::new()).expect("serve the control socket");
        tokio::spawn(async move {
            while let Some(Request::Status(reply)) = rx.recv().await {
                let _ = reply.send(report());
            }
        });

        // Out of descriptors: one client waits in the backlog and every
        // accept fails with EMFILE.
        let limit_before = set_fd_limit(open_fds() + 4);
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
            assert!(fillers.len() < 64, "the descriptor limit did not take");
        }
        drop(fillers.pop());
        let waiting = UnixStream::connect(&path).expect("connect into the backlog");
        let cpu = thread_cpu();
        let wall = Instant::now();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let spent = thread_cpu() - cpu;
        assert!(
            spent < Duration::from_millis(80),
            "out of descriptors, the accept loop used {spent:?} of CPU in {:?}: it spins",
            wall.elapsed()
        );
        // Descriptors back: the waiting client is answered (within the
        // back-off's longest step).
        drop(fillers);
        set_fd_limit(limit_before);
        let answer = ask_status(waiting).await;
        assert!(
            answer.contains("\"schema\""),
            "the client that waited is not answered: {answer:?}"
        );

        // Many idle clients: only MAX_CONNECTIONS are kept, the others are
        // closed at once.
        let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS + 24)
            .map(|_| UnixStream::connect(&path).expect("connect"))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let closed = tokio::task::spawn_blocking(move || {
            idle.into_iter()
                .filter(|c| {
                    c.set_read_timeout(Some(Duration::from_millis(20))).ok();
                    let mut b = [0u8; 1];
                    matches!((&*c).read(&mut b), Ok(0))
                })
                .count()
        })
        .await
        .expect("client thread");
        assert_eq!(
            closed,
            24,
            "{} idle clients: the server should keep {MAX_CONNECTIONS} and close the rest",
            MAX_CONNECTIONS + 24
        );
    });
}
