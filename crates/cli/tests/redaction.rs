//! Redaction through the real binary: what `reprise record` stores in
//! front of a real upstream holds no secret anywhere (query, headers, JSON
//! whatever its content type, compressed bodies, forms, cut bodies), the
//! mock still matches calls that carry the secrets, and every report is
//! written 0600 through a rename (a symlink at the target is replaced,
//! never followed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reprise_model::HeaderList;
use support::{Recorder, curl, read_tape, reprise, s, temp_tape, text};

/// Secrets sent through the proxy; none may reach the tape.
const SECRETS: [&str; 9] = [
    "QS-SECRET-1",
    "HDR-SECRET-2",
    "JSON-SECRET-3",
    "GZ-SECRET-4",
    "FORM-SECRET-5",
    "SESS-SECRET-6",
    "MP-SECRET-7",
    "CUT-SECRET-8",
    "QS-SECRET-9",
];

/// An upstream that echoes the request body with its content type and
/// content encoding.
async fn start_echo() -> SocketAddr {
    use axum::routing::any;
    async fn echo(
        headers: axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> axum::response::Response {
        let mut response = axum::response::Response::new(body);
        for name in ["content-type", "content-encoding"] {
            if let Some(value) = headers.get(name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
    let app = axum::Router::new().route("/echo", any(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Sends every kind of secret through `recorder`; checks the client got
/// the real answers.
fn send_secrets(recorder: &Recorder, dir: &Path) {
    // Query (a default name and one asked for) and a default header.
    let (out, _) = curl(&[
        "-H",
        "X-Api-Key: HDR-SECRET-2",
        &recorder.url("/echo?access_token=QS-SECRET-1&q=1&session_id=QS-SECRET-9"),
    ]);
    assert_eq!(out, "");
    // JSON sent as text/plain.
    let json = r#"{"user":"ann","password":"JSON-SECRET-3"}"#;
    let (out, _) = curl(&[
        "-H",
        "content-type: text/plain",
        "--data-binary",
        json,
        &recorder.url("/echo"),
    ]);
    assert_eq!(out, json, "the upstream got the real body");
    // gzip JSON, both ways.
    let gz = dir.join("body.gz");
    std::fs::write(&gz, gzip(br#"{"password":"GZ-SECRET-4","n":1}"#)).unwrap();
    let (out, _) = curl(&[
        "--compressed",
        "-H",
        "content-type: application/json",
        "-H",
        "content-encoding: gzip",
        "--data-binary",
        &format!("@{}", gz.display()),
        &recorder.url("/echo"),
    ]);
    assert_eq!(out, r#"{"password":"GZ-SECRET-4","n":1}"#);
    // An urlencoded form, and a multipart one.
    let form = "user=ann&password=FORM-SECRET-5&session=SESS-SECRET-6";
    let (out, _) = curl(&["--data-binary", form, &recorder.url("/echo")]);
    assert_eq!(out, form);
    let (out, _) = curl(&[
        "-F",
        "user=ann",
        "-F",
        "password=MP-SECRET-7",
        &recorder.url("/echo"),
    ]);
    assert!(out.contains("MP-SECRET-7"));
    // JSON cut at --max-body: it cannot be parsed, so it is not kept.
    let long = format!(
        r#"{{"password":"CUT-SECRET-8","pad":"{}"}}"#,
        "x".repeat(4000)
    );
    let (out, _) = curl(&[
        "-H",
        "content-type: application/json",
        "--data-binary",
        &long,
        &recorder.url("/echo"),
    ]);
    assert_eq!(out, long);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_tape_in_any_form() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "secrets.tape");
    let recorder = Recorder::start(
        &format!("http://{echo}"),
        &tape,
        &[
            "--redact-json",
            "$..password",
            "--redact-query",
            "session_id",
            "--redact-form",
            "session",
            "--max-body",
            "1KiB",
        ],
    );
    send_secrets(&recorder, dir.path());
    recorder.stop_cleanly("-INT");

    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 6);
    for exchange in &exchanges {
        // Each exchange as stored, decoded from its (compressed) block.
        let stored = reprise_model::codec::encode_to_vec(exchange);
        for secret in SECRETS {
            assert!(!holds(&stored, secret), "{secret} stored in {exchange:?}");
        }
        assert!(exchange.flags.as_ref().is_some_and(|f| f.redacted));
    }
    let raw = std::fs::read(&tape).unwrap();
    for secret in SECRETS {
        assert!(!holds(&raw, secret), "{secret} in the tape file");
    }

    let request = |i: usize| exchanges[i].request.as_ref().unwrap();
    assert_eq!(
        request(0).path,
        "/echo?access_token=%5Bredacted%5D&q=1&session_id=%5Bredacted%5D"
    );
    assert_eq!(
        request(0).headers.header_str("x-api-key"),
        Some("[redacted]")
    );
    assert_eq!(
        &request(1).body[..],
        br#"{"user":"ann","password":"[redacted]"}"#
    );
    // The gzip call: stored decoded and flagged, headers as recorded.
    let zipped = &exchanges[2];
    let response = zipped.response.as_ref().unwrap();
    assert!(request(2).body_decoded && response.body_decoded);
    assert_eq!(&response.body[..], br#"{"password":"[redacted]","n":1}"#);
    assert_eq!(
        response.headers.header_str("content-encoding"),
        Some("gzip")
    );
    assert_eq!(
        &request(3).body[..],
        b"user=ann&password=%5Bredacted%5D&session=%5Bredacted%5D"
    );
    assert!(holds(&request(4).body, "name=\"user\""));
    assert!(holds(&request(4).body, "[redacted]"));
    assert!(request(5).body_truncated);
    assert_eq!(&request(5).body[..], b"[redacted]");
    assert_eq!(
        exchanges[5].flags.as_ref().unwrap().redactions,
        ["request.body:unparsed", "response.body:unparsed"]
    );

    // `show` reads the decoded body as stored, not as gzip.
    let id = reprise_model::display_id(&zipped.id);
    let out = reprise(&["show", s(&tape), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains("does not decode"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_matches_calls_whose_secrets_were_redacted() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "mocked.tape");
    let recorder = Recorder::start(
        &format!("http://{echo}"),
        &tape,
        &["--redact-json", "$.password"],
    );
    let (_, _) = curl(&[&recorder.url("/echo?access_token=first&q=1")]);
    let gz = dir.path().join("body.gz");
    std::fs::write(&gz, gzip(br#"{"password":"first","n":1}"#)).unwrap();
    let gz_arg = format!("@{}", gz.display());
    let zipped_call = |url: &str| {
        curl(&[
            "-i",
            "-H",
            "content-type: application/json",
            "-H",
            "content-encoding: gzip",
            "--data-binary",
            &gz_arg,
            url,
        ])
        .0
    };
    zipped_call(&recorder.url("/echo"));
    recorder.stop_cleanly("-INT");
    let stored = read_tape(&tape);
    assert_eq!(
        stored[0].request.as_ref().unwrap().path,
        "/echo?access_token=%5Bredacted%5D&q=1"
    );

    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--redact-json",
            "$.password",
        ],
    );
    // Another token: the same call once redacted.
    let out = curl(&["-i", &mock.url("/echo?access_token=second&q=1")]).0;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The compressed call matches too, and its answer (stored decoded)
    // is served as stored: no Content-Encoding it no longer has.
    std::fs::write(&gz, gzip(br#"{"password":"second","n":1}"#)).unwrap();
    let out = zipped_call(&mock.url("/echo"));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("content-encoding"),
        "{out}"
    );
    assert!(out.ends_with(r#"{"password":"[redacted]","n":1}"#), "{out}");
    // A call that differs in a value not redacted still misses.
    let out = curl(&["-i", &mock.url("/echo?access_token=second&q=2")]).0;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    mock.stop("-INT");
}

/// An upstream answering `/token` with a JSON body and its own
/// Content-Length; counts the calls it answered.
async fn start_token() -> (SocketAddr, Arc<AtomicUsize>) {
    use axum::routing::get;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/token",
        get(move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (
                [("content-type", "application/json")],
                r#"{"token":"a-long-session-token-value","n":1}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_serves_a_redacted_body_with_its_own_length() {
    let (upstream, _) = start_token().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "token.tape");
    let recorder = Recorder::start(
        &format!("http://{upstream}"),
        &tape,
        &["--redact-json", "$.token"],
    );
    let out = curl(&["-i", &recorder.url("/token")]).0;
    assert!(out.contains("a-long-session-token-value"), "{out}");
    recorder.stop_cleanly("-INT");
    let stored = read_tape(&tape);
    let response = stored[0].response.as_ref().unwrap();
    assert_eq!(&response.body[..], br#"{"token":"[redacted]","n":1}"#);
    assert!(response.headers.header_str("content-length").is_some());

    let mock = Recorder::mock(&tape, &["--inbound", "--ignore-authority"]);
    // The recorded length was the secret's: a whole 200 all the same
    // (curl fails on a body shorter than its Content-Length).
    let out = curl(&["-i", &mock.url("/token")]).0;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with(r#"{"token":"[redacted]","n":1}"#), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("content-length: 28\r\n"),
        "{out}"
    );
    mock.stop("-INT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_and_replay_store_their_results_by_the_rules() {
    const SECRET: &str = "a-long-session-token-value";
    let (upstream, calls) = start_token().await;
    let upstream = format!("http://{upstream}");
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "primary.tape");
    let shadow_tape = temp_tape(&dir, "shadow.tape");
    let mirror = Recorder::mirror(
        &upstream,
        &upstream,
        &tape,
        &["--shadow-out", s(&shadow_tape), "--redact-json", "$.token"],
    );
    let out = curl(&[&mirror.url("/token")]).0;
    assert!(out.contains(SECRET), "{out}");
    // The primary's call and the shadow's copy.
    let deadline = Instant::now() + Duration::from_secs(20);
    while calls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the shadow never got its copy");
        std::thread::yield_now();
    }
    let (code, stderr) = mirror.stop("-INT");
    assert_eq!(code, 0, "{stderr}");
    let shadowed = read_tape(&shadow_tape);
    assert_eq!(shadowed.len(), 1, "{stderr}");
    let raw = std::fs::read(&shadow_tape).unwrap();
    assert!(!holds(&raw, SECRET), "the shadow's answer stored in clear");
    assert_eq!(
        &shadowed[0].response.as_ref().unwrap().body[..],
        br#"{"token":"[redacted]","n":1}"#
    );

    // replay --out: the same rules, by replay's own flags.
    let results = temp_tape(&dir, "results.tape");
    let out = reprise(&[
        "replay",
        s(&tape),
        "--target",
        &upstream,
        "--out",
        s(&results),
        "--redact-json",
        "$.token",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let replayed = read_tape(&results);
    assert_eq!(replayed.len(), 1);
    assert!(!holds(&std::fs::read(&results).unwrap(), SECRET));
    assert_eq!(
        &replayed[0].response.as_ref().unwrap().body[..],
        br#"{"token":"[redacted]","n":1}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_and_url_headers_never_reach_the_tape() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "userinfo.tape");
    let recorder = Recorder::start(&format!("http://{echo}"), &tape, &[]);
    let target = recorder
        .url("/echo?q=1")
        .replace("http://", "http://ann:UI-SECRET-1@");
    curl(&[
        "--request-target",
        &target,
        "-H",
        "Referer: https://app.test/cb?access_token=UI-SECRET-2",
        &recorder.url("/"),
    ]);
    recorder.stop_cleanly("-INT");
    let raw = std::fs::read(&tape).unwrap();
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    let stored = reprise_model::codec::encode_to_vec(&exchanges[0]);
    for secret in ["UI-SECRET-1", "UI-SECRET-2"] {
        assert!(!holds(&raw, secret) && !holds(&stored, secret), "{secret}");
    }
    let request = exchanges[0].request.as_ref().unwrap();
    assert!(!request.authority.contains('@'), "{}", request.authority);
    assert_eq!(
        request.headers.header_str("referer"),
        Some("https://app.test/cb?access_token=%5Bredacted%5D")
    );
}

#[test]
fn import_redacts_a_har_before_storing_it() {
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("devtools.har");
    let tape = temp_tape(&dir, "imported.tape");
    let document = serde_json::json!({"log": {
        "version": "1.2",
        "creator": {"name": "test", "version": "1"},
        "entries": [{
            "startedDateTime": "2026-12-07T00:00:00.000Z",
            "time": 12,
            "request": {
                "method": "POST",
                "url": "http://api.test:8080/login?access_token=HAR-SECRET-1&q=1",
                "httpVersion": "HTTP/1.1",
                "headers": [
                    {"name": "Cookie", "value": "sid=HAR-SECRET-2"},
                    {"name": "Authorization", "value": "Bearer HAR-SECRET-3"},
                    {"name": "Content-Type", "value": "application/json"}
                ],
                "queryString": [], "cookies": [],
                "postData": {
                    "mimeType": "application/json",
                    "text": "{\"password\":\"HAR-SECRET-4\"}"
                },
                "headersSize": -1, "bodySize": 27
            },
            "response": {
                "status": 200, "statusText": "OK",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Set-Cookie", "value": "sid=HAR-SECRET-5"}],
                "cookies": [],
                "content": {"size": 2, "mimeType": "application/json", "text": "{}"},
                "redirectURL": "", "headersSize": -1, "bodySize": 2
            },
            "cache": {}, "timings": {"send": 1, "wait": 10, "receive": 1}
        }]
    }});
    std::fs::write(&har, document.to_string()).unwrap();
    let out = reprise(&[
        "import",
        s(&har),
        "--out",
        s(&tape),
        "--redact-json",
        "$.password",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let raw = std::fs::read(&tape).unwrap();
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    let stored = reprise_model::codec::encode_to_vec(&exchanges[0]);
    for i in 1..=5 {
        let secret = format!("HAR-SECRET-{i}");
        assert!(
            !holds(&raw, &secret) && !holds(&stored, &secret),
            "{secret}"
        );
    }
    let request = exchanges[0].request.as_ref().unwrap();
    assert_eq!(request.path, "/login?access_token=%5Bredacted%5D&q=1");
    assert_eq!(request.headers.header_str("cookie"), Some("[redacted]"));
    assert!(exchanges[0].flags.as_ref().is_some_and(|f| f.redacted));
}

/// Records two calls to an echo, for commands that read a tape; returns
/// the tape and the echo's URL.
async fn small_tape(dir: &Path) -> (std::path::PathBuf, String) {
    let echo = format!("http://{}", start_echo().await);
    let tape = dir.join("small.tape");
    let recorder = Recorder::start(&echo, &tape, &[]);
    curl(&[&recorder.url("/echo?a=1")]);
    curl(&["--data-binary", "{\"b\":2}", &recorder.url("/echo")]);
    recorder.stop_cleanly("-INT");
    (tape, echo)
}

fn assert_private_file(path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(meta.is_file(), "{}: a file, not a link", path.display());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{}",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_replace_their_target_0600_and_never_follow_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let (tape, echo) = small_tape(dir.path()).await;
    let replayed = dir.path().join("replayed.tape");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "not yours").unwrap();
    let outputs = [
        "out.har",
        "diff.json",
        "junit.xml",
        "rules.toml",
        "report.html",
    ];
    for name in outputs {
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    let path = |name: &str| dir.path().join(name);
    let run = || {
        let out = reprise(&["export", s(&tape), "--har", s(&path("out.har"))]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let _ = std::fs::remove_file(&replayed);
        let out = reprise(&[
            "replay",
            s(&tape),
            "--target",
            &echo,
            "--out",
            s(&replayed),
            "-q",
            "--json",
            s(&path("replay.json")),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = reprise(&[
            "diff",
            s(&tape),
            s(&replayed),
            "--json",
            s(&path("diff.json")),
            "--junit",
            s(&path("junit.xml")),
            "--suggest-rules",
            s(&path("rules.toml")),
            "--report",
            s(&path("report.html")),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not yours");
    for name in outputs {
        assert_private_file(&path(name));
    }
    let har = std::fs::read_to_string(path("out.har")).unwrap();
    assert!(har.contains("\"entries\""), "{har}");
    // A rerun replaces each report (a new file, whole).
    for name in outputs {
        std::fs::write(path(name), "stale").unwrap();
    }
    run();
    for name in outputs {
        assert_private_file(&path(name));
        assert_ne!(
            std::fs::read_to_string(path(name)).unwrap(),
            "stale",
            "{name}"
        );
    }
    // No temporary file is left beside them.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // A target in a directory that does not exist: one clear error.
    let out = reprise(&["export", s(&tape), "--har", s(&path("no/such/out.har"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no/such/out.har"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_redaction_rules_are_one_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("t.tape");
    let (recorded, _) = small_tape(dir.path()).await;
    let record = [
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
        "--out",
        s(&tape),
    ];
    let mock = ["mock", s(&recorded), "--listen", "127.0.0.1:0"];
    let cases: [(&[&str], &[&str], &str); 5] = [
        (
            &record,
            &["--redact-query", "a=b"],
            "--redact-query \"a=b\": expected a name without & or =",
        ),
        (
            &record,
            &["--redact-form", " "],
            "--redact-form \" \": expected a name without & or =",
        ),
        (
            &record,
            &["--redact-json", "card"],
            "--redact-json \"card\": invalid JSON path",
        ),
        (
            &mock,
            &["--redact-header", "bad name"],
            "--redact-header \"bad name\": not a header name",
        ),
        (
            &mock,
            &["--redact-query", "x&y"],
            "--redact-query \"x&y\": expected a name without & or =",
        ),
    ];
    for (command, extra, expected) in cases {
        let mut args = command.to_vec();
        args.extend(extra);
        let out = reprise(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("reprise: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert!(!tape.exists(), "no tape for a run that never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_stored_decoded_is_replayed_without_its_content_encoding() {
    use reprise_testkit::target::{Behaviour, Target};
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "zipped.tape");
    let recorder = Recorder::start(
        &format!("http://{echo}"),
        &tape,
        &["--redact-json", "$.password"],
    );
    let gz = dir.path().join("body.gz");
    std::fs::write(&gz, gzip(br#"{"password":"GZ-SECRET-4","n":1}"#)).unwrap();
    curl(&[
        "-H",
        "content-type: application/json",
        "-H",
        "content-encoding: gzip",
        "--data-binary",
        &format!("@{}", gz.display()),
        &recorder.url("/echo"),
    ]);
    recorder.stop_cleanly("-INT");
    let target = Target::start(Behaviour::Ok).await;
    let out = reprise(&["replay", s(&tape), "--target", &target.url(), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let received = target.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.body, br#"{"password":"[redacted]","n":1}"#);
    assert!(
        !sent.headers.iter().any(|(n, _)| n == "content-encoding"),
        "{:?}",
        sent.headers
    );
    let length = sent.headers.iter().find(|(n, _)| n == "content-length");
    assert!(
        length.is_none_or(|(_, v)| v == sent.body.len().to_string().as_bytes()),
        "{length:?}"
    );
}
