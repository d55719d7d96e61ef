//! The inbound call being served: what links a downstream call to its
//! parent.
//!
//! [`RecordLayer`](crate::RecordLayer) makes one [`Scope`] per inbound call
//! and makes it reachable two ways: in the request's extensions (code that
//! builds its downstream requests from the inbound one can copy it), and
//! as a task-local around the call's future and its response body, so any
//! downstream call made while serving it finds it. A task started with
//! `tokio::spawn` does not inherit task-locals: start it with [`spawn`] (or
//! wrap its future in [`Scope::run`]) to carry the scope along.

use std::future::Future;
use std::sync::Arc;

use reprise_mock::MockScope;
use tokio::task::JoinHandle;

tokio::task_local! {
    static CURRENT: Scope;
}

/// One inbound call, as seen by the downstream calls made to serve it.
#[derive(Clone, Debug)]
pub struct Scope(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: [u8; 16],
    trace_id: [u8; 16],
    recorded: bool,
    /// Downstream calls started under it so far: the next one's order.
    calls: std::sync::atomic::AtomicU32,
    /// What the mocks served and missed for it, and what it replays.
    mock: MockScope,
}

/// Calls named on an inbound response (the rest only counted).
pub(crate) use reprise_mock::NAMED;

impl Scope {
    pub(crate) fn new(
        id: [u8; 16],
        trace_id: [u8; 16],
        recorded: bool,
        replay_of: Option<Vec<u8>>,
    ) -> Scope {
        Scope(Arc::new(Inner {
            id,
            trace_id,
            recorded,
            calls: std::sync::atomic::AtomicU32::new(0),
            mock: MockScope::new(replay_of),
        }))
    }

    /// The scope of the inbound call this task is serving, if any.
    pub fn current() -> Option<Scope> {
        CURRENT.try_with(Scope::clone).ok()
    }

    /// The scope a request carries in its extensions, else the current one.
    pub fn of<B>(request: &http::Request<B>) -> Option<Scope> {
        request
            .extensions()
            .get::<Scope>()
            .cloned()
            .or_else(Scope::current)
    }

    /// The inbound exchange's id (the parent id of its downstream calls).
    pub fn id(&self) -> &[u8] {
        &self.0.id
    }

    pub(crate) fn id_bytes(&self) -> [u8; 16] {
        self.0.id
    }

    /// The link of the next downstream call started under this call: an
    /// in-process scope link, and its place among the calls before it.
    pub(crate) fn next_link(&self) -> reprise_model::Link {
        let order = self
            .0
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reprise_model::Link {
            kind: reprise_model::LinkKind::Scope as i32,
            order,
        }
    }

    /// The W3C trace id of the inbound call: the one its `traceparent`
    /// carried, or one derived from its id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.0.trace_id
    }

    /// Whether the inbound call is being recorded (its downstream calls are
    /// recorded with it, and only then).
    pub fn recorded(&self) -> bool {
        self.0.recorded
    }

    /// The recorded exchange this call replays (its `x-reprise-replay`
    /// header), which scopes the mocks it is served.
    pub fn replay_of(&self) -> Option<&[u8]> {
        self.0.mock.replay_of()
    }

    /// Downstream calls made in this scope that the mocks missed.
    pub fn mock_misses(&self) -> u32 {
        self.0.mock.misses()
    }

    /// Downstream calls made in this scope that the mocks missed, named
    /// (`METHOD authority/path?query`; the first 16).
    pub fn mock_missed(&self) -> Vec<String> {
        self.0.mock.missed()
    }

    /// What the mocks keep for this inbound call: the scope a mocked
    /// downstream call is answered in.
    pub(crate) fn mock(&self) -> &MockScope {
        &self.0.mock
    }

    /// Runs `future` with this scope as the current one.
    pub fn run<F: Future>(self, future: F) -> tokio::task::futures::TaskLocalFuture<Scope, F> {
        CURRENT.scope(self, future)
    }

    /// Calls `f` with this scope as the current one.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }
}

/// `tokio::spawn`, carrying the current scope (if any) into the new task,
/// so that its downstream calls are linked to the inbound call being
/// served.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match Scope::current() {
        Some(scope) => tokio::spawn(scope.run(future)),
        None => tokio::spawn(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawn_carries_the_scope() {
        let scope = Scope::new([9; 16], [9; 16], true, None);
        let seen = scope
            .clone()
            .run(async { spawn(async { Scope::current().map(|s| s.id().to_vec()) }).await })
            .await;
        assert_eq!(seen.ok().flatten(), Some(vec![9; 16]));
        let outside = spawn(async { Scope::current().is_none() }).await;
        assert_eq!(outside.ok(), Some(true));
    }
}
