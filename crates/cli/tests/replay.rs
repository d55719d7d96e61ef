//! `reprise replay` end to end: the real binary replays tapes to real
//! servers on 127.0.0.1 (a target of the tests' own that records what it
//! receives, a tonic service, nginx, and the recording proxy as a TLS
//! front), and the tests check what arrived, when, and what was reported.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use reprise_model::{Direction, Exchange, Header, Protocol, Request, StreamMessage, display_id};
use reprise_testkit::echo::{Count, Note};
use reprise_testkit::start_echo;
use reprise_testkit::target::{Behaviour, Received, Target};
use serde_json::Value;

mod support;
use support::*;

const MS: u64 = 1_000_000;
/// 2026-01-01T00:00:00Z, ns.
const T0: u64 = 1_767_225_600_000_000_000;

/// An inbound exchange recorded at `T0 + at_ns`.
fn exchange(
    protocol: Protocol,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at_ns: u64,
) -> Exchange {
    Exchange {
        id: reprise_model::id::new_id(),
        recorded_at_ns: T0 + at_ns,
        duration_ns: MS,
        protocol: protocol as i32,
        role: reprise_model::Role::Inbound as i32,
        request: Some(Request {
            method: method.into(),
            scheme: "http".into(),
            authority: "prod.example:8080".into(),
            path: path.into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, v)).collect(),
            body: Bytes::copy_from_slice(body),
            body_size: body.len() as u64,
            ..Default::default()
        }),
        response: Some(reprise_model::Response {
            status: 200,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write_tape(path: &Path, exchanges: &[Exchange]) {
    let mut writer = reprise_tape::TapeWriter::create(path, Default::default()).unwrap();
    for exchange in exchanges {
        writer.write(exchange).unwrap();
    }
    writer.finish().unwrap();
}

/// Runs `reprise ARGS`, killed after `limit`.
fn reprise_bounded(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "reprise {args:?} did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A child process killed if the test fails before it ends.
struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `reprise replay TAPE --target URL ARGS...` from async tests.
async fn replay(tape: &Path, target: &str, args: &[&str]) -> Output {
    let mut all = vec![
        "replay".to_string(),
        tape.display().to_string(),
        "--target".to_string(),
        target.to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        reprise_bounded(&args, Duration::from_secs(60))
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The received request that replays `recorded`.
fn arrival<'a>(received: &'a [Received], recorded: &Exchange) -> &'a Received {
    let id = recorded.id_hex();
    received
        .iter()
        .find(|r| {
            r.headers
                .iter()
                .any(|(n, v)| n == "x-reprise-replay" && v == id.as_bytes())
        })
        .unwrap_or_else(|| panic!("no request replaying {id} arrived"))
}

fn values<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .collect()
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "host",
];

/// Every recorded end-to-end header arrived with the same values, in the
/// same order per name.
fn assert_headers_kept(recorded: &Exchange, got: &Received) {
    let request = recorded.request.as_ref().unwrap();
    for header in &request.headers {
        let name = header.name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&name.as_str()) || name == "x-hop" {
            continue;
        }
        let want: Vec<&[u8]> = request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(&name))
            .map(|h| h.value.as_slice())
            .collect();
        assert_eq!(values(&got.headers, &name), want, "header {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_requests_arrive_as_recorded() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("rec.tape");
    let post = exchange(
        Protocol::Http11,
        "POST",
        "/orders?x=1&y=two%20words",
        &[
            ("Host", "prod.example:8080"),
            ("Content-Type", "application/json"),
            ("X-Custom", "a"),
            ("X-Custom", "b"),
            ("Content-Length", "7"),
            ("Connection", "keep-alive, x-hop"),
            ("X-Hop", "1"),
            ("Authorization", "Bearer abc"),
        ],
        br#"{"a":1}"#,
        0,
    );
    let mut chunked = exchange(
        Protocol::Http11,
        "PUT",
        "/upload",
        &[("Transfer-Encoding", "chunked"), ("X-Custom", "c")],
        b"chunk data",
        MS,
    );
    chunked.request.as_mut().unwrap().trailers = vec![Header::new("x-checksum", "abc")];
    let get2 = exchange(
        Protocol::Http2,
        "GET",
        "/h2/path?q=1",
        &[("accept", "*/*")],
        b"",
        2 * MS,
    );
    let mut post2 = exchange(
        Protocol::Http2,
        "POST",
        "/h2/post",
        &[("content-type", "text/plain")],
        b"h2 body",
        3 * MS,
    );
    post2.request.as_mut().unwrap().trailers =
        vec![Header::new("x-t", "1"), Header::new("x-t", "2")];
    // Bodies larger than any flow-control window and socket buffer: sent
    // whole over both protocols.
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let big1 = exchange(Protocol::Http11, "POST", "/big/1", &[], &big, 5 * MS);
    let big2 = exchange(Protocol::Http2, "POST", "/big/2", &[], &big, 6 * MS);
    let mut downstream = exchange(Protocol::Http11, "GET", "/downstream", &[], b"", 4 * MS);
    downstream.parent_id = post.id.clone();
    let recorded = [post, chunked, get2, post2, big1, big2];
    let mut all = recorded.to_vec();
    all.push(downstream);
    write_tape(&tape, &all);

    let results = dir.path().join("results.tape");
    let report = dir.path().join("report.json");
    let out = replay(
        &tape,
        &target.url(),
        &["--speed", "100", "--out", s(&results), "--json", s(&report)],
    )
    .await;
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("replay: 6 calls"), "{stdout}");
    assert!(stdout.contains("1 downstream calls"), "{stdout}");

    let received = target.received();
    assert_eq!(received.len(), 6);
    let authority = target.addr.to_string();
    for recorded in &recorded {
        let got = arrival(&received, recorded);
        let request = recorded.request.as_ref().unwrap();
        let version = match recorded.protocol() {
            Protocol::Http2 => http::Version::HTTP_2,
            _ => http::Version::HTTP_11,
        };
        assert_eq!(got.version, version);
        assert_eq!(got.method, request.method);
        assert_eq!(got.path, request.path);
        assert_eq!(got.body, request.body.to_vec());
        assert_eq!(got.authority.as_deref(), Some(authority.as_str()));
        assert_headers_kept(recorded, got);
        assert!(values(&got.headers, "x-hop").is_empty());
        let trailers: Vec<(String, Vec<u8>)> = request
            .trailers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        assert_eq!(got.trailers, trailers);
        let id = recorded.id_hex();
        assert_eq!(
            values(&got.headers, "traceparent"),
            [format!("00-{id}-{}-01", &id[16..]).as_bytes()]
        );
    }

    // The results tape: one exchange per call, linked to what it replays.
    let results = read_tape(&results);
    assert_eq!(results.len(), 6);
    for result in &results {
        let replay = result.replay.as_ref().unwrap();
        let recorded = recorded
            .iter()
            .find(|r| r.id == replay.recorded_id)
            .expect("links to a recorded exchange");
        assert_eq!(replay.target, target.url());
        assert!(replay.sent_at_ns >= replay.scheduled_at_ns.saturating_sub(5 * MS));
        let response = result.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["path"], recorded.request.as_ref().unwrap().path);
        assert_eq!(
            result.request.as_ref().unwrap().method,
            recorded.request.as_ref().unwrap().method
        );
        assert_eq!(result.source.as_ref().unwrap().recorder, "replay");
    }
    let report = json(&report);
    assert_eq!(report["calls"], 6);
    assert_eq!(report["ok"], 6);
    assert_eq!(report["statuses"]["2xx"], 6);
    assert_eq!(report["results_written"], 6);
    assert_eq!(
        report["recording"]["skipped"]["downstream calls (answered by mocks, not replayed)"],
        1
    );
    // `/big/1` and `/big/2` are one endpoint, `POST /big/{id}`.
    assert_eq!(report["endpoints"].as_array().unwrap().len(), 5);
}

