//! Database and cache calls (`Exchange.db`: PostgreSQL statements, Redis
//! commands) as the downstream comparison sees them: their names in
//! difference paths, the keys that pair them after a mock miss, the calls
//! never compared, and what of a call is compared.
//!
//! - A PostgreSQL call is named `pg LISTENER STATEMENT` by its first
//!   statement, normalised ([`crate::sql`]): comments (sqlcommenter's
//!   `traceparent` among them) and layout gone, keywords lower-cased; its
//!   pattern has the literals as `?`. After a miss it pairs with a
//!   recorded call of the same template.
//! - A Redis call is named `redis LISTENER COMMAND FIRST-ARGUMENT`, its
//!   pattern with id-like parts of the key (`user:42`) as `?`; after a miss
//!   it pairs with a recorded call of the same command.
//! - What is compared is a JSON document, so that `--ignore`, `--unordered`
//!   and a `[[rule]]` for the call apply as to a request body:
//!   `{"sql", "params"}` for one statement (`{"statements": [...]}` for
//!   several), `{"args"}` for Redis (the arguments after the command's
//!   name). Values are text when they are UTF-8, integers as numbers,
//!   binary PostgreSQL parameters of a known type decoded, anything else
//!   as hex (`\x00ff`), NULL as null.
//! - Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT...; Redis
//!   MULTI, EXEC, DISCARD) and connection set-up (start-ups, session SET,
//!   RESET, DISCARD, DEALLOCATE, `SELECT 1` pings; Redis HELLO, AUTH,
//!   SELECT, CLIENT, PING...) depend on the state of the client's pool,
//!   not on what the build does: they are left out.
//!
//! Reads are compared as writes are, as the HTTP calls' GETs are: a
//! build that stops reading, or reads other rows, is a difference too.

use reprise_model::{DbCall, Exchange, Protocol, SqlStatement, is_id_segment};
use serde_json::{Map, Value};

use crate::json::{Difference, diff_with};
use crate::pair::Rules;
use reprise_wire::pg::{Normalized, normalize};

/// Characters of a statement or argument kept in a call's name: a name
/// is read in a report line, and pairing uses the whole template anyway.
const NAME_CHARS: usize = 100;

/// Whether `call` is a database or cache call.
pub(crate) fn is_db(call: &Exchange) -> bool {
    call.db.is_some()
        || matches!(
            Protocol::try_from(call.protocol),
            Ok(Protocol::Postgres | Protocol::Redis)
        )
}

fn is_redis(call: &Exchange, db: &DbCall) -> bool {
    call.protocol == Protocol::Redis as i32 || db.redis.is_some()
}

/// The listener the call went through: `--egress-db NAME=...`'s NAME.
fn listener(call: &Exchange) -> &str {
    call.source
        .as_ref()
        .map(|s| {
            if s.route.is_empty() {
                s.listener.as_str()
            } else {
                s.route.as_str()
            }
        })
        .filter(|l| !l.is_empty())
        .unwrap_or("-")
}

/// Statements that depend on the pool's state, not on the build: a
/// transaction's control, a session's set-up, a liveness ping.
fn is_session_statement(template: &str) -> bool {
    let mut words = template.split(' ');
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    match first {
        "" | "begin" | "commit" | "end" | "rollback" | "abort" | "savepoint" | "release"
        | "reset" | "discard" | "deallocate" => true,
        "start" => second == "transaction",
        // `SET LOCAL` is the application's, per transaction (a tenant for
        // row-level security); a session SET is the pool's.
        "set" => second != "local",
        _ => template == "select ?",
    }
}

/// Redis commands that depend on the connection, not on the build.
fn is_session_command(name: &str) -> bool {
    matches!(
        name,
        "HELLO"
            | "AUTH"
            | "SELECT"
            | "CLIENT"
            | "PING"
            | "READONLY"
            | "READWRITE"
            | "QUIT"
            | "RESET"
            | "MULTI"
            | "EXEC"
            | "DISCARD"
            | "UNWATCH"
    )
}

/// A PostgreSQL call's statements that take part, normalised.
fn compared_statements(db: &DbCall) -> Vec<(&SqlStatement, Normalized)> {
    db.statements
        .iter()
        .map(|s| (s, normalize(&s.sql)))
        .filter(|(_, n)| !is_session_statement(&n.template))
        .collect()
}

