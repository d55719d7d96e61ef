//! `reprise diff --downstream` with database and cache calls, through the
//! real binary: a recording whose checkouts made PostgreSQL and Redis
//! calls (as `record --egress-db` records them: `Exchange.db`, the
//! listener's name in `source.route`, linked to the checkout), a replay's
//! results, and the calls the new build made as `mock --db --out` writes
//! them (each scoped to the checkout, answered by a recorded call or a
//! miss). The tapes are written with the tape writer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::PathBuf;

use reprise_model::{
    DbCall, Exchange, Flags, Link, LinkKind, Protocol, RecordSource, RedisCommand, Replay,
    RespKind, RespValue, Role, SqlColumn, SqlRow, SqlStartup, SqlStatement, SqlValue,
};
use serde_json::Value;

mod support;
use support::*;

/// One call of `parent`'s, the `order`th, through listener `route`.
fn db_call(parent: &Exchange, order: u32, route: &str, protocol: Protocol, db: DbCall) -> Exchange {
    Exchange {
        id: reprise_model::id::new_id(),
        parent_id: parent.id.clone(),
        trace_id: parent.trace_id.clone(),
        recorded_at_ns: parent.recorded_at_ns + 1_000 * u64::from(order + 1),
        duration_ns: 300_000,
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        link: Some(Link {
            kind: LinkKind::Trace as i32,
            order,
        }),
        source: Some(RecordSource {
            recorder: "proxy".into(),
            listener: "127.0.0.1:6543".into(),
            route: route.into(),
            ..Default::default()
        }),
        db: Some(db),
        ..Default::default()
    }
}

/// A psycopg-style statement: SQL with an sqlcommenter comment naming
/// trace `trace`, integer parameters sent in binary (int4), and a result.
fn statement(sql: &str, params: &[i32], trace: &str) -> SqlStatement {
    SqlStatement {
        sql: format!("{sql} /*traceparent='00-{trace}-00f067aa0ba902b7-01'*/"),
        statement_name: "_pg3_0".into(),
        param_types: vec![23; params.len()],
        params: params
            .iter()
            .map(|p| SqlValue {
                data: p.to_be_bytes().to_vec(),
                binary: true,
                ..Default::default()
            })
            .collect(),
        columns: vec![SqlColumn {
            name: "visits".into(),
            type_oid: 23,
            ..Default::default()
        }],
        rows: vec![SqlRow {
            values: vec![SqlValue {
                data: b"3".to_vec(),
                ..Default::default()
            }],
        }],
        command_tag: "UPDATE 1".into(),
        extended: true,
        ..Default::default()
    }
}

fn pg(statements: Vec<SqlStatement>) -> DbCall {
    DbCall {
        write: statements
            .iter()
            .any(|s| !s.sql.starts_with("BEGIN") && !s.sql.starts_with("COMMIT")),
        statements,
        transaction_status: "I".into(),
        ..Default::default()
    }
}

