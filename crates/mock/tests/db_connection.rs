//! A database connection answered sans I/O (`MockServer::db_connection`),
//! as `reprise test` or a fuzz target drives it: the scope of the one
//! replayed exchange in flight, extended-query batches under new
//! statement names, the unlinked pool, misses, HELLO 3, and the `out`
//! tape's exchanges linked to their scope.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Arc;

use reprise_mock::server::{MockServer, ServerOptions};
use reprise_mock::{DbStep, MockOptions, MockStore, RecordedListener, RecordedRoute};
use reprise_model::{
    DbCall, Exchange, LinkKind, Protocol, RecordSource, RedisCommand, RespKind, RespValue, Role,
    SqlColumn, SqlRow, SqlStatement, SqlValue,
};
use reprise_wire::pg::encode::frontend;

const SQL: &str = "SELECT name FROM users WHERE id = $1";

fn recorded(id: u8, parent: Option<u8>, protocol: Protocol, db: DbCall) -> Exchange {
    let route = if protocol == Protocol::Redis {
        "cache"
    } else {
        "pg"
    };
    Exchange {
        id: vec![id; 16],
        parent_id: parent.map(|p| vec![p; 16]).unwrap_or_default(),
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        recorded_at_ns: u64::from(id),
        source: Some(RecordSource {
            recorder: "proxy".into(),
            listener: format!("127.0.0.1:{}", route.len()),
            route: route.into(),
            server_addr: "db:1".into(),
            ..Default::default()
        }),
        db: Some(db),
        ..Default::default()
    }
}

fn user(id: u8, parent: Option<u8>, name: &str) -> Exchange {
    let statement = SqlStatement {
        sql: SQL.into(),
        statement_name: "_pg3_9".into(),
        params: vec![SqlValue {
            data: b"1".to_vec(),
            ..Default::default()
        }],
        columns: vec![SqlColumn {
            name: "name".into(),
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            ..Default::default()
        }],
        rows: vec![SqlRow {
            values: vec![SqlValue {
                data: name.as_bytes().to_vec(),
                ..Default::default()
            }],
        }],
        command_tag: "SELECT 1".into(),
        extended: true,
        ..Default::default()
    };
    recorded(
        id,
        parent,
        Protocol::Postgres,
        DbCall {
            statements: vec![statement],
            transaction_status: "I".into(),
            ..Default::default()
        },
    )
}

fn listener(name: &str, scheme: &str) -> RecordedListener {
    RecordedListener {
        listen: "127.0.0.1:1".into(),
        route: Some(RecordedRoute {
            name: name.into(),
            scheme: scheme.into(),
            authority: "db:1".into(),
        }),
        calls: 1,
    }
}

/// Bind `portal`-less Execute of the prepared statement `name` with
/// `$1 = id`, then Sync.
fn execute(name: &str, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    frontend::bind(&mut out, "", name, &[], &[Some(id.as_bytes())], &[]);
    frontend::describe(&mut out, b'P', "");
    frontend::execute(&mut out, "", 0);
    frontend::empty(&mut out, b'S');
    out
}

