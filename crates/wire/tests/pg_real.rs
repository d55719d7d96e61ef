//! Real clients (psql, pgbench, psycopg) through a small relay to a real
//! PostgreSQL, the relay feeding a `pg::Conversation` as the recorder
//! does; and real psql answered by `pg::Session` and the `serve` encoders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use reprise_model::{Header, SqlColumn, SqlRow, SqlStatement, SqlValue};
use reprise_testkit::postgres::{PgAuth, Postgres, PostgresOptions};
use reprise_wire::DbExchange;
use reprise_wire::pg::serve::{answer, startup_ok};
use reprise_wire::pg::{Answer, Conversation, FirstPacket, PgOptions, Session, SessionEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One relayed connection: the client's raw bytes and its exchanges.
#[derive(Debug, Default, Clone)]
struct Relayed {
    client_bytes: Vec<u8>,
    exchanges: Vec<DbExchange>,
    broken: Option<String>,
}

/// A TCP relay on 127.0.0.1 to `upstream`, feeding each connection's bytes
/// to a `Conversation` before passing them on.
struct Relay {
    addr: SocketAddr,
    done: Arc<Mutex<Vec<Relayed>>>,
    _runtime: tokio::runtime::Runtime,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(Mutex::new(Vec::new()));
        let sink = done.clone();
        runtime.spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let server = TcpStream::connect(upstream).await.unwrap();
                tokio::spawn(relay(client, server, sink.clone()));
            }
        });
        Relay {
            addr,
            done,
            _runtime: runtime,
        }
    }

    /// Waits until `n` connections have ended and returns them.
    fn wait_for(&self, n: usize) -> Vec<Relayed> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = self.done.lock().unwrap().clone();
            if done.len() >= n {
                return done;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} connections ended",
                done.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, sink: Arc<Mutex<Vec<Relayed>>>) {
    let conv = Arc::new(Mutex::new(Conversation::new(PgOptions {
        max_body: 1 << 20,
        tls: false,
    })));
    let raw = Arc::new(Mutex::new(Vec::new()));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (c2, raw2) = (conv.clone(), raw.clone());
    let up = tokio::spawn(async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // A copy for the conversation before the server can answer.
            c2.lock().unwrap().client(&buf[..n], now_ns());
            raw2.lock().unwrap().extend_from_slice(&buf[..n]);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    });
    let c3 = conv.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            c3.lock().unwrap().server(&buf[..n], now_ns());
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    });
    let _ = up.await;
    let _ = down.await;
    let mut conv = conv.lock().unwrap();
    let exchanges = conv.close(now_ns(), None);
    let broken = conv.broken().map(ToString::to_string);
    let client_bytes = raw.lock().unwrap().clone();
    sink.lock().unwrap().push(Relayed {
        client_bytes,
        exchanges,
        broken,
    });
}

