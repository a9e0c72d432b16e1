//! Rules 74–78: sync groups.

use super::*;

fn group(prios: &[u8]) -> SyncGroup {
    let members = prios
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut c = cfg(Version::V3, *p);
            c.name = format!("m{i}");
            c.vrid = 10 + i as u8;
            c.trackers = vec![tracker(1, TrackerKind::Binary, 0, false, TrackState::Up)];
            router(c)
        })
        .collect();
    SyncGroup::new("g", members).expect("members")
}

fn member_actions(out: &[SyncAction], index: usize) -> Vec<Action> {
    out.iter()
        .filter_map(|a| match a {
            SyncAction::Member { index: i, action } if *i == index => Some(action.clone()),
            _ => None,
        })
        .collect()
}

/// Starts the group and lets every member's down timer run out.
fn group_master(prios: &[u8]) -> (SyncGroup, u64) {
    let mut g = group(prios);
    let mut out = Vec::new();
    g.startup(0, &mut out);
    let mut t = 0;
    for i in 0..prios.len() {
        let d = g
            .member(i)
            .and_then(|m| m.deadline(TimerKind::MasterDown))
            .expect("armed");
        t = t.max(d);
        g.handle_into(d, i, Input::TimerFired(TimerKind::MasterDown), &mut out);
    }
    assert_eq!(g.state(), State::Master);
    (g, t)
}

#[test]
fn keepalived_sync_group_master_only_when_all_can() {
    let mut g = group(&[100, 100]);
    let mut out = Vec::new();
    g.startup(0, &mut out);
    let d0 = g
        .member(0)
        .and_then(|m| m.deadline(TimerKind::MasterDown))
        .expect("armed");
    // Member 0 times out; member 1 still hears a master: both stay Backup.
    let peer = advert_for(g.member(1).expect("m1"), 200);
    g.handle(
        d0 - 1,
        1,
        Input::Advert(ReceivedAdvert {
            meta: meta(d0 - 1, "192.0.2.20"),
            advert: peer,
        }),
    );
    let out = g.handle(d0, 0, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(g.member(0).map(Router::state), Some(State::Backup));
    assert!(g.member(0).is_some_and(Router::wants_master));
    assert!(!out.iter().any(|a| matches!(
        a,
        SyncAction::Member {
            action: Action::SyncWantMaster,
            ..
        }
    )));
    // Member 1 times out too: both become master together.
    let d1 = g
        .member(1)
        .and_then(|m| m.deadline(TimerKind::MasterDown))
        .expect("armed");
    let out = g.handle(d1, 1, Input::TimerFired(TimerKind::MasterDown));
    assert_eq!(g.state(), State::Master);
    assert!(member_actions(&out, 0).contains(&Action::AddVips));
    assert!(member_actions(&out, 1).contains(&Action::AddVips));
}

#[test]
fn keepalived_sync_group_fault_propagates() {
    let (mut g, t) = group_master(&[100, 100, 100]);
    let out = g.handle(
        t + 1,
        1,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(g.state(), State::Fault);
    for i in 0..3 {
        assert_eq!(g.member(i).map(Router::state), Some(State::Fault));
        let a = member_actions(&out, i);
        assert_eq!(adverts_sent(&a), vec![0]);
        assert!(a.contains(&Action::RemoveVips));
    }
}

#[test]
fn keepalived_sync_group_recovers_together() {
    let (mut g, t) = group_master(&[100, 100]);
    g.handle(
        t + 1,
        0,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(g.member(1).map(Router::state), Some(State::Fault));
    g.handle(
        t + 2,
        0,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Up,
        },
    );
    assert_eq!(g.state(), State::Backup);
    for i in 0..2 {
        assert_eq!(g.member(i).map(Router::state), Some(State::Backup));
        assert!(
            g.member(i)
                .and_then(|m| m.deadline(TimerKind::MasterDown))
                .is_some()
        );
    }
}

#[test]
fn keepalived_sync_group_backup_propagates() {
    let (mut g, t) = group_master(&[100, 100]);
    let better = advert_for(g.member(0).expect("m0"), 200);
    let out = g.handle(
        t + 1,
        0,
        Input::Advert(ReceivedAdvert {
            meta: meta(t + 1, "192.0.2.20"),
            advert: better,
        }),
    );
    assert_eq!(g.member(0).map(Router::state), Some(State::Backup));
    assert_eq!(g.member(1).map(Router::state), Some(State::Backup));
    assert!(member_actions(&out, 1).contains(&Action::RemoveVips));
    assert_eq!(g.state(), State::Backup);
}

#[test]
fn keepalived_sync_group_notifies() {
    let mut g = group(&[100, 100]);
    let mut out = Vec::new();
    g.startup(0, &mut out);
    assert!(out.contains(&SyncAction::GroupNotify {
        from: State::Initialize,
        to: State::Backup
    }));
    let (mut g, t) = group_master(&[100, 100]);
    let out = g.handle(
        t + 1,
        0,
        Input::Track {
            id: TrackerId(1),
            state: TrackState::Down,
        },
    );
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, SyncAction::GroupNotify { .. }))
            .count(),
        1
    );
    assert!(out.contains(&SyncAction::GroupNotify {
        from: State::Master,
        to: State::Fault
    }));
}
