//! `reprise mock` as the egress proxy the service was recorded through,
//! end to end with the real binary: curl through `--proxy` to https URLs
//! (CONNECT, TLS with a leaf from the reprise CA, HTTP/1.1 and h2), a
//! tonic client through a CONNECT tunnel (TLS and h2c), a miss through a
//! tunnel, `--out` naming the scheme the call used, and a mock without a
//! CA (plain calls still served, TLS tunnels refused with the reason).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use reprise_model::{Exchange, Header, Link, LinkKind, Protocol, Request, Response, Role};
use reprise_testkit::echo::Note;
use reprise_testkit::echo::echo_client::EchoClient;
use reprise_testkit::start_echo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::*;

/// A recorded downstream call `GET https://AUTHORITY PATH` (id: 16 bytes
/// of `n`) answered `answer`, unlinked (it serves calls in no scope).
fn recorded_https(n: u8, authority: &str, path: &str, answer: &str) -> Exchange {
    Exchange {
        id: vec![n; 16],
        role: Role::Downstream as i32,
        protocol: Protocol::Http11 as i32,
        recorded_at_ns: 1_700_000_000_000_000_000 + u64::from(n),
        request: Some(Request {
            method: "GET".into(),
            scheme: "https".into(),
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
            kind: LinkKind::Unlinked as i32,
            order: 0,
        }),
        ..Default::default()
    }
}

/// A reprise CA in `dir/ca` (`reprise ca init`).
fn ca_in(dir: &Path) -> std::path::PathBuf {
    let ca = dir.join("ca");
    let out = reprise(&["ca", "init", "--dir", s(&ca)]);
    assert!(out.status.success(), "{out:?}");
    ca
}

