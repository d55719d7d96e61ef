//! The listener: HTTP/1.1 and HTTP/2 on one port (h2c with prior
//! knowledge, or TLS with ALPN), each connection served by hyper; the
//! admin endpoint; graceful shutdown, which drains in-flight calls, then
//! lets the recorder write its queue and close the sink.
//!
//! Serving threads (one per two cores by default): the port is bound
//! once per serving thread (`SO_REUSEPORT`, the kernel spreads
//! connections over them), and each
//! thread runs a single-threaded runtime with its own forwarder and
//! upstream connection pools. A call, its upstream connection and their
//! tasks stay on one thread, so forwarding never wakes another thread.
//! Each thread also records the calls it served (a local handle of the
//! recorder: judged, encoded and packed into tape blocks there); only
//! full blocks cross to the recorder's thread, which writes them.
//! Each `--egress-route` is served the same way, on the same threads
//! (bound once per thread, its own forwarder per thread: `egress::listen`),
//! and so is each `--egress-db` (its connections relayed and their
//! exchanges packed on the thread that accepted them: `egress::db`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use reprise_model::Sink;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::ProxyConfig;
use crate::egress::InboundTracing;
use crate::error::ProxyError;
use crate::forward::{Forwarder, forward};
use crate::listener::{ADMIN_CONNECTIONS, ConnectionGate, ConnectionLimits, serve_connection};
use reprise_record::{
    ConnectionMetrics, LinkRegistry, Metrics, Origin, Recorder, RecorderStats, Rules,
};

/// How often a serving thread hands what it packed to the recorder if it
/// has waited long enough.
const RECORDER_TICK: Duration = Duration::from_millis(20);

/// How long an admin connection may wait for a request head, and stay
/// idle between requests.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A recording proxy that is running.
pub struct RunningProxy {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ProxyError>>,
    metrics: Arc<Metrics>,
    upstream: Arc<crate::UpstreamVersions>,
    egress: Vec<(String, SocketAddr)>,
}

impl RunningProxy {
    /// Where it listens (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` and `/healthz` are served, if asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Whether the upstream speaks HTTP/2: `None` until a call made the
    /// proxy ask (see [`crate::UpstreamProtocol`]).
    pub fn upstream_speaks_h2(&self) -> Option<bool> {
        self.upstream.known_h2()
    }

    /// The egress listeners: `--egress` and each `--egress-route`'s name,
    /// with where each listens (useful with port 0).
    pub fn egress_addresses(&self) -> &[(String, SocketAddr)] {
        &self.egress
    }

    /// The recording counters now.
    pub fn stats(&self) -> RecorderStats {
        self.metrics.snapshot()
    }

    /// Everything counted, as `/metrics` shows it.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, lets in-flight calls finish (up to the drain
    /// timeout), drains the recording queue and closes the sink.
    pub async fn shutdown(self) -> Result<RecorderStats, ProxyError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result.map(|()| self.metrics.snapshot()),
            Err(e) => Err(ProxyError::Internal(format!("proxy task failed: {e}"))),
        }
    }
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ProxyError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ProxyError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Binds `addr` `n` times with `SO_REUSEPORT` (port 0: the port the first
/// bind picks); the listeners come back unregistered, for each serving
/// thread's runtime to take.
pub(crate) fn bind_shared(
    addr: SocketAddr,
    n: usize,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), ProxyError> {
    let error = |source| ProxyError::Bind { addr, source };
    let mut listeners = Vec::with_capacity(n);
    let mut local = addr;
    for _ in 0..n.max(1) {
        let socket = match local {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(error)?;
        socket.set_reuseaddr(true).map_err(error)?;
        socket.set_reuseport(true).map_err(error)?;
        socket.bind(local).map_err(error)?;
        let listener = socket.listen(1024).map_err(error)?;
        local = listener.local_addr().map_err(error)?;
        listeners.push(listener.into_std().map_err(error)?);
    }
    Ok((listeners, local))
}

/// Threads serving the listener: as configured, or one per two cores (at
/// least one). A recording proxy shares its machine with the service it
/// records (and in a load test, with the load): on 2 cores shared with
/// wrk and nginx, one serving thread answered 24–32 % more calls a second
/// than two, which woke and waited in turn (docs/benchmarks.md).
fn serving_threads(config: &ProxyConfig) -> usize {
    config
        .threads
        .unwrap_or_else(default_serving_threads)
        .max(1)
}

/// Serving threads when `--threads` is not given: one per two cores, at
/// least one.
pub fn default_serving_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get() / 2)
        .max(1)
}

