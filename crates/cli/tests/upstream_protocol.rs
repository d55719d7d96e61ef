//! `--upstream-protocol`: HTTP/2 clients (h2c, and TLS with ALPN h2) in
//! front of HTTP/1.1-only services (Python's `http.server`, nginx without
//! `http2`), translated both ways; gRPC still over HTTP/2 to tonic;
//! forced protocols and their errors, for `record`, `mirror` and `mock
//! --fallthrough`; and a request whose chunked body is not valid, which
//! the proxy answers itself with a 400.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use reprise_model::{ErrorKind, Exchange, HeaderList, Protocol};
use reprise_testkit::{echo_client, start_echo};
use support::{
    Nginx, PythonHttp, Recorder, curl, note, read_tape, reprise, s, self_signed, temp_tape, text,
};

const ITEM: &str = r#"{"id":7,"name":"teapot"}"#;
const SHOWN: &str = " %{http_code} %{http_version}";

#[test]
fn h2_clients_reach_http1_only_services_through_record() {
    let python = PythonHttp::serving(&[("api/item.json", ITEM)]);
    let nginx = Nginx::serving(&[("api/item.json", ITEM)]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    for (name, upstream) in [
        ("python", python.url()),
        ("nginx", format!("http://{}", nginx.http1)),
    ] {
        let plain_tape = temp_tape(&dir, &format!("{name}-plain.tape"));
        let plain = Recorder::start(&upstream, &plain_tape, &[]);
        let tls_tape = temp_tape(&dir, &format!("{name}-tls.tape"));
        let tls = Recorder::start(
            &upstream,
            &tls_tape,
            &["--tls-cert", s(&cert), "--tls-key", s(&key)],
        );
        let h2c = plain.url("/api/item.json");
        let (out, _) = curl(&["--http2-prior-knowledge", "-w", SHOWN, &h2c]);
        assert_eq!(out, format!("{ITEM} 200 2"), "{name}: h2c");
        let alpn = format!("https://localhost:{}/api/item.json", tls.addr.port());
        let (out, _) = curl(&["--http2", "--cacert", s(&cert), "-w", SHOWN, &alpn]);
        assert_eq!(out, format!("{ITEM} 200 2"), "{name}: TLS with ALPN h2");
        // HTTP/1.1 clients as before, on the same proxy.
        let (out, _) = curl(&["--http1.1", "-w", SHOWN, &h2c]);
        assert_eq!(out, format!("{ITEM} 200 1.1"), "{name}: HTTP/1.1");
        plain.stop_cleanly("-TERM");
        tls.stop_cleanly("-TERM");

        // The recording keeps the protocol the client spoke.
        let plain = read_tape(&plain_tape);
        let protocols: Vec<Protocol> = plain.iter().map(Exchange::protocol).collect();
        assert_eq!(protocols, [Protocol::Http2, Protocol::Http11], "{name}");
        let tls = read_tape(&tls_tape);
        assert_eq!(tls.len(), 1, "{name}");
        assert_eq!(tls[0].protocol(), Protocol::Http2, "{name}");
        let response = tls[0].response.as_ref().unwrap();
        assert_eq!(
            (response.status, &response.body[..]),
            (200, ITEM.as_bytes())
        );
    }
}

/// What the HTTP/1.1 upstream of [`http1_upstream`] read: a request's
/// head and its body's bytes as they came, or the bytes of a connection
/// that ended before its request was whole.
#[derive(Debug)]
enum Read1 {
    Whole(String, Vec<u8>),
    Incomplete(Vec<u8>),
}

/// A raw HTTP/1.1-only upstream: answers HTTP/2's preface as Python
/// does (a 505, then the close), and a request, once its (chunked) body
/// has ended, with `answer`. What each connection read goes to the
/// returned channel.
fn http1_upstream(answer: &'static [u8]) -> (SocketAddr, mpsc::Receiver<Read1>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                socket
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end + 4]).to_string();
                        if head.starts_with("PRI * HTTP/2.0") {
                            let _ = socket.write_all(
                                b"HTTP/1.1 505 HTTP Version Not Supported\r\nconnection: close\r\n\r\n",
                            );
                            return;
                        }
                        let body = &data[end + 4..];
                        let chunked = head
                            .to_ascii_lowercase()
                            .contains("transfer-encoding: chunked");
                        let ended = !chunked
                            || body.starts_with(b"0\r\n\r\n")
                            || body.windows(7).any(|w| w == b"\r\n0\r\n\r\n");
                        if ended {
                            let _ = tx.send(Read1::Whole(head, body.to_vec()));
                            let _ = socket.write_all(answer);
                            return;
                        }
                    }
                    match socket.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(Read1::Incomplete(data));
                            return;
                        }
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_upload_without_length_goes_chunked_and_h1_trailers_come_back_as_h2_trailers() {
    let (upstream, seen) = http1_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\
          trailer: x-sum\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\n\
          6\r\nthanks\r\n0\r\nx-sum: 11\r\n\r\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "upload.tape");
    let proxy = Recorder::start(&format!("http://{upstream}"), &tape, &[]);

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // Two frames of a stream whose length nobody knows: no content-length.
    let frames = ["hello", " world"]
        .map(|part| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(part))));
    let request = http::Request::builder()
        .method("POST")
        .uri(proxy.url("/upload"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("te", "trailers")
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("keep-alive").is_none());
    let body = response.into_body().collect().await.unwrap();
    assert_eq!(body.trailers().unwrap()["x-sum"], "11");
    assert_eq!(body.to_bytes(), "thanks");

    // The upstream got HTTP/1.1: chunked, its own Host, one cookie field.
    // (A probe asked first whether it speaks HTTP/2: it does not.)
    let Read1::Whole(head, body) = seen.recv_timeout(Duration::from_secs(20)).unwrap() else {
        panic!("the request reached the upstream whole");
    };
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("POST /upload HTTP/1.1\r\n"), "{head}");
    assert!(
        lower.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(!lower.contains("content-length"), "{head}");
    assert!(
        lower.contains(&format!("\r\nhost: {upstream}\r\n")),
        "{head}"
    );
    assert!(lower.contains("\r\ncookie: a=1; b=2\r\n"), "{head}");
    assert_eq!(lower.matches("cookie:").count(), 1, "{head}");
    // `TE` is not sent without `Connection: te` (RFC 9110 §10.1.4).
    assert!(!lower.contains("\r\nte:"), "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.ends_with("0\r\n\r\n"), "{body:?}");
    assert!(
        body.contains("hello") && body.contains(" world"),
        "{body:?}"
    );
    proxy.stop_cleanly("-TERM");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].protocol(), Protocol::Http2);
    assert_eq!(
        &exchanges[0].request.as_ref().unwrap().body[..],
        b"hello world"
    );
    let response = exchanges[0].response.as_ref().unwrap();
    assert_eq!(&response.body[..], b"thanks");
    assert_eq!(response.trailers.header_str("x-sum"), Some("11"));
}

