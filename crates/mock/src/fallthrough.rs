//! Fall-through (`reprise mock --fallthrough`): calls the recording
//! misses go to a real upstream, and its answer is the call's, flagged
//! `x-reprise-mock-fallthrough`. An optional layer around a
//! [`MockService`](crate::MockService).
//!
//! A request body is read whole first (up to 16 MiB; a larger one is
//! refused with a 413), to be sent on if the recording misses. gRPC
//! calls fall through only with [`FallthroughLayer::forward_writes`]
//! (a gRPC call may write anything), over HTTP/2; their request stream
//! is then read whole before it is matched, so a stream the recording
//! answered as it went is not answered as it goes.
//!
//! Writes never reach the upstream unless asked
//! ([`FallthroughLayer::forward_writes`], `--fallthrough-writes`): a
//! missed call whose method is not GET, HEAD or OPTIONS is answered as
//! the miss it is, saying it was not forwarded and why. A replay must
//! never charge a card twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reprise_net::{Upstream, UpstreamProtocol, UpstreamVersions};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::MockBody;
use crate::error::FallthroughError;
use crate::miss::MockMiss;
use crate::respond::own_answer;
use crate::service::BoxError;

/// How long the upstream may take to answer HTTP/2's preface.
const PROBE: Duration = Duration::from_secs(5);

/// How long the upstream may take to answer a call.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body a call may have when misses fall through: it
/// is kept whole, to be sent on.
pub const FALLTHROUGH_BODY: usize = 16 << 20;

/// The body of an answer through a [`Fallthrough`]: the mock's, the
/// layer's own, or the upstream's.
pub type FallthroughBody = Either<MockBody, Either<Full<Bytes>, Incoming>>;

/// What happened to a call at the [`Fallthrough`], in its answer's
/// extensions (with the [`MockMiss`] of a missed call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FellThrough {
    /// The recording missed and the upstream answered.
    Answered,
    /// The recording missed and the upstream could not answer: why.
    Failed(String),
    /// The request body could not be read whole (too large, or it broke
    /// off): the layer's answer says why.
    Refused(String),
    /// The recording missed and the call was not sent on: a write (see
    /// [`FallthroughLayer::forward_writes`]) or a gRPC call. Why.
    Withheld(String),
}

/// Whether a call with `method` is sent on to the upstream without
/// `--fallthrough-writes`: GET, HEAD and OPTIONS (they change nothing).
pub fn is_read(method: &http::Method) -> bool {
    [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS].contains(method)
}

/// Sends the calls the wrapped mock misses to an upstream.
#[derive(Clone, Debug)]
pub struct FallthroughLayer {
    shared: Arc<Shared>,
}

