//! Answering downstream calls from a recording.
//!
//! A call is looked up among the downstream calls recorded under the
//! exchange its inbound call replays (the `x-reprise-replay` header, see
//! [`Scope::replay_of`]), by its canonical [`CallKey`]: method, authority,
//! path, sorted query, normalized body. Identical calls are served the
//! recorded responses in recorded order, each once per inbound call; when
//! they run out, the [`Exhausted`] policy decides. A call that matches
//! nothing is a miss: a 502 (gRPC: UNAVAILABLE) that says why and names
//! the nearest recorded calls, counted and kept in the [`MockReport`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use reprise_model::key::{CallKey, KeyField, KeyParts};
use reprise_model::redact::{BodyHead, Redactor};
use reprise_model::select::ExchangeFilter;
use reprise_model::{Direction, Exchange, Header, HeaderList, Protocol, display_id};
use reprise_record::is_grpc;
use tokio::time::Instant;

use crate::body::MockBody;
use crate::downstream::{BoxError, read_capped};
use crate::error::TowerError;
use crate::scope::{MockUse, Scope};

/// What to do when a call has used up every recorded response of its kind
/// in its scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Exhausted {
    /// A miss (the default): the code under test made a call more often
    /// than the recording did, which is a difference to see.
    #[default]
    Error,
    /// The last recorded response again.
    RepeatLast,
    /// The recorded responses again from the first.
    Cycle,
}

impl std::str::FromStr for Exhausted {
    type Err = TowerError;
    fn from_str(text: &str) -> Result<Self, TowerError> {
        match text {
            "error" => Ok(Exhausted::Error),
            "repeat-last" => Ok(Exhausted::RepeatLast),
            "cycle" => Ok(Exhausted::Cycle),
            other => Err(TowerError::Config(format!(
                "unknown exhausted-mock policy {other:?}: use error, repeat-last or cycle"
            ))),
        }
    }
}

/// How a [`MockStore`] answers.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// When identical calls outnumber the recorded ones.
    pub exhausted: Exhausted,
    /// Leave the authority out of the key (the downstream moved).
    pub ignore_authority: bool,
    /// Serve calls made outside any replayed inbound call (or whose scope
    /// has no recorded calls) from all recorded calls. Off by default:
    /// scoping by causality is what keeps concurrent replays apart.
    pub global: bool,
    /// Recorded downstream calls that answer any call with their key, in
    /// any scope and any number of times (auth tokens, handshakes,
    /// configuration fetches): the ones this filter accepts. Tried after
    /// the calls recorded under the replayed exchange, before `global`.
    pub shared: Option<ExchangeFilter>,
    /// Release streamed response messages at their recorded gaps.
    pub timing: bool,
    /// Bytes of a request body read for its key (the recorder's cap).
    pub max_body: usize,
    /// Answer from the recording's inbound calls instead of its
    /// downstream calls: a recording made in front of the service the
    /// mock stands in for (`reprise record`, a HAR, a GoReplay file).
    /// Those belong to no replayed call, so they are one pool, served as
    /// with `global`.
    pub inbound: bool,
    /// The recorder's redaction rules, applied to each call's target and
    /// body, and to each recorded call's, before they are matched: a
    /// recording whose `access_token` was redacted still matches a call
    /// that sends one (and calls that differ only in a redacted value are
    /// the same call).
    pub redactor: Redactor,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            exhausted: Exhausted::Error,
            ignore_authority: false,
            global: false,
            shared: None,
            timing: true,
            max_body: 1 << 20,
            inbound: false,
            redactor: Redactor::new(),
        }
    }
}

struct RecordedCall {
    exchange: Exchange,
    key: CallKey,
}