#[test]
fn preserve_host_turns_the_authority_into_host() {
    let (upstream, seen) = http1_upstream(b"HTTP/1.1 204 No Content\r\n\r\n");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Recorder::start(
        &format!("http://{upstream}"),
        &temp_tape(&dir, "host.tape"),
        &["--preserve-host"],
    );
    let (out, _) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "host: shop.example:8443",
        "-w",
        SHOWN,
        &proxy.url("/"),
    ]);
    assert_eq!(out, " 204 2");
    let Read1::Whole(head, _) = seen.recv_timeout(Duration::from_secs(20)).unwrap() else {
        panic!("the request reached the upstream whole");
    };
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nhost: shop.example:8443\r\n"), "{head}");
    assert_eq!(lower.matches("\r\nhost:").count(), 1, "{head}");
    proxy.stop_cleanly("-TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_goes_over_h2_to_tonic_and_h1_refuses_it_clearly() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    for protocol in ["auto", "h2"] {
        let tape = temp_tape(&dir, &format!("grpc-{protocol}.tape"));
        let proxy = Recorder::start(
            &format!("http://{echo}"),
            &tape,
            &["--upstream-protocol", protocol],
        );
        let mut client = echo_client(proxy.addr).await;
        let got = client.unary(note("over h2", 1)).await.unwrap().into_inner();
        assert_eq!(got.text, "OVER H2", "{protocol}");
        proxy.stop_cleanly("-TERM");
        assert_eq!(read_tape(&tape)[0].protocol(), Protocol::Grpc);
    }
    let tape = temp_tape(&dir, "grpc-h1.tape");
    let proxy = Recorder::start(
        &format!("http://{echo}"),
        &tape,
        &["--upstream-protocol", "h1"],
    );
    let mut client = echo_client(proxy.addr).await;
    let status = client.unary(note("over h1", 1)).await.unwrap_err();
    assert!(status.message().contains("gRPC needs HTTP/2"), "{status:?}");
    proxy.stop_cleanly("-TERM");
    let exchanges = read_tape(&tape);
    let error = exchanges[0].error.as_ref().unwrap();
    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert!(error.message.contains("--upstream-protocol"), "{error:?}");
}

