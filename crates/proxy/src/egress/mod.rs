//! Egress recording: the calls the recorded service makes to its own
//! dependencies, recorded in the same tape as its inbound calls, each
//! linked to the inbound call it served by W3C trace context.
//!
//! - [`inbound`](InboundTracing): every call forwarded to the service
//!   carries a `traceparent`; its trace id is recorded with the inbound
//!   exchange and registered in the [`LinkRegistry`] while it is in
//!   flight (and for `--link-window` after).
//! - [`EgressRecordLayer`]: a tower layer around any service that
//!   forwards a call to its real target; records the call as a
//!   downstream exchange, linked by the trace id its `traceparent`
//!   carries.
//! - The listeners (`listen`): `--egress-route NAME=LISTEN=URL`, one
//!   listener per downstream for clients that take a base URL, served on
//!   the reverse proxy's serving threads and forwarded by a
//!   [`RouteForward`](forward::RouteForward) per thread (the proxy's own
//!   HTTP/1.1 client); and `--egress ADDR`, the forward proxy
//!   (`reprise_intercept`'s front: absolute form, as `HTTP_PROXY` clients
//!   send, and CONNECT tunnels).

mod db;
mod forward;
mod inbound;
mod layer;
mod listen;

use std::net::SocketAddr;
use std::time::Duration;

pub(crate) use db::{BoundDbs, bind_dbs};
pub use db::{DbProtocol, EgressDb, EgressDbError};
pub use inbound::{CALLER_KEY, InboundTrace, InboundTracing, valid_traceparent};
pub use layer::{EgressFuture, EgressRecordLayer, EgressRecorder, EgressSource, ForwardError};
pub(crate) use listen::{BoundRoutes, bind_routes, refuse_shared, start_forward_proxy};
pub use reprise_record::DEFAULT_LINK_WINDOW;

use reprise_net::Upstream;

/// What `reprise record` records of the service's own calls.
#[derive(Clone)]
pub struct EgressConfig {
    /// `--egress ADDR`: a forward proxy for plain HTTP.
    pub forward: Option<SocketAddr>,
    /// `--egress-route NAME=LISTEN=URL`, in the order given.
    pub routes: Vec<EgressRoute>,
    /// `--egress-db NAME=LISTEN=URL`, in the order given.
    pub dbs: Vec<EgressDb>,
    /// `--link-window`: how long after an inbound call finished a call
    /// carrying its trace id is still its child.
    pub link_window: Duration,
    /// `--fresh-trace`: a trace of its own for every inbound call.
    pub fresh_trace: bool,
    /// `--egress-ca`: trust only this CA (PEM) for https downstreams, not
    /// the system roots.
    pub ca: Option<std::path::PathBuf>,
    /// The leaves (from the reprise CA, `--ca-dir`) that terminate TLS in
    /// the `--egress` proxy's CONNECT tunnels; without them such a tunnel
    /// is closed, with a warning.
    pub leaves: Option<std::sync::Arc<reprise_intercept::Leaves>>,
    /// Where the `--egress` proxy's warnings go (a tunnel it could not
    /// serve), besides `tracing`.
    pub warn: Option<reprise_intercept::WarnSink>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            forward: None,
            routes: Vec::new(),
            dbs: Vec::new(),
            link_window: DEFAULT_LINK_WINDOW,
            fresh_trace: false,
            ca: None,
            leaves: None,
            warn: None,
        }
    }
}

impl std::fmt::Debug for EgressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressConfig")
            .field("forward", &self.forward)
            .field("routes", &self.routes)
            .field("dbs", &self.dbs)
            .field("link_window", &self.link_window)
            .field("fresh_trace", &self.fresh_trace)
            .field("ca", &self.ca)
            .field("leaves", &self.leaves.is_some())
            .field("warn", &self.warn.is_some())
            .finish()
    }
}

impl EgressConfig {
    /// Whether any egress listener is asked for (else inbound calls are
    /// forwarded as they come, and nothing is registered).
    pub fn enabled(&self) -> bool {
        self.forward.is_some() || !self.routes.is_empty() || !self.dbs.is_empty()
    }

    /// Checks that no two routes or database listeners share a name, and
    /// that no two listeners (routes, database listeners and `--egress`)
    /// share an address.
    pub fn check(&self) -> Result<(), EgressRouteError> {
        let mut names = std::collections::HashSet::new();
        let mut addresses = std::collections::HashSet::new();
        if let Some(forward) = self.forward {
            addresses.insert(forward);
        }
        for route in &self.routes {
            if !names.insert(route.name.as_str()) {
                return Err(EgressRouteError::DuplicateName(route.name.clone()));
            }
            if route.listen.port() != 0 && !addresses.insert(route.listen) {
                return Err(EgressRouteError::DuplicateListen(route.listen));
            }
        }
        for db in &self.dbs {
            if !names.insert(db.name.as_str()) {
                return Err(EgressRouteError::DuplicateName(db.name.clone()));
            }
            if db.listen.port() != 0 && !addresses.insert(db.listen) {
                return Err(EgressRouteError::DuplicateListen(db.listen));
            }
        }
        Ok(())
    }
}

