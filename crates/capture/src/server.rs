//! The listener: HTTP/1.1 and HTTP/2 on one port (h2c with prior
//! knowledge, or TLS with ALPN), each connection served by hyper; the
//! admin endpoint; graceful shutdown, which drains in-flight calls, then
//! lets the recorder write its queue and close the sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use reprise_model::Sink;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::ProxyConfig;
use crate::error::CaptureError;
use crate::forward::{Forwarder, forward};
use crate::metrics::{Metrics, RecorderStats};
use crate::recorder::{Recorder, RecorderThread, Rules};
use crate::recording::Origin;

/// Longest a TLS handshake may take before the connection is closed.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A recording proxy that is running.
pub struct RunningProxy {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), CaptureError>>,
    metrics: Arc<Metrics>,
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
    pub async fn shutdown(self) -> Result<RecorderStats, CaptureError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result.map(|()| self.metrics.snapshot()),
            Err(e) => Err(CaptureError::Internal(format!("proxy task failed: {e}"))),
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), CaptureError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| CaptureError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| CaptureError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Binds the listener (and the admin endpoint), starts serving; returns
/// once both listen.
pub async fn start(config: ProxyConfig, sink: Box<dyn Sink>) -> Result<RunningProxy, CaptureError> {
    let acceptor = match &config.tls {
        Some((cert, key)) => Some(TlsAcceptor::from(reprise_net::tls::server_config(
            cert, key,
        )?)),
        None => None,
    };
    let (listener, local_addr) = bind(config.listen).await?;
    let admin = match config.admin {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|(_, addr)| *addr);
    let metrics = Arc::new(Metrics::new());
    let rules = Rules {
        filter: config.filter.clone(),
        max_rate: config.max_record_rate,
        redactor: config.redactor.clone(),
        sample_rate: config.sampler.rate(),
    };
    let (recorder, thread) =
        Recorder::start(sink, rules, config.queue_capacity, Arc::clone(&metrics)).map_err(|e| {
            CaptureError::Internal(format!("cannot start the recorder thread: {e}"))
        })?;
    let origin = Origin {
        service: config.service.clone(),
        listener: local_addr.to_string(),
        scheme: if acceptor.is_some() { "https" } else { "http" },
        upstream: config.upstream.authority.to_string(),
        max_body: config.max_body,
    };
    let forwarder = Arc::new(Forwarder::new(config, recorder, origin)?);
    let (stop, stopped) = watch::channel(false);
    if let Some((admin, _)) = admin {
        tokio::spawn(serve_admin(admin, Arc::clone(&metrics), stopped.clone()));
    }
    let task = tokio::spawn(serve(listener, acceptor, forwarder, stopped, thread));
    Ok(RunningProxy {
        local_addr,
        admin_addr,
        stop,
        task,
        metrics,
    })
}

fn builder(config: &ProxyConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    forwarder: Arc<Forwarder>,
    mut stopped: watch::Receiver<bool>,
    thread: RecorderThread,
) -> Result<(), CaptureError> {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&forwarder.config));
    let drain = forwarder.config.drain_timeout;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: wait a moment, go on.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let forwarder = Arc::clone(&forwarder);
                let service = service_fn(move |request| forward(Arc::clone(&forwarder), peer, request));
                match &acceptor {
                    None => {
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                    Some(acceptor) => {
                        spawn_tls(acceptor.clone(), stream, Arc::clone(&builder), service, &graceful, stopped.clone());
                    }
                }
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    // Calls still running past the drain keep forwarding; what they
    // finish from now on is not recorded.
    let recorder = forwarder.recorder.clone();
    drop(forwarder);
    tokio::task::spawn_blocking(move || thread.close(&recorder, drain))
        .await
        .map_err(|e| CaptureError::Internal(e.to_string()))?
        .map_err(CaptureError::Sink)
}

/// Handshakes off the accept loop, then serves the connection; it joins
/// the graceful shutdown once it is up.
fn spawn_tls<S>(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: S,
    graceful: &GracefulShutdown,
    mut stopped: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::forward::ProxyBody>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    // The watcher is taken now so that shutdown waits for this connection.
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let Ok(Ok(tls)) =
            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
        else {
            return;
        };
        if *stopped.borrow_and_update() {
            return;
        }
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), service)
            .into_owned();
        let _ = watcher.watch(connection).await;
    });
}

/// `/metrics` (Prometheus text) and `/healthz` until shutdown.
async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let metrics = Arc::clone(&metrics);
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, std::convert::Infallible>(admin_response(request.uri().path(), &metrics)) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
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
        "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
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