#[test]
fn https_upstreams_are_asked_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let python = PythonHttp::serving_tls(&[("api/item.json", ITEM)], &cert, &key);
    let trust = ["--upstream-ca", s(&cert)];
    let tape = temp_tape(&dir, "https.tape");
    let proxy = Recorder::start(&python.url(), &tape, &trust);
    let (out, _) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        SHOWN,
        &proxy.url("/api/item.json"),
    ]);
    assert_eq!(out, format!("{ITEM} 200 2"));
    proxy.stop_cleanly("-TERM");
    assert_eq!(read_tape(&tape)[0].protocol(), Protocol::Http2);
    // h2 forced: ALPN says no, at start.
    let refused = temp_tape(&dir, "refused.tape");
    let out = reprise(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &python.url(),
        "--upstream-ca",
        s(&cert),
        "--upstream-protocol",
        "h2",
        "--out",
        s(&refused),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not speak HTTP/2 (ALPN did not agree on h2)"),
        "{stderr}"
    );

    // One whose ALPN agrees on h2 (a reprise TLS listener in front of
    // that Python service) gets HTTP/2 calls over HTTP/2 (and passes them
    // on over HTTP/1.1 itself), HTTP/1.1 calls over HTTP/1.1.
    let inner_tape = temp_tape(&dir, "inner.tape");
    let inner = Recorder::start(
        &python.url(),
        &inner_tape,
        &[
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
            "--upstream-ca",
            s(&cert),
        ],
    );
    let outer_tape = temp_tape(&dir, "outer.tape");
    let outer = Recorder::start(
        &format!("https://localhost:{}", inner.addr.port()),
        &outer_tape,
        &trust,
    );
    for flag in ["--http2-prior-knowledge", "--http1.1"] {
        let (out, _) = curl(&[flag, "-w", SHOWN, &outer.url("/api/item.json")]);
        assert!(out.starts_with(&format!("{ITEM} 200")), "{flag}: {out}");
    }
    outer.stop_cleanly("-TERM");
    inner.stop_cleanly("-TERM");
    let inner: Vec<Protocol> = read_tape(&inner_tape)
        .iter()
        .map(Exchange::protocol)
        .collect();
    assert_eq!(inner, [Protocol::Http2, Protocol::Http11]);
}

#[test]
fn forced_h2_is_h2_or_a_clear_error_at_start() {
    let python = PythonHttp::serving(&[("api/item.json", ITEM)]);
    let nginx = Nginx::serving(&[("api/item.json", ITEM)]);
    let dir = tempfile::tempdir().unwrap();

    // An HTTP/1.1-only upstream: exit 2 before listening, no tape left.
    let tape = temp_tape(&dir, "refused.tape");
    let out = reprise(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &python.url(),
        "--upstream-protocol",
        "h2",
        "--out",
        s(&tape),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not speak HTTP/2"), "{stderr}");
    assert!(!tape.exists());
    // An unknown protocol name is a usage error.
    let out = reprise(&[
        "record",
        "--upstream",
        &python.url(),
        "--upstream-protocol",
        "h3",
        "--out",
        s(&tape),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("h3"), "{}", text(&out.stderr));
    // Nobody there: a clear error too, when h2 is forced.
    let gone = format!("http://127.0.0.1:{}", support::free_port());
    let out = reprise(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &gone,
        "--upstream-protocol",
        "h2",
        "--out",
        s(&tape),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot tell whether the upstream") && stderr.contains("cannot connect"),
        "{stderr}"
    );

    // An h2c-only upstream (nginx `listen ... http2`): HTTP/1.1 clients
    // get through, over HTTP/2, and are recorded as they spoke.
    let tape = temp_tape(&dir, "forced.tape");
    let proxy = Recorder::start(
        &format!("http://{}", nginx.h2c),
        &tape,
        &["--upstream-protocol", "h2"],
    );
    let (out, _) = curl(&["--http1.1", "-w", SHOWN, &proxy.url("/api/item.json")]);
    assert_eq!(out, format!("{ITEM} 200 1.1"));
    // Not so with h1: nginx's h2c port does not speak HTTP/1.1.
    let h1_tape = temp_tape(&dir, "h1.tape");
    let h1 = Recorder::start(
        &format!("http://{}", nginx.h2c),
        &h1_tape,
        &["--upstream-protocol", "h1"],
    );
    let (out, _) = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &h1.url("/api/item.json"),
    ]);
    assert_eq!(out, "502");
    h1.stop_cleanly("-TERM");
    proxy.stop_cleanly("-TERM");
    assert_eq!(read_tape(&tape)[0].protocol(), Protocol::Http11);
}

