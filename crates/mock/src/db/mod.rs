//! Databases from a recording: `reprise mock --db` answers PostgreSQL and
//! Redis clients from the exchanges `reprise record --egress-db` cut, as
//! the HTTP mock answers HTTP calls, with the same store, scopes, pools,
//! misses, report, log lines and `--out` tape.
//!
//! # What is matched
//!
//! Each recorded PostgreSQL statement and Redis command is one recorded
//! call of the [`MockStore`](crate::MockStore), keyed by its database
//! (the recorded `source.route`) and what [`key`] says: a statement by its
//! normalized SQL, literals and parameter values (never its prepared
//! statement's name), a command by its name in any case and arguments.
//! A connection's start-up is not a call: it gives the database's server
//! parameters ([`MockStore::db_startup`](crate::MockStore::db_startup)).
//!
//! # Scopes
//!
//! A database call carries no header naming the replayed call it was made
//! for. Its scope is the one replayed exchange in flight, as whoever
//! replays tells [`DbScopes`] (`entered`/`left`); with none or several in
//! flight it has no scope. A call with no scope is matched across the
//! whole recording: by key, then in recorded order, each recorded call
//! once. That is what a standalone `reprise mock` does when the replay
//! runs in another process. A call with a scope is answered from the
//! calls recorded under that exchange first, then from the unlinked pool
//! (start-up `SET`s, calls whose link was ambiguous), in recorded order.
//!
//! # What is never done
//!
//! The mock connects nowhere: a write is answered as recorded and never
//! performed. A recorded exchange marked `not_mockable` (COPY, pub/sub,
//! MONITOR, a reply cut at the size cap) never answers: a call matching
//! only it is a miss that says why.

mod connection;
pub mod key;
mod pg;
mod redis;
mod scopes;
mod serve;
mod store;
mod stream;

pub use connection::{DbConnection, DbStep};
pub use key::CallKind;
pub use scopes::DbScopes;
pub use serve::{DbTls, MISS_SQLSTATE};
pub use store::DbServed;

pub(crate) use serve::{DbConn, DbConnections, DbListener, serve_listener};
pub(crate) use store::recorded_calls;

/// Which database protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbProtocol {
    /// PostgreSQL (frontend/backend protocol 3).
    Postgres,
    /// Redis (RESP2, RESP3 after `HELLO 3`).
    Redis,
}

impl DbProtocol {
    /// The protocol a recorded route's scheme names (`postgres`,
    /// `redis`), if it is a database's.
    pub fn of_scheme(scheme: &str) -> Option<DbProtocol> {
        match scheme {
            "postgres" | "postgresql" => Some(DbProtocol::Postgres),
            "redis" => Some(DbProtocol::Redis),
            _ => None,
        }
    }

    /// The scheme a recorded route of this protocol has.
    pub fn scheme(self) -> &'static str {
        match self {
            DbProtocol::Postgres => "postgres",
            DbProtocol::Redis => "redis",
        }
    }
}