/// `--egress-route NAME=LISTEN=URL`: a listener on LISTEN forwarding every
/// call to URL, recorded with `source.route = NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRoute {
    /// The route's name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Where the service sends the calls.
    pub listen: SocketAddr,
    /// The real downstream.
    pub target: Upstream,
    /// The URL's path, put before every call's path ("" when it has none).
    pub prefix: String,
}

/// An `--egress-route` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRouteError {
    /// Not three parts.
    #[error(
        "--egress-route {0:?}: expected NAME=LISTEN=URL, such as payments=127.0.0.1:9001=https://pay.example"
    )]
    Shape(String),
    /// A name with other characters.
    #[error("--egress-route {0:?}: the name must be letters, digits, '.', '_' or '-'")]
    Name(String),
    /// LISTEN is not an address.
    #[error(
        "--egress-route {spec:?}: {listen:?} is not an address: expected IP:PORT, such as 127.0.0.1:9001"
    )]
    Listen {
        /// The whole spec.
        spec: String,
        /// The part that is not an address.
        listen: String,
    },
    /// URL is not an http or https URL.
    #[error("--egress-route {spec:?}: {reason}")]
    Url {
        /// The whole spec.
        spec: String,
        /// Why.
        reason: String,
    },
    /// Two routes (or database listeners) with one name.
    #[error("--egress-route/--egress-db: the name {0:?} is given twice")]
    DuplicateName(String),
    /// Two listeners on one address.
    #[error(
        "--egress-route/--egress-db: {0} is given twice (as a route's or a database's LISTEN, or --egress)"
    )]
    DuplicateListen(SocketAddr),
}

impl EgressRoute {
    /// Parses `NAME=LISTEN=URL`; URL is `http[s]://host[:port][/path]`.
    pub fn parse(spec: &str) -> Result<EgressRoute, EgressRouteError> {
        let mut parts = spec.splitn(3, '=');
        let (Some(name), Some(listen), Some(url)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(EgressRouteError::Shape(spec.to_string()));
        };
        if name.is_empty() || listen.is_empty() || url.is_empty() {
            return Err(EgressRouteError::Shape(spec.to_string()));
        }
        let named = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.chars().all(named) {
            return Err(EgressRouteError::Name(spec.to_string()));
        }
        let listen_addr = listen.parse().map_err(|_| EgressRouteError::Listen {
            spec: spec.to_string(),
            listen: listen.to_string(),
        })?;
        let bad = |reason: String| EgressRouteError::Url {
            spec: spec.to_string(),
            reason,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(format!("{url:?} is not a URL: {e}")))?;
        if uri.query().is_some() {
            return Err(bad(format!("{url:?}: a route's URL takes no query")));
        }
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(bad(format!(
                "{url:?}: expected http://host:port or https://host:port, with an optional path"
            )));
        };
        let target =
            Upstream::parse(&format!("{scheme}://{authority}")).map_err(|e| bad(e.to_string()))?;
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(EgressRoute {
            name: name.to_string(),
            listen: listen_addr,
            target,
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_with_and_without_a_path() {
        let route = EgressRoute::parse("pay=127.0.0.1:9001=https://pay.example:8443/v1/")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(route.name, "pay");
        assert_eq!(route.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
        assert_eq!(route.target.authority.as_str(), "pay.example:8443");
        assert!(route.target.is_tls());
        assert_eq!(route.prefix, "/v1");
        let plain = EgressRoute::parse("inv=127.0.0.1:0=http://127.0.0.1:8000")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.prefix, "");
    }

    #[test]
    fn bad_routes_say_what_is_wrong() {
        let said = |spec: &str| match EgressRoute::parse(spec) {
            Ok(route) => panic!("{spec} parsed: {route:?}"),
            Err(e) => e.to_string(),
        };
        assert!(said("pay").contains("expected NAME=LISTEN=URL"));
        assert!(said("pay=127.0.0.1:9001").contains("expected NAME=LISTEN=URL"));
        assert!(said("=127.0.0.1:9001=http://x").contains("expected NAME=LISTEN=URL"));
        assert!(said("p y=127.0.0.1:9001=http://x").contains("the name must be"));
        assert!(said("pay=localhost=http://x").contains("is not an address"));
        assert!(said("pay=127.0.0.1:9001=ftp://x").contains("http or https"));
        assert!(said("pay=127.0.0.1:9001=pay.example").contains("expected http://host:port"));
        assert!(said("pay=127.0.0.1:9001=http://x/?a=1").contains("takes no query"));
    }

    #[test]
    fn duplicate_names_and_addresses_are_refused() {
        let route = |spec: &str| EgressRoute::parse(spec).unwrap_or_else(|e| panic!("{e}"));
        let mut config = EgressConfig {
            routes: vec![
                route("a=127.0.0.1:9001=http://x"),
                route("a=127.0.0.1:9002=http://x"),
            ],
            ..EgressConfig::default()
        };
        assert_eq!(
            config.check(),
            Err(EgressRouteError::DuplicateName("a".into()))
        );
        config.routes[1].name = "b".into();
        config.forward = Some(SocketAddr::from(([127, 0, 0, 1], 9002)));
        assert!(matches!(
            config.check(),
            Err(EgressRouteError::DuplicateListen(_))
        ));
        config.forward = None;
        assert_eq!(config.check(), Ok(()));
    }
}
