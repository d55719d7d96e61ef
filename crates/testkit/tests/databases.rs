//! The real PostgreSQL and Redis servers of the testkit start, take the
//! clients they were set up for, answer real queries and stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use reprise_testkit::postgres::{PgAuth, Postgres, PostgresOptions};
use reprise_testkit::redis::{Redis, RedisOptions};

/// psql over TCP with `password`, as a client that is not the testkit's
/// own helper: the exit status and what it said.
fn psql_with(pg: &Postgres, password: &str, sslmode: &str, sql: &str) -> (bool, String) {
    let out = Command::new(pg.bin_dir().join("psql"))
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &pg.port().to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", sslmode)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn start_pg(auth: PgAuth, tls: bool) -> Postgres {
    Postgres::start_with(PostgresOptions {
        auth,
        password: "s3cret pw'".to_owned(),
        tls,
    })
}

#[test]
fn postgres_with_trust_answers_queries_and_stops() {
    let mut pg = Postgres::start();
    assert_eq!(pg.psql("SELECT 1 + 1"), "2");
    assert!(pg.psql("SHOW server_version").starts_with("15") || !pg.bin_dir().ends_with("15/bin"));
    pg.psql("CREATE TABLE t(id int, name text)");
    pg.psql("INSERT INTO t VALUES (1, 'one'), (2, 'two')");
    assert_eq!(pg.psql("SELECT name FROM t ORDER BY id"), "one\ntwo");
    assert_eq!(pg.psql("SHOW fsync"), "off");
    assert_eq!(pg.psql("SHOW listen_addresses"), "127.0.0.1");
    // Trust: any password, or none, gets in.
    assert!(psql_with(&pg, "wrong", "disable", "SELECT 1").0);
    assert!(
        pg.url()
            .starts_with("postgres://postgres:reprise@127.0.0.1:")
    );
    let addr = pg.addr();
    pg.stop();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

/// Each password method: the right password gets in, a wrong one does not,
/// and the server really asked with that method (what `pg_hba_file_rules`
/// says, and for MD5 that the password is stored as an MD5 hash).
#[test]
fn postgres_password_methods_check_the_password() {
    for (auth, method) in [
        (PgAuth::Md5, "md5"),
        (PgAuth::Scram, "scram-sha-256"),
        (PgAuth::Password, "password"),
    ] {
        let pg = start_pg(auth, false);
        assert_eq!(pg.psql("SELECT current_user"), "postgres", "{auth:?}");
        let (ok, said) = psql_with(&pg, "wrong", "disable", "SELECT 1");
        assert!(!ok, "{auth:?}: a wrong password got in: {said}");
        assert!(
            said.contains("password authentication failed"),
            "{auth:?}: {said}"
        );
        let rules = pg.psql("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'");
        assert_eq!(rules, method, "{auth:?}");
        let stored =
            pg.psql("SELECT left(rolpassword, 5) FROM pg_authid WHERE rolname = 'postgres'");
        let expected = if auth == PgAuth::Md5 { "md5" } else { "SCRAM" };
        assert!(stored.starts_with(expected), "{auth:?}: stored as {stored}");
    }
}

#[test]
fn postgres_with_tls_serves_encrypted_and_plain_clients() {
    let pg = start_pg(PgAuth::Scram, true);
    assert!(
        pg.cert_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let (ok, said) = psql_with(
        &pg,
        "s3cret pw'",
        "require",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{said}");
    assert_eq!(said.trim(), "t");
    let (ok, said) = psql_with(
        &pg,
        "s3cret pw'",
        "disable",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{said}");
    assert_eq!(said.trim(), "f");
    assert!(pg.url().contains("s3cret%20pw%27@"), "{}", pg.url());
}

#[test]
fn postgres_servers_run_side_by_side() {
    let a = Postgres::start();
    let b = Postgres::start();
    assert_ne!(a.port(), b.port());
    a.psql("CREATE TABLE only_in_a(x int)");
    assert_eq!(
        b.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"),
        "0"
    );
}

#[test]
fn redis_without_password_answers_commands_and_stops() {
    let mut redis = Redis::start();
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cli(&["GET", "k"]), "v");
    assert_eq!(redis.cli(&["INCR", "n"]), "1");
    assert_eq!(redis.cli(&["CONFIG", "GET", "save"]), "save\n");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    let addr = redis.addr();
    redis.stop();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[test]
fn redis_with_password_requires_auth() {
    let redis = Redis::start_with(RedisOptions {
        password: Some("hunter2".to_owned()),
        ..Default::default()
    });
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cli(&["GET", "k"]), "v");
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port().to_string(),
            "GET",
            "k",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("NOAUTH"), "{said}");
    assert_eq!(
        redis.url(),
        format!("redis://:hunter2@127.0.0.1:{}", redis.port())
    );
}
