//! Byte-level flows through `pg::Conversation`: start-up with each kind of
//! authentication, simple and extended queries, errors, COPY, size caps,
//! closes mid-answer, and the same exchanges however the bytes are cut.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use prost::Message;
use reprise_model::{SqlColumn, SqlError, SqlValue};
use reprise_wire::DbExchange;
use reprise_wire::pg::encode::{backend as be, frontend as fe, message};
use reprise_wire::pg::{Conversation, PgOptions};

/// One round trip: what the client sends, then what the server answers.
type Round = (Vec<u8>, Vec<u8>);

fn options() -> PgOptions {
    PgOptions {
        max_body: 1 << 20,
        tls: false,
    }
}

fn run_with(
    rounds: &[Round],
    opts: PgOptions,
    cut: &dyn Fn(&[u8]) -> Vec<Vec<u8>>,
) -> (Vec<DbExchange>, Conversation) {
    let mut conv = Conversation::new(opts);
    let mut out = Vec::new();
    for (i, (c, s)) in rounds.iter().enumerate() {
        for piece in cut(c) {
            conv.client(&piece, i as u64 * 10);
        }
        for piece in cut(s) {
            conv.server(&piece, i as u64 * 10 + 5);
        }
        out.extend(conv.take());
    }
    (out, conv)
}

fn run(rounds: &[Round]) -> Vec<DbExchange> {
    let (mut out, mut conv) = run_with(rounds, options(), &|b| vec![b.to_vec()]);
    assert!(conv.broken().is_none(), "{:?}", conv.broken());
    out.extend(conv.close(1000, None));
    out
}

fn startup_trust() -> Round {
    let mut c = Vec::new();
    fe::startup(
        &mut c,
        &[
            ("user", "alice"),
            ("database", "shop"),
            ("application_name", "psql"),
        ],
    );
    let mut s = Vec::new();
    be::authentication(&mut s, 0, &[]);
    be::parameter_status(&mut s, "server_version", "15.8");
    be::parameter_status(&mut s, "TimeZone", "UTC");
    be::backend_key_data(&mut s, 4242, 0xdead_beef);
    be::ready_for_query(&mut s, b'I');
    (c, s)
}

fn col(name: &str, type_oid: u32) -> SqlColumn {
    SqlColumn {
        name: name.into(),
        type_oid,
        type_size: -1,
        type_modifier: -1,
        ..SqlColumn::default()
    }
}

fn text(v: &str) -> SqlValue {
    SqlValue {
        data: v.as_bytes().to_vec(),
        ..SqlValue::default()
    }
}

fn error(code: &str, msg: &str) -> SqlError {
    SqlError {
        severity: "ERROR".into(),
        code: code.into(),
        message: msg.into(),
        fields: vec![],
    }
}

fn query(sql: &str) -> Vec<u8> {
    let mut c = Vec::new();
    fe::query(&mut c, sql);
    c
}

fn select_rows(s: &mut Vec<u8>, rows: &[&str], tag: &str) {
    be::row_description(s, &[col("name", 25)]);
    for r in rows {
        be::data_row(s, &[text(r)]);
    }
    be::command_complete(s, tag);
}

