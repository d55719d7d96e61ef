//! `reprise mock`: recorded calls served over HTTP/1.1 and h2c until
//! SIGINT or SIGTERM by `reprise_mock::MockService`, the matching the
//! tower layers' mock mode uses; then what was served and missed.
//!
//! Each call is scoped by the replayed call its headers name
//! (`reprise_mock::ReplayScopes`: `x-reprise-replay`, else `traceparent`,
//! and the run `tracestate` names), and with `--fallthrough` the calls
//! the recording misses go to a real upstream
//! (`reprise_mock::FallthroughLayer`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use reprise_mock::{
    Exhausted, FALLTHROUGH_BODY, FallthroughBody, FallthroughLayer, FellThrough, MockMiss,
    MockOptions, MockReport, MockServed, MockService, MockStore, ReplayScopes,
};
use reprise_model::select::ExchangeFilter;
use reprise_model::terminal::escape;
use reprise_model::{Intact, Source, display_id};
use reprise_net::Upstream;
use reprise_proxy::{ConnectionGate, ConnectionMetrics};
use tower_layer::Layer;
use tower_service::Service;

use crate::Outcome;
use crate::args::MockArgs;
use crate::commands::record::{limits, size};

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

/// What each connection's calls share.
struct Mock {
    service: MockService,
    /// The scopes calls name; none with `--inbound` (inbound calls belong
    /// to no replayed call: they are one pool).
    scopes: Option<ReplayScopes>,
    fallthrough: Option<FallthroughLayer>,
    log: bool,
}

impl Mock {
    async fn answer(self: Arc<Self>, mut request: Request<Incoming>) -> Response<FallthroughBody> {
        let key = self.scopes.as_ref().and_then(|s| s.scope(&mut request));
        let call = self.log.then(|| {
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let scope = key.as_ref().map_or_else(
                || "no replayed call".to_string(),
                |key| format!("replaying {}", display_id(&key.replay_of)),
            );
            let authority = self.service.authority_for(&request);
            let call = format!("{} {authority}{target} ({scope})", request.method());
            let head = format!("{} {}", request.method(), request.uri());
            (escape(&call).into_owned(), head)
        });
        let answer = match &self.fallthrough {
            Some(layer) => layer.layer(self.service.clone()).call(request).await,
            None => self
                .service
                .clone()
                .call(request)
                .await
                .map(|r| r.map(Either::Left)),
        };
        match answer {
            Ok(response) => {
                if let Some((call, head)) = call {
                    self.log_answer(&call, &head, &response);
                }
                response
            }
            Err(error) => {
                // A recorded call that failed below HTTP, or a request
                // body that broke off.
                let reason = reprise_model::error::one_line(error.as_ref());
                if let Some((call, _)) = call {
                    eprintln!("reprise: mock: {call}: {reason}");
                }
                reprise_mock::own_answer(
                    StatusCode::BAD_GATEWAY,
                    reprise_model::protocol::MOCK_FAILURE_HEADER,
                    format!("reprise mock: {reason}\n"),
                )
                .map(|body| Either::Right(Either::Left(body)))
            }
        }
    }

    /// `--log`: what answered the call `call` (`head`: its method and
    /// target as sent).
    fn log_answer(&self, call: &str, head: &str, response: &Response<FallthroughBody>) {
        let extensions = response.extensions();
        if let Some(FellThrough::Refused(text)) = extensions.get::<FellThrough>() {
            eprint!("reprise: mock: {head}: {text}");
            return;
        }
        match extensions.get::<MockServed>() {
            Some(served) => eprintln!(
                "reprise: mock: {call}: answered by recorded {}",
                display_id(&served.recorded_id)
            ),
            None => eprintln!("reprise: mock: {call}: missed"),
        }
        let (Some(miss), Some(layer)) = (extensions.get::<MockMiss>(), &self.fallthrough) else {
            return;
        };
        let missed = escape(&miss.call);
        match extensions.get::<FellThrough>() {
            Some(FellThrough::Answered) => {
                eprintln!(
                    "reprise: mock: {missed}: fell through to {}",
                    layer.upstream()
                );
            }
            Some(FellThrough::Failed(why)) => eprintln!(
                "reprise: mock: {missed}: --fallthrough {} failed: {why}",
                layer.upstream()
            ),
            _ => {}
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let fallthrough = match fallthrough {
        Some(layer) => Some(runtime.block_on(layer.probe()).context("--fallthrough")?),
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
    fallthrough: Option<FallthroughLayer>,
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
    let mut service = MockService::new(Arc::new(store));
    if let Some(authority) = &args.authority {
        service = service.authority(authority);
    }
    let mock = Arc::new(Mock {
        service,
        scopes: (!args.inbound).then(ReplayScopes::new),
        fallthrough,
        log: args.log,
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
    let fell_through = mock
        .fallthrough
        .as_ref()
        .map(|f| (f.answered(), f.refused()));
    Ok((mock.service.store().report(), fell_through))
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
