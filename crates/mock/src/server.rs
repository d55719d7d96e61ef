//! A mock server: a [`MockStore`] served over HTTP/1.1 and h2c (gRPC
//! included) on listeners bound by the caller (`reprise mock` binds its
//! `--listen` address and the recorded egress listeners, `reprise test`
//! binds them inside a network namespace).
//!
//! Each call is scoped by the replayed call its headers name
//! ([`ReplayScopes`]; none with [`MockOptions::inbound`](crate::MockOptions::inbound)),
//! answered by a [`MockService`] (behind the [`FallthroughLayer`] when
//! one is given), and, with [`ServerOptions::out`], written to a tape as
//! the downstream call it was. How connections are accepted and served
//! is the caller's choice ([`Connections`]); [`PlainConnections`] serves
//! each with hyper and closes them gracefully at the stop.
//!
//! ```no_run
//! use std::sync::Arc;
//! use reprise_mock::server::{MockListener, MockServer, PlainConnections, ServerOptions};
//! use reprise_mock::{MockOptions, MockStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MockStore::from_tape("recorded.tape", MockOptions::default())?;
//! let server = MockServer::new(Arc::new(store), ServerOptions::default())?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let handle = server
//!     .serve(vec![MockListener::new(listener)], Arc::new(PlainConnections::default()))
//!     .await?;
//! // ... the service under test calls it ...
//! let stats = handle.stop().await?;
//! println!("served {}, missed {}", stats.report.served, stats.report.missed);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use reprise_model::terminal::escape;
use reprise_model::{Direction, Exchange, Role, display_id};
use tokio::sync::{Notify, watch};
use tower_layer::Layer;
use tower_service::Service;

use crate::db::{DbConnections, DbListener, DbProtocol, DbScopes, DbTls};
use crate::error::ServerError;
use crate::fallthrough::{FallthroughBody, FallthroughLayer, FellThrough};
use crate::listeners::{RecordedListener, RecordedRoute};
use crate::miss::{MockMiss, MockReport};
use crate::out::{CallHead, Capture, OutSender, OutStore, OutTape, Tapped};
use crate::respond::{MockServed, Pool, own_answer};
use crate::scopes::{ReplayKey, ReplayScopes};
use crate::service::{BoxError, MockService};
use crate::store::MockStore;

/// Where `log` lines go: one line per call (no newline), what answered
/// it or why it missed.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// How a [`MockServer`] serves, beyond its store's [`MockOptions`](crate::MockOptions).
#[derive(Clone)]
pub struct ServerOptions {
    /// Every call on a listener that is not a recorded route is taken to
    /// be made to this authority (`--authority`); by default its own.
    pub authority: Option<String>,
    /// Misses go to this upstream (already probed).
    pub fallthrough: Option<FallthroughLayer>,
    /// A line per call (`--log`).
    pub log: Option<LogSink>,
    /// A line per database connection closed for what it sent (garbage,
    /// a protocol the mock does not speak), with or without `log`.
    pub warn: Option<LogSink>,
    /// Write every call answered there (`--out`).
    pub out: Option<OutStore>,
    /// How long calls in flight may take to finish at the stop.
    pub drain: Duration,
    /// The TLS a PostgreSQL listener answers an SSLRequest with; without
    /// it, `N` (no TLS).
    pub db_tls: Option<DbTls>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            authority: None,
            fallthrough: None,
            log: None,
            warn: None,
            out: None,
            drain: Duration::from_secs(5),
            db_tls: None,
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("authority", &self.authority)
            .field("fallthrough", &self.fallthrough)
            .field("log", &self.log.is_some())
            .field("warn", &self.warn.is_some())
            .field("out", &self.out)
            .field("drain", &self.drain)
            .field("db_tls", &self.db_tls.is_some())
            .finish()
    }
}

/// A listener bound by the caller, and what it stands for.
#[derive(Debug)]
pub struct MockListener {
    /// The socket.
    pub listener: std::net::TcpListener,
    /// The recorded egress listener it stands in for (a route's calls
    /// are matched with the route's recorded authority), if any.
    pub recorded: Option<RecordedListener>,
}

impl MockListener {
    /// A listener whose calls name their own authority.
    pub fn new(listener: std::net::TcpListener) -> MockListener {
        MockListener {
            listener,
            recorded: None,
        }
    }

