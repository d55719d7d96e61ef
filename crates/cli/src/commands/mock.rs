//! `reprise mock`: recorded calls served over HTTP/1.1 and h2c until
//! SIGINT or SIGTERM by `reprise_mock::server::MockServer` (the matching
//! the tower layers' mock mode uses, each call scoped by the replayed
//! call its headers name), on `--listen` and the recording's egress
//! listeners; then what was served and missed. This command parses its
//! arguments, binds the listeners and gates their connections as every
//! reprise server does (`reprise_proxy::ConnectionGate`). Every listener
//! but a recorded route's is an HTTP proxy too (the egress front of
//! `reprise_intercept`): CONNECT tunnels carrying TLS (leaves from the
//! reprise CA), h2c or HTTP/1.1 are answered from the recording.
//! A recorded database (`--db NAME=LISTEN`, or its recorded address with
//! `--recorded-listeners`) is answered in its own protocol, PostgreSQL or
//! Redis, by the same server (`reprise_mock::db`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, bail};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use reprise_intercept::{
    Arrival, BoxBody, BoxError, Front, FrontOptions, Handler, Leaves, Opening, Started, Target,
};
use reprise_mock::server::{
    AcceptedStream, Connections, MockHttp, MockListener, MockServer, MockStats, ServerOptions,
};
use reprise_mock::{
    DbProtocol, Exhausted, FALLTHROUGH_BODY, FallthroughLayer, MockOptions, MockStore,
    RecordedListener,
};
use reprise_model::select::ExchangeFilter;
use reprise_model::{Intact, Source};
use reprise_net::Upstream;
use reprise_proxy::{ConnectionGate, ConnectionMetrics};
use tokio::sync::watch;

use crate::Outcome;
use crate::args::MockArgs;
use crate::commands::record::{limits, size};

/// Where the mock listens without --listen or --recorded-listeners.
const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

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

/// The mock behind the egress proxy's front: every request, whether it
/// came in absolute form, in origin form or through a CONNECT tunnel
/// (TLS, h2c, HTTP/1.1), is answered by the listener's [`MockHttp`].
/// There is no far end to dial: a tunnel opens at once, and a TLS
/// tunnel agrees on h2 when the client offers it, else HTTP/1.1.
#[derive(Clone)]
pub(crate) struct ProxiedMock {
    http: MockHttp,
}

impl Handler for ProxiedMock {
    type Service = ProxiedMock;
    type Tunnel = ();

    fn plain(&self) -> ProxiedMock {
        self.clone()
    }

    async fn open(&self, _host: &str, _port: u16) -> std::io::Result<()> {
        Ok(())
    }

    async fn start(&self, (): (), opening: Opening) -> Result<Started<ProxiedMock>, BoxError> {
        let alpn = match opening {
            Opening::Tls { alpn, .. } => [&b"h2"[..], b"http/1.1"]
                .into_iter()
                .find(|p| alpn.iter().any(|offered| offered == p))
                .map(<[u8]>::to_vec),
            Opening::H2c | Opening::Http1 => None,
        };
        Ok(Started {
            service: self.clone(),
            alpn,
        })
    }
}

impl tower_service::Service<Request<Incoming>> for ProxiedMock {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(target) = request.extensions().get::<Target>().cloned()
            && target.arrival() != Arrival::Plain
        {
            *request.uri_mut() = target.absolute_uri(request.uri());
        }
        let http = self.http.clone();
        Box::pin(async move { Ok(http.answer(request).await.map(|body| body.boxed_unsync())) })
    }
}

/// Connections under the gate every reprise listener has
/// (`--max-connections`, `--header-timeout`, `--idle-timeout`), served
/// as `reprise record` serves them; for `reprise_mock::server`. Every
/// listener but a recorded route's is a proxy too: its connections are
/// served by the egress front ([`ProxiedMock`]), TLS tunnels with
/// `leaves`.
pub(crate) struct Gated {
    gate: ConnectionGate,
    builder: Arc<auto::Builder<TokioExecutor>>,
    leaves: Option<Arc<Leaves>>,
}

