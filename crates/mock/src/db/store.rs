//! The store's side of databases: recorded exchanges made into recorded
//! calls (one per PostgreSQL statement, one per Redis command), their
//! start-ups, and choosing the one that answers a call.

use reprise_model::key::CallKey;
use reprise_model::{Exchange, Protocol, RespValue, SqlStartup, SqlStatement};

use crate::miss::MockMiss;
use crate::respond::Pool;
use crate::scope::MockScope;
use crate::store::{MockStore, RecordedCall};

use super::key::{redis_key, sql_key};

/// The recorded call that answers a database call.
#[derive(Debug, Clone, Copy)]
pub struct DbServed<'a> {
    /// The recorded exchange, holding only the statement (PostgreSQL) or
    /// the command (Redis) that answers.
    pub exchange: &'a Exchange,
    /// Which recorded calls it came from.
    pub pool: Pool,
}

impl<'a> DbServed<'a> {
    /// The recorded statement and its result (PostgreSQL).
    pub fn statement(&self) -> Option<&'a SqlStatement> {
        self.exchange.db.as_ref()?.statements.first()
    }

    /// The recorded reply (Redis).
    pub fn reply(&self) -> Option<&'a RespValue> {
        self.exchange.db.as_ref()?.redis.as_ref()?.reply.as_ref()
    }

    /// The transaction status the recorded exchange ended in (PostgreSQL:
    /// `b'I'`, `b'T'` or `b'E'`), if recorded.
    pub fn transaction_status(&self) -> Option<u8> {
        let db = self.exchange.db.as_ref()?;
        match db.transaction_status.as_bytes() {
            [status @ (b'I' | b'T' | b'E')] => Some(*status),
            _ => None,
        }
    }
}

/// The recorded calls of a database exchange: one per PostgreSQL
/// statement (each a copy of the exchange holding that statement alone,
/// with the exchange's id), one per Redis command. A PostgreSQL
/// connection's start-up goes to `startups`.
pub(crate) fn recorded_calls(
    exchange: Exchange,
    startups: &mut Vec<Exchange>,
) -> Vec<RecordedCall> {
    let Some(db) = exchange.db.as_ref() else {
        return Vec::new();
    };
    let route = exchange
        .source
        .as_ref()
        .map(|s| s.route.clone())
        .unwrap_or_default();
    if db.startup.is_some() {
        startups.push(exchange.clone());
    }
    let not_mockable = (!db.not_mockable.is_empty()).then(|| db.not_mockable.clone());
    if exchange.protocol() == Protocol::Redis {
        let Some(command) = db.redis.as_ref() else {
            return Vec::new();
        };
        let key = redis_key(&route, &command.args);
        let not_mockable = not_mockable.or_else(|| {
            command
                .reply
                .is_none()
                .then(|| "the connection ended before the reply".to_string())
        });
        return vec![RecordedCall {
            key,
            exchange,
            not_mockable,
        }];
    }
    let statements = db.statements.clone();
    statements
        .into_iter()
        .map(|statement| {
            let key = sql_key(&route, &statement);
            let not_mockable = not_mockable.clone().or_else(|| {
                statement
                    .copy
                    .then(|| "COPY moves data outside the statement".to_string())
            });
            let mut one = exchange.clone();
            if let Some(db) = one.db.as_mut() {
                db.statements = vec![statement];
                db.startup = None;
            }
            RecordedCall {
                key,
                exchange: one,
                not_mockable,
            }
        })
        .collect()
}

impl MockStore {
    /// The recorded start-up of the first connection to the database
    /// `route` (its server parameters, how it authenticated).
    pub fn db_startup(&self, route: &str) -> Option<&SqlStartup> {
        self.startups
            .iter()
            .filter(|e| e.source.as_ref().is_some_and(|s| s.route == route))
            .find_map(|e| e.db.as_ref()?.startup.as_ref())
            .filter(|startup| startup.error.is_none())
    }

    /// The recorded statement that answers `statement` sent to the
    /// database `route` in `scope`, or the miss (named `call`; counted
    /// and kept only when `count_miss`: a statement the mock can answer
    /// by itself is not a miss).
    pub fn answer_sql(
        &self,
        scope: Option<&MockScope>,
        route: &str,
        statement: &SqlStatement,
        call: String,
        count_miss: bool,
    ) -> Result<DbServed<'_>, MockMiss> {
        self.answer_db(scope, &sql_key(route, statement), call, count_miss)
    }

    /// The recorded reply to the Redis command `args` (its name, then its
    /// arguments) sent to the cache `route` in `scope`, or the miss;
    /// counted only when `count_miss` (a command the mock can answer by
    /// itself is not a miss).
    pub fn answer_redis<A: AsRef<[u8]>>(
        &self,
        scope: Option<&MockScope>,
        route: &str,
        args: &[A],
        call: String,
        count_miss: bool,
    ) -> Result<DbServed<'_>, MockMiss> {
        self.answer_db(scope, &redis_key(route, args), call, count_miss)
    }

    /// A call with no scope is matched across the whole recording (the
    /// global pool), since nothing tells which replayed call it is for.
    fn answer_db(
        &self,
        scope: Option<&MockScope>,
        key: &CallKey,
        call: String,
        count_miss: bool,
    ) -> Result<DbServed<'_>, MockMiss> {
        let global = scope.is_none() || self.options.global;
        self.choose_in(scope, key, call, global, count_miss)
            .map(|(exchange, pool)| DbServed { exchange, pool })
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
