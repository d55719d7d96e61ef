//! `reprise mock --db`: recorded PostgreSQL and Redis exchanges answered
//! to real clients (psql, redis-cli, psycopg) by the real binary: matches,
//! misses and the exit code, TLS with the reprise CA, prepared statements
//! matched without their names, `--out`, and bad input on the ports.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reprise_model::{
    DbCall, Exchange, Header, Link, LinkKind, Protocol, RecordSource, RedisCommand, RespKind,
    RespValue, Role, SqlColumn, SqlRow, SqlStartup, SqlStatement, SqlValue,
};

mod support;
use support::*;

const AT: u64 = 1_700_000_000_000_000_000;

/// A recorded database exchange `n` of the route `route`, unlinked.
fn recorded(n: u8, route: &str, protocol: Protocol, db: DbCall) -> Exchange {
    Exchange {
        id: vec![n; 16],
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        recorded_at_ns: AT + u64::from(n),
        source: Some(RecordSource {
            recorder: "proxy".into(),
            // Each database had its own listener.
            listener: format!("127.0.0.1:{}", route.len()),
            route: route.into(),
            server_addr: "db:5432".into(),
            connection: format!("{route}#1"),
            ..Default::default()
        }),
        link: Some(Link {
            kind: LinkKind::Unlinked as i32,
            order: 0,
        }),
        db: Some(db),
        ..Default::default()
    }
}

fn value(v: &str) -> SqlValue {
    SqlValue {
        data: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A statement answered with one text column `name` and `rows`.
fn select(sql: &str, params: &[&str], rows: &[&str]) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params: params.iter().map(|p| value(p)).collect(),
        columns: vec![SqlColumn {
            name: "name".into(),
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            ..Default::default()
        }],
        rows: rows
            .iter()
            .map(|r| SqlRow {
                values: vec![value(r)],
            })
            .collect(),
        command_tag: format!("SELECT {}", rows.len()),
        extended: !params.is_empty(),
        ..Default::default()
    }
}

fn sql(n: u8, statements: Vec<SqlStatement>) -> Exchange {
    recorded(
        n,
        "orders-db",
        Protocol::Postgres,
        DbCall {
            statements,
            transaction_status: "I".into(),
            ..Default::default()
        },
    )
}

