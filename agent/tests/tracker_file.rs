//! track_file watcher against a real directory (no root needed).

mod common;

use std::path::Path;
use std::time::Duration;

use common::TempDir;
use tokio::sync::mpsc;
use xvrrpd::tracker::TrackerEvent;
use xvrrpd::tracker::file::{self, FileTracker, FileTrackerConfig, InitFile, TrackFileError};
use xvrrpd::vrrp::{TrackState, TrackerId};

fn cfg(path: &Path) -> FileTrackerConfig {
    FileTrackerConfig {
        id: TrackerId(9),
        name: "tf".into(),
        path: path.to_owned(),
        init: None,
    }
}

async fn next_value(rx: &mut mpsc::Receiver<TrackerEvent>) -> Option<i64> {
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(TrackerEvent {
            id: TrackerId(9),
            state: TrackState::Value(v),
            ..
        })) => Some(v),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reacts_to_writes_renames_and_deletes() {
    let dir = TempDir::new("tf");
    let path = dir.path().join("value");
    std::fs::write(&path, "5\n").expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let t = FileTracker::spawn(cfg(&path), tx).expect("tracker starts");
    assert_eq!(t.initial, 5);

    std::fs::write(&path, "7\n").expect("write");
    assert_eq!(next_value(&mut rx).await, Some(7));
    // Same value again: no event.
    std::fs::write(&path, "7").expect("write");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    std::fs::write(&path, "-3").expect("write");
    assert_eq!(next_value(&mut rx).await, Some(-3));
    // Atomic replace by rename (IN_MOVED_TO), hex as strtol reads it.
    let tmp = dir.path().join("value.tmp");
    std::fs::write(&tmp, "0x10").expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    assert_eq!(next_value(&mut rx).await, Some(16));
    // An out-of-range number is ignored; the next valid one is reported.
    std::fs::write(&path, "99999999999").expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(&path, "4").expect("write");
    assert_eq!(next_value(&mut rx).await, Some(4));
    // Deleted: value 0.
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(next_value(&mut rx).await, Some(0));
    // Created again.
    std::fs::write(&path, "12").expect("write");
    assert_eq!(next_value(&mut rx).await, Some(12));
    // Other files in the directory are ignored.
    std::fs::write(dir.path().join("other"), "1").expect("write");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
    t.handle.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_is_zero_missing_directory_is_an_error() {
    let dir = TempDir::new("tfmiss");
    let (tx, _rx) = mpsc::channel(16);
    let t = FileTracker::spawn(cfg(&dir.path().join("absent")), tx.clone()).expect("starts");
    assert_eq!(t.initial, 0);
    let err = FileTracker::spawn(cfg(&dir.path().join("nodir/absent")), tx);
    assert!(matches!(err, Err(TrackFileError::NoDirectory(_))));
}

#[test]
fn init_file_creates_and_overwrites() {
    let dir = TempDir::new("tfinit");
    let path = dir.path().join("v");
    file::init_file(
        &path,
        InitFile {
            value: 3,
            overwrite: false,
        },
        false,
    )
    .expect("init");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "3\n");
    // Without overwrite an existing file is left alone.
    file::init_file(
        &path,
        InitFile {
            value: 9,
            overwrite: false,
        },
        false,
    )
    .expect("init");
    assert_eq!(file::read_value(&path), Some(3));
    // With overwrite it is rewritten, except on reload.
    file::init_file(
        &path,
        InitFile {
            value: 9,
            overwrite: true,
        },
        true,
    )
    .expect("init");
    assert_eq!(file::read_value(&path), Some(3));
    file::init_file(
        &path,
        InitFile {
            value: -9,
            overwrite: true,
        },
        false,
    )
    .expect("init");
    assert_eq!(file::read_value(&path), Some(-9));
    // Overwrite refuses something that is not a regular file.
    let sub = dir.path().join("d");
    std::fs::create_dir(&sub).expect("mkdir");
    assert!(matches!(
        file::init_file(
            &sub,
            InitFile {
                value: 1,
                overwrite: true
            },
            false
        ),
        Err(TrackFileError::NotRegular(_))
    ));
}