#[test]
fn mirror_translates_too() {
    let python = PythonHttp::serving(&[("api/item.json", ITEM)]);
    let shadow = PythonHttp::serving(&[("api/item.json", ITEM)]);
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "mirror.tape");
    let shadow_tape = temp_tape(&dir, "shadow.tape");
    let mirror = Recorder::mirror(
        &python.url(),
        &shadow.url(),
        &tape,
        &["--shadow-out", s(&shadow_tape)],
    );
    let (out, _) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        SHOWN,
        &mirror.url("/api/item.json"),
    ]);
    assert_eq!(out, format!("{ITEM} 200 2"));
    mirror.stop_cleanly("-TERM");
    // The shadow speaks HTTP/1.1 only: the copy of the HTTP/2 call went
    // to it over HTTP/1.1, and it answered.
    let copies = read_tape(&shadow_tape);
    assert_eq!(copies.len(), 1);
    assert!(copies[0].error.is_none(), "{:?}", copies[0].error);
    let answer = copies[0].response.as_ref().unwrap();
    assert_eq!((answer.status, &answer.body[..]), (200, ITEM.as_bytes()));
    // And h2 forced to an HTTP/1.1-only primary is an error at start.
    let out = reprise(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &python.url(),
        "--shadow",
        &shadow.url(),
        "--upstream-protocol",
        "h2",
        "--out",
        s(&temp_tape(&dir, "refused.tape")),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not speak HTTP/2"), "{stderr}");
}