fn psql(pg: &Postgres, port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new(pg.bin_dir().join("psql"))
        .args([
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
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "prefer")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The bodies of the client's 'p' messages (passwords, SASL) in its raw
/// stream: start-up packets first (no type byte), then typed messages.
fn password_messages(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut at = 0;
    let mut out = Vec::new();
    // SSLRequest (8 bytes) then the StartupMessage.
    loop {
        let len = u32::from_be_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
        let code = u32::from_be_bytes(raw[at + 4..at + 8].try_into().unwrap());
        at += len;
        if code != 80_877_103 {
            break;
        }
    }
    while at + 5 <= raw.len() {
        let len = u32::from_be_bytes(raw[at + 1..at + 5].try_into().unwrap()) as usize;
        if raw[at] == b'p' {
            out.push(raw[at + 5..at + 1 + len].to_vec());
        }
        at += 1 + len;
    }
    out
}

fn no_secrets(conn: &Relayed, password: &str) {
    let encoded: Vec<u8> = conn
        .exchanges
        .iter()
        .flat_map(|e| e.call.encode_to_vec())
        .collect();
    let contains = |needle: &[u8]| encoded.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(password.as_bytes()),
        "the password is in the exchanges"
    );
    let secrets = password_messages(&conn.client_bytes);
    assert!(!secrets.is_empty(), "no password message was sent");
    for body in secrets {
        // Every stretch of 12 bytes of what the client sent: none recorded
        // (SASL messages start with the mechanism's name, which is).
        for w in body.windows(12).skip(20) {
            assert!(
                !contains(w),
                "password message bytes {:?} in the exchanges",
                String::from_utf8_lossy(w)
            );
        }
    }
}

#[test]
fn psql_through_the_relay_trust() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE items(id int primary key, name text)");
    pg.psql("INSERT INTO items VALUES (1, 'one'), (2, 'two')");
    let relay = Relay::start(pg.addr());
    let said = psql(
        &pg,
        relay.addr.port(),
        "",
        &[
            "-c",
            "select name from items order by id; select * from missing",
        ],
    );
    assert!(
        said.contains("one\ntwo") && said.contains("does not exist"),
        "{said}"
    );
    let said = psql(
        &pg,
        relay.addr.port(),
        "",
        &[
            "-c",
            "PREPARE q(int) AS SELECT name FROM items WHERE id = $1",
            "-c",
            "EXECUTE q(2)",
            "-c",
            "insert into items values (3, 'three')",
        ],
    );
    assert!(said.contains("two"), "{said}");
    let conns = relay.wait_for(2);
    for c in &conns {
        assert!(c.broken.is_none(), "{:?}", c.broken);
        assert!(
            c.exchanges.iter().all(|e| e.incomplete.is_none()),
            "{:#?}",
            c.exchanges
        );
    }
    let first = conns
        .iter()
        .find(|c| {
            c.exchanges
                .iter()
                .any(|e| e.call.statements.iter().any(|s| s.sql.contains("missing")))
        })
        .unwrap();
    let startup = first.exchanges[0].call.startup.as_ref().unwrap();
    assert_eq!(startup.authentication, "trust");
    assert!(
        startup
            .parameters
            .iter()
            .any(|h| h.name == "application_name" && h.value == b"psql")
    );
    assert!(
        startup
            .server_parameters
            .iter()
            .any(|h| h.name == "server_version")
    );
    assert!(startup.backend_pid > 0);
    let q = &first.exchanges[1].call;
    assert_eq!(q.statements.len(), 2);
    assert_eq!(q.statements[0].sql, "select name from items order by id");
    assert_eq!(q.statements[0].command_tag, "SELECT 2");
    assert_eq!(q.statements[0].rows[1].values[0].data, b"two");
    assert_eq!(q.statements[0].columns[0].name, "name");
    assert_eq!(q.statements[1].sql, "select * from missing");
    assert_eq!(q.statements[1].error.as_ref().unwrap().code, "42P01");
    assert_eq!(q.transaction_status, "I");
    let second = conns.iter().find(|c| !std::ptr::eq(*c, first)).unwrap();
    let calls: Vec<_> = second.exchanges[1..].iter().map(|e| &e.call).collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].statements[0].command_tag, "PREPARE");
    assert_eq!(calls[1].statements[0].rows[0].values[0].data, b"two");
    assert!(!calls[1].write && calls[2].write);
}

#[test]
fn md5_and_scram_start_ups_keep_no_password() {
    for (auth, name) in [
        (PgAuth::Md5, "md5"),
        (PgAuth::Scram, "SCRAM-SHA-256"),
        (PgAuth::Password, "cleartext"),
    ] {
        let password = "s3cret-pw-of-reprise";
        let pg = Postgres::start_with(PostgresOptions {
            auth,
            password: password.to_owned(),
            tls: false,
        });
        let relay = Relay::start(pg.addr());
        let said = psql(&pg, relay.addr.port(), password, &["-c", "select 42"]);
        assert_eq!(said.trim(), "42");
        let conns = relay.wait_for(1);
        let conn = &conns[0];
        assert!(conn.broken.is_none(), "{:?}", conn.broken);
        assert_eq!(
            conn.exchanges[0]
                .call
                .startup
                .as_ref()
                .unwrap()
                .authentication,
            name
        );
        assert_eq!(
            conn.exchanges[1].call.statements[0].rows[0].values[0].data,
            b"42"
        );
        no_secrets(conn, password);
        // A wrong password: the refused start-up, with its error.
        let said = psql(&pg, relay.addr.port(), "wrong", &["-c", "select 1"]);
        assert!(said.contains("authentication failed"), "{said}");
        let conns = relay.wait_for(2);
        let refused = conns[1].exchanges[0].call.startup.as_ref().unwrap();
        assert_eq!(refused.error.as_ref().unwrap().code, "28P01");
    }
}