#[test]
fn the_replayed_exchange_in_flight_scopes_statements_and_out_links_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tape");
    let store = MockStore::new(
        vec![
            user(1, Some(7), "seven"),
            user(2, Some(8), "eight"),
            user(3, None, "pool"),
        ],
        MockOptions::default(),
    );
    let options = ServerOptions {
        out: Some(reprise_mock::OutStore::tape(&out)),
        ..ServerOptions::default()
    };
    let server = MockServer::new(Arc::new(store), options).unwrap();
    let mut pg = server
        .db_connection(&listener("pg", "postgres"), "127.0.0.1:9")
        .unwrap();
    let mut start = Vec::new();
    frontend::startup(&mut start, &[("user", "app"), ("database", "shop")]);
    // Prepared under another name than recorded.
    frontend::parse(&mut start, "_pg3_0", SQL, &[]);
    frontend::empty(&mut start, b'S');
    let mut answer = Vec::new();
    assert_eq!(pg.feed(&start, &mut answer), DbStep::Continue);
    assert_eq!(answer.first(), Some(&b'R'), "AuthenticationOk first");
    // The Parse nothing recorded alone is answered by the mock itself.
    assert!(answer.ends_with(&[b'1', 0, 0, 0, 4, b'Z', 0, 0, 0, 5, b'I']));

    let scopes = server.db_scopes();
    scopes.entered(&[8; 16]);
    let mut answer = Vec::new();
    assert_eq!(
        pg.feed(&execute("_pg3_0", "1"), &mut answer),
        DbStep::Continue
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("eight"),
        "the scope's own statement: {text:?}"
    );
    // Again in that scope: its own is used, the unlinked pool answers.
    let mut answer = Vec::new();
    pg.feed(&execute("_pg3_0", "1"), &mut answer);
    assert!(String::from_utf8_lossy(&answer).contains("pool"));
    scopes.left(&[8; 16]);
    // No scope: the whole recording, in recorded order.
    let mut answer = Vec::new();
    pg.feed(&execute("_pg3_0", "1"), &mut answer);
    assert!(String::from_utf8_lossy(&answer).contains("seven"));
    // Calls with no scope have a use of their own of each recorded call
    // (as HTTP's --global): scope 8's use of "eight" is not theirs.
    let mut answer = Vec::new();
    pg.feed(&execute("_pg3_0", "1"), &mut answer);
    assert!(String::from_utf8_lossy(&answer).contains("eight"));
    // Nothing left: a miss with SQLSTATE RP001, then ReadyForQuery.
    let mut answer = Vec::new();
    pg.feed(&execute("_pg3_0", "1"), &mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("RP001") && text.contains("reprise mock miss: pg: SELECT"),
        "{text:?}"
    );
    assert!(answer.ends_with(&[b'Z', 0, 0, 0, 5, b'I']));
    let mut terminate = Vec::new();
    frontend::empty(&mut terminate, b'X');
    assert_eq!(pg.feed(&terminate, &mut Vec::new()), DbStep::Close);

    let stats = server.finish().unwrap();
    assert_eq!((stats.report.served, stats.report.missed), (4, 1));
    assert_eq!(stats.written, 6, "the Parse, four executions and the miss");
    let written: Vec<Exchange> = reprise_tape::TapeReader::open(&out)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let scoped = &written[1];
    assert_eq!(scoped.parent_id, vec![8; 16]);
    assert_eq!(scoped.link.unwrap().kind(), LinkKind::Trace);
    assert_eq!(scoped.replay.as_ref().unwrap().recorded_id, vec![2; 16]);
    assert_eq!(scoped.source.as_ref().unwrap().connection, "pg#1");
    let statement = &scoped.db.as_ref().unwrap().statements[0];
    assert_eq!(statement.statement_name, "_pg3_0", "as the client named it");
    assert_eq!(statement.rows[0].values[0].data, b"eight");
    assert!(written[5].flags.as_ref().unwrap().mock_miss);
    assert!(written[5].parent_id.is_empty());
}

#[test]
fn redis_hello_3_switches_the_encoding_and_garbage_closes() {
    let map = RespValue {
        kind: RespKind::Map as i32,
        items: vec![
            RespValue {
                kind: RespKind::BulkString as i32,
                data: b"k".to_vec(),
                ..Default::default()
            },
            RespValue {
                kind: RespKind::Boolean as i32,
                data: b"t".to_vec(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let store = MockStore::new(
        vec![recorded(
            1,
            None,
            Protocol::Redis,
            DbCall {
                redis: Some(RedisCommand {
                    args: vec![b"HGETALL".to_vec(), b"h".to_vec()],
                    reply: Some(map),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )],
        MockOptions::default(),
    );
    let server = MockServer::new(Arc::new(store), ServerOptions::default()).unwrap();
    let mut redis = server
        .db_connection(&listener("cache", "redis"), "c")
        .unwrap();
    let mut out = Vec::new();
    redis.feed(b"HELLO 3\r\n*2\r\n$7\r\nhgetall\r\n$1\r\nh\r\n", &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("%7\r\n"),
        "a synthesised HELLO map: {text:?}"
    );
    assert!(
        text.ends_with("%1\r\n$1\r\nk\r\n#t\r\n"),
        "RESP3 now: {text:?}"
    );
    let mut out = Vec::new();
    assert_eq!(redis.feed(b"*1\r\n$x\r\n", &mut out), DbStep::Close);
    assert!(out.starts_with(b"-ERR Protocol error"));
    assert!(
        server
            .db_connection(&listener("web", "http"), "c")
            .is_none()
    );
}
