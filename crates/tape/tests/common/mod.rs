//! Exchanges for the tape tests.
#![allow(dead_code)]

use proptest::prelude::*;
use reprise_model::{Exchange, Header, Protocol, Request, Response, StreamMessage};

/// A small but complete exchange; `i` makes it unique and sets its time.
pub fn exchange(i: u64, body_len: usize) -> Exchange {
    Exchange {
        id: i.to_be_bytes().repeat(2),
        recorded_at_ns: 1_000_000_000 + i * 1_000,
        duration_ns: 500 + i,
        protocol: Protocol::Http11 as i32,
        request: Some(Request {
            method: "POST".into(),
            scheme: "http".into(),
            authority: "svc.local".into(),
            path: format!("/items/{i}?q=1"),
            headers: vec![
                Header::new("content-type", "application/json"),
                Header::new("x-i", i.to_string()),
            ],
            body: vec![b'a' + (i % 26) as u8; body_len].into(),
            body_size: body_len as u64,
            ..Default::default()
        }),
        response: Some(Response {
            status: 200 + (i % 3) as u32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn header() -> impl Strategy<Value = Header> {
    (
        "[a-z-]{1,12}",
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(n, v)| Header::new(n, v))
}

/// Arbitrary exchanges, including empty and binary fields and streams.
pub fn arb_exchange() -> impl Strategy<Value = Exchange> {
    (
        proptest::collection::vec(any::<u8>(), 0..20),
        any::<u64>(),
        any::<u64>(),
        0i32..6,
        "[A-Z]{0,7}",
        "/[ -~]{0,40}",
        proptest::collection::vec(header(), 0..6),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::option::of((0u32..1000, proptest::collection::vec(any::<u8>(), 0..300))),
        proptest::collection::vec(
            (
                1i32..3,
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..40),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(id, at, dur, proto, method, path, headers, body, response, messages)| Exchange {
                id,
                recorded_at_ns: at,
                duration_ns: dur,
                protocol: proto,
                request: Some(Request {
                    method,
                    path,
                    headers,
                    body: body.into(),
                    ..Default::default()
                }),
                response: response.map(|(status, body)| Response {
                    status,
                    body: body.into(),
                    ..Default::default()
                }),
                messages: messages
                    .into_iter()
                    .map(|(d, offset_ns, data)| StreamMessage {
                        direction: d,
                        offset_ns,
                        data: data.into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )
}

/// Reads a whole tape, splitting exchanges from damage reports.
pub fn read_all(path: &std::path::Path) -> (Vec<Exchange>, Vec<reprise_tape::Damage>) {
    let mut reader = reprise_tape::TapeReader::open(path).expect("opens");
    let mut exchanges = Vec::new();
    while let Some(item) = reader.next_exchange() {
        match item {
            Ok(exchange) => exchanges.push(exchange),
            Err(e) if e.is_damage() => {}
            Err(e) => panic!("fatal error: {e}"),
        }
    }
    (exchanges, reader.damage().to_vec())
}

/// Waits (10 s at most) until a follower has looked at the end of the
/// tape since this call and is going to sleep: its count of idle looks
/// (`Follow::idle_looks`) went up twice since (the first may end a look
/// that began before the call).
pub fn wait_for_a_look(idle_looks: &std::sync::atomic::AtomicU64) {
    use std::sync::atomic::Ordering;
    let before = idle_looks.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while idle_looks.load(Ordering::SeqCst) < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never looked again"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