#[test]
fn pgbench_prepared_through_the_relay() {
    let pg = Postgres::start();
    let bench = |port: u16, args: &[&str]| {
        let out = Command::new(pg.bin_dir().join("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    bench(pg.port(), &["-i", "-q", "-s", "1"]);
    let relay = Relay::start(pg.addr());
    bench(
        relay.addr.port(),
        &["-n", "-S", "-t", "50", "-M", "prepared"],
    );
    bench(relay.addr.port(), &["-n", "-S", "-t", "50"]);
    // Each run: a connection that checks the tables, then the client's.
    let conns = relay.wait_for(4);
    let mut executed = 0;
    let mut simple = 0;
    for c in &conns {
        assert!(c.broken.is_none(), "{:?}", c.broken);
        for e in &c.exchanges {
            assert!(e.incomplete.is_none(), "{e:#?}");
            for s in &e.call.statements {
                if s.sql.contains("FROM pgbench_accounts WHERE aid = $1")
                    && !s.command_tag.is_empty()
                {
                    executed += 1;
                    assert!(s.extended);
                    assert_eq!(s.params.len(), 1);
                    assert!(!s.params[0].data.is_empty() && !s.params[0].binary);
                    assert_eq!((s.rows.len(), s.command_tag.as_str()), (1, "SELECT 1"));
                    assert!(
                        !s.statement_name.is_empty(),
                        "pgbench -M prepared names its statements"
                    );
                } else if s
                    .sql
                    .starts_with("SELECT abalance FROM pgbench_accounts WHERE aid = ")
                    && !s.extended
                {
                    simple += 1;
                    assert_eq!(s.rows.len(), 1, "{s:#?}");
                } else if s.sql.contains("aid = $1") {
                    // pgbench prepares each statement once: Parse and Sync.
                    assert!(
                        s.rows.is_empty()
                            && s.command_tag.is_empty()
                            && !s.statement_name.is_empty()
                    );
                }
            }
        }
    }
    assert_eq!((executed, simple), (50, 50));
}

#[test]
fn psycopg_prepared_statements_through_the_relay() {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("psycopg is not installed: skipping the psycopg client");
        return;
    }
    let pg = Postgres::start();
    let relay = Relay::start(pg.addr());
    let script = format!(
        "import psycopg\n\
         with psycopg.connect('host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable') as c:\n\
         \x20   for n in range(4):\n\
         \x20       r = c.execute('select %s::int + 1 as next, %s::text as t /* traceparent=\\'00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\\' */', (n, None), prepare=True).fetchone()\n\
         \x20       assert r[0] == n + 1, r\n\
         \x20   c.execute('select * from missing_table', prepare=True) if False else None\n\
         \x20   try:\n\
         \x20       c.execute('select * from missing_table where a = %s', (1,))\n\
         \x20   except psycopg.errors.UndefinedTable:\n\
         \x20       pass\n",
        relay.addr.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conns = relay.wait_for(1);
    let c = &conns[0];
    assert!(c.broken.is_none(), "{:?}", c.broken);
    let statements: Vec<&SqlStatement> = c
        .exchanges
        .iter()
        .flat_map(|e| &e.call.statements)
        .collect();
    let runs: Vec<_> = statements
        .iter()
        .filter(|s| s.sql.contains("$1::int + 1") && !s.command_tag.is_empty())
        .collect();
    assert_eq!(runs.len(), 4, "{statements:#?}");
    for (n, s) in runs.iter().enumerate() {
        assert_eq!(s.command_tag, "SELECT 1");
        assert_eq!(s.params.len(), 2);
        assert!(s.params[1].null);
        let value = &s.rows[0].values[0];
        let got = if value.binary {
            i32::from_be_bytes(value.data[..].try_into().unwrap())
        } else {
            String::from_utf8_lossy(&value.data).parse().unwrap()
        };
        assert_eq!(got, n as i32 + 1);
    }
    // Prepared by name once it is reused, and resolved through that name.
    assert!(
        runs.iter().any(|s| s.statement_name.starts_with("_pg3_")),
        "{runs:#?}"
    );
    let traced = c.exchanges.iter().filter(|e| {
        e.traceparent.as_deref() == Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    });
    assert!(traced.count() >= 4);
    let failed = statements
        .iter()
        .find(|s| s.sql.contains("missing_table"))
        .unwrap();
    assert_eq!(failed.error.as_ref().unwrap().code, "42P01");
}

/// A mock server answering every statement with one canned result.
fn serve_canned(listener: std::net::TcpListener, canned: SqlStatement) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut session = Session::new(1 << 20);
        let mut buf = vec![0; 8192];
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            for event in session.feed(&buf[..n]).unwrap() {
                let reply = match event {
                    SessionEvent::First(FirstPacket::SslRequest | FirstPacket::GssEncRequest) => {
                        b"N".to_vec()
                    }
                    SessionEvent::First(FirstPacket::Startup { .. }) => {
                        let params: Vec<Header> = [
                            ("server_version", "15.8"),
                            ("client_encoding", "UTF8"),
                            ("standard_conforming_strings", "on"),
                            ("integer_datetimes", "on"),
                            ("DateStyle", "ISO, MDY"),
                        ]
                        .iter()
                        .map(|(k, v)| Header {
                            name: (*k).into(),
                            value: v.as_bytes().to_vec(),
                        })
                        .collect();
                        startup_ok(&params, 7, 9)
                    }
                    SessionEvent::Unit(unit) => {
                        let count = match &unit {
                            reprise_wire::pg::Unit::Simple { statements, .. }
                            | reprise_wire::pg::Unit::Extended { statements, .. } => {
                                statements.len()
                            }
                            reprise_wire::pg::Unit::FunctionCall => 0,
                        };
                        let answers = vec![Answer::Recorded(&canned); count];
                        answer(&unit, &answers, b'I')
                    }
                    SessionEvent::Terminate => return,
                    _ => Vec::new(),
                };
                sock.write_all(&reply).await.unwrap();
            }
        }
    });
}

