//! HAR → exchanges → HAR keeps every field HAR and the model share, and
//! no input makes an importer panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use proptest::prelude::*;
use reprise_interop::{ExportOptions, export_har, import_bytes};
use reprise_model::{
    Exchange, Header, MemorySink, MemorySource, Protocol, Request, Response, Timings,
};
use serde_json::{Value, json};

const HAR: &str = r#"{"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [
  {"startedDateTime": "2026-11-24T10:00:00.123Z", "time": 12.5,
   "request": {"method": "POST", "url": "http://shop.test:8080/api/orders?id=3&id=4", "httpVersion": "HTTP/1.1",
     "headers": [{"name": "Content-Type", "value": "application/json"}, {"name": "X-Dup", "value": "1"}, {"name": "X-Dup", "value": "2"}],
     "queryString": [{"name": "id", "value": "3"}, {"name": "id", "value": "4"}], "cookies": [], "headersSize": -1, "bodySize": 13,
     "postData": {"mimeType": "application/json", "text": "{\"qty\": 2}\n\t "}},
   "response": {"status": 201, "statusText": "Created", "httpVersion": "HTTP/1.1",
     "headers": [{"name": "Content-Type", "value": "application/json"}, {"name": "Set-Cookie", "value": "a=1; Path=/"}],
     "content": {"size": 9, "mimeType": "application/json", "text": "{\"id\":7}\n"}, "redirectURL": "", "headersSize": -1, "bodySize": 9, "cookies": []},
   "cache": {}, "timings": {"blocked": 0.25, "dns": -1, "connect": 1.5, "ssl": -1, "send": 0.1, "wait": 10.0, "receive": 0.65},
   "serverIPAddress": "127.0.0.1", "connection": "52100", "comment": "first"},
  {"startedDateTime": "2026-11-24T10:00:01.5Z", "time": 3,
   "request": {"method": "GET", "url": "https://cdn.test/logo.png", "httpVersion": "HTTP/2.0", "headers": [], "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
   "response": {"status": 200, "statusText": "", "httpVersion": "HTTP/2.0", "headers": [{"name": "content-type", "value": "image/png"}],
     "content": {"size": 5, "mimeType": "image/png", "text": "iVBORw0=", "encoding": "base64"}, "redirectURL": "", "headersSize": -1, "bodySize": 5, "cookies": []},
   "cache": {}, "timings": {"send": 0, "wait": 2.5, "receive": 0.5}}
]}}"#;

/// The fields HAR and the model share, as they appear in HAR.
fn shared(entry: &Value) -> Value {
    let request = &entry["request"];
    let response = &entry["response"];
    let started =
        chrono::DateTime::parse_from_rfc3339(entry["startedDateTime"].as_str().unwrap()).unwrap();
    let timings = &entry["timings"];
    let timing = |k: &str| timings.get(k).and_then(Value::as_f64).unwrap_or(-1.0);
    json!({
        "started_ms": started.timestamp_millis(),
        "time": entry["time"].as_f64(),
        "method": request["method"], "url": request["url"], "httpVersion": request["httpVersion"],
        "request_headers": request["headers"],
        "postData": request.get("postData").map(|p| json!({"mimeType": p["mimeType"], "text": p["text"]})),
        "status": response["status"], "statusText": response["statusText"], "response_headers": response["headers"],
        "content": json!({"size": response["content"]["size"], "mimeType": response["content"]["mimeType"],
                          "text": response["content"]["text"], "encoding": response["content"].get("encoding")}),
        "timings": [timing("blocked"), timing("dns"), timing("connect"), timing("ssl"), timing("send"), timing("wait"), timing("receive")],
        "serverIPAddress": entry.get("serverIPAddress"), "connection": entry.get("connection"), "comment": entry.get("comment"),
    })
}

