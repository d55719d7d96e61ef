//! Misses: why a call was not served, the recorded calls nearest to it,
//! and the report of what was served and missed.

use std::fmt;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use reprise_model::display_id;
use reprise_model::key::{CallKey, KeyField};

use crate::db::CallKind;
use crate::scope::MockScope;
use crate::store::{KEPT_MISSES, MockStore};

/// What has been served so far.
#[derive(Debug, Clone, Default)]
pub struct MockReport {
    /// Calls answered from the recording.
    pub served: u64,
    /// Of those, calls answered by a shared recorded call (none recorded
    /// under the replayed exchange matched): a fallback, counted apart.
    pub shared: u64,
    /// Of those, calls answered from the global pool.
    pub global: u64,
    /// Of those, calls answered from the unlinked pool (recorded calls
    /// with no parent), each use also in the call's [`MockServed`](crate::MockServed).
    pub unlinked: u64,
    /// Calls that matched nothing (or found their responses used up).
    pub missed: u64,
    /// The latest misses (up to 1000), oldest first.
    pub misses: Vec<MockMiss>,
}

/// Why a call was not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// The call was made outside any inbound call served through
    /// `reprise_tower`'s `RecordLayer` (a task not started with
    /// `reprise_tower::spawn`?), or came to `reprise mock` with neither
    /// `x-reprise-replay` nor `traceparent`.
    NoScope,
    /// The inbound call carried no `x-reprise-replay` header: it is not a
    /// replay, so nothing was recorded for it.
    NotReplayed,
    /// The replayed exchange has no recorded downstream calls.
    NothingRecorded,
    /// No recorded call in scope has this key.
    NoMatch {
        /// Recorded calls in scope.
        recorded: usize,
    },
    /// Every recorded call with this key has been served already.
    Exhausted {
        /// How many times it was recorded.
        recorded: usize,
    },
    /// The only recorded calls with this key cannot be answered by a
    /// mock (a database call moving data with COPY, a pub/sub
    /// subscription, a reply cut at the recorder's size cap).
    NotMockable {
        /// Why, as the recorder said.
        why: String,
    },
    /// A gRPC stream answered message by message (its client waits for
    /// answers) left the recorded call it was following: request message
    /// `at` (1-based) differs from the recorded one, is larger than the
    /// body cap, or the stream ended before it or went on past the
    /// recorded end.
    Diverged {
        /// The recorded exchange it was following, hex.
        recorded: String,
        /// The first request message that does not match.
        at: usize,
    },
}

/// A recorded call close to a missed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nearest {
    /// Its exchange id, hex.
    pub id: String,
    /// `METHOD authority/path?query`.
    pub call: String,
    /// Key fields in which it differs from the missed call.
    pub differs: Vec<KeyField>,
    /// The call of the same scope (1-based) it already answered.
    pub used_by: Option<u32>,
    /// Which protocol it is a call of (names the differing fields).
    pub kind: CallKind,
}

/// A downstream call the recording could not answer. It reaches the
/// calling code as a failed call (HTTP 502 with an `x-reprise-mock-miss`
/// header, gRPC UNAVAILABLE) whose response extensions hold this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockMiss {
    /// `METHOD authority/path?query` of the call.
    pub call: String,
    /// The replayed exchange whose recorded calls were searched, hex.
    pub scope: Option<String>,
    /// Why it missed.
    pub reason: MissReason,
    /// Up to three recorded calls in scope, nearest first.
    pub nearest: Vec<Nearest>,
}

impl fmt::Display for MockMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The calls are recorded or received text: shown escaped.
        let escape = reprise_model::terminal::escape;
        write!(f, "reprise mock miss: {}", escape(&self.call))?;
        if let Some(scope) = &self.scope {
            write!(f, " (replaying {scope})")?;
        }
        match &self.reason {
            MissReason::NoScope => write!(
                f,
                ": made outside any inbound call being replayed (in a service: not while serving one through RecordLayer, so start tasks with reprise_tower::spawn to carry the scope; to reprise mock: it carried no valid x-reprise-replay or traceparent)"
            )?,
            MissReason::NotReplayed => write!(
                f,
                ": the inbound call carried no valid x-reprise-replay header (a recorded exchange id in hex), so no recorded calls belong to it"
            )?,
            MissReason::NothingRecorded => {
                write!(f, ": no downstream call was recorded under that exchange")?
            }
            MissReason::NoMatch { recorded } => write!(
                f,
                ": none of the {recorded} recorded calls in scope matches"
            )?,
            MissReason::Exhausted { recorded } => write!(
                f,
                ": recorded {recorded} time(s), and every recorded response has been served"
            )?,
            MissReason::NotMockable { why } => write!(
                f,
                ": it was recorded, but a mock cannot answer it ({})",
                escape(why)
            )?,
            MissReason::Diverged { recorded, at } => write!(
                f,
                ": the stream was answered from recorded call {recorded} as it went, and its request message {at} is not the recorded one (different, missing, larger than the body cap, or past the recorded end)"
            )?,
        }
        for near in &self.nearest {
            let differs: Vec<&str> = near
                .differs
                .iter()
                .map(|d| near.kind.field_name(*d))
                .collect();
            write!(f, "; nearest {} {}", near.id, escape(&near.call))?;
            if differs.is_empty() {
                write!(f, " (same key")?;
            } else {
                write!(f, " (differs in {}", differs.join(", "))?;
            }
            match near.used_by {
                Some(n) => write!(f, ", already used by call {n})")?,
                None => write!(f, ")")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for MockMiss {}

impl MockStore {
    /// Counts and keeps a miss found while a stream was being answered.
    /// With `key`, names the nearest of `candidates` as a miss does.
    pub(crate) fn stream_miss(
        &self,
        call: String,
        scope: Option<&MockScope>,
        reason: MissReason,
        key: Option<&CallKey>,
        candidates: &[usize],
    ) -> MockMiss {
        let nearest = match key {
            None => Vec::new(),
            Some(key) => self.nearest(candidates, key, |i| {
                self.with_usage(scope, |usage| usage.used.get(&(self.id, i)).copied())
            }),
        };
        self.miss(call, scope.and_then(MockScope::replay_of), reason, nearest)
    }

    /// A miss that is not counted, kept or logged: a call the mock then
    /// answers by itself (a Redis `AUTH` with no recording).
    pub(crate) fn uncounted_miss(
        &self,
        call: String,
        scope: Option<&[u8]>,
        reason: MissReason,
        nearest: Vec<Nearest>,
    ) -> MockMiss {
        MockMiss {
            call,
            scope: scope.map(display_id),
            reason,
            nearest,
        }
    }

    pub(crate) fn miss(
        &self,
        call: String,
        scope: Option<&[u8]>,
        reason: MissReason,
        nearest: Vec<Nearest>,
    ) -> MockMiss {
        self.missed.fetch_add(1, Ordering::Relaxed);
        let miss = self.uncounted_miss(call, scope, reason, nearest);
        tracing::warn!("{miss}");
        let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        if misses.len() == KEPT_MISSES {
            misses.pop_front();
        }
        misses.push_back(miss.clone());
        miss
    }
}
