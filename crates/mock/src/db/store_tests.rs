//! Matching database calls: keys, scopes, the unlinked pool, order,
//! what can never answer, and the nearest calls of a miss.

use reprise_model::{
    DbCall, Exchange, LinkKind, Protocol, RecordSource, RedisCommand, RespKind, RespValue, Role,
    SqlStartup, SqlStatement, SqlValue,
};

use crate::miss::MissReason;
use crate::options::MockOptions;
use crate::respond::Pool;
use crate::scope::MockScope;
use crate::store::MockStore;

fn base(id: u8, parent: Option<u8>, at: u64, route: &str, protocol: Protocol) -> Exchange {
    Exchange {
        id: vec![id; 16],
        parent_id: parent.map(|p| vec![p; 16]).unwrap_or_default(),
        recorded_at_ns: at,
        role: Role::Downstream as i32,
        protocol: protocol as i32,
        source: Some(RecordSource {
            recorder: "proxy".into(),
            listener: "127.0.0.1:6432".into(),
            route: route.into(),
            server_addr: "db:5432".into(),
            ..Default::default()
        }),
        link: Some(reprise_model::Link {
            kind: if parent.is_some() {
                LinkKind::InFlight
            } else {
                LinkKind::Unlinked
            } as i32,
            order: 0,
        }),
        ..Default::default()
    }
}

fn text(v: &str) -> SqlValue {
    SqlValue {
        data: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn answered(sql: &str, params: &[&str], tag: &str) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params: params.iter().map(|p| text(p)).collect(),
        command_tag: tag.into(),
        ..Default::default()
    }
}

fn sql(id: u8, parent: Option<u8>, at: u64, statements: Vec<SqlStatement>) -> Exchange {
    Exchange {
        db: Some(DbCall {
            statements,
            transaction_status: "I".into(),
            ..Default::default()
        }),
        ..base(id, parent, at, "orders-db", Protocol::Postgres)
    }
}

