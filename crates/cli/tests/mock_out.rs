//! `reprise mock` for services in any language, end to end with the real
//! binary: `--out` (every call the service made, as received and as
//! answered), the unlinked pool, writes that never fall through, the
//! recorded egress listeners, and calls in absolute form through it as
//! an HTTP proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reprise_model::{
    Direction, Exchange, Header, Link, LinkKind, Protocol, RecordSource, Request, Response, Role,
    display_id,
};

mod support;
use support::*;

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

/// A recorded call `METHOD authority path` (id: 16 bytes of `n`) answered
/// `answer`; downstream of `parent` when given (else, for a downstream
/// call, unlinked), inbound when `inbound`.
fn recorded(n: u8, parent: Option<u8>, target: (&str, &str, &str), answer: &str) -> Exchange {
    let (method, authority, path) = target;
    Exchange {
        id: vec![n; 16],
        parent_id: parent.map(|p| vec![p; 16]).unwrap_or_default(),
        role: Role::Downstream as i32,
        protocol: Protocol::Http11 as i32,
        recorded_at_ns: 1_700_000_000_000_000_000 + u64::from(n),
        request: Some(Request {
            method: method.into(),
            scheme: "http".into(),
            authority: authority.into(),
            path: path.into(),
            headers: vec![Header::new("host", authority)],
            ..Default::default()
        }),
        response: Some(Response {
            status: 200,
            headers: vec![Header::new("content-type", "text/plain")],
            body: Bytes::from(answer.to_string()),
            ..Default::default()
        }),
        link: Some(Link {
            kind: if parent.is_some() {
                LinkKind::Trace
            } else {
                LinkKind::Unlinked
            } as i32,
            order: 0,
        }),
        ..Default::default()
    }
}

fn inbound(n: u8) -> Exchange {
    Exchange {
        role: Role::Inbound as i32,
        link: None,
        ..recorded(n, None, ("GET", "shop", "/"), "inbound")
    }
}

/// As recorded by `reprise record --egress LISTEN` (route empty) or
/// `--egress-route ROUTE=LISTEN=URL`.
fn through(mut exchange: Exchange, listen: &str, route: &str, scheme: &str) -> Exchange {
    exchange.source = Some(RecordSource {
        recorder: "proxy".into(),
        listener: listen.into(),
        route: route.into(),
        ..Default::default()
    });
    exchange.request.as_mut().unwrap().scheme = scheme.into();
    exchange
}

