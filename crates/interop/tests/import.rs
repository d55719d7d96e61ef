//! Importing real recordings made by other tools.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::PathBuf;

use reprise_interop::{Format, ImportError, import_bytes, import_path};
use reprise_model::{Exchange, HeaderList, MemorySink, Protocol};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn import(path: &std::path::Path) -> (reprise_interop::ImportReport, Vec<Exchange>) {
    let mut sink = MemorySink::new();
    let report = import_path(path, &mut sink).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (report, sink.exchanges())
}

#[test]
fn real_goreplay_capture() {
    let path = root().join("tests/fixtures/goreplay/datadog-ecommerce-requests_0.gor");
    let (report, exchanges) = import(&path);
    assert_eq!(report.format, Format::Gor);
    assert_eq!(report.exchanges, 101);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(exchanges.len(), 101);
    assert!(
        exchanges
            .iter()
            .all(|e| e.request.is_some() && e.response.is_none())
    );
    let methods = |m: &str| {
        exchanges
            .iter()
            .filter(|e| e.request.as_ref().unwrap().method == m)
            .count()
    };
    assert_eq!((methods("GET"), methods("POST")), (99, 2));

    let first = &exchanges[0];
    assert_eq!(
        reprise_model::display_id(&first.id),
        "b33c9c1a2bae6636d5389a1a47035170c58d367e"
    );
    assert_eq!(first.recorded_at_ns, 1_568_139_746_437_296_000);
    let request = first.request.as_ref().unwrap();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/")
    );
    assert_eq!(request.authority, "localhost:3000");
    assert_eq!(first.protocol(), Protocol::Http11);
    let names: Vec<&str> = request
        .headers
        .iter()
        .take(4)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Host",
            "Connection",
            "Cache-Control",
            "Upgrade-Insecure-Requests"
        ]
    );

    for post in exchanges
        .iter()
        .filter(|e| e.request.as_ref().unwrap().method == "POST")
    {
        let request = post.request.as_ref().unwrap();
        let declared: usize = request
            .headers
            .header_str("content-length")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(request.body.len(), declared, "POST {} body", request.path);
        assert!(!request.body_truncated);
    }
}

fn har_examples() -> Vec<PathBuf> {
    let dir = root().join("target/har-examples/har");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run scripts/fetch-har-examples.sh (scripts/test.sh does)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "har"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 20, "har-examples 5 ships 20 documents");
    files
}

fn one(name: &str) -> Exchange {
    let path = root()
        .join("target/har-examples/har")
        .join(format!("{name}.har"));
    let (report, mut exchanges) = import(&path);
    assert!(report.skipped.is_empty(), "{name}: {:?}", report.skipped);
    assert_eq!(exchanges.len(), 1, "{name}");
    exchanges.remove(0)
}

#[test]
fn every_har_example_imports() {
    for path in har_examples() {
        let (report, exchanges) = import(&path);
        assert_eq!(report.format, Format::Har);
        assert!(
            report.skipped.is_empty(),
            "{}: {:?}",
            path.display(),
            report.skipped
        );
        assert!(!exchanges.is_empty(), "{}", path.display());
        for exchange in &exchanges {
            let request = exchange.request.as_ref().unwrap();
            assert!(
                !request.method.is_empty() && request.path.starts_with('/'),
                "{}",
                path.display()
            );
            assert_eq!(exchange.source.as_ref().unwrap().recorder, "import:har");
        }
    }
}

#[test]
fn har_example_fields() {
    let form = one("application-form-encoded");
    assert_eq!(
        &form.request.as_ref().unwrap().body[..],
        b"foo=bar&hello=world"
    );

    let multipart = one("multipart-data");
    let body = String::from_utf8(multipart.request.as_ref().unwrap().body.to_vec()).unwrap();
    assert!(
        body.contains("Content-Disposition: form-data; name=\"foo\"; filename=\"hello.txt\""),
        "{body}"
    );
    assert!(
        body.contains("Content-Type: text/plain\r\n\r\nHello World\r\n"),
        "{body}"
    );

    let png = one("image-png");
    let response = png.response.as_ref().unwrap();
    assert_eq!(response.status, 200);

    let cookies = one("cookies");
    let cookie = cookies
        .request
        .as_ref()
        .unwrap()
        .headers
        .header_str("cookie");
    assert!(cookie.is_some_and(|c| c.contains("foo=bar")), "{cookie:?}");

    let query = one("query");
    let path = &query.request.as_ref().unwrap().path;
    assert!(
        path.contains("foo=bar") && path.contains("foo=baz"),
        "repeated keys kept: {path}"
    );

    let https = one("https");
    assert_eq!(https.request.as_ref().unwrap().scheme, "https");

    let full = one("full");
    let request = full.request.as_ref().unwrap();
    assert_eq!(request.method, "POST");
    assert!(request.path.contains('?'), "{}", request.path);
}