    /// A listener standing in for the recorded egress listener
    /// `recorded`.
    pub fn recorded(listener: std::net::TcpListener, recorded: RecordedListener) -> MockListener {
        MockListener {
            listener,
            recorded: Some(recorded),
        }
    }
}

/// Where a server listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The bound address.
    pub addr: SocketAddr,
    /// The recorded egress listener it stands in for, if any.
    pub recorded: Option<RecordedListener>,
}

impl std::fmt::Display for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let route = self.recorded.as_ref().and_then(|r| r.route.as_ref());
        if let Some(route) = route.filter(|r| DbProtocol::of_scheme(&r.scheme).is_some()) {
            return write!(
                f,
                "{}://{} (database {}, recorded at {})",
                route.scheme, self.addr, route.name, route.authority
            );
        }
        write!(f, "http://{}", self.addr)?;
        match self.recorded.as_ref().and_then(|r| r.route.as_ref()) {
            Some(route) => write!(
                f,
                " (route {} to {}://{})",
                route.name, route.scheme, route.authority
            ),
            None if self.recorded.is_some() => write!(f, " (egress proxy)"),
            None => Ok(()),
        }
    }
}

/// The calls made for one replayed call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeStats {
    /// The recorded exchange replayed.
    pub replay_of: Vec<u8>,
    /// The replay run, when the calls named one.
    pub run: String,
    /// Calls made.
    pub calls: u64,
    /// Of those, answered from the recording.
    pub served: u64,
    /// Of those, answered from the unlinked pool.
    pub unlinked: u64,
    /// Of those, missed.
    pub missed: u64,
}

/// What a server has done.
#[derive(Debug, Clone, Default)]
pub struct MockStats {
    /// The store's report: served, missed, by which pool, the misses.
    pub report: MockReport,
    /// Missed calls the `fallthrough` upstream answered.
    pub fell_through: u64,
    /// Calls refused for a body too large to fall through.
    pub refused: u64,
    /// Missed writes not sent to the `fallthrough` upstream.
    pub withheld: u64,
    /// Calls per replayed call (the latest 65,536), in no particular
    /// order.
    pub scopes: Vec<ScopeStats>,
    /// Calls made in no replayed call's scope.
    pub unscoped: u64,
    /// Calls written to the `out` tape (known once it is closed).
    pub written: u64,
}

/// How a server accepts and serves connections on its listeners.
pub trait Connections: Send + Sync + 'static {
    /// Serves `listener` until `stop` turns true: each connection with
    /// `service`, HTTP/1.1 and h2c; connections still open when `stop`
    /// turns true are closed gracefully.
    fn serve(
        &self,
        listener: tokio::net::TcpListener,
        service: MockHttp,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Ends once every connection is closed.
    fn all_closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// The next connection of `listener` under the same limits, for a
    /// listener that serves its connections itself (a database's).
    fn accept<'a>(
        &'a self,
        listener: &'a tokio::net::TcpListener,
    ) -> Pin<Box<dyn Future<Output = AcceptedStream> + Send + 'a>>;
}

/// A connection [`Connections::accept`] admitted.
pub struct AcceptedStream {
    /// The client's connection.
    pub stream: tokio::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its place under the limits, held until dropped (when the
    /// connection ends).
    pub place: Box<dyn Send>,
}

impl std::fmt::Debug for AcceptedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptedStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Serves each connection with hyper (HTTP/1.1 and h2c on one port),
/// with no limits of its own.
#[derive(Debug, Clone, Default)]
pub struct PlainConnections {
    open: Arc<Open>,
}

#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    closed: Notify,
}

/// One open connection, counted until dropped.
struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

impl Connections for PlainConnections {
    fn serve(
        &self,
        listener: tokio::net::TcpListener,
        service: MockHttp,
        mut stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let open = Arc::clone(&self.open);
        Box::pin(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            let builder = Arc::new(builder);
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.wait_for(|stop| *stop) => return,
                };
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors and the like: a moment for one
                    // to close.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                open.count.fetch_add(1, Ordering::AcqRel);
                let guard = OpenGuard(Arc::clone(&open));
                let (builder, service, mut stop) =
                    (Arc::clone(&builder), service.clone(), stop.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let mut connection = std::pin::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => return,
                        _ = stop.wait_for(|stop| *stop) => {}
                    }
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                });
            }
        })
    }

    fn accept<'a>(
        &'a self,
        listener: &'a tokio::net::TcpListener,
    ) -> Pin<Box<dyn Future<Output = AcceptedStream> + Send + 'a>> {
        Box::pin(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        return AcceptedStream {
                            stream,
                            peer,
                            place: Box::new(()),
                        };
                    }
                    // Out of descriptors and the like: a moment for one
                    // to close.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    }

    fn all_closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let open = Arc::clone(&self.open);
        Box::pin(async move {
            loop {
                let closed = open.closed.notified();
                if open.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                closed.await;
            }
        })
    }
}

