//! What a database call is matched on, in the store's one key type
//! ([`CallKey`]), so that scopes, the unlinked pool, the exhausted policy,
//! misses and their nearest calls work for database calls as they do for
//! HTTP ones.
//!
//! - PostgreSQL, one key per statement: the route, the statement's
//!   normalized template (`path`), its literals (`query`) and its bound
//!   parameter values (`body`). Prepared statement and portal names are
//!   left out: clients generate them (psycopg's `_pg3_N`).
//! - Redis, one key per command: the route, the command's name
//!   upper-cased (`path`) and its arguments as the wire crate's
//!   [`command_key`] has them (subcommands upper-cased, secrets redacted).
//!
//! The method is a marker no HTTP call can have (`<` is not a token
//! character), so a database key never matches an HTTP call.

use reprise_model::key::{CallKey, KeyField};
use reprise_model::terminal::escape;
use reprise_model::{Exchange, SqlStatement, SqlValue};
use reprise_wire::pg::normalize;
use reprise_wire::redis::command_key;

/// The method of a PostgreSQL statement's key.
pub(crate) const POSTGRES: &str = "<postgres>";
/// The method of a Redis command's key.
pub(crate) const REDIS: &str = "<redis>";

/// Which protocol a key is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallKind {
    /// An HTTP or gRPC call.
    #[default]
    Http,
    /// A PostgreSQL statement.
    Postgres,
    /// A Redis command.
    Redis,
}

impl CallKind {
    /// The kind of call `key` is the key of.
    pub(crate) fn of(key: &CallKey) -> CallKind {
        match key.method.as_str() {
            POSTGRES => CallKind::Postgres,
            REDIS => CallKind::Redis,
            _ => CallKind::Http,
        }
    }

    /// How a miss names a key's field for this kind of call.
    pub fn field_name(self, field: KeyField) -> &'static str {
        match (self, field) {
            (CallKind::Http, field) => field.name(),
            (_, KeyField::Method) => "protocol",
            (_, KeyField::Authority) => "database",
            (CallKind::Postgres, KeyField::Path) => "statement",
            (CallKind::Postgres, KeyField::Query) => "literals",
            (CallKind::Postgres, KeyField::Body) => "parameters",
            (CallKind::Redis, KeyField::Path) => "command",
            (CallKind::Redis, _) => "arguments",
        }
    }
}

/// The key of a PostgreSQL statement sent to the database `route`.
pub(crate) fn sql_key(route: &str, statement: &SqlStatement) -> CallKey {
    let normalized = normalize(&statement.sql);
    let query = normalized
        .literals
        .into_iter()
        .enumerate()
        .map(|(i, literal)| (format!("${}", i + 1), literal))
        .collect();
    let mut body = Vec::new();
    for param in &statement.params {
        push_value(&mut body, param);
    }
    CallKey {
        method: POSTGRES.to_string(),
        authority: route.to_ascii_lowercase(),
        path: normalized.template,
        query,
        body,
    }
}

/// The key of a Redis command (`args`: its name, then its arguments) sent
/// to the cache `route`.
pub(crate) fn redis_key<A: AsRef<[u8]>>(route: &str, args: &[A]) -> CallKey {
    let key = command_key(args);
    let mut body = Vec::new();
    for arg in &key.args {
        push_bytes(&mut body, b'A', arg);
    }
    CallKey {
        method: REDIS.to_string(),
        authority: route.to_ascii_lowercase(),
        path: String::from_utf8_lossy(&key.name).into_owned(),
        query: Vec::new(),
        body,
    }
}

/// A value in a key's body, framed so that no two lists of values encode
/// alike: a tag (`N` null, `T` text, `B` binary), then the length.
fn push_value(body: &mut Vec<u8>, value: &SqlValue) {
    match (value.null, value.binary) {
        (true, _) => body.push(b'N'),
        (false, false) => push_bytes(body, b'T', &value.data),
        (false, true) => push_bytes(body, b'B', &value.data),
    }
}

fn push_bytes(body: &mut Vec<u8>, tag: u8, data: &[u8]) {
    body.push(tag);
    body.extend_from_slice(&(data.len() as u64).to_be_bytes());
    body.extend_from_slice(data);
}