#[test]
fn ids_are_deterministic() {
    let path = root().join("target/har-examples/har/full.har");
    let (_, a) = import(&path);
    let (_, b) = import(&path);
    assert_eq!(a[0].id, b[0].id);
    assert_eq!(a[0].id.len(), 16);
}

const BROWSER_HAR: &str = r#"{"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
  "entries": [
    {"startedDateTime": "2026-11-24T10:00:00.123456Z", "time": 12.5,
     "request": {"method": "GET", "url": "https://api.example.test:8443/v1/items?id=3#frag", "httpVersion": "h2",
                 "headers": [{"name": ":authority", "value": "api.example.test:8443"}, {"name": "accept", "value": "*/*"}],
                 "queryString": [{"name": "id", "value": "3"}], "cookies": [], "headersSize": -1, "bodySize": 0},
     "response": {"status": 200, "statusText": "", "httpVersion": "h2",
                  "headers": [{"name": "content-type", "value": "image/png"}, {"name": "content-encoding", "value": "br"}],
                  "content": {"size": 4, "mimeType": "image/png", "text": "iVBORw==", "encoding": "base64"},
                  "redirectURL": "", "headersSize": -1, "bodySize": 3},
     "timings": {"blocked": -1, "dns": -1, "connect": -1, "ssl": -1, "send": 0.1, "wait": 11.9, "receive": 0.5},
     "serverIPAddress": "10.0.0.5", "connection": "4711", "_initiator": {"type": "script"}},
    {"startedDateTime": "2026-11-24T10:00:01Z", "time": 3,
     "request": {"method": "GET", "url": "https://blocked.test/", "httpVersion": "", "headers": []},
     "response": {"status": 0, "statusText": "", "headers": [], "content": {"size": 0}, "_error": "net::ERR_BLOCKED_BY_CLIENT"}}
  ]}}"#;

#[test]
fn browser_har_with_binary_h2_and_failures() {
    let mut sink = MemorySink::new();
    let report = import_bytes(BROWSER_HAR.as_bytes(), "chrome.har", &mut sink).unwrap();
    assert_eq!(report.exchanges, 2);
    let got = sink.exchanges();
    let first = &got[0];
    assert_eq!(first.recorded_at_ns, 1_795_514_400_123_456_000);
    assert_eq!(first.duration_ns, 12_500_000);
    assert_eq!(first.protocol(), Protocol::Http2);
    let request = first.request.as_ref().unwrap();
    assert_eq!(
        (request.scheme.as_str(), request.authority.as_str()),
        ("https", "api.example.test:8443")
    );
    assert_eq!(
        request.path, "/v1/items?id=3",
        "fragment dropped, query kept"
    );
    assert_eq!(request.headers.len(), 1, "pseudo-headers are not headers");
    let response = first.response.as_ref().unwrap();
    assert_eq!(&response.body[..], b"\x89PNG");
    assert!(response.body_decoded, "HAR content is stored decoded");
    let timings = first.timings.unwrap();
    assert_eq!((timings.dns_ns, timings.wait_ns), (None, Some(11_900_000)));
    assert_eq!(first.source.as_ref().unwrap().server_addr, "10.0.0.5");
    let failed = &got[1];
    assert!(failed.response.is_none());
    assert_eq!(
        failed.error.as_ref().unwrap().message,
        "net::ERR_BLOCKED_BY_CLIENT"
    );
}

