//! The mock inside the sandbox: `reprise_mock::server` serving the
//! recording on listeners opened inside the namespace, each standing in
//! for the recorded egress listener at its address as `reprise mock`
//! serves it (a route's listener directly, the forward proxy's behind the
//! egress front: CONNECT, TLS with the local CA, h2c), writing every call
//! it got to the `out` tape.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use reprise_intercept::{Leaves, LocalCa};
use reprise_mock::server::{MockHandle, MockListener, MockServer, ServerOptions};
use reprise_mock::{MockStore, RecordedListener};
use reprise_proxy::{ConnectionGate, ConnectionLimits, ConnectionMetrics};

use super::super::mock::Gated;
use super::sandboxed::MockSummary;

/// A mock serving until [`RunningMock::stop`], on a runtime of its own
/// (its sockets were opened inside the namespace; it opens none).
pub(crate) struct RunningMock {
    runtime: tokio::runtime::Runtime,
    serving: Serving,
    /// Which replayed exchange is in flight, for the database calls
    /// (which carry no headers to tell it).
    db_scopes: Arc<reprise_mock::DbScopes>,
}

/// Tells the mock's database scopes which replayed exchange is in flight.
struct ScopeWatcher(Arc<reprise_mock::DbScopes>);

impl reprise_replay::CallWatcher for ScopeWatcher {
    fn started(&self, recorded_id: &[u8]) {
        self.0.entered(recorded_id);
    }

    fn ended(&self, recorded_id: &[u8]) {
        self.0.left(recorded_id);
    }
}

enum Serving {
    Listeners(MockHandle),
    /// A recording with no egress listener: nothing to serve (every
    /// call the service makes is an escape).
    Nothing(MockServer),
}

/// Starts serving `store` on `listeners`, each standing in for the
/// recorded listener beside it, as `reprise mock` serves them (the
/// forward proxy's listener behind the egress front); every call goes
/// to the new tape `out`. TLS tunnels are terminated with certificates
/// from `ca` (without one, a TLS tunnel is refused with a warning).
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
    let leaves = ca
        .map(|ca| Leaves::new(ca).map(Arc::new))
        .transpose()
        .context("the local CA")?;
    let options = ServerOptions {
        out: Some(reprise_mock::OutStore::tape(&out)),
        log: log.then(|| {
            Arc::new(|line: &str| eprintln!("reprise: mock: {line}"))
                as reprise_mock::server::LogSink
        }),
        // PostgreSQL clients that ask for TLS get a leaf of the same CA.
        db_tls: crate::commands::mock::db_tls(leaves.as_ref()),
        ..ServerOptions::default()
    };
    let server = MockServer::new(Arc::new(store), options).context("the mock")?;
    let db_scopes = server.db_scopes();
    let listeners: Vec<MockListener> = listeners
        .into_iter()
        .map(|(listener, recorded)| MockListener::recorded(listener, recorded))
        .collect();
    let gate = ConnectionGate::new(
        "mock",
        ConnectionLimits::default(),
        ConnectionMetrics::default(),
    );
    let serving = if listeners.is_empty() {
        Serving::Nothing(server)
    } else {
        Serving::Listeners(
            runtime
                .block_on(server.serve(listeners, Arc::new(Gated::new(gate, leaves))))
                .context("the mock")?,
        )
    };
    Ok(RunningMock {
        runtime,
        serving,
        db_scopes,
    })
}

impl RunningMock {
    /// What the replay tells as each call starts and ends, so that the
    /// mock serves a database call in the scope of the one replayed
    /// exchange in flight.
    pub(crate) fn watcher(&self) -> reprise_replay::CallWatcherHandle {
        reprise_replay::CallWatcherHandle(Arc::new(ScopeWatcher(Arc::clone(&self.db_scopes))))
    }

    /// Stops serving (calls in flight finish), closes the `out` tape;
    /// what was served and missed.
    pub(crate) fn stop(self) -> anyhow::Result<MockSummary> {
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