impl Gated {
    /// Connections `gate` admits; TLS tunnels answered with `leaves`.
    pub(crate) fn new(gate: ConnectionGate, leaves: Option<Arc<Leaves>>) -> Gated {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The connection's own clocks time request heads (--header-timeout,
        // --idle-timeout).
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        builder.http2().timer(TokioTimer::new());
        Gated {
            gate,
            builder: Arc::new(builder),
            leaves,
        }
    }
}

impl Connections for Gated {
    fn serve(
        &self,
        listener: tokio::net::TcpListener,
        service: MockHttp,
        mut stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (gate, builder) = (self.gate.clone(), Arc::clone(&self.builder));
        // A route's calls all go to its downstream: no proxy there.
        let front = (!service.is_route()).then(|| {
            let mut options = FrontOptions::default();
            // A call made to the mock directly is answered (or missed)
            // whatever its Host says.
            options.direct_calls = true;
            // A tunnel that could not be served says why, once.
            options.warn = Some(Arc::new(|line: &str| eprintln!("{line}")));
            Front::with_options(
                ProxiedMock {
                    http: service.clone(),
                },
                self.leaves.clone(),
                options,
            )
        });
        Box::pin(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = gate.accept(&listener) => accepted,
                    _ = stop.wait_for(|stop| *stop) => return,
                };
                let _ = accepted.stream.set_nodelay(true);
                let (builder, stop) = (Arc::clone(&builder), stop.clone());
                match &front {
                    // The mock dials nothing: no request can loop back.
                    Some(front) => tokio::spawn(reprise_proxy::serve_connection(
                        accepted,
                        None,
                        builder,
                        front.connection_service(None),
                        stop,
                    )),
                    None => tokio::spawn(reprise_proxy::serve_connection(
                        accepted,
                        None,
                        builder,
                        service.clone(),
                        stop,
                    )),
                };
            }
        })
    }

    fn all_closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let gate = self.gate.clone();
        Box::pin(async move { gate.all_closed().await })
    }

    fn accept<'a>(
        &'a self,
        listener: &'a tokio::net::TcpListener,
    ) -> Pin<Box<dyn Future<Output = AcceptedStream> + Send + 'a>> {
        Box::pin(async move {
            let accepted = self.gate.accept(listener).await;
            let peer = accepted.peer;
            let (stream, slot) = accepted.into_parts();
            AcceptedStream {
                stream,
                peer,
                place: Box::new(slot),
            }
        })
    }
}

/// The listeners to serve: `--listen` (by default, unless
/// `--recorded-listeners`, or `--db` with no HTTP call recorded), the
/// `--db` databases and the recorded egress listeners.
fn bind(args: &MockArgs, store: &MockStore) -> anyhow::Result<Vec<MockListener>> {
    let mut listeners = Vec::new();
    let http_recorded = store.exchanges().any(|e| e.db.is_none());
    let listen = match (&args.listen, args.recorded_listeners) {
        (Some(listen), _) => Some(listen.as_str()),
        (None, false) if args.db.is_empty() || http_recorded => Some(DEFAULT_LISTEN),
        (None, _) => None,
    };
    if let Some(listen) = listen {
        let addr: SocketAddr = listen.parse().with_context(|| {
            format!("--listen {listen:?}: expected IP:PORT, such as 127.0.0.1:8081")
        })?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--listen {addr}: cannot listen"))?;
        listeners.push(MockListener::new(listener));
    }
    let databases = databases(args, store)?;
    for (addr, recorded) in &databases {
        let socket = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--db {}={addr}: cannot listen", route_name(recorded)))?;
        listeners.push(MockListener::recorded(socket, recorded.clone()));
    }
    if args.recorded_listeners {
        let recorded: Vec<RecordedListener> = store.recorded_listeners();
        if recorded.is_empty() {
            bail!(
                "{}: no egress listeners recorded (downstream calls recorded by reprise record --egress, --egress-route or --egress-db); --recorded-listeners has nowhere to listen",
                args.source.display()
            );
        }
        // A database --db places is served there only.
        let placed = |l: &RecordedListener| {
            databases
                .iter()
                .any(|(_, d)| route_name(d) == route_name(l) && d.route.is_some())
        };
        for listener in recorded.into_iter().filter(|l| !placed(l)) {
            let addr: SocketAddr = listener.listen.parse().with_context(|| {
                format!("--recorded-listeners: {listener}: not an IP:PORT address")
            })?;
            let socket = std::net::TcpListener::bind(addr)
                .with_context(|| format!("--recorded-listeners: {listener}: cannot listen"))?;
            listeners.push(MockListener::recorded(socket, listener));
        }
    }
    Ok(listeners)
}