/// A store ready to serve: the calls' scopes, the fall-through, the log
/// and the `out` tape. [`MockServer::service`] gives the service of one
/// listener (to serve connections some other way: a forward proxy's
/// front); [`MockServer::serve`] serves listeners itself.
pub struct MockServer {
    handler: Arc<Handler>,
    authority: Option<String>,
    out: Option<OutTape>,
    drain: Duration,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("store", &self.handler.store)
            .finish()
    }
}

/// What every listener's calls share.
pub(crate) struct Handler {
    pub(crate) store: Arc<MockStore>,
    /// The scopes calls name; none with `inbound` (inbound calls belong
    /// to no replayed call: they are one pool).
    scopes: Option<ReplayScopes>,
    /// The scopes of database calls: the replayed exchange in flight.
    pub(crate) db_scopes: Arc<DbScopes>,
    pub(crate) db_tls: Option<DbTls>,
    /// Database connections open.
    db_open: Arc<DbConnections>,
    fallthrough: Option<FallthroughLayer>,
    pub(crate) log: Option<LogSink>,
    pub(crate) warn: Option<LogSink>,
    pub(crate) out: Option<OutSender>,
    tally: Mutex<Tally>,
}

/// Scopes counted at once; the oldest is forgotten past this (as
/// [`ReplayScopes`] forgets it).
const SCOPES_COUNTED: usize = 65_536;

#[derive(Default)]
struct Tally {
    scopes: HashMap<ReplayKey, ScopeStats>,
    /// The scopes in the order first seen.
    order: std::collections::VecDeque<ReplayKey>,
    unscoped: u64,
}

impl MockServer {
    /// Serves `store` as `options` say; creates the `out` tape (an
    /// existing file there is an error).
    pub fn new(store: Arc<MockStore>, options: ServerOptions) -> Result<MockServer, ServerError> {
        let (out, sender) = match &options.out {
            Some(out) => {
                let (tape, sender) = OutTape::start(
                    out,
                    store.options().redactor.clone(),
                    store.options().max_body,
                )?;
                (Some(tape), Some(sender))
            }
            None => (None, None),
        };
        let scopes = (!store.options().inbound).then(ReplayScopes::new);
        Ok(MockServer {
            handler: Arc::new(Handler {
                store,
                scopes,
                db_scopes: Arc::new(DbScopes::new()),
                db_tls: options.db_tls,
                db_open: Arc::new(DbConnections::default()),
                fallthrough: options.fallthrough,
                log: options.log,
                warn: options.warn,
                out: sender,
                tally: Mutex::new(Tally::default()),
            }),
            authority: options.authority,
            out,
            drain: options.drain,
        })
    }

