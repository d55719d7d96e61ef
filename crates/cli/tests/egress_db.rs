//! `reprise record --egress-db`: real PostgreSQL and Redis servers behind
//! the recorder's database listeners, reached by their own clients (psql,
//! pgbench, redis-cli, redis-benchmark); every byte passes, each query and
//! command is recorded with its answer, and no secret reaches the tape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use reprise_model::{Exchange, LinkKind, Protocol, RespKind};
use reprise_testkit::postgres::{PgAuth, Postgres, PostgresOptions};
use reprise_testkit::redis::{Redis, RedisOptions};
use support::*;

const PG_PASSWORD: &str = "pg-Secret-7Qx";
const REDIS_PASSWORD: &str = "redis-Secret-4Kv";

/// Runs `program args` with `env`, and gives its stdout, stderr and
/// whether it succeeded.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> (String, String, bool) {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        text(&output.stdout),
        text(&output.stderr),
        output.status.success(),
    )
}

fn psql(port: u16, sql: &str) -> (String, String, bool) {
    run(
        "psql",
        &[
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ],
        &[("PGPASSWORD", PG_PASSWORD), ("PGSSLMODE", "disable")],
    )
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-a",
        REDIS_PASSWORD,
        "--no-auth-warning",
    ];
    all.extend_from_slice(args);
    let (out, err, ok) = run("redis-cli", &all, &[]);
    assert!(ok, "redis-cli {args:?}: {err}");
    out.trim().to_string()
}

fn database_calls(tape: &std::path::Path, route: &str) -> Vec<Exchange> {
    read_tape(tape)
        .into_iter()
        .filter(|e| e.source.as_ref().is_some_and(|s| s.route == route))
        .collect()
}

fn statements(calls: &[Exchange]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .flat_map(|db| db.statements.iter().map(|s| s.sql.clone()))
        .collect()
}

/// PostgreSQL asking for SCRAM with [`PG_PASSWORD`], Redis for
/// [`REDIS_PASSWORD`].
fn servers_with_passwords() -> (Postgres, Redis) {
    let postgres = Postgres::start_with(PostgresOptions {
        auth: PgAuth::Scram,
        password: PG_PASSWORD.into(),
        tls: false,
    });
    let redis = Redis::start_with(RedisOptions {
        password: Some(REDIS_PASSWORD.into()),
        ..Default::default()
    });
    (postgres, redis)
}

/// Of each of redis-benchmark's tests (SET, GET) through the recorder.
const BENCH_REQUESTS: usize = 2000;