/// A mock whose misses fall through; see [`FallthroughLayer`].
#[derive(Clone, Debug)]
pub struct Fallthrough<S> {
    inner: S,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: Upstream,
    client: Client<HttpConnector, Full<Bytes>>,
    /// HTTP/2 with prior knowledge, for the calls that go over it.
    h2: Client<HttpConnector, Full<Bytes>>,
    /// Which calls go over HTTP/2; set by [`FallthroughLayer::probe`].
    versions: OnceLock<UpstreamVersions>,
    protocol: UpstreamProtocol,
    /// Calls it answered.
    answered: AtomicU64,
    /// Calls refused for a body over [`FALLTHROUGH_BODY`].
    refused: AtomicU64,
    /// Whether writes are sent on too.
    writes: std::sync::atomic::AtomicBool,
    /// Missed writes not sent on.
    withheld: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallthrough")
            .field("upstream", &self.upstream.base)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl FallthroughLayer {
    /// Misses go to `upstream` (http:// only), over the HTTP version
    /// `protocol` says (`--upstream-protocol`).
    pub fn new(
        upstream: Upstream,
        protocol: UpstreamProtocol,
    ) -> Result<FallthroughLayer, FallthroughError> {
        if upstream.scheme != http::uri::Scheme::HTTP {
            return Err(FallthroughError::NotHttp);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(TIMEOUT));
        Ok(FallthroughLayer {
            shared: Arc::new(Shared {
                upstream,
                client: Client::builder(TokioExecutor::new()).build(connector.clone()),
                h2: Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build(connector),
                protocol,
                versions: OnceLock::new(),
                answered: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                writes: std::sync::atomic::AtomicBool::new(false),
                withheld: AtomicU64::new(0),
            }),
        })
    }

    /// Finds out what the upstream speaks, as the recording proxy does:
    /// with h2, asked now, and an upstream that does not speak it is an
    /// error. Until it is called, every call goes over HTTP/1.1.
    pub async fn probe(self) -> Result<FallthroughLayer, FallthroughError> {
        let tls = reprise_net::tls::client_config_for(reprise_net::tls::Trust::Nobody)?;
        let versions =
            UpstreamVersions::new(&self.shared.upstream, self.shared.protocol, &tls, PROBE).await?;
        // Asked once: a second answer changes nothing.
        let _ = self.shared.versions.set(versions);
        Ok(self)
    }

    /// The upstream's URL.
    pub fn upstream(&self) -> &http::Uri {
        &self.shared.upstream.base
    }

    /// Missed calls the upstream answered so far.
    pub fn answered(&self) -> u64 {
        self.shared.answered.load(Ordering::Relaxed)
    }

    /// Calls refused so far for a body over [`FALLTHROUGH_BODY`].
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Send missed writes (POST, PUT, PATCH, DELETE: any method but GET,
    /// HEAD and OPTIONS) and gRPC calls on too (`--fallthrough-writes`);
    /// by default they are answered as misses, never performed.
    pub fn forward_writes(self, forward: bool) -> FallthroughLayer {
        self.shared.writes.store(forward, Ordering::Relaxed);
        self
    }

    /// Missed writes (gRPC calls among them) answered as misses so far,
    /// not sent on.
    pub fn withheld(&self) -> u64 {
        self.shared.withheld.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for FallthroughLayer {
    type Service = Fallthrough<S>;

    fn layer(&self, inner: S) -> Fallthrough<S> {
        Fallthrough {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

type FallthroughFuture =
    Pin<Box<dyn Future<Output = Result<Response<FallthroughBody>, BoxError>> + Send>>;

impl<S, B> Service<Request<B>> for Fallthrough<S>
where
    S: Service<Request<B>, Response = Response<MockBody>, Error = BoxError>
        + Service<Request<Full<Bytes>>, Response = Response<MockBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    <S as Service<Request<B>>>::Future: Send,
    <S as Service<Request<Full<Bytes>>>>::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<FallthroughBody>;
    type Error = BoxError;
    type Future = FallthroughFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request<B>) -> FallthroughFuture {
        let grpc = reprise_net::versions::needs_h2(request.headers());
        if grpc && !self.shared.writes.load(Ordering::Relaxed) {
            let answer = Service::<Request<B>>::call(&mut self.inner, request);
            let shared = Arc::clone(&self.shared);
            return Box::pin(async move {
                let mut answer = answer.await?.map(Either::Left);
                if answer.extensions().get::<MockMiss>().is_some() {
                    // A missed write, withheld: counted with the others.
                    shared.withheld.fetch_add(1, Ordering::Relaxed);
                    answer.extensions_mut().insert(FellThrough::Withheld(
                        "not sent to --fallthrough: gRPC calls fall through only with --fallthrough-writes".into(),
                    ));
                }
                Ok(answer)
            });
        }
        // The mock answers this call: the clone waits for the next one.
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match http_body_util::Limited::new(body, FALLTHROUGH_BODY)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(error) => return Ok(shared.refuse(error.as_ref())),
            };
            let head = (
                parts.method.clone(),
                parts.uri.clone(),
                parts.version,
                parts.headers.clone(),
            );
            let request = Request::from_parts(parts, Full::new(body.clone()));
            let response = Service::<Request<Full<Bytes>>>::call(&mut inner, request).await?;
            let Some(miss) = response.extensions().get::<MockMiss>().cloned() else {
                return Ok(response.map(Either::Left));
            };
            if !is_read(&head.0) && !shared.writes.load(Ordering::Relaxed) {
                return Ok(shared.withhold(&head.0, miss));
            }
            Ok(shared.send(head, body, miss, grpc).await)
        })
    }
}

impl Shared {
    /// The answer to a request whose body could not be read whole.
    fn refuse(
        &self,
        error: &(dyn std::error::Error + Send + Sync + 'static),
    ) -> Response<FallthroughBody> {
        let reason = reprise_model::error::one_line(error);
        let (status, text) = if error.is::<http_body_util::LengthLimitError>() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "reprise mock: with --fallthrough a request body is read whole, and this one is over {FALLTHROUGH_BODY} bytes\n"
                ),
            )
        } else {
            (
                StatusCode::BAD_GATEWAY,
                format!("reprise mock: the request body broke off: {reason}\n"),
            )
        };
        let mut response = own_answer(
            status,
            reprise_model::protocol::MOCK_FAILURE_HEADER,
            text.clone(),
        )
        .map(|body| Either::Right(Either::Left(body)));
        response.extensions_mut().insert(FellThrough::Refused(text));
        response
    }

