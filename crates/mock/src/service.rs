//! [`MockService`]: a tower `Service` that answers each request from a
//! [`MockStore`], which both `reprise mock` and `reprise_tower`'s
//! `MockLayer` wrap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use reprise_model::key::{CallKey, KeyParts};
use reprise_model::redact::BodyHead;
use tower_service::Service;

use crate::body::MockBody;
use crate::live;
use crate::nearest::describe;
use crate::respond::{miss_response, respond};
use crate::scope::MockScope;
use crate::store::MockStore;

/// The error of a mocked call: a recorded call's
/// [`RecordedFailure`](crate::RecordedFailure), or the request body
/// breaking off.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers each request from a [`MockStore`], in the [`MockScope`] the
/// request carries in its extensions (none: the call belongs to no
/// replayed call), by its call key. A miss is an answer (502, gRPC
/// UNAVAILABLE, with the [`MockMiss`](crate::MockMiss) in its
/// extensions); a recorded call that failed below HTTP is the error.
#[derive(Clone, Debug)]
pub struct MockService {
    store: Arc<MockStore>,
    authority: Authority,
}

/// Which authority a call is taken to be made to.
#[derive(Clone, Debug)]
enum Authority {
    /// The request's (see [`authority_of`]), else this one.
    Default(String),
    /// This one, whatever the request names.
    Fixed(String),
}

impl MockService {
    /// Answers from `store`; a call's authority is its request's (see
    /// [`authority_of`]).
    pub fn new(store: Arc<MockStore>) -> MockService {
        MockService {
            store,
            authority: Authority::Default(String::new()),
        }
    }

    /// The authority of requests whose target names none (a tonic
    /// client's requests carry only a path): the one the recording was
    /// made with.
    pub fn default_authority(mut self, authority: impl Into<String>) -> MockService {
        self.authority = Authority::Default(authority.into());
        self
    }

    /// Every call is taken to be made to `authority`, whatever its
    /// request names (`reprise mock --authority`).
    pub fn authority(mut self, authority: impl Into<String>) -> MockService {
        self.authority = Authority::Fixed(authority.into());
        self
    }

    /// The store it answers from.
    pub fn store(&self) -> &Arc<MockStore> {
        &self.store
    }

    /// The authority a call to the mock is matched with.
    pub fn authority_for<B>(&self, request: &Request<B>) -> String {
        match &self.authority {
            Authority::Default(default) => authority_of(request, default),
            Authority::Fixed(authority) => authority.clone(),
        }
    }
}

/// The future of a mocked call.
pub type MockFuture = Pin<Box<dyn Future<Output = Result<Response<MockBody>, BoxError>> + Send>>;

impl<B> Service<Request<B>> for MockService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<MockBody>;
    type Error = BoxError;
    type Future = MockFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> MockFuture {
        let authority = self.authority_for(&request);
        let store = Arc::clone(&self.store);
        Box::pin(answer(store, authority, request))
    }
}

/// The authority a request addresses, as the mock matches it: its
/// target's (absolute form, or HTTP/2's `:authority`), its Host field's,
/// or `default`.
pub fn authority_of<B>(request: &Request<B>, default: &str) -> String {
    request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| default.to_string())
}

/// Answers one call made to `authority` from the recording. The request
/// body is read (up to `max_body` for the key) before the answer, except
/// for a gRPC stream the recording shows answered as it went, which is
/// answered message by message (see the `live` module).
async fn answer<B>(
    store: Arc<MockStore>,
    authority: String,
    request: Request<B>,
) -> Result<Response<MockBody>, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let scope = request.extensions().get::<MockScope>().cloned();
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // gRPC-Web included: its answers are gRPC's too.
    let grpc =
        content_type.is_some_and(|v| reprise_model::grpc::is_grpc_content_type(v.as_bytes()));
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if grpc {
        // A stream recorded answering before its request stream ended is
        // answered as it goes, not once it has ended.
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
        if let Some((candidates, pool)) = store.live_candidates(scope.as_ref(), &head) {
            let call = describe(&head);
            let stream = live::Stream {
                store: Arc::clone(&store),
                scope,
                head,
                call,
                candidates,
                pool,
            };
            return Ok(live::answer(stream, body));
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
    let (path_and_query, body) = store
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
    let call = describe(&key);
    match store.choose(scope.as_ref(), &key, call) {
        Ok((exchange, pool)) => Ok(respond(exchange, pool, store.options().timing)?),
        Err(miss) => {
            if let Some(scope) = &scope {
                scope.note_miss(&miss.call);
            }
            Ok(miss_response(miss, grpc))
        }
    }
}

/// The body's first `max` bytes, read to its end.
async fn read_capped<B>(body: B, max: usize) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        if let Some(data) = frame.data_ref() {
            let room = max.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
    Ok(kept.freeze())
}