fn round_trip(har: &str) -> (Vec<Value>, Vec<Value>) {
    let mut sink = MemorySink::new();
    import_bytes(har.as_bytes(), "in.har", &mut sink).unwrap();
    let mut out = Vec::new();
    export_har(&mut sink.source(), &mut out, &ExportOptions::default()).unwrap();
    let before: Value = serde_json::from_str(har).unwrap();
    let after: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(after["log"]["version"], "1.2");
    let entries = |v: &Value| {
        v["log"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(shared)
            .collect::<Vec<_>>()
    };
    (entries(&before), entries(&after))
}

#[test]
fn har_to_tape_model_to_har_keeps_shared_fields() {
    let (before, after) = round_trip(HAR);
    assert_eq!(before.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
}

#[test]
fn exported_ids_come_back() {
    let mut sink = MemorySink::new();
    import_bytes(HAR.as_bytes(), "in.har", &mut sink).unwrap();
    let mut exchanges = sink.exchanges();
    exchanges[1].parent_id = exchanges[0].id.clone();
    let mut out = Vec::new();
    export_har(
        &mut MemorySource::new(exchanges.clone()),
        &mut out,
        &ExportOptions { pretty: true },
    )
    .unwrap();
    let mut again = MemorySink::new();
    import_bytes(&out, "out.har", &mut again).unwrap();
    let again = again.exchanges();
    assert_eq!(again[0].id, exchanges[0].id);
    assert_eq!(again[1].parent_id, exchanges[0].id);
    assert!(again[1].is_downstream());
}

fn arb_exchange() -> impl Strategy<Value = Exchange> {
    (
        0u64..4_000_000_000_000_000_000,
        0u64..10_000_000_000,
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        "/[a-z0-9/]{0,20}(\\?[a-z]=[a-z0-9]{1,4}(&[a-z]=[a-z0-9]{0,4}){0,2})?",
        prop::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
        100u32..600,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(at, duration, method, path, headers, request_body, status, response_body)| Exchange {
                id: reprise_model::id::new_id(),
                recorded_at_ns: at / 1_000_000 * 1_000_000,
                duration_ns: duration,
                protocol: Protocol::Http11 as i32,
                request: Some(Request {
                    method: method.into(),
                    scheme: "http".into(),
                    authority: "svc.test".into(),
                    path,
                    headers: headers
                        .into_iter()
                        .map(|(n, v)| Header::new(n, v))
                        .collect(),
                    body_size: request_body.len() as u64,
                    body: request_body.into(),
                    ..Default::default()
                }),
                response: Some(Response {
                    status,
                    body_size: response_body.len() as u64,
                    body: response_body.into(),
                    ..Default::default()
                }),
                timings: Some(Timings {
                    send_ns: Some(0),
                    wait_ns: Some(duration),
                    receive_ns: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
}

proptest! {
    #[test]
    fn importers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), prefix in prop::sample::select(vec![&b""[..], b"{\"log\":", b"1 ab 12\n", b"2 ab 12 5\nHTTP/1.1 "])) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&bytes);
        let mut sink = MemorySink::new();
        let _ = import_bytes(&input, "fuzz", &mut sink);
    }

    #[test]
    fn exchanges_survive_export_and_import(exchanges in prop::collection::vec(arb_exchange(), 1..6)) {
        let mut out = Vec::new();
        export_har(&mut MemorySource::new(exchanges.clone()), &mut out, &ExportOptions::default()).unwrap();
        let mut sink = MemorySink::new();
        let report = import_bytes(&out, "x.har", &mut sink).unwrap();
        prop_assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let back = sink.exchanges();
        prop_assert_eq!(back.len(), exchanges.len());
        for (a, b) in exchanges.iter().zip(&back) {
            prop_assert_eq!(&a.id, &b.id);
            prop_assert_eq!(a.recorded_at_ns, b.recorded_at_ns);
            prop_assert_eq!(a.duration_ns, b.duration_ns);
            prop_assert_eq!(&a.request.as_ref().unwrap().method, &b.request.as_ref().unwrap().method);
            prop_assert_eq!(&a.request.as_ref().unwrap().path, &b.request.as_ref().unwrap().path);
            prop_assert_eq!(&a.request.as_ref().unwrap().headers, &b.request.as_ref().unwrap().headers);
            prop_assert_eq!(&a.request.as_ref().unwrap().body, &b.request.as_ref().unwrap().body);
            prop_assert_eq!(a.status(), b.status());
            prop_assert_eq!(&a.response.as_ref().unwrap().body, &b.response.as_ref().unwrap().body);
            prop_assert_eq!(a.timings, b.timings);
        }
    }
}
