//! `--egress-db NAME=LISTEN=URL`: a TCP listener in front of one
//! PostgreSQL or Redis server. Every byte passes through unchanged (but for
//! the TLS the recorder terminates, see `postgres`); a copy of each
//! direction goes to the protocol's conversation (`reprise_wire`), which
//! cuts the streams into exchanges, and each is recorded as a downstream
//! call linked to the inbound call it served:
//!
//! - by the `traceparent` of an sqlcommenter comment in its SQL, exactly;
//! - else to the one inbound call in flight when its first byte arrived,
//!   when exactly one was (`LinkKind::InFlight`: exact only when the
//!   service serves one call at a time); when several were, it is stored
//!   `Ambiguous`; when none was (pool warm-up), `Unlinked`. A
//!   connection's start-up is always stored unlinked.

mod postgres;
mod relay;

use std::net::SocketAddr;

pub(crate) use relay::{BoundDbs, bind_dbs};

/// Which protocol a database listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbProtocol {
    /// PostgreSQL, protocol v3 (`postgres://`, `postgresql://`).
    Postgres,
    /// Redis, RESP2 or RESP3 (`redis://`).
    Redis,
}

impl DbProtocol {
    /// The protocol's name in messages.
    pub fn label(self) -> &'static str {
        match self {
            DbProtocol::Postgres => "PostgreSQL",
            DbProtocol::Redis => "Redis",
        }
    }
}

/// `--egress-db NAME=LISTEN=URL`: a listener on LISTEN passing every
/// connection on to the server at URL, recorded with `source.route = NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressDb {
    /// The listener's name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Where the service connects.
    pub listen: SocketAddr,
    /// The protocol, from the URL's scheme.
    pub protocol: DbProtocol,
    /// The server's `host:port` (the protocol's default port when the URL
    /// has none).
    pub server: String,
    /// PostgreSQL: `?sslmode=disable` on the URL: the recorder never asks
    /// the server for TLS, even when the client asked the recorder for it.
    pub server_plain: bool,
    /// Redis: `rediss://`: the recorder reaches the server over TLS from
    /// the first byte (the system's roots, or `--egress-ca`); the
    /// listener itself speaks plain RESP to the service.
    pub server_tls: bool,
}

/// An `--egress-db` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressDbError {
    /// Not three parts.
    #[error(
        "--egress-db {0:?}: expected NAME=LISTEN=URL, such as orders-db=127.0.0.1:6432=postgres://db:5432 or cache=127.0.0.1:6380=redis://redis:6379"
    )]
    Shape(String),
    /// A name with other characters.
    #[error("--egress-db {0:?}: the name must be letters, digits, '.', '_' or '-'")]
    Name(String),
    /// LISTEN is not an address.
    #[error(
        "--egress-db {spec:?}: {listen:?} is not an address: expected IP:PORT, such as 127.0.0.1:6432"
    )]
    Listen {
        /// The whole spec.
        spec: String,
        /// The part that is not an address.
        listen: String,
    },
    /// URL is not a postgres:// or redis:// URL.
    #[error("--egress-db {spec:?}: {reason}")]
    Url {
        /// The whole spec.
        spec: String,
        /// Why.
        reason: String,
    },
}

impl EgressDb {
    /// Whether the recorder may reach the server over TLS (PostgreSQL
    /// when its client asks, unless `sslmode=disable`; Redis with
    /// `rediss://`).
    pub fn server_may_use_tls(&self) -> bool {
        match self.protocol {
            DbProtocol::Postgres => !self.server_plain,
            DbProtocol::Redis => self.server_tls,
        }
    }

