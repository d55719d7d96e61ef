//! `reprise ls`, `show` and `stats` on database and cache calls, through
//! the real binary, on a tape of an inbound call and the PostgreSQL and
//! Redis calls it made, as `record --egress-db` writes them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use reprise_model::{
    DbCall, Exchange, Header, Link, LinkKind, Protocol, RecordSource, RedisCommand, Request,
    RespKind, RespValue, Response, Role, SqlColumn, SqlError, SqlRow, SqlStartup, SqlStatement,
    SqlValue,
};
use serde_json::Value;

mod support;
use support::*;

const T0: u64 = 1_795_514_400_000_000_000; // 2026-11-24T10:00:00Z
const PARENT: u8 = 0x10;

fn inbound() -> Exchange {
    Exchange {
        id: vec![PARENT; 16],
        recorded_at_ns: T0,
        duration_ns: 9_000_000,
        protocol: Protocol::Http11 as i32,
        role: Role::Inbound as i32,
        request: Some(Request {
            method: "GET".into(),
            authority: "ledger.test".into(),
            path: "/users/7".into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn downstream(id: u8, order: u32, protocol: Protocol, route: &str, call: DbCall) -> Exchange {
    Exchange {
        id: vec![id; 16],
        parent_id: vec![PARENT; 16],
        recorded_at_ns: T0 + u64::from(order + 1) * 1_000_000,
        duration_ns: 700_000,
        protocol: protocol as i32,
        role: Role::Downstream as i32,
        source: Some(RecordSource {
            route: route.into(),
            connection: format!("{route}#1"),
            ..Default::default()
        }),
        link: Some(Link {
            kind: LinkKind::InFlight as i32,
            order,
        }),
        db: Some(call),
        ..Default::default()
    }
}

fn value(text: &str) -> SqlValue {
    SqlValue {
        data: text.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn tape_exchanges() -> Vec<Exchange> {
    let startup = DbCall {
        startup: Some(SqlStartup {
            protocol_version: 196_608,
            parameters: vec![
                Header::new("user", "ledger"),
                Header::new("database", "ledger"),
            ],
            authentication: "md5".into(),
            backend_pid: 77,
            ..Default::default()
        }),
        transaction_status: "I".into(),
        ..Default::default()
    };
    let select = DbCall {
        statements: vec![SqlStatement {
            sql: "select id, name from users where id = $1".into(),
            params: vec![value("7")],
            columns: vec![
                SqlColumn {
                    name: "id".into(),
                    ..Default::default()
                },
                SqlColumn {
                    name: "name".into(),
                    ..Default::default()
                },
            ],
            rows: vec![SqlRow {
                values: vec![value("7"), value("ann")],
            }],
            rows_size: 14,
            command_tag: "SELECT 1".into(),
            extended: true,
            ..Default::default()
        }],
        transaction_status: "I".into(),
        ..Default::default()
    };
    let missing = DbCall {
        statements: vec![SqlStatement {
            sql: "SELECT * FROM visits_2026".into(),
            error: Some(SqlError {
                severity: "ERROR".into(),
                code: "42P01".into(),
                message: "relation \"visits_2026\" does not exist".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        transaction_status: "I".into(),
        ..Default::default()
    };
    let cache = |args: &[&[u8]], reply: RespValue| DbCall {
        redis: Some(RedisCommand {
            args: args.iter().map(|a| a.to_vec()).collect(),
            reply: Some(reply),
            reply_size: 5,
            ..Default::default()
        }),
        resp_version: 2,
        ..Default::default()
    };
    let nil = RespValue {
        kind: RespKind::Null as i32,
        ..Default::default()
    };
    let ok = RespValue {
        kind: RespKind::SimpleString as i32,
        data: b"OK".to_vec(),
        ..Default::default()
    };
    vec![
        inbound(),
        downstream(
            0x21,
            0,
            Protocol::Redis,
            "cache",
            cache(&[b"GET", b"user:7"], nil),
        ),
        downstream(0x22, 1, Protocol::Postgres, "ledger-db", startup),
        downstream(0x23, 2, Protocol::Postgres, "ledger-db", select),
        downstream(0x24, 3, Protocol::Postgres, "ledger-db", missing),
        downstream(
            0x25,
            4,
            Protocol::Redis,
            "cache",
            cache(
                &[b"SET", b"user:7", b"{\"name\":\"ann\"}", b"EX", b"60"],
                ok,
            ),
        ),
    ]
}

fn tape() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.tape");
    write_exchanges(&path, &tape_exchanges());
    (dir, path)
}

fn ok(args: &[&str]) -> String {
    let output = reprise(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Each line's columns after the id and time, as words.
fn columns(listing: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(2).map(str::to_string).collect())
        .collect()
}

#[test]
fn ls_shows_database_and_cache_calls_in_the_columns_of_http_calls() {
    let (_dir, tape) = tape();
    let listing = ok(&["ls", s(&tape)]);
    let got = columns(&listing);
    let expect: [&[&str]; 6] = [
        &[
            "h1",
            "GET",
            "200",
            "9.0ms",
            "0B",
            "0B",
            "ledger.test/users/7",
        ],
        &[
            "redis", "↳GET", "nil", "700µs", "9B", "5B", "cache:", "GET", "user:7",
        ],
        &[
            "pg",
            "↳STARTUP",
            "md5",
            "700µs",
            "0B",
            "0B",
            "ledger-db:",
            "user=ledger",
            "database=ledger",
        ],
        &[
            "pg",
            "↳SELECT",
            "SELECT",
            "1",
            "700µs",
            "41B",
            "14B",
            "ledger-db:",
            "select",
            "id,",
        ],
        &[
            "pg",
            "↳SELECT",
            "ERROR",
            "42P01",
            "700µs",
            "25B",
            "0B",
            "ledger-db:",
            "SELECT",
            "*",
        ],
        &[
            "redis",
            "↳SET",
            "OK",
            "700µs",
            "27B",
            "5B",
            "cache:",
            "SET",
            "user:7",
            "\"{\\\"name\\\":\\\"ann\\\"}\"",
            "…",
        ],
    ];
    assert_eq!(got.len(), expect.len(), "{listing}");
    for (line, expect) in got.iter().zip(expect) {
        assert_eq!(&line[..expect.len().min(line.len())], expect, "{listing}");
    }
    assert!(
        listing
            .lines()
            .nth(4)
            .unwrap()
            .ends_with("ledger-db: select id, name from users where id = $1"),
        "{listing}"
    );

    // --match reads the columns as shown.
    let selects = ok(&["ls", s(&tape), "--match", "method=select"]);
    assert_eq!(selects.lines().count(), 1 + 2, "{selects}");
    let cache = ok(&["ls", s(&tape), "--match", "authority=cache", "--json"]);
    let lines: Vec<Value> = cache
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{cache}");
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["path"], "GET user:7");
    assert_eq!(lines[0]["db_status"], "nil");
    assert_eq!(lines[1]["protocol"], "redis");
    let users = ok(&["ls", s(&tape), "--path", "*from users*"]);
    assert_eq!(users.lines().count(), 1 + 1, "{users}");
}

#[test]
fn show_prints_sql_rows_errors_and_replies() {
    let (_dir, tape) = tape();
    let shown = ok(&["show", s(&tape), &"10".repeat(16)]);
    for expected in [
        "downstream calls (5):\n",
        "  > GET user:7\n  < (nil)\n",
        "  > startup, protocol 3.0\n  >   user = ledger\n",
        "  < authentication md5, backend pid 77\n",
        "    link      in_flight, call 3 of its parent's\n",
        "  > (extended)\n  > SELECT id, name\n  > FROM users\n  > WHERE id = $1\n  >   $1 = '7'\n  <\n  < id  name\n  < 7   ann\n  < SELECT 1\n",
        "  > SELECT *\n  > FROM visits_2026\n  < ERROR 42P01: relation \"visits_2026\" does not exist\n",
        "  > SET user:7 \"{\\\"name\\\":\\\"ann\\\"}\" EX 60\n  < OK\n",
    ] {
        assert!(shown.contains(expected), "{expected:?} in\n{shown}");
    }
    let json: Value =
        serde_json::from_str(&ok(&["show", s(&tape), &"23".repeat(16), "--json"])).unwrap();
    assert_eq!(json["method"], "SELECT");
    assert_eq!(json["db"]["statements"][0]["rows"][0][1], "ann");
    assert_eq!(json["db"]["statements"][0]["command_tag"], "SELECT 1");
    assert_eq!(json["link"]["kind"], "in_flight");
}

#[test]
fn stats_has_a_section_of_statements_and_commands() {
    let (_dir, tape) = tape();
    let report = ok(&["stats", s(&tape)]);
    assert!(
        report.contains("protocols   h1 1  pg 3  redis 2\n"),
        "{report}"
    );
    let table = report
        .split("database and cache calls")
        .nth(1)
        .unwrap_or_else(|| panic!("no database section in\n{report}"));
    for row in [
        "pg ledger-db: STARTUP",
        "pg ledger-db: select * from visits_2026",
        "pg ledger-db: select id, name from users where id = $1",
        "redis cache: GET",
        "redis cache: SET",
    ] {
        assert!(table.contains(row), "{row} in\n{report}");
    }
    let json: Value = serde_json::from_str(&ok(&["stats", s(&tape), "--json"])).unwrap();
    let db = json["db"].as_array().unwrap();
    assert_eq!(db.len(), 5, "{json}");
    let failed = db
        .iter()
        .find(|e| e["endpoint"] == "pg ledger-db: select * from visits_2026")
        .unwrap();
    assert_eq!(failed["statuses"]["failed"], 1);
    assert_eq!(json["endpoints"].as_array().unwrap().len(), 1);
}