/// A Redis command's name, upper case.
fn command(db: &DbCall) -> String {
    db.redis
        .as_ref()
        .and_then(|r| r.args.first())
        .map(|name| String::from_utf8_lossy(name).to_ascii_uppercase())
        .unwrap_or_default()
}

/// Whether `call` is a database call left out of the comparison
/// (transaction control, connection set-up, nothing asked).
pub(crate) fn is_session_call(call: &Exchange) -> bool {
    let Some(db) = &call.db else {
        return false;
    };
    if is_redis(call, db) {
        let name = command(db);
        name.is_empty() || is_session_command(&name)
    } else {
        compared_statements(db).is_empty()
    }
}

/// `text` cut to [`NAME_CHARS`] characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(NAME_CHARS) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or(text)),
        None => text.to_string(),
    }
}

/// A Redis key with its id-like parts (`:`-separated) as `?`.
fn fold_key(key: &str) -> String {
    key.split(':')
        .map(|part| if is_id_segment(part) { "?" } else { part })
        .collect::<Vec<_>>()
        .join(":")
}

/// A database call's name (with `fold`, its pattern): see the module.
pub(crate) fn call_name(call: &Exchange, fold: bool) -> String {
    let Some(db) = &call.db else {
        return format!("db {} (no call)", listener(call));
    };
    if is_redis(call, db) {
        let name = command(db);
        let first = db.redis.as_ref().and_then(|r| r.args.get(1));
        return match first {
            Some(arg) => {
                let arg = String::from_utf8_lossy(arg);
                let arg = if fold {
                    fold_key(&arg)
                } else {
                    arg.into_owned()
                };
                format!("redis {} {name} {}", listener(call), cut(&arg))
            }
            None => format!("redis {} {name}", listener(call)),
        };
    }
    let statements = compared_statements(db);
    let Some((_, first)) = statements.first() else {
        return format!("pg {} (no statement)", listener(call));
    };
    let sql = if fold { &first.template } else { &first.text };
    let more = match statements.len() {
        1 => String::new(),
        n => format!(" (+{} statements)", n - 1),
    };
    format!("pg {} {}{more}", listener(call), cut(sql))
}

/// What pairs a database call after a miss: the listener and the whole
/// template of its statements; for Redis the command.
pub(crate) fn endpoint_key(call: &Exchange) -> String {
    let Some(db) = &call.db else {
        return call_name(call, true);
    };
    if is_redis(call, db) {
        return format!("redis {} {}", listener(call), command(db));
    }
    let templates: Vec<String> = compared_statements(db)
        .into_iter()
        .map(|(_, n)| n.template)
        .collect();
    format!("pg {} {}", listener(call), templates.join("; "))
}

/// The database call's kind of call, paired at the same position when
/// nothing else pairs it: the listener and the statement's first word
/// (`UPDATE`), or the Redis command.
pub(crate) fn verb(call: &Exchange) -> String {
    let Some(db) = &call.db else {
        return call_name(call, true);
    };
    if is_redis(call, db) {
        return endpoint_key(call);
    }
    let statements = compared_statements(db);
    let first = statements
        .first()
        .and_then(|(_, n)| n.template.split(' ').next().map(str::to_string))
        .unwrap_or_default();
    format!("pg {} {}", listener(call), first.to_ascii_uppercase())
}

/// Bytes as a value: UTF-8 text (an integer written canonically as a
/// number), else hex as PostgreSQL writes bytea (`\x00ff`).
fn bytes_value(data: &[u8]) -> Value {
    match std::str::from_utf8(data) {
        Ok(text) => match text.parse::<i64>() {
            Ok(n) if n.to_string() == text => Value::from(n),
            _ => Value::from(text),
        },
        Err(_) => Value::from(hex(data)),
    }
}