/// A conversation exercising most of the protocol, for the chunking tests.
fn transcript() -> Vec<Round> {
    let mut rounds = vec![startup_trust()];
    // Simple query with two statements and a notice.
    let mut s = Vec::new();
    select_rows(&mut s, &["a", "b"], "SELECT 2");
    be::error(
        &mut s,
        b'N',
        &SqlError {
            severity: "NOTICE".into(),
            code: "00000".into(),
            message: "hi".into(),
            fields: vec![],
        },
    );
    be::command_complete(&mut s, "UPDATE 1");
    be::ready_for_query(&mut s, b'I');
    rounds.push((query("select name from t; update t set a = 1 /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/"), s));
    // Extended: named statement, binary results, suspended portal.
    let mut c = Vec::new();
    fe::parse(&mut c, "s1", "select name from t where id = $1", &[23]);
    fe::bind(&mut c, "p1", "s1", &[1], &[Some(&7i32.to_be_bytes())], &[1]);
    fe::describe(&mut c, b'P', "p1");
    fe::execute(&mut c, "p1", 1);
    fe::execute(&mut c, "p1", 1);
    fe::empty(&mut c, b'S');
    let mut s = Vec::new();
    be::empty(&mut s, b'1');
    be::empty(&mut s, b'2');
    be::row_description(
        &mut s,
        &[SqlColumn {
            binary: true,
            ..col("name", 25)
        }],
    );
    be::data_row(&mut s, &[text("x")]);
    be::empty(&mut s, b's');
    be::data_row(&mut s, &[text("y")]);
    be::command_complete(&mut s, "SELECT 1");
    be::ready_for_query(&mut s, b'T');
    rounds.push((c, s));
    // Extended error: the rest is skipped until Sync.
    let mut c = Vec::new();
    fe::parse(&mut c, "", "select * from missing", &[]);
    fe::bind(&mut c, "", "", &[], &[], &[]);
    fe::execute(&mut c, "", 0);
    fe::empty(&mut c, b'S');
    let mut s = Vec::new();
    be::error(
        &mut s,
        b'E',
        &error("42P01", "relation \"missing\" does not exist"),
    );
    be::ready_for_query(&mut s, b'E');
    rounds.push((c, s));
    rounds.push((query(""), {
        let mut s = Vec::new();
        be::empty(&mut s, b'I');
        be::ready_for_query(&mut s, b'I');
        s
    }));
    rounds
}

#[test]
fn startup_trust_records_parameters_and_pid() {
    let out = run(&[startup_trust()]);
    assert_eq!(out.len(), 1);
    let st = out[0].call.startup.as_ref().unwrap();
    assert_eq!(st.protocol_version, 196_608);
    assert_eq!(st.authentication, "trust");
    assert_eq!(st.backend_pid, 4242);
    assert_eq!(
        st.parameters
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["user", "database", "application_name"]
    );
    assert_eq!(st.server_parameters[0].value, b"15.8");
    assert_eq!(out[0].call.transaction_status, "I");
    assert!(out[0].incomplete.is_none());
    assert!(
        !out[0]
            .call
            .encode_to_vec()
            .windows(4)
            .any(|w| w == 0xdead_beef_u32.to_be_bytes())
    );
}

#[test]
fn md5_and_scram_passwords_are_never_kept() {
    // md5.
    let (c, _) = startup_trust();
    let mut s = Vec::new();
    be::authentication(&mut s, 5, b"salt");
    let mut p = Vec::new();
    message(&mut p, b'p', |b| {
        b.extend_from_slice(b"md5SECRETSECRETSECRET\0")
    });
    let mut s2 = Vec::new();
    be::authentication(&mut s2, 0, &[]);
    be::ready_for_query(&mut s2, b'I');
    let out = run(&[(c.clone(), s), (p, s2.clone())]);
    assert_eq!(out[0].call.startup.as_ref().unwrap().authentication, "md5");
    assert!(!contains(&out[0].call.encode_to_vec(), b"SECRET"));
    // SCRAM.
    let mut s = Vec::new();
    be::authentication(&mut s, 10, b"SCRAM-SHA-256\0\0");
    let mut p1 = Vec::new();
    message(&mut p1, b'p', |b| {
        b.extend_from_slice(b"SCRAM-SHA-256\0");
        let data = b"n,,n=,r=SECRETNONCE";
        b.extend_from_slice(&(data.len() as i32).to_be_bytes());
        b.extend_from_slice(data);
    });
    let mut s1 = Vec::new();
    be::authentication(&mut s1, 11, b"r=SECRETNONCEserver,s=SALT,i=4096");
    let mut p2 = Vec::new();
    message(&mut p2, b'p', |b| {
        b.extend_from_slice(b"c=biws,r=SECRETNONCEserver,p=SECRETPROOF")
    });
    let mut s3 = Vec::new();
    be::authentication(&mut s3, 12, b"v=SECRETSIG");
    s3.extend_from_slice(&s2);
    let out = run(&[(c, s), (p1, s1), (p2, s3)]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].call.startup.as_ref().unwrap().authentication,
        "SCRAM-SHA-256"
    );
    assert!(!contains(&out[0].call.encode_to_vec(), b"SECRET"));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn refused_startup_keeps_the_error() {
    let (c, _) = startup_trust();
    let mut s = Vec::new();
    be::error(
        &mut s,
        b'E',
        &error("28P01", "password authentication failed for user \"alice\""),
    );
    let out = run(&[(c, s)]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]
            .call
            .startup
            .as_ref()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .code,
        "28P01"
    );
    assert!(out[0].incomplete.is_none());
}