fn route_name(listener: &RecordedListener) -> &str {
    listener.route.as_ref().map_or("", |r| r.name.as_str())
}

/// The `--db NAME=LISTEN` databases: where to listen, and the recorded
/// database each stands in for (its protocol comes from the recording).
fn databases(
    args: &MockArgs,
    store: &MockStore,
) -> anyhow::Result<Vec<(SocketAddr, RecordedListener)>> {
    if args.db.is_empty() {
        return Ok(Vec::new());
    }
    let recorded: Vec<RecordedListener> = store
        .recorded_listeners()
        .into_iter()
        .filter(|l| {
            l.route
                .as_ref()
                .is_some_and(|r| DbProtocol::of_scheme(&r.scheme).is_some())
        })
        .collect();
    let mut found = Vec::new();
    for spec in &args.db {
        let Some((name, listen)) = spec.split_once('=') else {
            bail!("--db {spec:?}: expected NAME=LISTEN, such as orders-db=127.0.0.1:6432");
        };
        let addr: SocketAddr = listen.parse().with_context(|| {
            format!("--db {spec:?}: {listen:?} is not IP:PORT, such as 127.0.0.1:6432")
        })?;
        let Some(database) = recorded.iter().find(|l| route_name(l) == name) else {
            let names: Vec<&str> = recorded.iter().map(route_name).collect();
            bail!(
                "--db {spec:?}: {} recorded no database {name:?} ({})",
                args.source.display(),
                if names.is_empty() {
                    "it holds no database calls: record them with reprise record --egress-db"
                        .to_string()
                } else {
                    format!("its databases: {}", names.join(", "))
                }
            );
        };
        if found
            .iter()
            .any(|(_, l): &(SocketAddr, RecordedListener)| route_name(l) == name)
        {
            bail!("--db {spec:?}: database {name:?} given twice");
        }
        found.push((addr, database.clone()));
    }
    Ok(found)
}

/// The TLS a PostgreSQL listener answers an SSLRequest with: a leaf of
/// the reprise CA for the name the client asked for.
pub(crate) fn db_tls(leaves: Option<&Arc<Leaves>>) -> Option<reprise_mock::DbTls> {
    let leaves = Arc::clone(leaves?);
    Some(Arc::new(move |host: &str| {
        leaves
            .server_config(host, None)
            .map_err(|e| format!("no TLS leaf for {host:?}: {e}"))
    }))
}