/// `curl -i` of `url` with `extra` flags: (status, head, body).
fn call(url: &str, extra: &[&str]) -> (u16, String, String) {
    let mut args = vec!["-i"];
    args.extend_from_slice(extra);
    args.push(url);
    let (out, _) = curl(&args);
    // A proxy's "200 Connection established" comes first over CONNECT.
    let mut rest = out.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let tunnel_open = status == 200 && !head.to_ascii_lowercase().contains("content-");
        if tunnel_open && body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        return (status, head.to_ascii_lowercase(), body.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_calls_through_the_mock_as_a_proxy_are_answered_from_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_in(dir.path());
    let ca_cert = ca.join("ca.pem");
    // The recorded downstream: a port nothing listens on, so that only
    // the mock can answer.
    let port = free_port();
    let authority = format!("localhost:{port}");
    let tape = temp_tape(&dir, "calls.tape");
    write_exchanges(
        &tape,
        &[
            recorded_https(1, &authority, "/price?sku=a", "10"),
            recorded_https(2, &authority, "/price?sku=b", "20"),
        ],
    );
    let out = dir.path().join("made.tape");
    let mock = Recorder::mock(&tape, &["--ca-dir", s(&ca), "--out", s(&out), "--log"]);
    let proxy = format!("http://{}", mock.addr);
    let url = |path: &str| format!("https://{authority}{path}");

    // HTTP/1.1 inside TLS inside CONNECT, trusting the reprise CA.
    let (status, _, body) = call(
        &url("/price?sku=a"),
        &["--proxy", &proxy, "--cacert", s(&ca_cert), "--http1.1"],
    );
    assert_eq!((status, body.as_str()), (200, "10"));
    // h2 agreed by ALPN.
    let (status, head, body) = call(
        &url("/price?sku=b"),
        &["--proxy", &proxy, "--cacert", s(&ca_cert), "--http2"],
    );
    assert_eq!((status, body.as_str()), (200, "20"));
    assert!(head.starts_with("http/2 200"), "{head}");
    // A call never recorded, through the tunnel: a 502 with the miss
    // header, the reason in the body.
    let (status, head, body) = call(
        &url("/price?sku=zzz"),
        &["--proxy", &proxy, "--cacert", s(&ca_cert)],
    );
    assert_eq!(status, 502, "{head}{body}");
    assert!(head.contains("x-reprise-mock-miss"), "{head}");
    assert!(body.contains("reprise mock miss"), "{body}");
    // A client that does not trust the reprise CA is refused by its own
    // TLS check: nothing is served.
    let refused = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--proxy", &proxy])
        .arg(url("/price?sku=a"))
        .output()
        .unwrap();
    assert!(!refused.status.success());

    let stderr = stop_expecting(mock, 1);
    assert!(
        stderr.contains("served 2 calls") && stderr.contains("missed 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rejected reprise's certificate") && stderr.contains("reprise ca env"),
        "{stderr}"
    );
    let made = read_tape(&out);
    assert_eq!(made.len(), 3, "{made:?}");
    for exchange in &made {
        let request = exchange.request.as_ref().unwrap();
        assert_eq!(request.scheme, "https", "{exchange:?}");
        assert_eq!(request.authority, authority, "{exchange:?}");
        assert_eq!(exchange.role, Role::Downstream as i32);
    }
    let paths: Vec<_> = made
        .iter()
        .map(|e| e.request.as_ref().unwrap().path.as_str())
        .collect();
    assert_eq!(paths, ["/price?sku=a", "/price?sku=b", "/price?sku=zzz"]);
    assert_eq!(made[0].replay.as_ref().unwrap().recorded_id, vec![1; 16]);
    assert_eq!(made[1].protocol, Protocol::Http2 as i32);
    assert!(made[2].flags.as_ref().unwrap().mock_miss);
}

fn stop_expecting(mock: Recorder, code: i32) -> String {
    let (got, stderr) = mock.stop("-INT");
    assert_eq!(got, code, "reprise mock exited {got}: {stderr}");
    stderr
}

/// Reads an HTTP/1.1 response head from `tcp`.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An echo client whose every connection is a CONNECT tunnel through
/// `proxy` to `target`, carrying TLS (ALPN h2, trusting `ca`) or, without
/// `ca`, h2c.
async fn echo_through(
    proxy: SocketAddr,
    target: String,
    ca: Option<Vec<u8>>,
) -> EchoClient<tonic::transport::Channel> {
    let endpoint = format!("http://{target}");
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let (ca, target) = (ca.clone(), target.clone());
        async move {
            let mut tcp = tokio::net::TcpStream::connect(proxy).await?;
            tcp.write_all(
                format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
            )
            .await?;
            let head = read_head(&mut tcp).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let Some(ca) = ca else {
                return Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    Box::new(tcp) as Box<dyn Io>
                ));
            };
            let mut roots = rustls::RootCertStore::empty();
            let cert = rustls::pki_types::pem::PemObject::from_pem_slice(&ca).unwrap();
            roots.add(cert).unwrap();
            let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let host = target.rsplit_once(':').unwrap().0.to_string();
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(rustls::pki_types::ServerName::try_from(host).unwrap(), tcp)
                .await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Ok(hyper_util::rt::TokioIo::new(Box::new(tls) as Box<dyn Io>))
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    EchoClient::new(channel)
}