#[test]
fn ssl_refused_then_startup() {
    let mut c = Vec::new();
    c.extend_from_slice(&8u32.to_be_bytes());
    c.extend_from_slice(&80_877_103u32.to_be_bytes());
    let (c2, s2) = startup_trust();
    let out = run(&[(c, b"N".to_vec()), (c2, s2)]);
    assert_eq!(out.len(), 1);
    assert!(!out[0].call.startup.as_ref().unwrap().tls);
}

#[test]
fn the_whole_transcript() {
    let out = run(&transcript());
    assert_eq!(out.len(), 5, "{out:#?}");
    // Simple query, two statements, split SQL, notice, write, traceparent.
    let q = &out[1];
    assert_eq!(q.call.statements.len(), 2);
    assert_eq!(q.call.statements[0].sql, "select name from t");
    assert_eq!(q.call.statements[0].rows.len(), 2);
    assert_eq!(q.call.statements[0].columns[0].name, "name");
    assert_eq!(q.call.statements[0].command_tag, "SELECT 2");
    assert!(q.call.statements[1].sql.starts_with("update t set a = 1"));
    assert_eq!(q.call.notices[0].message, "hi");
    assert!(q.call.write);
    assert_eq!(
        q.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!((q.started_ns, q.ended_ns), (10, 15));
    // Extended with a suspended portal executed twice.
    let e = &out[2];
    assert_eq!(e.call.statements.len(), 2);
    let (a, b) = (&e.call.statements[0], &e.call.statements[1]);
    assert_eq!(a.sql, "select name from t where id = $1");
    assert_eq!((a.statement_name.as_str(), a.portal.as_str()), ("s1", "p1"));
    assert_eq!(a.param_types, vec![23]);
    assert!(a.params[0].binary);
    assert_eq!(a.params[0].data, 7i32.to_be_bytes());
    assert!(a.described && a.columns[0].binary && a.rows[0].values[0].binary);
    assert!(a.suspended && a.max_rows == 1);
    assert_eq!(
        (b.sql.as_str(), b.command_tag.as_str(), b.rows.len()),
        (a.sql.as_str(), "SELECT 1", 1)
    );
    assert_eq!(e.call.transaction_status, "T");
    assert!(!e.call.write);
    // The error, on the statement that failed.
    let f = &out[3];
    assert_eq!(f.call.statements.len(), 1);
    assert_eq!(f.call.statements[0].error.as_ref().unwrap().code, "42P01");
    assert_eq!(f.call.transaction_status, "E");
    // Empty query.
    assert!(out[4].call.statements[0].empty);
}

#[test]
fn flush_does_not_end_the_exchange_and_close_resolves_names() {
    let mut c = Vec::new();
    fe::parse(&mut c, "q", "select $1::int", &[0]);
    fe::describe(&mut c, b'S', "q");
    fe::empty(&mut c, b'H');
    let mut s = Vec::new();
    be::empty(&mut s, b'1');
    be::parameter_description(&mut s, &[23]);
    be::row_description(&mut s, &[col("int4", 23)]);
    let mut c2 = Vec::new();
    fe::bind(&mut c2, "", "q", &[], &[Some(b"5")], &[]);
    fe::execute(&mut c2, "", 0);
    fe::close(&mut c2, b'S', "q");
    fe::empty(&mut c2, b'S');
    let mut s2 = Vec::new();
    be::empty(&mut s2, b'2');
    be::data_row(&mut s2, &[text("5")]);
    be::command_complete(&mut s2, "SELECT 1");
    be::empty(&mut s2, b'3');
    be::ready_for_query(&mut s2, b'I');
    let mut c3 = Vec::new();
    fe::bind(&mut c3, "", "q", &[], &[], &[]);
    fe::execute(&mut c3, "", 0);
    fe::empty(&mut c3, b'S');
    let mut s3 = Vec::new();
    be::error(
        &mut s3,
        b'E',
        &error("26000", "prepared statement \"q\" does not exist"),
    );
    be::ready_for_query(&mut s3, b'I');
    let out = run(&[startup_trust(), (c, s), (c2, s2), (c3, s3)]);
    assert_eq!(out.len(), 3);
    let out = &out[1..];
    let st = &out[0].call.statements;
    assert_eq!(st.len(), 1, "{st:#?}");
    assert_eq!(st[0].described_param_types, vec![23]);
    assert_eq!(st[0].columns[0].name, "int4");
    assert_eq!(st[0].rows[0].values[0].data, b"5");
    assert_eq!(out[1].call.statements[0].sql, "");
    assert_eq!(
        out[1].call.statements[0].error.as_ref().unwrap().code,
        "26000"
    );
}

#[test]
fn copy_function_call_and_async_messages() {
    let mut s = Vec::new();
    message(&mut s, b'G', |b| b.extend_from_slice(&[0, 0, 1, 0, 0]));
    let mut c2 = Vec::new();
    message(&mut c2, b'd', |b| b.extend_from_slice(b"1\tx\n"));
    message(&mut c2, b'c', |_| {});
    let mut s2 = Vec::new();
    message(&mut s2, b'A', |b| {
        b.extend_from_slice(b"\0\0\0\x01chan\0payload\0")
    });
    be::command_complete(&mut s2, "COPY 1");
    be::ready_for_query(&mut s2, b'I');
    let mut c3 = Vec::new();
    message(&mut c3, b'F', |b| {
        b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    });
    let mut s3 = Vec::new();
    message(&mut s3, b'V', |b| {
        b.extend_from_slice(&(-1i32).to_be_bytes())
    });
    be::ready_for_query(&mut s3, b'I');
    let mut s4 = Vec::new();
    be::parameter_status(&mut s4, "TimeZone", "Europe/Paris");
    be::command_complete(&mut s4, "SET");
    be::ready_for_query(&mut s4, b'I');
    let mut terminate = Vec::new();
    fe::empty(&mut terminate, b'X');
    let out = run(&[
        startup_trust(),
        (query("copy t from stdin"), s),
        (c2, s2),
        (c3, s3),
        (query("set timezone = 'Europe/Paris'"), s4),
        (terminate, vec![]),
    ]);
    assert_eq!(out.len(), 4);
    let out = &out[1..];
    assert!(out[0].call.statements[0].copy);
    assert_eq!(out[0].call.statements[0].command_tag, "COPY 1");
    assert_eq!(out[0].call.not_mockable, "COPY");
    assert!(out[0].call.write);
    assert_eq!(out[1].call.not_mockable, "function call");
    assert_eq!(out[2].call.statements[0].command_tag, "SET");
    assert!(out[2].call.not_mockable.is_empty());
}

#[test]
fn rows_beyond_the_cap_are_counted_not_kept() {
    let mut s = Vec::new();
    let big = "x".repeat(400);
    select_rows(&mut s, &[&big, &big, &big], "SELECT 3");
    be::ready_for_query(&mut s, b'I');
    let opts = PgOptions {
        max_body: 1000,
        tls: false,
    };
    let (out, _) = run_with(&[startup_trust(), (query("select"), s)], opts, &|b| {
        vec![b.to_vec()]
    });
    let st = &out[1].call.statements[0];
    assert_eq!(st.rows.len(), 2);
    assert!(st.rows_truncated);
    assert_eq!(st.rows_size, 3 * (5 + 2 + 4 + 400));
    assert_eq!(out[1].call.not_mockable, "rows beyond the size cap");
}

#[test]
fn a_huge_query_streams_past_the_cap() {
    let sql = format!("select '{}'", "y".repeat(3 << 20));
    let mut s = Vec::new();
    be::row_description(&mut s, &[col("x", 25)]);
    be::data_row(&mut s, &[text(&"y".repeat(3 << 20))]);
    be::command_complete(&mut s, "SELECT 1");
    be::ready_for_query(&mut s, b'I');
    let opts = PgOptions {
        max_body: 1 << 16,
        tls: false,
    };
    let (out, conv) = run_with(&[startup_trust(), (query(&sql), s)], opts, &|b| {
        b.chunks(1 << 16).map(<[u8]>::to_vec).collect()
    });
    assert!(conv.broken().is_none());
    let st = &out[1].call.statements[0];
    assert!(st.sql.starts_with("select 'yyy") && st.sql.len() <= 16 * 1024);
    assert!(st.rows.is_empty() && st.rows_truncated && st.rows_size > 3 << 20);
    assert_eq!(out[1].call.not_mockable, "query larger than the size cap");
}

#[test]
fn closing_mid_answer_gives_incomplete_exchanges() {
    let mut s = Vec::new();
    select_rows(&mut s, &["a"], "SELECT 1");
    let (out, mut conv) = run_with(
        &[
            startup_trust(),
            (query("select 1"), s[..s.len() - 3].to_vec()),
        ],
        options(),
        &|b| vec![b.to_vec()],
    );
    assert_eq!(out.len(), 1);
    let closed = conv.close(99, None);
    assert_eq!(closed.len(), 1);
    assert_eq!(
        closed[0].incomplete.as_deref(),
        Some("connection closed mid-message")
    );
    assert_eq!(closed[0].ended_ns, 99);
    assert_eq!(closed[0].call.statements[0].rows.len(), 1);
    let mut conv = Conversation::new(options());
    conv.client(&startup_trust().0, 0);
    let closed = conv.close(5, Some("reset by peer"));
    assert_eq!(closed[0].incomplete.as_deref(), Some("reset by peer"));
}

#[test]
fn garbage_breaks_the_conversation_without_panicking() {
    let mut conv = Conversation::new(options());
    conv.client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    assert!(
        conv.broken()
            .unwrap()
            .to_string()
            .starts_with("not a PostgreSQL v3 start-up")
    );
    let mut conv = Conversation::new(options());
    let (c, s) = startup_trust();
    conv.client(&c, 0);
    conv.server(&s, 1);
    conv.client(&query("select 1"), 2);
    conv.server(b"D\xff\xff\xff\xff", 3);
    assert!(conv.broken().is_some());
    let out = conv.close(4, None);
    assert_eq!(out.len(), 2);
    assert!(
        out[1]
            .incomplete
            .as_deref()
            .unwrap()
            .starts_with("stopped following the connection")
    );
}

fn strip_times(mut v: Vec<DbExchange>) -> Vec<DbExchange> {
    for e in &mut v {
        e.started_ns = 0;
        e.ended_ns = 0;
    }
    v
}

#[test]
fn one_byte_at_a_time_gives_the_same_exchanges() {
    let rounds = transcript();
    let whole = run(&rounds);
    let (mut bytewise, mut conv) = run_with(&rounds, options(), &|b| {
        b.chunks(1).map(<[u8]>::to_vec).collect()
    });
    bytewise.extend(conv.close(1000, None));
    assert_eq!(strip_times(bytewise), strip_times(whole));
}

proptest! {
    #[test]
    fn random_splits_give_the_same_exchanges(cuts in proptest::collection::vec(1usize..64, 1..40)) {
        let rounds = transcript();
        let whole = run(&rounds);
        let cut = |b: &[u8]| {
            let mut out = Vec::new();
            let mut rest = b;
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                out.push(rest[..n].to_vec());
                rest = &rest[n..];
                i += 1;
            }
            out
        };
        let (mut split, mut conv) = run_with(&rounds, options(), &cut);
        split.extend(conv.close(1000, None));
        prop_assert_eq!(strip_times(split), strip_times(whole));
    }
}

#[test]
fn rows_are_binary_as_the_bind_asked_without_a_describe() {
    // tokio-postgres and pgx keep the description from the prepare and
    // send only Bind and Execute.
    let mut c = Vec::new();
    fe::bind(&mut c, "", "s0", &[1], &[Some(&1i32.to_be_bytes())], &[1]);
    fe::execute(&mut c, "", 0);
    fe::empty(&mut c, b'S');
    let mut s = Vec::new();
    be::empty(&mut s, b'2');
    be::data_row(
        &mut s,
        &[SqlValue {
            data: 5i32.to_be_bytes().to_vec(),
            ..SqlValue::default()
        }],
    );
    be::command_complete(&mut s, "SELECT 1");
    be::ready_for_query(&mut s, b'I');
    let out = run(&[startup_trust(), (c, s)]);
    let st = &out[1].call.statements[0];
    assert!(st.columns.is_empty());
    assert!(st.rows[0].values[0].binary);
    assert_eq!(st.rows[0].values[0].data, 5i32.to_be_bytes());
}