    /// The answer to a missed write that is not sent on: the miss, and
    /// why it was not forwarded.
    fn withhold(&self, method: &http::Method, miss: MockMiss) -> Response<FallthroughBody> {
        self.withheld.fetch_add(1, Ordering::Relaxed);
        let why = format!(
            "not forwarded to --fallthrough {}: {method} is a write, and writes fall through only with --fallthrough-writes",
            self.upstream.base
        );
        let mut response = own_answer(
            StatusCode::BAD_GATEWAY,
            reprise_model::protocol::MOCK_MISS_HEADER,
            format!("{miss}; {why}\n"),
        )
        .map(|body| Either::Right(Either::Left(body)));
        response.extensions_mut().insert(FellThrough::Withheld(why));
        response.extensions_mut().insert(miss);
        response
    }

    /// Sends the missed call to the upstream and answers with what it
    /// says, flagged `x-reprise-mock-fallthrough`; the miss's 502 if it
    /// cannot. HTTP/1.1 unless h2 was asked for, or the caller spoke
    /// HTTP/2 to an upstream that speaks it (`--upstream-protocol`).
    async fn send(
        &self,
        (method, uri, version, mut headers): (
            http::Method,
            http::Uri,
            http::Version,
            http::HeaderMap,
        ),
        body: Bytes,
        miss: MockMiss,
        grpc: bool,
    ) -> Response<FallthroughBody> {
        let target = http::Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build();
        reprise_net::hop::strip_hop_by_hop(&mut headers, false);
        // The upstream's own authority, from the target.
        headers.remove(http::header::HOST);
        // gRPC proper (with --fallthrough-writes) over HTTP/2 whatever the
        // upstream's probe said.
        let h2 = match self.versions.get() {
            Some(versions) => grpc || versions.over_h2(false, version).await,
            None => grpc,
        };
        if !h2 {
            reprise_net::versions::join_cookies(&mut headers);
        }
        let sent = target.map_err(|e| e.to_string()).map(|target| {
            let mut request = Request::new(Full::new(body));
            *request.method_mut() = method;
            *request.uri_mut() = target;
            *request.headers_mut() = headers;
            if h2 {
                *request.version_mut() = http::Version::HTTP_2;
                self.h2.request(request)
            } else {
                self.client.request(request)
            }
        });
        let answer = match sent {
            Ok(sending) => match tokio::time::timeout(TIMEOUT, sending).await {
                Ok(answer) => answer.map_err(|e| reprise_model::error::one_line(&e)),
                Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
            },
            Err(e) => Err(e),
        };
        let (mut response, outcome) = match answer {
            Ok(response) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                let mut response = response.map(|body| Either::Right(Either::Right(body)));
                reprise_net::hop::strip_hop_by_hop(response.headers_mut(), false);
                response.headers_mut().insert(
                    reprise_model::protocol::MOCK_FALLTHROUGH_HEADER,
                    HeaderValue::from_static("1"),
                );
                (response, FellThrough::Answered)
            }
            Err(why) => {
                let response = own_answer(
                    StatusCode::BAD_GATEWAY,
                    reprise_model::protocol::MOCK_MISS_HEADER,
                    format!(
                        "{miss}; and --fallthrough {} failed: {why}\n",
                        self.upstream.base
                    ),
                )
                .map(|body| Either::Right(Either::Left(body)));
                (response, FellThrough::Failed(why))
            }
        };
        response.extensions_mut().insert(outcome);
        response.extensions_mut().insert(miss);
        response
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use reprise_model::{Exchange, Role};

