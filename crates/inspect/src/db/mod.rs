//! Database and cache calls (`Exchange.db`: PostgreSQL statements, Redis
//! commands) in the words `ls`, `show` and `stats` use for HTTP calls: a
//! method (the SQL verb, the Redis command), a path (the statement on one
//! line, the command with its first arguments), an authority (the egress
//! listener's name) and a status (the command tag, `ERROR 42P01`, the
//! reply's kind).

pub(crate) mod json;
pub(crate) mod resp;
pub(crate) mod show;
pub(crate) mod sql;

use reprise_model::select::{CallHead, ExchangeFilter, RequestHead};
use reprise_model::{DbCall, Exchange, Header, Protocol, SqlStatement};

/// Most characters of a statement or command in an `ls` line; `--json`
/// and `show` keep it whole.
const MAX_LISTED: usize = 160;

/// Redis arguments shown after the command's name in a path.
const LISTED_ARGS: usize = 2;

/// Most characters of one Redis argument in a path.
const MAX_ARG: usize = 40;

/// Whether `exchange` is a database or cache call rather than HTTP.
pub(crate) fn is_db(exchange: &Exchange) -> bool {
    exchange.db.is_some() || matches!(exchange.protocol(), Protocol::Postgres | Protocol::Redis)
}

/// A database call as an HTTP-like head: what `ls` prints and filters
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// `SELECT`, `UPDATE`, `BATCH`, `STARTUP`, `GET`, `HGETALL`... (`-`
    /// when the call holds nothing to name).
    pub method: String,
    /// The SQL on one line (statements of a batch joined by `; `), the
    /// start-up's user and database, or the Redis command with its first
    /// arguments. Not escaped.
    pub path: String,
    /// The egress listener's name (`source.route`), e.g. `orders-db`.
    pub authority: String,
    /// Command tag, `ERROR 42P01`, Redis reply kind, `err:reset`, or `-`.
    pub status: String,
    /// Bytes the client sent: SQL and parameters, or Redis arguments.
    pub request_bytes: u64,
    /// Bytes of the answer: rows as received, or the Redis reply.
    pub response_bytes: u64,
    /// The server answered with an error (SQL error, Redis error reply).
    pub failed: bool,
    /// Rows or reply cut at the recorder's size cap.
    pub truncated: bool,
}

/// The head of a database call; `None` for an HTTP exchange.
pub(crate) fn head(exchange: &Exchange) -> Option<Head> {
    if !is_db(exchange) {
        return None;
    }
    let authority = exchange
        .source
        .as_ref()
        .map(|s| s.route.clone())
        .unwrap_or_default();
    let mut head = Head {
        method: "-".to_string(),
        path: String::new(),
        authority,
        status: "-".to_string(),
        request_bytes: 0,
        response_bytes: 0,
        failed: false,
        truncated: false,
    };
    if let Some(call) = &exchange.db {
        match &call.redis {
            Some(redis) => redis_head(redis, &mut head),
            None => pg_head(call, &mut head),
        }
    }
    if head.status == "-"
        && let Some(error) = &exchange.error
    {
        head.status = format!("err:{}", crate::json::error_kind(error.kind()));
    }
    Some(head)
}

fn pg_head(call: &DbCall, head: &mut Head) {
    let statements = &call.statements;
    head.method = match statements.len() {
        0 if call.startup.is_some() => "STARTUP".to_string(),
        0 => "-".to_string(),
        1 => statements.first().map_or_else(String::new, statement_verb),
        _ => "BATCH".to_string(),
    };
    if statements.is_empty()
        && let Some(startup) = &call.startup
    {
        head.path = startup
            .parameters
            .iter()
            .filter(|p| p.name == "user" || p.name == "database")
            .map(|p| format!("{}={}", p.name, String::from_utf8_lossy(&p.value)))
            .collect::<Vec<_>>()
            .join(" ");
        head.status = match &startup.error {
            Some(error) => {
                head.failed = true;
                format!("ERROR {}", error.code)
            }
            None if startup.authentication.is_empty() => "-".to_string(),
            None => startup.authentication.clone(),
        };
        return;
    }
    head.path = statements
        .iter()
        .map(|s| sql::one_line(&s.sql))
        .collect::<Vec<_>>()
        .join("; ");
    for s in statements {
        head.request_bytes +=
            s.sql.len() as u64 + s.params.iter().map(|p| p.data.len() as u64).sum::<u64>();
        head.response_bytes += s.rows_size.max(
            s.rows
                .iter()
                .flat_map(|r| &r.values)
                .map(|v| v.data.len() as u64)
                .sum(),
        );
        head.truncated |= s.rows_truncated;
    }
    let failed = statements.iter().find_map(|s| s.error.as_ref());
    head.failed = failed.is_some();
    head.status = match (failed, statements.last()) {
        (Some(error), _) => format!("ERROR {}", error.code),
        (None, Some(last)) if !last.command_tag.is_empty() => last.command_tag.clone(),
        (None, Some(last)) if last.suspended => "SUSPENDED".to_string(),
        (None, Some(last)) if last.empty => "EMPTY".to_string(),
        _ => "-".to_string(),
    };
}