fn redis(id: u8, parent: Option<u8>, at: u64, args: &[&str], reply: &str) -> Exchange {
    Exchange {
        db: Some(DbCall {
            redis: Some(RedisCommand {
                args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                reply: Some(RespValue {
                    kind: RespKind::BulkString as i32,
                    data: reply.as_bytes().to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resp_version: 2,
            ..Default::default()
        }),
        ..base(id, parent, at, "cache", Protocol::Redis)
    }
}

fn tag_of(store: &MockStore, scope: Option<&MockScope>, statement: &SqlStatement) -> String {
    match store.answer_sql(scope, "orders-db", statement, "call".into(), true) {
        Ok(served) => served.statement().unwrap().command_tag.clone(),
        Err(miss) => format!("miss: {miss}"),
    }
}

#[test]
fn without_a_scope_identical_statements_are_served_in_recorded_order_once_each() {
    let store = MockStore::new(
        vec![
            sql(
                2,
                Some(9),
                20,
                vec![answered(
                    "SELECT n FROM t WHERE id = $1",
                    &["1"],
                    "SELECT 2",
                )],
            ),
            sql(
                1,
                None,
                10,
                vec![answered(
                    "SELECT n FROM t WHERE id = $1",
                    &["1"],
                    "SELECT 1",
                )],
            ),
        ],
        MockOptions::default(),
    );
    let asked = answered("select n from t where id = $1", &["1"], "");
    assert_eq!(tag_of(&store, None, &asked), "SELECT 1");
    assert_eq!(tag_of(&store, None, &asked), "SELECT 2");
    let third = tag_of(&store, None, &asked);
    assert!(
        third.contains("every recorded response has been served"),
        "{third}"
    );
    let report = store.report();
    assert_eq!((report.served, report.missed), (2, 1));
}

#[test]
fn a_scope_takes_its_own_statements_first_then_the_unlinked_pool() {
    let store = MockStore::new(
        vec![
            // A start-up SET, unlinked.
            sql(
                1,
                None,
                10,
                vec![answered("SET application_name = 'a'", &[], "SET")],
            ),
            sql(2, Some(7), 20, vec![answered("SELECT 1", &[], "SELECT 7")]),
            sql(3, Some(8), 30, vec![answered("SELECT 1", &[], "SELECT 8")]),
        ],
        MockOptions::default(),
    );
    let eight = MockScope::replaying(&[8; 16]);
    let asked = answered("SELECT 1", &[], "");
    assert_eq!(tag_of(&store, Some(&eight), &asked), "SELECT 8");
    let set = answered("SET application_name = 'a'", &[], "");
    let served = store
        .answer_sql(Some(&eight), "orders-db", &set, "call".into(), true)
        .unwrap();
    assert_eq!(served.pool, Pool::Unlinked);
    assert_eq!(store.report().unlinked, 1);
    // Scope 8's own SELECT is used; scope 7's is not its to take.
    let again = tag_of(&store, Some(&eight), &asked);
    assert!(again.contains("miss"), "{again}");
    assert_eq!(
        tag_of(&store, Some(&MockScope::replaying(&[7; 16])), &asked),
        "SELECT 7"
    );
}

#[test]
fn each_statement_of_a_recorded_exchange_is_a_call_and_names_do_not_matter() {
    let mut prepared = answered("SELECT $1::int", &["5"], "SELECT 1");
    prepared.statement_name = "_pg3_0".into();
    let store = MockStore::new(
        vec![sql(
            1,
            None,
            10,
            vec![
                answered("BEGIN", &[], "BEGIN"),
                prepared,
                answered("COMMIT", &[], "COMMIT"),
            ],
        )],
        MockOptions::default(),
    );
    assert_eq!(store.len(), 3);
    let mut asked = answered("SELECT $1::int", &["5"], "");
    asked.statement_name = "_pg3_7".into();
    assert_eq!(tag_of(&store, None, &asked), "SELECT 1");
    assert_eq!(tag_of(&store, None, &answered("commit", &[], "")), "COMMIT");
    // The served exchange keeps the recorded exchange's id.
    let served = store
        .answer_sql(
            None,
            "orders-db",
            &answered("BEGIN", &[], ""),
            "c".into(),
            true,
        )
        .unwrap();
    assert_eq!(served.exchange.id, vec![1; 16]);
    assert_eq!(served.transaction_status(), Some(b'I'));
}

#[test]
fn a_miss_names_the_nearest_statements_of_the_same_database() {
    let store = MockStore::new(
        vec![
            sql(
                1,
                None,
                10,
                vec![answered(
                    "SELECT * FROM users WHERE id = $1",
                    &["1"],
                    "SELECT 1",
                )],
            ),
            redis(2, None, 20, &["GET", "users:1"], "x"),
        ],
        MockOptions::default(),
    );
    let asked = answered("SELECT * FROM users WHERE id = $1", &["2"], "");
    let miss = store
        .answer_sql(
            None,
            "orders-db",
            &asked,
            "orders-db: SELECT ...".into(),
            true,
        )
        .unwrap_err();
    assert_eq!(
        miss.nearest.len(),
        1,
        "the Redis command is not near: {miss}"
    );
    let text = miss.to_string();
    assert!(
        text.contains(
            "orders-db: SELECT * FROM users WHERE id = $1 [$1=1] (differs in parameters)"
        ),
        "{text}"
    );
}

#[test]
fn a_call_matching_only_what_cannot_be_mocked_says_why() {
    let mut copy = sql(
        1,
        None,
        10,
        vec![answered("COPY t FROM STDIN", &[], "COPY 3")],
    );
    if let Some(db) = copy.db.as_mut() {
        db.not_mockable = "COPY".into();
    }
    let mut subscribe = redis(2, None, 20, &["SUBSCRIBE", "news"], "");
    if let Some(db) = subscribe.db.as_mut() {
        db.not_mockable = "pub/sub".into();
    }
    let store = MockStore::new(vec![copy, subscribe], MockOptions::default());
    let miss = store
        .answer_sql(
            None,
            "orders-db",
            &answered("COPY t FROM STDIN", &[], ""),
            "c".into(),
            true,
        )
        .unwrap_err();
    assert_eq!(miss.reason, MissReason::NotMockable { why: "COPY".into() });
    assert!(
        miss.to_string().contains("a mock cannot answer it (COPY)"),
        "{miss}"
    );
    let miss = store
        .answer_redis(None, "cache", &["subscribe", "news"], "c".into(), true)
        .unwrap_err();
    assert_eq!(
        miss.reason,
        MissReason::NotMockable {
            why: "pub/sub".into()
        }
    );
}

#[test]
fn redis_commands_match_by_name_in_any_case_and_quiet_misses_are_not_counted() {
    let store = MockStore::new(
        vec![redis(1, None, 10, &["GET", "k"], "v")],
        MockOptions::default(),
    );
    let served = store
        .answer_redis(None, "cache", &["get", "k"], "c".into(), true)
        .unwrap();
    assert_eq!(&served.reply().unwrap().data[..], b"v");
    assert!(
        store
            .answer_redis(None, "cache", &["AUTH", "pw"], "c".into(), false)
            .is_err()
    );
    assert_eq!(
        store.report().missed,
        0,
        "a miss the mock answers itself is not counted"
    );
    assert!(
        store
            .answer_redis(None, "other", &["GET", "k"], "c".into(), true)
            .is_err()
    );
    assert_eq!(store.report().missed, 1);
}

#[test]
fn a_start_up_gives_the_server_parameters_and_is_no_call() {
    let mut startup = base(1, None, 5, "orders-db", Protocol::Postgres);
    startup.db = Some(DbCall {
        startup: Some(SqlStartup {
            server_parameters: vec![reprise_model::Header {
                name: "server_version".into(),
                value: b"15.4".to_vec(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    });
    let store = MockStore::new(
        vec![
            startup,
            sql(2, None, 10, vec![answered("SELECT 1", &[], "SELECT 1")]),
        ],
        MockOptions::default(),
    );
    assert_eq!(store.len(), 1);
    let startup = store.db_startup("orders-db").unwrap();
    assert_eq!(startup.server_parameters[0].name, "server_version");
    assert!(store.db_startup("cache").is_none());
    assert_eq!(store.recorded_listeners()[0].calls, 2);
}