fn startup(n: u8) -> Exchange {
    recorded(
        n,
        "orders-db",
        Protocol::Postgres,
        DbCall {
            startup: Some(SqlStartup {
                protocol_version: 196_608,
                authentication: "trust".into(),
                server_parameters: vec![
                    Header::new("server_version", "15.4 (recorded)"),
                    Header::new("client_encoding", "UTF8"),
                    Header::new("DateStyle", "ISO, MDY"),
                    Header::new("integer_datetimes", "on"),
                    Header::new("standard_conforming_strings", "on"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn bulk(v: &str) -> RespValue {
    RespValue {
        kind: RespKind::BulkString as i32,
        data: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn redis(n: u8, args: &[&str], reply: RespValue) -> Exchange {
    let mut exchange = recorded(
        n,
        "cache",
        Protocol::Redis,
        DbCall {
            redis: Some(RedisCommand {
                args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                reply: Some(reply),
                ..Default::default()
            }),
            resp_version: 2,
            ..Default::default()
        },
    );
    exchange.source.as_mut().unwrap().server_addr = "r:6379".into();
    exchange
}

/// The recording the tests serve: a PostgreSQL start-up and queries, and
/// Redis commands.
fn recording(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let tape = temp_tape(dir, "db.tape");
    let query = "SELECT name FROM users WHERE id = 1";
    write_exchanges(
        &tape,
        &[
            startup(1),
            sql(2, vec![select(query, &[], &["ada"])]),
            sql(3, vec![select(query, &[], &["ada (second call)"])]),
            redis(4, &["GET", "user:1"], bulk("ada")),
            redis(5, &["GET", "user:2"], bulk("bob")),
            redis(
                6,
                &["SET", "seen", "1"],
                RespValue {
                    kind: RespKind::SimpleString as i32,
                    data: b"OK".to_vec(),
                    ..Default::default()
                },
            ),
        ],
    );
    tape
}

/// A mock of `tape` with its databases on free ports: (mock, pg port,
/// redis port).
fn mock(tape: &Path, extra: &[&str]) -> (Recorder, u16, u16) {
    let (pg, cache) = (free_port(), free_port());
    let pg_arg = format!("orders-db=127.0.0.1:{pg}");
    let cache_arg = format!("cache=127.0.0.1:{cache}");
    let mut args = vec!["--db", &pg_arg];
    if !extra.contains(&"--no-log") {
        args.push("--log");
    }
    if !extra.contains(&"--no-cache") {
        args.extend(["--db", &cache_arg]);
    }
    let extra: Vec<&str> = extra
        .iter()
        .copied()
        .filter(|a| *a != "--no-cache" && *a != "--no-log")
        .collect();
    args.extend_from_slice(&extra);
    (Recorder::mock(tape, &args), pg, cache)
}

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn psql(port: u16, extra: &[&str]) -> Output {
    let port = port.to_string();
    let mut args = vec![
        "-X",
        "-At",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "app",
        "-d",
        "shop",
    ];
    args.extend_from_slice(extra);
    run("psql", &args, None)
}

fn redis_cli(port: u16, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let port = port.to_string();
    let mut all = vec!["-p", port.as_str()];
    all.extend_from_slice(args);
    run("redis-cli", &all, stdin)
}

#[test]
fn psql_and_redis_cli_are_answered_from_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let tape = recording(&dir);
    let (mock, pg, cache) = mock(&tape, &[]);
    let query = "SELECT name FROM users WHERE id = 1";
    let first = psql(pg, &["-c", query]);
    assert_eq!(text(&first.stdout), "ada\n", "{}", text(&first.stderr));
    // Identical calls: the recorded answers in recorded order. The
    // server's parameters are the recorded ones.
    let second = psql(pg, &["-c", "select name\n  from users where id = 1"]);
    assert_eq!(
        text(&second.stdout),
        "ada (second call)\n",
        "{}",
        text(&second.stderr)
    );
    let version = psql(pg, &["-c", "\\echo :SERVER_VERSION_NAME"]);
    assert_eq!(text(&version.stdout), "15.4 (recorded)\n");

    let get = redis_cli(cache, &["get", "user:1"], None);
    assert_eq!(text(&get.stdout), "ada\n", "{}", text(&get.stderr));
    // AUTH and PING are answered without a recording; the write is
    // answered as recorded.
    let auth = redis_cli(
        cache,
        &["-a", "secret", "--no-auth-warning", "SET", "seen", "1"],
        None,
    );
    assert_eq!(text(&auth.stdout), "OK\n", "{}", text(&auth.stderr));
    assert_eq!(text(&redis_cli(cache, &["PING"], None).stdout), "PONG\n");
    // A pipeline: every command sent before any reply is read.
    let pipeline = b"*2\r\n$3\r\nGET\r\n$6\r\nuser:2\r\n*1\r\n$4\r\nPING\r\n";
    let piped = redis_cli(cache, &["--pipe"], Some(pipeline));
    assert!(
        text(&piped.stdout).contains("errors: 0, replies: 2"),
        "{}\n{:?}",
        text(&piped.stdout),
        mock.stderr.try_iter().collect::<Vec<_>>()
    );

    let stderr = mock.stop_cleanly("-INT");
    assert!(stderr.contains("mock served 5 calls"), "{stderr}");
    assert!(stderr.contains(", missed 0"), "{stderr}");
    assert!(
        stderr.contains("orders-db: SELECT name FROM users WHERE id = 1 (no replayed call): answered by recorded 0202"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cache: AUTH [redacted] (no replayed call): answered by the mock itself"),
        "{stderr}"
    );
}

#[test]
fn misses_are_errors_to_the_clients_and_fail_the_mock() {
    let dir = tempfile::tempdir().unwrap();
    let tape = recording(&dir);
    let out = dir.path().join("out.tape");
    let (mock, pg, cache) = mock(&tape, &["--out", s(&out)]);
    let missed = psql(
        pg,
        &[
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "SELECT name FROM users WHERE id = 2",
        ],
    );
    assert_eq!(missed.status.code(), Some(1));
    let error = text(&missed.stderr);
    assert!(
        error.contains(
            "ERROR:  RP001: reprise mock miss: orders-db: SELECT name FROM users WHERE id = 2"
        ),
        "{error}"
    );
    assert!(
        error.contains("nearest 02020202020202020202020202020202 orders-db: SELECT name FROM users WHERE id = 1 (differs in literals)"),
        "{error}"
    );
    // The connection stays usable after a miss.
    let both = psql(
        pg,
        &[
            "-c",
            "SELECT 42",
            "-c",
            "SELECT name FROM users WHERE id = 1",
        ],
    );
    assert_eq!(text(&both.stdout), "ada\n", "{}", text(&both.stderr));
    let get = redis_cli(cache, &["GET", "user:3"], None);
    let reply = text(&get.stdout);
    assert!(
        reply.starts_with("ERR reprise mock miss: cache: GET user:3"),
        "{reply}"
    );
    assert!(
        reply.contains("cache: GET user:1 (differs in arguments)"),
        "{reply}"
    );

    let (code, stderr) = mock.stop("-INT");
    assert_eq!(code, 1, "misses fail the mock: {stderr}");
    assert!(stderr.contains("missed 3"), "{stderr}");

    let written = read_tape(&out);
    assert_eq!(written.len(), 4, "{written:#?}");
    let misses: Vec<&Exchange> = written
        .iter()
        .filter(|e| e.flags.as_ref().is_some_and(|f| f.mock_miss))
        .collect();
    assert_eq!(misses.len(), 3);
    let served = written
        .iter()
        .find(|e| e.replay.is_some())
        .expect("the served SELECT names its recorded exchange");
    assert_eq!(served.replay.as_ref().unwrap().recorded_id, vec![2; 16]);
    assert_eq!(served.protocol(), Protocol::Postgres);
    let source = served.source.as_ref().unwrap();
    assert_eq!(
        (source.recorder.as_str(), source.route.as_str()),
        ("mock", "orders-db")
    );
    let statement = &served.db.as_ref().unwrap().statements[0];
    assert_eq!(statement.command_tag, "SELECT 1");
    let redis_miss = written
        .iter()
        .find(|e| e.protocol() == Protocol::Redis)
        .unwrap();
    let reply = redis_miss.db.as_ref().unwrap().redis.as_ref().unwrap();
    assert_eq!(reply.reply.as_ref().unwrap().kind(), RespKind::Error);
}

#[test]
fn psql_with_tls_gets_a_leaf_of_the_reprise_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let init = reprise(&["ca", "init", "--dir", s(&ca)]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let tape = recording(&dir);
    let (mock, pg, _) = mock(&tape, &["--ca-dir", s(&ca)]);
    let conninfo = format!(
        "host=127.0.0.1 port={pg} user=app dbname=shop sslmode=verify-ca sslrootcert={}",
        ca.join("ca.pem").display()
    );
    let out = run(
        "psql",
        &[
            "-X",
            "-At",
            &conninfo,
            "-c",
            "SELECT name FROM users WHERE id = 1",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "ada\n", "{}", text(&out.stderr));
    // Without TLS too.
    let plain = psql(pg, &["-c", "SELECT name FROM users WHERE id = 1"]);
    assert_eq!(
        text(&plain.stdout),
        "ada (second call)\n",
        "{}",
        text(&plain.stderr)
    );
    mock.stop_cleanly("-INT");
}

#[test]
fn without_a_ca_tls_is_refused_and_sslmode_prefer_goes_plain() {
    let dir = tempfile::tempdir().unwrap();
    let tape = recording(&dir);
    // A CA directory with no CA in it, whatever this machine has.
    let pg = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
    command
        .arg("mock")
        .arg(&tape)
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(format!("orders-db=127.0.0.1:{pg}"))
        .env("REPRISE_CA_DIR", dir.path().join("no-ca"));
    let mock = Recorder::spawn(command);
    let conninfo = format!("host=127.0.0.1 port={pg} user=app dbname=shop sslmode=prefer");
    let out = run(
        "psql",
        &[
            "-X",
            "-At",
            &conninfo,
            "-c",
            "SELECT name FROM users WHERE id = 1",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "ada\n", "{}", text(&out.stderr));
    let conninfo = format!("host=127.0.0.1 port={pg} user=app dbname=shop sslmode=require");
    let out = run("psql", &["-X", "-At", &conninfo, "-c", "SELECT 1"], None);
    assert!(
        text(&out.stderr).contains("server does not support SSL"),
        "{}",
        text(&out.stderr)
    );
    mock.stop_cleanly("-INT");
}

/// Reads until the peer closes (10 s at most): what it sent.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the mock did not close the connection: {e}; got {all:?}"),
        }
    }
}

#[test]
fn bad_input_closes_that_connection_and_the_mock_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let tape = recording(&dir);
    // Without --log: a connection closed for what it sent is said anyway.
    let (mock, pg, cache) = mock(&tape, &["--no-log"]);

    let mut garbage = TcpStream::connect(("127.0.0.1", pg)).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_to_close(&mut garbage);
    assert_eq!(answer.first(), Some(&b'E'), "an ErrorResponse: {answer:?}");

    // Protocol 2.0's start-up.
    let mut old = TcpStream::connect(("127.0.0.1", pg)).unwrap();
    let mut packet = vec![0, 0, 0, 0, 0, 2, 0, 0];
    packet.extend_from_slice(b"user\0app\0\0");
    let len = u32::try_from(packet.len()).unwrap().to_be_bytes();
    packet[..4].copy_from_slice(&len);
    old.write_all(&packet).unwrap();
    let answer = text(&read_to_close(&mut old));
    assert!(answer.contains("protocol version 2.0"), "{answer:?}");

    let mut resp = TcpStream::connect(("127.0.0.1", cache)).unwrap();
    resp.write_all(b"*1\r\n$-5\r\n").unwrap();
    let answer = text(&read_to_close(&mut resp));
    assert!(answer.starts_with("-ERR Protocol error"), "{answer:?}");

    // Still serving.
    let ok = psql(pg, &["-c", "SELECT name FROM users WHERE id = 1"]);
    assert_eq!(text(&ok.stdout), "ada\n", "{}", text(&ok.stderr));
    let get = redis_cli(cache, &["GET", "user:1"], None);
    assert_eq!(text(&get.stdout), "ada\n");

    let stderr = mock.stop_cleanly("-INT");
    assert!(
        stderr.contains("not PostgreSQL (or not protocol 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("connection closed"), "{stderr}");
}

#[test]
fn psycopg_prepared_statements_match_without_their_names() {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output()
        .unwrap();
    if !probe.status.success() {
        eprintln!("skipped: psycopg is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "prepared.tape");
    let query = "SELECT name FROM users WHERE id = $1::int";
    // Recorded under other names: `_pg3_5` prepared, then run three times.
    let mut parse = SqlStatement {
        sql: query.into(),
        statement_name: "_pg3_5".into(),
        extended: true,
        ..Default::default()
    };
    parse.param_types = vec![0];
    let mut exchanges = vec![startup(1), sql(2, vec![parse])];
    for (n, name) in [(3u8, "ada"), (4, "ada again"), (5, "ada thrice")] {
        let mut run = select(query, &["1"], &[name]);
        run.statement_name = "_pg3_5".into();
        exchanges.push(sql(n, vec![run]));
    }
    write_exchanges(&tape, &exchanges);
    let (mock, pg, _) = mock(&tape, &["--no-cache"]);
    let script = format!(
        r#"
import psycopg
with psycopg.connect("host=127.0.0.1 port={pg} user=app dbname=shop", autocommit=True) as conn:
    for _ in range(3):
        print(conn.execute("SELECT name FROM users WHERE id = %s::int", ("1",), prepare=True).fetchone()[0])
"#
    );
    let out = run("python3", &["-c", &script], None);
    assert_eq!(
        text(&out.stdout),
        "ada\nada again\nada thrice\n",
        "{}",
        text(&out.stderr)
    );
    let stderr = mock.stop_cleanly("-INT");
    assert!(stderr.contains("missed 0"), "{stderr}");
}

#[test]
fn database_connections_wait_for_a_place_under_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    let tape = recording(&dir);
    let (mock, _, cache) = mock(&tape, &["--max-connections", "1"]);
    let get = |stream: &mut TcpStream, key: &str| {
        let command = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
        stream.write_all(command.as_bytes()).unwrap();
    };
    let answer = |stream: &mut TcpStream| -> std::io::Result<String> {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while !all.ends_with(b"\r\n") || all.len() < 5 {
            let n = stream.read(&mut buf)?;
            assert!(n > 0, "closed: {all:?}");
            all.extend_from_slice(&buf[..n]);
        }
        Ok(text(&all))
    };
    let mut first = TcpStream::connect(("127.0.0.1", cache)).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    get(&mut first, "user:1");
    assert_eq!(answer(&mut first).unwrap(), "$3\r\nada\r\n");

    // The first holds the one place: the second waits, as an HTTP
    // listener's would, and the mock says so.
    let mut second = TcpStream::connect(("127.0.0.1", cache)).unwrap();
    get(&mut second, "user:2");
    let mut skipped = Vec::new();
    mock.line_with("connections open (--max-connections)", &mut skipped);
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let waiting = answer(&mut second);
    assert!(waiting.is_err(), "answered over the limit: {waiting:?}");

    // Once the first closes, the second is served.
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(answer(&mut second).unwrap(), "$3\r\nbob\r\n");
    drop(second);
    let stderr = mock.stop_cleanly("-INT");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
