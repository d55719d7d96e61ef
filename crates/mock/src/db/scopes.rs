//! The scope of a database call: the one replayed exchange in flight.
//!
//! A database call carries no header naming what it was made for, so the
//! mock is told instead: whoever replays calls [`DbScopes::entered`] as a
//! replayed inbound call starts and [`DbScopes::left`] as it ends. While
//! exactly one is in flight, database calls take its scope; with none or
//! several, no scope (the recorder links such calls `IN_FLIGHT` by the
//! same rule, so a replay at concurrency 1 finds what was recorded).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::scope::MockScope;

/// The replayed exchanges in flight, as the replayer tells them.
#[derive(Debug, Default)]
pub struct DbScopes {
    in_flight: Mutex<HashMap<Vec<u8>, InFlight>>,
}

#[derive(Debug)]
struct InFlight {
    /// Replays of it in flight (a retry overlapping the first try).
    count: u32,
    scope: MockScope,
}

impl DbScopes {
    /// No replayed exchange in flight.
    pub fn new() -> DbScopes {
        DbScopes::default()
    }

    /// A replay of the recorded exchange `recorded_id` started; gives the
    /// scope its database calls share (the same while it is in flight).
    pub fn entered(&self, recorded_id: &[u8]) -> MockScope {
        let mut in_flight = self.lock();
        let entry = in_flight
            .entry(recorded_id.to_vec())
            .or_insert_with(|| InFlight {
                count: 0,
                scope: MockScope::replaying(recorded_id),
            });
        entry.count += 1;
        entry.scope.clone()
    }

    /// A replay of `recorded_id` ended (an unknown id is ignored).
    pub fn left(&self, recorded_id: &[u8]) {
        let mut in_flight = self.lock();
        if let Some(entry) = in_flight.get_mut(recorded_id) {
            entry.count = entry.count.saturating_sub(1);
            if entry.count == 0 {
                in_flight.remove(recorded_id);
            }
        }
    }

    /// The scope of a database call made now: the one replayed exchange
    /// in flight, or none (none or several in flight).
    pub fn current(&self) -> Option<MockScope> {
        let in_flight = self.lock();
        let mut all = in_flight.values();
        match (all.next(), all.next()) {
            (Some(one), None) => Some(one.scope.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_in_flight_gives_the_scope() {
        let scopes = DbScopes::new();
        assert!(scopes.current().is_none(), "nothing in flight");
        let a = scopes.entered(b"a");
        assert_eq!(scopes.current().unwrap().replay_of(), Some(&b"a"[..]));
        a.note_miss("x");
        assert_eq!(scopes.current().unwrap().misses(), 1, "one shared scope");
        scopes.entered(b"b");
        assert!(scopes.current().is_none(), "two in flight: no scope");
        scopes.left(b"a");
        assert_eq!(scopes.current().unwrap().replay_of(), Some(&b"b"[..]));
        // A retry overlapping itself is still one exchange in flight.
        scopes.entered(b"b");
        scopes.left(b"b");
        assert_eq!(scopes.current().unwrap().replay_of(), Some(&b"b"[..]));
        scopes.left(b"b");
        scopes.left(b"unknown");
        assert!(scopes.current().is_none());
    }
}