    /// The service of the calls that reach the mock at `listener` (the
    /// address an `out` exchange names as its `source.listener`), which
    /// stands in for `recorded` (a route's calls are matched with its
    /// recorded authority).
    pub fn service(&self, listener: &str, recorded: Option<&RecordedListener>) -> MockHttp {
        let route = recorded.and_then(|r| r.route.clone());
        let mut service = MockService::new(Arc::clone(&self.handler.store));
        match (&route, &self.authority) {
            (Some(route), _) => service = service.authority(route.authority.clone()),
            (None, Some(authority)) => service = service.authority(authority.clone()),
            (None, None) => {}
        }
        MockHttp {
            handler: Arc::clone(&self.handler),
            service,
            listener: Arc::from(recorded.map_or(listener, |r| r.listen.as_str())),
            route: route.map(Arc::new),
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> MockStats {
        self.handler.stats()
    }

    /// A connection from `client` to the database listener standing in
    /// for `recorded` (a route whose scheme is a database's), answered
    /// sans I/O: feed it the client's bytes. `None` when `recorded` is
    /// not a database's.
    pub fn db_connection(
        &self,
        recorded: &RecordedListener,
        client: &str,
    ) -> Option<crate::db::DbConnection> {
        let route = recorded.route.as_ref()?;
        let protocol = DbProtocol::of_scheme(&route.scheme)?;
        let number = self.handler.db_open.next_number();
        let conn = crate::db::DbConn::new(
            Arc::clone(&self.handler),
            Arc::new(route.clone()),
            Arc::from(recorded.listen.as_str()),
            number,
            client.to_string(),
        );
        Some(crate::db::DbConnection::new(conn, protocol))
    }

    /// Where the replayer says which replayed exchange is in flight: the
    /// scope of database calls (see [`DbScopes`]).
    pub fn db_scopes(&self) -> Arc<DbScopes> {
        Arc::clone(&self.handler.db_scopes)
    }

    /// Serves `listeners` (each connection as `connections` says) until
    /// the handle's [`MockHandle::stop`]. Must run inside a tokio runtime.
    pub async fn serve(
        self,
        listeners: Vec<MockListener>,
        connections: Arc<dyn Connections>,
    ) -> Result<MockHandle, ServerError> {
        if listeners.is_empty() {
            return Err(ServerError::NoListener);
        }
        let (stop, stopped) = watch::channel(false);
        let mut listening = Vec::new();
        let mut tasks = Vec::new();
        for MockListener { listener, recorded } in listeners {
            let named = listener
                .local_addr()
                .map_or_else(|_| "a listener".to_string(), |a| a.to_string());
            let failed = |e: std::io::Error| ServerError::Listen {
                addr: named.clone(),
                reason: e.to_string(),
            };
            let addr = listener.local_addr().map_err(failed)?;
            listener.set_nonblocking(true).map_err(failed)?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(failed)?;
            let database = recorded
                .as_ref()
                .and_then(|r| r.route.as_ref())
                .and_then(|route| Some((DbProtocol::of_scheme(&route.scheme)?, route.clone())));
            match database {
                // A database's listener speaks its protocol, not HTTP.
                Some((protocol, route)) => tasks.push(tokio::spawn(crate::db::serve_listener(
                    Arc::clone(&self.handler),
                    listener,
                    DbListener {
                        protocol,
                        route,
                        listen: Arc::from(
                            recorded
                                .as_ref()
                                .map_or(addr.to_string(), |r| r.listen.clone()),
                        ),
                        tls: self.handler.db_tls.clone(),
                    },
                    Arc::clone(&self.handler.db_open),
                    Arc::clone(&connections),
                    stopped.clone(),
                ))),
                None => {
                    let service = self.service(&addr.to_string(), recorded.as_ref());
                    tasks.push(tokio::spawn(connections.serve(
                        listener,
                        service,
                        stopped.clone(),
                    )));
                }
            }
            listening.push(Listening { addr, recorded });
        }
        Ok(MockHandle {
            server: self,
            listening,
            stop,
            tasks,
            connections,
        })
    }

    /// Closes the `out` tape; what it did.
    pub fn finish(self) -> Result<MockStats, ServerError> {
        let mut stats = self.handler.stats();
        if let Some(out) = self.out {
            stats.written = out.close()?;
        }
        Ok(stats)
    }
}

/// A server serving; [`MockHandle::stop`] ends it.
pub struct MockHandle {
    server: MockServer,
    listening: Vec<Listening>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connections: Arc<dyn Connections>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("listening", &self.listening)
            .finish()
    }
}

impl MockHandle {
    /// Where it listens, in the order the listeners were given.
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// What it has done so far.
    pub fn stats(&self) -> MockStats {
        self.server.stats()
    }

    /// Stops accepting, lets calls in flight finish (for the `drain` of
    /// its options at most), closes the `out` tape; what it did.
    pub async fn stop(self) -> Result<MockStats, ServerError> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let db_open = Arc::clone(&self.server.handler.db_open);
        let all_closed = async {
            self.connections.all_closed().await;
            db_open.all_closed().await;
        };
        let _ = tokio::time::timeout(self.server.drain, all_closed).await;
        self.server.finish()
    }
}

/// The calls reaching one listener: a hyper service (and a tower one, for
/// any other front), answering each call from the store.
#[derive(Clone)]
pub struct MockHttp {
    handler: Arc<Handler>,
    service: MockService,
    /// What `out` exchanges name as their `source.listener`.
    listener: Arc<str>,
    route: Option<Arc<RecordedRoute>>,
}

