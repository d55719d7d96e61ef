//! One replayed call, as the mock sees the calls made for it: which
//! recorded calls it has been served, and which of its calls missed.
//!
//! Calls reach the mock with a [`MockScope`] in their request's
//! extensions: the tower layers put the scope of the inbound call being
//! served there, `reprise mock` one per replayed call it is told of
//! (see [`ReplayScopes`](crate::ReplayScopes)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Missed calls named per scope (the rest only counted).
pub const NAMED: usize = 16;

/// What the calls made for one inbound call share: the recorded exchange
/// it replays, and what the mocks served and missed for it. Clones share
/// one state.
#[derive(Clone, Debug)]
pub struct MockScope(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    replay_of: Option<Vec<u8>>,
    usage: Mutex<MockUse>,
    /// Calls of this scope the mocks could not answer.
    misses: AtomicU32,
    /// The first [`NAMED`] missed calls, `METHOD authority/path?query`.
    missed: Mutex<Vec<String>>,
}

/// Which recorded calls a scope has been served, per mock store:
/// consumed in recorded order, each once.
#[derive(Debug, Default)]
pub(crate) struct MockUse {
    /// Calls mocked so far in this scope.
    pub calls: u32,
    /// (store, index of the recorded call) → the call (1-based) it served.
    pub used: HashMap<(u64, usize), u32>,
    /// (store, first recorded call of a key) → times served again under
    /// the `cycle` policy.
    pub cycles: HashMap<(u64, usize), u32>,
}

impl MockScope {
    /// The scope of an inbound call replaying the recorded exchange
    /// `replay_of` (its id, as `x-reprise-replay` names it), or of one
    /// that replays nothing (`None`).
    pub fn new(replay_of: Option<Vec<u8>>) -> MockScope {
        MockScope(Arc::new(Inner {
            replay_of,
            usage: Mutex::new(MockUse::default()),
            misses: AtomicU32::new(0),
            missed: Mutex::new(Vec::new()),
        }))
    }

    /// The scope of calls made while serving a replay of `replay_of`.
    pub fn replaying(replay_of: &[u8]) -> MockScope {
        MockScope::new(Some(replay_of.to_vec()))
    }

    /// The recorded exchange the inbound call replays, which scopes the
    /// mocks it is served.
    pub fn replay_of(&self) -> Option<&[u8]> {
        self.0.replay_of.as_deref()
    }

    /// Calls made in this scope that the mocks missed.
    pub fn misses(&self) -> u32 {
        self.0.misses.load(Ordering::Relaxed)
    }

    /// Calls made in this scope that the mocks missed, named
    /// (`METHOD authority/path?query`; the first [`NAMED`]).
    pub fn missed(&self) -> Vec<String> {
        self.0
            .missed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn note_miss(&self, call: &str) {
        let mut missed = self.0.missed.lock().unwrap_or_else(PoisonError::into_inner);
        if missed.len() < NAMED {
            missed.push(call.to_string());
        }
        drop(missed);
        self.0.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn usage(&self) -> MutexGuard<'_, MockUse> {
        self.0.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
