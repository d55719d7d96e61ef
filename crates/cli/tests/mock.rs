//! `reprise mock` end to end: recordings made by the real binary (`reprise
//! record` in front of real services on 127.0.0.1) or written with the
//! tape writer, served by the real binary to curl and tonic clients, and
//! stopped by a real signal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reprise_model::{Exchange, Header, Protocol, Request, Response, Role, display_id};
use reprise_testkit::echo::Count;
use reprise_testkit::{echo_client, start_echo};

mod support;
use support::*;

/// A JSON service whose answers change on every call: `GET /price?sku=S`
/// says `{"sku":S,"call":N}`, N counting all calls; `POST /order` echoes
/// the order's items.
async fn start_shop() -> SocketAddr {
    use axum::routing::{get, post};
    let calls = Arc::new(AtomicU64::new(0));
    let price = move |axum::extract::Query(q): axum::extract::Query<
        std::collections::HashMap<String, String>,
    >| {
        let calls = Arc::clone(&calls);
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            axum::Json(serde_json::json!({"sku": q.get("sku"), "call": n}))
        }
    };
    let order = |axum::Json(order): axum::Json<serde_json::Value>| async move {
        (
            [("x-order", "taken")],
            axum::Json(serde_json::json!({"ok": true, "items": order["items"]})),
        )
    };
    let app = axum::Router::new()
        .route("/price", get(price))
        .route("/order", post(order));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `curl -i` of `url` with `extra` flags: (status, head, body).
fn call(url: &str, extra: &[&str]) -> (u16, String, String) {
    let mut args = vec!["-i"];
    args.extend_from_slice(extra);
    args.push(url);
    let (out, _) = curl(&args);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn stop_expecting(mock: Recorder, code: i32) -> String {
    let (got, stderr) = mock.stop("-INT");
    assert_eq!(got, code, "reprise mock exited {got}: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_a_json_service_stands_in_for_it() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "shop.tape");
    let recorder = Recorder::start(&format!("http://{shop}"), &tape, &[]);
    let order = r#"{"items":[1,2],"note":"gift"}"#;
    let mut recorded = Vec::new();
    for path in ["/price?sku=a", "/price?sku=a", "/price?sku=b"] {
        recorded.push(call(&recorder.url(path), &[]).2);
    }
    let (_, _, ordered) = call(
        &recorder.url("/order"),
        &["-H", "content-type: application/json", "--data", order],
    );
    recorder.stop_cleanly("-INT");
    assert_eq!(recorded[0], r#"{"sku":"a","call":1}"#);

    // The service is gone from the picture: the mock answers as it did,
    // identical calls in recorded order, over HTTP/1.1 and h2c.
    let mock = Recorder::mock(&tape, &["--inbound", "--ignore-authority"]);
    let url = |path: &str| format!("http://{}{path}", mock.addr);
    let (status, head, body) = call(&url("/price?sku=a"), &[]);
    assert_eq!((status, body.as_str()), (200, recorded[0].as_str()));
    assert!(head.contains("content-type: application/json"), "{head}");
    // A traced caller's trace id does not scope inbound calls: one pool.
    let traced = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _, body) = call(
        &url("/price?sku=a"),
        &["--http2-prior-knowledge", "-H", traced],
    );
    assert_eq!((status, body.as_str()), (200, recorded[1].as_str()));
    assert_eq!(call(&url("/price?sku=b"), &[]).2, recorded[2]);
    // JSON bodies match by content: keys in another order are the same call.
    let (status, head, body) = call(
        &url("/order"),
        &[
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"note":"gift","items":[1,2]}"#,
        ],
    );
    assert_eq!((status, body.as_str()), (200, ordered.as_str()));
    assert!(head.contains("x-order: taken"), "{head}");

    // Misses are loud: a 502 that says why and names the nearest call.
    let (status, head, body) = call(&url("/price?sku=a"), &[]);
    assert_eq!(status, 502);
    assert!(head.contains("x-reprise-mock-miss: 1"), "{head}");
    assert!(
        body.contains("recorded 2 time(s), and every recorded response has been served"),
        "{body}"
    );
    assert!(body.contains("already used by call"), "{body}");
    let (status, _, body) = call(&url("/price?sku=c"), &[]);
    assert_eq!(status, 502);
    assert!(
        body.contains("none of the 4 recorded calls in scope matches"),
        "{body}"
    );
    assert!(body.contains("differs in query"), "{body}");
    let stderr = stop_expecting(mock, 1);
    assert!(stderr.contains("mock served 4 calls"), "{stderr}");
    assert!(stderr.contains("missed 2"), "{stderr}");
    assert!(stderr.contains("GET /price?sku=c"), "{stderr}");

    // Other policies when identical calls outnumber the recorded ones.
    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--exhausted",
            "repeat-last",
        ],
    );
    let url = |path: &str| format!("http://{}{path}", mock.addr);
    let answers: Vec<String> = (0..3).map(|_| call(&url("/price?sku=a"), &[]).2).collect();
    assert_eq!(answers, [&*recorded[0], &*recorded[1], &*recorded[1]]);
    let stderr = stop_expecting(mock, 0);
    assert!(
        stderr.contains("served 3 calls") && stderr.contains("missed 0"),
        "{stderr}"
    );

    // Matched as the recorded authority: the proxy's address, which the
    // calls named.
    let mock = Recorder::mock(&tape, &["--inbound"]);
    let (status, _, body) = call(&format!("http://{}/price?sku=b", mock.addr), &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("differs in authority"), "{body}");
    stop_expecting(mock, 1);
    let mock = Recorder::mock(
        &tape,
        &["--inbound", "--authority", &recorder_authority(&tape)],
    );
    let (status, _, body) = call(&format!("http://{}/price?sku=b", mock.addr), &[]);
    assert_eq!((status, body.as_str()), (200, recorded[2].as_str()));
    stop_expecting(mock, 0);
}