/// Recorded downstream calls, ready to answer from.
pub struct MockStore {
    /// Tells stores apart in a scope's record of what it used.
    id: u64,
    calls: Vec<RecordedCall>,
    by_parent: HashMap<Vec<u8>, Vec<usize>>,
    all: Vec<usize>,
    /// The recorded calls `options.shared` accepts.
    shared: Vec<usize>,
    options: MockOptions,
    /// What a call made with no scope (and `global`) has used.
    unscoped: Mutex<MockUse>,
    served: AtomicU64,
    served_shared: AtomicU64,
    served_global: AtomicU64,
    missed: AtomicU64,
    misses: Mutex<VecDeque<MockMiss>>,
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
const KEPT_MISSES: usize = 1000;

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
        let calls: Vec<RecordedCall> = downstream
            .into_iter()
            .enumerate()
            .map(|(i, exchange)| {
                by_parent
                    .entry(exchange.parent_id.clone())
                    .or_default()
                    .push(i);
                RecordedCall {
                    key: recorded_key(&exchange, &options),
                    exchange,
                }
            })
            .collect();
        let shared = match &options.shared {
            Some(filter) => (0..calls.len())
                .filter(|&i| filter.matches(&calls[i].exchange))
                .collect(),
            None => Vec::new(),
        };
        MockStore {
            id: STORE_IDS.fetch_add(1, Ordering::Relaxed),
            all: (0..calls.len()).collect(),
            shared,
            calls,
            by_parent,
            options,
            unscoped: Mutex::new(MockUse::default()),
            served: AtomicU64::new(0),
            served_shared: AtomicU64::new(0),
            served_global: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            misses: Mutex::new(VecDeque::new()),
        }
    }

    /// The downstream calls of the tape at `path` (its inbound calls with
    /// `options.inbound`).
    pub fn from_tape(
        path: impl AsRef<Path>,
        options: MockOptions,
    ) -> Result<MockStore, TowerError> {
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
            return Err(TowerError::Config(format!(
                "{} is damaged ({damage:?}); mocks from a damaged recording would miss calls",
                path.display()
            )));
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

    /// Downstream calls recorded under the exchange `scope` replays that
    /// it has not been served (0 when it replays none).
    pub fn unused_in(&self, scope: &Scope) -> usize {
        let Some(recorded) = scope.replay_of().and_then(|id| self.by_parent.get(id)) else {
            return 0;
        };
        let usage = scope.mocks();
        recorded
            .iter()
            .filter(|&&i| !usage.used.contains_key(&(self.id, i)))
            .count()
    }

    /// The first `limit` of those, named `METHOD authority/path?query`,
    /// in recorded order.
    pub(crate) fn unused_calls_in(&self, scope: &Scope, limit: usize) -> Vec<String> {
        let Some(recorded) = scope.replay_of().and_then(|id| self.by_parent.get(id)) else {
            return Vec::new();
        };
        let usage = scope.mocks();
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

    /// The recorded call that answers `key` in `scope`, or the miss.
    pub(crate) fn choose(
        &self,
        scope: Option<&Scope>,
        key: &CallKey,
        call: String,
    ) -> Result<&Exchange, MockMiss> {
        let replay_of = scope.and_then(Scope::replay_of);
        let scoped = replay_of.and_then(|id| self.by_parent.get(id));
        // No recorded call under the replayed exchange: a shared one, then
        // (when asked) the global pool.
        if scoped.is_none()
            && let Some(exchange) = self.shared_answer(key, &call)
        {
            return Ok(exchange);
        }
        let candidates: &[usize] = match (scoped, self.options.global) {
            (Some(found), _) => found,
            (None, true) => &self.all,
            (None, false) => {
                let reason = match (scope, replay_of) {
                    (None, _) => MissReason::NoScope,
                    (Some(_), None) => MissReason::NotReplayed,
                    (Some(_), Some(_)) => MissReason::NothingRecorded,
                };
                return Err(self.miss(call, replay_of, reason, Vec::new()));
            }
        };
        let global = scoped.is_none();
        let mut unscoped;
        let mut scoped_use;
        let usage: &mut MockUse = match scope {
            Some(scope) if scoped.is_some() => {
                scoped_use = scope.mocks();
                &mut scoped_use
            }
            _ => {
                unscoped = self.unscoped.lock().unwrap_or_else(PoisonError::into_inner);
                &mut unscoped
            }
        };
        usage.calls += 1;
        let call_number = usage.calls;
        let matching: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.calls[i].key == *key)
            .collect();
        let unused = matching
            .iter()
            .copied()
            .find(|&i| !usage.used.contains_key(&(self.id, i)));
        let chosen = match (unused, matching.last(), self.options.exhausted) {
            (Some(i), _, _) => Some(i),
            (None, Some(&last), Exhausted::RepeatLast) => Some(last),
            (None, Some(_), Exhausted::Cycle) => {
                let extra = usage.cycles.entry((self.id, matching[0])).or_insert(0);
                let i = matching[*extra as usize % matching.len()];
                *extra += 1;
                Some(i)
            }
            _ => None,
        };
        if let Some(i) = chosen {
            usage.used.entry((self.id, i)).or_insert(call_number);
            self.served.fetch_add(1, Ordering::Relaxed);
            if global {
                self.served_global.fetch_add(1, Ordering::Relaxed);
            }
            let exchange = &self.calls[i].exchange;
            tracing::debug!(
                call = %call,
                recorded = %display_id(&exchange.id),
                scope = %replay_of.map(display_id).unwrap_or_default(),
                "reprise mock: served"
            );
            return Ok(exchange);
        }
        // The recorded calls under the replayed exchange are used up or
        // do not match: a shared one may answer.
        if !global && let Some(exchange) = self.shared_answer(key, &call) {
            return Ok(exchange);
        }
        let nearest = self.nearest(candidates, key, |i| usage.used.get(&(self.id, i)).copied());
        let reason = if matching.is_empty() {
            MissReason::NoMatch {
                recorded: candidates.len(),
            }
        } else {
            MissReason::Exhausted {
                recorded: matching.len(),
            }
        };
        Err(self.miss(call, replay_of, reason, nearest))
    }

    /// The first shared recorded call with `key`, served (never used up).
    fn shared_answer(&self, key: &CallKey, call: &str) -> Option<&Exchange> {
        let &i = self.shared.iter().find(|&&i| self.calls[i].key == *key)?;
        self.served.fetch_add(1, Ordering::Relaxed);
        self.served_shared.fetch_add(1, Ordering::Relaxed);
        let exchange = &self.calls[i].exchange;
        tracing::debug!(
            call = %call,
            recorded = %display_id(&exchange.id),
            "reprise mock: served by a shared recorded call"
        );
        Some(exchange)
    }

    /// The recorded calls in scope that a gRPC stream with key `head`
    /// (its body aside) may follow message by message, in recorded
    /// order; `None` unless at least one of them is interactive (answered
    /// before its request stream ended) and every one of them answered
    /// with an ordinary head (status 200, not trailers-only), the head
    /// the stream is answered with before any request message arrives.
    pub(crate) fn live_candidates(
        &self,
        scope: Option<&Scope>,
        head: &CallKey,
    ) -> Option<Vec<usize>> {
        let replay_of = scope.and_then(Scope::replay_of);
        let candidates: &[usize] = match (
            replay_of.and_then(|id| self.by_parent.get(id)),
            self.options.global,
        ) {
            (Some(found), _) => found,
            (None, true) => &self.all,
            (None, false) => return None,
        };
        let heads: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let key = &self.calls[i].key;
                key.method == head.method
                    && key.authority == head.authority
                    && key.path == head.path
                    && key.query == head.query
            })
            .collect();
        let plain_head = |exchange: &Exchange| {
            exchange.protocol() == Protocol::Grpc
                && exchange.response.as_ref().is_some_and(|r| {
                    r.status == 200 && r.headers.header_str("grpc-status").is_none()
                })
        };
        let usable = !heads.is_empty()
            && heads.iter().all(|&i| plain_head(&self.calls[i].exchange))
            && heads
                .iter()
                .any(|&i| crate::live::interactive(&self.calls[i].exchange));
        usable.then_some(heads)
    }

    /// Recorded call `i`: the exchange and its key.
    pub(crate) fn recorded(&self, i: usize) -> (&Exchange, &CallKey) {
        let call = &self.calls[i];
        (&call.exchange, &call.key)
    }

    /// Runs `f` on what `scope` (or, for a call whose scope has no
    /// recorded calls, the store) has used, as [`MockStore::choose`]
    /// counts it.
    fn with_usage<R>(&self, scope: Option<&Scope>, f: impl FnOnce(&mut MockUse) -> R) -> R {
        let scoped = scope
            .and_then(Scope::replay_of)
            .is_some_and(|id| self.by_parent.contains_key(id));
        match scope {
            Some(scope) if scoped => f(&mut scope.mocks()),
            _ => f(&mut self.unscoped.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Whether recorded call `i` has answered a call in `scope` already.
    pub(crate) fn is_used(&self, scope: Option<&Scope>, i: usize) -> bool {
        self.with_usage(scope, |usage| usage.used.contains_key(&(self.id, i)))
    }

    /// Recorded call `i` answers a call in `scope` (a stream answered
    /// message by message commits to it).
    pub(crate) fn take(&self, scope: Option<&Scope>, i: usize, call: &str) {
        self.with_usage(scope, |usage| {
            usage.calls += 1;
            let number = usage.calls;
            usage.used.entry((self.id, i)).or_insert(number);
        });
        self.served.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            call = %call,
            recorded = %display_id(&self.calls[i].exchange.id),
            "reprise mock: serving a stream as it goes"
        );
    }

    /// Counts and keeps a miss found while a stream was being answered.
    /// With `key`, names the nearest of `candidates` as a miss does.
    pub(crate) fn stream_miss(
        &self,
        call: String,
        scope: Option<&Scope>,
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
        self.miss(call, scope.and_then(Scope::replay_of), reason, nearest)
    }

    /// The three of `candidates` nearest to `key` (fewest differing
    /// fields), each with the call it was used by.
    fn nearest(
        &self,
        candidates: &[usize],
        key: &CallKey,
        used_by: impl Fn(usize) -> Option<u32>,
    ) -> Vec<Nearest> {
        let mut nearest: Vec<Nearest> = candidates
            .iter()
            .map(|&i| {
                let recorded = &self.calls[i];
                Nearest {
                    id: recorded.exchange.id_hex(),
                    call: describe(&recorded.key),
                    differs: recorded.key.differences(key),
                    used_by: used_by(i),
                }
            })
            .collect();
        nearest.sort_by_key(|n| n.differs.len());
        nearest.truncate(3);
        nearest
    }

    fn miss(
        &self,
        call: String,
        scope: Option<&[u8]>,
        reason: MissReason,
        nearest: Vec<Nearest>,
    ) -> MockMiss {
        self.missed.fetch_add(1, Ordering::Relaxed);
        let miss = MockMiss {
            call,
            scope: scope.map(display_id),
            reason,
            nearest,
        };
        tracing::warn!("{miss}");
        let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        if misses.len() == KEPT_MISSES {
            misses.pop_front();
        }
        misses.push_back(miss.clone());
        miss
    }
}

impl MockStore {
    /// Answers one call made to `authority` from the recording, as a
    /// [`MockLayer`] does: in the scope the request carries in its
    /// extensions (else the current task's; see [`Scope::of`]), by its
    /// [`CallKey`]. A miss is a 502 (gRPC: UNAVAILABLE) that says why;
    /// a recorded call that failed below HTTP is its
    /// [`RecordedFailure`](crate::RecordedFailure), as the error. The
    /// request body is read (up to `max_body` for the key) before the
    /// answer, except for a gRPC stream the recording shows answered as it
    /// went, which is answered message by message.
    pub async fn answer<B>(
        self: Arc<Self>,
        authority: String,
        request: Request<B>,
    ) -> Result<Response<MockBody>, BoxError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let store = self;
        let scope = Scope::of(&request);
        let (parts, body) = request.into_parts();
        let grpc = is_grpc(&parts.headers);
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if grpc {
            // A stream recorded answering before its request stream ended is
            // answered as it goes (see `crate::live`), not once it has ended.
            let head = CallKey::new(
                KeyParts {
                    method: parts.method.as_str(),
                    authority: &authority,
                    path_and_query,
                    content_type,
                    body: &[],
                },
                store.options().ignore_authority,
            );
            if let Some(candidates) = store.live_candidates(scope.as_ref(), &head) {
                let call = crate::mock::describe(&head);
                let stream = crate::live::Stream {
                    store: Arc::clone(&store),
                    scope,
                    head,
                    call,
                    candidates,
                };
                return Ok(crate::live::answer(stream, body));
            }
        }
        let body = read_capped(body, store.options().max_body).await?;
        let head = BodyHead {
            content_type,
            content_encoding: parts
                .headers
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok()),
            truncated: body.len() >= store.options().max_body,
            decoded: false,
            limit: Some(store.options().max_body),
        };
        let (path_and_query, body) =
            store
                .options()
                .redactor
                .redact_call(path_and_query, &body, head);
        let key = CallKey::new(
            KeyParts {
                method: parts.method.as_str(),
                authority: &authority,
                path_and_query: &path_and_query,
                content_type,
                body: &body,
            },
            store.options().ignore_authority,
        );
        let call = crate::mock::describe(&key);
        match store.choose(scope.as_ref(), &key, call) {
            Ok(exchange) => Ok(respond(exchange, store.options().timing)?),
            Err(miss) => {
                if let Some(scope) = &scope {
                    scope.note_miss(&miss.call);
                }
                Ok(miss_response(miss, grpc))
            }
        }
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

/// `METHOD authority/path?query` of a key, for explanations.
pub(crate) fn describe(key: &CallKey) -> String {
    let query: Vec<String> = key.query.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    format!("{} {}{}{}", key.method, key.authority, key.path, query)
}

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
    /// Calls that matched nothing (or found their responses used up).
    pub missed: u64,
    /// The latest misses (up to 1000), oldest first.
    pub misses: Vec<MockMiss>,
}