impl std::fmt::Debug for MockHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHttp")
            .field("listener", &self.listener)
            .field("route", &self.route)
            .finish()
    }
}

/// The body of a mock server's answer.
pub type ServedBody = Tapped<FallthroughBody>;

/// The future of a mock server's answer.
pub type ServedFuture =
    Pin<Box<dyn Future<Output = Result<Response<ServedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for MockHttp {
    type Response = Response<ServedBody>;
    type Error = Infallible;
    type Future = ServedFuture;

    fn call(&self, request: Request<Incoming>) -> ServedFuture {
        let this = self.clone();
        Box::pin(async move { Ok(this.answer(request).await) })
    }
}

impl<B> Service<Request<B>> for MockHttp
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ServedBody>;
    type Error = Infallible;
    type Future = ServedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ServedFuture {
        let this = self.clone();
        Box::pin(async move { Ok(this.answer(request).await) })
    }
}

impl MockHttp {
    /// Whether it serves a recorded route (`--egress-route`): its calls
    /// all go to the route's downstream, never through a proxy.
    pub fn is_route(&self) -> bool {
        self.route.is_some()
    }

    /// Answers one call: scoped, matched, maybe fallen through, logged,
    /// counted and (with `out`) kept.
    pub async fn answer<B>(self, mut request: Request<B>) -> Response<ServedBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let handler = &self.handler;
        let key = handler.scopes.as_ref().and_then(|s| s.scope(&mut request));
        let order = handler.count(key.as_ref());
        let authority = self.service.authority_for(&request);
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let call = handler.log.as_ref().map(|_| {
            let scope = key.as_ref().map_or_else(
                || "no replayed call".to_string(),
                |key| format!("replaying {}", display_id(&key.replay_of)),
            );
            let call = format!("{} {authority}{target} ({scope})", request.method());
            let head = format!("{} {}", request.method(), request.uri());
            (escape(&call).into_owned(), escape(&head).into_owned())
        });
        let capture = handler.out.as_ref().map(|out| {
            let head = self.head(&request, key.as_ref(), &authority, &target, order);
            Capture::new(head, out)
        });
        let request = match &capture {
            Some(capture) => {
                request.map(|b| Tapped::kept(b, Arc::clone(capture), Direction::Request))
            }
            None => request.map(Tapped::plain),
        };
        let answer = match &handler.fallthrough {
            Some(layer) => layer.layer(self.service.clone()).call(request).await,
            None => self
                .service
                .clone()
                .call(request)
                .await
                .map(|r| r.map(Either::Left)),
        };
        let response = match answer {
            Ok(response) => {
                if let (Some((call, head)), Some(log)) = (&call, &handler.log) {
                    handler.log_answer(log, call, head, &response);
                }
                response
            }
            Err(error) => {
                // A recorded call that failed below HTTP, or a request
                // body that broke off.
                let reason = reprise_model::error::one_line(error.as_ref());
                if let (Some((call, _)), Some(log)) = (&call, &handler.log) {
                    log(&format!("{call}: {reason}"));
                }
                own_answer(
                    StatusCode::BAD_GATEWAY,
                    reprise_model::protocol::MOCK_FAILURE_HEADER,
                    format!("reprise mock: {reason}\n"),
                )
                .map(|body| Either::Right(Either::Left(body)))
            }
        };
        let served = response.extensions().get::<MockServed>();
        let miss = response.extensions().get::<MockMiss>().is_some();
        handler.tally(key.as_ref(), served.map(|s| s.pool), miss);
        match capture {
            Some(capture) => {
                capture.answered(
                    response.status().as_u16(),
                    response.headers(),
                    served.map(|s| s.recorded_id.as_slice()),
                    miss,
                );
                response.map(|body| Tapped::kept(body, capture, Direction::Response))
            }
            None => response.map(Tapped::plain),
        }
    }

    /// The exchange a call to the mock starts as: the request as it came,
    /// placed in its scope.
    fn head<B>(
        &self,
        request: &Request<B>,
        key: Option<&ReplayKey>,
        authority: &str,
        target: &str,
        order: u32,
    ) -> CallHead {
        let headers = request.headers();
        let grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| reprise_model::grpc::is_grpc_content_type(v.as_bytes()));
        let scheme = match (&self.route, request.uri().scheme_str()) {
            (Some(route), _) => route.scheme.clone(),
            (None, Some(scheme)) => scheme.to_string(),
            (None, None) => "http".to_string(),
        };
        let trace_id = headers
            .get("traceparent")
            .and_then(|v| reprise_model::trace::trace_id_of(v.as_bytes()))
            .map(|t| t.to_vec())
            .unwrap_or_default();
        let exchange = Exchange {
            id: reprise_model::id::new_id(),
            parent_id: key.map(|k| k.replay_of.clone()).unwrap_or_default(),
            trace_id,
            recorded_at_ns: reprise_model::time::now_ns(),
            source: Some(reprise_model::RecordSource {
                recorder: "mock".into(),
                listener: self.listener.to_string(),
                route: self
                    .route
                    .as_ref()
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            protocol: crate::out::protocol_of(request.version(), grpc) as i32,
            role: Role::Downstream as i32,
            request: Some(reprise_model::Request {
                method: request.method().to_string(),
                scheme,
                authority: authority.to_string(),
                path: target.to_string(),
                headers: crate::out::fields(headers),
                ..Default::default()
            }),
            link: Some(crate::out::link(key.is_some(), order)),
            ..Default::default()
        };
        CallHead { exchange, grpc }
    }
}