/// The authority the recorded calls named.
fn recorder_authority(tape: &Path) -> String {
    read_tape(tape)[0]
        .request
        .as_ref()
        .unwrap()
        .authority
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_a_grpc_service_stands_in_for_it() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "echo.tape");
    let recorder = Recorder::start(&format!("http://{echo}"), &tape, &[]);
    let mut client = echo_client(recorder.addr).await;
    let want = client.unary(note("hello", 7)).await.unwrap();
    let failed = client.unary(note("fail", 0)).await.unwrap_err();
    streamed_notes(&mut client, Count { n: 3, gap_ms: 30 }).await;
    drop(client);
    recorder.stop_cleanly("-INT");

    // gRPC calls never fall through (without --fallthrough-writes, as
    // mock_out.rs shows), even to the live service.
    let echo_url = format!("http://{echo}");
    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--fallthrough",
            &echo_url,
        ],
    );
    let mut client = echo_client(mock.addr).await;
    let got = client.unary(note("hello", 7)).await.unwrap();
    assert_eq!(got.get_ref(), want.get_ref());
    assert_eq!(got.metadata().get("x-echo").unwrap(), "unary");
    let again = client.unary(note("fail", 0)).await.unwrap_err();
    assert_eq!(
        (again.code(), again.message()),
        (failed.code(), failed.message())
    );
    let notes = streamed_notes(&mut client, Count { n: 3, gap_ms: 30 }).await;
    assert_eq!(notes, ["note 0", "note 1", "note 2"]);
    // A call never recorded: UNAVAILABLE, with the reason.
    let missed = client.unary(note("other", 1)).await.unwrap_err();
    assert_eq!(missed.code(), tonic::Code::Unavailable);
    assert!(missed.message().contains("reprise mock miss"), "{missed:?}");
    assert!(missed.message().contains("differs in body"), "{missed:?}");
    drop(client);
    let stderr = stop_expecting(mock, 1);
    assert!(
        stderr.contains("served 3 calls") && stderr.contains("missed 1"),
        "{stderr}"
    );
}

