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

use reprise_model::{DbCall, Protocol, RedisCommand, RespKind, RespValue};
use reprise_wire::redis::{RespVersion, Session, encode, is_write, miss_reply, redact_command};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::serve::{DbConn, Outcome};
use super::stream::{DbStream, read_some};

/// Serves one connection until the client leaves, breaks the protocol,
/// or the mock stops (between reads).
pub(crate) async fn serve(conn: DbConn, mut stream: DbStream, mut stop: watch::Receiver<bool>) {
    let mut session = Session::new(conn.max_body());
    let mut version = RespVersion::Resp2;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Some(read) = read_some(&mut stream, &mut buf, &mut stop).await else {
            return;
        };
        let (commands, broken) = match session.feed(buf.get(..read).unwrap_or_default()) {
            Ok(commands) => (commands, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        for command in commands {
            out.extend(answer(&conn, &command.args, &mut version));
        }
        if let Some(e) = broken {
            // As Redis does: say so, and close.
            conn.note(&format!("{e}; connection closed"));
            out.extend_from_slice(
                format!("-ERR Protocol error: {}\r\n", e.kind)
                    .replace(['\r', '\n'], " ")
                    .trim_end()
                    .as_bytes(),
            );
            out.extend_from_slice(b"\r\n");
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return;
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
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