/// A tunnel's stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn note(text: &str) -> Note {
    Note {
        text: text.to_string(),
        number: 7,
        tags: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_a_connect_tunnel_is_answered_from_the_recording() {
    // A recording of the echo service, made by the real recorder.
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_in(dir.path());
    let tape = temp_tape(&dir, "echo.tape");
    let recorder = Recorder::start(&format!("http://{echo}"), &tape, &[]);
    let mut client = reprise_testkit::echo_client(recorder.addr).await;
    let want = client.unary(note("hello")).await.unwrap();
    let failed = client.unary(note("fail")).await.unwrap_err();
    drop(client);
    recorder.stop_cleanly("-INT");

    let out = dir.path().join("made.tape");
    let mock = Recorder::mock(
        &tape,
        &[
            "--inbound",
            "--ignore-authority",
            "--exhausted",
            "repeat-last",
            "--ca-dir",
            s(&ca),
            "--out",
            s(&out),
        ],
    );
    // Over TLS in the tunnel, as a gRPC client with https and a proxy.
    let ca_pem = std::fs::read(ca.join("ca.pem")).unwrap();
    let mut client = echo_through(mock.addr, "localhost:50051".into(), Some(ca_pem)).await;
    let got = client.unary(note("hello")).await.unwrap();
    assert_eq!(got.get_ref(), want.get_ref());
    assert_eq!(got.metadata().get("x-echo").unwrap(), "unary");
    let again = client.unary(note("fail")).await.unwrap_err();
    assert_eq!(
        (again.code(), again.message()),
        (failed.code(), failed.message())
    );
    let missed = client.unary(note("never recorded")).await.unwrap_err();
    assert_eq!(missed.code(), tonic::Code::Unavailable, "{missed:?}");
    assert!(missed.message().contains("reprise mock miss"), "{missed:?}");
    drop(client);
    // Over h2c in the tunnel (gRPC without TLS, through grpc_proxy).
    let mut client = echo_through(mock.addr, "inventory:50051".into(), None).await;
    let got = client.unary(note("hello")).await.unwrap();
    assert_eq!(got.get_ref(), want.get_ref());
    drop(client);

    let stderr = stop_expecting(mock, 1);
    assert!(
        stderr.contains("served 3 calls") && stderr.contains("missed 1"),
        "{stderr}"
    );
    let made = read_tape(&out);
    let schemes: Vec<_> = made
        .iter()
        .map(|e| {
            let r = e.request.as_ref().unwrap();
            (r.scheme.as_str(), r.authority.as_str(), e.protocol)
        })
        .collect();
    let grpc = Protocol::Grpc as i32;
    assert_eq!(
        schemes,
        [
            ("https", "localhost:50051", grpc),
            ("https", "localhost:50051", grpc),
            ("https", "localhost:50051", grpc),
            ("http", "inventory:50051", grpc),
        ]
    );
}

#[test]
fn without_a_ca_plain_calls_are_served_and_tls_tunnels_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "calls.tape");
    write_exchanges(
        &tape,
        &[
            recorded_https(1, "localhost:1", "/secure", "secret"),
            Exchange {
                request: Some(Request {
                    scheme: "http".into(),
                    ..recorded_https(2, "prices:8080", "/price", "")
                        .request
                        .unwrap()
                }),
                ..recorded_https(2, "prices:8080", "/price", "12")
            },
        ],
    );
    // No CA where `reprise ca` would look, and no --ca-dir.
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
    command
        .env("REPRISE_CA_DIR", dir.path().join("no-ca"))
        .arg("mock")
        .arg(&tape)
        .args(["--listen", "127.0.0.1:0", "--exhausted", "repeat-last"]);
    let mock = Recorder::spawn(command);
    let proxy = format!("http://{}", mock.addr);
    // Absolute form, and HTTP/1.1 through a CONNECT tunnel in clear.
    let (status, _, body) = call("http://prices:8080/price", &["--proxy", &proxy]);
    assert_eq!((status, body.as_str()), (200, "12"));
    let (status, _, body) = call(
        "http://prices:8080/price",
        &["--proxy", &proxy, "--proxytunnel"],
    );
    assert_eq!((status, body.as_str()), (200, "12"));
    // TLS in the tunnel: refused, and the log says what to do.
    let refused = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--proxy", &proxy])
        .arg("https://localhost:1/secure")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    let mut seen = Vec::new();
    eventually("the refused tunnel logged", 20, || {
        seen.extend(mock.stderr.try_iter());
        seen.iter()
            .any(|l| l.contains("carries TLS") && l.contains("reprise ca init"))
    });
    assert!(
        seen.iter()
            .any(|l| l.contains("no reprise CA") && l.contains("reprise ca init")),
        "{seen:?}"
    );
    let stderr = stop_expecting(mock, 0);
    assert!(stderr.contains("served 2 calls"), "{stderr}");

    // A --ca-dir without a CA is an error at start, naming the fix.
    let out = reprise(&[
        "mock",
        s(&tape),
        "--listen",
        "127.0.0.1:0",
        "--ca-dir",
        s(&dir.path().join("no-ca")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--ca-dir") && stderr.contains("reprise ca init"),
        "{stderr}"
    );
}