/// An exchange `id` (16 bytes of `n`) answering `GET /price?sku=S` with
/// `answer`; a downstream call of `parent` when given.
fn price_call(n: u8, parent: Option<u8>, sku: &str, answer: &str, at: u64) -> Exchange {
    Exchange {
        id: vec![n; 16],
        parent_id: parent.map(|p| vec![p; 16]).unwrap_or_default(),
        role: if parent.is_some() {
            Role::Downstream
        } else {
            Role::Inbound
        } as i32,
        protocol: Protocol::Http11 as i32,
        recorded_at_ns: 1_700_000_000_000_000_000 + at,
        request: Some(Request {
            method: "GET".into(),
            scheme: "http".into(),
            authority: "prices:8080".into(),
            path: format!("/price?sku={sku}"),
            headers: vec![Header::new("host", "prices:8080")],
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers: vec![Header::new("content-type", "text/plain")],
            body: Bytes::from(answer.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write_tape(path: &Path, exchanges: Vec<Exchange>) {
    use reprise_model::Sink;
    let mut writer =
        reprise_tape::TapeWriter::create(path, reprise_tape::WriterOptions::default()).unwrap();
    for exchange in exchanges {
        writer.append(exchange).unwrap();
    }
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_calls_are_served_in_the_scope_of_the_replayed_call() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    // Two inbound calls, 1 and 2; under 1 the price was asked twice, under
    // 2 once, and answered differently each time.
    write_tape(
        &tape,
        vec![
            price_call(1, None, "-", "inbound 1", 0),
            price_call(11, Some(1), "a", "10", 1),
            price_call(12, Some(1), "a", "11", 2),
            price_call(2, None, "-", "inbound 2", 3),
            price_call(21, Some(2), "a", "20", 4),
            price_call(3, None, "-", "inbound 3", 5),
            // Under 3 the price service could not be reached.
            Exchange {
                response: None,
                error: Some(reprise_model::TransportError {
                    kind: reprise_model::ErrorKind::Connect as i32,
                    message: "connection refused (os error 111)".into(),
                    after_response_head: false,
                }),
                ..price_call(31, Some(3), "a", "", 6)
            },
        ],
    );
    let mock = Recorder::mock(&tape, &["--authority", "prices:8080", "--log"]);
    let url = format!("http://{}/price?sku=a", mock.addr);
    let replaying = |n: u8| format!("x-reprise-replay: {}", display_id(&[n; 16]));
    // Replayed call 2 first: its own recorded answer, not 1's.
    let traced = format!(
        "traceparent: 00-{}-00f067aa0ba902b7-01",
        display_id(&[2; 16])
    );
    assert_eq!(call(&url, &["-H", &traced]).2, "20");
    assert_eq!(call(&url, &["-H", &replaying(1)]).2, "10");
    assert_eq!(
        call(&url, &["-H", &replaying(1), "--http2-prior-knowledge"]).2,
        "11"
    );
    let (status, _, body) = call(&url, &["-H", &replaying(1)]);
    assert_eq!(status, 502);
    assert!(
        body.contains(&format!("(replaying {})", display_id(&[1; 16]))),
        "{body}"
    );
    // Another replay run of the same exchange (its tracestate says which,
    // among other vendors' entries) is a scope of its own.
    for run in ["reprise=0a0b", "congo=t61rcWkgMzE,reprise=0c0d"] {
        let state = format!("tracestate: {run}");
        let answers: Vec<String> = (0..2)
            .map(|_| call(&url, &["-H", &traced, "-H", &state]).2)
            .collect();
        assert_eq!(answers[0], "20", "{run}");
        assert!(
            answers[1].contains("recorded 1 time(s)"),
            "{run}: {}",
            answers[1]
        );
    }
    // A recorded call that failed below HTTP: a 502 that says how.
    let (status, head, body) = call(&url, &["-H", &replaying(3)]);
    assert_eq!(status, 502);
    assert!(head.contains("x-reprise-mock-failure: 1"), "{head}");
    assert_eq!(
        body,
        "reprise mock: recorded failure (connect): connection refused (os error 111)\n"
    );
    // Outside any replayed call: a miss that says so, unless --global.
    for headers in [&[][..], &["-H", "x-reprise-replay: not-an-id"][..]] {
        let (status, _, body) = call(&url, headers);
        assert_eq!(status, 502);
        assert!(
            body.contains("carried no valid x-reprise-replay or traceparent"),
            "{body}"
        );
    }
    let (status, _, body) = call(&url, &["-H", &replaying(9)]);
    assert_eq!(status, 502);
    assert!(
        body.contains("no downstream call was recorded under that exchange"),
        "{body}"
    );
    let stderr = stop_expecting(mock, 1);
    assert!(
        stderr.contains("served 6 calls") && stderr.contains("missed 6"),
        "{stderr}"
    );
    // --log: each call, its scope and what answered it.
    let line = format!(
        "mock: GET prices:8080/price?sku=a (replaying {}): answered by recorded {}",
        display_id(&[1; 16]),
        display_id(&[12; 16])
    );
    assert!(stderr.contains(&line), "{stderr}");
    assert!(
        stderr.contains("mock: GET prices:8080/price?sku=a (no replayed call): missed"),
        "{stderr}"
    );

    let mock = Recorder::mock(&tape, &["--authority", "prices:8080", "--global"]);
    let url = format!("http://{}/price?sku=a", mock.addr);
    let answers: Vec<String> = (0..3).map(|_| call(&url, &[]).2).collect();
    assert_eq!(answers, ["10", "11", "20"]);
    let stderr = stop_expecting(mock, 0);
    assert!(stderr.contains("3 from all recorded calls"), "{stderr}");

    // Shared recorded calls answer in any scope, as often as asked.
    let mock = Recorder::mock(
        &tape,
        &["--authority", "prices:8080", "--shared", "path=/price"],
    );
    let url = format!("http://{}/price?sku=a", mock.addr);
    let answers: Vec<String> = (0..3).map(|_| call(&url, &[]).2).collect();
    assert_eq!(answers, ["10", "10", "10"]);
    let (code, stderr) = mock.stop("-TERM");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(3 by shared recorded calls)"), "{stderr}");

    // Through the mock as an HTTP proxy: each call keeps its authority.
    let mock = Recorder::mock(&tape, &["--global"]);
    let (_, _, body) = call(
        "http://prices:8080/price?sku=a",
        &["--proxy", &format!("http://{}", mock.addr)],
    );
    assert_eq!(body, "10");
    stop_expecting(mock, 0);
}

#[test]
fn bad_arguments_and_recordings_are_one_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    write_tape(&tape, vec![price_call(1, None, "-", "inbound 1", 0)]);
    let not_a_tape = dir.path().join("notes.txt");
    std::fs::write(&not_a_tape, "hello").unwrap();
    let missing = dir.path().join("missing.tape");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![s(&missing)], "cannot read"),
        (vec![s(&not_a_tape)], "not a recording"),
        (
            vec![s(&tape)],
            "no downstream calls recorded; --inbound serves",
        ),
        (
            vec![s(&tape), "--exhausted", "sometimes"],
            "--exhausted: unknown exhausted-mock policy \"sometimes\"",
        ),
        (
            vec![s(&tape), "--listen", "localhost"],
            "--listen \"localhost\"",
        ),
        (
            vec![s(&tape), "--inbound", "--listen", &busy],
            "cannot listen",
        ),
        (
            vec![s(&tape), "--shared", "colour=red"],
            "--shared \"colour=red\"",
        ),
        (
            vec![s(&tape), "--authority", "a b"],
            "--authority \"a b\": expected HOST",
        ),
        (vec![s(&tape), "--max-body", "lots"], "--max-body \"lots\""),
        (
            vec![
                s(&tape),
                "--inbound",
                "--fallthrough",
                "https://127.0.0.1:1",
            ],
            "only http:// upstreams",
        ),
        (
            vec![s(&tape), "--inbound", "--fallthrough", "nowhere"],
            "--fallthrough",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["mock"];
        all.extend(&args);
        let out = reprise(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    // A damaged recording is refused: mocks from it would miss calls.
    let damaged = dir.path().join("damaged.tape");
    let mut bytes = std::fs::read(&tape).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let out = reprise(&["mock", s(&damaged), "--inbound"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("damaged"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_har_file_serves_as_the_recording() {
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/httpbin.har");
    let mut sink = reprise_model::MemorySink::new();
    reprise_interop::import_path(&har, &mut sink).unwrap();
    let recorded: Vec<String> = sink
        .exchanges()
        .iter()
        .filter(|e| e.request.as_ref().unwrap().path == "/uuid")
        .map(|e| text(&e.response.as_ref().unwrap().body))
        .collect();
    assert_eq!(recorded.len(), 2);
    let mock = Recorder::mock(&har, &["--inbound", "--ignore-authority"]);
    let url = |path: &str| format!("http://{}{path}", mock.addr);
    assert_eq!(call(&url("/uuid"), &[]).2, recorded[0]);
    assert_eq!(call(&url("/uuid"), &[]).2, recorded[1]);
    // The query matches as a multimap: its fields in another order.
    let (status, _, body) = call(&url("/get?tag=a&tag=b&item=42"), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"item\""), "{body}");
    let stderr = stop_expecting(mock, 0);
    assert!(stderr.contains("served 3 calls"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_fall_through_to_a_real_upstream_only_when_asked() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "shop.tape");
    let recorder = Recorder::start(&format!("http://{shop}"), &tape, &[]);
    let recorded = call(&recorder.url("/price?sku=a"), &[]).2;
    recorder.stop_cleanly("-INT");

    // Not asked: a miss never reaches the service (its count stays at 1).
    let mock = Recorder::mock(&tape, &["--inbound", "--ignore-authority"]);
    let (status, _, _) = call(&format!("http://{}/price?sku=z", mock.addr), &[]);
    assert_eq!(status, 502);
    stop_expecting(mock, 1);

    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--log",
            "--fallthrough",
            &format!("http://{shop}"),
            // The order below is a write (mock_out.rs shows writes held
            // back without it).
            "--fallthrough-writes",
        ],
    );
    let url = |path: &str| format!("http://{}{path}", mock.addr);
    // Recorded: from the recording, not the service (which counts on).
    let (status, head, body) = call(&url("/price?sku=a"), &[]);
    assert_eq!((status, body.as_str()), (200, recorded.as_str()));
    assert!(!head.contains("x-reprise-mock-fallthrough"), "{head}");
    // Not recorded: the service answers, flagged; bodies go through whole,
    // over HTTP/1.1 and h2c.
    let (status, head, body) = call(&url("/price?sku=z"), &["--http2-prior-knowledge"]);
    assert_eq!((status, body.as_str()), (200, r#"{"sku":"z","call":2}"#));
    assert!(head.contains("x-reprise-mock-fallthrough: 1"), "{head}");
    let (status, head, body) = call(
        &url("/order"),
        &[
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"items":[7]}"#,
        ],
    );
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true,"items":[7]}"#));
    assert!(head.contains("x-order: taken"), "{head}");
    assert!(head.contains("x-reprise-mock-fallthrough: 1"), "{head}");
    // A body over the 16 MiB it reads whole: refused, and counted.
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; (16 << 20) + 1]).unwrap();
    let (status, head, _) = call(
        &url("/order"),
        &[
            "-H",
            "content-type: application/json",
            "-H",
            "expect:",
            "--data-binary",
            &format!("@{}", big.display()),
        ],
    );
    assert_eq!(status, 413);
    assert!(head.contains("x-reprise-mock-failure: 1"), "{head}");
    // Fell through or not, a miss is a miss: exit 1, counted.
    let stderr = stop_expecting(mock, 1);
    assert!(stderr.contains("missed 2"), "{stderr}");
    assert!(
        stderr.contains("2 missed calls fell through to"),
        "{stderr}"
    );
    assert!(
        stderr.contains("GET /price?sku=z: fell through to")
            && stderr.contains("1 calls refused: a body over"),
        "{stderr}"
    );

    // An upstream that is gone: the miss, and why it did not fall through.
    let gone = {
        // Takes connections and closes them at once, without an answer.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        addr
    };
    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--fallthrough",
            &format!("http://{gone}"),
        ],
    );
    let (status, head, body) = call(&format!("http://{}/price?sku=z", mock.addr), &[]);
    assert_eq!(status, 502);
    assert!(head.contains("x-reprise-mock-miss: 1"), "{head}");
    assert!(
        body.contains("reprise mock miss") && body.contains("--fallthrough"),
        "{body}"
    );
    stop_expecting(mock, 1);
}

/// The mock's rows of the exit-code table (docs/cli.md): it judges the
/// calls it got. Nothing served is a pass (whether the service under
/// test had to call its dependency is that test's question); a miss is
/// 1 even when everything else was served; a damaged recording is
/// refused (2, in the test above), so 3 and 4 never come from a mock.
#[test]
fn a_mock_judges_by_its_misses_and_an_idle_mock_passes() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    write_tape(&tape, vec![price_call(1, None, "-", "inbound 1", 0)]);
    let mock = Recorder::mock(&tape, &["--inbound", "--ignore-authority"]);
    let stderr = stop_expecting(mock, 0);
    assert!(stderr.contains("mock served 0 calls, missed 0"), "{stderr}");
    let mock = Recorder::mock(&tape, &["--inbound", "--ignore-authority"]);
    let (status, _, _) = call(&format!("http://{}/nowhere", mock.addr), &[]);
    assert_eq!(status, 502);
    let stderr = stop_expecting(mock, 1);
    assert!(stderr.contains("missed 1"), "{stderr}");
}
