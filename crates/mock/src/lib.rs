//! Answer calls from a recording: what `reprise mock` serves and what
//! `reprise_tower`'s `MockLayer` answers a service's downstream calls with.
//!
//! # What it does
//!
//! A [`MockStore`] holds the recorded calls (the downstream calls of a
//! tape, or its inbound calls with [`MockOptions::inbound`]). A
//! [`MockService`] answers each request from it: the recorded response,
//! released at its recorded pace, or a miss that says why and names the
//! nearest recorded calls. [`FallthroughLayer`] sends the misses to a real
//! upstream instead.
//!
//! # Scopes
//!
//! A call is looked up among the calls recorded under the exchange its
//! inbound call replays: the [`MockScope`] in its request's extensions.
//! The tower layers put the scope of the inbound call being served there
//! (its `x-reprise-replay` header); `reprise mock` finds it from the
//! call's own headers ([`ReplayScopes`]). Calls of one scope share what
//! they were served. A call with no scope, or whose scope recorded
//! nothing, misses unless [`MockOptions::global`] serves it from all
//! recorded calls.
//!
//! # Matching
//!
//! Calls match by their canonical [`CallKey`](reprise_model::key::CallKey):
//! method, authority (unless [`MockOptions::ignore_authority`]), path,
//! sorted query and normalized body, after the recorder's redaction rules
//! on both sides. Identical calls are served the recorded responses in
//! recorded order, each once per scope; when they run out, the
//! [`Exhausted`] policy decides (a miss, the last again, or all again).
//! Recorded calls that [`MockOptions::shared`] accepts answer any call
//! with their key, in any scope, any number of times, after the scoped
//! ones.
//!
//! # The unlinked pool
//!
//! Downstream calls recorded with no parent (made outside any inbound
//! call, or whose trace context named none or several) are one pool: a
//! call its own scope cannot answer, or made in none, is answered from
//! it after the shared calls, by key, each recorded call once for the
//! whole store, in recorded order. [`MockServed::pool`] says which pool
//! answered; [`MockReport::unlinked`] counts the pool's answers.
//!
//! # Serving
//!
//! [`server::MockServer`] serves a store on listeners the caller binds
//! (`reprise mock`, `reprise test` inside a network namespace): scopes
//! from each call's headers, the fall-through, a log line per call, the
//! recorded egress listeners ([`recorded_listeners`]), and `--out`, the
//! tape of every call answered.
//!
//! # Misses
//!
//! A call that matches nothing is answered 502 (gRPC: UNAVAILABLE) with
//! `x-reprise-mock-miss: 1`, its [`MockMiss`] in the response's
//! extensions, counted and kept in the store's [`MockReport`].
//!
//! # gRPC streams
//!
//! A stream recorded answering before its request stream ended (a chat)
//! is answered as it goes, message by message, following the recorded
//! call whose request messages it sends; others once their request stream
//! has ended.
//!
//! # Using MockService
//!
//! ```no_run
//! use std::sync::Arc;
//! use reprise_mock::{MockOptions, MockScope, MockService, MockStore};
//! use tower_service::Service;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MockStore::from_tape("recorded.tape", MockOptions::default())?;
//! let mut mock = MockService::new(Arc::new(store)).default_authority("inventory:8080");
//! let mut request = http::Request::get("/stock/ink")
//!     .body(http_body_util::Full::new(bytes::Bytes::new()))?;
//! // The recorded exchange the caller's inbound call replays.
//! request.extensions_mut().insert(MockScope::replaying(&[0xab; 16]));
//! let answer = mock.call(request).await?;
//! # let _ = answer;
//! # Ok(()) }
//! ```

mod body;
mod choose;
pub mod db;
mod error;
mod fallthrough;
mod listeners;
mod live;
mod miss;
mod nearest;
mod options;
mod out;
mod respond;
mod scope;
mod scopes;
pub mod server;
mod service;
mod store;

pub use body::MockBody;
pub use db::{
    CallKind, DbConnection, DbProtocol, DbScopes, DbServed, DbStep, DbTls, MISS_SQLSTATE,
};
pub use error::{FallthroughError, MockError, ServerError};
pub use fallthrough::{
    FALLTHROUGH_BODY, Fallthrough, FallthroughBody, FallthroughLayer, FellThrough, is_read,
};
pub use listeners::{RecordedListener, RecordedRoute, recorded_listeners};
pub use miss::{MissReason, MockMiss, MockReport, Nearest};
pub use options::{Exhausted, MockOptions};
pub use out::{OutStore, Tapped};
pub use respond::{MockServed, Pool, RecordedFailure, own_answer};
pub use scope::{MockScope, NAMED};
pub use scopes::{ReplayKey, ReplayScopes};
pub use service::{BoxError, MockFuture, MockService, authority_of};
pub use store::MockStore;
