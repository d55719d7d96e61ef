//! The listener: HTTP/1.1 and h2c (prior knowledge) on one port, each
//! connection served by hyper; graceful shutdown drains in-flight calls,
//! then the recorder drains its queue and closes the sink.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use reprise_model::Sink;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ProxyConfig;
use crate::error::CaptureError;
use crate::forward::{Forwarder, forward};
use crate::recorder::{Recorder, RecorderCounters, RecorderStats, RecorderThread, Rules};

/// A recording proxy that is running.
pub struct RunningProxy {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), CaptureError>>,
    counters: Arc<RecorderCounters>,
}

impl RunningProxy {
    /// Where it listens (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The recorder's counters now.
    pub fn stats(&self) -> RecorderStats {
        self.counters.snapshot()
    }

    /// Stops accepting, lets in-flight calls finish (up to the drain
    /// timeout), drains the recording queue and closes the sink.
    pub async fn shutdown(self) -> Result<RecorderStats, CaptureError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result.map(|()| self.counters.snapshot()),
            Err(e) => Err(CaptureError::Internal(format!("proxy task failed: {e}"))),
        }
    }
}

/// Binds the listener and starts serving; returns once it listens.
pub async fn start(config: ProxyConfig, sink: Box<dyn Sink>) -> Result<RunningProxy, CaptureError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| CaptureError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| CaptureError::Bind {
        addr: config.listen,
        source,
    })?;
    let counters = Arc::new(RecorderCounters::default());
    let rules = Rules {
        filter: config.filter.clone(),
        max_rate: config.max_record_rate,
        redactor: config.redactor.clone(),
        sample_rate: config.sampler.rate(),
    };
    let (recorder, thread) =
        Recorder::start(sink, rules, config.queue_capacity, Arc::clone(&counters)).map_err(
            |e| CaptureError::Internal(format!("cannot start the recorder thread: {e}")),
        )?;
    let (stop, stopped) = watch::channel(false);
    let drain = config.drain_timeout;
    let forwarder = Arc::new(Forwarder::new(config, recorder));
    let task = tokio::spawn(serve(
        listener, local_addr, forwarder, stopped, drain, thread,
    ));
    Ok(RunningProxy {
        local_addr,
        stop,
        task,
        counters,
    })
}

async fn serve(
    listener: TcpListener,
    local_addr: SocketAddr,
    forwarder: Arc<Forwarder>,
    mut stopped: watch::Receiver<bool>,
    drain: std::time::Duration,
    thread: RecorderThread,
) -> Result<(), CaptureError> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let listener_name = local_addr.to_string();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: wait a moment, go on.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let forwarder = Arc::clone(&forwarder);
                let name = listener_name.clone();
                let service = service_fn(move |request| forward(Arc::clone(&forwarder), peer, name.clone(), request));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
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
