//! The egress listeners a recording's downstream calls went through
//! (`reprise record --egress ADDR`, `--egress-route NAME=LISTEN=URL`):
//! where a mock must listen for the service to reach it unchanged.

use reprise_model::{Exchange, Protocol};

use crate::db::DbProtocol;

/// A listener the recorder's downstream calls came through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedListener {
    /// Its address, as recorded (`source.listener`).
    pub listen: String,
    /// The route it was, or `None` for the forward proxy (whose calls
    /// name their own target).
    pub route: Option<RecordedRoute>,
    /// Downstream calls recorded through it.
    pub calls: usize,
}

/// An `--egress-route` or `--egress-db`: a listener whose calls all went
/// to one downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRoute {
    /// The route's name (`source.route`).
    pub name: String,
    /// The downstream's scheme (`http`, `https`), as its calls recorded;
    /// `postgres` or `redis` for a database (see
    /// [`DbProtocol::of_scheme`]).
    pub scheme: String,
    /// The downstream's authority, which its calls are matched with (a
    /// database's: the server's `host:port` it relayed to).
    pub authority: String,
}

impl std::fmt::Display for RecordedListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.route {
            None => write!(f, "{} (egress proxy)", self.listen),
            Some(route) if DbProtocol::of_scheme(&route.scheme).is_some() => write!(
                f,
                "{} (database {} at {}://{})",
                self.listen, route.name, route.scheme, route.authority
            ),
            Some(route) => write!(
                f,
                "{} (route {} to {}://{})",
                self.listen, route.name, route.scheme, route.authority
            ),
        }
    }
}

/// The distinct egress listeners of the downstream calls the proxy
/// recorded among `exchanges`, in the order they first appear: the
/// forward proxy's address (its calls have no route) and each route's,
/// with the scheme and authority its first call went to.
pub fn recorded_listeners<'a>(
    exchanges: impl IntoIterator<Item = &'a Exchange>,
) -> Vec<RecordedListener> {
    let mut found: Vec<RecordedListener> = Vec::new();
    for exchange in exchanges {
        let Some(source) = exchange.source.as_ref() else {
            continue;
        };
        if !exchange.is_downstream() || source.recorder != "proxy" || source.listener.is_empty() {
            continue;
        }
        if let Some(known) = found.iter_mut().find(|l| l.listen == source.listener) {
            known.calls += 1;
            continue;
        }
        let database = match exchange.protocol() {
            Protocol::Postgres => Some(DbProtocol::Postgres),
            Protocol::Redis => Some(DbProtocol::Redis),
            _ => None,
        };
        let route = (!source.route.is_empty()).then(|| {
            if let Some(database) = database {
                // A database's calls went to the server it relayed to.
                return RecordedRoute {
                    name: source.route.clone(),
                    scheme: database.scheme().to_string(),
                    authority: source.server_addr.clone(),
                };
            }
            let request = exchange.request.clone().unwrap_or_default();
            RecordedRoute {
                name: source.route.clone(),
                scheme: if request.scheme.is_empty() {
                    "http".to_string()
                } else {
                    request.scheme
                },
                authority: request.authority,
            }
        });
        found.push(RecordedListener {
            listen: source.listener.clone(),
            route,
            calls: 1,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use reprise_model::{RecordSource, Request, Role};

    use super::*;

    fn call(listener: &str, route: &str, recorder: &str, authority: &str) -> Exchange {
        Exchange {
            role: Role::Downstream as i32,
            source: Some(RecordSource {
                recorder: recorder.into(),
                listener: listener.into(),
                route: route.into(),
                ..Default::default()
            }),
            request: Some(Request {
                scheme: "https".into(),
                authority: authority.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_forward_proxy_and_each_route_once_in_order() {
        let inbound = Exchange {
            role: Role::Inbound as i32,
            ..call("127.0.0.1:1", "", "proxy", "shop")
        };
        let found = recorded_listeners(&[
            inbound,
            call("127.0.0.1:3128", "", "proxy", "a.example"),
            call("127.0.0.1:9001", "pay", "proxy", "payments.example"),
            call("127.0.0.1:3128", "", "proxy", "b.example"),
            call("127.0.0.1:9999", "", "tower", "c.example"),
        ]);
        assert_eq!(
            found,
            [
                RecordedListener {
                    listen: "127.0.0.1:3128".into(),
                    route: None,
                    calls: 2
                },
                RecordedListener {
                    listen: "127.0.0.1:9001".into(),
                    route: Some(RecordedRoute {
                        name: "pay".into(),
                        scheme: "https".into(),
                        authority: "payments.example".into()
                    }),
                    calls: 1
                },
            ]
        );
        assert_eq!(
            found[1].to_string(),
            "127.0.0.1:9001 (route pay to https://payments.example)"
        );
        assert!(recorded_listeners(&[]).is_empty());
    }

    #[test]
    fn a_database_route_names_its_protocol_and_server() {
        let mut pg = call("127.0.0.1:6432", "orders-db", "proxy", "");
        pg.protocol = Protocol::Postgres as i32;
        pg.request = None;
        if let Some(source) = pg.source.as_mut() {
            source.server_addr = "db:5432".into();
        }
        let mut redis = pg.clone();
        redis.protocol = Protocol::Redis as i32;
        if let Some(source) = redis.source.as_mut() {
            source.listener = "127.0.0.1:6380".into();
            source.route = "cache".into();
            source.server_addr = "r:6379".into();
        }
        let found = recorded_listeners(&[pg.clone(), redis, pg]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].calls, 2);
        assert_eq!(
            found[0].to_string(),
            "127.0.0.1:6432 (database orders-db at postgres://db:5432)"
        );
        let route = found[1].route.as_ref().unwrap();
        assert_eq!(
            DbProtocol::of_scheme(&route.scheme),
            Some(DbProtocol::Redis)
        );
        assert_eq!(route.authority, "r:6379");
    }
}