/// Serves until SIGINT or SIGTERM; exit 1 when a call was missed.
pub fn run(args: &MockArgs) -> anyhow::Result<Outcome> {
    let options = options(args)?;
    // The mock serves on one thread.
    let limits = limits(&args.connections, 1)?;
    if let Some(listen) = &args.listen {
        listen.parse::<SocketAddr>().with_context(|| {
            format!("--listen {listen:?}: expected IP:PORT, such as 127.0.0.1:8081")
        })?;
    }
    let fallthrough = args
        .fallthrough
        .as_deref()
        .map(|url| {
            let upstream = Upstream::parse(url).context("--fallthrough")?;
            FallthroughLayer::new(upstream, args.upstream_protocol.into())
                .with_context(|| format!("--fallthrough {url:?}"))
        })
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
    let leaves = super::ca::leaves(args.ca_dir.as_deref())?;
    let listeners = bind(args, &store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let fallthrough = match fallthrough {
        Some(layer) => Some(
            runtime
                .block_on(layer.probe())
                .context("--fallthrough")?
                .forward_writes(args.fallthrough_writes),
        ),
        None => None,
    };
    let log: Option<reprise_mock::server::LogSink> = args
        .log
        .then(|| Arc::new(|line: &str| eprintln!("reprise: mock: {line}")) as _);
    let server_options = ServerOptions {
        authority: args.authority.clone(),
        fallthrough,
        log,
        warn: Some(Arc::new(|line: &str| eprintln!("reprise: mock: {line}"))),
        out: args.out.as_deref().map(crate::store::mock_out),
        drain: DRAIN,
        db_tls: db_tls(leaves.as_ref()),
    };
    let calls = store.len();
    let server = MockServer::new(Arc::new(store), server_options)?;
    let connections = ConnectionMetrics::default();
    let gate = ConnectionGate::new("mock", limits, connections.clone());
    let stats = runtime.block_on(serve(args, server, listeners, (gate, leaves), calls))?;
    print_report(&stats);
    print_connections(&connections);
    if let Some(url) = &args.fallthrough {
        eprintln!(
            "reprise: {} missed calls fell through to {url}",
            stats.fell_through
        );
        if stats.refused > 0 {
            eprintln!(
                "reprise: {} calls refused: a body over {FALLTHROUGH_BODY} bytes (--fallthrough reads bodies whole)",
                stats.refused
            );
        }
        if stats.withheld > 0 {
            eprintln!(
                "reprise: {} missed writes not sent to {url} (--fallthrough-writes sends them)",
                stats.withheld
            );
        }
    }
    if let Some(out) = &args.out {
        eprintln!(
            "reprise: wrote {} calls to {}",
            stats.written,
            out.display()
        );
    }
    // A mock judges the calls it got: a miss fails the run. A mock that
    // served nothing passes (min_compared 0): whether the service under
    // test had to call its dependency is that test's question, and the
    // count served is on stderr. A damaged recording never gets here.
    let judgement = reprise_compare::Judgement {
        missed: stats.report.missed + stats.refused,
        compared: stats.report.served,
        min_compared: 0,
        ..Default::default()
    };
    Ok(judgement.finding().into())
}

/// Serves until a signal; gives what the server did.
async fn serve(
    args: &MockArgs,
    server: MockServer,
    listeners: Vec<MockListener>,
    (gate, leaves): (ConnectionGate, Option<Arc<Leaves>>),
    calls: usize,
) -> anyhow::Result<MockStats> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    let without_ca = leaves.is_none();
    let handle = server
        .serve(listeners, Arc::new(Gated::new(gate, leaves)))
        .await?;
    let mut listening = handle.listening().iter();
    let first = listening
        .next()
        .map_or_else(String::new, ToString::to_string);
    eprintln!(
        "reprise: mocking {first} from {} ({calls} recorded {} calls); stop with Ctrl-C",
        args.source.display(),
        if args.inbound {
            "inbound"
        } else {
            "downstream"
        },
    );
    for other in listening {
        eprintln!("reprise: mocking {other} too");
    }
    if without_ca {
        eprintln!(
            "reprise: no reprise CA: CONNECT tunnels carrying TLS are refused and PostgreSQL clients asking for TLS are told no (run `reprise ca init`, or give --ca-dir)"
        );
    }
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(handle.stop().await?)
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

fn print_report(stats: &MockStats) {
    let report = &stats.report;
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
    if report.unlinked > 0 {
        eprintln!(
            "reprise: mock served {} calls from the unlinked pool (recorded with no parent: outside any inbound call, or with an unknown or shared trace)",
            report.unlinked
        );
    }
}