#[test]
fn the_serve_encoders_answer_real_psql() {
    let canned = SqlStatement {
        columns: vec![
            SqlColumn {
                name: "id".into(),
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                ..SqlColumn::default()
            },
            SqlColumn {
                name: "name".into(),
                type_oid: 25,
                type_size: -1,
                type_modifier: -1,
                ..SqlColumn::default()
            },
        ],
        rows: ["1|canned one", "2|"]
            .iter()
            .map(|r| {
                let (id, name) = r.split_once('|').unwrap();
                SqlRow {
                    values: vec![
                        SqlValue {
                            data: id.as_bytes().to_vec(),
                            ..SqlValue::default()
                        },
                        SqlValue {
                            data: name.as_bytes().to_vec(),
                            null: name.is_empty(),
                            binary: false,
                        },
                    ],
                }
            })
            .collect(),
        command_tag: "SELECT 2".into(),
        ..SqlStatement::default()
    };
    let pg_bin = Postgres::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve_canned(listener, canned));
    let said = psql(
        &pg_bin,
        port,
        "",
        &["-F", ",", "-c", "select id, name from anything"],
    );
    server.join().unwrap();
    assert_eq!(said, "1,canned one\n2,\n");
}

#[test]
fn the_serve_encoders_answer_psycopg_extended_and_prepared() {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("psycopg is not installed: skipping the psycopg client");
        return;
    }
    let canned = SqlStatement {
        columns: vec![
            SqlColumn {
                name: "id".into(),
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                ..SqlColumn::default()
            },
            SqlColumn {
                name: "name".into(),
                type_oid: 25,
                type_size: -1,
                type_modifier: -1,
                ..SqlColumn::default()
            },
        ],
        rows: vec![SqlRow {
            values: vec![
                SqlValue {
                    data: b"7".to_vec(),
                    ..SqlValue::default()
                },
                SqlValue {
                    null: true,
                    ..SqlValue::default()
                },
            ],
        }],
        command_tag: "SELECT 1".into(),
        ..SqlStatement::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve_canned(listener, canned));
    let script = format!(
        "import psycopg\n\
         with psycopg.connect('host=127.0.0.1 port={port} user=u dbname=d sslmode=disable') as c:\n\
         \x20   print(c.execute('select %s::int as id, %s as name', (1, 'x')).fetchall())\n\
         \x20   for _ in range(3):\n\
         \x20       print(c.execute('select %s::int as id, null as name', (2,), prepare=True).fetchall())\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[(7, None)]\n".repeat(4)
    );
}
