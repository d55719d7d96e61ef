//! Hostile recorded text reaches a terminal escaped: recordings (tapes,
//! HAR files) whose methods, paths, authorities, headers, reasons, bodies
//! and error messages hold ESC, BEL, CR, LF and bidi overrides are shown
//! by `ls`, `show`, `stats`, `diff` and `import` with no raw control
//! character and no forged line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use reprise_model::{Exchange, Header, Protocol, Replay, Request, Response, Role, TransportError};

mod support;
use support::*;

const RECORDED: [u8; 16] = [0xa1; 16];
const FAILED: [u8; 16] = [0xa2; 16];
const DOWNSTREAM: [u8; 16] = [0xa3; 16];
const REPLAYED: [u8; 16] = [0xb1; 16];
const AT: u64 = 1_780_000_000_000_000_000;

/// The JSON body of the recorded call and of its replay: a key that
/// would forge a line (and end the HTML report's script), and values with
/// a bidi override.
fn json_body(value: &str) -> Vec<u8> {
    format!("{{\"{KEY}\":\"{value}\\u202e\"}}").into_bytes()
}

const KEY: &str = "k</script><!--<script>\\u001b[31m\\r\\nFORGED 4";

fn recorded(body: Vec<u8>) -> Exchange {
    Exchange {
        id: RECORDED.to_vec(),
        recorded_at_ns: AT,
        duration_ns: 5_000_000,
        protocol: Protocol::Http11 as i32,
        comment: "c\nFORGED 5".into(),
        request: Some(Request {
            method: "GE\x1bT".into(),
            scheme: "http".into(),
            authority: "evil\u{202e}host:8080".into(),
            path: "/a\x1b[2J\r\nFORGED 1\x07/items?q=\x1b".into(),
            headers: vec![
                Header::new("x-evil\x1b[31m", "v\r\nFORGED 2"),
                Header::new("content-type", "text/plain"),
            ],
            body: b"line1\rFORGED 3\xe2\x80\xae\n".to_vec().into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            reason: "OK\x1b]0;pwned\x07".into(),
            headers: vec![Header::new("content-type", "application/json")],
            body: body.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn recording() -> Vec<Exchange> {
    let failed = Exchange {
        id: FAILED.to_vec(),
        recorded_at_ns: AT + 1_000,
        duration_ns: 1_000_000,
        protocol: Protocol::Http11 as i32,
        request: Some(Request {
            method: "GET".into(),
            path: "/b".into(),
            ..Default::default()
        }),
        error: Some(TransportError {
            message: "boom\r\nFORGED 6\x1b[0m".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let downstream = Exchange {
        id: DOWNSTREAM.to_vec(),
        parent_id: RECORDED.to_vec(),
        role: Role::Downstream as i32,
        recorded_at_ns: AT + 2_000,
        duration_ns: 1_000_000,
        protocol: Protocol::Http11 as i32,
        request: Some(Request {
            method: "POST".into(),
            authority: "db\x1b:1".into(),
            path: "/q\nFORGED 7".into(),
            ..Default::default()
        }),
        response: Some(Response {
            status: 204,
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![recorded(json_body("a")), failed, downstream]
}

/// Fails unless `bytes` holds no control character but the printer's own
/// line ends, no bidi control or line separator, and no line that a
/// recorded value started.
fn assert_clean(what: &str, bytes: &[u8]) {
    let shown = text(bytes);
    for (i, c) in shown.char_indices() {
        let hazard = (c.is_control() && c != '\n')
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}');
        assert!(
            !hazard,
            "{what}: raw {c:?} at byte {i} reaches the terminal:\n{shown}"
        );
    }
    for line in shown.lines() {
        assert!(
            !line.trim_start().starts_with("FORGED"),
            "{what}: a recorded value forged the line {line:?}:\n{shown}"
        );
    }
}

fn run(args: &[&str]) -> (String, String, Option<i32>) {
    let out = reprise(args);
    let what = args.join(" ");
    assert_clean(&format!("{what} (stdout)"), &out.stdout);
    assert_clean(&format!("{what} (stderr)"), &out.stderr);
    (text(&out.stdout), text(&out.stderr), out.status.code())
}

#[test]
fn ls_show_and_stats_escape_recorded_text() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "hostile.tape");
    write_exchanges(&tape, &recording());

    let (out, err, code) = run(&["ls", s(&tape)]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().count(),
        1 + 3,
        "a header and one line per exchange:\n{out}"
    );
    assert!(
        out.contains(r"GE\x1bT")
            && out.contains(r"evil\u{202e}host:8080/a\x1b[2J\r\nFORGED 1\x07/items?q=\x1b"),
        "{out}"
    );
    assert!(out.contains(r"db\x1b:1/q\nFORGED 7"), "{out}");

    // JSON stays JSON, with the recorded text whole, in JSON's escapes.
    let (out, err, code) = run(&["ls", "--json", s(&tape)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(r#""authority":"evil\u202ehost:8080""#),
        "{out}"
    );
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["method"], "GE\x1bT", "{first}");

    let (out, err, code) = run(&["show", s(&tape), "a1a1a1a1"]);
    assert_eq!(code, Some(0), "{err}");
    for shown in [
        r"> GE\x1bT http://evil\u{202e}host:8080/a\x1b[2J\r\nFORGED 1\x07/items?q=\x1b",
        r"> x-evil\x1b[31m: v\r\nFORGED 2",
        "line1\\rFORGED 3\\u{202e}\n",
        r"< 200 OK\x1b]0;pwned\x07",
        r#""k</script><!--<script>\u001b[31m\r\nFORGED 4": "a\u{202e}""#,
        r"comment   c\nFORGED 5",
        r"> POST http://db\x1b:1/q\nFORGED 7",
    ] {
        assert!(out.contains(shown), "show lacks {shown:?}:\n{out}");
    }
    let (out, err, code) = run(&["show", s(&tape), "a2a2a2a2"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r"boom\r\nFORGED 6\x1b[0m"), "{out}");

    let (out, err, code) = run(&["show", "--json", s(&tape), "a1a1a1a1"]);
    assert_eq!(code, Some(0), "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["request"]["authority"], "evil\u{202e}host:8080");
    let (out, err, code) = run(&["stats", "--json", s(&tape)]);
    assert_eq!(code, Some(0), "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["exchanges"], 3);

    let (out, err, code) = run(&["stats", s(&tape)]);
    assert_eq!(code, Some(0), "{err}");
    // Seven summary lines, a blank one, the table's head, three endpoints
    // and the overall row.
    assert_eq!(out.lines().count(), 7 + 1 + 1 + 3 + 1, "{out}");
    assert!(
        out.contains(r"GE\x1bT /a\x1b[2J\r\nFORGED 1\x07/items"),
        "{out}"
    );
}

#[test]
fn diff_escapes_recorded_endpoints_paths_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "hostile.tape");
    let replayed = temp_tape(&dir, "replayed.tape");
    write_exchanges(&tape, &recording());
    let mut replay = recorded(json_body("b"));
    replay.id = REPLAYED.to_vec();
    replay.replay = Some(Replay {
        recorded_id: RECORDED.to_vec(),
        target: "http://127.0.0.1:9".into(),
        ..Default::default()
    });
    write_exchanges(&replayed, &[replay]);

    let html = dir.path().join("report.html");
    let (out, err, code) = run(&["diff", s(&tape), s(&replayed), "--report", s(&html)]);
    assert_eq!(code, Some(1), "the changed value regressed:\n{out}\n{err}");
    assert!(
        out.contains(r"GE\x1bT /a\x1b[2J\r\nFORGED 1\x07/items"),
        "{out}"
    );
    assert!(
        out.contains(r"\r\nFORGED 4"),
        "the field path, escaped:\n{out}"
    );
    assert!(out.contains(r#""a\u{202e}" → "b\u{202e}""#), "{out}");

    // The HTML report: the embedded JSON holds no `<` at all, so recorded
    // text can neither end its <script> element nor open a comment in it,
    // and it is still the report's JSON.
    let page = std::fs::read_to_string(&html).unwrap();
    let start = r#"<script type="application/json" id="report-data">"#;
    let data = &page[page.find(start).unwrap() + start.len()..];
    let data = &data[..data.find("</script>").unwrap()];
    assert!(!data.contains('<'), "{data}");
    let report: serde_json::Value = serde_json::from_str(data).unwrap();
    let pattern = report["endpoints"][0]["paths"][0]["pattern"]
        .as_str()
        .unwrap();
    assert!(
        pattern.contains("k</script><!--<script>\u{1b}"),
        "{pattern}"
    );
}

#[test]
fn import_and_the_imported_recording_escape_har_text() {
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("hostile.har");
    let tape = temp_tape(&dir, "imported.tape");
    let entry = |started: &str| {
        serde_json::json!({
            "startedDateTime": started,
            "time": 12.0,
            "request": {
                "method": "GE\u{1b}T",
                "url": "http://127.0.0.1:8080/a\u{1b}[2J/FORGED\u{202e}/B1",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "x-evil\u{1b}[31m", "value": "v\r\nFORGED 2"}],
                "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0
            },
            "response": {
                "status": 200, "statusText": "OK\u{1b}]0;pwned\u{7}",
                "httpVersion": "HTTP/1.1", "headers": [], "cookies": [],
                "content": {"size": 0, "mimeType": "text/plain"},
                "redirectURL": "", "headersSize": -1, "bodySize": 0
            },
            "cache": {}, "timings": {"send": 1, "wait": 10, "receive": 1}
        })
    };
    let document = serde_json::json!({"log": {
        "version": "1.2",
        "creator": {"name": "test", "version": "1"},
        "entries": [
            entry("2026-12-07T00:00:00.000Z"),
            entry("\u{1b}[2J\r\nFORGED 8"),
        ]
    }});
    std::fs::write(&har, document.to_string()).unwrap();

    let (out, err, code) = run(&["import", s(&har), "--out", s(&tape)]);
    assert_eq!(code, Some(3), "one entry skipped: {out}\n{err}");
    assert_eq!(err.lines().count(), 1, "one skipped entry, one line: {err}");
    assert!(
        err.contains("startedDateTime") && err.contains("FORGED 8"),
        "{err}"
    );

    let (out, err, code) = run(&["ls", s(&tape)]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (out, err, code) = run(&["stats", s(&tape)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(r"GE\x1bT /a\x1b[2J/FORGED\u{202e}/{id}"),
        "{out}"
    );
}

#[test]
fn mock_lines_escape_recorded_and_received_calls() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "hostile.tape");
    let mut hostile = recorded(json_body("a"));
    hostile.request.as_mut().unwrap().method = "GET".into();
    write_exchanges(&tape, &[hostile]);
    let mock = Recorder::mock(&tape, &["--inbound", "--log"]);

    // A Host header may carry any byte from 0x80 up: here a bidi override
    // (reprise reads it as no authority; it must not reach stderr raw).
    let mut stream = std::net::TcpStream::connect(mock.addr).unwrap();
    stream
        .write_all(b"GET /b HTTP/1.1\r\nHost: evil\xe2\x80\xaehost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(
        text(&answer).starts_with("HTTP/1.1 502"),
        "{}",
        text(&answer)
    );

    let (code, stderr) = mock.stop("-INT");
    assert_eq!(code, 1, "a missed call: {stderr}");
    assert_clean("mock (stderr)", stderr.as_bytes());
    assert!(stderr.contains("mock: GET "), "the --log line: {stderr}");
    assert!(
        stderr.contains(r"/a\x1b[2J\r\nFORGED 1\x07/items?q=\x1b"),
        "the nearest recorded call, escaped: {stderr}"
    );
}