/// The verb of one statement; `EMPTY` for an empty query string.
fn statement_verb(statement: &SqlStatement) -> String {
    let verb = sql::verb(&statement.sql);
    if verb.is_empty() {
        "EMPTY".to_string()
    } else {
        verb
    }
}

fn redis_head(redis: &reprise_model::RedisCommand, head: &mut Head) {
    head.method = resp::command_name(&redis.args);
    let mut path = vec![head.method.clone()];
    for arg in redis.args.iter().skip(1).take(LISTED_ARGS) {
        path.push(cut(&resp::argument(arg), MAX_ARG));
    }
    if redis.args.len() > LISTED_ARGS + 1 {
        path.push("…".to_string());
    }
    head.path = path.join(" ");
    head.request_bytes = redis.args.iter().map(|a| a.len() as u64).sum();
    head.response_bytes = redis.reply_size;
    head.truncated = redis.reply_truncated;
    head.status = match &redis.reply {
        Some(reply) => {
            head.failed = resp::is_error(reply);
            resp::status(reply)
        }
        None if redis.reply_truncated => "cut".to_string(),
        None => "-".to_string(),
    };
}

/// `text` in at most `max` characters, `…` at the end standing for the
/// rest.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Head {
    /// What `ls` prints as the target: `orders-db: SELECT ...`, the
    /// statement cut at [`MAX_LISTED`] characters. Not escaped.
    pub(crate) fn target(&self) -> String {
        let path = cut(&self.path, MAX_LISTED);
        match (self.authority.is_empty(), path.is_empty()) {
            (true, _) => path,
            (false, true) => self.authority.clone(),
            (false, false) => format!("{}: {path}", self.authority),
        }
    }
}

/// An exchange as filters read it: a database call's [`Head`] stands in
/// for the request it does not have, so `--match method=SELECT`,
/// `path='*FROM users*'` and `authority=orders-db` select database calls
/// as `ls` shows them.
struct Filtered<'a> {
    exchange: &'a Exchange,
    head: Option<(Head, Vec<Header>)>,
}

impl CallHead for Filtered<'_> {
    fn recorded_at_ns(&self) -> u64 {
        self.exchange.recorded_at_ns
    }

    fn status(&self) -> u32 {
        self.exchange.status()
    }

    fn protocol_label(&self) -> &'static str {
        self.exchange.protocol_label()
    }

    fn request_head(&self) -> Option<RequestHead<'_>> {
        match &self.head {
            Some((head, headers)) => Some(RequestHead {
                method: &head.method,
                path: &head.path,
                authority: &head.authority,
                headers,
            }),
            None => self.exchange.request_head(),
        }
    }
}

/// Whether `exchange` passes `filter`, a database call being matched on
/// its [`Head`] (see [`Filtered`]).
pub(crate) fn matches(filter: &ExchangeFilter, exchange: &Exchange) -> bool {
    if filter.is_empty() {
        return true;
    }
    let head = head(exchange).map(|h| (h, Vec::new()));
    filter.matches(&Filtered { exchange, head })
}

/// The key `stats` groups a database call under: the listener, then the
/// statement template (literals as `?`, whitespace collapsed, a batch's
/// statements joined by `; `), `STARTUP`, or the Redis command's name.
pub(crate) fn stats_key(exchange: &Exchange, head: &Head) -> String {
    let what = match &exchange.db {
        Some(call) if call.redis.is_some() => head.method.clone(),
        Some(call) if call.statements.is_empty() => head.method.clone(),
        Some(call) => call
            .statements
            .iter()
            .map(|s| reprise_wire::pg::normalize(&s.sql).template)
            .collect::<Vec<_>>()
            .join("; "),
        None => "-".to_string(),
    };
    let protocol = exchange.protocol_label();
    if head.authority.is_empty() {
        format!("{protocol} {what}")
    } else {
        format!("{protocol} {}: {what}", head.authority)
    }
}

#[cfg(test)]
mod tests;
