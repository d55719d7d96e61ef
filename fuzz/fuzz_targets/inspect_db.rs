//! Any database or cache call through `ls`, `show` (text and JSON) and
//! `stats`: the SQL layout, the result tables and the redis-cli rendering
//! never panic, and every line they print is free of raw control
//! characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprise_inspect::{LsOptions, ShowOptions, StatsOptions, ls, render_text, show, stats};
use reprise_model::{
    DbCall, Exchange, MemorySource, Protocol, RecordSource, RedisCommand, RespKind, RespValue,
    SqlColumn, SqlRow, SqlStatement, SqlValue,
};

/// An exchange from the input: a record when it decodes as one and holds a
/// database call, otherwise one built around the input as SQL text, row
/// values and Redis arguments, so the formatters see arbitrary text often.
fn exchange(data: &[u8]) -> Exchange {
    if let Ok(mut exchange) = reprise_model::decode(data)
        && exchange.db.is_some()
    {
        exchange.id = vec![0xab; 16];
        return exchange;
    }
    let text = String::from_utf8_lossy(data).into_owned();
    let words: Vec<Vec<u8>> = data.split(|&b| b == b' ').map(<[u8]>::to_vec).collect();
    let value = |bytes: &[u8], binary: bool| SqlValue {
        data: bytes.to_vec(),
        binary,
        null: bytes.is_empty(),
    };
    // Nested no deeper than a decoded record can be (prost's limit, 100).
    let reply = words.iter().take(90).fold(
        RespValue {
            kind: RespKind::BulkString as i32,
            data: data.to_vec(),
            ..Default::default()
        },
        |inner, w| RespValue {
            kind: i32::from(w.first().copied().unwrap_or(0) % 17),
            data: w.clone(),
            items: vec![
                inner,
                RespValue {
                    kind: RespKind::SimpleString as i32,
                    data: w.clone(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    let redis = data.first().is_some_and(|b| b % 2 == 1);
    Exchange {
        id: vec![0xab; 16],
        protocol: if redis { Protocol::Redis } else { Protocol::Postgres } as i32,
        source: Some(RecordSource {
            route: text.chars().take(12).collect(),
            ..Default::default()
        }),
        db: Some(DbCall {
            statements: vec![SqlStatement {
                sql: text.clone(),
                params: words.iter().map(|w| value(w, w.len() % 2 == 0)).collect(),
                columns: words
                    .iter()
                    .map(|w| SqlColumn {
                        name: String::from_utf8_lossy(w).into_owned(),
                        ..Default::default()
                    })
                    .collect(),
                rows: vec![SqlRow {
                    values: words.iter().map(|w| value(w, false)).collect(),
                }],
                command_tag: text.chars().rev().take(10).collect(),
                ..Default::default()
            }],
            redis: redis.then(|| RedisCommand {
                args: words.clone(),
                reply: Some(reply),
                ..Default::default()
            }),
            transaction_status: text.chars().take(1).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn clean(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "raw control character in {text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let exchange = exchange(data);
    let id = exchange.id_hex();
    let mut out = Vec::new();
    ls(&mut MemorySource::new([exchange.clone()]), &mut out, &LsOptions::default())
        .expect("ls");
    clean(&out);
    let mut out = Vec::new();
    show(&mut MemorySource::new([exchange.clone()]), &id, &mut out, &ShowOptions::default())
        .expect("show");
    clean(&out);
    let json = ShowOptions {
        json: true,
        ..ShowOptions::default()
    };
    let mut out = Vec::new();
    show(&mut MemorySource::new([exchange.clone()]), &id, &mut out, &json).expect("show --json");
    let stats = stats(&mut MemorySource::new([exchange]), &StatsOptions::default()).expect("stats");
    let mut out = Vec::new();
    render_text(&stats, &mut out).expect("stats text");
    clean(&out);
});
