//! Serving a database listener: accepting connections, and what each
//! connection shares with the mock server (the store, the scopes, the
//! log, the counts, the `--out` tape).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reprise_model::terminal::escape;
use reprise_model::{Exchange, Flags, Protocol, Replay, Role, display_id};
use tokio::sync::{Notify, watch};

use crate::listeners::RecordedRoute;
use crate::respond::Pool;
use crate::scope::MockScope;
use crate::scopes::ReplayKey;
use crate::server::{AcceptedStream, Connections, Handler};

use super::DbProtocol;
use super::connection::DbConnection;
use super::stream::DbStream;

/// The TLS configuration a PostgreSQL listener answers an SSLRequest
/// with, for the server name the client asked for (SNI, else the
/// listener's address): `reprise mock` mints a leaf from the reprise CA.
/// Without one, SSLRequest is answered `N` (no TLS).
pub type DbTls = Arc<dyn Fn(&str) -> Result<Arc<rustls::ServerConfig>, String> + Send + Sync>;

/// The SQLSTATE of a PostgreSQL miss. Class `RP` is one PostgreSQL leaves
/// to implementations (classes starting with I-Z), so no client mistakes
/// it for one of the server's own errors; and it is not class `08`
/// (connection exception) or `57P` (operator intervention), which pools
/// and drivers take for a broken connection: a miss fails the statement,
/// the connection stays usable.
pub const MISS_SQLSTATE: &str = "RP001";

/// Database connections open, for the drain at the stop.
#[derive(Debug, Default)]
pub(crate) struct DbConnections {
    count: AtomicUsize,
    closed: Notify,
    /// Connections accepted so far (names them `route#N`).
    accepted: AtomicU64,
}