/// Why a call was not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// The call was made outside any inbound call served through
    /// `RecordLayer` (a task not started with `reprise_tower::spawn`?),
    /// or came to `reprise mock` with neither `x-reprise-replay` nor
    /// `traceparent`.
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
            MissReason::Diverged { recorded, at } => write!(
                f,
                ": the stream was answered from recorded call {recorded} as it went, and its request message {at} is not the recorded one (different, missing, larger than the body cap, or past the recorded end)"
            )?,
        }
        for near in &self.nearest {
            let differs: Vec<&str> = near.differs.iter().map(|d| d.name()).collect();
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

/// Which recorded exchange answered a mocked call: in the response's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockServed {
    /// The recorded exchange's id.
    pub recorded_id: Vec<u8>,
}

/// The recorded downstream call failed below HTTP; the mocked call fails
/// the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recorded failure ({kind}): {message}")]
pub struct RecordedFailure {
    /// `connect`, `timeout`, `reset`, ...
    pub kind: &'static str,
    /// What the recorder noted.
    pub message: String,
}

pub(crate) fn header_map(headers: &[Header], drop_length: bool) -> HeaderMap {
    let mut map = reprise_net::headers::recorded(headers);
    if drop_length {
        map.remove(http::header::CONTENT_LENGTH);
    }
    reprise_net::hop::strip_hop_by_hop(&mut map, false);
    map
}

