//! The inspection engines on realistic exchanges: exact lines, JSON and
//! numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use prost::Message;
use reprise_inspect::{LsOptions, ShowOptions, StatsOptions, ls, show, stats};
use reprise_model::{
    Direction, ErrorKind, Exchange, GrpcStatus, Header, Link, LinkKind, MemorySource, Protocol,
    RecordSource, Request, Response, Role, StoreError, StreamMessage, TransportError,
};

const T0: u64 = 1_795_514_400_000_000_000; // 2026-11-24T10:00:00Z

fn http(id: u8, method: &str, path: &str, status: u32, at_ms: u64, duration_ms: u64) -> Exchange {
    Exchange {
        id: vec![id; 16],
        recorded_at_ns: T0 + at_ms * 1_000_000,
        duration_ns: duration_ms * 1_000_000,
        protocol: Protocol::Http11 as i32,
        role: Role::Inbound as i32,
        request: Some(Request {
            method: method.into(),
            scheme: "http".into(),
            authority: "shop.test".into(),
            path: path.into(),
            headers: vec![Header::new("content-type", "application/json")],
            body: br#"{"qty":2}"#.to_vec().into(),
            body_size: 9,
            ..Default::default()
        }),
        response: Some(Response {
            status,
            reason: "OK".into(),
            headers: vec![Header::new("content-type", "application/json")],
            body: br#"{"id":7,"items":[1,2]}"#.to_vec().into(),
            body_size: 22,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A gRPC call with its messages: the payload is a prost message.
fn grpc() -> Exchange {
    let payload = reprise_model::Header {
        name: "sku".into(),
        value: b"A1".to_vec(),
    }
    .encode_to_vec();
    Exchange {
        id: vec![0x99; 16],
        recorded_at_ns: T0 + 5_000_000,
        duration_ns: 800_000,
        protocol: Protocol::Grpc as i32,
        request: Some(Request {
            method: "POST".into(),
            authority: "inventory:50051".into(),
            path: "/shop.Inventory/Reserve".into(),
            headers: vec![Header::new("content-type", "application/grpc")],
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            grpc: Some(GrpcStatus {
                code: 5,
                message: "not found".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        messages: vec![StreamMessage {
            direction: Direction::Request as i32,
            offset_ns: 10_000,
            size: payload.len() as u64,
            data: payload.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn failed() -> Exchange {
    Exchange {
        id: vec![0xee; 16],
        recorded_at_ns: T0 + 9_000_000,
        request: Some(Request {
            method: "GET".into(),
            authority: "down.test".into(),
            path: "/".into(),
            ..Default::default()
        }),
        error: Some(TransportError {
            kind: ErrorKind::Connect as i32,
            message: "connection refused".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn ls_lines_are_aligned_and_exact() {
    let mut source = MemorySource::new(vec![
        http(1, "GET", "/items/1?x=1", 200, 0, 12),
        grpc(),
        failed(),
    ]);
    let mut out = Vec::new();
    let summary = ls(&mut source, &mut out, &LsOptions::default()).unwrap();
    assert_eq!(summary.listed, 3);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "01010101010101010101010101010101  2026-11-24T10:00:00.000Z  h1     GET          200    12.0ms        9B       22B  shop.test/items/1?x=1"
    );
    assert_eq!(
        lines[2],
        "99999999999999999999999999999999  2026-11-24T10:00:00.005Z  grpc   POST      200/g5     800µs        0B        0B  inventory:50051/shop.Inventory/Reserve"
    );
    assert!(lines[3].contains("  err:connect  "), "{}", lines[3]);
    // Every column but the target starts at the same place.
    let at = |l: &str| {
        l.find("  h1 ")
            .or_else(|| l.find("  grpc "))
            .or_else(|| l.find("  -  "))
    };
    assert_eq!(at(lines[1]), at(lines[2]));
}

#[test]
fn ls_json_lines_and_limit() {
    let mut source = MemorySource::new(
        (0..5)
            .map(|i| http(i, "GET", "/a", 200, u64::from(i), 1))
            .collect::<Vec<_>>(),
    );
    let mut out = Vec::new();
    let options = LsOptions {
        json: true,
        limit: Some(2),
        ..LsOptions::default()
    };
    ls(&mut source, &mut out, &options).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["id"], "01".repeat(16));
    assert_eq!(lines[1]["recorded_at"], "2026-11-24T10:00:00.001000Z");
    assert_eq!(lines[1]["status"], 200);
    assert_eq!(lines[1]["response_bytes"], 22);
}

/// A source that reports damage between two exchanges.
fn damaged() -> impl Iterator<Item = Result<Exchange, StoreError>> + Send {
    vec![
        Ok(http(1, "GET", "/a", 200, 0, 1)),
        Err(StoreError::Damaged {
            store: "tape t".into(),
            detail: "block 3 at offset 9 (10 bytes) fails its checksum; skipped".into(),
        }),
        Ok(http(2, "GET", "/b", 500, 1, 1)),
    ]
    .into_iter()
}

#[test]
fn damage_is_collected_not_fatal() {
    let mut out = Vec::new();
    let summary = ls(&mut damaged(), &mut out, &LsOptions::default()).unwrap();
    assert_eq!(summary.listed, 2);
    assert_eq!(
        summary.damage,
        vec!["tape t: block 3 at offset 9 (10 bytes) fails its checksum; skipped".to_string()]
    );
    let result = stats(&mut damaged(), &StatsOptions::default()).unwrap();
    assert_eq!((result.exchanges, result.damage.len()), (2, 1));
    let fatal = vec![Err(StoreError::failed("tape t", "cannot read: I/O error"))].into_iter();
    let err = ls(&mut { fatal }, &mut Vec::new(), &LsOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "tape t: cannot read: I/O error");
}

#[test]
fn stats_percentiles_rates_and_templates() {
    // 100 calls to /users/{n}: 1..=100 ms, 10 per second; 2 errors.
    let mut exchanges: Vec<Exchange> = (1..=100)
        .map(|i| {
            http(
                1,
                "GET",
                &format!("/users/{i}"),
                if i % 50 == 0 { 503 } else { 200 },
                i * 100,
                i,
            )
        })
        .collect();
    exchanges.push(failed());
    let mut downstream = http(3, "GET", "/price/1", 200, 0, 1);
    downstream.parent_id = vec![1; 16];
    exchanges.push(downstream);
    let result = stats(&mut MemorySource::new(exchanges), &StatsOptions::default()).unwrap();
    assert_eq!(
        (result.exchanges, result.inbound, result.downstream),
        (102, 101, 1)
    );
    let users = result
        .endpoints
        .iter()
        .find(|e| e.endpoint == "GET /users/{id}")
        .unwrap();
    assert_eq!(users.count, 100);
    let ms = |ns: u64| (ns as f64 / 1e6).round() as u64;
    assert_eq!(
        (
            ms(users.p50_ns),
            ms(users.p90_ns),
            ms(users.p99_ns),
            ms(users.max_ns)
        ),
        (50, 90, 99, 100)
    );
    assert_eq!(users.statuses.get("5xx"), Some(&2));
    assert!(
        result
            .endpoints
            .iter()
            .any(|e| e.endpoint == "↳GET shop.test/price/{id}")
    );
    // Second 0 holds calls 1-9, the failed call and the downstream one.
    assert_eq!(result.peak_rate, 11);
    assert_eq!(result.errors.get("connect"), Some(&1));
    assert_eq!(result.statuses.get("error"), Some(&1));
    assert_eq!(result.first.as_deref(), Some("2026-11-24T10:00:00.000Z"));
    let mut text = Vec::new();
    reprise_inspect::render_text(&result, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with("exchanges   102 (101 inbound, 1 downstream)\n"),
        "{text}"
    );
    assert!(text.contains("GET /users/{id}"), "{text}");
}

#[test]
fn stats_counts_calls_longer_than_an_hour_whole() {
    // A two-hour call (a stuck long poll) and three short ones.
    let two_hours = 2 * 3_600_000;
    let exchanges = vec![
        http(1, "GET", "/poll", 200, 0, two_hours),
        http(2, "GET", "/poll", 200, 1, 10),
        http(3, "GET", "/poll", 200, 2, 10),
        http(4, "GET", "/poll", 200, 3, 10),
    ];
    let result = stats(&mut MemorySource::new(exchanges), &StatsOptions::default()).unwrap();
    let poll = &result.endpoints[0];
    assert_eq!(poll.max_ns, two_hours * 1_000_000, "the slowest, exact");
    // Percentiles are within the histogram's 1 %, and never past the max.
    let p99 = poll.p99_ns as f64 / 1e6;
    assert!(
        (p99 - two_hours as f64).abs() <= two_hours as f64 * 0.01 && poll.p99_ns <= poll.max_ns,
        "p99 {p99} ms"
    );
    assert_eq!(poll.p50_ns / 1_000_000, 10);
    let mut text = Vec::new();
    reprise_inspect::render_text(&result, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("120m00s"), "{text}");
}

#[test]
fn stats_caps_endpoints() {
    // `section12` reads as a name (docs/cli.md), so each is an endpoint.
    let exchanges: Vec<Exchange> = (0..50)
        .map(|i| http(1, "GET", &format!("/section{i}"), 200, i, 1))
        .collect();
    let options = StatsOptions {
        max_endpoints: 10,
        ..StatsOptions::default()
    };
    let result = stats(&mut MemorySource::new(exchanges), &options).unwrap();
    assert_eq!(result.endpoints.len(), 11);
    assert_eq!(result.endpoints.last().unwrap().endpoint, "(other)");
    assert_eq!(result.endpoints.last().unwrap().count, 40);
}

#[test]
fn stats_table_stays_aligned_with_a_100_character_endpoint() {
    let long = format!("/{}", "a".repeat(95));
    let exchanges = vec![
        http(1, "GET", &long, 200, 0, 12),
        http(2, "GET", "/b", 200, 1, 3),
    ];
    let result = stats(&mut MemorySource::new(exchanges), &StatsOptions::default()).unwrap();
    let name = format!("GET {long}");
    assert_eq!(name.chars().count(), 100);
    assert!(
        result.endpoints.iter().any(|e| e.endpoint == name),
        "the figures keep the name whole"
    );
    let mut text = Vec::new();
    reprise_inspect::render_text(&result, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let table: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("endpoint "))
        .collect();
    assert_eq!(table.len(), 4, "head, two endpoints, (all):\n{text}");
    assert!(
        table[1].starts_with("GET /aaa") && table[1].contains('…'),
        "{text}"
    );
    // The statuses column starts at the same place on every line: the
    // name was shortened to 60 characters, not left to push it right.
    let column = |line: &str, text: &str| line.find(text).map(|at| line[..at].chars().count());
    let statuses = column(table[0], "  statuses");
    for line in &table[1..] {
        assert_eq!(column(line, "  2xx"), statuses, "{text}");
    }
    assert_eq!(statuses, Some(60 + 2 + 7 + 4 * (2 + 8)), "{text}");
}

#[test]
fn show_renders_grpc_and_errors() {
    let mut out = Vec::new();
    let mut source = MemorySource::new(vec![grpc(), failed()]);
    show(&mut source, "999999", &mut out, &ShowOptions::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("> message at +10µs (9B)\n  1: \"sku\"\n  2: \"A1\"\n"),
        "{text}"
    );
    assert!(text.contains("< grpc-status 5 not found\n"), "{text}");
    let mut out = Vec::new();
    show(
        &mut MemorySource::new(vec![failed()]),
        "eeeeee",
        &mut out,
        &ShowOptions::default(),
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("! transport error (connect): connection refused\n"),
        "{text}"
    );
}

#[test]
fn show_says_how_each_downstream_call_was_linked() {
    let parent = http(0x10, "POST", "/checkout", 200, 0, 30);
    let mut first = http(0x11, "GET", "/stock", 200, 1, 5);
    let mut second = http(0x12, "POST", "/charge", 200, 8, 5);
    let mut lost = http(0x13, "POST", "/charge", 200, 9, 5);
    for (call, order) in [(&mut first, 0), (&mut second, 1)] {
        call.role = Role::Downstream as i32;
        call.parent_id = parent.id.clone();
        call.link = Some(Link {
            kind: LinkKind::Trace as i32,
            order,
        });
        call.source = Some(RecordSource {
            listener: "127.0.0.1:9001".into(),
            route: "payments".into(),
            ..Default::default()
        });
    }
    lost.role = Role::Downstream as i32;
    lost.link = Some(Link {
        kind: LinkKind::Ambiguous as i32,
        order: 0,
    });
    let exchanges = vec![parent, first, second, lost];
    let mut out = Vec::new();
    let mut source = MemorySource::new(exchanges.clone());
    show(&mut source, "101010", &mut out, &ShowOptions::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("  link      trace, call 1 of its parent's\n"),
        "{text}"
    );
    assert!(
        text.contains("  link      trace, call 2 of its parent's\n"),
        "{text}"
    );
    assert!(text.contains("route=payments"), "{text}");
    assert_eq!(
        text.matches("  link ").count(),
        2,
        "the parent has none: {text}"
    );
    let mut out = Vec::new();
    let mut source = MemorySource::new(exchanges.clone());
    show(&mut source, "131313", &mut out, &ShowOptions::default()).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("  link      ambiguous\n"), "{text}");
    let mut out = Vec::new();
    let options = ShowOptions {
        json: true,
        ..ShowOptions::default()
    };
    show(
        &mut MemorySource::new(exchanges),
        "101010",
        &mut out,
        &options,
    )
    .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(value.get("link").is_none(), "{value}");
    assert_eq!(value["downstream"][1]["link"]["kind"], "trace");
    assert_eq!(value["downstream"][1]["link"]["order"], 1);
    assert_eq!(value["downstream"][0]["source"]["route"], "payments");
}

#[test]
fn show_refuses_ambiguous_prefixes() {
    let mut a = http(1, "GET", "/a", 200, 0, 1);
    let mut b = http(2, "GET", "/b", 200, 0, 1);
    a.id = vec![0xab, 0xcd, 0xef, 1];
    b.id = vec![0xab, 0xcd, 0xef, 2];
    let err = show(
        &mut MemorySource::new(vec![a, b]),
        "abcdef",
        &mut Vec::new(),
        &ShowOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "id prefix abcdef is ambiguous: abcdef01, abcdef02"
    );
}

proptest::proptest! {
    #[test]
    fn any_exchange_lists_as_valid_json(
        method in "[A-Z]{0,8}", path in "[ -~]{0,30}", status in 0u32..1000,
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
    ) {
        let mut exchange = http(1, &method, &path, status, 0, 1);
        exchange.response.as_mut().unwrap().body = body.into();
        exchange.request.as_mut().unwrap().headers.push(Header::new("x-bin", header));
        let mut out = Vec::new();
        ls(&mut MemorySource::new(vec![exchange.clone()]), &mut out, &LsOptions { json: true, ..LsOptions::default() }).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        proptest::prop_assert_eq!(line["method"].as_str(), Some(method.as_str()));
        let mut shown = Vec::new();
        show(&mut MemorySource::new(vec![exchange.clone()]), &"01".repeat(16), &mut shown, &ShowOptions::default()).unwrap();
        let mut json = Vec::new();
        show(&mut MemorySource::new(vec![exchange]), "010101", &mut json, &ShowOptions { json: true, ..ShowOptions::default() }).unwrap();
        let _: serde_json::Value = serde_json::from_slice(&json).unwrap();
    }
}

#[test]
fn a_burst_shorter_than_a_second_is_not_extrapolated() {
    // 120 calls within 300 ms: 120 in that second, not 400 per second.
    let exchanges: Vec<Exchange> = (0..120u64)
        .map(|i| http(u8::try_from(i).unwrap(), "GET", "/a", 200, i * 300 / 120, 1))
        .collect();
    let result = stats(&mut MemorySource::new(exchanges), &StatsOptions::default()).unwrap();
    assert_eq!(result.peak_rate, 120);
    assert!(
        (result.mean_rate - 120.0).abs() < 1e-9,
        "{}",
        result.mean_rate
    );
}