#[test]
fn psql_pgbench_and_redis_cli_through_the_recorder_are_recorded_call_by_call() {
    let (postgres, redis) = servers_with_passwords();
    // pgbench's tables, made directly (not recorded).
    let bin = postgres.bin_dir().join("pgbench");
    let pgbench = bin.to_str().unwrap();
    let (_, err, ok) = run(
        pgbench,
        &[
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &postgres.port().to_string(),
            "-U",
            "postgres",
            "postgres",
        ],
        &[("PGPASSWORD", PG_PASSWORD)],
    );
    assert!(ok, "pgbench -i: {err}");

    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "db.tape");
    let (pg_port, redis_port) = (free_port(), free_port());
    let pg = format!(
        "orders-db=127.0.0.1:{pg_port}=postgres://{}",
        postgres.addr()
    );
    let cache = format!("cache=127.0.0.1:{redis_port}=redis://{}", redis.addr());
    let recorder = Recorder::start(
        "http://127.0.0.1:9",
        &tape,
        &[
            "--egress-db",
            &pg,
            "--egress-db",
            &cache,
            "--admin",
            "127.0.0.1:0",
        ],
    );

    // Every byte passes: the clients get their servers' answers.
    let (out, err, ok) = psql(pg_port, "SELECT 41 + 1 AS answer, 'ink' AS item");
    assert!(ok, "psql: {err}");
    assert_eq!(out.trim(), "42|ink");
    let (_, err, ok) = psql(pg_port, "SELECT * FROM no_such_table");
    assert!(!ok);
    assert!(err.contains("no_such_table"), "{err}");
    let (_, err, ok) = run(
        pgbench,
        &[
            "-S",
            "-n",
            "-M",
            "prepared",
            "-t",
            "20",
            "-h",
            "127.0.0.1",
            "-p",
            &pg_port.to_string(),
            "-U",
            "postgres",
            "postgres",
        ],
        &[("PGPASSWORD", PG_PASSWORD)],
    );
    assert!(ok, "pgbench -S through the recorder: {err}");
    assert_eq!(redis_cli(redis_port, &["SET", "stock:ink", "7"]), "OK");
    assert_eq!(redis_cli(redis_port, &["INCRBY", "stock:ink", "3"]), "10");
    assert_eq!(redis_cli(redis_port, &["GET", "stock:ink"]), "10");
    assert_eq!(redis_cli(redis_port, &["HGET", "nothing", "here"]), "");
    // redis-benchmark for load: 4 clients, 8 commands pipelined at a time.
    let (out, err, ok) = run(
        "redis-benchmark",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &redis_port.to_string(),
            "-a",
            REDIS_PASSWORD,
            "-t",
            "set,get",
            "-n",
            &BENCH_REQUESTS.to_string(),
            "-c",
            "4",
            "-P",
            "8",
            "--csv",
        ],
        &[],
    );
    assert!(ok && out.contains("\"GET\""), "redis-benchmark: {out}{err}");

    let stderr = recorder.stop_cleanly("-INT");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The tape holds no password, whatever its encoding.
    let bytes = std::fs::read(&tape).unwrap();
    let raw = reprise_tape::TapeReader::open(&tape)
        .unwrap()
        .map(|e| reprise_model::codec::encode_to_vec(&e.unwrap()))
        .collect::<Vec<_>>()
        .concat();
    for secret in [PG_PASSWORD, REDIS_PASSWORD] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the recording"
        );
    }
    assert!(!bytes.is_empty());

    let pg_calls = database_calls(&tape, "orders-db");
    assert!(pg_calls.iter().all(|e| e.protocol() == Protocol::Postgres));
    let startups: Vec<_> = pg_calls
        .iter()
        .filter_map(|e| e.db.as_ref()?.startup.as_ref())
        .collect();
    // psql twice, pgbench twice (its own connection, then its client's).
    assert_eq!(startups.len(), 4, "{startups:?}");
    for startup in &startups {
        assert_eq!(startup.authentication, "SCRAM-SHA-256");
        assert!(
            startup
                .parameters
                .iter()
                .any(|p| p.name == "user" && p.value == b"postgres")
        );
        assert!(
            startup
                .server_parameters
                .iter()
                .any(|p| p.name == "server_version")
        );
    }
    let sql = statements(&pg_calls);
    let answer = pg_calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .flat_map(|db| db.statements.iter())
        .find(|s| s.sql.contains("41 + 1"))
        .expect("the first query");
    assert_eq!(answer.command_tag, "SELECT 1");
    let names: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["answer", "item"]);
    let row: Vec<&[u8]> = answer.rows[0]
        .values
        .iter()
        .map(|v| v.data.as_slice())
        .collect();
    assert_eq!(row, [b"42".as_slice(), b"ink"]);
    let failed = pg_calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .flat_map(|db| db.statements.iter())
        .find(|s| s.sql.contains("no_such_table"))
        .expect("the failed query");
    assert_eq!(
        failed.error.as_ref().map(|e| e.code.as_str()),
        Some("42P01")
    );
    // pgbench -S -M prepared: one SELECT prepared once (named), then
    // executed 20 times with its parameter, its SQL known by name.
    let selects: Vec<_> = pg_calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .flat_map(|db| db.statements.iter())
        .filter(|s| s.sql.contains("pgbench_accounts WHERE aid = $1") && s.extended)
        .collect();
    assert_eq!(selects.len(), 21, "{sql:?}");
    let executed: Vec<_> = selects
        .iter()
        .filter(|s| !s.command_tag.is_empty())
        .collect();
    assert_eq!(executed.len(), 20, "{selects:?}");
    assert!(
        executed
            .iter()
            .all(|s| s.params.len() == 1 && s.rows.len() == 1)
    );
    assert!(executed.iter().all(|s| !s.statement_name.is_empty()));
    // No inbound call was in flight: every one unlinked, none a write.
    for call in &pg_calls {
        assert_eq!(call.link_kind().map(|(k, _)| k), Some(LinkKind::Unlinked));
        let source = call.source.as_ref().unwrap();
        assert_eq!(source.listener, format!("127.0.0.1:{pg_port}"));
        assert_eq!(source.server_addr, postgres.addr().to_string());
        assert!(source.connection.starts_with("orders-db#"));
    }

    let redis_calls = database_calls(&tape, "cache");
    let commands: Vec<Vec<String>> = redis_calls
        .iter()
        .filter_map(|e| e.db.as_ref()?.redis.as_ref())
        .map(|c| c.args.iter().map(|a| text(a)).collect())
        .collect();
    // Each connection (redis-cli's four, redis-benchmark's) sends AUTH
    // first, redacted.
    let mut first = std::collections::BTreeMap::new();
    for call in &redis_calls {
        let connection = call.source.as_ref().unwrap().connection.clone();
        let command = call.db.as_ref().and_then(|db| db.redis.as_ref()).unwrap();
        first
            .entry(connection)
            .or_insert_with(|| text(&command.args[0]));
    }
    assert!(first.len() > 4, "{first:?}");
    assert!(
        first.values().all(|c| c.eq_ignore_ascii_case("AUTH")),
        "{first:?}"
    );
    // Every one of redis-benchmark's pipelined commands, with its reply:
    // each SET stores one payload, each GET is answered it.
    let benchmark = |name: &str| {
        redis_calls
            .iter()
            .filter_map(|e| e.db.as_ref()?.redis.as_ref())
            .filter(|c| {
                c.args.len() >= 2
                    && c.args[0].eq_ignore_ascii_case(name.as_bytes())
                    && c.args[1] == b"key:__rand_int__"
            })
            .collect::<Vec<_>>()
    };
    let (sets, gets) = (benchmark("SET"), benchmark("GET"));
    assert_eq!((sets.len(), gets.len()), (BENCH_REQUESTS, BENCH_REQUESTS));
    let payload = &sets[0].args[2];
    for set in &sets {
        assert_eq!(&set.args[2], payload);
        assert_eq!(
            set.reply.as_ref().map(|r| r.data.as_slice()),
            Some(&b"OK"[..])
        );
    }
    for get in &gets {
        assert_eq!(get.reply.as_ref().map(|r| &r.data), Some(payload));
    }
    let set = redis_calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .find(|db| {
            db.redis
                .as_ref()
                .is_some_and(|c| c.args[0].eq_ignore_ascii_case(b"SET"))
        })
        .expect("SET");
    assert!(set.write);
    let reply = |name: &[u8]| {
        redis_calls
            .iter()
            .filter_map(|e| e.db.as_ref()?.redis.as_ref())
            .find(|c| c.args[0].eq_ignore_ascii_case(name))
            .and_then(|c| c.reply.clone())
            .unwrap_or_else(|| panic!("{commands:?}"))
    };
    assert_eq!(reply(b"INCRBY").kind(), RespKind::Integer);
    assert_eq!(reply(b"INCRBY").data, b"10");
    assert_eq!(reply(b"GET").data, b"10");
    assert_eq!(reply(b"HGET").kind(), RespKind::Null);
    assert!(redis_calls.iter().all(|e| e.protocol() == Protocol::Redis));
}

const LEDGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python-ledger/ledger.py"
);

/// `python3 ledger.py` serving on `port`, killed when dropped.
struct Ledger(std::process::Child);

impl Ledger {
    fn start(port: u16, env: &[(&str, String)]) -> Ledger {
        let mut command = Command::new("python3");
        command
            .arg(LEDGER)
            .env("LEDGER_PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        let mut ledger = Ledger(command.spawn().unwrap());
        eventually("ledger.py listening", 20, || {
            if let Ok(Some(status)) = ledger.0.try_wait() {
                panic!("ledger.py exited with {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        ledger
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn init_ledger(postgres: &Postgres, redis: &Redis) {
    let (_, err, ok) = run(
        "python3",
        &[LEDGER, "--init"],
        &[
            ("LEDGER_PG", &postgres.url()),
            ("LEDGER_REDIS", &redis.url()),
        ],
    );
    assert!(ok, "ledger.py --init: {err}");
}

/// The service's inbound calls and database calls, as recorded.
fn split(tape: &std::path::Path) -> (Vec<Exchange>, Vec<Exchange>) {
    read_tape(tape).into_iter().partition(|e| e.db.is_none())
}

/// The ledger recorded: real PostgreSQL and Redis (seeded), `reprise
/// record` in front of the ledger with a database listener for each, and
/// the ledger (with `env` added) reaching them through it.
struct RecordedLedger {
    // Dropped in this order: the service, the recorder, then the servers.
    _ledger: Ledger,
    recorder: Recorder,
    tape: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _servers: (Postgres, Redis),
    /// The ledger's environment, as the recorder's listeners reach it.
    env: Vec<(&'static str, String)>,
}

impl RecordedLedger {
    fn start(env: &[(&'static str, &str)]) -> RecordedLedger {
        let postgres = Postgres::start();
        let redis = Redis::start();
        init_ledger(&postgres, &redis);
        let dir = tempfile::tempdir().unwrap();
        let tape = temp_tape(&dir, "ledger.tape");
        let (pg_port, redis_port, ledger_port) = (free_port(), free_port(), free_port());
        let recorder = Recorder::start(
            &format!("http://127.0.0.1:{ledger_port}"),
            &tape,
            &[
                "--egress-db",
                &format!("db=127.0.0.1:{pg_port}=postgres://{}", postgres.addr()),
                "--egress-db",
                &format!("cache=127.0.0.1:{redis_port}=redis://{}", redis.addr()),
            ],
        );
        let mut ledger_env: Vec<(&'static str, String)> = vec![
            ("LEDGER_PORT", ledger_port.to_string()),
            (
                "LEDGER_PG",
                format!("postgres://postgres@127.0.0.1:{pg_port}/postgres"),
            ),
            ("LEDGER_REDIS", format!("redis://127.0.0.1:{redis_port}")),
        ];
        ledger_env.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        let ledger = Ledger::start(ledger_port, &ledger_env[1..]);
        RecordedLedger {
            _ledger: ledger,
            recorder,
            tape,
            _dir: dir,
            _servers: (postgres, redis),
            env: ledger_env,
        }
    }

    /// Stops the recorder cleanly, then the ledger and both servers; the
    /// tape (in its folder) is kept.
    fn stop(self) -> (tempfile::TempDir, std::path::PathBuf) {
        let RecordedLedger {
            _ledger,
            recorder,
            tape,
            _dir,
            _servers,
            env: _,
        } = self;
        recorder.stop_cleanly("-INT");
        (_dir, tape)
    }
}

fn parent_of<'a>(inbound: &'a [Exchange], call: &Exchange) -> Option<&'a Exchange> {
    inbound.iter().find(|i| i.id == call.parent_id)
}

#[test]
fn a_service_one_call_at_a_time_has_each_database_call_linked_to_its_call() {
    let ledger = RecordedLedger::start(&[]);
    let calls = [
        ("GET", "/users/1"),
        ("GET", "/users/1"),
        ("POST", "/users/2/visit"),
        ("GET", "/users/2"),
    ];
    for (method, path) in calls {
        let (out, _) = curl(&["-sf", "-X", method, &ledger.recorder.url(path)]);
        assert!(out.contains("\"id\""), "{method} {path}: {out}");
    }
    let (_dir, tape) = ledger.stop();

    let (inbound, database) = split(&tape);
    assert_eq!(inbound.len(), calls.len());
    // Every call made while an inbound call was in flight is its child
    // (IN_FLIGHT, exact here: one call at a time), in order; only the
    // connections' start-ups are unlinked.
    let mut children: Vec<Vec<String>> = vec![Vec::new(); inbound.len()];
    for call in &database {
        let (kind, order) = call.link_kind().unwrap();
        let db = call.db.as_ref().unwrap();
        if db.startup.is_some() {
            assert_eq!(kind, LinkKind::Unlinked);
            continue;
        }
        assert_eq!(kind, LinkKind::InFlight, "{db:?}");
        let parent = parent_of(&inbound, call).expect("a recorded parent");
        assert!(parent.recorded_at_ns <= call.recorded_at_ns);
        assert!(call.ended_at_ns() <= parent.ended_at_ns());
        let index = inbound.iter().position(|i| i.id == parent.id).unwrap();
        assert_eq!(order as usize, children[index].len(), "orders count up");
        let name = match (&db.redis, db.statements.first()) {
            (Some(command), _) => text(&command.args[0]).to_uppercase(),
            (None, Some(statement)) => statement
                .sql
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase(),
            (None, None) => String::from("?"),
        };
        children[index].push(name);
    }
    // The first call's children also set its Redis connection up
    // (redis-py's HELLO and CLIENT SETINFO); the README's table for the
    // rest.
    let tail = |index: usize| {
        let names = &children[index];
        names
            .iter()
            .filter(|n| !matches!(n.as_str(), "HELLO" | "CLIENT"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(tail(0), ["GET", "SELECT", "SET"], "{children:?}");
    assert_eq!(tail(1), ["GET"], "{children:?}");
    assert_eq!(
        tail(2),
        ["BEGIN", "UPDATE", "COMMIT", "INCRBY", "DEL"],
        "{children:?}"
    );
    assert_eq!(tail(3), ["GET", "SELECT", "SET"], "{children:?}");
    let update = database
        .iter()
        .filter_map(|e| e.db.as_ref())
        .find(|db| db.statements.iter().any(|s| s.sql.starts_with("UPDATE")))
        .unwrap();
    assert!(update.write);
    let statement = &update.statements[0];
    // psycopg sends Python ints in binary: int2 1 (the delta), 2 (the user).
    let params: Vec<(&[u8], bool)> = statement
        .params
        .iter()
        .map(|p| (p.data.as_slice(), p.binary))
        .collect();
    assert_eq!(params, [(&[0u8, 1][..], true), (&[0, 2][..], true)]);
}

#[test]
fn under_concurrent_load_sqlcommenter_links_exactly_and_redis_calls_are_flagged() {
    let ledger = RecordedLedger::start(&[("LEDGER_SQLCOMMENTER", "1")]);
    // 8 in flight at a time, reads and writes interleaved.
    let rounds = 6;
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let url = ledger.recorder.url("");
            scope.spawn(move || {
                for round in 0..rounds {
                    let user = 1 + (worker + round) % 5;
                    let (method, path) = if (worker + round) % 2 == 0 {
                        ("GET", format!("/users/{user}"))
                    } else {
                        ("POST", format!("/users/{user}/visit"))
                    };
                    let (out, _) = curl(&["-sf", "-X", method, &format!("{url}{path}")]);
                    assert!(out.contains("\"id\""), "{method} {path}: {out}");
                }
            });
        }
    });
    let (_dir, tape) = ledger.stop();

    let (inbound, database) = split(&tape);
    assert_eq!(inbound.len(), 8 * rounds);
    let mut exact = 0;
    let mut ambiguous = 0;
    for call in &database {
        let db = call.db.as_ref().unwrap();
        let (kind, _) = call.link_kind().unwrap();
        if db.startup.is_some() {
            assert_eq!(kind, LinkKind::Unlinked);
            continue;
        }
        let commented = db
            .statements
            .first()
            .filter(|statement| statement.sql.contains("traceparent="));
        if let Some(statement) = commented {
            // Its traceparent named its inbound call: the one whose trace
            // id the proxy recorded, exactly.
            assert_eq!(kind, LinkKind::Trace, "{}", statement.sql);
            let parent = parent_of(&inbound, call).expect("a recorded parent");
            assert_eq!(parent.trace_id, call.trace_id);
            let trace_hex: String = call.trace_id.iter().map(|b| format!("{b:02x}")).collect();
            assert!(statement.sql.contains(&trace_hex), "{}", statement.sql);
            exact += 1;
            continue;
        }
        // Redis commands, and the BEGIN and COMMIT psycopg sends itself
        // (no comment): linked by what was in flight.
        match kind {
            LinkKind::Ambiguous => {
                assert!(call.parent_id.is_empty());
                ambiguous += 1;
            }
            LinkKind::InFlight => {
                // The one in flight when it began: its parent's span holds
                // its start.
                let parent = parent_of(&inbound, call).expect("a recorded parent");
                assert!(parent.recorded_at_ns <= call.recorded_at_ns);
                assert!(call.recorded_at_ns <= parent.ended_at_ns());
            }
            LinkKind::Unlinked => {
                // Between two calls: nothing was in flight.
                assert!(call.parent_id.is_empty());
            }
            other => panic!("{db:?} linked {other:?}"),
        }
    }
    // Each POST's UPDATE is its own child, by trace.
    let posts = inbound
        .iter()
        .filter(|i| i.request.as_ref().is_some_and(|r| r.method == "POST"))
        .count();
    let updates = database
        .iter()
        .filter(|call| {
            call.db
                .as_ref()
                .is_some_and(|db| db.statements.iter().any(|s| s.sql.starts_with("UPDATE")))
                && parent_of(&inbound, call)
                    .is_some_and(|p| p.request.as_ref().is_some_and(|r| r.method == "POST"))
        })
        .count();
    assert_eq!(updates, posts);
    assert!(exact >= posts, "{exact} statements linked by trace");
    assert!(
        ambiguous > 0,
        "overlapping calls make some Redis calls ambiguous"
    );
}

/// psql with the connection string `conninfo`'s settings added to host,
/// port and user.
fn psql_with(port: u16, conninfo: &str, password: &str, sql: &str) -> (String, String, bool) {
    let target = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres {conninfo}");
    run(
        "psql",
        &["-X", "-At", &target, "-c", sql],
        &[("PGPASSWORD", password)],
    )
}

#[test]
fn tls_is_ended_with_the_reprise_ca_and_made_again_to_the_server() {
    let postgres = Postgres::start_with(PostgresOptions {
        auth: PgAuth::Scram,
        password: PG_PASSWORD.into(),
        tls: true,
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let out = reprise(&["ca", "init", "--dir", s(&ca_dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ca = ca_dir.join("ca.pem");
    // The recorder trusts the server's own certificate for its leg.
    let server_ca = dir.path().join("server.pem");
    std::fs::write(&server_ca, postgres.cert_pem().unwrap()).unwrap();
    let tape = temp_tape(&dir, "tls.tape");
    let (both, plain_server) = (free_port(), free_port());
    let recorder = Recorder::start(
        "http://127.0.0.1:9",
        &tape,
        &[
            "--ca-dir",
            s(&ca_dir),
            "--egress-ca",
            s(&server_ca),
            "--egress-db",
            &format!("tls=127.0.0.1:{both}=postgres://{}", postgres.addr()),
            "--egress-db",
            &format!(
                "plain=127.0.0.1:{plain_server}=postgres://{}?sslmode=disable",
                postgres.addr()
            ),
        ],
    );
    let verify = format!("sslmode=verify-full sslrootcert={}", ca.display());
    // TLS to the recorder, verified against the reprise CA, and TLS again
    // to the server: SCRAM works when the client does not ask for channel
    // binding, which the recorder cannot give.
    let (out, err, ok) = psql_with(
        both,
        &format!("{verify} channel_binding=disable"),
        PG_PASSWORD,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "t", "the server's leg is TLS too");
    // With libpq's default (channel_binding=prefer) over two TLS legs, the
    // server refuses the client's "y" flag as a downgrade: said to it.
    let (_, err, ok) = psql_with(both, &verify, PG_PASSWORD, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("channel binding"), "{err}");
    // A listener that keeps the server's leg plain serves that client.
    let (out, err, ok) = psql_with(
        plain_server,
        &verify,
        PG_PASSWORD,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "f");
    recorder.stop_cleanly("-INT");

    let calls = read_tape(&tape);
    let startups: Vec<_> = calls
        .iter()
        .filter_map(|e| e.db.as_ref()?.startup.as_ref())
        .collect();
    assert_eq!(startups.len(), 3);
    assert!(startups.iter().all(|s| s.tls));
    let answered: Vec<_> = calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .flat_map(|db| db.statements.iter())
        .filter(|s| s.sql.contains("pg_stat_ssl"))
        .collect();
    assert_eq!(answered.len(), 2);
}

#[test]
fn rediss_reaches_the_server_over_tls_and_records_as_redis_does() {
    let redis = Redis::start_with(RedisOptions {
        tls: true,
        ..Default::default()
    });
    let tls_port = redis.tls_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_ca = dir.path().join("redis-ca.pem");
    std::fs::write(&server_ca, redis.cert_pem().unwrap()).unwrap();
    let tape = temp_tape(&dir, "db.tape");
    let (trusted, untrusted) = (free_port(), free_port());
    let recorder = Recorder::start(
        "http://127.0.0.1:9",
        &tape,
        &[
            "--egress-db",
            &format!("cache=127.0.0.1:{trusted}=rediss://localhost:{tls_port}"),
            "--egress-ca",
            s(&server_ca),
        ],
    );
    // Without --egress-ca, the system's roots do not trust the server.
    let other_tape = temp_tape(&dir, "other.tape");
    let other = Recorder::start(
        "http://127.0.0.1:9",
        &other_tape,
        &[
            "--egress-db",
            &format!("other=127.0.0.1:{untrusted}=rediss://localhost:{tls_port}"),
        ],
    );
    // The service speaks plain RESP to the listener; the listener TLS to
    // the server.
    let plain = |port: u16, args: &[&str]| {
        let port = port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port];
        all.extend_from_slice(args);
        let (out, err, ok) = run("redis-cli", &all, &[]);
        assert!(ok, "redis-cli {args:?}: {err}");
        out.trim().to_string()
    };
    assert_eq!(plain(trusted, &["SET", "ink", "blue"]), "OK");
    assert_eq!(plain(trusted, &["GET", "ink"]), "blue");
    // What the server said is what the direct TLS client sees.
    let (out, err, ok) = run(
        "redis-cli",
        &[
            "--tls",
            "--cacert",
            s(&server_ca),
            "-h",
            "localhost",
            "-p",
            &tls_port.to_string(),
            "GET",
            "ink",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "blue");
    // A server whose certificate is not trusted: the client is told, in
    // RESP, and the recorder goes on.
    let refused = plain(untrusted, &["GET", "ink"]);
    assert!(
        refused.contains("reprise --egress-db other") && refused.contains("TLS to the server"),
        "{refused}"
    );
    assert_eq!(plain(trusted, &["GET", "ink"]), "blue");

    let stderr = other.stop_cleanly("-INT");
    assert!(stderr.contains("TLS to the server localhost"), "{stderr}");
    assert!(database_calls(&other_tape, "other").is_empty());
    let stderr = recorder.stop_cleanly("-INT");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let calls = database_calls(&tape, "cache");
    let commands: Vec<String> = calls
        .iter()
        .filter_map(|e| e.db.as_ref()?.redis.as_ref())
        .map(|c| c.args.iter().map(|a| text(a)).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        commands.contains(&"SET ink blue".to_string()),
        "{commands:?}"
    );
    let get = calls
        .iter()
        .filter_map(|e| e.db.as_ref()?.redis.as_ref())
        .find(|c| c.args[0].eq_ignore_ascii_case(b"GET"))
        .unwrap();
    assert_eq!(
        get.reply.as_ref().map(|r| r.data.as_slice()),
        Some(&b"blue"[..])
    );
    assert!(
        calls
            .iter()
            .all(|e| e.source.as_ref().unwrap().server_addr == format!("localhost:{tls_port}"))
    );
}

/// `psql -c sql` through `port`, `input` on its standard input.
fn psql_fed(port: u16, sql: &str, input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .envs([("PGPASSWORD", PG_PASSWORD), ("PGSSLMODE", "disable")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "psql: {}", text(&output.stderr));
    text(&output.stdout)
}

#[test]
fn copy_and_pub_sub_pass_through_the_recorder_flagged_as_not_mockable() {
    use std::io::{Read as _, Write as _};
    let (postgres, redis) = servers_with_passwords();
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "db.tape");
    let (pg_port, redis_port) = (free_port(), free_port());
    let pg = format!("ink-db=127.0.0.1:{pg_port}=postgres://{}", postgres.addr());
    let cache = format!("cache=127.0.0.1:{redis_port}=redis://{}", redis.addr());
    let recorder = Recorder::start(
        "http://127.0.0.1:9",
        &tape,
        &["--egress-db", &pg, "--egress-db", &cache],
    );

    // COPY both ways: every row passes.
    let (_, err, ok) = psql(pg_port, "CREATE TABLE inks (name text, n int)");
    assert!(ok, "{err}");
    let copied = psql_fed(pg_port, "COPY inks FROM STDIN", "ink\t7\nquill\t3\n\\.\n");
    assert_eq!(copied.trim(), "COPY 2");
    let out = psql_fed(
        pg_port,
        "COPY (SELECT name, n FROM inks ORDER BY name) TO STDOUT",
        "",
    );
    assert_eq!(out, "ink\t7\nquill\t3\n");

    // A subscriber through the recorder gets what is published.
    let mut subscriber = std::net::TcpStream::connect(("127.0.0.1", redis_port)).unwrap();
    subscriber
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let command = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        out
    };
    subscriber
        .write_all(command(&["AUTH", REDIS_PASSWORD]).as_bytes())
        .unwrap();
    subscriber
        .write_all(command(&["SUBSCRIBE", "news"]).as_bytes())
        .unwrap();
    let mut seen = Vec::new();
    let mut read_until = |stream: &mut std::net::TcpStream, want: &str| {
        let mut chunk = [0u8; 512];
        while !text(&seen).contains(want) {
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "closed before {want:?}: {:?}", text(&seen));
            seen.extend_from_slice(&chunk[..read]);
        }
    };
    read_until(&mut subscriber, "subscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(
        redis_cli(redis_port, &["PUBLISH", "news", "fresh-ink"]),
        "1"
    );
    read_until(&mut subscriber, "$9\r\nfresh-ink\r\n");
    drop(subscriber);

    let stderr = recorder.stop_cleanly("-INT");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let pg_calls = database_calls(&tape, "ink-db");
    let copies: Vec<_> = pg_calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .filter(|db| db.statements.iter().any(|s| s.copy))
        .collect();
    assert_eq!(copies.len(), 2, "{:?}", statements(&pg_calls));
    for copy in &copies {
        assert_eq!(copy.not_mockable, "COPY", "{copy:?}");
    }
    let tags: Vec<&str> = copies
        .iter()
        .map(|db| db.statements[0].command_tag.as_str())
        .collect();
    assert_eq!(tags, ["COPY 2", "COPY 2"]);
    assert!(copies[0].write, "COPY FROM writes");
    assert!(!copies[1].write, "COPY TO reads");

    let redis_calls = database_calls(&tape, "cache");
    let commands: Vec<(String, String)> = redis_calls
        .iter()
        .filter_map(|e| e.db.as_ref())
        .filter_map(|db| Some((text(&db.redis.as_ref()?.args[0]), db.not_mockable.clone())))
        .collect();
    // The subscriber's connection: AUTH, then SUBSCRIBE, flagged; what
    // came after it passed unrecorded. PUBLISH is an ordinary call.
    let subscribe = commands
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("SUBSCRIBE"))
        .unwrap_or_else(|| panic!("{commands:?}"));
    assert_eq!(subscribe.1, "pub/sub");
    let publish = redis_calls
        .iter()
        .filter_map(|e| e.db.as_ref()?.redis.as_ref())
        .find(|c| c.args[0].eq_ignore_ascii_case(b"PUBLISH"))
        .unwrap();
    assert_eq!(
        publish.reply.as_ref().map(|r| r.data.as_slice()),
        Some(&b"1"[..])
    );
    assert!(
        !redis_calls.iter().any(|e| {
            e.db.as_ref()
                .and_then(|db| db.redis.as_ref())
                .is_some_and(|c| {
                    c.args.iter().any(|a| a == b"fresh-ink") && c.args[0] != b"PUBLISH"
                })
        }),
        "the published message is not a recorded call"
    );
}

#[test]
fn bad_input_on_a_database_listener_is_told_and_recording_goes_on() {
    use std::io::{Read, Write};

    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "bad.tape");
    let (pg_port, dead_port, unused) = (free_port(), free_port(), free_port());
    let dead_cache = free_port();
    let recorder = Recorder::start(
        "http://127.0.0.1:9",
        &tape,
        &[
            "--max-body",
            "4096",
            "--egress-db",
            &format!("db=127.0.0.1:{pg_port}=postgres://{}", postgres.addr()),
            "--egress-db",
            &format!("gone=127.0.0.1:{dead_port}=postgres://127.0.0.1:{unused}"),
            "--egress-db",
            &format!("gone-cache=127.0.0.1:{dead_cache}=redis://127.0.0.1:{unused}"),
        ],
    );
    let mut skipped = Vec::new();

    // Garbage on the port: a PostgreSQL error back, a line on stderr.
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", pg_port)).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    garbage.read_to_end(&mut answer).unwrap();
    assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
    assert!(text(&answer).contains("08P01"), "{}", text(&answer));
    recorder.line_with("not a PostgreSQL v3 start-up", &mut skipped);

    // A start-up for protocol 2.0.
    let mut old = std::net::TcpStream::connect(("127.0.0.1", pg_port)).unwrap();
    let mut startup = 8u32.to_be_bytes().to_vec();
    startup.extend_from_slice(&0x0002_0000u32.to_be_bytes());
    old.write_all(&startup).unwrap();
    let mut answer = Vec::new();
    old.read_to_end(&mut answer).unwrap();
    assert!(
        text(&answer).contains("protocol version 2.0"),
        "{}",
        text(&answer)
    );

    // A server that cannot be reached: the client is told why.
    let (_, err, ok) = psql(dead_port, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("cannot reach"), "{err}");
    recorder.line_with("cannot reach", &mut skipped);
    // The same for a Redis client, in RESP.
    let (out, _, _) = run(
        "redis-cli",
        &["-h", "127.0.0.1", "-p", &dead_cache.to_string(), "PING"],
        &[],
    );
    assert!(
        out.contains("ERR reprise --egress-db gone-cache: cannot reach"),
        "{out}"
    );

    // A query larger than --max-body passes whole, and is recorded as not
    // mockable.
    let big = format!("SELECT length('{}')", "x".repeat(40_000));
    let (out, err, ok) = psql(pg_port, &big);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "40000");

    // A client that goes away mid-result: the exchange is recorded,
    // incomplete.
    let mut cut = std::net::TcpStream::connect(("127.0.0.1", pg_port)).unwrap();
    let mut hello = Vec::new();
    reprise_wire::pg::encode::frontend::startup(
        &mut hello,
        &[("user", "postgres"), ("database", "postgres")],
    );
    cut.write_all(&hello).unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    // Up to its first ReadyForQuery ('Z', length 5, status).
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let read = cut.read(&mut chunk).unwrap();
        assert!(read > 0, "the start-up ended early");
        seen.extend_from_slice(&chunk[..read]);
    }
    let mut query = Vec::new();
    reprise_wire::pg::encode::frontend::query(
        &mut query,
        "SELECT repeat('row', 100) FROM generate_series(1, 200000)",
    );
    cut.write_all(&query).unwrap();
    let read = cut.read(&mut chunk).unwrap();
    assert!(read > 0);
    drop(cut);

    // And the recorder still records.
    let (out, err, ok) = psql(pg_port, "SELECT 'still here'");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "still here");
    let stderr = recorder.stop_cleanly("-INT");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let calls = read_tape(&tape);
    let statement_of = |needle: &str| {
        calls
            .iter()
            .find(|e| {
                e.db.as_ref()
                    .is_some_and(|db| db.statements.iter().any(|s| s.sql.contains(needle)))
            })
            .unwrap_or_else(|| panic!("no call with {needle}"))
    };
    let big = statement_of("length(");
    assert!(
        !big.db.as_ref().unwrap().not_mockable.is_empty(),
        "{:?}",
        big.db
    );
    let cut = statement_of("generate_series");
    assert!(cut.error.is_some(), "{:?}", cut.db);
    statement_of("still here");
}

/// `reprise test TAPE --port PORT EXTRA -- python3 ledger.py` with `env`
/// (the ledger's settings) around it: exit code and all it printed.
fn reprise_test_ledger(
    tape: &std::path::Path,
    port: &str,
    env: &[(&str, String)],
    extra: &[&str],
) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("timeout")
        .args(["-s", "KILL", "180"])
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(tape)
        .args(["--port", port, "--out"])
        .arg(out.path())
        .args(extra)
        .args(["--", "python3", LEDGER])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!("{}\n{}", text(&output.stdout), text(&output.stderr)),
    )
}

#[test]
fn reprise_test_replays_the_ledger_with_its_database_and_cache_stopped() {
    let ledger = RecordedLedger::start(&[]);
    for (method, path) in [
        ("GET", "/users/1"),
        ("GET", "/users/1"),
        ("POST", "/users/2/visit"),
        ("GET", "/users/3"),
    ] {
        let (out, _) = curl(&["-sf", "-X", method, &ledger.recorder.url(path)]);
        assert!(out.contains("\"id\""), "{method} {path}: {out}");
    }
    let env = ledger.env.clone();
    let port = env[0].1.clone();
    // PostgreSQL and Redis go with the recorder: the replay has only the
    // recording to answer the ledger's queries and commands.
    let (_dir, tape) = ledger.stop();

    let (code, said) = reprise_test_ledger(&tape, &port, &env, &[]);
    assert_eq!(code, 0, "the same build: {said}");
    assert!(said.contains("replaying one call at a time"), "{said}");

    // The same build asking PostgreSQL for TLS (recorded without): the
    // mock in the sandbox answers with a leaf of the reprise CA.
    let ca = _dir.path().join("ca");
    let made = reprise(&["ca", "init", "--dir", s(&ca)]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let mut tls = env.clone();
    for (name, value) in &mut tls {
        if *name == "LEDGER_PG" {
            value.push_str("?sslmode=require");
        }
    }
    let (code, said) = reprise_test_ledger(&tape, &port, &tls, &["--ca-dir", s(&ca)]);
    assert_eq!(code, 0, "the same build over TLS: {said}");

    // A build that adds 2 visits where the recording added 1: the write
    // differs, named by its parameter.
    let mut changed = env.clone();
    changed.push(("LEDGER_VISIT_DELTA", "2".into()));
    let (code, said) = reprise_test_ledger(&tape, &port, &changed, &[]);
    assert_eq!(code, 1, "a changed write: {said}");
    assert!(said.contains("params[0]"), "{said}");
}

#[test]
fn what_psql_was_answered_through_the_recorder_the_mock_answers_again() {
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "answers.tape");
    let pg_port = free_port();
    let recorder = Recorder::start(
        "http://127.0.0.1:9",
        &tape,
        &[
            "--egress-db",
            &format!(
                "orders-db=127.0.0.1:{pg_port}=postgres://{}",
                postgres.addr()
            ),
        ],
    );
    let select = "SELECT 41 + 1 AS answer, 'ink' AS item";
    let missing = "SELECT * FROM no_such_table";
    let (recorded_out, _, ok) = psql(pg_port, select);
    assert!(ok);
    let (_, recorded_err, ok) = psql(pg_port, missing);
    assert!(!ok);
    recorder.stop_cleanly("-INT");
    drop(postgres);

    // The server is gone; the mock answers at the same address.
    let mock = Recorder::mock(&tape, &["--recorded-listeners"]);
    let (out, err, ok) = psql(pg_port, select);
    assert!(ok, "{err}");
    assert_eq!(out, recorded_out);
    // The recorded error, with its SQLSTATE and message, is answered again.
    let (_, err, ok) = psql(pg_port, missing);
    assert!(!ok);
    assert_eq!(err.trim(), recorded_err.trim());
    assert!(err.contains("no_such_table"), "{err}");
    let (code, stderr) = mock.stop("-INT");
    assert_eq!(code, 0, "no miss: {stderr}");
}
