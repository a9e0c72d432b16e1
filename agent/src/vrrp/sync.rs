//! keepalived's `vrrp_sync_group`: members move together (vrrp_sync.c).
//!
//! - One member goes to FAULT → every other member goes to FAULT (a master
//!   among them sends priority 0 and drops its VIPs). When no member has a
//!   fault of its own any more, they all return to BACKUP.
//! - One member leaves MASTER for BACKUP (it saw a better router) → every
//!   other master follows.
//! - A member whose down timer expires does not promote itself: the group
//!   promotes all members together once every member wants to (or already
//!   is) master, preferring BACKUP to thrashing.
//!
//! Pure, like [`Router`]: the group wraps its members and returns their
//! actions tagged with the member index, plus the group's own notifies.

use thiserror::Error;

use super::router::Router;
use super::types::{Action, Input, Reason, State};

/// An action of one member, or of the group itself.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncAction {
    Member {
        index: usize,
        action: Action,
    },
    /// The group's own notify (`notify_master` etc. of the sync group).
    GroupNotify {
        from: State,
        to: State,
    },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SyncGroupError {
    #[error("sync group {0} has no members")]
    Empty(String),
}

#[derive(Clone, Debug)]
pub struct SyncGroup {
    name: String,
    members: Vec<Router>,
    state: State,
    scratch: Vec<Action>,
}

impl SyncGroup {
    pub fn new(name: impl Into<String>, mut members: Vec<Router>) -> Result<Self, SyncGroupError> {
        let name = name.into();
        if members.is_empty() {
            return Err(SyncGroupError::Empty(name));
        }
        for m in &mut members {
            m.set_sync_member(true);
        }
        Ok(Self {
            name,
            members,
            state: State::Initialize,
            scratch: Vec::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn members(&self) -> &[Router] {
        &self.members
    }

    pub fn member(&self, index: usize) -> Option<&Router> {
        self.members.get(index)
    }

    /// The group's state: Fault if any member is, Master if all are, else
    /// Backup (Initialize before start and after stop).
    pub fn state(&self) -> State {
        self.state
    }

    pub fn handle(&mut self, now_ns: u64, index: usize, input: Input) -> Vec<SyncAction> {
        let mut out = Vec::new();
        self.handle_into(now_ns, index, input, &mut out);
        out
    }

    /// Feeds `input` to member `index` (ignored if there is no such member),
    /// then applies the group rules.
    pub fn handle_into(&mut self, now: u64, index: usize, input: Input, out: &mut Vec<SyncAction>) {
        let Some(member) = self.members.get_mut(index) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        member.handle_into(now, input, &mut scratch);
        let demoted = flush(index, &mut scratch, out);
        self.apply_rules(now, demoted.then_some(index), &mut scratch, out);
        self.scratch = scratch;
    }

    /// Starts every member.
    pub fn startup(&mut self, now: u64, out: &mut Vec<SyncAction>) {
        for i in 0..self.members.len() {
            self.handle_into(now, i, Input::Startup, out);
        }
    }

    fn apply_rules(
        &mut self,
        now: u64,
        demoted: Option<usize>,
        scratch: &mut Vec<Action>,
        out: &mut Vec<SyncAction>,
    ) {
        let any_fault = self.members.iter().any(Router::own_fault);
        for (j, m) in self.members.iter_mut().enumerate() {
            m.set_group_fault(now, any_fault && !m.own_fault(), scratch);
            flush(j, scratch, out);
        }
        if let Some(i) = demoted {
            for (j, m) in self.members.iter_mut().enumerate() {
                if j != i {
                    m.sync_force_backup(now, scratch);
                    flush(j, scratch, out);
                }
            }
        }
        let running = self
            .members
            .iter()
            .all(|m| matches!(m.state(), State::Backup | State::Master));
        let all_want = self
            .members
            .iter()
            .all(|m| m.state() == State::Master || m.wants_master());
        if running && all_want && self.members.iter().any(|m| m.state() != State::Master) {
            for (j, m) in self.members.iter_mut().enumerate() {
                m.sync_force_master(now, scratch);
                flush(j, scratch, out);
            }
        }
        let new_state = self.compute_state();
        if new_state != self.state {
            out.push(SyncAction::GroupNotify {
                from: self.state,
                to: new_state,
            });
            self.state = new_state;
        }
    }

    fn compute_state(&self) -> State {
        let states = || self.members.iter().map(Router::state);
        if states().any(|s| s == State::Fault) {
            State::Fault
        } else if states().all(|s| s == State::Master) {
            State::Master
        } else if states().all(|s| s == State::Initialize) {
            State::Initialize
        } else {
            State::Backup
        }
    }
}

/// Moves a member's actions to `out`, dropping the internal ones; returns
/// whether the member left Master for Backup on its own.
fn flush(index: usize, scratch: &mut Vec<Action>, out: &mut Vec<SyncAction>) -> bool {
    let mut demoted = false;
    for action in scratch.drain(..) {
        match &action {
            Action::SyncWantMaster => continue,
            Action::Transition(t)
                if t.from == State::Master
                    && t.to == State::Backup
                    && t.reason != Reason::SyncGroup =>
            {
                demoted = true;
            }
            _ => {}
        }
        out.push(SyncAction::Member { index, action });
    }
    demoted
}
