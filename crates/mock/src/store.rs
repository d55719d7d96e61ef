//! The store: the recorded calls a mock answers from, grouped by the
//! exchange they were recorded under, and what it has served and missed.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use reprise_model::key::CallKey;
use reprise_model::{Exchange, display_id};

use crate::error::MockError;
use crate::miss::{MockMiss, MockReport};
use crate::nearest::describe;
use crate::options::MockOptions;
use crate::scope::{MockScope, MockUse};

/// A recorded call and its key.
pub(crate) struct RecordedCall {
    pub exchange: Exchange,
    pub key: CallKey,
    /// Why it can never answer a call (a database call the recorder marked
    /// `not_mockable`: COPY, pub/sub, a reply cut at the size cap).
    pub not_mockable: Option<String>,
}

/// Recorded downstream calls, ready to answer from.
pub struct MockStore {
    /// Tells stores apart in a scope's record of what it used.
    pub(crate) id: u64,
    pub(crate) calls: Vec<RecordedCall>,
    pub(crate) by_parent: HashMap<Vec<u8>, Vec<usize>>,
    pub(crate) all: Vec<usize>,
    /// The recorded calls `options.shared` accepts.
    pub(crate) shared: Vec<usize>,
    /// The unlinked pool: downstream calls recorded with no parent (made
    /// outside any inbound call, or whose trace named none or several),
    /// in recorded order.
    pub(crate) unlinked: Vec<usize>,
    pub(crate) options: MockOptions,
    /// What a call made with no scope (and `global`) has used.
    pub(crate) unscoped: Mutex<MockUse>,
    pub(crate) served: AtomicU64,
    pub(crate) served_shared: AtomicU64,
    pub(crate) served_global: AtomicU64,
    pub(crate) served_unlinked: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) misses: Mutex<VecDeque<MockMiss>>,
    /// The PostgreSQL connections' start-ups, in recorded order: never
    /// matched, they give a database's server parameters.
    pub(crate) startups: Vec<Exchange>,
}

impl fmt::Debug for MockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockStore")
            .field("calls", &self.calls.len())
            .field("scopes", &self.by_parent.len())
            .field("options", &self.options)
            .finish()
    }
}

/// Misses kept for the report; older ones are only counted.
pub(crate) const KEPT_MISSES: usize = 1000;

static STORE_IDS: AtomicU64 = AtomicU64::new(1);

impl MockStore {
    /// The downstream calls among `exchanges` (inbound ones are skipped;
    /// with `options.inbound`, the other way round), in recorded order.
    pub fn new(
        exchanges: impl IntoIterator<Item = Exchange>,
        mut options: MockOptions,
    ) -> MockStore {
        options.global |= options.inbound;
        let inbound = options.inbound;
        let mut downstream: Vec<Exchange> = exchanges
            .into_iter()
            .filter(|e| e.is_downstream() != inbound)
            .collect();
        downstream.sort_by_key(|e| e.recorded_at_ns);
        let mut by_parent: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        let mut startups = Vec::new();
        let calls: Vec<RecordedCall> = downstream
            .into_iter()
            .flat_map(|exchange| {
                if exchange.db.is_some() {
                    crate::db::recorded_calls(exchange, &mut startups)
                } else {
                    let key = recorded_key(&exchange, &options);
                    vec![RecordedCall {
                        key,
                        exchange,
                        not_mockable: None,
                    }]
                }
            })
            .collect();
        for (i, call) in calls.iter().enumerate() {
            // A call with no parent belongs to no scope: it is in the
            // unlinked pool.
            if !call.exchange.parent_id.is_empty() {
                by_parent
                    .entry(call.exchange.parent_id.clone())
                    .or_default()
                    .push(i);
            }
        }
        let shared = match &options.shared {
            Some(filter) => (0..calls.len())
                .filter(|&i| filter.matches(&calls[i].exchange))
                .collect(),
            None => Vec::new(),
        };
        // Inbound calls have no parent either: with --inbound they are the
        // global pool, not an unlinked one.
        let unlinked = if inbound {
            Vec::new()
        } else {
            (0..calls.len())
                .filter(|&i| calls[i].exchange.parent_id.is_empty())
                .collect()
        };
        MockStore {
            id: STORE_IDS.fetch_add(1, Ordering::Relaxed),
            all: (0..calls.len()).collect(),
            shared,
            unlinked,
            calls,
            by_parent,
            options,
            unscoped: Mutex::new(MockUse::default()),
            served: AtomicU64::new(0),
            served_shared: AtomicU64::new(0),
            served_global: AtomicU64::new(0),
            served_unlinked: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            misses: Mutex::new(VecDeque::new()),
            startups,
        }
    }

    /// The downstream calls of the tape at `path` (its inbound calls with
    /// `options.inbound`).
    pub fn from_tape(path: impl AsRef<Path>, options: MockOptions) -> Result<MockStore, MockError> {
        let path = path.as_ref();
        let mut reader = reprise_tape::TapeReader::open(path)?;
        let mut exchanges = Vec::new();
        while let Some(exchange) = reader.next_exchange() {
            let exchange = exchange?;
            if exchange.is_downstream() != options.inbound {
                exchanges.push(exchange);
            }
        }
        if let Some(damage) = reader.damage().first() {
            return Err(MockError::Damaged {
                path: path.to_path_buf(),
                damage: format!("{damage:?}"),
            });
        }
        Ok(MockStore::new(exchanges, options))
    }

