//! `events` over the control socket: a follower gets every event in order;
//! one that stops reading is cut off, and publishing never waits for it.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use xvrrpd::control::{
    events::{Event, EventBus, EventKind},
    socket::serve,
};

fn reloaded(n: usize) -> EventKind {
    EventKind::Reloaded {
        kept: n,
        changed: 0,
        left: 0,
        new: 0,
    }
}

async fn wait_followers(bus: &EventBus, n: usize) {
    let end = Instant::now() + Duration::from_secs(5);
    while bus.followers() < n {
        assert!(Instant::now() < end, "no follower subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn followers_get_events_in_order_and_a_stalled_one_is_cut_off() {
    let dir = common::TempDir::new("events");
    let path = dir.path().join("xvrrpd.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx, _rx) = mpsc::channel(4);
        let bus = EventBus::new();
        let _server = serve(&path, tx, bus.clone()).expect("serve the control socket");

        // A follower reading JSON lines.
        let mut reader = UnixStream::connect(&path).expect("connect");
        reader.write_all(b"events json\n").expect("ask");
        reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // A follower that never reads.
        let mut stalled = UnixStream::connect(&path).expect("connect");
        stalled.write_all(b"events json\n").expect("ask");
        wait_followers(&bus, 2).await;

        for n in 0..3 {
            bus.publish(reloaded(n));
        }
        let got = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(reader).lines();
            (0..3)
                .map(|_| {
                    let l = lines.next().expect("a line").expect("read");
                    serde_json::from_str::<Event>(&l).expect("an event")
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("reader");
        assert_eq!(
            got.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
            (0..3).map(reloaded).collect::<Vec<_>>()
        );
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));

        // Enough to fill the stalled follower's socket many times over:
        // publishing does not wait for it...
        let started = Instant::now();
        for n in 0..5_000 {
            bus.publish(EventKind::ReloadRefused {
                error: format!("{n}: {}", "x".repeat(200)),
            });
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "publishing waited for a follower: {:?}",
            started.elapsed()
        );
        // ...and the server cuts it off (it fell behind or a write to it
        // waited 2 s): its socket reaches its end.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cut = tokio::task::spawn_blocking(move || {
            stalled
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut sink = Vec::new();
            stalled.read_to_end(&mut sink).map(|_| sink)
        })
        .await
        .expect("reader");
        let sink = cut.expect("the stalled follower's connection ends");
        assert!(sink.len() < 5_000 * 200, "it got everything: not cut off");
        assert_eq!(
            bus.followers(),
            0,
            "the cut-off follower is still subscribed"
        );
    });
}