impl Handler {
    /// Counts a call in its scope; gives its index there (0-based).
    pub(crate) fn count(&self, key: Option<&ReplayKey>) -> u32 {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let calls = match key {
            Some(key) => {
                if !tally.scopes.contains_key(key) {
                    if tally.order.len() == SCOPES_COUNTED
                        && let Some(oldest) = tally.order.pop_front()
                    {
                        tally.scopes.remove(&oldest);
                    }
                    tally.order.push_back(key.clone());
                }
                let stats = tally
                    .scopes
                    .entry(key.clone())
                    .or_insert_with(|| ScopeStats {
                        replay_of: key.replay_of.clone(),
                        run: key.run.clone(),
                        ..ScopeStats::default()
                    });
                stats.calls += 1;
                stats.calls
            }
            None => {
                tally.unscoped += 1;
                tally.unscoped
            }
        };
        u32::try_from(calls - 1).unwrap_or(u32::MAX)
    }

    /// Counts how a call of `key`'s scope was answered.
    pub(crate) fn tally(&self, key: Option<&ReplayKey>, pool: Option<Pool>, miss: bool) {
        let Some(key) = key else {
            return;
        };
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = tally.scopes.get_mut(key) {
            if miss {
                stats.missed += 1;
            } else if let Some(pool) = pool {
                stats.served += 1;
                if pool == Pool::Unlinked {
                    stats.unlinked += 1;
                }
            }
        }
    }

    fn stats(&self) -> MockStats {
        let tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let (fell_through, refused, withheld) = self
            .fallthrough
            .as_ref()
            .map_or((0, 0, 0), |f| (f.answered(), f.refused(), f.withheld()));
        MockStats {
            report: self.store.report(),
            fell_through,
            refused,
            withheld,
            scopes: tally.scopes.values().cloned().collect(),
            unscoped: tally.unscoped,
            written: 0,
        }
    }

    /// `log`: what answered the call `call` (`head`: its method and
    /// target as sent).
    fn log_answer(
        &self,
        log: &LogSink,
        call: &str,
        head: &str,
        response: &Response<FallthroughBody>,
    ) {
        let extensions = response.extensions();
        if let Some(FellThrough::Refused(text)) = extensions.get::<FellThrough>() {
            log(&format!("{head}: {}", text.trim_end()));
            return;
        }
        match extensions.get::<MockServed>() {
            Some(served) => log(&format!(
                "{call}: answered by recorded {}{}",
                display_id(&served.recorded_id),
                served.pool.label()
            )),
            None => log(&format!("{call}: missed")),
        }
        let (Some(miss), Some(layer)) = (extensions.get::<MockMiss>(), &self.fallthrough) else {
            return;
        };
        let missed = escape(&miss.call);
        match extensions.get::<FellThrough>() {
            Some(FellThrough::Answered) => {
                log(&format!("{missed}: fell through to {}", layer.upstream()));
            }
            Some(FellThrough::Failed(why)) => log(&format!(
                "{missed}: --fallthrough {} failed: {why}",
                layer.upstream()
            )),
            Some(FellThrough::Withheld(why)) => log(&format!("{missed}: {why}")),
            _ => {}
        }
    }
}