fn error_of(content: &[u8]) -> String {
    let mut sink = MemorySink::new();
    match import_bytes(content, "x.har", &mut sink) {
        Err(e) => e.to_string(),
        Ok(report) => format!("skipped: {}", report.skipped.join(" | ")),
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    assert_eq!(error_of(b""), "x.har: empty file, not a recording");
    assert_eq!(
        error_of(b"\x00\x01garbage"),
        "x.har: not a recording reprise can import (expected a HAR 1.2 JSON document or a GoReplay .gor file)"
    );
    assert!(
        error_of(b"{\"log\": {\"entries\": [")
            .starts_with("x.har: invalid HAR at (document): not valid JSON: EOF while parsing")
    );
    assert!(
        error_of(b"{\"log\": {\"version\": \"1.2\"}}")
            .starts_with("x.har: invalid HAR at log: missing field `entries`")
    );
    assert_eq!(
        error_of(br#"{"log": {"entries": [{"startedDateTime": "2026-11-24T10:00:00Z", "time": 1, "request": {"method": "GET"}, "response": {"status": 200}}]}}"#),
        "skipped: log.entries[0].request: missing field `url`"
    );
    assert_eq!(
        error_of(br#"{"log": {"entries": [{"startedDateTime": "2026-11-24T10:00:00Z", "time": 1, "request": {"method": "GET", "url": "http://a/"}, "response": {"status": 200, "content": {"text": "!!!", "encoding": "base64"}}}]}}"#),
        "skipped: log.entries[0].response.content.text: invalid base64: Invalid symbol 33, offset 0."
    );
    assert_eq!(
        error_of(br#"{"log": {"entries": [{"startedDateTime": "yesterday", "time": 1, "request": {"method": "GET", "url": "http://a/"}, "response": {"status": 200}}]}}"#),
        "skipped: log.entries[0].startedDateTime: not an ISO 8601 date-time: \"yesterday\""
    );
    assert_eq!(
        error_of(br#"{"log": {"entries": [{"startedDateTime": "2026-11-24T10:00:00Z", "request": {"method": "GET", "url": "/relative"}, "response": {"status": 200}}]}}"#),
        "skipped: log.entries[0].request.url: not an absolute URL: \"/relative\""
    );
}

#[test]
fn missing_paths_and_directories() {
    let mut sink = MemorySink::new();
    let dir = tempfile::tempdir().unwrap();
    let err = import_path(dir.path(), &mut sink).unwrap_err();
    assert!(matches!(err, ImportError::IsDirectory { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}: is a directory, not a recording", dir.path().display())
    );
    let missing = dir.path().join("nope.har");
    let err = import_path(&missing, &mut sink).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn gor_cut_mid_payload_keeps_what_is_whole() {
    let path = root().join("tests/fixtures/goreplay/datadog-ecommerce-requests_0.gor");
    let bytes = std::fs::read(path).unwrap();
    let cut = &bytes[..bytes.len() / 2];
    let mut sink = MemorySink::new();
    let report = import_bytes(cut, "cut.gor", &mut sink).unwrap();
    assert!(
        report.exchanges > 40 && report.exchanges < 101,
        "{}",
        report.exchanges
    );
    // The last payload is cut: either its head is incomplete (skipped and
    // named) or its body is (kept, flagged truncated).
    let last = sink.exchanges().pop().unwrap();
    assert!(
        !report.skipped.is_empty()
            || last.request.as_ref().unwrap().body_truncated
            || cut.ends_with(b"\r\n\r\n")
    );
}

#[test]
fn mitmproxy_sample_recording() {
    let (report, exchanges) = import(&root().join("samples/httpbin.har"));
    assert_eq!(report.exchanges, 46);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let status = |code: u32| exchanges.iter().filter(|e| e.status() == code).count();
    assert_eq!(
        (status(200), status(302), status(404), status(500)),
        (38, 3, 1, 1)
    );
    let png = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path == "/image/png")
        .unwrap();
    assert!(
        png.response.as_ref().unwrap().body.starts_with(b"\x89PNG"),
        "base64 content decoded"
    );
    let gzip = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path == "/gzip")
        .unwrap();
    let response = gzip.response.as_ref().unwrap();
    assert!(
        response.body_decoded && response.body.starts_with(b"{"),
        "HAR keeps the decoded body"
    );
    let form = exchanges
        .iter()
        .find(|e| {
            e.request
                .as_ref()
                .unwrap()
                .headers
                .header_str("content-type")
                == Some("application/x-www-form-urlencoded")
        })
        .unwrap();
    assert_eq!(
        &form.request.as_ref().unwrap().body[..],
        b"name=Ana+Lima&city=S%C3%A3o+Paulo"
    );
    assert!(exchanges.iter().all(|e| {
        e.timings
            .is_some_and(|t| t.dns_ns.is_none() && t.wait_ns.is_some())
    }));
}

/// Length of GoReplay's separator.
const SEPARATOR_LEN: usize = "\n🐵🙈🙉\n".len();

/// `.gor` payloads joined by GoReplay's separator.
fn gor(payloads: &[&str]) -> Vec<u8> {
    payloads.join("\n🐵🙈🙉\n").into_bytes()
}

fn import_gor(file: &[u8]) -> (reprise_interop::ImportReport, Vec<Exchange>) {
    let mut sink = MemorySink::new();
    let report = import_bytes(file, "t.gor", &mut sink).unwrap();
    (report, sink.exchanges())
}

/// A HAR document with one GET entry to `url`.
fn har_with_url(url: &str) -> String {
    format!(
        r#"{{"log": {{"version": "1.2", "creator": {{"name": "t", "version": "1"}}, "entries": [
        {{"startedDateTime": "2024-01-01T00:00:00Z", "time": 1,
          "request": {{"method": "GET", "url": "{url}", "httpVersion": "HTTP/1.1",
                      "headers": [], "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0}},
          "response": {{"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                       "headers": [], "cookies": [], "content": {{"size": 0, "mimeType": "text/plain"}},
                       "redirectURL": "", "headersSize": -1, "bodySize": 0}},
          "cache": {{}}, "timings": {{"send": 0, "wait": 1, "receive": 0}}}}]}}}}"#
    )
}

#[test]
fn har_with_a_byte_order_mark_imports() {
    let mut file = b"\xEF\xBB\xBF".to_vec();
    file.extend_from_slice(har_with_url("http://shop.example/cart").as_bytes());
    let mut sink = MemorySink::new();
    let report = import_bytes(&file, "bom.har", &mut sink).unwrap();
    assert_eq!((report.format, report.exchanges), (Format::Har, 1));
    assert_eq!(sink.exchanges()[0].request.as_ref().unwrap().path, "/cart");
}

#[test]
fn urls_reprise_cannot_call_are_skipped_with_the_reason() {
    for (url, why) in [
        ("http://[::1", "invalid host \"[::1\""),
        ("http://shop.example:99999999/", "port \"99999999\""),
        (
            "ftp://files.example/x",
            "scheme \"ftp\" is not http, https, ws or wss",
        ),
    ] {
        let mut sink = MemorySink::new();
        let report = import_bytes(har_with_url(url).as_bytes(), "t.har", &mut sink).unwrap();
        assert_eq!(report.exchanges, 0, "{url}");
        assert_eq!(report.skipped.len(), 1, "{url}");
        assert!(
            report.skipped[0].starts_with("log.entries[0].request.url: ")
                && report.skipped[0].contains(why),
            "{url}: {}",
            report.skipped[0]
        );
    }
    // The same rules for GoReplay: a proxy request's target, a Host field.
    let (report, exchanges) = import_gor(&gor(&[
        "1 aa01 1000000000\nGET ftp://files.example/x HTTP/1.1\r\n\r\n",
        "1 bb02 1000000000\nGET / HTTP/1.1\r\nHost: shop:99999999\r\n\r\n",
        "1 cc03 1000000000\nGET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "1 dd04 1000000000\nGET http://[::1]:8080/a HTTP/1.1\r\n\r\n",
    ]));
    assert_eq!(exchanges.len(), 1);
    assert_eq!(
        exchanges[0].request.as_ref().unwrap().authority,
        "[::1]:8080"
    );
    assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    assert!(report.skipped[0].contains("scheme \"ftp\""));
    assert!(report.skipped[1].contains("Host field: port \"99999999\""));
    assert!(report.skipped[2].contains("Host field: invalid host \"[::1\""));
}

#[test]
fn damaged_gor_separators_are_skipped_not_run_together() {
    let first = "1 aa01 1000000000\nGET /a HTTP/1.1\r\nHost: shop\r\n\r\n";
    let file = [
        first,
        // A separator whose line breaks became CRLF: two payloads in one.
        "\r\n🐵🙈🙉\r\n1 bb02 1000000000\nGET /b HTTP/1.1\r\nHost: shop\r\n\r\n",
        "\n🐵🙈🙉\n1 cc03 1000000000\nPOST /c HTTP/1.1\r\nHost: shop\r\nContent-Length: 12\r\n\r\n🐵🙈🙉",
    ]
    .concat();
    let (report, exchanges) = import_gor(file.as_bytes());
    let paths: Vec<&str> = exchanges
        .iter()
        .map(|e| e.request.as_ref().unwrap().path.as_str())
        .collect();
    // Marks inside a body, not followed by a payload, are data.
    assert_eq!(paths, ["/c"]);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    let expected = format!(
        "payload 1 at byte 0: a damaged separator at byte {} runs two payloads together",
        first.len() + 2
    );
    assert!(
        report.skipped[0].starts_with(&expected),
        "{}",
        report.skipped[0]
    );
}

#[test]
fn invalid_http_in_gor_payloads_is_skipped_with_the_reason() {
    let (report, exchanges) = import_gor(&gor(&[
        // An invalid chunked body.
        "1 aa01 1000000000\nPOST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        // A chunk that does not end where its size says.
        "1 bb02 1000000000\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        "1 cc03 1000000000\nPOST /c HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
        "1 dd04 1000000000\nPOST /d HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "1 ee05 1000000000\nPOST /e HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\nhello",
        // Bytes after a message whose length is known.
        "1 ff06 1000000000\nPOST /f HTTP/1.1\r\nContent-Length: 2\r\n\r\nhello",
        // Valid, and read as the proxy would: chunked last wins over a length.
        "1 a107 1000000000\nPOST /g HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "1 a208 1000000000\nPOST /h HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "1 a309 1000000000\nPOST /i HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        // A capture cut inside a chunk keeps what arrived, marked cut.
        "1 a40a 1000000000\nPOST /j HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ]));
    let bodies: Vec<(&str, &[u8], bool)> = exchanges
        .iter()
        .map(|e| {
            let r = e.request.as_ref().unwrap();
            (r.path.as_str(), &r.body[..], r.body_truncated)
        })
        .collect();
    assert_eq!(
        bodies,
        [
            ("/g", &b"hello"[..], false),
            ("/h", b"hello", false),
            ("/i", b"hello", false),
            ("/j", b"hel", true),
        ]
    );
    let reasons: Vec<&str> = report
        .skipped
        .iter()
        .map(|s| s.split_once(": ").unwrap().1)
        .collect();
    assert_eq!(
        reasons,
        [
            "invalid HTTP request body: invalid chunk size line",
            "invalid HTTP request body: a chunk does not end with CRLF",
            "malformed HTTP request: invalid content-length",
            "malformed HTTP request: conflicting content-length values",
            "malformed HTTP request: a transfer-encoding whose last coding is not chunked",
            "3 bytes follow the end of the HTTP request",
        ]
    );
}

#[test]
fn gor_payloads_split_the_same_however_the_reads_fall() {
    let file = gor(&[
        "1 aa01 1000000000\nPOST /a HTTP/1.1\r\nContent-Length: 300\r\n\r\n",
        "2 aa01 1000000001\nHTTP/1.1 200 OK\r\n\r\nok",
        "1 bb02 1000000002\nGET /b HTTP/1.1\r\n\r\n",
    ]);
    let mut file = file;
    let at = file.windows(3).position(|w| w == b"300").unwrap() + 3 + 4 + 1;
    file.splice(at - 1..at - 1, vec![b'x'; 300]);
    // Reads of these sizes cut the separators at every place.
    for capacity in (64..64 + SEPARATOR_LEN).chain([1 << 16]) {
        let mut sink = MemorySink::new();
        let reader = std::io::BufReader::with_capacity(capacity, &file[..]);
        let report = reprise_interop::import_reader(reader, "t.gor", &mut sink).unwrap();
        assert!(
            report.skipped.is_empty(),
            "{capacity}: {:?}",
            report.skipped
        );
        let exchanges = sink.exchanges();
        assert_eq!(exchanges.len(), 2, "{capacity}");
        assert_eq!(exchanges[0].request.as_ref().unwrap().body.len(), 300);
        assert_eq!(&exchanges[0].response.as_ref().unwrap().body[..], b"ok");
    }
}
