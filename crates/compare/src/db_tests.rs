//! Database and cache calls in the downstream comparison, on exchanges
//! built as `record --egress-db` and `mock --db --out` write them.

use reprise_model::{
    DbCall, Exchange, Flags, Link, LinkKind, Protocol, RecordSource, RedisCommand, Replay, Role,
    SqlStartup, SqlStatement, SqlValue,
};
use serde_json::Value;

use crate::json::ChangeKind;
use crate::pair::Rules;
use crate::{DownstreamSummary, EndpointRules, compare_calls, describe};

/// A downstream call through listener `route`, `order`th of scope
/// `parent`.
fn downstream(
    id: u8,
    parent: u8,
    order: u32,
    route: &str,
    protocol: Protocol,
    db: DbCall,
) -> Exchange {
    Exchange {
        id: vec![id; 16],
        parent_id: vec![parent; 16],
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        link: Some(Link {
            kind: LinkKind::Trace as i32,
            order,
        }),
        source: Some(RecordSource {
            route: route.into(),
            ..Default::default()
        }),
        db: Some(db),
        ..Default::default()
    }
}

fn text(v: &str) -> SqlValue {
    SqlValue {
        data: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn int4(v: i32) -> SqlValue {
    SqlValue {
        data: v.to_be_bytes().to_vec(),
        binary: true,
        ..Default::default()
    }
}

/// A PostgreSQL call of one statement.
fn pg(id: u8, order: u32, sql: &str, params: Vec<SqlValue>) -> Exchange {
    let types = if params.iter().any(|p| p.binary) {
        vec![23; params.len()]
    } else {
        Vec::new()
    };
    let db = DbCall {
        statements: vec![SqlStatement {
            sql: sql.into(),
            params,
            param_types: types,
            extended: true,
            ..Default::default()
        }],
        write: true,
        ..Default::default()
    };
    downstream(id, 9, order, "orders-db", Protocol::Postgres, db)
}

fn redis(id: u8, order: u32, args: &[&str]) -> Exchange {
    let db = DbCall {
        redis: Some(RedisCommand {
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    downstream(id, 9, order, "cache", Protocol::Redis, db)
}

/// `call` as the mock writes it: answered by recorded call `by` (0: a
/// miss).
fn made(mut call: Exchange, by: u8) -> Exchange {
    call.id = vec![call.id[0] + 100; 16];
    call.replay = Some(Replay {
        recorded_id: if by == 0 { Vec::new() } else { vec![by; 16] },
        ..Default::default()
    });
    call.flags = Some(Flags {
        mock_miss: by == 0,
        ..Default::default()
    });
    call
}

fn compared(
    recorded: &[Exchange],
    made: &[Exchange],
    rules: &Rules,
) -> (Vec<crate::Difference>, DownstreamSummary) {
    let mut s = DownstreamSummary::default();
    let d = compare_calls(recorded, made, rules, &mut s);
    (d, s)
}

const UPDATE: &str = "UPDATE users SET visits = visits + $1 WHERE id = $2";
const UPDATE_NAME: &str = "pg orders-db update users set visits = visits + $1 where id = $2";

#[test]
fn a_changed_parameter_is_named_by_its_position() {
    let recorded = [pg(1, 0, UPDATE, vec![text("1"), text("42")])];
    let now = [made(pg(1, 0, UPDATE, vec![text("2"), text("42")]), 1)];
    let (d, s) = compared(&recorded, &now, &Rules::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].path,
        format!("downstream[{UPDATE_NAME}].request.body:$.params[0]")
    );
    assert_eq!(
        d[0].pattern,
        format!("downstream[{UPDATE_NAME}].request.body:$.params[*]")
    );
    assert_eq!(d[0].kind, ChangeKind::Changed);
    assert_eq!(
        (d[0].recorded.clone(), d[0].replayed.clone()),
        (Some(Value::from(1)), Some(Value::from(2)))
    );
    assert_eq!(
        describe(&d[0].path, d[0].kind).as_deref(),
        Some(format!("{UPDATE_NAME}: $.params[0]").as_str())
    );
    assert_eq!((s.recorded, s.made, s.answered, s.changed), (1, 1, 1, 1));
}

#[test]
fn binary_integers_are_numbers_and_equal_their_text() {
    let recorded = [pg(1, 0, UPDATE, vec![int4(1), int4(42)])];
    let now = [made(pg(1, 0, UPDATE, vec![int4(-3), int4(42)]), 1)];
    let (d, _) = compared(&recorded, &now, &Rules::default());
    assert_eq!(
        (d[0].recorded.clone(), d[0].replayed.clone()),
        (Some(Value::from(1)), Some(Value::from(-3)))
    );
    let now = [made(pg(1, 0, UPDATE, vec![text("1"), text("42")]), 1)];
    assert!(compared(&recorded, &now, &Rules::default()).0.is_empty());
    // Unknown binary types as hex, NULL as null.
    let mut odd = pg(
        1,
        0,
        UPDATE,
        vec![
            int4(1),
            SqlValue {
                null: true,
                ..Default::default()
            },
        ],
    );
    let blob = SqlValue {
        data: vec![0, 0xff],
        binary: true,
        ..Default::default()
    };
    if let Some(s) = odd.db.as_mut().map(|db| &mut db.statements[0]) {
        s.params[0] = blob;
        s.param_types = vec![17, 23];
    }
    let (d, _) = compared(&recorded, &[made(odd, 1)], &Rules::default());
    let values: Vec<_> = d
        .iter()
        .map(|d| (d.path.rsplit(':').next().unwrap_or(""), d.replayed.clone()))
        .collect();
    assert_eq!(
        values,
        [
            ("$.params[0]", Some(Value::from("\\x00ff"))),
            ("$.params[1]", Some(Value::Null))
        ]
    );
}

#[test]
fn a_missing_insert_and_an_extra_redis_del_are_named() {
    let recorded = [
        pg(
            1,
            0,
            "INSERT INTO orders (id, total) VALUES ($1, $2)",
            vec![text("7"), text("100")],
        ),
        redis(2, 1, &["SET", "user:42", "x"]),
    ];
    let now = [
        made(redis(2, 1, &["SET", "user:42", "x"]), 2),
        made(redis(3, 2, &["DEL", "user:42"]), 0),
    ];
    let (d, s) = compared(&recorded, &now, &Rules::default());
    let got: Vec<(&str, ChangeKind)> = d.iter().map(|d| (d.path.as_str(), d.kind)).collect();
    assert_eq!(
        got,
        [
            (
                "downstream[pg orders-db insert into orders (id, total) values ($1, $2)]",
                ChangeKind::Removed
            ),
            ("downstream[redis cache DEL user:42]", ChangeKind::Added),
        ]
    );
    assert_eq!(d[1].pattern, "downstream[redis cache DEL user:?]");
    assert_eq!(
        describe(&d[0].path, d[0].kind).as_deref(),
        Some("call missing: pg orders-db insert into orders (id, total) values ($1, $2)")
    );
    assert_eq!(
        describe(&d[1].path, d[1].kind).as_deref(),
        Some("new call: redis cache DEL user:42")
    );
    assert_eq!((s.missing, s.extra, s.mock_misses), (1, 1, 1));
}

#[test]
fn redis_arguments_are_compared_by_position_and_a_miss_pairs_by_command() {
    let recorded = [redis(1, 0, &["INCRBY", "visits:42", "1"])];
    let now = [made(redis(1, 0, &["INCRBY", "visits:43", "2"]), 0)];
    let (d, s) = compared(&recorded, &now, &Rules::default());
    let got: Vec<(&str, Option<Value>)> = d
        .iter()
        .map(|d| (d.path.as_str(), d.replayed.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "downstream[redis cache INCRBY visits:42].request.body:$.args[0]",
                Some(Value::from("visits:43"))
            ),
            (
                "downstream[redis cache INCRBY visits:42].request.body:$.args[1]",
                Some(Value::from(2))
            ),
        ]
    );
    assert_eq!(s.paired_after_miss, 1);
}

#[test]
fn a_sqlcommenter_comment_layout_and_case_are_not_differences() {
    let traced = |t: &str| {
        format!(
            "update users\n   SET visits = visits + $1 WHERE id = $2 /*traceparent='00-{t}-00f067aa0ba902b7-01'*/"
        )
    };
    let recorded = [pg(
        1,
        0,
        &traced("4bf92f3577b34da6a3ce929d0e0e4736"),
        vec![text("1"), text("42")],
    )];
    // A miss, too: the template pairs it whatever the comment.
    let now = [made(
        pg(
            1,
            0,
            &traced("0af7651916cd43dd8448eb211c80319c"),
            vec![text("1"), text("42")],
        ),
        0,
    )];
    let (d, s) = compared(&recorded, &now, &Rules::default());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(s.paired_after_miss, 1);
}

#[test]
fn a_changed_statement_at_the_same_position_is_changed_not_missing() {
    let recorded = [pg(
        1,
        0,
        "UPDATE users SET visits = 3 WHERE id = 42",
        vec![],
    )];
    let now = [made(
        pg(1, 0, "UPDATE users SET visits = 4 WHERE id = 42", vec![]),
        0,
    )];
    let (d, _) = compared(&recorded, &now, &Rules::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].path,
        "downstream[pg orders-db update users set visits = 3 where id = 42].request.body:$.sql"
    );
    assert_eq!(
        d[0].pattern,
        "downstream[pg orders-db update users set visits = ? where id = ?].request.body:$.sql"
    );
    assert_eq!(
        d[0].replayed,
        Some(Value::from("update users set visits = 4 where id = 42"))
    );
}

#[test]
fn transaction_control_and_connection_set_up_are_left_out() {
    let startup = {
        let mut e = pg(1, 0, "", vec![]);
        if let Some(db) = e.db.as_mut() {
            db.statements.clear();
            db.startup = Some(SqlStartup {
                protocol_version: 196_608,
                ..Default::default()
            });
        }
        e
    };
    let recorded = [
        startup,
        pg(2, 1, "BEGIN", vec![]),
        pg(3, 2, UPDATE, vec![text("1"), text("42")]),
        pg(4, 3, "COMMIT", vec![]),
        redis(5, 4, &["HELLO", "3"]),
        redis(6, 5, &["CLIENT", "SETINFO", "lib-name", "redis-py"]),
    ];
    // The new build's pool was warm (no start-up), set its application
    // name, pinged, and ran the update in a transaction of its own: the
    // update is at another position and still answered as recorded.
    let now = [
        made(pg(11, 0, "SET application_name = 'svc'", vec![]), 0),
        made(pg(12, 1, "SELECT 1", vec![]), 0),
        made(pg(13, 2, "START TRANSACTION", vec![]), 2),
        made(pg(3, 3, UPDATE, vec![text("1"), text("42")]), 0),
        made(pg(14, 4, "ROLLBACK", vec![]), 4),
        made(redis(15, 5, &["AUTH", "(redacted)"]), 0),
        made(redis(16, 6, &["SELECT", "2"]), 0),
    ];
    let (d, s) = compared(&recorded, &now, &Rules::default());
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        (s.recorded, s.made, s.session_calls, s.paired_after_miss),
        (1, 1, 11, 1)
    );
    // Statements of a simple query: its BEGIN and COMMIT left out too.
    let mut several = pg(7, 0, "", vec![]);
    if let Some(db) = several.db.as_mut() {
        db.statements = ["BEGIN", "DELETE FROM carts WHERE id = 5", "COMMIT"]
            .iter()
            .map(|sql| SqlStatement {
                sql: (*sql).into(),
                ..Default::default()
            })
            .collect();
    }
    let (d, _) = compared(&[several], &[], &Rules::default());
    assert_eq!(
        d[0].path,
        "downstream[pg orders-db delete from carts where id = 5]"
    );
    // SET LOCAL is the application's.
    let (d, _) = compared(
        &[pg(8, 0, "SET LOCAL app.tenant = '7'", vec![])],
        &[],
        &Rules::default(),
    );
    assert_eq!(d.len(), 1);
}

#[test]
fn ignore_rules_apply_to_database_calls() {
    let recorded = [pg(1, 0, UPDATE, vec![text("1"), text("42")])];
    let now = [made(pg(1, 0, UPDATE, vec![text("2"), text("42")]), 1)];
    let mut global = Rules::default();
    global.ignore("$.params[0]").unwrap();
    assert!(compared(&recorded, &now, &global).0.is_empty());
    let mut rules = Rules::default();
    rules.endpoints.push(EndpointRules {
        endpoint: UPDATE_NAME.into(),
        ignore: vec![reprise_model::redact::JsonPath::parse("$.params[*]").unwrap()],
        unordered: Vec::new(),
    });
    assert!(compared(&recorded, &now, &rules).0.is_empty());
    // A rule for another statement does not apply.
    rules.endpoints[0].endpoint = "pg orders-db update carts set n = $1".into();
    assert_eq!(compared(&recorded, &now, &rules).0.len(), 1);
}

#[test]
fn an_http_call_never_pairs_with_a_database_call() {
    let http = Exchange {
        id: vec![1; 16],
        parent_id: vec![9; 16],
        role: Role::Downstream as i32,
        link: Some(Link {
            kind: LinkKind::Trace as i32,
            order: 0,
        }),
        request: Some(reprise_model::Request {
            method: "POST".into(),
            authority: "payments.example".into(),
            path: "/charge".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let now = [made(pg(2, 0, UPDATE, vec![text("1"), text("42")]), 0)];
    let (d, _) = compared(&[http], &now, &Rules::default());
    let kinds: Vec<ChangeKind> = d.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, [ChangeKind::Removed, ChangeKind::Added]);
}