impl DbConnections {
    /// The number of the next connection (from 1).
    pub(crate) fn next_number(&self) -> u64 {
        self.accepted.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ends once every connection is closed.
    pub(crate) async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// One open connection, counted until dropped.
struct OpenGuard(Arc<DbConnections>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}

/// What one connection to a database listener knows.
pub(crate) struct DbConn {
    pub handler: Arc<Handler>,
    /// The route's name: the key's database.
    pub route: Arc<RecordedRoute>,
    /// The address `out` exchanges name as their `source.listener`.
    pub listener: Arc<str>,
    /// `route#N`.
    pub connection: String,
    /// The client's address.
    pub client: String,
    /// The listener's own address (the TLS leaf's name when the client
    /// sends no SNI).
    pub local_host: String,
    pub tls: Option<super::DbTls>,
}

/// How a database call was answered, for the log and the counts.
pub(crate) enum Outcome<'a> {
    /// A recorded call answered it.
    Served { recorded: &'a [u8], pool: Pool },
    /// The mock answered by itself (Redis AUTH, PING... with nothing
    /// recorded).
    Own,
    /// Nothing answered: a miss.
    Missed,
}

impl DbConn {
    /// The scope of a call made now (see [`DbScopes`](super::DbScopes)).
    pub fn scope(&self) -> Option<MockScope> {
        self.handler.db_scopes.current()
    }

    /// The bytes of a call kept whole for matching (`--max-body`).
    pub fn max_body(&self) -> u64 {
        self.handler.store.options().max_body as u64
    }

    /// Counts a call in its scope (for the stats) and gives its order
    /// there.
    pub fn count(&self, scope: Option<&MockScope>) -> (Option<ReplayKey>, u32) {
        let key = scope.and_then(MockScope::replay_of).map(|id| ReplayKey {
            replay_of: id.to_vec(),
            run: String::new(),
        });
        let order = self.handler.count(key.as_ref());
        (key, order)
    }

    /// Counts and logs how `call` was answered (the HTTP mock's log line:
    /// the call, its scope, what answered it).
    pub fn answered(&self, key: Option<&ReplayKey>, call: &str, outcome: &Outcome<'_>) {
        let (pool, miss) = match outcome {
            Outcome::Served { pool, .. } => (Some(*pool), false),
            Outcome::Own => (None, false),
            Outcome::Missed => (None, true),
        };
        self.handler.tally(key, pool, miss);
        let Some(log) = &self.handler.log else {
            return;
        };
        let scope = key.map_or_else(
            || "no replayed call".to_string(),
            |key| format!("replaying {}", display_id(&key.replay_of)),
        );
        let call = escape(call);
        match outcome {
            Outcome::Served { recorded, pool } => log(&format!(
                "{call} ({scope}): answered by recorded {}{}",
                display_id(recorded),
                pool.label()
            )),
            Outcome::Own => log(&format!(
                "{call} ({scope}): answered by the mock itself (nothing recorded matches; the real server would say the same)"
            )),
            Outcome::Missed => log(&format!("{call} ({scope}): missed")),
        }
    }

    /// A line about the connection itself (garbage, a protocol error).
    pub fn note(&self, line: &str) {
        let line = format!("{} {}: {}", self.connection, self.client, escape(line));
        match self.handler.warn.as_ref().or(self.handler.log.as_ref()) {
            Some(sink) => sink(&line),
            None => tracing::warn!("{line}"),
        }
    }

    /// The `out` exchange of a call answered now: placed in its scope,
    /// with the recorded exchange that answered it or the miss flag.
    pub fn out_exchange(
        &self,
        key: Option<&ReplayKey>,
        order: u32,
        protocol: Protocol,
        recorded: Option<&[u8]>,
        miss: bool,
        started_ns: u64,
    ) -> Exchange {
        let now = reprise_model::time::now_ns();
        Exchange {
            id: reprise_model::id::new_id(),
            parent_id: key.map(|k| k.replay_of.clone()).unwrap_or_default(),
            recorded_at_ns: started_ns,
            duration_ns: now.saturating_sub(started_ns),
            source: Some(reprise_model::RecordSource {
                recorder: "mock".into(),
                listener: self.listener.to_string(),
                route: self.route.name.clone(),
                server_addr: self.route.authority.clone(),
                client_addr: self.client.clone(),
                connection: self.connection.clone(),
                ..Default::default()
            }),
            protocol: protocol as i32,
            role: Role::Downstream as i32,
            link: Some(crate::out::link(key.is_some(), order)),
            replay: recorded.map(|id| Replay {
                recorded_id: id.to_vec(),
                ..Default::default()
            }),
            flags: miss.then(|| Flags {
                mock_miss: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Writes `exchange` to the `out` tape, when there is one.
    pub fn keep(&self, exchange: Exchange) {
        if let Some(out) = &self.handler.out {
            out.send(exchange);
        }
    }
}

/// A database listener: what it speaks, and what it stands in for.
pub(crate) struct DbListener {
    pub protocol: DbProtocol,
    /// The recorded route (its name is the database in the keys).
    pub route: RecordedRoute,
    /// The address `out` exchanges name as their `source.listener`.
    pub listen: Arc<str>,
    pub tls: Option<super::DbTls>,
}

impl DbConn {
    /// A connection from `client` to the listener `listen` standing in
    /// for `route`; the `number`th of the server's.
    pub(crate) fn new(
        handler: std::sync::Arc<Handler>,
        route: Arc<RecordedRoute>,
        listen: Arc<str>,
        number: u64,
        client: String,
    ) -> DbConn {
        let tls = handler.db_tls.clone();
        DbConn {
            connection: format!("{}#{number}", route.name),
            handler,
            route,
            listener: listen,
            client,
            local_host: "localhost".to_string(),
            tls,
        }
    }
}

/// Serves the database listener `listener` until `stop` turns true; each
/// connection as its protocol says. Connections still open at the stop
/// close between calls.
pub(crate) fn serve_listener(
    handler: Arc<Handler>,
    listener: tokio::net::TcpListener,
    DbListener {
        protocol,
        route,
        listen,
        tls,
    }: DbListener,
    open: Arc<DbConnections>,
    connections: Arc<dyn Connections>,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let route = Arc::new(route);
    async move {
        let local_host = listener
            .local_addr()
            .map_or_else(|_| "localhost".to_string(), |a| a.ip().to_string());
        loop {
            // Under the server's limits (`reprise mock`: --max-connections,
            // as its HTTP listeners).
            let AcceptedStream {
                stream: tcp,
                peer,
                place,
            } = tokio::select! {
                accepted = connections.accept(&listener) => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let _ = tcp.set_nodelay(true);
            open.count.fetch_add(1, Ordering::AcqRel);
            let guard = OpenGuard(Arc::clone(&open));
            let number = open.next_number();
            let mut conn = DbConn::new(
                Arc::clone(&handler),
                Arc::clone(&route),
                Arc::clone(&listen),
                number,
                peer.to_string(),
            );
            conn.local_host.clone_from(&local_host);
            conn.tls.clone_from(&tls);
            let stop = stop.clone();
            tokio::spawn(async move {
                let _guard = (guard, place);
                DbConnection::new(conn, protocol)
                    .serve(DbStream::Plain(tcp), stop)
                    .await;
            });
        }
    }
}