/// How a miss names a recorded database call: `route: SQL` with its
/// parameters, or `route: COMMAND args`, cut to a readable length.
pub(crate) fn describe_db(exchange: &Exchange, key: &CallKey) -> String {
    const SHOWN: usize = 160;
    let what = match CallKind::of(key) {
        CallKind::Postgres => {
            let statement = exchange.db.as_ref().and_then(|db| db.statements.first());
            let sql = statement.map_or(key.path.as_str(), |s| s.sql.as_str());
            let params = statement
                .map(|s| params_text(&s.params))
                .unwrap_or_default();
            format!("{}{params}", one_line(sql))
        }
        _ => exchange
            .db
            .as_ref()
            .and_then(|db| db.redis.as_ref())
            .map_or_else(|| key.path.clone(), |r| command_key(&r.args).to_string()),
    };
    let mut what = escape(&what).into_owned();
    if what.len() > SHOWN {
        let mut end = SHOWN;
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        what.truncate(end);
        what.push_str("...");
    }
    format!("{}: {what}", key.authority)
}

/// ` [$1=5, $2=NULL]` for a statement's parameters (empty when none).
pub(crate) fn params_text(params: &[SqlValue]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = if p.null {
                "NULL".to_string()
            } else if p.binary {
                format!("<{} bytes binary>", p.data.len())
            } else {
                String::from_utf8_lossy(&p.data).into_owned()
            };
            format!("${}={value}", i + 1)
        })
        .collect();
    format!(" [{}]", shown.join(", "))
}

/// SQL on one line: whitespace runs made single spaces.
pub(crate) fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str) -> SqlValue {
        SqlValue {
            data: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn statement(sql: &str, params: &[SqlValue], name: &str) -> SqlStatement {
        SqlStatement {
            sql: sql.into(),
            params: params.to_vec(),
            statement_name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn statements_match_by_template_literals_and_values_not_names() {
        let a = sql_key(
            "DB",
            &statement("SELECT  *\nFROM t WHERE id = $1", &[text("5")], "_pg3_0"),
        );
        let b = sql_key(
            "db",
            &statement("select * from t where id = $1", &[text("5")], "_pg3_7"),
        );
        assert_eq!(a, b, "names, case and whitespace are not part of the key");
        let c = sql_key(
            "db",
            &statement("select * from t where id = $1", &[text("6")], ""),
        );
        assert_eq!(a.differences(&c), [KeyField::Body]);
        let one = sql_key("db", &statement("SELECT 1", &[], ""));
        let two = sql_key("db", &statement("SELECT 2", &[], ""));
        assert_eq!(one.differences(&two), [KeyField::Query]);
        let null = SqlValue {
            null: true,
            ..Default::default()
        };
        let empty = sql_key("db", &statement("SELECT $1", &[text("")], ""));
        assert_ne!(empty, sql_key("db", &statement("SELECT $1", &[null], "")));
        // Lists of values are framed: ["ab"] is not ["a", "b"].
        assert_ne!(
            sql_key("db", &statement("SELECT $1", &[text("ab")], "")),
            sql_key("db", &statement("SELECT $1", &[text("a"), text("b")], ""))
        );
        assert_eq!(CallKind::of(&a), CallKind::Postgres);
    }

    #[test]
    fn commands_match_by_name_in_any_case_and_arguments() {
        assert_eq!(
            redis_key("cache", &["get", "k"]),
            redis_key("cache", &["GET", "k"])
        );
        assert_ne!(
            redis_key("cache", &["GET", "k"]),
            redis_key("cache", &["GET", "K"])
        );
        assert_ne!(
            redis_key("cache", &["GET", "k"]),
            redis_key("other", &["GET", "k"])
        );
        let key = redis_key("cache", &["GET", "k"]);
        assert_eq!(CallKind::of(&key), CallKind::Redis);
        assert_eq!(CallKind::Redis.field_name(KeyField::Body), "arguments");
        assert_eq!(CallKind::Postgres.field_name(KeyField::Body), "parameters");
    }

    #[test]
    fn parameters_are_shown_readably() {
        let null = SqlValue {
            null: true,
            ..Default::default()
        };
        assert_eq!(params_text(&[text("5"), null]), " [$1=5, $2=NULL]");
        assert_eq!(one_line("SELECT\n  1"), "SELECT 1");
    }
}
