//! `reprise stats` on a tape through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use reprise_model::{Exchange, Protocol, Request, Response};
use serde_json::Value;

mod support;
use support::*;

fn call(id: u8, duration_ns: u64) -> Exchange {
    Exchange {
        id: vec![id; 16],
        recorded_at_ns: 1_780_000_000_000_000_000 + u64::from(id),
        duration_ns,
        protocol: Protocol::Http11 as i32,
        request: Some(Request {
            method: "GET".into(),
            path: "/events/poll".into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_two_hour_call_is_counted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "long.tape");
    let two_hours: u64 = 2 * 3_600 * 1_000_000_000;
    write_exchanges(&tape, &[call(1, two_hours), call(2, 5_000_000)]);

    let out = reprise(&["stats", s(&tape), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let poll = &stats["endpoints"][0];
    assert_eq!(poll["max_ns"], two_hours, "{poll}");
    let p99 = poll["p99_ns"].as_u64().unwrap();
    assert!(p99 <= two_hours && p99 >= two_hours / 100 * 99, "{poll}");

    let out = reprise(&["stats", s(&tape)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let row = shown
        .lines()
        .find(|l| l.starts_with("GET /events/poll"))
        .unwrap();
    assert!(
        row.contains("120m00s"),
        "the max column, not 60m07s: {shown}"
    );
}
