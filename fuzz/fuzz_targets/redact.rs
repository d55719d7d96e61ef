//! Any request and response to the redaction every capture path shares
//! (headers, query, authority, JSON, forms, multipart, compressed bodies
//! decoded first): it redacts or marks the body, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprise_model::redact::Redactor;
use reprise_model::{Exchange, Header, Request, Response};

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "multipart/form-data",
    "text/plain",
    "application/octet-stream",
];
const ENCODINGS: [&str; 6] = ["", "gzip", "deflate", "br", "zstd", "gzip, br"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // The first byte picks a content type and a coding; the rest is a
    // path and query up to the first NUL, then the body.
    let content_type = CONTENT_TYPES[usize::from(selector % 6)];
    let encoding = ENCODINGS[usize::from(selector / 6 % 6)];
    let truncated = selector >= 128;
    let (target, body) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let mut headers = vec![
        Header::new("content-type", content_type),
        Header::new("authorization", "Bearer secret"),
        Header::new("location", String::from_utf8_lossy(target).into_owned()),
    ];
    if !encoding.is_empty() {
        headers.push(Header::new("content-encoding", encoding));
    }
    let mut exchange = Exchange {
        request: Some(Request {
            method: "POST".into(),
            scheme: "http".into(),
            authority: String::from_utf8_lossy(target).into_owned(),
            path: format!("/{}", String::from_utf8_lossy(target)),
            headers: headers.clone(),
            body_size: body.len() as u64 + u64::from(truncated),
            body_truncated: truncated,
            body: body.to_vec().into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers,
            body_size: body.len() as u64,
            body: body.to_vec().into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let Ok(redactor) = Redactor::new()
        .form("password")
        .query("code")
        .json_path("$..password")
    else {
        return;
    };
    redactor.apply(&mut exchange);
});
