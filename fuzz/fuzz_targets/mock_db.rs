//! Arbitrary bytes as a client's connection to `reprise mock --db`, fed
//! in arbitrary chunks to a PostgreSQL or a Redis `DbConnection` of a
//! mock serving a small recording: it never panics, whatever it is sent,
//! and stops feeding once it says to close or start TLS.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use reprise_mock::server::{MockServer, ServerOptions};
use reprise_mock::{DbStep, MockOptions, MockStore, RecordedListener, RecordedRoute};
use reprise_model::{
    DbCall, Exchange, Header, Protocol, RecordSource, RedisCommand, RespKind, RespValue, Role,
    SqlColumn, SqlError, SqlRow, SqlStartup, SqlStatement, SqlValue,
};

fn recorded(n: u8, route: &str, protocol: Protocol, db: DbCall) -> Exchange {
    Exchange {
        id: vec![n; 16],
        parent_id: if n % 2 == 0 { vec![9; 16] } else { Vec::new() },
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        recorded_at_ns: u64::from(n),
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

fn value(v: &[u8]) -> SqlValue {
    SqlValue {
        data: v.to_vec(),
        ..Default::default()
    }
}

fn statement(sql: &str, params: &[&[u8]]) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params: params.iter().map(|p| value(p)).collect(),
        columns: vec![SqlColumn {
            name: "a".into(),
            type_oid: 25,
            type_size: -1,
            ..Default::default()
        }],
        rows: vec![SqlRow {
            values: vec![value(b"x"), SqlValue {
                null: true,
                ..Default::default()
            }],
        }],
        command_tag: "SELECT 1".into(),
        described_param_types: vec![25],
        described: true,
        extended: !params.is_empty(),
        ..Default::default()
    }
}

fn recording() -> Vec<Exchange> {
    let pg = |n, statements: Vec<SqlStatement>, status: &str| {
        recorded(n, "pg", Protocol::Postgres, DbCall {
            statements,
            transaction_status: status.into(),
            ..Default::default()
        })
    };
    let failed = SqlStatement {
        sql: "SELECT boom".into(),
        error: Some(SqlError {
            severity: "ERROR".into(),
            code: "42703".into(),
            message: "no boom".into(),
            fields: Vec::new(),
        }),
        ..Default::default()
    };
    let redis = |n, args: &[&[u8]], reply: RespValue| {
        recorded(n, "cache", Protocol::Redis, DbCall {
            redis: Some(RedisCommand {
                args: args.iter().map(|a| a.to_vec()).collect(),
                reply: Some(reply),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let bulk = |v: &[u8]| RespValue {
        kind: RespKind::BulkString as i32,
        data: v.to_vec(),
        ..Default::default()
    };
    vec![
        recorded(1, "pg", Protocol::Postgres, DbCall {
            startup: Some(SqlStartup {
                server_parameters: vec![Header::new("server_version", "15")],
                ..Default::default()
            }),
            ..Default::default()
        }),
        pg(2, vec![statement("SELECT 1", &[])], "I"),
        pg(3, vec![statement("SELECT $1", &[b"1"]), failed], "E"),
        pg(4, vec![statement("BEGIN", &[]), statement("select 1", &[])], "T"),
        redis(5, &[b"GET", b"k"], bulk(b"v")),
        redis(6, &[b"HELLO", b"3"], RespValue {
            kind: RespKind::Map as i32,
            items: vec![bulk(b"proto"), RespValue {
                kind: RespKind::Integer as i32,
                data: b"3".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    ]
}

/// The input as chunks: a header byte (its low 7 bits: the length),
/// then that many bytes.
fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&header, rest)) = data.split_first() {
        let len = usize::from(header & 0x7f).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        out.push(chunk);
        data = rest;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let store = MockStore::new(recording(), MockOptions::default());
    let mut options = ServerOptions::default();
    if mode & 2 != 0 {
        // A TLS configuration that cannot be made: the connection stops
        // at StartTls all the same.
        options.db_tls = Some(Arc::new(|_: &str| Err("no leaf".to_string())));
    }
    let Ok(server) = MockServer::new(Arc::new(store), options) else {
        return;
    };
    let (name, scheme) = if mode & 1 == 0 { ("pg", "postgres") } else { ("cache", "redis") };
    let listener = RecordedListener {
        listen: "127.0.0.1:1".into(),
        route: Some(RecordedRoute {
            name: name.into(),
            scheme: scheme.into(),
            authority: "db:1".into(),
        }),
        calls: 1,
    };
    let Some(mut connection) = server.db_connection(&listener, "127.0.0.1:2") else {
        panic!("a database route gives a connection");
    };
    if mode & 4 != 0 {
        server.db_scopes().entered(&[9; 16]);
    }
    let mut out = Vec::new();
    for chunk in chunks(rest) {
        match connection.feed(chunk, &mut out) {
            DbStep::Continue => {}
            DbStep::StartTls | DbStep::Close => break,
        }
    }
});