fn body(exchange: &Exchange) -> String {
    text(&exchange.response.as_ref().unwrap().body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_holds_every_call_as_answered_and_unlinked_calls_are_one_pool() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    write_exchanges(
        &tape,
        &[
            inbound(1),
            // A token fetched at start-up, twice: no parent, one pool.
            recorded(2, None, ("GET", "auth:9000", "/token"), "token one"),
            recorded(11, Some(1), ("GET", "prices:8080", "/price?sku=a"), "10"),
            recorded(3, None, ("GET", "auth:9000", "/token"), "token two"),
        ],
    );
    let out = dir.path().join("calls-made.tape");
    let mock = Recorder::mock(&tape, &["--log", "--out", s(&out)]);
    let url = |authority: &str, path: &str| format!("http://{}{path}", authority);
    let proxy = format!("http://{}", mock.addr);
    let replaying = format!("x-reprise-replay: {}", display_id(&[1; 16]));
    let via = |extra: &[&str]| -> Vec<String> {
        let mut all = vec!["--proxy".to_string(), proxy.clone()];
        all.extend(extra.iter().map(|a| a.to_string()));
        all
    };
    let call = |url: &str, extra: Vec<String>| {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        call(url, &extra)
    };
    // Replayed call 1: its own recorded call, then the pool's first token.
    let (status, _, answer) = call(
        &url("prices:8080", "/price?sku=a"),
        via(&["-H", &replaying]),
    );
    assert_eq!((status, answer.as_str()), (200, "10"));
    let (_, _, answer) = call(
        &url("auth:9000", "/token"),
        via(&["-H", &replaying, "-H", "authorization: Bearer s3cret"]),
    );
    assert_eq!(answer, "token one");
    // A call in no scope: the pool's next, in recorded order.
    assert_eq!(call(&url("auth:9000", "/token"), via(&[])).2, "token two");
    // Misses: a price never recorded, a write with a body.
    let (status, _, _) = call(
        &url("prices:8080", "/price?sku=zz"),
        via(&["-H", &replaying]),
    );
    assert_eq!(status, 502);
    let (status, _, _) = call(
        &url("payments:443", "/charge"),
        via(&[
            "-H",
            &replaying,
            "-H",
            "content-type: application/json",
            "--data",
            r#"{"amount":110}"#,
        ]),
    );
    assert_eq!(status, 502);
    let listener = mock.addr.to_string();
    let stderr = stop_expecting(mock, 1);
    assert!(
        stderr.contains("mock served 2 calls from the unlinked pool"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "mock: GET auth:9000/token (no replayed call): answered by recorded {} (from the unlinked pool)",
            display_id(&[3; 16])
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("wrote 5 calls to {}", out.display())),
        "{stderr}"
    );

    // The tape: one downstream exchange per call, as received and as
    // answered, linked to the replayed exchange in the order made.
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let made = read_tape(&out);
    assert_eq!(made.len(), 5);
    for exchange in &made {
        assert_eq!(exchange.role(), Role::Downstream);
        let source = exchange.source.as_ref().unwrap();
        assert_eq!(source.recorder, "mock");
        assert_eq!(source.listener, listener);
        assert_eq!(exchange.protocol(), Protocol::Http11);
    }
    let parent = vec![1; 16];
    let linked: Vec<(Vec<u8>, LinkKind, u32)> = made
        .iter()
        .map(|e| {
            let link = e.link.unwrap();
            (e.parent_id.clone(), link.kind(), link.order)
        })
        .collect();
    assert_eq!(
        linked,
        [
            (parent.clone(), LinkKind::Trace, 0),
            (parent.clone(), LinkKind::Trace, 1),
            (Vec::new(), LinkKind::Unlinked, 0),
            (parent.clone(), LinkKind::Trace, 2),
            (parent.clone(), LinkKind::Trace, 3),
        ]
    );
    let answered_by: Vec<Vec<u8>> = made
        .iter()
        .map(|e| {
            e.replay
                .as_ref()
                .map(|r| r.recorded_id.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        answered_by,
        [
            vec![11; 16],
            vec![2; 16],
            vec![3; 16],
            Vec::new(),
            Vec::new()
        ]
    );
    let missed: Vec<bool> = made
        .iter()
        .map(|e| e.flags.as_ref().is_some_and(|f| f.mock_miss))
        .collect();
    assert_eq!(missed, [false, false, false, true, true]);
    assert_eq!(body(&made[0]), "10");
    assert_eq!(body(&made[2]), "token two");
    assert!(
        body(&made[3]).contains("reprise mock miss"),
        "{}",
        body(&made[3])
    );
    let request = made[0].request.as_ref().unwrap();
    assert_eq!(
        (
            request.method.as_str(),
            request.authority.as_str(),
            request.path.as_str()
        ),
        ("GET", "prices:8080", "/price?sku=a")
    );
    let charge = made[4].request.as_ref().unwrap();
    assert_eq!(
        (
            charge.method.as_str(),
            charge.authority.as_str(),
            charge.path.as_str()
        ),
        ("POST", "payments:443", "/charge")
    );
    assert_eq!(text(&charge.body), r#"{"amount":110}"#);
    assert_eq!(made[4].response.as_ref().unwrap().status, 502);
    // Redacted as the recorder redacts: the credential is not kept.
    let token = &made[1];
    let authorization = token
        .request
        .as_ref()
        .unwrap()
        .headers
        .iter()
        .find(|h| h.name == "authorization")
        .unwrap();
    assert!(
        !text(&authorization.value).contains("s3cret"),
        "{authorization:?}"
    );
    assert!(token.flags.as_ref().unwrap().redacted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_go_to_out_with_their_messages() {
    let echo = reprise_testkit::start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "echo.tape");
    let recorder = Recorder::start(&format!("http://{echo}"), &tape, &[]);
    let mut client = reprise_testkit::echo_client(recorder.addr).await;
    client.unary(note("hello", 7)).await.unwrap();
    drop(client);
    recorder.stop_cleanly("-INT");
    let recorded_id = read_tape(&tape)[0].id.clone();

    let out = dir.path().join("made.tape");
    let mock = Recorder::mock(
        &tape,
        &["--inbound", "--ignore-authority", "--out", s(&out)],
    );
    let mut client = reprise_testkit::echo_client(mock.addr).await;
    client.unary(note("hello", 7)).await.unwrap();
    let missed = client.unary(note("other", 1)).await.unwrap_err();
    assert_eq!(missed.code(), tonic::Code::Unavailable);
    drop(client);
    stop_expecting(mock, 1);
    let made = read_tape(&out);
    assert_eq!(made.len(), 2);
    for exchange in &made {
        assert_eq!(exchange.protocol(), Protocol::Grpc);
        let request = exchange
            .messages
            .iter()
            .filter(|m| m.direction() == Direction::Request)
            .count();
        assert_eq!(request, 1, "{exchange:?}");
    }
    let (hit, miss) = (&made[0], &made[1]);
    assert_eq!(hit.replay.as_ref().unwrap().recorded_id, recorded_id);
    assert_eq!(
        hit.messages
            .iter()
            .filter(|m| m.direction() == Direction::Response)
            .count(),
        1
    );
    assert_eq!(
        hit.response.as_ref().unwrap().grpc.as_ref().unwrap().code,
        0
    );
    assert!(miss.flags.as_ref().unwrap().mock_miss);
    let status = miss.response.as_ref().unwrap().grpc.clone().unwrap();
    assert_eq!(status.code, 14);
    assert!(status.message.contains("reprise mock miss"), "{status:?}");

    // A gRPC call may write anything: it falls through only when writes
    // may, over HTTP/2.
    let echo_url = format!("http://{echo}");
    let mut args = vec!["--inbound", "--ignore-authority", "--log"];
    args.extend(["--fallthrough", &echo_url]);
    let mock = Recorder::mock(&tape, &args);
    let mut client = reprise_testkit::echo_client(mock.addr).await;
    let missed = client.unary(note("other", 1)).await.unwrap_err();
    assert_eq!(missed.code(), tonic::Code::Unavailable);
    drop(client);
    let stderr = stop_expecting(mock, 1);
    assert!(
        stderr.contains("gRPC calls fall through only with --fallthrough-writes"),
        "{stderr}"
    );
    args.push("--fallthrough-writes");
    let mock = Recorder::mock(&tape, &args);
    let mut client = reprise_testkit::echo_client(mock.addr).await;
    let answer = client.unary(note("other", 1)).await.unwrap();
    assert_eq!(
        answer.metadata().get("x-reprise-mock-fallthrough").unwrap(),
        "1"
    );
    assert_eq!(answer.get_ref().text, "OTHER");
    drop(client);
    let stderr = stop_expecting(mock, 1);
    assert!(stderr.contains("1 missed calls fell through"), "{stderr}");
}

/// A real upstream that keeps the method and path of every call it gets.
async fn start_counting() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let kept = Arc::clone(&kept);
        async move {
            let call = format!("{} {}", request.method(), request.uri().path());
            kept.lock().unwrap().push(call.clone());
            format!("upstream: {call}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_writes_never_fall_through_unless_asked() {
    let (upstream, seen) = start_counting().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    write_exchanges(
        &tape,
        &[Exchange {
            role: Role::Inbound as i32,
            ..recorded(1, None, ("GET", "shop", "/recorded"), "r")
        }],
    );
    let upstream_url = format!("http://{upstream}");
    let base = ["--inbound", "--ignore-authority", "--log", "--fallthrough"];
    let mut args = base.to_vec();
    args.push(&upstream_url);
    let mock = Recorder::mock(&tape, &args);
    let url = format!("http://{}/charge", mock.addr);
    let (status, _, body) = call(&format!("http://{}/balance", mock.addr), &[]);
    assert_eq!((status, body.as_str()), (200, "upstream: GET /balance"));
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let (status, head, body) = call(&url, &["-X", method, "--data", r#"{"amount":1}"#]);
        assert_eq!(status, 502, "{method}");
        assert!(head.contains("x-reprise-mock-miss: 1"), "{head}");
        assert!(
            body.contains(&format!(
                "not forwarded to --fallthrough {upstream_url}/: {method} is a write"
            )) && body.contains("--fallthrough-writes"),
            "{body}"
        );
    }
    let stderr = stop_expecting(mock, 1);
    // The upstream got the read, and nothing else.
    assert_eq!(*seen.lock().unwrap(), ["GET /balance"]);
    assert!(
        stderr.contains(&format!(
            "4 missed writes not sent to {upstream_url} (--fallthrough-writes sends them)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("POST is a write"), "{stderr}");

    args.push("--fallthrough-writes");
    let mock = Recorder::mock(&tape, &args);
    let url = format!("http://{}/charge", mock.addr);
    let (status, head, body) = call(&url, &["--data", r#"{"amount":1}"#]);
    assert_eq!((status, body.as_str()), (200, "upstream: POST /charge"));
    assert!(head.contains("x-reprise-mock-fallthrough: 1"), "{head}");
    stop_expecting(mock, 1);
    assert_eq!(*seen.lock().unwrap(), ["GET /balance", "POST /charge"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_listens_where_the_recording_egress_listeners_were() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "egress.tape");
    let (route_port, proxy_port) = (free_port(), free_port());
    let route_listen = format!("127.0.0.1:{route_port}");
    let proxy_listen = format!("127.0.0.1:{proxy_port}");
    write_exchanges(
        &tape,
        &[
            inbound(1),
            // Through --egress-route pay=LISTEN=https://payments.example.
            through(
                recorded(
                    11,
                    Some(1),
                    ("POST", "payments.example", "/charge"),
                    "charged",
                ),
                &route_listen,
                "pay",
                "https",
            ),
            // Through the forward proxy (HTTP_PROXY=LISTEN).
            through(
                recorded(12, Some(1), ("GET", "inventory:8080", "/stock"), "7 left"),
                &proxy_listen,
                "",
                "http",
            ),
        ],
    );
    let out = dir.path().join("made.tape");
    // No --listen: only where the recording's listeners were.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reprise"));
    command
        .arg("mock")
        .arg(&tape)
        .args(["--recorded-listeners", "--out", s(&out)]);
    let mock = Recorder::spawn(command);
    // It said where it listens: first where the first recorded call went.
    assert_eq!(mock.addr.to_string(), route_listen);
    let replaying = format!("x-reprise-replay: {}", display_id(&[1; 16]));
    // The route's call comes with Host: 127.0.0.1:PORT, and matches the
    // recorded authority.
    let (status, _, body) = call(
        &format!("http://{route_listen}/charge"),
        &["-H", &replaying, "-X", "POST"],
    );
    assert_eq!((status, body.as_str()), (200, "charged"));
    // Through the forward proxy: absolute form, its own authority.
    let (status, _, body) = call(
        "http://inventory:8080/stock",
        &["-x", &format!("http://{proxy_listen}"), "-H", &replaying],
    );
    assert_eq!((status, body.as_str()), (200, "7 left"));
    let stderr = stop_expecting(mock, 0);
    assert!(
        stderr.contains(&format!("mocking http://{proxy_listen} (egress proxy) too")),
        "{stderr}"
    );
    let made = read_tape(&out);
    assert_eq!(made.len(), 2);
    let source = made[0].source.as_ref().unwrap();
    assert_eq!(
        (source.listener.as_str(), source.route.as_str()),
        (route_listen.as_str(), "pay")
    );
    let request = made[0].request.as_ref().unwrap();
    assert_eq!(
        (request.scheme.as_str(), request.authority.as_str()),
        ("https", "payments.example")
    );
    let source = made[1].source.as_ref().unwrap();
    assert_eq!(
        (source.listener.as_str(), source.route.as_str()),
        (proxy_listen.as_str(), "")
    );
    assert_eq!(
        made[1].request.as_ref().unwrap().authority,
        "inventory:8080"
    );
}

#[test]
fn bad_out_paths_and_recordings_without_egress_listeners_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    write_exchanges(
        &tape,
        &[inbound(1), recorded(11, Some(1), ("GET", "a", "/"), "x")],
    );
    let existing = dir.path().join("existing.tape");
    std::fs::write(&existing, "keep me").unwrap();
    let missing_dir = dir.path().join("no-such-dir/made.tape");
    let link = dir.path().join("link.tape");
    std::os::unix::fs::symlink(dir.path().join("elsewhere.tape"), &link).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--out", s(&missing_dir)], "--out"),
        (vec!["--out", s(&existing)], "--out"),
        (vec!["--out", s(&link)], "--out"),
        (vec!["--recorded-listeners"], "no egress listeners recorded"),
    ];
    for (args, want) in cases {
        let mut all = vec!["mock", s(&tape), "--listen", "127.0.0.1:0"];
        all.extend(&args);
        let out = reprise(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    // Nothing was written through the link, nor over the file.
    assert!(!dir.path().join("elsewhere.tape").exists());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    // --fallthrough-writes means nothing without --fallthrough.
    let out = reprise(&["mock", s(&tape), "--fallthrough-writes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--fallthrough <URL>"),
        "{}",
        text(&out.stderr)
    );
}

/// The echo service on 127.0.0.1 counting the gRPC calls it gets (an
/// interceptor sees each before the service does).
async fn start_counting_echo() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use reprise_testkit::echo::echo_server::EchoServer;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let service = EchoServer::with_interceptor(
        reprise_testkit::EchoService::default(),
        move |request: tonic::Request<()>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(request)
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_grpc_call_never_reaches_the_fallthrough_upstream_unless_writes_may() {
    use std::sync::atomic::Ordering;
    // A recording of one call, "hello".
    let echo = reprise_testkit::start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "echo.tape");
    let recorder = Recorder::start(&format!("http://{echo}"), &tape, &[]);
    let mut client = reprise_testkit::echo_client(recorder.addr).await;
    client.unary(note("hello", 7)).await.unwrap();
    drop(client);
    recorder.stop_cleanly("-INT");

    let (upstream, calls) = start_counting_echo().await;
    let upstream_url = format!("http://{upstream}");
    // The counter counts: a call straight to the upstream.
    let mut direct = reprise_testkit::echo_client(upstream).await;
    direct.unary(note("direct", 1)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let mut args = vec!["--inbound", "--ignore-authority", "--log"];
    args.extend(["--fallthrough", &upstream_url]);
    let mock = Recorder::mock(&tape, &args);
    let mut client = reprise_testkit::echo_client(mock.addr).await;
    // The recorded call is answered from the recording; the missed one
    // as a miss, and the upstream gets neither.
    let hit = client.unary(note("hello", 7)).await.unwrap();
    assert_eq!(hit.get_ref().text, "HELLO");
    let missed = client.unary(note("other", 1)).await.unwrap_err();
    assert_eq!(missed.code(), tonic::Code::Unavailable);
    assert!(missed.message().contains("reprise mock miss"), "{missed:?}");
    drop(client);
    let stderr = stop_expecting(mock, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the upstream got a call");
    assert!(
        stderr.contains("gRPC calls fall through only with --fallthrough-writes"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "1 missed writes not sent to {upstream_url} (--fallthrough-writes sends them)"
        )),
        "{stderr}"
    );

    // With --fallthrough-writes the missed call is forwarded, once.
    args.push("--fallthrough-writes");
    let mock = Recorder::mock(&tape, &args);
    let mut client = reprise_testkit::echo_client(mock.addr).await;
    let answer = client.unary(note("other", 1)).await.unwrap();
    assert_eq!(answer.get_ref().text, "OTHER");
    assert_eq!(
        answer.metadata().get("x-reprise-mock-fallthrough").unwrap(),
        "1"
    );
    drop(client);
    let stderr = stop_expecting(mock, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(stderr.contains("1 missed calls fell through"), "{stderr}");
}
