//! Database and cache calls through `ls`, `show` and `stats`, on
//! exchanges built here the way the recorder builds them.
#![allow(clippy::unwrap_used)]

use reprise_model::select::ExchangeFilter;
use reprise_model::{
    DbCall, Exchange, Header, Link, LinkKind, MemorySource, Protocol, RecordSource, RedisCommand,
    RespKind, RespValue, Role, SqlColumn, SqlError, SqlErrorField, SqlRow, SqlStartup,
    SqlStatement, SqlValue,
};

use crate::{LsOptions, ShowOptions, StatsOptions, ls, show, stats};

const T0: u64 = 1_795_514_400_000_000_000; // 2026-11-24T10:00:00Z

fn text(value: &str) -> SqlValue {
    SqlValue {
        data: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn null() -> SqlValue {
    SqlValue {
        null: true,
        ..Default::default()
    }
}

fn db(id: u8, protocol: Protocol, route: &str, call: DbCall) -> Exchange {
    Exchange {
        id: vec![id; 16],
        parent_id: vec![0xaa; 16],
        recorded_at_ns: T0 + u64::from(id) * 1_000_000,
        duration_ns: 1_500_000,
        protocol: protocol as i32,
        role: Role::Downstream as i32,
        source: Some(RecordSource {
            route: route.into(),
            connection: format!("{route}#3"),
            ..Default::default()
        }),
        link: Some(Link {
            kind: LinkKind::InFlight as i32,
            order: 1,
        }),
        db: Some(call),
        ..Default::default()
    }
}

fn pg(id: u8, statements: Vec<SqlStatement>) -> Exchange {
    db(
        id,
        Protocol::Postgres,
        "orders-db",
        DbCall {
            statements,
            transaction_status: "I".into(),
            ..Default::default()
        },
    )
}

fn select() -> Exchange {
    let rows = (1..=25)
        .map(|i| SqlRow {
            values: vec![text(&i.to_string()), text(&format!("user {i}")), null()],
        })
        .collect();
    pg(
        1,
        vec![SqlStatement {
            sql: "select id, name, note\n  from users\n where id > $1 order by id".into(),
            statement_name: "_pg3_0".into(),
            params: vec![text("0")],
            param_types: vec![23],
            columns: ["id", "name", "note"]
                .iter()
                .map(|n| SqlColumn {
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            rows,
            rows_size: 400,
            command_tag: "SELECT 25".into(),
            extended: true,
            ..Default::default()
        }],
    )
}

fn update() -> Exchange {
    let mut ex = pg(
        2,
        vec![SqlStatement {
            sql: "UPDATE accounts SET balance = $1, note = $2, blob = $3 WHERE id = 7".into(),
            params: vec![
                text("O'Brien"),
                null(),
                SqlValue {
                    data: vec![0, 1, 0xff],
                    binary: true,
                    ..Default::default()
                },
            ],
            command_tag: "UPDATE 1".into(),
            extended: true,
            ..Default::default()
        }],
    );
    if let Some(call) = ex.db.as_mut() {
        call.write = true;
        call.transaction_status = "T".into();
    }
    ex
}

fn failed() -> Exchange {
    let field = |kind: char, value: &str| SqlErrorField {
        kind: u32::from(kind),
        value: value.into(),
    };
    pg(
        3,
        vec![SqlStatement {
            sql: "SELECT * FROM nope".into(),
            error: Some(SqlError {
                severity: "ERROR".into(),
                code: "42P01".into(),
                message: "relation \"nope\" does not exist".into(),
                fields: vec![
                    field('S', "ERROR"),
                    field('C', "42P01"),
                    field('M', "relation \"nope\" does not exist"),
                    field('D', "some detail"),
                    field('H', "check the name"),
                    field('P', "15"),
                ],
            }),
            ..Default::default()
        }],
    )
}

fn startup() -> Exchange {
    db(
        4,
        Protocol::Postgres,
        "orders-db",
        DbCall {
            startup: Some(SqlStartup {
                protocol_version: 196_608,
                parameters: vec![
                    Header::new("user", "app"),
                    Header::new("database", "shop"),
                    Header::new("application_name", "ledger"),
                ],
                authentication: "SCRAM-SHA-256".into(),
                server_parameters: vec![Header::new("server_version", "15.4")],
                backend_pid: 4242,
                ..Default::default()
            }),
            transaction_status: "I".into(),
            ..Default::default()
        },
    )
}

fn resp(kind: RespKind, data: &[u8], items: Vec<RespValue>) -> RespValue {
    RespValue {
        kind: kind as i32,
        data: data.to_vec(),
        items,
        ..Default::default()
    }
}

fn redis(id: u8, args: &[&[u8]], reply: RespValue) -> Exchange {
    db(
        id,
        Protocol::Redis,
        "cache",
        DbCall {
            redis: Some(RedisCommand {
                args: args.iter().map(|a| a.to_vec()).collect(),
                reply: Some(reply),
                reply_size: 10,
                ..Default::default()
            }),
            resp_version: 2,
            ..Default::default()
        },
    )
}

fn get() -> Exchange {
    redis(
        5,
        &[b"get", b"user:42"],
        resp(RespKind::BulkString, b"{\"name\":\"ann\"}", vec![]),
    )
}

fn hgetall() -> Exchange {
    let bulk = |b: &[u8]| resp(RespKind::BulkString, b, vec![]);
    redis(
        6,
        &[b"HGETALL", b"user:42"],
        resp(
            RespKind::Array,
            b"",
            vec![bulk(b"name"), bulk(b"ann"), bulk(b"visits"), bulk(b"3")],
        ),
    )
}

fn redis_error() -> Exchange {
    redis(
        7,
        &[b"INCR", b"user:42"],
        resp(
            RespKind::Error,
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
            vec![],
        ),
    )
}

/// Control characters in every recorded field that is printed.
fn hostile() -> Exchange {
    let mut ex = pg(
        8,
        vec![SqlStatement {
            sql: "select '\x1b[2J' as \"\x1b]0;x\x07\"\r\nfrom t".into(),
            params: vec![text("a\x1b[31mred\u{202e}")],
            columns: vec![SqlColumn {
                name: "\x1b[1mcol".into(),
                ..Default::default()
            }],
            rows: vec![SqlRow {
                values: vec![text("v\x1b[0m\nline")],
            }],
            command_tag: "SELECT\x1b 1".into(),
            ..Default::default()
        }],
    );
    if let Some(source) = ex.source.as_mut() {
        source.route = "db\x1b[8m".into();
    }
    ex
}

fn all() -> Vec<Exchange> {
    vec![
        select(),
        update(),
        failed(),
        startup(),
        get(),
        hgetall(),
        redis_error(),
    ]
}

fn listing(exchanges: Vec<Exchange>, filter: ExchangeFilter) -> String {
    let mut out = Vec::new();
    let options = LsOptions {
        filter,
        ..Default::default()
    };
    ls(&mut MemorySource::new(exchanges), &mut out, &options).unwrap();
    String::from_utf8(out).unwrap()
}

fn shown(exchange: Exchange, options: &ShowOptions) -> String {
    let id = exchange.id_hex();
    let mut out = Vec::new();
    show(
        &mut MemorySource::new(vec![exchange]),
        &id,
        &mut out,
        options,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// The columns of an `ls` line after the id and time.
fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().skip(2).collect()
}

#[test]
fn ls_fills_method_status_and_target() {
    let text = listing(all(), ExchangeFilter::new());
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 7, "{text}");
    let expect: [&[&str]; 7] = [
        &[
            "pg",
            "↳SELECT",
            "SELECT",
            "25",
            "1.5ms",
            "62B",
            "400B",
            "orders-db:",
            "select",
        ],
        &["pg", "↳UPDATE", "UPDATE", "1", "1.5ms"],
        &[
            "pg",
            "↳SELECT",
            "ERROR",
            "42P01",
            "1.5ms",
            "18B",
            "0B",
            "orders-db:",
            "SELECT",
        ],
        &[
            "pg",
            "↳STARTUP",
            "SCRAM-SHA-256",
            "1.5ms",
            "0B",
            "0B",
            "orders-db:",
            "user=app",
            "database=shop",
        ],
        &[
            "redis", "↳GET", "bulk", "1.5ms", "10B", "10B", "cache:", "GET", "user:42",
        ],
        &["redis", "↳HGETALL", "array", "4", "1.5ms"],
        &["redis", "↳INCR", "WRONGTYPE", "1.5ms"],
    ];
    for (line, expect) in lines.iter().zip(expect) {
        let got = columns(line);
        assert_eq!(&got[..expect.len()], expect, "{line}");
    }
    assert!(
        lines[0].ends_with("orders-db: select id, name, note from users where id > $1 order by id"),
        "{}",
        lines[0]
    );
}

#[test]
fn ls_cuts_long_statements_and_escapes_everything() {
    let mut long = select();
    if let Some(s) = long.db.as_mut().and_then(|d| d.statements.first_mut()) {
        s.sql = format!("insert into t values {}", "(1), ".repeat(100_000));
    }
    let text = listing(vec![long, hostile()], ExchangeFilter::new());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line each: {text}");
    assert!(
        lines[1].contains("↳INSERT") && lines[1].ends_with('…'),
        "{}",
        lines[1]
    );
    assert!(lines[1].chars().count() < 300);
    assert!(!text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{202e}'));
    assert!(
        lines[2].contains("db\\x1b[8m: select '\\x1b[2J'"),
        "{}",
        lines[2]
    );
}

#[test]
fn match_reads_database_calls_as_ls_shows_them() {
    let method = ExchangeFilter::new().add_match("method=select").unwrap();
    assert_eq!(listing(all(), method).lines().count(), 1 + 2);
    let path = ExchangeFilter::new()
        .add_match("path=*from users*")
        .unwrap();
    assert_eq!(listing(all(), path).lines().count(), 1 + 1);
    let redis = ExchangeFilter::new()
        .add_match("authority=cache")
        .unwrap()
        .add_match("method=GET,HGETALL")
        .unwrap();
    assert_eq!(listing(all(), redis).lines().count(), 1 + 2);
    let protocol = ExchangeFilter::new().add_match("protocol=pg").unwrap();
    assert_eq!(listing(all(), protocol).lines().count(), 1 + 4);
}

#[test]
fn show_lays_out_sql_params_and_rows() {
    let text = shown(select(), &ShowOptions::default());
    for expected in [
        "exchange 01010101010101010101010101010101  (downstream, pg)\n",
        "  link      in_flight, call 2 of its parent's\n",
        "  source    route=orders-db connection=orders-db#3\n",
        "  db        transaction idle\n",
        "\n> (extended, statement _pg3_0)\n> SELECT id, name, note\n> FROM users\n> WHERE id > $1\n> ORDER BY id\n>   $1 = '0' (type 23)\n<\n",
        "< id  name     note\n< 1   user 1   NULL\n",
        "< 20  user 20  NULL\n< … 5 more rows\n< SELECT 25\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    let full = shown(
        select(),
        &ShowOptions {
            full: true,
            ..Default::default()
        },
    );
    assert!(
        full.contains("< 25  user 25  NULL\n< SELECT 25\n"),
        "{full}"
    );
}

#[test]
fn show_params_nulls_binary_and_flags() {
    let text = shown(update(), &ShowOptions::default());
    assert!(
        text.contains("  db        write, transaction in a transaction block\n"),
        "{text}"
    );
    assert!(
        text.contains(">   $1 = 'O''Brien'\n>   $2 = NULL\n>   $3 = \\x0001ff\n< UPDATE 1\n"),
        "{text}"
    );
    assert!(
        text.contains("> UPDATE accounts\n> SET balance = $1"),
        "{text}"
    );
}

#[test]
fn show_errors_with_their_fields() {
    let text = shown(failed(), &ShowOptions::default());
    assert!(
        text.contains(
            "< ERROR 42P01: relation \"nope\" does not exist\n<   detail     some detail\n<   hint       check the name\n<   position   15\n"
        ),
        "{text}"
    );
}

#[test]
fn show_startup() {
    let text = shown(startup(), &ShowOptions::default());
    assert!(
        text.contains(
            "> startup, protocol 3.0\n>   user = app\n>   database = shop\n>   application_name = ledger\n< authentication SCRAM-SHA-256, backend pid 4242\n<   server_version = 15.4\n"
        ),
        "{text}"
    );
}

#[test]
fn show_redis_as_redis_cli() {
    let text = shown(get(), &ShowOptions::default());
    assert!(
        text.contains("\n> GET user:42\n< \"{\\\"name\\\":\\\"ann\\\"}\"\n"),
        "{text}"
    );
    let text = shown(hgetall(), &ShowOptions::default());
    assert!(
        text.contains(
            "> HGETALL user:42\n< 1) \"name\"\n< 2) \"ann\"\n< 3) \"visits\"\n< 4) \"3\"\n"
        ),
        "{text}"
    );
    let text = shown(redis_error(), &ShowOptions::default());
    assert!(
        text.contains("< (error) WRONGTYPE Operation against"),
        "{text}"
    );
    assert!(text.contains("  db        RESP2\n"), "{text}");
}

#[test]
fn show_cuts_huge_values_and_escapes_control_characters() {
    let big = vec![b'x'; 1 << 20];
    let ex = redis(
        9,
        &[b"SET", b"k", &big],
        resp(RespKind::SimpleString, b"OK", vec![]),
    );
    let text = shown(ex, &ShowOptions::default());
    assert!(text.len() < 100 << 10, "{}", text.len());
    assert!(text.contains("…(1048576 bytes)"), "cut shown");
    let text = shown(hostile(), &ShowOptions::default());
    assert!(
        !text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{202e}'),
        "{text}"
    );
    assert!(text.contains("'a\\x1b[31mred\\u{202e}'"), "{text}");
    assert!(text.contains("< \\x1b[1mcol"), "{text}");
}

#[test]
fn show_json_has_the_db_call() {
    let id = failed().id_hex();
    let mut out = Vec::new();
    let options = ShowOptions {
        json: true,
        ..Default::default()
    };
    show(
        &mut MemorySource::new(vec![failed()]),
        &id,
        &mut out,
        &options,
    )
    .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["method"], "SELECT");
    assert_eq!(value["authority"], "orders-db");
    assert_eq!(value["db_status"], "ERROR 42P01");
    let statement = &value["db"]["statements"][0];
    assert_eq!(statement["sql"], "SELECT * FROM nope");
    assert_eq!(statement["error"]["code"], "42P01");
    assert_eq!(statement["error"]["fields"][3]["kind"], "D");

    let mut out = Vec::new();
    let id = update().id_hex();
    show(
        &mut MemorySource::new(vec![update()]),
        &id,
        &mut out,
        &options,
    )
    .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let params = &value["db"]["statements"][0]["params"];
    assert_eq!(params[0], "O'Brien");
    assert_eq!(params[1], serde_json::Value::Null);
    assert_eq!(params[2]["base64"], "AAH/");
    assert_eq!(value["db"]["write"], true);

    let mut out = Vec::new();
    let id = hgetall().id_hex();
    show(
        &mut MemorySource::new(vec![hgetall()]),
        &id,
        &mut out,
        &options,
    )
    .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["db"]["redis"]["command"], "HGETALL");
    assert_eq!(value["db"]["redis"]["args"][1]["value"], "user:42");
    assert_eq!(value["db"]["redis"]["reply"]["items"][1]["data"], "ann");
}

#[test]
fn stats_group_statements_by_template_and_commands_by_name() {
    let mut exchanges = all();
    let mut again = failed();
    again.id = vec![0x33; 16];
    if let Some(s) = again.db.as_mut().and_then(|d| d.statements.first_mut()) {
        s.sql = "select *\n from   NOPE".into();
    }
    exchanges.push(again);
    let stats = stats(&mut MemorySource::new(exchanges), &StatsOptions::default()).unwrap();
    assert!(stats.endpoints.is_empty());
    let keys: Vec<(&str, u64)> = stats
        .db
        .iter()
        .map(|e| (e.endpoint.as_str(), e.count))
        .collect();
    assert_eq!(keys[0], ("pg orders-db: select * from nope", 2));
    assert!(keys.contains(&("redis cache: GET", 1)), "{keys:?}");
    assert!(keys.contains(&("pg orders-db: STARTUP", 1)), "{keys:?}");
    assert!(
        keys.contains(&(
            "pg orders-db: update accounts set balance = $1, note = $2, blob = $3 where id = ?",
            1
        )),
        "{keys:?}"
    );
    assert_eq!(stats.db[0].statuses.get("failed"), Some(&2));
    assert_eq!(stats.protocols.get("redis"), Some(&3));
    let mut text = Vec::new();
    crate::render_text(&stats, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("database and cache calls"), "{text}");
    assert!(text.contains("pg orders-db: select * from nope"), "{text}");
    assert!(text.contains("(all)"), "{text}");
}
