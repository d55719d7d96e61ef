//! `reprise record` end to end: the real binary between real clients
//! (tonic, curl, raw sockets) and real services on 127.0.0.1, stopped by
//! a real signal; then the tape is read back and checked field by field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use reprise_model::{Direction, Exchange, HeaderList, Protocol};
use reprise_testkit::echo::{Count, Note};
use reprise_testkit::{echo_client, start_echo};

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_all_three_streaming_kinds_are_forwarded_and_recorded() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "grpc.tape");
    let recorder = Recorder::start(
        &format!("http://{echo}"),
        &tape,
        &["--admin", "127.0.0.1:0", "--service", "echo"],
    );
    let mut direct = echo_client(echo).await;
    let mut proxied = echo_client(recorder.addr).await;

    // Unary, ok and failing: the same answer as straight from the service.
    let want = direct.unary(note("hello", 7)).await.unwrap();
    let got = proxied.unary(note("hello", 7)).await.unwrap();
    assert_eq!(got.get_ref(), want.get_ref());
    assert_eq!(got.metadata().get("x-echo").unwrap(), "unary");
    let failed = proxied.unary(note("fail", 0)).await.unwrap_err();
    assert_eq!(
        (failed.code(), failed.message()),
        (tonic::Code::NotFound, "no such note: fail")
    );

    // Server streaming: three notes, 40 ms apart.
    let notes = streamed_notes(&mut proxied, Count { n: 3, gap_ms: 40 }).await;
    assert_eq!(notes, ["note 0", "note 1", "note 2"]);

    // Client streaming and bidi.
    let sent = vec![note("a", 1), note("b", 2), note("c", 3)];
    let joined = proxied
        .client_stream(tokio_stream::iter(sent.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((joined.text.as_str(), joined.number), ("a+b+c", 6));
    let mut bidi = proxied
        .bidi(tokio_stream::iter(sent.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut doubled = Vec::new();
    while let Some(note) = bidi.message().await.unwrap() {
        doubled.push(note.number);
    }
    assert_eq!(doubled, [2, 4, 6]);

    // The admin endpoint counts them.
    let (metrics, _) = curl(&[&format!("http://{}/metrics", recorder.admin.unwrap())]);
    assert!(
        metrics
            .lines()
            .any(|l| l == "reprise_exchanges_seen_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reprise_upstream_latency_seconds_count 5"),
        "{metrics}"
    );
    let (health, _) = curl(&[&format!("http://{}/healthz", recorder.admin.unwrap())]);
    assert_eq!(health, "ok\n");

    let stderr = recorder.stop_cleanly("-TERM");
    assert!(stderr.contains("5 exchanges seen, 5 recorded"), "{stderr}");

    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 5);
    let by_method = |name: &str| -> Vec<&Exchange> {
        exchanges
            .iter()
            .filter(|e| e.request.as_ref().unwrap().path == format!("/reprise.test.v1.Echo/{name}"))
            .collect()
    };
    for exchange in &exchanges {
        assert_eq!(exchange.protocol(), Protocol::Grpc);
        assert_eq!(exchange.source.as_ref().unwrap().service, "echo");
        assert_eq!(exchange.request.as_ref().unwrap().method, "POST");
    }
    let unary = by_method("Unary");
    assert_eq!(unary.len(), 2);
    let ok = unary
        .iter()
        .find(|e| e.response.as_ref().unwrap().grpc.as_ref().unwrap().code == 0)
        .unwrap();
    let response = ok.response.as_ref().unwrap();
    assert_eq!(response.headers.header_str("x-echo"), Some("unary"));
    assert_eq!(response.trailers.header_str("grpc-status"), Some("0"));
    let messages: Vec<_> = ok
        .messages
        .iter()
        .map(|m| (m.direction(), prost::Message::decode(&m.data[..]).unwrap()))
        .collect();
    assert_eq!(
        messages,
        [
            (Direction::Request, note("hello", 7)),
            (Direction::Response, want.into_inner())
        ]
    );
    let not_found = unary
        .iter()
        .find(|e| e.response.as_ref().unwrap().grpc.as_ref().unwrap().code == 5)
        .unwrap();
    assert_eq!(
        not_found
            .response
            .as_ref()
            .unwrap()
            .grpc
            .as_ref()
            .unwrap()
            .message,
        "no such note: fail"
    );

    let server = by_method("ServerStream")[0];
    let responses: Vec<_> = server
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Response)
        .collect();
    assert_eq!(responses.len(), 3);
    // The service sends the last message 80 ms after it got the request,
    // which the proxy had before: its offset (from the request's arrival)
    // is at least that, however late a busy machine delivers the others.
    // (A gap between two messages is not certain: under load the first
    // can be held back until the second.) The order always is.
    assert!(
        responses
            .windows(2)
            .all(|w| w[0].offset_ns <= w[1].offset_ns)
    );
    let last = responses[2].offset_ns;
    assert!(
        last >= 80_000_000,
        "messages keep their time offsets (the last at {last} ns)"
    );
    assert_eq!(
        server
            .messages
            .iter()
            .filter(|m| m.direction() == Direction::Request)
            .count(),
        1
    );

    let client = by_method("ClientStream")[0];
    let requests: Vec<Note> = client
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Request)
        .map(|m| prost::Message::decode(&m.data[..]).unwrap())
        .collect();
    assert_eq!(requests, sent);
    let bidi = by_method("Bidi")[0];
    assert_eq!(bidi.messages.len(), 6);
    assert_eq!(
        bidi.response.as_ref().unwrap().grpc.as_ref().unwrap().code,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_over_http1_and_h2c_with_redaction_and_a_private_tape() {
    let echo = start_json().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "json.tape");
    let recorder = Recorder::start(
        &format!("http://{echo}"),
        &tape,
        &[
            "--redact-json",
            "$..password",
            "--redact-header",
            "x-api-key",
        ],
    );
    let body = r#"{"user":"ann","password":"hunter2","card":{"number":"4111"}}"#;
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let (out, _) = curl(&[
            flag,
            "-H",
            "content-type: application/json",
            "-H",
            "x-api-key: k-123",
            "-H",
            "authorization: Bearer t0ken",
            "--data-binary",
            body,
            &recorder.url("/echo?via=curl"),
        ]);
        assert_eq!(
            out, body,
            "the upstream got, and the client got back, the real body"
        );
    }
    recorder.stop_cleanly("-INT");

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&tape).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let exchanges = read_tape(&tape);
    let protocols: Vec<Protocol> = exchanges.iter().map(Exchange::protocol).collect();
    assert_eq!(protocols, [Protocol::Http11, Protocol::Http2]);
    for exchange in &exchanges {
        let request = exchange.request.as_ref().unwrap();
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/echo?via=curl")
        );
        assert_eq!(request.headers.header_str("x-api-key"), Some("[redacted]"));
        assert_eq!(
            request.headers.header_str("authorization"),
            Some("[redacted]")
        );
        let recorded: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(recorded["password"], "[redacted]");
        assert_eq!(recorded["card"]["number"], "4111");
        let response = exchange.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        let echoed: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            echoed["password"], "[redacted]",
            "response bodies are redacted too"
        );
        assert!(exchange.flags.as_ref().unwrap().redacted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_none_or_a_level_sets_how_blocks_are_stored() {
    let echo = start_json().await;
    let dir = tempfile::tempdir().unwrap();
    // Level 1 (the default), a fast negative level, and none.
    for (flag, codec) in [(None, 1), (Some("-5"), 1), (Some("none"), 0)] {
        let tape = temp_tape(&dir, &format!("{}.tape", flag.unwrap_or("default")));
        let args: Vec<&str> = flag.map(|f| vec!["--compression", f]).unwrap_or_default();
        let recorder = Recorder::start(&format!("http://{echo}"), &tape, &args);
        let body = "{\"n\":1}".repeat(200);
        let (out, _) = curl(&["--data-binary", &body, &recorder.url("/echo")]);
        assert_eq!(out, body);
        recorder.stop_cleanly("-TERM");
        let (blocks, damage) = reprise_tape::block_index(&tape).unwrap();
        assert!(damage.is_empty(), "{damage:?}");
        assert!(!blocks.is_empty());
        assert!(
            blocks.iter().all(|b| b.codec as u8 == codec),
            "{flag:?}: {blocks:?}"
        );
        let exchanges = read_tape(&tape);
        assert_eq!(exchanges.len(), 1, "{flag:?}");
        assert_eq!(
            &exchanges[0].request.as_ref().unwrap().body[..],
            body.as_bytes()
        );
    }
}

/// An axum service that echoes the body, and upgrades `/upgrade` to a
/// byte echo (the shape of a WebSocket, without its framing).
async fn start_json() -> SocketAddr {
    use axum::routing::{any, post};
    async fn echo(
        headers: axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> axum::response::Response {
        let mut response = axum::response::Response::new(body);
        if let Some(kind) = headers.get("content-type") {
            response.headers_mut().insert("content-type", kind.clone());
        }
        response
    }
    async fn upgrade(mut request: axum::extract::Request) -> axum::response::Response {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        axum::response::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(axum::body::Body::empty())
            .unwrap()
    }
    let app = axum::Router::new()
        .route("/echo", post(echo))
        .route("/upgrade", any(upgrade));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_and_are_recorded_as_upgraded() {
    let upstream = start_json().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "upgrade.tape");
    let recorder = Recorder::start(&format!("http://{upstream}"), &tape, &[]);
    let addr = recorder.addr;
    let echoed = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(
                b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        stream.write_all(b"ping over the tunnel").unwrap();
        let mut buf = [0u8; 20];
        stream.read_exact(&mut buf).unwrap();
        buf
    })
    .await
    .unwrap();
    assert_eq!(&echoed, b"ping over the tunnel");
    recorder.stop_cleanly("-TERM");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].status(), 101);
    assert!(exchanges[0].flags.as_ref().unwrap().upgraded);
}