    use super::*;
    use crate::{MockOptions, MockService, MockStore};

    /// An upstream on 127.0.0.1 that answers every call `upstream PATH`.
    async fn upstream() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let text = format!("upstream {}", request.uri().path());
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service),
                );
            }
        });
        Upstream::parse(&format!("http://{addr}")).unwrap()
    }

    #[tokio::test]
    async fn misses_fall_through_and_recorded_calls_do_not() {
        let recorded = Exchange {
            id: vec![1; 16],
            role: Role::Inbound as i32,
            request: Some(reprise_model::Request {
                method: "GET".into(),
                authority: "shop".into(),
                path: "/recorded".into(),
                ..Default::default()
            }),
            response: Some(reprise_model::Response {
                status: 200,
                body: Bytes::from_static(b"from the recording"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = MockOptions {
            inbound: true,
            ..MockOptions::default()
        };
        let store = Arc::new(MockStore::new(vec![recorded], options));
        let layer = FallthroughLayer::new(upstream().await, UpstreamProtocol::Auto)
            .unwrap()
            .probe()
            .await
            .unwrap();
        let mut mock = layer.layer(MockService::new(store).authority("shop"));
        let get = |path: &str| Request::get(path).body(Full::new(Bytes::new())).unwrap();

        let answer = mock.call(get("/recorded")).await.unwrap();
        assert!(answer.extensions().get::<FellThrough>().is_none());
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "from the recording");

        let answer = mock.call(get("/new")).await.unwrap();
        assert_eq!(
            answer.extensions().get::<FellThrough>(),
            Some(&FellThrough::Answered)
        );
        assert_eq!(
            answer.extensions().get::<MockMiss>().unwrap().call,
            "GET shop/new"
        );
        assert_eq!(
            answer.headers()[reprise_model::protocol::MOCK_FALLTHROUGH_HEADER],
            "1"
        );
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "upstream /new");
        assert_eq!((layer.answered(), layer.refused()), (1, 0));
    }

    #[tokio::test]
    async fn writes_fall_through_only_when_asked() {
        let options = MockOptions {
            inbound: true,
            ..MockOptions::default()
        };
        let store = Arc::new(MockStore::new(Vec::new(), options));
        let layer = FallthroughLayer::new(upstream().await, UpstreamProtocol::Auto)
            .unwrap()
            .probe()
            .await
            .unwrap();
        let mut mock = layer.layer(MockService::new(store).authority("shop"));
        let call = |method: http::Method| {
            Request::builder()
                .method(method)
                .uri("/charge")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        };
        for method in [
            http::Method::POST,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
        ] {
            let answer = mock.call(call(method.clone())).await.unwrap();
            assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
            assert!(matches!(
                answer.extensions().get::<FellThrough>(),
                Some(FellThrough::Withheld(_))
            ));
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(
                body.contains(&format!("{method} is a write"))
                    && body.contains("--fallthrough-writes"),
                "{body}"
            );
        }
        let answer = mock.call(call(http::Method::GET)).await.unwrap();
        assert_eq!(
            answer.extensions().get::<FellThrough>(),
            Some(&FellThrough::Answered)
        );
        assert_eq!((layer.answered(), layer.withheld()), (1, 4));

        let layer = layer.forward_writes(true);
        let answer = mock.call(call(http::Method::POST)).await.unwrap();
        assert_eq!(
            answer.extensions().get::<FellThrough>(),
            Some(&FellThrough::Answered)
        );
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "upstream /charge");
        assert_eq!((layer.answered(), layer.withheld()), (2, 4));
    }

    #[test]
    fn only_cleartext_upstreams() {
        let https = Upstream::parse("https://127.0.0.1:1").unwrap();
        assert!(matches!(
            FallthroughLayer::new(https, UpstreamProtocol::Auto),
            Err(FallthroughError::NotHttp)
        ));
    }
}