fn redis(args: &[&str]) -> DbCall {
    DbCall {
        redis: Some(RedisCommand {
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            reply: Some(RespValue {
                kind: RespKind::SimpleString as i32,
                data: b"OK".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        write: true,
        resp_version: 2,
        ..Default::default()
    }
}

const UPDATE: &str = "UPDATE users SET visits = visits + $1 WHERE id = $2";
const UPDATE_NAME: &str = "pg orders-db update users set visits = visits + $1 where id = $2";

/// What one checkout asked its databases, with `by` the visits added and
/// `trace` the trace its comments name: BEGIN, the UPDATE, COMMIT, a
/// Redis SET.
fn checkout_calls(parent: &Exchange, by: i32, trace: &str) -> Vec<Exchange> {
    let sql = |sql: &str| pg(vec![statement(sql, &[], trace)]);
    vec![
        db_call(parent, 0, "orders-db", Protocol::Postgres, sql("BEGIN")),
        db_call(
            parent,
            1,
            "orders-db",
            Protocol::Postgres,
            pg(vec![statement(UPDATE, &[by, 42], trace)]),
        ),
        db_call(parent, 2, "orders-db", Protocol::Postgres, sql("COMMIT")),
        db_call(
            parent,
            3,
            "cache",
            Protocol::Redis,
            redis(&["SET", "user:42", "fresh"]),
        ),
    ]
}

/// A recording of one checkout with its database calls (and the
/// connection's start-up, unlinked) and the checkout's replay.
struct Session {
    dir: tempfile::TempDir,
    recorded: PathBuf,
    replayed: PathBuf,
    inbound: Exchange,
    calls: Vec<Exchange>,
}

impl Session {
    fn new() -> Session {
        let dir = tempfile::tempdir().unwrap();
        let inbound = answered(0, r#"{"ok":true}"#);
        let calls = checkout_calls(&inbound, 1, "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut startup = db_call(
            &inbound,
            0,
            "orders-db",
            Protocol::Postgres,
            DbCall {
                startup: Some(SqlStartup {
                    protocol_version: 196_608,
                    authentication: "trust".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        startup.parent_id.clear();
        startup.link = Some(Link {
            kind: LinkKind::Unlinked as i32,
            order: 0,
        });
        let mut recording = vec![inbound.clone(), startup];
        recording.extend(calls.iter().cloned());
        let recorded = dir.path().join("recorded.tape");
        write_exchanges(&recorded, &recording);
        let replayed = dir.path().join("replayed.tape");
        write_exchanges(&replayed, &[replayed_exchange(&inbound)]);
        Session {
            dir,
            recorded,
            replayed,
            inbound,
            calls,
        }
    }

    /// The calls the new build made (`made`, built for the checkout), as
    /// its mock writes them: each answered by the recorded call of the
    /// same position when `answered[i]`, else a miss.
    fn mock_out(&self, name: &str, made: Vec<Exchange>, answered: &[bool]) -> PathBuf {
        let out: Vec<Exchange> = made
            .into_iter()
            .enumerate()
            .map(|(i, mut call)| {
                let by = self.calls.get(i).filter(|_| answered.get(i) == Some(&true));
                call.source = Some(RecordSource {
                    recorder: "mock".into(),
                    route: call.source.map(|s| s.route).unwrap_or_default(),
                    ..Default::default()
                });
                call.replay = Some(Replay {
                    recorded_id: by.map(|c| c.id.clone()).unwrap_or_default(),
                    ..Default::default()
                });
                call.flags = Some(Flags {
                    mock_miss: by.is_none(),
                    ..Default::default()
                });
                call
            })
            .collect();
        let path = self.dir.path().join(name);
        write_exchanges(&path, &out);
        path
    }

    fn diff(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args = vec!["diff", s(&self.recorded), s(&self.replayed)];
        args.extend(extra);
        let out = reprise(&args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }
}

fn replayed_exchange(recorded: &Exchange) -> Exchange {
    replayed(recorded, r#"{"ok":true}"#)
}

/// Another run's trace: every sqlcommenter comment differs.
const NEW_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn the_same_calls_with_other_trace_comments_pass() {
    let session = Session::new();
    let made = checkout_calls(&session.inbound, 1, NEW_TRACE);
    let mock = session.mock_out("same.tape", made, &[true, true, true, true]);
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "downstream calls: 2 recorded, 2 made (2 answered by the mock, 0 paired after a miss): 0 changed, 0 missing, 0 new; 0 mock misses"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("database calls not compared: 4 (transaction control"),
        "{stdout}"
    );
    // Misses too: the update pairs by its template, the SET by command.
    let made = checkout_calls(&session.inbound, 1, NEW_TRACE);
    let mock = session.mock_out("missed.tape", made, &[false, false, false, false]);
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("2 paired after a miss"), "{stdout}");
}

#[test]
fn a_changed_parameter_is_named_and_ignore_rules_apply() {
    let session = Session::new();
    let made = checkout_calls(&session.inbound, 2, NEW_TRACE);
    let mock = session.mock_out("changed.tape", made, &[true, true, true, true]);
    let json = session.dir.path().join("report.json");
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock), "--json", s(&json)]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("GET /calls/{id}: downstream calls that differ"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  {UPDATE_NAME}: $.params[0] 1 → 2   1× regressed"
        )),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let paths: Vec<&str> = report["endpoints"][0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["example"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [format!(
            "downstream[{UPDATE_NAME}].request.body:$.params[0]"
        )]
    );
    // --ignore on the parameter, or a rule for the statement.
    let (code, stdout, _) = session.diff(&["--downstream", s(&mock), "--ignore", "$.params[0]"]);
    assert_eq!(code, Some(0), "{stdout}");
    let rules = session.dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!("[[rule]]\nendpoint = \"{UPDATE_NAME}\"\nignore = [\"$.params[0]\"]\n"),
    )
    .unwrap();
    let (code, stdout, _) = session.diff(&["--downstream", s(&mock), "--rules", s(&rules)]);
    assert_eq!(code, Some(0), "{stdout}");
    // A baseline whose build sent the same: noise, and the rule to
    // ignore it is suggested for the statement.
    let replays = session.dir.path().join("baseline-replayed.tape");
    std::fs::copy(&session.replayed, &replays).unwrap();
    let suggested = session.dir.path().join("suggested.toml");
    let (code, stdout, stderr) = session.diff(&[
        "--downstream",
        s(&mock),
        "--baseline",
        s(&replays),
        "--baseline-downstream",
        s(&mock),
        "--suggest-rules",
        s(&suggested),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("  {UPDATE_NAME}: $.params[0] 1 → 2   1× noise")),
        "{stdout}"
    );
    let suggested = std::fs::read_to_string(&suggested).unwrap();
    assert!(
        suggested.contains(&format!("endpoint = \"{UPDATE_NAME}\""))
            && suggested.contains("\"$.params[*]\""),
        "{suggested}"
    );
}

#[test]
fn a_missing_update_and_an_extra_del_are_named() {
    let session = Session::new();
    let mut made = checkout_calls(&session.inbound, 1, NEW_TRACE);
    // The new build skips the update and deletes the key after setting it.
    made.remove(1);
    made.push(db_call(
        &session.inbound,
        4,
        "cache",
        Protocol::Redis,
        redis(&["DEL", "user:42"]),
    ));
    let mock = session.mock_out("missing.tape", made, &[true, false, false, false]);
    let (code, stdout, stderr) = session.diff(&["--downstream", s(&mock)]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("  call missing: {UPDATE_NAME}   1× regressed")),
        "{stdout}"
    );
    assert!(
        stdout.contains("  new call: redis cache DEL user:42   1× regressed"),
        "{stdout}"
    );
}