/// The recorded response of `exchange`, as a response to hand the caller.
pub(crate) fn respond(
    exchange: &Exchange,
    timing: bool,
) -> Result<Response<MockBody>, RecordedFailure> {
    let Some(recorded) = exchange.response.as_ref() else {
        let (kind, message) = exchange
            .error
            .as_ref()
            .map_or(("other", "no response was recorded".to_string()), |e| {
                (reprise_model::error_kind_label(e.kind()), e.message.clone())
            });
        return Err(RecordedFailure { kind, message });
    };
    if recorded.body_truncated {
        tracing::warn!(
            recorded = %exchange.id_hex(),
            "reprise mock: the recorded response body was cut at the size cap; serving what was kept"
        );
    }
    let now = Instant::now();
    let (data, end) = if exchange.protocol() == Protocol::Grpc {
        let messages: Vec<_> = exchange
            .messages
            .iter()
            .filter(|m| m.direction() == Direction::Response)
            .collect();
        let first = messages.first().map_or(0, |m| m.offset_ns);
        let at =
            |offset: u64| timing.then(|| now + Duration::from_nanos(offset.saturating_sub(first)));
        let data: Vec<(Option<Instant>, Bytes)> = messages
            .iter()
            .map(|m| (at(m.offset_ns), Bytes::from(reprise_model::grpc::frame(m))))
            .collect();
        let end = messages.last().and_then(|m| at(m.offset_ns));
        (data, end)
    } else {
        (vec![(None, recorded.body.clone())], None)
    };
    let trailers =
        (!recorded.trailers.is_empty()).then(|| (end, header_map(&recorded.trailers, false)));
    let mut response = Response::new(MockBody::new(data, trailers));
    *response.status_mut() = StatusCode::from_u16(u16::try_from(recorded.status).unwrap_or(0))
        .unwrap_or(StatusCode::BAD_GATEWAY);
    // A body stored decoded (redacted inside its compression, or imported
    // from a HAR) is served as it is stored: identity, its own length.
    let decoded = recorded.body_decoded;
    *response.headers_mut() = header_map(&recorded.headers, recorded.body_truncated || decoded);
    // A length that no longer holds (a redacted body) is hyper's to set.
    reprise_net::hop::drop_stale_length(
        response.headers_mut(),
        recorded.body.len(),
        exchange.protocol() == Protocol::Grpc || !recorded.trailers.is_empty(),
    );
    if decoded {
        response
            .headers_mut()
            .remove(http::header::CONTENT_ENCODING);
    }
    response.extensions_mut().insert(MockServed {
        recorded_id: exchange.id.clone(),
    });
    Ok(response)
}