/// Binds the listener (and the admin endpoint), starts serving; returns
/// once both listen.
pub async fn start(config: ProxyConfig, sink: Box<dyn Sink>) -> Result<RunningProxy, ProxyError> {
    let acceptor = match &config.tls {
        Some((cert, key)) => Some(TlsAcceptor::from(reprise_net::tls::server_config(
            cert, key,
        )?)),
        None => None,
    };
    let (listeners, local_addr) = bind_shared(config.listen, serving_threads(&config))?;
    let admin = match config.admin {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|(_, addr)| *addr);
    let connections = ConnectionMetrics::default();
    let metrics = Arc::new(Metrics::serving(&connections));
    let gate = ConnectionGate::new(&local_addr.to_string(), config.limits, connections);
    let rules = Rules {
        filter: config.filter.clone(),
        max_rate: config.max_record_rate,
        redactor: config.redactor.clone(),
        sample_rate: config.sampler.rate(),
    };
    let (recorder, thread) =
        Recorder::start(sink, rules, config.queue_capacity, Arc::clone(&metrics))
            .map_err(|e| ProxyError::Internal(format!("cannot start the recorder thread: {e}")))?;
    let origin = Origin {
        service: config.service.clone(),
        instance: String::new(),
        recorder: "proxy",
        role: reprise_model::Role::Inbound,
        listener: local_addr.to_string(),
        route: String::new(),
        scheme: if acceptor.is_some() { "https" } else { "http" },
        authority: String::new(),
        server_addr: config.upstream.authority.to_string(),
        max_body: config.max_body,
    };
    // Read once for every serving thread; the system's roots only when
    // the upstream speaks TLS.
    let trust = match (&config.upstream_ca, config.upstream.scheme.as_str()) {
        (Some(ca), _) => reprise_net::tls::Trust::CaFile(ca),
        (None, "https") => reprise_net::tls::Trust::System,
        (None, _) => reprise_net::tls::Trust::Nobody,
    };
    let tls = reprise_net::tls::client_config_for(trust)?;
    let upstream = Arc::new(
        crate::UpstreamVersions::new(
            &config.upstream,
            config.upstream_protocol,
            &tls,
            config.connect_timeout,
        )
        .await?,
    );
    let drain = config.drain_timeout;
    let (stop, stopped) = watch::channel(false);
    // Egress: the service's own calls, linked by trace id to the inbound
    // calls registered here. The forward proxy runs on this runtime,
    // recording on the recorder's shared handle; the routes are bound
    // once per serving thread and served there, as the listener is.
    let mut egress_tasks = Vec::new();
    let mut egress_addresses = Vec::new();
    let (tracing, mut egress) = if config.egress.enabled() {
        let links = Arc::new(LinkRegistry::new(config.egress.link_window));
        let https = config.egress.forward.is_some()
            || config.egress.routes.iter().any(|r| r.target.is_tls())
            || config
                .egress
                .dbs
                .iter()
                .any(crate::EgressDb::server_may_use_tls);
        let trust = match (&config.egress.ca, https) {
            (Some(ca), _) => reprise_net::tls::Trust::CaFile(ca),
            (None, true) => reprise_net::tls::Trust::System,
            (None, false) => reprise_net::tls::Trust::Nobody,
        };
        let egress_tls = reprise_net::tls::client_config_for(trust)?;
        let mut taken = vec![local_addr];
        let forward_proxy = match config.egress.forward {
            Some(at) => {
                let proxy = crate::egress::start_forward_proxy(
                    &config,
                    at,
                    &recorder,
                    &links,
                    &egress_tls,
                    &stopped,
                )
                .await?;
                taken.push(proxy.addr);
                Some(proxy)
            }
            None => None,
        };
        let routes = crate::egress::bind_routes(&config, listeners.len(), &mut taken)?;
        egress_addresses.extend(routes.addresses.iter().cloned());
        let databases = crate::egress::bind_dbs(&config, listeners.len(), &mut taken)?;
        egress_addresses.extend(databases.addresses.iter().cloned());
        if let Some(proxy) = forward_proxy {
            egress_addresses.push(("--egress".to_string(), proxy.addr));
            egress_tasks.push(proxy.task);
        }
        let tracing = InboundTracing {
            links: Arc::clone(&links),
            fresh_trace: config.egress.fresh_trace,
        };
        let egress = Egress {
            routes,
            databases,
            database_tls: Arc::new(database_tls(&egress_tls)),
            redis_tls: Arc::new(egress_tls.clone()),
            links,
            tls: egress_tls,
        };
        (Some(tracing), Some(egress))
    } else {
        (None, None)
    };
    // With egress under --match or the rate cap, inbound calls are judged
    // on the writer thread, which holds their downstream calls until the
    // verdict: the shared handle, not a serving thread's own (for the
    // routes' calls too).
    let shared_handle = tracing.is_some() && recorder.gated();
    let mut serving = Vec::with_capacity(listeners.len());
    // HTTP/1.1 connections to the upstream come out of the same budget
    // as the clients' (`--max-connections`, sized for two descriptors a
    // client): an HTTP/2 client's streams each take one, so without a
    // bound one client could use every descriptor.
    let http1_connections = (config.limits.max_connections / listeners.len().max(1)).max(1);
    for (i, listener) in listeners.into_iter().enumerate() {
        let local = if shared_handle {
            recorder.clone()
        } else {
            recorder.local()
        };
        let mut forwarder = Forwarder::new(
            config.clone(),
            local.clone(),
            origin.clone(),
            &tls,
            Arc::clone(&upstream),
            http1_connections,
        )?;
        forwarder.tracing = tracing.clone();
        let forwarder = Arc::new(forwarder);
        let (route_servers, db_servers) = match &mut egress {
            Some(egress) => (
                egress.routes.take(
                    &config,
                    &local,
                    &egress.links,
                    &egress.tls,
                    http1_connections,
                )?,
                egress.databases.take(
                    &config,
                    &local,
                    &egress.links,
                    (&egress.database_tls, &egress.redis_tls),
                ),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProxyError::Internal(format!("cannot start a serving thread: {e}")))?;
        let (acceptor, stopped, gate) = (acceptor.clone(), stopped.clone(), gate.clone());
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("reprise-serve-{i}"))
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(listener).map_err(|source| ProxyError::Bind {
                            addr: local_addr,
                            source,
                        })?;
                    // The routes' listeners on this thread, served
                    // alongside the proxy's and drained with it.
                    let route_builder = Arc::new(builder(&forwarder.config));
                    let mut routes: Vec<_> = route_servers
                        .into_iter()
                        .map(|route| {
                            tokio::spawn(route.run(
                                Arc::clone(&route_builder),
                                drain,
                                stopped.clone(),
                            ))
                        })
                        .collect();
                    // And the database listeners', their connections
                    // relayed and recorded here too.
                    routes.extend(
                        db_servers
                            .into_iter()
                            .map(|db| tokio::spawn(db.run(drain, stopped.clone()))),
                    );
                    serve(listener, gate, acceptor, forwarder, stopped).await;
                    let mut result = Ok(());
                    for route in routes {
                        if let Ok(Err(e)) = route.await {
                            result = result.and(Err(e));
                        }
                    }
                    result
                });
                // Calls still running past the drain end with the runtime;
                // then what this thread packed goes to the writer, which
                // is still taking its queue.
                drop(runtime);
                local.flush_within(drain);
                drop(local);
                let _ = done.send(result);
            })
            .map_err(|e| ProxyError::Internal(format!("cannot start a serving thread: {e}")))?;
        serving.push(finished);
    }
    if let Some((admin, _)) = admin {
        tokio::spawn(serve_admin(admin, Arc::clone(&metrics), stopped.clone()));
    }
    let task = tokio::spawn(async move {
        let mut first_error = None;
        for finished in serving {
            if let Ok(Err(e)) = finished.await {
                first_error.get_or_insert(e);
            }
        }
        for task in egress_tasks {
            let _ = task.await;
        }
        // Every serving thread has drained: the recorder writes its queue
        // and closes the sink.
        let closed = tokio::task::spawn_blocking(move || thread.close(&recorder, drain))
            .await
            .map_err(|e| ProxyError::Internal(e.to_string()))?
            .map_err(ProxyError::from);
        match first_error {
            Some(e) => Err(e),
            None => closed,
        }
    });
    Ok(RunningProxy {
        local_addr,
        admin_addr,
        stop,
        task,
        metrics,
        upstream,
        egress: egress_addresses,
    })
}