#[test]
fn mock_fallthrough_takes_the_upstream_protocol() {
    let nginx = Nginx::serving(&[("api/item.json", ITEM), ("api/other.json", r#"{"id":8}"#)]);
    let python = PythonHttp::serving(&[]);
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "item.tape");
    let recorder = Recorder::start(&format!("http://{}", nginx.http1), &tape, &[]);
    curl(&[&recorder.url("/api/item.json")]);
    recorder.stop_cleanly("-TERM");

    // h2 forced: an HTTP/1.1 caller's miss reaches nginx's h2c port.
    let h2c = format!("http://{}", nginx.h2c);
    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--fallthrough",
            &h2c,
            "--upstream-protocol",
            "h2",
        ],
    );
    let (out, _) = curl(&[
        "--http1.1",
        "-w",
        SHOWN,
        &format!("http://{}/api/other.json", mock.addr),
    ]);
    assert_eq!(out, r#"{"id":8} 200 1.1"#);
    let (code, stderr) = mock.stop("-INT");
    assert_eq!(code, 1, "a fallthrough is still a miss: {stderr}");

    // An HTTP/1.1-only upstream, h2 forced: exit 2 at start.
    let out = reprise(&[
        "mock",
        s(&tape),
        "--inbound",
        "--listen",
        "127.0.0.1:0",
        "--fallthrough",
        &python.url(),
        "--upstream-protocol",
        "h2",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not speak HTTP/2"), "{stderr}");
    // The flag means nothing without --fallthrough.
    let out = reprise(&["mock", s(&tape), "--upstream-protocol", "h2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--fallthrough"),
        "{}",
        text(&out.stderr)
    );
}

/// Sends `request` on a connection of its own to `addr` and reads the
/// answer to the close (a refused body closes it; a valid request must
/// ask to).
fn raw_call(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn an_invalid_chunked_request_body_is_a_400_and_never_reaches_the_upstream_whole() {
    let (upstream, seen) =
        http1_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "chunked.tape");
    let proxy = Recorder::start(&format!("http://{upstream}"), &tape, &["--threads", "1"]);
    for bad in [
        // A chunk size that is not hex.
        &b"5\r\nhello\r\nZZ\r\n\r\n"[..],
        // A chunk longer than its size, then a last chunk.
        b"5\r\nhelloXX\r\n0\r\n\r\n",
    ] {
        let mut request =
            b"POST /upload HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(bad);
        let answer = raw_call(proxy.addr, &request);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("x-reprise-error: request"), "{answer}");
        assert!(
            answer.contains("reprise: the request body is not valid"),
            "{answer}"
        );
        // The upstream saw the request start, never end.
        match seen.recv_timeout(Duration::from_secs(20)).unwrap() {
            Read1::Incomplete(bytes) => {
                let bytes = String::from_utf8_lossy(&bytes).into_owned();
                assert!(bytes.starts_with("POST /upload HTTP/1.1"), "{bytes}");
                assert!(!bytes.contains("\r\n0\r\n"), "{bytes}");
            }
            whole => panic!("the upstream got a whole request: {whole:?}"),
        }
    }
    // A valid one still goes through.
    let answer = raw_call(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nhost: shop\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    proxy.stop_cleanly("-TERM");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 3);
    for refused in &exchanges[..2] {
        let error = refused.error.as_ref().unwrap();
        assert_eq!(error.kind(), ErrorKind::Protocol);
        assert!(error.message.contains("not valid"), "{error:?}");
    }
    assert!(exchanges[2].error.is_none());

    // The same when the call goes to an HTTP/2 upstream (hyper's client
    // resets the stream; the proxy still answers the client's fault).
    let nginx = Nginx::start();
    let tape = temp_tape(&dir, "chunked-h2.tape");
    let proxy = Recorder::start(
        &format!("http://{}", nginx.h2c),
        &tape,
        &["--upstream-protocol", "h2"],
    );
    let answer = raw_call(
        proxy.addr,
        b"POST /api/item.json HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("reprise: the request body is not valid"),
        "{answer}"
    );
    proxy.stop_cleanly("-TERM");
}

/// An upstream that speaks HTTP/2 only (as tonic, or nginx with `listen
/// ... http2`), on a listener whose accept queue is full until the test
/// says `serve`: until then a new connection to it times out.
fn h2_only_upstream_later() -> (SocketAddr, mpsc::Sender<()>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (serve_tx, serve_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = socket.listen(0).unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = tokio::task::spawn_blocking(move || serve_rx.recv()).await;
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"h2 only")),
                        ))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    (addr_rx.recv().unwrap(), serve_tx)
}

#[test]
fn a_probe_that_reaches_nobody_in_time_is_asked_again() {
    let (addr, serve) = h2_only_upstream_later();
    // Fills the accept queue: the next connection waits for an accept
    // that does not come, and times out.
    let mut queued = Vec::new();
    while let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        queued.push(stream);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "later.tape");
    let proxy = Recorder::start(
        &format!("http://{addr}"),
        &tape,
        &["--connect-timeout", "1s"],
    );
    let url = proxy.url("/item");
    let (out, _) = curl(&["--http2-prior-knowledge", "-w", SHOWN, &url]);
    assert!(out.ends_with(" 2") && !out.contains("200"), "{out}");

    serve.send(()).unwrap();
    drop(queued);
    let (out, _) = curl(&["--http2-prior-knowledge", "-w", SHOWN, &url]);
    assert_eq!(out, "h2 only 200 2");
    proxy.stop_cleanly("-TERM");
}

/// The issue's own case: an upstream that answers `200` as soon as the
/// request head arrives, without reading the body, and a client whose
/// bad chunk comes in the same write as its head. The proxy finds the
/// fault while it sends the head, before the upstream's answer can come
/// back, and answers the client's fault itself.
#[test]
fn an_invalid_chunk_sent_with_the_head_is_a_400_even_from_an_eager_upstream() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                socket
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                // Holds the connection until the proxy closes it.
                while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "eager.tape");
    let proxy = Recorder::start(
        &format!("http://{upstream}"),
        &tape,
        &["--upstream-protocol", "h1"],
    );
    for _ in 0..5 {
        let answer = raw_call(
            proxy.addr,
            b"POST /upload HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(
            answer.contains("reprise: the request body is not valid"),
            "{answer}"
        );
    }
    proxy.stop_cleanly("-TERM");
}
