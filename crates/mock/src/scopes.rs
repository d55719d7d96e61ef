//! The scopes of a mock standing apart from the service (`reprise
//! mock`): each call names the replayed call it was made for in its
//! headers, and the calls of one replayed call share one [`MockScope`].
//!
//! A call's scope is its `x-reprise-replay` header (a recorded exchange
//! id), else the trace id of its `traceparent` (`reprise replay` gives
//! each replayed call the trace id of the exchange it replays, and a
//! traced service passes it on to the calls it makes), and the replay
//! run its `tracestate` names (which that propagation passes on too).
//! Calls that name no run share one scope per replayed exchange for the
//! mock's whole life.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use reprise_model::protocol::REPLAY_HEADER;

use crate::scope::MockScope;

/// Scopes remembered at once; the oldest is forgotten past this (its
/// calls would then be served as if first made).
const SCOPES_KEPT: usize = 65_536;

/// Which replayed call a call was made for: the recorded exchange's id
/// and the replay run (empty when the call does not say).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplayKey {
    /// The recorded exchange replayed.
    pub replay_of: Vec<u8>,
    /// The replay run, from `tracestate`; empty when not named.
    pub run: String,
}

impl ReplayKey {
    /// The replayed call a call with `headers` was made for: the recorded
    /// exchange its `x-reprise-replay` names, else its `traceparent`'s
    /// trace id; and the run its `tracestate` names (`reprise replay`
    /// gives each run one), so that two replays of one exchange are two
    /// scopes.
    pub fn of(headers: &http::HeaderMap) -> Option<ReplayKey> {
        let replay_of = headers
            .get(REPLAY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| reprise_model::id::parse_hex(v.trim()))
            .filter(|id| !id.is_empty())
            .or_else(|| {
                headers
                    .get("traceparent")
                    .and_then(|v| reprise_model::trace::trace_id_of(v.as_bytes()))
                    .map(|trace| trace.to_vec())
            })?;
        let run = headers
            .get_all("tracestate")
            .iter()
            .find_map(|v| reprise_model::trace::run_of(v.as_bytes()))
            .unwrap_or_default();
        Some(ReplayKey {
            replay_of,
            run: run.to_string(),
        })
    }
}

/// The scopes seen so far, by the replayed call they stand for (the
/// latest 65,536).
#[derive(Debug, Default)]
pub struct ReplayScopes {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    by_key: HashMap<ReplayKey, MockScope>,
    order: VecDeque<ReplayKey>,
}

impl ReplayScopes {
    /// No scopes yet.
    pub fn new() -> ReplayScopes {
        ReplayScopes::default()
    }

    /// The scope of the calls made for `key`, the same for each of them.
    pub fn get(&self, key: &ReplayKey) -> MockScope {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(scope) = seen.by_key.get(key) {
            return scope.clone();
        }
        if seen.order.len() == SCOPES_KEPT
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.by_key.remove(&oldest);
        }
        let scope = MockScope::replaying(&key.replay_of);
        seen.by_key.insert(key.clone(), scope.clone());
        seen.order.push_back(key.clone());
        scope
    }

    /// Puts the scope the request's headers name (if any) in its
    /// extensions, where [`MockService`](crate::MockService) looks, and
    /// gives its key.
    pub fn scope<B>(&self, request: &mut http::Request<B>) -> Option<ReplayKey> {
        let key = ReplayKey::of(request.headers())?;
        let scope = self.get(&key);
        request.extensions_mut().insert(scope);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_of_one_replayed_call_share_a_scope_and_runs_are_apart() {
        let headers = |replay: &str, run: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            headers.insert(REPLAY_HEADER, replay.parse().unwrap());
            if let Some(run) = run {
                headers.insert("tracestate", run.parse().unwrap());
            }
            headers
        };
        let scopes = ReplayScopes::new();
        let one = ReplayKey::of(&headers("0a0b", None)).unwrap();
        assert_eq!(one.replay_of, vec![0x0a, 0x0b]);
        let (a, b) = (scopes.get(&one), scopes.get(&one));
        assert_eq!(a.replay_of(), Some(&[0x0a, 0x0b][..]));
        a.note_miss("GET x/y");
        assert_eq!(b.misses(), 1, "one scope for one replayed call");
        let run = ReplayKey::of(&headers("0a0b", Some("reprise=r1"))).unwrap();
        assert_eq!(run.run, "r1");
        assert_eq!(scopes.get(&run).misses(), 0, "another run, another scope");
        assert!(ReplayKey::of(&http::HeaderMap::new()).is_none());
        assert!(ReplayKey::of(&headers("zz", None)).is_none());
    }
}
