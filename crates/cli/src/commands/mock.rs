//! `reprise mock`: recorded calls served over HTTP/1.1 and h2c until
//! SIGINT or SIGTERM, by `reprise_tower::MockStore`, the matching the
//! tower layers' mock mode uses; then what was served and missed.
//!
//! Each call is scoped by the replayed call it was made for: its
//! `x-reprise-replay` header (a recorded exchange id), else the trace id
//! of its `traceparent` (`reprise replay` gives each replayed call the
//! trace id of the exchange it replays, and a traced service passes it on
//! to the calls it makes), and the replay run its `tracestate` names
//! (which that propagation passes on too). The calls of one scope share
//! what they were served, as they do inside a service under the tower
//! layers; calls that name no run share one scope per replayed exchange
//! for the mock's whole life.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Intact, Source, display_id};
use reprise_proxy::{
    ConnectionGate, ConnectionMetrics, Upstream, UpstreamProtocol, UpstreamVersions,
};
use reprise_tower::{
    Exhausted, MockBody, MockMiss, MockOptions, MockReport, MockServed, MockStore, REPLAY_HEADER,
    Scope,
};

use crate::Outcome;
use crate::args::MockArgs;
use crate::commands::record::{limits, size};

/// Scopes remembered at once; the oldest is forgotten past this (its
/// calls would then be served as if first made).
const SCOPES_KEPT: usize = 65_536;

/// How long calls in flight may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Misses printed at the end (all are counted).
const MISSES_SHOWN: usize = 20;

/// The store's options from the command line.
fn options(args: &MockArgs) -> anyhow::Result<MockOptions> {
    let exhausted: Exhausted = args
        .exhausted
        .parse()
        .map_err(|e| anyhow::anyhow!("--exhausted: {e}"))?;
    let shared = if args.shared.is_empty() {
        None
    } else {
        let mut filter = ExchangeFilter::new();
        for term in &args.shared {
            filter = filter
                .add_match(term)
                .with_context(|| format!("--shared {term:?}"))?;
        }
        Some(filter)
    };
    if let Some(authority) = &args.authority
        && authority.parse::<http::uri::Authority>().is_err()
    {
        bail!("--authority {authority:?}: expected HOST or HOST:PORT, such as inventory:8080");
    }
    Ok(MockOptions {
        exhausted,
        ignore_authority: args.ignore_authority,
        global: args.global,
        shared,
        timing: !args.no_timing,
        max_body: size("--max-body", &args.max_body)?,
        inbound: args.inbound,
        redactor: super::redactor(&args.redact)?,
    })
}

/// Every exchange of the recording; damage is an error, since mocks from
/// a damaged recording would miss calls.
fn read_all(args: &MockArgs) -> anyhow::Result<Vec<reprise_model::Exchange>> {
    let mut source: Box<dyn Source> = crate::input::open(&args.source, &ExchangeFilter::new())?;
    let mut intact = Intact::new(source.as_mut());
    let exchanges = intact
        .by_ref()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: cannot read", args.source.display()))?;
    if let Some(damage) = intact.damage().first() {
        bail!(
            "{}: damaged ({damage}); mocks from a damaged recording would miss calls",
            args.source.display()
        );
    }
    Ok(exchanges)
}

/// Which replayed call a call was made for: the recorded exchange's id
/// and the replay run (empty when the call does not say).
type ScopeKey = (Vec<u8>, String);

/// The scopes seen so far.
#[derive(Default)]
struct Scopes {
    by_key: HashMap<ScopeKey, Scope>,
    order: VecDeque<ScopeKey>,
}

impl Scopes {
    fn get(&mut self, key: &ScopeKey) -> Scope {
        if let Some(scope) = self.by_key.get(key) {
            return scope.clone();
        }
        if self.order.len() == SCOPES_KEPT
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_key.remove(&oldest);
        }
        let scope = Scope::replaying(&key.0);
        self.by_key.insert(key.clone(), scope.clone());
        self.order.push_back(key.clone());
        scope
    }
}

/// The replayed call a call was made for: the recorded exchange its
/// `x-reprise-replay` names, else its `traceparent`'s trace id; and the
/// run its `tracestate` names (`reprise replay` gives each run one), so
/// that two replays of one exchange are two scopes.
fn scope_key(headers: &http::HeaderMap) -> Option<ScopeKey> {
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
    Some((replay_of, run.to_string()))
}

