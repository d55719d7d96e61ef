//! What the recording proxy is told to do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reprise_model::redact::Redactor;
use reprise_model::sample::Sampler;
use reprise_model::select::ExchangeFilter;
pub use reprise_net::{Upstream, UpstreamError, UpstreamProtocol};

use crate::listener::ConnectionLimits;

/// The recording proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where to listen (HTTP/1.1 and h2c with prior knowledge on one port).
    pub listen: SocketAddr,
    /// Where to forward.
    pub upstream: Upstream,
    /// Bytes of each body kept in the recording (the rest is forwarded,
    /// not stored, and the exchange flagged truncated).
    pub max_body: usize,
    /// Which exchanges are recorded, by id.
    pub sampler: Sampler,
    /// `--match` conditions.
    pub filter: ExchangeFilter,
    /// `--max-record-rate`.
    pub max_record_rate: Option<u32>,
    /// Redaction before storage.
    pub redactor: Redactor,
    /// Add `Via` and `X-Forwarded-For`/`-Proto`.
    pub forwarded_headers: bool,
    /// Keep the client's Host instead of the upstream's.
    pub preserve_host: bool,
    /// Which HTTP version calls take to the upstream.
    pub upstream_protocol: UpstreamProtocol,
    /// Connecting to the upstream.
    pub connect_timeout: Duration,
    /// From sending the request to the response head.
    pub response_timeout: Duration,
    /// How long in-flight calls may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// Exchanges waiting for the writer before new ones are dropped.
    pub queue_capacity: usize,
    /// `source.service` of recorded exchanges.
    pub service: String,
    /// Serve TLS (ALPN h2, http/1.1) with this PEM certificate chain and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Trust only this CA (PEM) for https upstreams, not the system roots.
    pub upstream_ca: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` here.
    pub admin: Option<SocketAddr>,
    /// `--max-connections`, `--header-timeout` and `--idle-timeout`.
    pub limits: ConnectionLimits,
    /// The largest request head accepted (HTTP/1.1 gets a 431 past it).
    pub max_header_bytes: usize,
    /// Serving threads, each with its own listening socket and runtime;
    /// `None`: one per two cores (at least one), see `server`.
    pub threads: Option<usize>,
    /// The service's own calls to record (`--egress`, `--egress-route`),
    /// linked to the inbound calls they served.
    pub egress: crate::egress::EgressConfig,
}

impl ProxyConfig {
    /// Defaults for everything but where to listen and forward.
    pub fn new(listen: SocketAddr, upstream: Upstream) -> ProxyConfig {
        ProxyConfig {
            listen,
            upstream,
            max_body: 1 << 20,
            sampler: Sampler::all(),
            filter: ExchangeFilter::new(),
            max_record_rate: None,
            redactor: Redactor::new(),
            forwarded_headers: true,
            preserve_host: false,
            upstream_protocol: UpstreamProtocol::Auto,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            queue_capacity: 8192,
            service: String::new(),
            tls: None,
            upstream_ca: None,
            admin: None,
            limits: ConnectionLimits::default(),
            max_header_bytes: 64 << 10,
            threads: None,
            egress: crate::egress::EgressConfig::default(),
        }
    }
}
