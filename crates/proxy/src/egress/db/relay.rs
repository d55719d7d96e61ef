//! The listeners of `--egress-db` and the relay of each connection: bytes
//! passed on as they come, a copy to the protocol's [`Cutter`], and each
//! exchange it cuts recorded, linked to its inbound call.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reprise_model::sample::Sampler;
use reprise_model::{
    ErrorKind, Exchange, Link, LinkKind, Protocol, RecordSource, Role, TransportError,
};
use reprise_record::{ConnectionMetrics, InFlight, LinkRegistry, Recorder};
use reprise_wire::pg::ChannelBindingFilter;
use reprise_wire::{Cutter, DbExchange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{DbProtocol, EgressDb};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::listener::ConnectionGate;

/// Either side of a relayed connection, plain or TLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The `--egress-db` listeners, each bound once per serving thread
/// (`SO_REUSEPORT`, as the reverse proxy's listener and the routes'), not
/// yet served.
pub(crate) struct BoundDbs {
    /// Each listener's name and address (the one bound, for port 0).
    pub(crate) addresses: Vec<(String, SocketAddr)>,
    dbs: Vec<BoundDb>,
}

struct BoundDb {
    db: Arc<EgressDb>,
    addr: SocketAddr,
    /// One for all the listener's threads: `--max-connections` counts its
    /// connections on every thread.
    gate: ConnectionGate,
    /// Connections numbered for `source.connection`, across threads.
    connections: Arc<AtomicU64>,
    /// One per serving thread, taken by [`BoundDbs::take`].
    listeners: Vec<std::net::TcpListener>,
}

/// Binds every `--egress-db` of `config` `threads` times. `listening`:
/// the addresses this process already listens on, which a database
/// listener may not share (`SO_REUSEPORT` would let it, and split their
/// connections); the ones bound here are added to it.
pub(crate) fn bind_dbs(
    config: &ProxyConfig,
    threads: usize,
    listening: &mut Vec<SocketAddr>,
) -> Result<BoundDbs, ProxyError> {
    let mut bound = BoundDbs {
        addresses: Vec::new(),
        dbs: Vec::new(),
    };
    for db in &config.egress.dbs {
        crate::egress::refuse_shared(listening, db.listen)?;
        let (mut listeners, addr) = crate::server::bind_shared(db.listen, threads)?;
        listening.push(addr);
        // Taken from the back, one per thread.
        listeners.reverse();
        bound.addresses.push((db.name.clone(), addr));
        bound.dbs.push(BoundDb {
            db: Arc::new(db.clone()),
            addr,
            gate: ConnectionGate::new(
                &format!("--egress-db {}", db.name),
                config.limits,
                ConnectionMetrics::default(),
            ),
            connections: Arc::new(AtomicU64::new(0)),
            listeners,
        });
    }
    Ok(bound)
}

impl BoundDbs {
    /// One serving thread's share: a [`DbServer`] per listener, recording
    /// into `recorder` (the thread's handle) and linking by `links`;
    /// `(postgres_tls, redis_tls)`: how each protocol's servers are
    /// reached over TLS.
    pub(crate) fn take(
        &mut self,
        config: &ProxyConfig,
        recorder: &Recorder,
        links: &Arc<LinkRegistry>,
        (postgres_tls, redis_tls): (&Arc<rustls::ClientConfig>, &Arc<rustls::ClientConfig>),
    ) -> Vec<DbServer> {
        let mut servers = Vec::with_capacity(self.dbs.len());
        for bound in &mut self.dbs {
            let Some(listener) = bound.listeners.pop() else {
                continue;
            };
            servers.push(DbServer {
                listener,
                gate: bound.gate.clone(),
                shared: Arc::new(DbListener {
                    db: Arc::clone(&bound.db),
                    addr: bound.addr,
                    recorder: recorder.clone(),
                    links: Arc::clone(links),
                    sampler: config.sampler,
                    service: config.service.clone(),
                    max_body: u64::try_from(config.max_body).unwrap_or(u64::MAX),
                    connect_timeout: config.connect_timeout,
                    leaves: config.egress.leaves.clone(),
                    server_tls: Arc::clone(match bound.db.protocol {
                        DbProtocol::Postgres => postgres_tls,
                        DbProtocol::Redis => redis_tls,
                    }),
                    connections: Arc::clone(&bound.connections),
                    warn: config.egress.warn.clone(),
                }),
            });
        }
        servers
    }
}

/// What every connection of one listener on one serving thread shares.
pub(super) struct DbListener {
    pub(super) db: Arc<EgressDb>,
    /// The address bound.
    pub(super) addr: SocketAddr,
    /// The serving thread's handle: its calls are packed on the thread.
    pub(super) recorder: Recorder,
    pub(super) links: Arc<LinkRegistry>,
    pub(super) sampler: Sampler,
    pub(super) service: String,
    pub(super) max_body: u64,
    pub(super) connect_timeout: Duration,
    /// Leaves from the reprise CA, to terminate the TLS a PostgreSQL
    /// client asks for; without them the client is told the listener
    /// speaks no TLS.
    pub(super) leaves: Option<Arc<reprise_intercept::Leaves>>,
    /// How the recorder reaches a server over TLS.
    pub(super) server_tls: Arc<rustls::ClientConfig>,
    /// Connections numbered for `source.connection`, across threads.
    pub(super) connections: Arc<AtomicU64>,
    /// Where warnings go (the recorder's stderr).
    pub(super) warn: Option<reprise_intercept::WarnSink>,
}

impl DbListener {
    pub(super) fn warn(&self, message: String) {
        if let Some(warn) = &self.warn {
            warn(&message);
        }
    }
}

/// One database listener on one serving thread.
pub(crate) struct DbServer {
    listener: std::net::TcpListener,
    gate: ConnectionGate,
    shared: Arc<DbListener>,
}

impl DbServer {
    /// Serves the listener's connections on the current (the serving
    /// thread's) runtime until `stopped` turns true; each connection then
    /// has `drain` to end by itself.
    pub(crate) async fn run(
        self,
        drain: Duration,
        mut stopped: watch::Receiver<bool>,
    ) -> Result<(), ProxyError> {
        let DbServer {
            listener,
            gate,
            shared,
        } = self;
        let addr = shared.addr;
        let listener =
            TcpListener::from_std(listener).map_err(|source| ProxyError::Bind { addr, source })?;
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = gate.accept(&listener) => {
                    let _ = accepted.stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let stopped = stopped.clone();
                    connections.spawn(async move {
                        let peer = accepted.peer;
                        // The place under --max-connections is held until
                        // the connection ends.
                        let (stream, _slot) = accepted.into_parts();
                        serve(shared, stream, peer, stopped, drain).await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// One client connection: the server reached, the protocol's start
/// negotiated (PostgreSQL's TLS), then relayed and recorded.
async fn serve(
    shared: Arc<DbListener>,
    client: TcpStream,
    peer: SocketAddr,
    stopped: watch::Receiver<bool>,
    drain: Duration,
) {
    let number = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let server = match tokio::time::timeout(
        shared.connect_timeout,
        TcpStream::connect(shared.db.server.as_str()),
    )
    .await
    {
        Ok(Ok(server)) => server,
        Ok(Err(error)) => {
            refuse(
                &shared,
                client,
                &format!("cannot reach {}: {error}", shared.db.server),
            )
            .await;
            return;
        }
        Err(_) => {
            refuse(
                &shared,
                client,
                &format!(
                    "cannot reach {} within {:?}",
                    shared.db.server, shared.connect_timeout
                ),
            )
            .await;
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let connection = Connection {
        shared: Arc::clone(&shared),
        peer,
        source: RecordSource {
            service: shared.service.clone(),
            recorder: "proxy".into(),
            listener: shared.addr.to_string(),
            route: shared.db.name.clone(),
            client_addr: peer.to_string(),
            server_addr: shared.db.server.clone(),
            connection: format!("{}#{number}", shared.db.name),
            ..Default::default()
        },
        stopped,
        drain,
    };
    match shared.db.protocol {
        DbProtocol::Redis => {
            let server: Box<dyn Io> = if shared.db.server_tls {
                match tls_to_server(&shared, server).await {
                    Ok(server) => Box::new(server),
                    Err(why) => {
                        refuse(&shared, client, &why).await;
                        return;
                    }
                }
            } else {
                Box::new(server)
            };
            let cutter =
                reprise_wire::redis::Conversation::new(reprise_wire::redis::RedisOptions {
                    max_body: shared.max_body,
                });
            relay(
                &connection,
                Box::new(client),
                server,
                Vec::new(),
                Box::new(cutter),
                None,
            )
            .await;
        }
        DbProtocol::Postgres => {
            super::postgres::serve(&connection, client, server).await;
        }
    }
}

/// TLS to the server (`rediss://`), checked against the egress trust
/// for the URL's host.
async fn tls_to_server(
    shared: &DbListener,
    server: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let host = server_host(&shared.db.server);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a name TLS can check: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&shared.server_tls));
    tokio::time::timeout(shared.connect_timeout, connector.connect(name, server))
        .await
        .map_err(|_| {
            format!(
                "TLS to the server {} took longer than {:?}",
                shared.db.server, shared.connect_timeout
            )
        })?
        .map_err(|e| format!("TLS to the server {}: {e}", shared.db.server))
}

/// The host of a `host:port` (an IPv6 literal without its brackets).
pub(super) fn server_host(server: &str) -> &str {
    server
        .rsplit_once(':')
        .map_or(server, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Tells a client its server cannot be reached, in its protocol, and
/// closes.
async fn refuse(shared: &DbListener, mut client: TcpStream, why: &str) {
    shared.warn(format!("--egress-db {}: {why}", shared.db.name));
    let message = format!("reprise --egress-db {}: {why}", shared.db.name);
    let answer = match shared.db.protocol {
        DbProtocol::Postgres => reprise_wire::postgres_fatal("08006", &message),
        DbProtocol::Redis => reprise_wire::redis::error_reply(&message),
    };
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
}

/// One relayed connection, as its exchanges are recorded.
pub(super) struct Connection {
    pub(super) shared: Arc<DbListener>,
    pub(super) peer: SocketAddr,
    /// What each exchange's `source` says of the connection (its
    /// `connection`: the listener's name and the connection's number),
    /// made once.
    source: RecordSource,
    /// Set when the recorder stops: the connection then has the drain to
    /// end by itself.
    pub(super) stopped: watch::Receiver<bool>,
    pub(super) drain: Duration,
}

/// What the two directions of a relay share: the conversation, and which
/// inbound calls were in flight as the client's bytes came.
struct Watch {
    cutter: Box<dyn Cutter>,
    /// (when, what was in flight), one entry per change, oldest first.
    in_flight: VecDeque<(u64, InFlight)>,
}

/// Entries of [`Watch::in_flight`] kept at most: a connection whose
/// exchanges never end (COPY, pub/sub) cannot grow it.
const IN_FLIGHT_KEPT: usize = 64;

impl Watch {
    /// Each of `exchanges` (in order) with what was in flight when it
    /// began.
    fn with_in_flight(&mut self, exchanges: Vec<DbExchange>) -> Vec<(DbExchange, InFlight)> {
        exchanges
            .into_iter()
            .map(|exchange| {
                let in_flight = self.in_flight_at(exchange.started_ns);
                (exchange, in_flight)
            })
            .collect()
    }

    /// What was in flight at `at_ns`: the last entry at or before it.
    fn in_flight_at(&mut self, at_ns: u64) -> InFlight {
        while self.in_flight.len() > 1 && self.in_flight.get(1).is_some_and(|(at, _)| *at <= at_ns)
        {
            self.in_flight.pop_front();
        }
        match self.in_flight.front() {
            Some((at, seen)) if *at <= at_ns => *seen,
            _ => InFlight::Nothing,
        }
    }
}

/// Which way bytes go.
#[derive(Clone, Copy)]
enum Direction {
    FromClient,
    FromServer,
}

/// Relays `client` and `server` until both directions end (or the
/// recorder stops and the drain passes), feeding `cutter`; `first`: bytes
/// already read from the client, passed on before anything else.
pub(super) async fn relay(
    connection: &Connection,
    client: Box<dyn Io>,
    server: Box<dyn Io>,
    first: Vec<u8>,
    cutter: Box<dyn Cutter>,
    filter: Option<ChannelBindingFilter>,
) {
    let (mut stopped, drain) = (connection.stopped.clone(), connection.drain);
    let watch = Mutex::new(Watch {
        cutter,
        in_flight: VecDeque::new(),
    });
    let (client_read, mut client_write) = tokio::io::split(client);
    let (server_read, mut server_write) = tokio::io::split(server);
    let mut broke = None;
    if !first.is_empty() {
        let now = reprise_model::time::now_ns();
        see(connection, &watch, Direction::FromClient, &first, now);
        if let Err(error) = server_write.write_all(&first).await {
            broke = Some(format!("the server's connection broke: {error}"));
        }
    }
    if broke.is_none() {
        let up = pump(
            connection,
            &watch,
            (Direction::FromClient, None),
            client_read,
            &mut server_write,
        );
        let down = pump(
            connection,
            &watch,
            (Direction::FromServer, filter),
            server_read,
            &mut client_write,
        );
        let both = async { tokio::join!(up, down) };
        let stop = async {
            let _ = stopped.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            (up, down) = both => broke = up.err().or(down.err()),
            () = stop => broke = Some("the recorder stopped".to_string()),
        }
    }
    let now = reprise_model::time::now_ns();
    let closed = {
        let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        let exchanges = watch.cutter.close(now, broke.as_deref());
        watch.with_in_flight(exchanges)
    };
    for (exchange, in_flight) in closed {
        record(connection, exchange, in_flight);
    }
}

/// Passes one direction's bytes on until it ends; the reason it broke,
/// if it did.
async fn pump(
    connection: &Connection,
    watch: &Mutex<Watch>,
    (direction, mut filter): (Direction, Option<ChannelBindingFilter>),
    mut from: impl AsyncRead + Unpin,
    to: &mut (impl AsyncWrite + Unpin),
) -> Result<(), String> {
    let mut buffer = vec![0u8; 16 << 10];
    let (from_name, to_name) = match direction {
        Direction::FromClient => ("client", "server"),
        Direction::FromServer => ("server", "client"),
    };
    loop {
        let read = from
            .read(&mut buffer)
            .await
            .map_err(|e| format!("the {from_name}'s connection broke: {e}"))?;
        let Some(bytes) = buffer.get(..read).filter(|b| !b.is_empty()) else {
            // Its end, passed on: the other side may still answer.
            let _ = to.shutdown().await;
            return Ok(());
        };
        let now = reprise_model::time::now_ns();
        // A question is seen before it is passed on, so it is always fed
        // before its answer can come back; an answer is passed on first,
        // so the exchange it completes is cut and recorded off the call's
        // latency (a question that arrives meanwhile is fed first: the
        // conversation takes pipelined questions).
        if let Direction::FromClient = direction {
            see(connection, watch, direction, bytes, now);
        }
        let passed = match &mut filter {
            Some(filter) => std::borrow::Cow::Owned(filter.feed(bytes)),
            None => std::borrow::Cow::Borrowed(bytes),
        };
        if filter
            .as_ref()
            .is_some_and(ChannelBindingFilter::is_transparent)
        {
            // Past the start-up: nothing more to rewrite.
            filter = None;
        }
        to.write_all(&passed)
            .await
            .map_err(|e| format!("the {to_name}'s connection broke: {e}"))?;
        if let Direction::FromServer = direction {
            see(connection, watch, direction, bytes, now);
        }
    }
}

/// Feeds `bytes` to the conversation and records what it completed.
/// `now`: when they were read.
fn see(
    connection: &Connection,
    watch: &Mutex<Watch>,
    direction: Direction,
    bytes: &[u8],
    now: u64,
) {
    let done = {
        let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        match direction {
            Direction::FromClient => {
                let seen = connection.shared.links.in_flight();
                if watch.in_flight.back().is_none_or(|(_, last)| *last != seen) {
                    if watch.in_flight.len() >= IN_FLIGHT_KEPT {
                        watch.in_flight.pop_front();
                    }
                    watch.in_flight.push_back((now, seen));
                }
                watch.cutter.client(bytes, now);
            }
            Direction::FromServer => watch.cutter.server(bytes, now),
        }
        let exchanges = watch.cutter.take();
        watch.with_in_flight(exchanges)
    };
    for (exchange, in_flight) in done {
        record(connection, exchange, in_flight);
    }
}

/// Links `cut` to its inbound call, and hands it to the recorder unless
/// sampling leaves it out.
fn record(connection: &Connection, cut: DbExchange, in_flight: InFlight) {
    let shared = &*connection.shared;
    let metrics = shared.recorder.metrics();
    metrics.seen.inc();
    let egress = &metrics.egress;
    let id = reprise_model::id::new_id_bytes();
    let startup = cut.call.startup.is_some();
    let trace = cut
        .traceparent
        .as_deref()
        .and_then(|t| reprise_model::trace::trace_id_of(t.as_bytes()));
    let link = |kind: LinkKind, order: u32| Link {
        kind: kind as i32,
        order,
    };
    let (parent, link, trace_id) = if startup {
        // A connection's start-up serves whichever calls use it later.
        egress.unlinked.inc();
        (None, link(LinkKind::Unlinked, 0), None)
    } else if trace.is_some() {
        let Some((parent, link)) = shared.links.link_by_trace(trace, metrics) else {
            return;
        };
        (parent, link, trace)
    } else {
        match in_flight {
            InFlight::One { trace, id: parent } => match shared.links.adopt(trace, parent) {
                Some((_, false)) => {
                    egress.parent_sampled_out.inc();
                    metrics.sampled_out.inc();
                    return;
                }
                Some((order, true)) => {
                    egress.linked.inc();
                    (Some(parent), link(LinkKind::InFlight, order), Some(trace))
                }
                None => {
                    egress.unlinked.inc();
                    (None, link(LinkKind::Unlinked, 0), None)
                }
            },
            InFlight::Several => {
                egress.ambiguous.inc();
                (None, link(LinkKind::Ambiguous, 0), None)
            }
            InFlight::Nothing => {
                egress.unlinked.inc();
                (None, link(LinkKind::Unlinked, 0), None)
            }
        }
    };
    if parent.is_none() && !shared.sampler.keep(&id) {
        metrics.sampled_out.inc();
        return;
    }
    let error = cut.incomplete.map(|message| TransportError {
        kind: ErrorKind::Reset as i32,
        message,
        after_response_head: false,
    });
    let exchange = Exchange {
        id: id.to_vec(),
        parent_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        trace_id: trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        recorded_at_ns: cut.started_ns,
        duration_ns: cut.ended_ns.saturating_sub(cut.started_ns),
        source: Some(connection.source.clone()),
        protocol: match shared.db.protocol {
            DbProtocol::Postgres => Protocol::Postgres,
            DbProtocol::Redis => Protocol::Redis,
        } as i32,
        role: Role::Downstream as i32,
        error,
        link: Some(link),
        db: Some(cut.call),
        ..Default::default()
    };
    shared.recorder.submit_exchange(exchange);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_database_listener_is_bound_once_per_thread_and_never_on_an_address_taken() {
        let config_with = |spec: &str| {
            let mut config = ProxyConfig::new(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                crate::config::Upstream::parse("http://127.0.0.1:1").unwrap(),
            );
            config.egress.dbs = vec![EgressDb::parse(spec).unwrap()];
            config
        };
        let config = config_with("pg=127.0.0.1:0=postgres://127.0.0.1:9");
        let mut listening = Vec::new();
        let bound = bind_dbs(&config, 2, &mut listening).unwrap();
        let addr = bound.addresses[0].1;
        assert_ne!(addr.port(), 0);
        assert_eq!(listening, [addr], "what it bound is taken from now on");
        assert_eq!(bound.dbs[0].listeners.len(), 2);
        for listener in &bound.dbs[0].listeners {
            assert_eq!(listener.local_addr().unwrap(), addr);
        }
        // Another listener of this process (a route's, the proxy's, another
        // database's) on that address would split its connections.
        let spec = format!("cache=0.0.0.0:{}=redis://127.0.0.1:9", addr.port());
        match bind_dbs(&config_with(&spec), 1, &mut listening) {
            Err(ProxyError::Bind { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
            }
            other => panic!("{spec}: {:?}", other.map(|b| b.addresses)),
        }
    }

    fn one(id: u8) -> InFlight {
        InFlight::One {
            trace: [id; 16],
            id: [id; 16],
        }
    }

    #[test]
    fn an_exchange_is_linked_by_what_was_in_flight_when_it_began() {
        let mut watch = Watch {
            cutter: Box::new(reprise_wire::redis::Conversation::new(
                reprise_wire::redis::RedisOptions { max_body: 1024 },
            )),
            in_flight: VecDeque::from([
                (100, InFlight::Nothing),
                (200, one(1)),
                (300, InFlight::Several),
                (400, one(2)),
            ]),
        };
        // Before anything was seen: nothing.
        assert_eq!(watch.in_flight_at(50), InFlight::Nothing);
        assert_eq!(watch.in_flight_at(250), one(1));
        assert_eq!(watch.in_flight_at(300), InFlight::Several);
        // Exchanges come out in order: what came before is let go.
        assert_eq!(watch.in_flight.len(), 2);
        assert_eq!(watch.in_flight_at(1_000), one(2));
        assert_eq!(watch.in_flight.len(), 1);
    }
}
