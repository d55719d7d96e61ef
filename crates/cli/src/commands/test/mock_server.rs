//! The mock inside the sandbox: `reprise_mock::MockService` served on
//! listeners opened inside the namespace, HTTP/1.1 and h2c, each call
//! scoped by the replayed exchange it names.
//!
//! Interim: the mock library's own server (pre-bound listeners, `--out`)
//! replaces this file when it lands; until then the calls the service
//! made are not written to `downstream.tape`.

use std::convert::Infallible;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use reprise_mock::{MockReport, MockService, MockStore, ReplayScopes};
use tower_service::Service;

use super::egress::EgressListener;

/// A mock serving until [`RunningMock::stop`].
pub(crate) struct RunningMock {
    store: Arc<MockStore>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
}

/// Starts serving `store` on `listeners` (one per recorded egress
/// listener, in the same order): a route's listener answers its calls as
/// made to the route's recorded authority.
pub(crate) fn start(
    store: MockStore,
    listeners: Vec<(TcpListener, EgressListener)>,
    _out: PathBuf,
    log: bool,
) -> anyhow::Result<RunningMock> {
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the mock's runtime")?;
    let scopes = Arc::new(ReplayScopes::new());
    let mut bound = Vec::new();
    {
        let _entered = runtime.enter();
        for (listener, egress) in listeners {
            listener
                .set_nonblocking(true)
                .context("the mock's listener")?;
            let listener =
                tokio::net::TcpListener::from_std(listener).context("the mock's listener")?;
            let mut service = MockService::new(Arc::clone(&store));
            if let Some(authority) = egress.authority.clone() {
                service = service.authority(authority);
            }
            bound.push((listener, service));
        }
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("reprise-test-mock".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (listener, service) in bound {
                    let scopes = Arc::clone(&scopes);
                    let mut stopped = stopped.clone();
                    tasks.push(tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                accepted = listener.accept() => {
                                    let Ok((stream, _)) = accepted else { continue };
                                    let _ = stream.set_nodelay(true);
                                    let service = service.clone();
                                    let scopes = Arc::clone(&scopes);
                                    tokio::spawn(async move {
                                        let answer = service_fn(move |mut request| {
                                            let key = scopes.scope(&mut request);
                                            let mut service = service.clone();
                                            async move {
                                                if log {
                                                    eprintln!(
                                                        "reprise: mock: {} {} ({})",
                                                        request.method(),
                                                        request.uri(),
                                                        key.as_ref().map_or_else(
                                                            || "no replayed call".to_string(),
                                                            |k| reprise_model::display_id(&k.replay_of)
                                                        )
                                                    );
                                                }
                                                let response = match service.call(request).await {
                                                    Ok(response) => response.map(http_body_util::Either::Left),
                                                    Err(error) => reprise_mock::own_answer(
                                                        http::StatusCode::BAD_GATEWAY,
                                                        reprise_model::protocol::MOCK_FAILURE_HEADER,
                                                        format!("reprise mock: {}\n", reprise_model::error::one_line(error.as_ref())),
                                                    )
                                                    .map(http_body_util::Either::Right),
                                                };
                                                Ok::<_, Infallible>(response)
                                            }
                                        });
                                        let _ = auto::Builder::new(TokioExecutor::new())
                                            .serve_connection(TokioIo::new(stream), answer)
                                            .await;
                                    });
                                }
                                _ = stopped.changed() => return,
                            }
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        })
        .context("cannot start the mock's thread")?;
    Ok(RunningMock {
        store,
        stop,
        thread,
    })
}

impl RunningMock {
    /// Stops serving; what was served and missed.
    pub(crate) fn stop(self) -> anyhow::Result<MockReport> {
        let _ = self.stop.send(true);
        if self.thread.join().is_err() {
            anyhow::bail!("the mock stopped unexpectedly");
        }
        Ok(self.store.report())
    }
}