fn hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(2 + data.len() * 2);
    out.push_str("\\x");
    for b in data {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A binary parameter of type `oid`, decoded when the type is one whose
/// binary form is simple (psycopg sends integers big-endian in binary);
/// else as hex.
fn binary_value(data: &[u8], oid: u32) -> Value {
    let decoded = match oid {
        16 => match data {
            [b] => Some(Value::from(*b != 0)),
            _ => None,
        },
        21 => <[u8; 2]>::try_from(data)
            .ok()
            .map(|b| Value::from(i16::from_be_bytes(b))),
        23 => <[u8; 4]>::try_from(data)
            .ok()
            .map(|b| Value::from(i32::from_be_bytes(b))),
        20 => <[u8; 8]>::try_from(data)
            .ok()
            .map(|b| Value::from(i64::from_be_bytes(b))),
        700 => <[u8; 4]>::try_from(data)
            .ok()
            .map(|b| Value::from(f64::from(f32::from_be_bytes(b)))),
        701 => <[u8; 8]>::try_from(data)
            .ok()
            .map(|b| Value::from(f64::from_be_bytes(b))),
        // text, varchar, name, bpchar, json: their binary form is the text.
        25 | 1043 | 19 | 1042 | 114 => std::str::from_utf8(data).ok().map(Value::from),
        2950 => <[u8; 16]>::try_from(data).ok().map(|b| {
            let h = hex(&b);
            let h = h.get(2..).unwrap_or_default();
            let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default();
            Value::from(format!(
                "{}-{}-{}-{}-{}",
                part(0..8),
                part(8..12),
                part(12..16),
                part(16..20),
                part(20..32)
            ))
        }),
        _ => None,
    };
    // A NaN has no JSON form: `Value::from` gives null; show the bytes.
    match decoded {
        Some(Value::Null) | None => Value::from(hex(data)),
        Some(v) => v,
    }
}

/// A statement as compared: its normalised text and its parameters.
fn statement_value(s: &SqlStatement, text: String) -> Value {
    let params = s
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.null {
                Value::Null
            } else if p.binary {
                let declared = s.param_types.get(i).copied().filter(|t| *t != 0);
                let oid = declared.or_else(|| s.described_param_types.get(i).copied());
                binary_value(&p.data, oid.unwrap_or(0))
            } else {
                bytes_value(&p.data)
            }
        })
        .collect();
    let mut m = Map::new();
    m.insert("sql".into(), Value::from(text));
    m.insert("params".into(), Value::Array(params));
    Value::Object(m)
}

/// What of a database call is compared (see the module); `several`: its
/// statements as a list, whatever their number.
fn request_value(call: &Exchange, several: bool) -> Value {
    let Some(db) = &call.db else {
        return Value::Null;
    };
    if is_redis(call, db) {
        let args = db
            .redis
            .as_ref()
            .map(|r| r.args.iter().skip(1).map(|a| bytes_value(a)).collect())
            .unwrap_or_default();
        return serde_json::json!({ "args": Value::Array(args) });
    }
    let mut statements: Vec<Value> = compared_statements(db)
        .into_iter()
        .map(|(s, n)| statement_value(s, n.text))
        .collect();
    if !several && statements.len() == 1 {
        statements.pop().unwrap_or(Value::Null)
    } else {
        serde_json::json!({ "statements": statements })
    }
}

fn statement_count(call: &Exchange) -> usize {
    call.db
        .as_ref()
        .filter(|db| !is_redis(call, db))
        .map_or(0, |db| compared_statements(db).len())
}

/// Compares the database call the new build made (`made`) with the
/// recorded call it is paired with, by the rules for the recorded call's
/// name (its pattern, as a `[[rule]]` names it) and the global ones.
/// Paths are those of the compared document: `$.sql`, `$.params[1]`,
/// `$.statements[0].sql`, `$.args[0]`.
pub(crate) fn compare(recorded: &Exchange, made: &Exchange, rules: &Rules) -> Vec<Difference> {
    let several = statement_count(recorded) > 1 || statement_count(made) > 1;
    let a = request_value(recorded, several);
    let b = request_value(made, several);
    let (ignore, unordered) = rules.paths_named(&call_name(recorded, true));
    diff_with(&a, &b, &ignore, &unordered)
}

/// A database call without what only its answer holds (rows, replies):
/// what the comparison keeps of it.
pub(crate) fn strip_answer(db: &mut DbCall) {
    for s in &mut db.statements {
        s.columns.clear();
        s.rows.clear();
    }
    if let Some(r) = db.redis.as_mut() {
        r.reply = None;
    }
    db.notices.clear();
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