/// What each connection's calls share.
struct Mock {
    store: Arc<MockStore>,
    scopes: Mutex<Scopes>,
    authority: Option<String>,
    log: bool,
    fallthrough: Option<Fallthrough>,
}

/// A real upstream that missed calls go to (`--fallthrough`).
struct Fallthrough {
    upstream: Upstream,
    client: Client<HttpConnector, Full<Bytes>>,
    /// HTTP/2 with prior knowledge, for the calls that go over it
    /// (`--upstream-protocol`).
    h2: Client<HttpConnector, Full<Bytes>>,
    /// Which calls go over HTTP/2; set by [`Fallthrough::versions`].
    versions: Option<UpstreamVersions>,
    protocol: UpstreamProtocol,
    /// Calls it answered.
    answered: AtomicU64,
    /// Calls refused for a body over [`FALLTHROUGH_BODY`].
    refused: AtomicU64,
}

/// How long the `--fallthrough` upstream may take to answer HTTP/2's
/// preface.
const FALLTHROUGH_PROBE: Duration = Duration::from_secs(5);

/// How long the `--fallthrough` upstream may take to answer a call.
const FALLTHROUGH_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body a call may have when misses fall through: it
/// is kept whole, to be sent on.
const FALLTHROUGH_BODY: usize = 16 << 20;

type MockResponse = Response<Either<Either<MockBody, Full<Bytes>>, Incoming>>;

/// The mock's own answer: `status`, a line of text, and `flag` set.
fn own_answer(status: StatusCode, flag: &'static str, text: String) -> MockResponse {
    let mut response = Response::new(Either::Left(Either::Right(Full::new(Bytes::from(text)))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(flag, HeaderValue::from_static("1"));
    response
}

impl Mock {
    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> MockResponse {
        // gRPC calls never fall through: a stream the recording answers as
        // it goes must not wait for its whole request first.
        let fallthrough = match &self.fallthrough {
            Some(fallthrough) if !reprise_net::versions::needs_h2(request.headers()) => fallthrough,
            _ => return self.from_recording(request).await,
        };
        // The body is kept whole, to be sent on if the recording misses.
        let (parts, body) = request.into_parts();
        let body = match http_body_util::Limited::new(body, FALLTHROUGH_BODY)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                let reason = reprise_model::error::one_line(error.as_ref());
                let over = error.is::<http_body_util::LengthLimitError>();
                let (status, text) = if over {
                    fallthrough.refused.fetch_add(1, Ordering::Relaxed);
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
                if self.log {
                    eprint!("reprise: mock: {} {}: {text}", parts.method, parts.uri);
                }
                return own_answer(status, reprise_model::protocol::MOCK_FAILURE_HEADER, text);
            }
        };
        let head = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
            parts.headers.clone(),
        );
        let response = Arc::clone(&self)
            .from_recording(Request::from_parts(parts, Full::new(body.clone())))
            .await;
        let Some(miss) = response.extensions().get::<MockMiss>().cloned() else {
            return response;
        };
        fallthrough.send(head, body, &miss, self.log).await
    }

    /// The answer from the recording (a miss included).
    async fn from_recording<B>(self: Arc<Self>, mut request: Request<B>) -> MockResponse
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<reprise_tower::BoxError>,
    {
        // Inbound calls belong to no replayed call: they are one pool.
        let scope = if self.store.options().inbound {
            None
        } else {
            scope_key(request.headers())
        };
        if let Some(key) = &scope {
            let scope = self
                .scopes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key);
            request.extensions_mut().insert(scope);
        }
        let authority = match &self.authority {
            Some(authority) => authority.clone(),
            None => reprise_tower::authority_of(&request, ""),
        };
        let call = self.log.then(|| {
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let scope = scope.as_ref().map_or_else(
                || "no replayed call".to_string(),
                |(id, _)| format!("replaying {}", display_id(id)),
            );
            let call = format!("{} {authority}{target} ({scope})", request.method());
            reprise_model::terminal::escape(&call).into_owned()
        });
        match Arc::clone(&self.store).answer(authority, request).await {
            Ok(response) => {
                if let Some(call) = call {
                    match response.extensions().get::<MockServed>() {
                        Some(served) => eprintln!(
                            "reprise: mock: {call}: answered by recorded {}",
                            display_id(&served.recorded_id)
                        ),
                        None => eprintln!("reprise: mock: {call}: missed"),
                    }
                }
                response.map(|body| Either::Left(Either::Left(body)))
            }
            Err(error) => {
                // A recorded call that failed below HTTP, or a request
                // body that broke off.
                let reason = reprise_model::error::one_line(error.as_ref());
                if let Some(call) = call {
                    eprintln!("reprise: mock: {call}: {reason}");
                }
                own_answer(
                    StatusCode::BAD_GATEWAY,
                    reprise_model::protocol::MOCK_FAILURE_HEADER,
                    format!("reprise mock: {reason}\n"),
                )
            }
        }
    }
}