    /// Parses `NAME=LISTEN=URL`; URL is `postgres://host[:port][/db][?sslmode=disable]`
    /// (or `postgresql://`), `redis://host[:port]` or `rediss://host[:port]`. A user, password or
    /// database in the URL is ignored: the client sends its own.
    pub fn parse(spec: &str) -> Result<EgressDb, EgressDbError> {
        let mut parts = spec.splitn(3, '=');
        let (Some(name), Some(listen), Some(url)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(EgressDbError::Shape(spec.to_string()));
        };
        if name.is_empty() || listen.is_empty() || url.is_empty() {
            return Err(EgressDbError::Shape(spec.to_string()));
        }
        let named = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.chars().all(named) {
            return Err(EgressDbError::Name(spec.to_string()));
        }
        let listen_addr = listen.parse().map_err(|_| EgressDbError::Listen {
            spec: spec.to_string(),
            listen: listen.to_string(),
        })?;
        let bad = |reason: String| EgressDbError::Url {
            spec: spec.to_string(),
            reason,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad(format!(
                "{url:?} is not a URL: expected postgres://host:port or redis://host:port"
            ))
        })?;
        let (protocol, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => (DbProtocol::Postgres, 5432),
            "redis" | "rediss" => (DbProtocol::Redis, 6379),
            other => {
                return Err(bad(format!(
                    "{url:?}: the scheme {other:?} is not a database reprise records: expected postgres://, redis:// or rediss://"
                )));
            }
        };
        let server_tls = scheme.eq_ignore_ascii_case("rediss");
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        // user:password@ is the client's business, not the listener's.
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host_port.is_empty() {
            return Err(bad(format!("{url:?}: no host")));
        }
        // A bracketed IPv6 literal may have a port after its bracket only.
        let port_at = match host_port.rfind(']') {
            Some(bracket) => host_port
                .get(bracket + 1..)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|_| bracket + 1),
            None => host_port.rfind(':'),
        };
        let server = match port_at {
            Some(at) => {
                let (host, port) = host_port.split_at(at);
                if host.is_empty() || port.get(1..).is_none_or(|p| p.parse::<u16>().is_err()) {
                    return Err(bad(format!("{url:?}: {host_port:?} is not host:port")));
                }
                host_port.to_string()
            }
            None => format!("{host_port}:{default_port}"),
        };
        let query = tail.split_once('?').map_or("", |(_, q)| q);
        let mut server_plain = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", "disable")) if protocol == DbProtocol::Postgres => {
                    server_plain = true;
                }
                Some(("sslmode", "prefer" | "allow" | "require"))
                    if protocol == DbProtocol::Postgres => {}
                _ => {
                    return Err(bad(format!(
                        "{url:?}: the option {pair:?} is not one the listener takes (only sslmode=disable|prefer for postgres)"
                    )));
                }
            }
        }
        Ok(EgressDb {
            name: name.to_string(),
            listen: listen_addr,
            protocol,
            server,
            server_plain,
            server_tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_names_its_protocol_and_server() {
        let db =
            EgressDb::parse("orders-db=127.0.0.1:6432=postgres://u:pw@db.internal:5433/orders")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.name, "orders-db");
        assert_eq!(
            db.listen,
            "127.0.0.1:6432".parse().unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(
            (db.protocol, db.server.as_str(), db.server_plain),
            (DbProtocol::Postgres, "db.internal:5433", false)
        );
        let cache =
            EgressDb::parse("cache=127.0.0.1:6380=redis://redis").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (cache.protocol, cache.server.as_str()),
            (DbProtocol::Redis, "redis:6379")
        );
        let plain = EgressDb::parse("db=127.0.0.1:0=postgresql://127.0.0.1?sslmode=disable")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (plain.server.as_str(), plain.server_plain),
            ("127.0.0.1:5432", true)
        );
    }

    #[test]
    fn a_bad_listener_says_what_is_wrong() {
        let said = |spec: &str| match EgressDb::parse(spec) {
            Err(e) => e.to_string(),
            Ok(db) => panic!("{spec} parsed: {db:?}"),
        };
        assert!(said("db=127.0.0.1:6432").contains("expected NAME=LISTEN=URL"));
        assert!(said("d b=127.0.0.1:6432=postgres://x").contains("the name must be"));
        assert!(said("db=localhost=postgres://x").contains("is not an address"));
        assert!(said("db=127.0.0.1:1=mysql://x:3306").contains("not a database reprise records"));
        let tls = EgressDb::parse("db=127.0.0.1:1=rediss://cache.internal")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (tls.protocol, tls.server.as_str(), tls.server_tls),
            (DbProtocol::Redis, "cache.internal:6379", true)
        );
        assert!(tls.server_may_use_tls());
        assert!(said("db=127.0.0.1:1=postgres://x:port").contains("is not host:port"));
        assert!(
            said("db=127.0.0.1:1=postgres://x?application_name=a")
                .contains("not one the listener takes")
        );
        assert!(said("db=127.0.0.1:1=db.example").contains("is not a URL"));
    }
}
