//! The mock inside the sandbox: `reprise_mock::server` serving the
//! recording on listeners opened inside the namespace, each standing in
//! for the recorded egress listener at its address (a route's listener
//! directly, the forward proxy's behind the egress front: CONNECT, TLS
//! with the local CA, h2c), writing every call it got to the `out` tape.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use reprise_intercept::{Front, Leaves, LocalCa};
use reprise_mock::server::{MockHandle, MockListener, MockServer, PlainConnections, ServerOptions};
use reprise_mock::{MockStore, RecordedListener};

use super::proxy_front::MockHandler;

use super::sandboxed::MockSummary;

/// A mock serving until [`RunningMock::stop`], on a runtime of its own
/// (its sockets were opened inside the namespace; it opens none).
pub(crate) struct RunningMock {
    runtime: tokio::runtime::Runtime,
    serving: Serving,
    /// The fronts of the forward proxy's listeners.
    fronts: Vec<tokio::task::JoinHandle<()>>,
}

enum Serving {
    Listeners(MockHandle),
    /// No route listener (the forward proxy's, or none): the server
    /// serves through the fronts alone, or not at all.
    Nothing(MockServer),
}

/// Starts serving `store` on `listeners`, each standing in for the
/// recorded listener beside it; every call goes to the new tape `out`.
/// The forward proxy's listeners terminate TLS with certificates from
/// `ca` (without one, a TLS tunnel fails its handshake).
pub(crate) fn start(
    store: MockStore,
    listeners: Vec<(TcpListener, RecordedListener)>,
    ca: Option<Arc<LocalCa>>,
    out: PathBuf,
    log: bool,
) -> anyhow::Result<RunningMock> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("reprise-test-mock")
        .enable_all()
        .build()
        .context("cannot start the mock's runtime")?;
    let options = ServerOptions {
        out: Some(out),
        log: log.then(|| {
            Arc::new(|line: &str| eprintln!("reprise: mock: {line}"))
                as reprise_mock::server::LogSink
        }),
        ..ServerOptions::default()
    };
    let server = MockServer::new(Arc::new(store), options).context("the mock")?;
    let leaves = ca
        .map(|ca| Leaves::new(ca).map(Arc::new))
        .transpose()
        .context("the local CA")?;
    let mut routes = Vec::new();
    let mut fronts = Vec::new();
    for (listener, recorded) in listeners {
        if recorded.route.is_some() {
            routes.push(MockListener::recorded(listener, recorded));
            continue;
        }
        let front = Front::new(
            MockHandler::new(server.service(&recorded.listen, Some(&recorded))),
            leaves.clone(),
        );
        let listener = {
            let _entered = runtime.enter();
            listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
                .with_context(|| format!("the mock at {recorded}"))?
        };
        fronts.push(runtime.spawn(async move { front.serve(listener).await }));
    }
    let serving = if routes.is_empty() {
        Serving::Nothing(server)
    } else {
        Serving::Listeners(
            runtime
                .block_on(server.serve(routes, Arc::new(PlainConnections::default())))
                .context("the mock")?,
        )
    };
    Ok(RunningMock {
        runtime,
        serving,
        fronts,
    })
}

impl RunningMock {
    /// Stops serving (calls in flight finish), closes the `out` tape;
    /// what was served and missed.
    pub(crate) fn stop(self) -> anyhow::Result<MockSummary> {
        for front in &self.fronts {
            front.abort();
        }
        let stats = match self.serving {
            Serving::Listeners(handle) => self.runtime.block_on(handle.stop()),
            Serving::Nothing(server) => server.finish(),
        }
        .context("the mock")?;
        Ok(MockSummary {
            report: stats.report,
            written: stats.written,
        })
    }
}
