//! Synthetic exchanges for benchmarks and load generators: realistic in
//! shape and size, deterministic apart from their ids.

use crate::pb::{Exchange, Header, Protocol, Request, Response};

/// A JSON document of about `len` bytes, varying with `seed`.
pub fn json_body(seed: usize, len: usize) -> Vec<u8> {
    let mut body = String::from("{\"items\":[");
    let mut i = 0;
    while body.len() < len - 40 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"id\":{},\"sku\":\"SKU-{:06}\",\"price\":{}.{:02},\"qty\":{}}}",
            seed * 31 + i,
            (seed * 7919 + i * 104_729) % 1_000_000,
            (seed + i) % 500,
            (seed * 13 + i) % 100,
            (seed + i * 3) % 9 + 1
        ));
        i += 1;
    }
    body.push_str("],\"next\":null}");
    body.into_bytes()
}

/// A realistic inbound exchange: 20 request headers, 5 response headers,
/// about 1 KiB of JSON each way, `i` making it unique (and 1 ms later than
/// `i - 1`).
pub fn realistic(i: usize) -> Exchange {
    let mut headers = vec![
        Header::new("host", "shop.internal:8080"),
        Header::new(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        ),
        Header::new("accept", "application/json, text/plain, */*"),
        Header::new("accept-encoding", "gzip, deflate, br"),
        Header::new("accept-language", "en-US,en;q=0.9"),
        Header::new("content-type", "application/json"),
        Header::new(
            "x-request-id",
            format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        ),
        Header::new(
            "traceparent",
            format!(
                "00-{:032x}-{:016x}-01",
                i as u128 * 7_654_321,
                i * 1_234_567
            ),
        ),
        Header::new("authorization", "[redacted]"),
        Header::new("x-tenant", format!("tenant-{}", i % 17)),
    ];
    for n in 0..10 {
        headers.push(Header::new(
            format!("x-custom-{n}"),
            format!("value-{}-{}", n, i % 97),
        ));
    }
    let response_headers = vec![
        Header::new("content-type", "application/json; charset=utf-8"),
        Header::new("date", "Tue, 24 Nov 2026 23:33:24 GMT"),
        Header::new("server", "nginx/1.22.1"),
        Header::new("cache-control", "no-store"),
        Header::new(
            "x-request-id",
            format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        ),
    ];
    let request_body = json_body(i, 1024);
    let response_body = json_body(i + 1, 1024);
    Exchange {
        id: crate::id::new_id(),
        recorded_at_ns: 1_790_000_000_000_000_000 + i as u64 * 1_000_000,
        duration_ns: 1_000_000 + (i as u64 % 50) * 37_000,
        protocol: Protocol::Http11 as i32,
        request: Some(Request {
            method: if i.is_multiple_of(3) { "POST" } else { "GET" }.into(),
            scheme: "http".into(),
            authority: "shop.internal:8080".into(),
            path: format!("/api/orders/{}?expand=items&page={}", i % 1000, i % 7),
            headers,
            body_size: request_body.len() as u64,
            body: request_body.into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers: response_headers,
            body_size: response_body.len() as u64,
            body: response_body.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