    /// Recorded downstream calls held.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no downstream call was recorded.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Recorded calls in the unlinked pool: downstream calls recorded with
    /// no parent, served to any call after its own scope's, in recorded
    /// order, each once (then as [`Exhausted`](crate::Exhausted) says).
    pub fn unlinked_len(&self) -> usize {
        self.unlinked.len()
    }

    /// The egress listeners the recorded calls came through (see
    /// [`recorded_listeners`](crate::recorded_listeners)).
    pub fn recorded_listeners(&self) -> Vec<crate::RecordedListener> {
        let mut all: Vec<&Exchange> = self.exchanges().chain(&self.startups).collect();
        all.sort_by_key(|e| e.recorded_at_ns);
        all.dedup_by(|a, b| a.id == b.id);
        crate::recorded_listeners(all)
    }

    /// The recorded calls held, in recorded order.
    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.calls.iter().map(|c| &c.exchange)
    }

    /// Downstream calls recorded under the exchange `scope` replays that
    /// it has not been served (0 when it replays none).
    pub fn unused_in(&self, scope: &MockScope) -> usize {
        let Some(recorded) = scope.replay_of().and_then(|id| self.by_parent.get(id)) else {
            return 0;
        };
        let usage = scope.usage();
        recorded
            .iter()
            .filter(|&&i| !usage.used.contains_key(&(self.id, i)))
            .count()
    }

    /// The first `limit` of those (see [`NAMED`](crate::NAMED)), named `METHOD authority/path?query`,
    /// in recorded order.
    pub fn unused_calls_in(&self, scope: &MockScope, limit: usize) -> Vec<String> {
        let Some(recorded) = scope.replay_of().and_then(|id| self.by_parent.get(id)) else {
            return Vec::new();
        };
        let usage = scope.usage();
        recorded
            .iter()
            .filter(|&&i| !usage.used.contains_key(&(self.id, i)))
            .take(limit)
            .map(|&i| describe(&self.calls[i].key))
            .collect()
    }

    /// The options in force.
    pub fn options(&self) -> &MockOptions {
        &self.options
    }

    /// What has been served and missed so far.
    pub fn report(&self) -> MockReport {
        MockReport {
            served: self.served.load(Ordering::Relaxed),
            shared: self.served_shared.load(Ordering::Relaxed),
            global: self.served_global.load(Ordering::Relaxed),
            unlinked: self.served_unlinked.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
            misses: self
                .misses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        }
    }
}

impl MockStore {
    /// Recorded call `i`: the exchange and its key.
    pub(crate) fn recorded(&self, i: usize) -> (&Exchange, &CallKey) {
        let call = &self.calls[i];
        (&call.exchange, &call.key)
    }

    /// Runs `f` on what `scope` (or, for a call whose scope has no
    /// recorded calls, the store) has used, as choosing a call
    /// counts it.
    pub(crate) fn with_usage<R>(
        &self,
        scope: Option<&MockScope>,
        f: impl FnOnce(&mut MockUse) -> R,
    ) -> R {
        let scoped = scope
            .and_then(MockScope::replay_of)
            .is_some_and(|id| self.by_parent.contains_key(id));
        match scope {
            Some(scope) if scoped => f(&mut scope.usage()),
            _ => f(&mut self.unscoped.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Whether recorded call `i` has answered a call in `scope` already.
    pub(crate) fn is_used(&self, scope: Option<&MockScope>, i: usize) -> bool {
        self.with_usage(scope, |usage| usage.used.contains_key(&(self.id, i)))
    }

    /// Recorded call `i` answers a call in `scope` (a stream answered
    /// message by message commits to it).
    pub(crate) fn take(&self, scope: Option<&MockScope>, i: usize, call: &str) {
        self.with_usage(scope, |usage| {
            usage.calls += 1;
            let number = usage.calls;
            usage.used.entry((self.id, i)).or_insert(number);
        });
        self.served.fetch_add(1, Ordering::Relaxed);
        let scoped = scope
            .and_then(MockScope::replay_of)
            .is_some_and(|id| self.by_parent.contains_key(id));
        if !scoped {
            if self.unlinked.binary_search(&i).is_ok() {
                self.served_unlinked.fetch_add(1, Ordering::Relaxed);
            } else if self.options.global {
                self.served_global.fetch_add(1, Ordering::Relaxed);
            }
        }
        tracing::debug!(
            call = %call,
            recorded = %display_id(&self.calls[i].exchange.id),
            "reprise mock: serving a stream as it goes"
        );
    }
}

/// A recorded call's key, after the redaction rules (a no-op on a call
/// recorded with the same rules).
fn recorded_key(exchange: &Exchange, options: &MockOptions) -> CallKey {
    match exchange
        .request
        .as_ref()
        .and_then(|r| options.redactor.redact_recorded_call(r))
    {
        Some(request) => {
            let redacted = Exchange {
                protocol: exchange.protocol,
                request: Some(request),
                messages: exchange.messages.clone(),
                ..Default::default()
            };
            CallKey::of_exchange(&redacted, options.ignore_authority)
        }
        None => CallKey::of_exchange(exchange, options.ignore_authority),
    }
}