fn note(text: &str, number: i64) -> Vec<u8> {
    Note {
        text: text.into(),
        number,
        tags: vec![],
    }
    .encode_to_vec()
}

fn grpc_call(method: &str, messages: &[(u64, Vec<u8>)], at_ns: u64) -> Exchange {
    let mut ex = exchange(
        Protocol::Grpc,
        "POST",
        &format!("/reprise.test.v1.Echo/{method}"),
        &[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("x-call", method),
        ],
        b"",
        at_ns,
    );
    ex.messages = messages
        .iter()
        .map(|(offset_ns, data)| StreamMessage {
            direction: Direction::Request as i32,
            offset_ns: *offset_ns,
            size: data.len() as u64,
            data: Bytes::copy_from_slice(data),
            ..Default::default()
        })
        .collect();
    ex
}

fn responses(exchange: &Exchange) -> Vec<Note> {
    exchange
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Response)
        .map(|m| Note::decode(&m.data[..]).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_streaming_calls_replay_message_by_message() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("grpc.tape");
    let recorded = [
        grpc_call("Unary", &[(0, note("hello", 1))], 0),
        grpc_call(
            "ServerStream",
            &[(0, Count { n: 3, gap_ms: 5 }.encode_to_vec())],
            MS,
        ),
        grpc_call(
            "ClientStream",
            &[
                (0, note("a", 1)),
                (10 * MS, note("b", 2)),
                (20 * MS, note("c", 3)),
            ],
            2 * MS,
        ),
        grpc_call(
            "Bidi",
            &[(0, note("x", 5)), (100 * MS, note("y", 6))],
            3 * MS,
        ),
        grpc_call("Unary", &[(0, note("fail", 0))], 4 * MS),
    ];
    write_tape(&tape, &recorded);

    // Against the tonic service: each call gets its real answer.
    let echo = start_echo().await;
    let results = dir.path().join("results.tape");
    let out = replay(&tape, &format!("http://{echo}"), &["--out", s(&results)]).await;
    assert_success(&out);
    let stdout = text(&out.stdout);
    // The failing call was recorded without a gRPC status: its
    // NOT_FOUND is an answer that differs, not a failure to answer.
    assert!(
        stdout.contains("ok 4, failed 0, status differs 1")
            && stdout.contains("status differs: 1 grpc NOT_FOUND where none was recorded"),
        "{stdout}"
    );
    let results = read_tape(&results);
    let by_method = |name: &str| -> Vec<&Exchange> {
        results
            .iter()
            .filter(|e| e.request.as_ref().unwrap().path.ends_with(name))
            .collect()
    };
    let unary = by_method("/Unary");
    let ok = unary
        .iter()
        .find(|e| e.response.as_ref().unwrap().grpc.as_ref().unwrap().code == 0)
        .unwrap();
    assert_eq!(ok.protocol(), Protocol::Grpc);
    assert_eq!(responses(ok)[0].text, "HELLO");
    let failed = unary
        .iter()
        .find(|e| e.response.as_ref().unwrap().grpc.as_ref().unwrap().code == 5)
        .unwrap();
    assert_eq!(
        failed
            .response
            .as_ref()
            .unwrap()
            .grpc
            .as_ref()
            .unwrap()
            .message,
        "no such note: fail"
    );
    let texts: Vec<String> = responses(by_method("/ServerStream")[0])
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(texts, ["note 0", "note 1", "note 2"]);
    let joined = &responses(by_method("/ClientStream")[0])[0];
    assert_eq!((joined.text.as_str(), joined.number), ("a+b+c", 6));
    let bidi = by_method("/Bidi")[0];
    let doubled: Vec<i64> = responses(bidi).iter().map(|n| n.number).collect();
    assert_eq!(doubled, [10, 12]);
    // The second bidi message left at its recorded offset, not at once.
    let second = bidi
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Response)
        .nth(1)
        .unwrap();
    assert!(
        second.offset_ns >= 90 * MS,
        "second bidi answer at {} ns",
        second.offset_ns
    );

    // Against the recording target: the bytes on the wire are the
    // recorded messages, framed, over HTTP/2 with TE: trailers.
    let target = Target::start(Behaviour::Ok).await;
    let out = replay(&tape, &target.url(), &["--speed", "50"]).await;
    assert_success(&out);
    let received = target.received();
    assert_eq!(received.len(), 5);
    // HTTP/2 calls share connections: one per sending thread (32 calls in
    // flight, 100 per connection), not one per call.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert!(
        target.connections() <= threads,
        "{} connections",
        target.connections()
    );
    for recorded in &recorded {
        let got = arrival(&received, recorded);
        assert_eq!(got.version, http::Version::HTTP_2);
        let framed: Vec<u8> = recorded
            .messages
            .iter()
            .flat_map(reprise_model::grpc::frame)
            .collect();
        assert_eq!(got.body, framed);
        assert_eq!(values(&got.headers, "te"), [b"trailers".as_slice()]);
        assert_headers_kept(recorded, got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_two_halves_the_recorded_gaps() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("gaps.tape");
    // Written in completion order, not start order: the replay puts them back.
    let calls = [
        exchange(Protocol::Http11, "GET", "/0", &[], b"", 0),
        exchange(Protocol::Http11, "GET", "/2", &[], b"", 600 * MS),
        exchange(Protocol::Http11, "GET", "/1", &[], b"", 200 * MS),
    ];
    write_tape(&tape, &calls);
    let out = replay(&tape, &target.url(), &["--speed", "2"]).await;
    assert_success(&out);
    let received = target.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/0", "/1", "/2"]);
    let gap = |a: usize, b: usize| received[b].at.duration_since(received[a].at).as_millis() as i64;
    // Tolerance: 40 ms either way (timer granularity and a loaded 2-core machine).
    for (got, want) in [(gap(0, 1), 100), (gap(1, 2), 200)] {
        assert!(
            (got - want).abs() <= 40,
            "gap {got} ms, expected {want} ms ± 40"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_is_kept_within_one_percent_against_nginx() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("one.tape");
    write_tape(
        &tape,
        &[exchange(
            Protocol::Http11,
            "GET",
            "/api/item.json",
            &[],
            b"",
            0,
        )],
    );
    let report = dir.path().join("rate.json");
    let out = replay(
        &tape,
        &format!("http://{}", nginx.http1),
        &[
            "--rate",
            "500",
            "--loop",
            "--duration",
            "10s",
            "--json",
            s(&report),
        ],
    )
    .await;
    assert_success(&out);
    // stderr is not a terminal: a plain progress line every 5 s.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("reprise: 5s  sent 2"), "{stderr}");
    let report = json(&report);
    // Calls due in the first 10 s at 500/s: exactly 5000, all sent.
    assert_eq!(report["calls"], 5000, "{report}");
    assert_eq!(report["ok"], 5000);
    let rate = report["throughput"].as_f64().unwrap();
    assert!(
        (rate - 500.0).abs() / 500.0 < 0.01,
        "achieved {rate} calls/s"
    );
    // On schedule: the median call left less than 5 ms after it was due.
    let due = report["latency"]["from_due"]["p50_us"].as_u64().unwrap();
    let sent = report["latency"]["from_send"]["p50_us"].as_u64().unwrap();
    assert!(
        due.saturating_sub(sent) < 5_000,
        "due {due} µs vs sent {sent} µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_shows_as_latency_from_the_due_time() {
    // 200 ms per call, 4 at a time: 20 calls/s served against 100 offered.
    let target = Target::start(Behaviour::Delay(Duration::from_millis(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("one.tape");
    write_tape(
        &tape,
        &[exchange(Protocol::Http11, "GET", "/slow", &[], b"", 0)],
    );
    let report = dir.path().join("co.json");
    let out = replay(
        &tape,
        &target.url(),
        &[
            "--rate",
            "100",
            "--concurrency",
            "4",
            "--limit",
            "40",
            "--loop",
            "-q",
            "--json",
            s(&report),
        ],
    )
    .await;
    assert_success(&out);
    assert!(out.stderr.is_empty(), "--quiet: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("from due") && stdout.contains("from send"),
        "{stdout}"
    );
    let report = json(&report);
    assert_eq!(report["calls"], 40);
    let from_send = &report["latency"]["from_send"];
    let from_due = &report["latency"]["from_due"];
    let us = |v: &Value, k: &str| v[k].as_u64().unwrap();
    // Each call took its 200 ms once sent...
    assert!(
        (200_000..350_000).contains(&us(from_send, "p50_us")),
        "{from_send}"
    );
    // ...but waited for a free connection: call i was due at 10 i ms and
    // answered at 200 (i / 4 + 1) ms, so the median waited about a second.
    assert!(us(from_due, "p50_us") > 800_000, "{from_due}");
    assert!(us(from_due, "max_us") > 1_400_000, "{from_due}");
    assert!(target.connections() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_calls_and_sends_nothing() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("dry.tape");
    let calls = [
        exchange(Protocol::Http11, "GET", "/a", &[("x-one", "1")], b"", 0),
        exchange(Protocol::Http2, "POST", "/b", &[], b"body", 500 * MS),
    ];
    write_tape(&tape, &calls);
    let out = replay(
        &tape,
        &target.url(),
        &["--dry-run", "--set-header", "x-env: staging"],
    )
    .await;
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("+0.000s  GET {}/a  h1, 0 B", target.url())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("+0.500s  POST {}/b  h2, 4 B", target.url())),
        "{stdout}"
    );
    assert!(stdout.contains("x-env: staging"), "{stdout}");
    assert!(
        stdout.contains(&format!("x-reprise-replay: {}", display_id(&calls[0].id))),
        "{stdout}"
    );
    assert!(stdout.contains("2 calls would be sent"), "{stdout}");
    // Looping: the calls of every pass are listed and counted.
    let out = replay(
        &tape,
        &target.url(),
        &["--dry-run", "--loop", "--limit", "5"],
    )
    .await;
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("5 calls would be sent"), "{stdout}");
    assert_eq!(
        stdout.matches(" GET ").count() + stdout.matches(" POST ").count(),
        5,
        "{stdout}"
    );

    // The time window of the recording: only the first call is before T0 + 300 ms.
    let until = (T0 + 300 * MS).to_string();
    let out = replay(&tape, &target.url(), &["--dry-run", "--until", &until]).await;
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1 calls would be sent"), "{stdout}");
    assert!(!stdout.contains("POST"), "{stdout}");
    assert!(target.received().is_empty());
    assert_eq!(target.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_change_only_what_they_name() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("rw.tape");
    let call = exchange(
        Protocol::Http11,
        "GET",
        "/v1/users/7?full=1",
        &[
            ("authorization", "[redacted]"),
            ("x-keep", "k"),
            ("cookie", "a=b"),
        ],
        b"",
        0,
    );
    write_tape(&tape, std::slice::from_ref(&call));
    let out = replay(
        &tape,
        &target.url(),
        &[
            "--rewrite-path",
            "^/v1/(\\w+)=/v2/$1",
            // An = in the pattern is written \=; the replacement's as is.
            "--rewrite-path",
            r"full\=1=full=0",
            "--set-header",
            "Authorization: Bearer staging",
            "--drop-header",
            "cookie",
            "--preserve-host",
        ],
    )
    .await;
    assert_success(&out);
    let received = target.received();
    let got = &received[0];
    assert_eq!(got.path, "/v2/users/7?full=0");
    assert_eq!(
        values(&got.headers, "authorization"),
        [b"Bearer staging".as_slice()]
    );
    assert!(values(&got.headers, "cookie").is_empty());
    assert_eq!(values(&got.headers, "x-keep"), [b"k".as_slice()]);
    // The recorded Host is sent, but the call still went to the target.
    assert_eq!(got.authority.as_deref(), Some("prod.example:8080"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_replays_a_tape_while_it_is_written() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("live.tape");
    let mut writer = reprise_tape::TapeWriter::create(&tape, Default::default()).unwrap();
    writer
        .write(&exchange(Protocol::Http11, "GET", "/first", &[], b"", 0))
        .unwrap();
    writer.sync().unwrap();
    let mut running = Running(Some(
        Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args([
                "replay",
                s(&tape),
                "--target",
                &target.url(),
                "--follow",
                "--speed",
                "1000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while target.received().len() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} calls arrived",
                target.received().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(1);
    for (i, path) in ["/second", "/third"].iter().enumerate() {
        let at = (i as u64 + 1) * MS;
        writer
            .write(&exchange(Protocol::Http11, "GET", path, &[], b"", at))
            .unwrap();
        writer.sync().unwrap();
    }
    wait_for(3);
    let child = running.0.as_mut().unwrap();
    let status = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "replay --follow stops on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = running.0.take().unwrap().wait_with_output().unwrap();
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("replay: 3 calls"),
        "{}",
        text(&out.stdout)
    );
    // The last two were due a microsecond apart: they may arrive either way.
    let mut paths: Vec<String> = target.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/first", "/second", "/third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_over_http1_and_http2_with_the_trust_asked_for() {
    let backend = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    // The recording proxy with a self-signed certificate: a real TLS
    // server with ALPN h2 and http/1.1, in front of the backend.
    let front = Recorder::start(
        &backend.url(),
        &dir.path().join("front.tape"),
        &["--tls-cert", s(&cert), "--tls-key", s(&key_path)],
    );
    let tape = dir.path().join("tls.tape");
    write_tape(
        &tape,
        &[
            exchange(Protocol::Http11, "GET", "/one", &[], b"", 0),
            exchange(Protocol::Http2, "GET", "/two", &[], b"", MS),
        ],
    );
    let url = format!("https://localhost:{}", front.addr.port());
    for trust in [vec!["--insecure"], vec!["--ca", s(&cert)]] {
        let out = replay(&tape, &url, &trust).await;
        assert_success(&out);
        assert!(
            text(&out.stdout).contains("ok 2, failed 0"),
            "{}",
            text(&out.stdout)
        );
    }
    let versions: Vec<http::Version> = backend.received().iter().map(|r| r.version).collect();
    assert_eq!(
        versions
            .iter()
            .filter(|v| **v == http::Version::HTTP_2)
            .count(),
        2
    );
    // The system roots do not know this certificate: every call fails at TLS.
    let out = replay(&tape, &url, &["--timeout", "5s"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("2 tls"), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no call reached"),
        "{}",
        text(&out.stderr)
    );
    front.stop_cleanly("-TERM");
}

/// A tape of 60 exchanges in small blocks, with one block damaged.
fn damaged_tape(dir: &Path) -> PathBuf {
    let path = dir.join("damaged.tape");
    let options = reprise_tape::WriterOptions {
        block_bytes: 16 << 10,
        ..Default::default()
    };
    let mut writer = reprise_tape::TapeWriter::create(&path, options).unwrap();
    for i in 0..60 {
        let mut ex = reprise_model::synthetic::realistic(i);
        ex.parent_id.clear();
        ex.role = reprise_model::Role::Inbound as i32;
        writer.write(&ex).unwrap();
    }
    writer.finish().unwrap();
    let (blocks, _) = reprise_tape::block_index(&path).unwrap();
    assert!(blocks.len() >= 3);
    let mut bytes = std::fs::read(&path).unwrap();
    let victim = blocks[1].end() as usize - 10;
    bytes[victim] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_and_bad_input_get_clear_errors_or_counted_failures() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("one.tape");
    write_tape(
        &tape,
        &[
            exchange(Protocol::Http11, "GET", "/x", &[], b"", 0),
            exchange(Protocol::Http2, "GET", "/y", &[], b"", MS),
        ],
    );

    // Nothing listens there.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = replay(&tape, &closed, &["--timeout", "5s"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).contains("2 connect"),
        "{}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no call reached") && stderr.contains("refused"),
        "{stderr}"
    );

    // A target that resets every connection, and one that answers garbage,
    // over either protocol.
    for (behaviour, kind, protocol) in [
        (Behaviour::Reset, "reset", "h1"),
        (Behaviour::Garbage, "protocol", "h1"),
        (Behaviour::Reset, "reset", "h2"),
        (Behaviour::Garbage, "protocol", "h2"),
    ] {
        let target = Target::start(behaviour).await;
        let out = replay(
            &tape,
            &target.url(),
            &["--timeout", "5s", "--protocol", protocol],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{behaviour:?} {protocol}");
        assert!(
            text(&out.stdout).contains(&format!("2 {kind}")),
            "{behaviour:?} {protocol}: {}",
            text(&out.stdout)
        );
        assert!(text(&out.stderr).contains("no call reached"));
    }

    // A target slower than --timeout.
    let slow = Target::start(Behaviour::Delay(Duration::from_secs(3))).await;
    let started = Instant::now();
    let out = replay(&tape, &slow.url(), &["--timeout", "300ms"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).contains("2 timeout"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout cut the calls short"
    );

    // Recordings with nothing to replay, or that are not recordings.
    let target = Target::start(Behaviour::Ok).await;
    let empty_tape = dir.path().join("empty.tape");
    write_tape(&empty_tape, &[]);
    let empty_file = dir.path().join("empty.file");
    std::fs::write(&empty_file, b"").unwrap();
    let garbage = dir.path().join("garbage.tape");
    std::fs::write(&garbage, b"this is not a tape at all").unwrap();
    for (source, message) in [
        (&empty_tape, "nothing to replay"),
        (&empty_file, "empty file, not a recording"),
        (&garbage, "not a recording"),
        (&dir.path().join("missing.tape"), "cannot read"),
    ] {
        let out = replay(source, &target.url(), &[]).await;
        assert_eq!(out.status.code(), Some(2), "{message}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("reprise: ") && stderr.contains(message),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    // A damaged tape: the intact part is replayed, the damage reported, exit 3.
    let damaged = damaged_tape(dir.path());
    let out = replay(&damaged, &target.url(), &["--max"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("checksum"),
        "{}",
        text(&out.stderr)
    );
    let replayed = target.received().len();
    assert!((30..60).contains(&replayed), "{replayed} of 60 replayed");

    // Bad options: one line, exit 2, nothing sent.
    let before = target.received().len();
    let url = target.url();
    for (args, message) in [
        (vec!["--match", "colour=red"], "colour=red"),
        (vec!["--speed", "0"], "--speed"),
        (vec!["--rate=-5"], "--rate"),
        (vec!["--concurrency", "0"], "--concurrency"),
        (vec!["--connections", "0"], "--connections"),
        (vec!["--set-header", "no colon"], "--set-header"),
        (vec!["--drop-header", "bad name"], "--drop-header"),
        (vec!["--rewrite-path", "(=x"], "--rewrite-path"),
        (vec!["--timeout", "soon"], "--timeout"),
        (vec!["--max-body", "1T"], "--max-body"),
        (vec!["--duration", "forever"], "--duration"),
        (vec!["--since", "yesterday-ish"], "--since"),
    ] {
        let out = replay(&tape, &url, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    for bad in [
        "127.0.0.1:80",
        "ftp://127.0.0.1",
        "http://127.0.0.1/api",
        "http://",
    ] {
        let out = replay(&tape, bad, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains("--target"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
    let out = replay(&tape, &url, &["--speed", "2", "--max"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"));
    assert_eq!(target.received().len(), before, "bad options sent nothing");
}

#[test]
fn the_recorded_authority_never_decides_where_calls_go() {
    // A recording whose request names another host, in its path and its
    // Host header: the call still goes only to --target (the dry run shows
    // every URL and header).
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("hosts.tape");
    let mut elsewhere = exchange(
        Protocol::Http11,
        "GET",
        "http://evil.example/steal",
        &[("host", "evil.example")],
        b"",
        0,
    );
    elsewhere.request.as_mut().unwrap().authority = "evil.example".into();
    write_tape(&tape, &[elsewhere]);
    let out = reprise_bounded(
        &[
            "replay",
            s(&tape),
            "--target",
            "http://127.0.0.1:9",
            "--dry-run",
        ],
        Duration::from_secs(20),
    );
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("GET http://127.0.0.1:9/steal"), "{stdout}");
    assert!(stdout.contains("host: 127.0.0.1:9"), "{stdout}");
    assert!(!stdout.contains("evil.example"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goreplay_capture_replays_call_for_call() {
    // 101 real requests captured by GoReplay (tests/fixtures), read on
    // the fly and replayed with their original 8.6 minutes squeezed.
    let gor = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/goreplay/datadog-ecommerce-requests_0.gor");
    let target = Target::start(Behaviour::Ok).await;
    let out = replay(&gor, &target.url(), &["--rate", "1000"]).await;
    assert_success(&out);
    let recorded: Vec<Exchange> = {
        let mut sink = reprise_model::MemorySink::new();
        reprise_interop::import_path(&gor, &mut sink).unwrap();
        sink.exchanges()
    };
    assert_eq!(recorded.len(), 101);
    let received = target.received();
    assert_eq!(received.len(), 101);
    for exchange in &recorded {
        let got = arrival(&received, exchange);
        let request = exchange.request.as_ref().unwrap();
        assert_eq!(got.method, request.method);
        assert_eq!(got.path, request.path);
        assert_eq!(
            got.authority.as_deref(),
            Some(target.addr.to_string().as_str())
        );
        assert_headers_kept(exchange, got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_during_a_long_gap_ends_the_replay_at_once() {
    let target = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("gap.tape");
    // The second call is due an hour after the first.
    write_tape(
        &tape,
        &[
            exchange(Protocol::Http11, "GET", "/now", &[], b"", 0),
            exchange(Protocol::Http11, "GET", "/later", &[], b"", 3_600_000 * MS),
        ],
    );
    let mut running = Running(Some(
        Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args(["replay", s(&tape), "--target", &target.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while target.received().is_empty() {
        assert!(Instant::now() < deadline, "the first call arrives");
        std::thread::sleep(Duration::from_millis(20));
    }
    let child = running.0.as_mut().unwrap();
    let status = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let interrupted = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            interrupted.elapsed() < Duration::from_secs(5),
            "the replay ends within 5 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = running.0.take().unwrap().wait_with_output().unwrap();
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("replay: 1 calls"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(target.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_hanging_target_time_out_together() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("twelve.tape");
    let calls: Vec<Exchange> = (0..12)
        .map(|i| exchange(Protocol::Http11, "GET", &format!("/{i}"), &[], b"", i * MS))
        .collect();
    write_tape(&tape, &calls);
    // Answers nothing for an hour: every call ends at its timeout.
    let hanging = Target::start(Behaviour::Delay(Duration::from_secs(3600))).await;
    let started = Instant::now();
    let out = replay(&tape, &hanging.url(), &["--timeout", "1s", "--max"]).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("12 timeout"),
        "{}",
        text(&out.stdout)
    );
    // 12 calls within the default concurrency of 32 are all in flight at
    // once: the run takes about one timeout, not one per call (12 s).
    assert!(
        took < Duration::from_secs(8),
        "12 calls with --timeout 1s took {took:?}"
    );
    assert_eq!(hanging.received().len(), 12);
}

/// `replay --compare`'s rows of the exit-code table (docs/cli.md), with
/// their precedence, against a target whose answers the recordings hold
/// (or, for the changed one, do not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_compare_exit_codes_follow_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start(Behaviour::Ok).await;
    let body = |i: usize| format!(r#"{{"ok":true,"path":"/calls/{i}"}}"#);
    let recording = |name: &str, changed: bool, damaged: bool| {
        let exchanges: Vec<Exchange> = (0..200)
            .map(|i| {
                let answer = if changed && i == 0 {
                    r#"{"ok":false}"#.to_string()
                } else {
                    body(i)
                };
                answered(i, &answer)
            })
            .collect();
        let path = dir.path().join(name);
        write_blocks(&path, &exchanges, damaged);
        path
    };
    let faithful = recording("faithful.tape", false, false);
    let changed = recording("changed.tape", true, false);
    let damaged = recording("damaged.tape", false, true);
    let shortfall = "fewer than --min-compared";
    for (tape, extra, code, on_stderr) in [
        (&faithful, vec![], 0, None),
        (&changed, vec![], 1, None),
        (&damaged, vec![], 3, Some("checksum")),
        (&faithful, vec!["--min-compared", "201"], 4, Some(shortfall)),
        // 1 wins over 4; 4 wins over 3; both still said.
        (&changed, vec!["--min-compared", "201"], 1, Some(shortfall)),
        (
            &damaged,
            vec!["--min-compared", "1000"],
            4,
            Some("checksum"),
        ),
        (
            &faithful,
            vec!["--min-compared", "none"],
            2,
            Some("--min-compared"),
        ),
    ] {
        let mut args = vec!["--compare", "--max", "-q"];
        args.extend(extra.iter().copied());
        let out = replay(tape, &target.url(), &args).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\n{}{stderr}",
            text(&out.stdout)
        );
        if let Some(expected) = on_stderr {
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
    }
    let out = replay(
        &damaged,
        &target.url(),
        &["--compare", "--max", "-q", "--min-compared", "1000"],
    )
    .await;
    assert!(
        text(&out.stderr).contains(shortfall),
        "{}",
        text(&out.stderr)
    );
    // Without --compare nothing is judged: the flag is a usage error.
    let out = replay(&faithful, &target.url(), &["--min-compared", "3"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("go with --compare"));
}

/// A 404 the recording also had is a faithful replay; only answers with
/// another status than recorded are counted apart, and never as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_judged_against_the_recorded_status() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("statuses.tape");
    let answered_with = |path: &str, status: u32, at: u64| {
        let mut call = exchange(Protocol::Http11, "GET", path, &[], b"", at * MS);
        call.response.as_mut().unwrap().status = status;
        call
    };
    write_tape(
        &tape,
        &[
            answered_with("/api/item.json", 200, 0),
            answered_with("/missing.json", 404, 1),
            answered_with("/gone.json", 200, 2),
            answered_with("/api/item.json", 503, 3),
        ],
    );
    let report = dir.path().join("report.json");
    let out = replay(
        &tape,
        &format!("http://{}", nginx.http1),
        &["--max", "--json", s(&report)],
    )
    .await;
    assert_success(&out);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok 2, failed 0, status differs 2"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("status differs: 1 200 where 503 was recorded, 1 404 where 200 was recorded"),
        "{stdout}"
    );
    let report = json(&report);
    assert_eq!(
        (&report["ok"], &report["failed"], &report["status_differs"]),
        (&2.into(), &0.into(), &2.into()),
        "{report}"
    );
    assert_eq!(report["failures"], serde_json::json!({}));
    assert_eq!(
        report["status_differences"],
        serde_json::json!({"404 where 200 was recorded": 1, "200 where 503 was recorded": 1})
    );
    let item = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "GET /api/item.json")
        .unwrap();
    assert_eq!(
        (&item["ok"], &item["failed"], &item["status_differs"]),
        (&1.into(), &0.into(), &1.into())
    );
}
