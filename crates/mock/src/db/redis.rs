//! A Redis connection to the mock: each command answered with the
//! recorded reply, re-encoded for the connection's RESP version
//! (`HELLO 3` switches to RESP3); a pipeline answered in order, in one
//! write.
//!
//! Some commands are answered by the mock itself when nothing recorded
//! matches, as the real server would answer them, and logged so: `AUTH`
//! (any password), `SELECT`, `CLIENT SETNAME`/`SETINFO` (`+OK`), `PING`
//! (`+PONG`, or its argument), `ECHO` (its argument), and `HELLO` (a
//! synthesised server map).

use super::connection::DbStep;
use super::serve::{DbConn, Outcome};
use reprise_model::{DbCall, Protocol, RedisCommand, RespKind, RespValue};
use reprise_wire::redis::{RespVersion, Session, encode, is_write, miss_reply, redact_command};

/// A Redis connection's state between reads.
pub(crate) struct RedisState {
    session: Session,
    version: RespVersion,
}

impl RedisState {
    pub(crate) fn new(conn: &DbConn) -> RedisState {
        RedisState {
            session: Session::new(conn.max_body()),
            version: RespVersion::Resp2,
        }
    }

    /// Answers the commands `bytes` complete into `out`, in order; what
    /// to do next.
    pub(crate) fn feed(&mut self, conn: &DbConn, bytes: &[u8], out: &mut Vec<u8>) -> DbStep {
        let (commands, broken) = match self.session.feed(bytes) {
            Ok(commands) => (commands, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        for command in commands {
            out.extend(answer(conn, &command.args, &mut self.version));
        }
        let Some(e) = broken else {
            return DbStep::Continue;
        };
        // As Redis does: say so, and close.
        conn.note(&format!("{e}; connection closed"));
        let line = format!("-ERR Protocol error: {}", e.kind).replace(['\r', '\n'], " ");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        DbStep::Close
    }
}

/// The reply to one command (`args`: its name, then its arguments).
fn answer(conn: &DbConn, args: &[Vec<u8>], version: &mut RespVersion) -> Vec<u8> {
    let started = reprise_model::time::now_ns();
    let scope = conn.scope();
    let (key, order) = conn.count(scope.as_ref());
    let shown = reprise_wire::redis::command_key(args).to_string();
    let call = format!("{}: {shown}", conn.route.name);
    let own = own_reply(args, *version, conn);
    let result = conn.handler.store.answer_redis(
        scope.as_ref(),
        &conn.route.name,
        args,
        call.clone(),
        own.is_none(),
    );
    let (reply, recorded, miss) = match (&result, own) {
        (Ok(served), _) => {
            conn.answered(
                key.as_ref(),
                &call,
                &Outcome::Served {
                    recorded: &served.exchange.id,
                    pool: served.pool,
                },
            );
            let reply = served.reply().cloned().unwrap_or_default();
            if is_hello(args) && reply.kind() != RespKind::Error {
                *version = requested(args).unwrap_or(*version);
            }
            (reply, Some(served.exchange.id.clone()), false)
        }
        (Err(_), Some((reply, switched))) => {
            conn.answered(key.as_ref(), &call, &Outcome::Own);
            *version = switched;
            (reply, None, false)
        }
        (Err(miss), None) => {
            conn.answered(key.as_ref(), &call, &Outcome::Missed);
            let text = miss.to_string();
            let detail = text.strip_prefix("reprise mock miss: ").unwrap_or(&text);
            let bytes = miss_reply(detail);
            let reply = RespValue {
                kind: RespKind::Error as i32,
                data: bytes
                    .get(1..bytes.len().saturating_sub(2))
                    .unwrap_or_default()
                    .to_vec(),
                ..Default::default()
            };
            (reply, None, true)
        }
    };
    let bytes = encode(&reply, *version);
    if conn.handler.out.is_some() {
        let mut exchange = conn.out_exchange(
            key.as_ref(),
            order,
            Protocol::Redis,
            recorded.as_deref(),
            miss,
            started,
        );
        let mut kept = args.to_vec();
        redact_command(&mut kept);
        let write = kept
            .split_first()
            .is_some_and(|(name, rest)| is_write(name, rest));
        exchange.db = Some(DbCall {
            redis: Some(RedisCommand {
                args: kept,
                reply_size: bytes.len() as u64,
                reply: Some(reply),
                reply_truncated: false,
            }),
            resp_version: version.number(),
            write,
            ..Default::default()
        });
        conn.keep(exchange);
    }
    bytes
}

fn name_is(args: &[Vec<u8>], name: &str) -> bool {
    args.first()
        .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
}

fn is_hello(args: &[Vec<u8>]) -> bool {
    name_is(args, "HELLO")
}

/// The version a `HELLO` asks for (none: it keeps the current one).
fn requested(args: &[Vec<u8>]) -> Option<RespVersion> {
    match args.get(1).map(Vec::as_slice) {
        Some(b"2") => Some(RespVersion::Resp2),
        Some(b"3") => Some(RespVersion::Resp3),
        _ => None,
    }
}

fn simple(kind: RespKind, text: &[u8]) -> RespValue {
    RespValue {
        kind: kind as i32,
        data: text.to_vec(),
        ..Default::default()
    }
}

/// What the mock answers by itself to a command a real server answers
/// without state of interest, and the version in force after it; `None`
/// for any other command.
fn own_reply(
    args: &[Vec<u8>],
    version: RespVersion,
    conn: &DbConn,
) -> Option<(RespValue, RespVersion)> {
    let ok = || Some((simple(RespKind::SimpleString, b"OK"), version));
    if name_is(args, "AUTH") || name_is(args, "SELECT") {
        return ok();
    }
    if name_is(args, "CLIENT") {
        let sub = args.get(1)?;
        if sub.eq_ignore_ascii_case(b"SETNAME") || sub.eq_ignore_ascii_case(b"SETINFO") {
            return ok();
        }
        return None;
    }
    if name_is(args, "ECHO")
        && let [_, echo] = args
    {
        // `redis-cli --pipe` ends its pipeline with one to know the end.
        return Some((simple(RespKind::BulkString, echo), version));
    }
    if name_is(args, "PING") {
        return Some(match args.get(1) {
            Some(echo) => (simple(RespKind::BulkString, echo), version),
            None => (simple(RespKind::SimpleString, b"PONG"), version),
        });
    }
    if is_hello(args) {
        if args.len() > 1 && requested(args).is_none() {
            return Some((
                simple(RespKind::Error, b"NOPROTO unsupported protocol version"),
                version,
            ));
        }
        let version = requested(args).unwrap_or(version);
        return Some((hello_map(version, conn), version));
    }
    None
}

/// The map a Redis 7 server answers `HELLO` with.
fn hello_map(version: RespVersion, conn: &DbConn) -> RespValue {
    let text = |s: &str| simple(RespKind::BulkString, s.as_bytes());
    let integer = |n: u64| simple(RespKind::Integer, n.to_string().as_bytes());
    let id = conn
        .connection
        .rsplit('#')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    RespValue {
        kind: RespKind::Map as i32,
        items: vec![
            text("server"),
            text("redis"),
            text("version"),
            text("7.0.0"),
            text("proto"),
            integer(u64::from(version.number())),
            text("id"),
            integer(id),
            text("mode"),
            text("standalone"),
            text("role"),
            text("master"),
            text("modules"),
            RespValue {
                kind: RespKind::Array as i32,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}
