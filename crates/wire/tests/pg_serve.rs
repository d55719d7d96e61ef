//! The mock's side: `Session` reads what a client sends, and `answer`
//! writes what the server sent when given what the recorder kept.
#![allow(clippy::unwrap_used)]

use reprise_model::{SqlColumn, SqlError, SqlStatement, SqlValue};
use reprise_wire::pg::encode::{backend as be, frontend as fe};
use reprise_wire::pg::serve::{answer, startup_ok};
use reprise_wire::pg::{
    Answer, Conversation, FirstPacket, PgOptions, Session, SessionEvent, Step, Unit,
};

fn col(name: &str, binary: bool) -> SqlColumn {
    SqlColumn {
        name: name.into(),
        type_oid: 25,
        type_size: -1,
        type_modifier: -1,
        binary,
        ..SqlColumn::default()
    }
}

fn text(v: &str) -> SqlValue {
    SqlValue {
        data: v.as_bytes().to_vec(),
        ..SqlValue::default()
    }
}

fn units(session: &mut Session, bytes: &[u8]) -> Vec<Unit> {
    session
        .feed(bytes)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Unit(u) => Some(u),
            _ => None,
        })
        .collect()
}

/// Rounds of (client bytes, server bytes) after a start-up, whose server
/// bytes the mock must reproduce from the recording.
fn rounds() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rounds = Vec::new();
    // Simple query: two statements, rows, an empty result set.
    let mut c = Vec::new();
    fe::query(&mut c, "select a from t; delete from t");
    let mut s = Vec::new();
    be::row_description(&mut s, &[col("a", false)]);
    be::data_row(&mut s, &[text("1")]);
    be::data_row(
        &mut s,
        &[SqlValue {
            null: true,
            ..SqlValue::default()
        }],
    );
    be::command_complete(&mut s, "SELECT 2");
    be::command_complete(&mut s, "DELETE 0");
    be::ready_for_query(&mut s, b'T');
    rounds.push((c, s));
    // Extended: prepare and describe a named statement, then bind it
    // twice with a suspended portal.
    let mut c = Vec::new();
    fe::parse(&mut c, "s1", "select a from t where b = $1", &[25]);
    fe::describe(&mut c, b'S', "s1");
    fe::empty(&mut c, b'S');
    let mut s = Vec::new();
    be::empty(&mut s, b'1');
    be::parameter_description(&mut s, &[25]);
    be::row_description(&mut s, &[col("a", false)]);
    be::ready_for_query(&mut s, b'T');
    rounds.push((c, s));
    let mut c = Vec::new();
    fe::bind(&mut c, "p", "s1", &[], &[Some(b"x")], &[1]);
    fe::describe(&mut c, b'P', "p");
    fe::execute(&mut c, "p", 1);
    fe::execute(&mut c, "p", 1);
    fe::close(&mut c, b'P', "p");
    fe::empty(&mut c, b'S');
    let mut s = Vec::new();
    be::empty(&mut s, b'2');
    be::row_description(&mut s, &[col("a", true)]);
    be::data_row(&mut s, &[text("r1")]);
    be::empty(&mut s, b's');
    be::data_row(&mut s, &[text("r2")]);
    be::command_complete(&mut s, "SELECT 1");
    be::empty(&mut s, b'3');
    be::ready_for_query(&mut s, b'I');
    rounds.push((c, s));
    rounds
}

#[test]
fn the_mock_answers_exactly_what_was_recorded() {
    let mut conv = Conversation::new(PgOptions {
        max_body: 1 << 20,
        tls: false,
    });
    let mut startup = Vec::new();
    fe::startup(&mut startup, &[("user", "u")]);
    let ok = startup_ok(&[], 1, 2);
    conv.client(&startup, 0);
    conv.server(&ok, 0);
    let mut session = Session::new(1 << 20);
    let events = session.feed(&startup).unwrap();
    assert!(matches!(
        &events[..],
        [SessionEvent::First(FirstPacket::Startup { .. })]
    ));
    for (c, s) in rounds() {
        conv.client(&c, 0);
        conv.server(&s, 0);
        let recorded = conv.take().pop().unwrap();
        let unit = units(&mut session, &c).pop().unwrap();
        let answers: Vec<Answer<'_>> = recorded
            .call
            .statements
            .iter()
            .map(Answer::Recorded)
            .collect();
        let status = recorded.call.transaction_status.as_bytes()[0];
        assert_eq!(answer(&unit, &answers, status), s, "unit {unit:#?}");
    }
}