/// The answer to a missed call: 502 with `x-reprise-mock-miss`, or for
/// gRPC a trailers-only UNAVAILABLE; the miss in its extensions.
pub(crate) fn miss_response(miss: MockMiss, grpc: bool) -> Response<MockBody> {
    let text = miss.to_string();
    let mut response = if grpc {
        let mut response = Response::new(MockBody::new(Vec::new(), None));
        // UNAVAILABLE.
        reprise_net::grpc_error_fields(response.headers_mut(), 14, &text);
        response
    } else {
        let mut response =
            Response::new(MockBody::new(vec![(None, Bytes::from(text + "\n"))], None));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    response.headers_mut().insert(
        reprise_model::protocol::MOCK_MISS_HEADER,
        HeaderValue::from_static("1"),
    );
    response.extensions_mut().insert(miss);
    response
}

#[cfg(test)]
mod tests {
    use reprise_model::key::KeyParts;
    use reprise_model::{Exchange, Request, Response, Role};

    use super::*;

    /// A downstream `GET inventory/PATH` recorded under `parent`,
    /// answered with `answer`.
    fn recorded(parent: u8, path: &str, answer: &str, at: u64) -> Exchange {
        Exchange {
            id: vec![parent, at as u8],
            parent_id: vec![parent; 16],
            role: Role::Downstream as i32,
            recorded_at_ns: at,
            request: Some(Request {
                method: "GET".into(),
                authority: "inventory".into(),
                path: path.into(),
                ..Default::default()
            }),
            response: Some(Response {
                status: 200,
                body: Bytes::from(answer.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn key(path: &str) -> CallKey {
        CallKey::new(
            KeyParts {
                method: "GET",
                authority: "inventory",
                path_and_query: path,
                content_type: None,
                body: &[],
            },
            false,
        )
    }

    fn replaying(parent: u8) -> Scope {
        Scope::new([9; 16], [9; 16], false, Some(vec![parent; 16]))
    }

    fn answer(store: &MockStore, scope: Option<&Scope>, path: &str) -> Result<String, MissReason> {
        store
            .choose(scope, &key(path), path.to_string())
            .map(|e| String::from_utf8_lossy(&e.response.as_ref().unwrap().body).into_owned())
            .map_err(|miss| miss.reason)
    }

    #[test]
    fn shared_calls_answer_in_any_scope_any_number_of_times_after_the_scoped_ones() {
        let tape = vec![
            recorded(1, "/token", "token recorded under 1", 1),
            recorded(1, "/stock", "stock of 1", 2),
            recorded(2, "/stock", "stock of 2", 3),
        ];
        let options = MockOptions {
            shared: Some(ExchangeFilter::new().add_match("path=/token").unwrap()),
            ..MockOptions::default()
        };
        let store = MockStore::new(tape.clone(), options);
        let (one, two) = (replaying(1), replaying(2));
        // Scope 1 recorded its own token call: that one answers first,
        // then, used up, the shared one goes on answering.
        assert_eq!(
            answer(&store, Some(&one), "/token").unwrap(),
            "token recorded under 1"
        );
        assert_eq!(
            answer(&store, Some(&one), "/token").unwrap(),
            "token recorded under 1"
        );
        // Scope 2 never fetched a token when recorded; outside any scope
        // (a token fetched at startup) too.
        assert_eq!(
            answer(&store, Some(&two), "/token").unwrap(),
            "token recorded under 1"
        );
        assert_eq!(
            answer(&store, None, "/token").unwrap(),
            "token recorded under 1"
        );
        // Calls not marked shared stay in their scope.
        assert_eq!(answer(&store, Some(&two), "/stock").unwrap(), "stock of 2");
        assert_eq!(
            answer(&store, Some(&two), "/stock").unwrap_err(),
            MissReason::Exhausted { recorded: 1 }
        );
        assert_eq!(
            answer(&store, None, "/stock").unwrap_err(),
            MissReason::NoScope
        );
        let report = store.report();
        assert_eq!(
            (report.served, report.shared, report.global, report.missed),
            (5, 3, 0, 2)
        );

        // Without the mark, the same calls miss.
        let store = MockStore::new(tape, MockOptions::default());
        assert_eq!(
            answer(&store, None, "/token").unwrap_err(),
            MissReason::NoScope
        );
        assert_eq!(
            answer(&store, Some(&two), "/token").unwrap_err(),
            MissReason::NoMatch { recorded: 1 }
        );
    }

    #[test]
    fn the_global_pool_comes_after_the_shared_calls_and_is_counted() {
        let tape = vec![
            recorded(1, "/token", "token", 1),
            recorded(1, "/stock", "stock of 1", 2),
        ];
        let options = MockOptions {
            shared: Some(ExchangeFilter::new().add_match("path=/token").unwrap()),
            global: true,
            ..MockOptions::default()
        };
        let store = MockStore::new(tape, options);
        assert_eq!(answer(&store, None, "/token").unwrap(), "token");
        assert_eq!(answer(&store, None, "/stock").unwrap(), "stock of 1");
        let report = store.report();
        assert_eq!((report.served, report.shared, report.global), (2, 1, 1));
    }
}