/// The egress listeners bound once per serving thread, and what their
/// servers on every thread share.
struct Egress {
    routes: crate::egress::BoundRoutes,
    databases: crate::egress::BoundDbs,
    /// How PostgreSQL listeners reach their servers over TLS (ALPN
    /// `postgresql`).
    database_tls: Arc<rustls::ClientConfig>,
    /// How Redis listeners reach `rediss://` servers.
    redis_tls: Arc<rustls::ClientConfig>,
    links: Arc<LinkRegistry>,
    /// How routes reach https downstreams.
    tls: rustls::ClientConfig,
}

/// The TLS a database listener reaches its server with: the egress
/// trust, offering PostgreSQL's ALPN (PostgreSQL 17 refuses others).
fn database_tls(egress: &rustls::ClientConfig) -> rustls::ClientConfig {
    let mut config = egress.clone();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config
}

/// Streams an HTTP/2 client may have open at once on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 128;

pub(crate) fn builder(config: &ProxyConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The connection's own clocks (`listener`) time request heads,
        // from the connection's start and between calls.
        .header_read_timeout(None)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        // nginx's http2_max_concurrent_streams; each stream of a call
        // forwarded over HTTP/1.1 holds an upstream connection.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn serve(
    listener: TcpListener,
    gate: ConnectionGate,
    acceptor: Option<TlsAcceptor>,
    forwarder: Arc<Forwarder>,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(&forwarder.config));
    let drain = forwarder.config.drain_timeout;
    // What this thread packed reaches the tape within a block's age, also
    // while no call ends.
    let recorder = forwarder.recorder.clone();
    // Calls' records are packed after their answers are written, by this
    // task (a thread's own handle only).
    let packing = recorder.packing().map(tokio::spawn);
    let ticking = tokio::spawn(async move {
        let mut every = tokio::time::interval(RECORDER_TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            recorder.tick();
        }
    });
    loop {
        tokio::select! {
            accepted = gate.accept(&listener) => {
                let _ = accepted.stream.set_nodelay(true);
                let peer = accepted.peer;
                let forwarder = Arc::clone(&forwarder);
                let peer_ip = reprise_net::hop::client_ip(peer);
                let service = service_fn(move |request| {
                    forward(Arc::clone(&forwarder), peer, peer_ip.clone(), request)
                });
                tokio::spawn(serve_connection(
                    accepted,
                    acceptor.clone(),
                    Arc::clone(&builder),
                    service,
                    stopped.clone(),
                ));
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    // Each connection closes gracefully once told to stop; calls in
    // flight have the drain to finish.
    let _ = tokio::time::timeout(drain, gate.all_closed()).await;
    ticking.abort();
    if let Some(packing) = packing {
        packing.abort();
    }
}

/// `/metrics` (Prometheus text) and `/healthz` until shutdown.
async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    // A gate of its own, with room kept for it below RLIMIT_NOFILE:
    // `/metrics` answers while the proxy is at --max-connections.
    let limits = ConnectionLimits {
        max_connections: ADMIN_CONNECTIONS,
        header_timeout: ADMIN_TIMEOUT,
        idle_timeout: ADMIN_TIMEOUT,
    };
    let gate = ConnectionGate::new("the admin endpoint", limits, ConnectionMetrics::default());
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        tokio::select! {
            accepted = gate.accept(&listener) => {
                let metrics = Arc::clone(&metrics);
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, std::convert::Infallible>(admin_response(request.uri().path(), &metrics)) }
                });
                tokio::spawn(serve_connection(accepted, None, Arc::clone(&builder), service, stopped.clone()));
            }
            _ = stopped.changed() => return,
        }
    }
}

fn admin_response(path: &str, metrics: &Metrics) -> http::Response<Full<Bytes>> {
    let (status, kind, body) = match path {
        "/metrics" => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        // 503 while the recording cannot be written (exchanges are being
        // dropped), with why; ok again once it writes.
        "/healthz" => match metrics.degraded() {
            Some(reason) => (
                503,
                "text/plain; charset=utf-8",
                format!("degraded: {reason}\n"),
            ),
            None => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
        },
        _ => (
            404,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(value) = http::HeaderValue::from_str(kind) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_threads_default_to_one_per_two_cores() {
        let mut config = ProxyConfig::new(
            "127.0.0.1:0"
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            crate::config::Upstream::parse("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}")),
        );
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(serving_threads(&config), (cores / 2).max(1));
        config.threads = Some(3);
        assert_eq!(serving_threads(&config), 3);
    }
}