#[test]
fn session_resolves_names_and_lists_steps() {
    let mut session = Session::new(1 << 20);
    let mut b = Vec::new();
    fe::startup(&mut b, &[("user", "u")]);
    fe::parse(&mut b, "s", "select $1", &[23]);
    fe::empty(&mut b, b'S');
    fe::bind(
        &mut b,
        "",
        "s",
        &[1],
        &[Some(&5i32.to_be_bytes()), None],
        &[],
    );
    fe::execute(&mut b, "", 10);
    fe::empty(&mut b, b'H');
    let got = units(&mut session, &b);
    assert_eq!(got.len(), 2);
    let Unit::Extended {
        statements,
        steps,
        sync,
    } = &got[1]
    else {
        panic!()
    };
    assert!(!sync);
    assert_eq!(
        steps,
        &[
            Step::Bind { statement: 0 },
            Step::Execute {
                statement: 0,
                max_rows: 10
            }
        ]
    );
    assert_eq!(statements[0].sql, "select $1");
    assert_eq!(statements[0].param_types, vec![23]);
    assert!(statements[0].params[0].binary && statements[0].params[1].null);
    assert_eq!(statements[0].max_rows, 10);
}

#[test]
fn a_miss_errors_and_skips_to_sync() {
    let mut session = Session::new(1 << 20);
    let mut b = Vec::new();
    fe::startup(&mut b, &[("user", "u")]);
    fe::parse(&mut b, "", "select 1", &[]);
    fe::bind(&mut b, "", "", &[], &[], &[]);
    fe::execute(&mut b, "", 0);
    fe::parse(&mut b, "", "select 2", &[]);
    fe::empty(&mut b, b'S');
    let unit = units(&mut session, &b).pop().unwrap();
    let out = answer(
        &unit,
        &[Answer::Miss {
            sqlstate: "XX000",
            message: "no recording",
        }],
        b'I',
    );
    let mut expected = Vec::new();
    be::empty(&mut expected, b'1');
    be::empty(&mut expected, b'2');
    be::error(
        &mut expected,
        b'E',
        &SqlError {
            severity: "ERROR".into(),
            code: "XX000".into(),
            message: "no recording".into(),
            fields: vec![],
        },
    );
    be::ready_for_query(&mut expected, b'I');
    assert_eq!(out, expected);
    // A simple query's miss: the error, then ReadyForQuery.
    let mut q = Vec::new();
    fe::query(&mut q, "select 1; select 2");
    let unit = units(&mut session, &q).pop().unwrap();
    let recorded = SqlStatement {
        command_tag: "SELECT 0".into(),
        ..SqlStatement::default()
    };
    let out = answer(
        &unit,
        &[
            Answer::Recorded(&recorded),
            Answer::Miss {
                sqlstate: "XX000",
                message: "no recording",
            },
        ],
        b'I',
    );
    let mut expected = Vec::new();
    be::command_complete(&mut expected, "SELECT 0");
    be::error(
        &mut expected,
        b'E',
        &SqlError {
            severity: "ERROR".into(),
            code: "XX000".into(),
            message: "no recording".into(),
            fields: vec![],
        },
    );
    be::ready_for_query(&mut expected, b'I');
    assert_eq!(out, expected);
}

#[test]
fn discard_until_sync_after_a_flushed_error() {
    let mut session = Session::new(1 << 20);
    let mut b = Vec::new();
    fe::startup(&mut b, &[("user", "u")]);
    fe::parse(&mut b, "", "bad", &[]);
    fe::empty(&mut b, b'H');
    assert_eq!(units(&mut session, &b).len(), 1);
    session.discard_until_sync();
    let mut b = Vec::new();
    fe::bind(&mut b, "", "", &[], &[], &[]);
    fe::execute(&mut b, "", 0);
    fe::empty(&mut b, b'S');
    let got = units(&mut session, &b);
    assert_eq!(
        got,
        vec![Unit::Extended {
            statements: vec![],
            steps: vec![],
            sync: true
        }]
    );
    let mut z = Vec::new();
    be::ready_for_query(&mut z, b'E');
    assert_eq!(answer(&got[0], &[], b'E'), z);
}