/// Reads an HTTP/1.1 response head, byte by byte (no more than the head).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_what_http_says_and_the_proxy_stays_up() {
    let upstream = start_json().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "faults.tape");
    let recorder = Recorder::start(
        &format!("http://{upstream}"),
        &tape,
        &["--header-timeout", "1s"],
    );
    let addr = recorder.addr;
    tokio::task::spawn_blocking(move || {
        let exchange = |bytes: &[u8]| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(bytes).unwrap();
            read_head(&mut stream)
        };
        // A malformed request line, a malformed header, oversized headers.
        assert!(exchange(b"NOT A REQUEST\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(
            exchange(b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n")
                .starts_with("HTTP/1.1 400")
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(200 << 10)
        );
        assert!(exchange(big.as_bytes()).starts_with("HTTP/1.1 431"));

        // A client sending its head a byte at a time is cut off by the
        // header timeout (1 s), not served forever.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut closed = false;
        for byte in b"GET /echo HTTP/1.1\r\nHost: x\r\nx-slow: "
            .iter()
            .cycle()
            .take(40)
        {
            if slow.write_all(&[*byte]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut rest = Vec::new();
        let read = slow.read_to_end(&mut rest);
        assert!(
            closed || read.is_ok() || read.is_err(),
            "the slow connection ends"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "cut off at the header timeout"
        );
        assert!(
            rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );

        // Broken HTTP/2: the preface, then garbage where frames belong.
        let mut h2 = TcpStream::connect(addr).unwrap();
        h2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
            .unwrap();
        let mut answer = Vec::new();
        let _ = h2.read_to_end(&mut answer);
        // The server says GOAWAY (frame type 7) and closes.
        assert!(
            answer.windows(4).any(|w| w[3] == 7),
            "a GOAWAY frame: {answer:?}"
        );
    })
    .await
    .unwrap();

    // Still serving.
    let (out, _) = curl(&["--data-binary", "still here", &recorder.url("/echo")]);
    assert_eq!(out, "still here");
    recorder.stop_cleanly("-TERM");
    // Requests that never became HTTP are not exchanges: only the last is on tape.
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(
        &exchanges[0].request.as_ref().unwrap().body[..],
        b"still here"
    );
}

#[test]
fn bad_arguments_are_one_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("t.tape");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tape_arg = tape.to_str().unwrap();
    let garbage_path = dir.path().join("garbage.pem");
    std::fs::write(&garbage_path, "this is not PEM\n").unwrap();
    let garbage = garbage_path.to_str().unwrap();
    let base = ["record", "--listen", "127.0.0.1:0", "--out", tape_arg];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--upstream", "ftp://x"],
            "the scheme must be http or https",
        ),
        (
            vec!["--upstream", "http://x/api"],
            "paths are forwarded as they come",
        ),
        (
            vec!["--upstream", "http://x", "--match", "colour=red"],
            "--match \"colour=red\"",
        ),
        (
            vec!["--upstream", "http://x", "--sample", "1.5"],
            "--sample",
        ),
        (
            vec!["--upstream", "http://x", "--max-body", "lots"],
            "--max-body \"lots\"",
        ),
        (
            vec!["--upstream", "http://x", "--drain-timeout", "soon"],
            "--drain-timeout \"soon\"",
        ),
        (
            vec!["--upstream", "http://x", "--redact-json", "password"],
            "--redact-json \"password\"",
        ),
        (
            vec![
                "--upstream",
                "http://x",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ],
            "/nonexistent.pem",
        ),
        (
            vec![
                "--upstream",
                "http://x",
                "--upstream-ca",
                "/nonexistent-ca.pem",
            ],
            "/nonexistent-ca.pem",
        ),
        (
            vec!["--upstream", "http://x", "--admin", "localhost"],
            "--admin \"localhost\": expected IP:PORT",
        ),
        (
            vec!["--upstream", "http://x", "--queue", "0"],
            "--queue must be at least 1",
        ),
        (
            vec!["--upstream", "http://x", "--threads", "0"],
            "--threads must be at least 1",
        ),
        (
            vec!["--upstream", "http://x", "--compression", "fast"],
            "--compression \"fast\": expected none or a zstd level from",
        ),
        (
            vec!["--upstream", "http://x", "--compression", "99"],
            "--compression \"99\": expected none or a zstd level from",
        ),
        (
            vec!["--upstream", "http://x", "--max-record-rate", "0"],
            "--max-record-rate 0 would record nothing",
        ),
        (
            vec!["--upstream", "http://x", "--redact-header", "bad name"],
            "--redact-header \"bad name\": not a header name",
        ),
        (
            vec![
                "--upstream",
                "http://x",
                "--tls-cert",
                garbage,
                "--tls-key",
                garbage,
            ],
            "no certificate in the file",
        ),
        (
            vec!["--upstream", "http://x", "--upstream-ca", garbage],
            "no certificate in the file",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = base.to_vec();
        args.extend(extra.iter());
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("reprise: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run(&[
        "record",
        "--listen",
        &port,
        "--upstream",
        "http://127.0.0.1:9",
        "--out",
        tape_arg,
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!("cannot listen on {port}")),
        "{stderr}"
    );
    assert!(
        !tape.exists(),
        "a proxy that never started leaves no tape behind"
    );
    let (code, stderr) = run(&[
        "record",
        "--listen",
        "nowhere",
        "--upstream",
        "http://x",
        "--out",
        tape_arg,
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--listen \"nowhere\": expected IP:PORT"),
        "{stderr}"
    );
    // An existing tape is not overwritten.
    std::fs::write(&tape, b"precious").unwrap();
    let (code, stderr) = run(&[
        "record",
        "--upstream",
        "http://127.0.0.1:9",
        "--out",
        tape_arg,
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("exists"), "{stderr}");
    assert_eq!(std::fs::read(&tape).unwrap(), b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_at_most_the_unsealed_block() {
    let upstream = start_json().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "killed.tape");
    // One serving thread: one block being filled, calls in order.
    let recorder = Recorder::start(
        &format!("http://{upstream}"),
        &tape,
        &["--admin", "127.0.0.1:0", "--threads", "1"],
    );
    let send = |i: usize| {
        curl(&[
            "--data-binary",
            &format!("call {i}"),
            &recorder.url("/echo"),
        ]);
    };
    for i in 0..20 {
        send(i);
    }
    // Sealed and written: the tape's own count says so.
    recorder.wait_for_counter("reprise_exchanges_recorded_total", 20);
    // Five more, in the block being filled (or sealed since).
    for i in 20..25 {
        send(i);
    }
    let (code, _) = recorder.stop("-KILL");
    assert_ne!(code, 0);
    // Every sealed block survives, undamaged (read_tape fails on damage);
    // of the rest, at most the unsealed block is lost.
    let bodies: Vec<String> = read_tape(&tape)
        .iter()
        .map(|e| String::from_utf8_lossy(&e.request.as_ref().unwrap().body).into_owned())
        .collect();
    assert!((20..=25).contains(&bodies.len()), "{bodies:?}");
    let want: Vec<String> = (0..bodies.len()).map(|i| format!("call {i}")).collect();
    assert_eq!(bodies, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_with_alpn_and_an_https_upstream() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());

    // curl over TLS, both ALPN choices, to a proxy in front of the JSON service.
    let json = start_json().await;
    let json_tape = temp_tape(&dir, "json-tls.tape");
    let json_proxy = Recorder::start(
        &format!("http://{json}"),
        &json_tape,
        &["--tls-cert", cert, "--tls-key", key],
    );
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let url = format!("https://localhost:{}/echo", json_proxy.addr.port());
        let (out, _) = curl(&[
            flag,
            "--cacert",
            cert,
            "--data-binary",
            "sealed",
            "-w",
            " %{http_version}",
            &url,
        ]);
        assert_eq!(out, format!("sealed {version}"));
    }
    json_proxy.stop_cleanly("-TERM");
    let exchanges = read_tape(&json_tape);
    let protocols: Vec<Protocol> = exchanges.iter().map(Exchange::protocol).collect();
    assert_eq!(protocols, [Protocol::Http11, Protocol::Http2]);
    assert!(
        exchanges
            .iter()
            .all(|e| e.request.as_ref().unwrap().scheme == "https")
    );

    // gRPC through two proxies: h2c to the outer one, which trusts the
    // inner one's certificate as its upstream CA and speaks TLS with ALPN
    // h2 to it; the inner one forwards to the gRPC service.
    let inner_tape = temp_tape(&dir, "inner.tape");
    let inner = Recorder::start(
        &format!("http://{echo}"),
        &inner_tape,
        &["--tls-cert", cert, "--tls-key", key],
    );
    let outer_tape = temp_tape(&dir, "outer.tape");
    let outer = Recorder::start(
        &format!("https://localhost:{}", inner.addr.port()),
        &outer_tape,
        &["--upstream-ca", cert],
    );
    let mut client = echo_client(outer.addr).await;
    let got = client
        .unary(note("through tls", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.text, "THROUGH TLS");
    outer.stop_cleanly("-TERM");
    inner.stop_cleanly("-TERM");
    let inner_exchanges = read_tape(&inner_tape);
    assert_eq!(inner_exchanges.len(), 1);
    let grpc = &inner_exchanges[0];
    assert_eq!(
        (
            grpc.protocol(),
            grpc.request.as_ref().unwrap().scheme.as_str()
        ),
        (Protocol::Grpc, "https")
    );
    assert_eq!(
        grpc.request.as_ref().unwrap().headers.header_str("via"),
        Some("2 reprise")
    );
    let outer_exchanges = read_tape(&outer_tape);
    assert_eq!(outer_exchanges.len(), 1);
    assert_eq!(
        outer_exchanges[0]
            .response
            .as_ref()
            .unwrap()
            .grpc
            .as_ref()
            .unwrap()
            .code,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_as_a_third_party_upstream_over_http1_and_h2c() {
    let nginx = Nginx::start();
    let dir = tempfile::tempdir().unwrap();
    for (upstream, flag, protocol) in [
        (nginx.http1, "--http1.1", Protocol::Http11),
        (nginx.h2c, "--http2-prior-knowledge", Protocol::Http2),
    ] {
        let tape = temp_tape(&dir, &format!("nginx-{}.tape", upstream.port()));
        let recorder = Recorder::start(&format!("http://{upstream}"), &tape, &[]);
        let (direct, _) = curl(&[flag, &format!("http://{upstream}/api/item.json")]);
        let (proxied, _) = curl(&[flag, &recorder.url("/api/item.json")]);
        assert_eq!(proxied, direct);
        let (missing, _) = curl(&[
            flag,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &recorder.url("/api/missing.json"),
        ]);
        assert_eq!(missing, "404");
        recorder.stop_cleanly("-TERM");
        let exchanges = read_tape(&tape);
        assert_eq!(exchanges.len(), 2);
        let item = &exchanges[0];
        assert_eq!(item.protocol(), protocol);
        let response = item.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], direct.as_bytes());
        assert_eq!(response.headers.header_str("x-served-by"), Some("nginx"));
        assert!(
            response
                .headers
                .header_str("server")
                .unwrap()
                .starts_with("nginx")
        );
        assert_eq!(exchanges[1].status(), 404);
    }
}

/// A raw hyper HTTP/1.1 upstream that accepts CONNECT to `allowed:1`
/// (then echoes bytes through the tunnel) and refuses any other target;
/// it reports each target it was asked for.
async fn start_connect_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, targets) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                let _ = seen.send(format!("{} {}", request.method(), request.uri()));
                let allowed = *request.uri() == "allowed:1";
                if allowed {
                    let upgrade = hyper::upgrade::on(&mut request);
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let Ok(upgraded) = upgrade.await else { return };
                        let mut io = hyper_util::rt::TokioIo::new(upgraded);
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                let status = if allowed { 200 } else { 403 };
                let body = if allowed { "" } else { "not that one\n" };
                async move {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .body(Full::new(bytes::Bytes::from(body)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_goes_to_the_upstream_which_decides_and_is_recorded_as_upgraded() {
    let (upstream, mut targets) = start_connect_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "connect.tape");
    let recorder = Recorder::start(&format!("http://{upstream}"), &tape, &[]);
    let addr = recorder.addr;
    let (tunnelled, refused) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"CONNECT allowed:1 HTTP/1.1\r\nHost: allowed:1\r\n\r\n")
            .unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stream.write_all(b"through the tunnel").unwrap();
        let mut buf = [0u8; 18];
        stream.read_exact(&mut buf).unwrap();

        let mut other = TcpStream::connect(addr).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        other
            .write_all(b"CONNECT elsewhere:22 HTTP/1.1\r\nHost: elsewhere:22\r\n\r\n")
            .unwrap();
        (buf, read_head(&mut other))
    })
    .await
    .unwrap();
    assert_eq!(&tunnelled, b"through the tunnel");
    assert!(
        refused.starts_with("HTTP/1.1 403"),
        "the upstream's refusal reaches the client: {refused}"
    );
    // Both went to the upstream, named as the client named them.
    assert_eq!(targets.recv().await.unwrap(), "CONNECT allowed:1");
    assert_eq!(targets.recv().await.unwrap(), "CONNECT elsewhere:22");
    recorder.stop_cleanly("-TERM");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 2);
    let tunnel = exchanges.iter().find(|e| e.status() == 200).unwrap();
    let request = tunnel.request.as_ref().unwrap();
    assert_eq!(
        (request.method.as_str(), request.authority.as_str()),
        ("CONNECT", "allowed:1")
    );
    assert!(tunnel.flags.as_ref().unwrap().upgraded);
    let refusal = exchanges.iter().find(|e| e.status() == 403).unwrap();
    assert_eq!(
        &refusal.response.as_ref().unwrap().body[..],
        b"not that one\n"
    );
    assert!(!refusal.flags.as_ref().is_some_and(|f| f.upgraded));
}