impl Fallthrough {
    fn new(url: &str, protocol: UpstreamProtocol) -> anyhow::Result<Fallthrough> {
        let upstream = Upstream::parse(url).context("--fallthrough")?;
        if upstream.scheme != http::uri::Scheme::HTTP {
            bail!("--fallthrough {url:?}: only http:// upstreams for now");
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(FALLTHROUGH_TIMEOUT));
        Ok(Fallthrough {
            upstream,
            client: Client::builder(TokioExecutor::new()).build(connector.clone()),
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector),
            protocol,
            versions: None,
            answered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// What the upstream speaks, as the recording proxy finds it out
    /// (`--upstream-protocol`): with h2, asked now, and an upstream that
    /// does not speak it is an error.
    async fn versions(&mut self) -> anyhow::Result<()> {
        let tls = reprise_net::tls::client_config_for(reprise_net::tls::Trust::Nobody)?;
        let versions =
            UpstreamVersions::new(&self.upstream, self.protocol, &tls, FALLTHROUGH_PROBE)
                .await
                .context("--fallthrough")?;
        self.versions = Some(versions);
        Ok(())
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
        miss: &MockMiss,
        log: bool,
    ) -> MockResponse {
        let target = http::Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build();
        reprise_net::hop::strip_hop_by_hop(&mut headers, false);
        // The upstream's own authority, from the target.
        headers.remove(http::header::HOST);
        // gRPC never falls through.
        let h2 = match &self.versions {
            Some(versions) => versions.over_h2(false, version).await,
            None => false,
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
            Ok(sending) => match tokio::time::timeout(FALLTHROUGH_TIMEOUT, sending).await {
                Ok(answer) => answer.map_err(|e| reprise_model::error::one_line(&e)),
                Err(_) => Err(format!("no answer within {FALLTHROUGH_TIMEOUT:?}")),
            },
            Err(e) => Err(e),
        };
        match answer {
            Ok(response) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                if log {
                    eprintln!(
                        "reprise: mock: {}: fell through to {}",
                        reprise_model::terminal::escape(&miss.call),
                        self.upstream.base
                    );
                }
                let mut response = response.map(Either::Right);
                reprise_net::hop::strip_hop_by_hop(response.headers_mut(), false);
                response.headers_mut().insert(
                    reprise_model::protocol::MOCK_FALLTHROUGH_HEADER,
                    HeaderValue::from_static("1"),
                );
                response
            }
            Err(why) => {
                if log {
                    eprintln!(
                        "reprise: mock: {}: --fallthrough {} failed: {why}",
                        reprise_model::terminal::escape(&miss.call),
                        self.upstream.base
                    );
                }
                own_answer(
                    StatusCode::BAD_GATEWAY,
                    reprise_model::protocol::MOCK_MISS_HEADER,
                    format!(
                        "{miss}; and --fallthrough {} failed: {why}\n",
                        self.upstream.base
                    ),
                )
            }
        }
    }
}

/// Serves until SIGINT or SIGTERM; exit 1 when a call was missed.
pub fn run(args: &MockArgs) -> anyhow::Result<Outcome> {
    let options = options(args)?;
    // The mock serves on one thread.
    let limits = limits(&args.connections, 1)?;
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?}: expected IP:PORT, such as 127.0.0.1:8081",
            args.listen
        )
    })?;
    let fallthrough = args
        .fallthrough
        .as_deref()
        .map(|url| Fallthrough::new(url, args.upstream_protocol.into()))
        .transpose()?;
    let exchanges = read_all(args)?;
    let store = MockStore::new(exchanges, options);
    if store.is_empty() {
        if args.inbound {
            bail!("{}: no inbound calls recorded", args.source.display());
        }
        bail!(
            "{}: no downstream calls recorded; --inbound serves its inbound calls (a recording of the service the mock stands in for)",
            args.source.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let fallthrough = match fallthrough {
        Some(mut fallthrough) => {
            runtime.block_on(fallthrough.versions())?;
            Some(fallthrough)
        }
        None => None,
    };
    let connections = ConnectionMetrics::default();
    let gate = ConnectionGate::new(&format!("mock {listen}"), limits, connections.clone());
    let (report, fell_through) = runtime.block_on(serve(args, listen, gate, store, fallthrough))?;
    print_report(&report);
    print_connections(&connections);
    let mut refused = 0;
    if let (Some(url), Some((answered, too_big))) = (&args.fallthrough, fell_through) {
        eprintln!("reprise: {answered} missed calls fell through to {url}");
        if too_big > 0 {
            eprintln!(
                "reprise: {too_big} calls refused: a body over {FALLTHROUGH_BODY} bytes (--fallthrough reads bodies whole)"
            );
        }
        refused = too_big;
    }
    // A mock judges the calls it got: a miss fails the run. A mock that
    // served nothing passes (min_compared 0): whether the service under
    // test had to call its dependency is that test's question, and the
    // count served is on stderr. A damaged recording never gets here.
    let judgement = reprise_compare::Judgement {
        missed: report.missed + refused,
        compared: report.served,
        min_compared: 0,
        ..Default::default()
    };
    Ok(judgement.finding().into())
}

/// Serves until a signal; gives what was served and missed, and how many
/// misses the `--fallthrough` upstream answered.
async fn serve(
    args: &MockArgs,
    listen: SocketAddr,
    gate: ConnectionGate,
    store: MockStore,
    fallthrough: Option<Fallthrough>,
) -> anyhow::Result<(MockReport, Option<(u64, u64)>)> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("--listen {listen}: cannot listen"))?;
    let calls = store.len();
    let mock = Arc::new(Mock {
        store: Arc::new(store),
        scopes: Mutex::new(Scopes::default()),
        authority: args.authority.clone(),
        log: args.log,
        fallthrough,
    });
    eprintln!(
        "reprise: mocking http://{local} from {} ({calls} recorded {} calls); stop with Ctrl-C",
        args.source.display(),
        if args.inbound {
            "inbound"
        } else {
            "downstream"
        },
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The connection's own clocks time request heads (--header-timeout,
    // --idle-timeout).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    loop {
        tokio::select! {
            accepted = gate.accept(&listener) => {
                let _ = accepted.stream.set_nodelay(true);
                let mock = Arc::clone(&mock);
                let service = service_fn(move |request| {
                    let mock = Arc::clone(&mock);
                    async move { Ok::<_, Infallible>(mock.answer(request).await) }
                });
                tokio::spawn(reprise_proxy::serve_connection(
                    accepted,
                    None,
                    Arc::clone(&builder),
                    service,
                    stopped.clone(),
                ));
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(DRAIN, gate.all_closed()).await;
    let fell_through = mock.fallthrough.as_ref().map(|f| {
        (
            f.answered.load(Ordering::Relaxed),
            f.refused.load(Ordering::Relaxed),
        )
    });
    Ok((mock.store.report(), fell_through))
}

/// What the connection limits did, when they did anything.
fn print_connections(connections: &ConnectionMetrics) {
    let (limited, errors) = (connections.limited.get(), connections.accept_errors.get());
    let (header, idle) = (
        connections.closed_header_timeout.get(),
        connections.closed_idle_timeout.get(),
    );
    if limited + errors + header + idle == 0 {
        return;
    }
    eprintln!(
        "reprise: connections: {} accepted, held back {limited} times at --max-connections, {errors} failed accepts, {header} closed by --header-timeout, {idle} by --idle-timeout",
        connections.accepted.get()
    );
}

fn print_report(report: &MockReport) {
    let mut line = format!("reprise: mock served {} calls", report.served);
    if report.shared > 0 {
        line.push_str(&format!(" ({} by shared recorded calls)", report.shared));
    }
    if report.global > 0 {
        line.push_str(&format!(" ({} from all recorded calls)", report.global));
    }
    line.push_str(&format!(", missed {}", report.missed));
    eprintln!("{line}");
    for miss in report.misses.iter().take(MISSES_SHOWN) {
        eprintln!("reprise: {miss}");
    }
    let more = report.misses.len().saturating_sub(MISSES_SHOWN);
    if more > 0 {
        eprintln!("reprise: ... and {more} more misses");
    }
}
