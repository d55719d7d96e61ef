//! The front with the `Forward` handler, driven by real clients (curl,
//! Python, a tonic client through a CONNECT of its own) to real upstreams
//! on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_in_absolute_form_and_origin_form() {
    let upstream = start_plain_upstream().await;
    let front = start_front(None).await;
    // Two requests on one kept-alive proxy connection.
    let url = format!("http://{upstream}/a");
    let out = run(
        "curl",
        &[
            "-sS",
            "-x",
            &front.proxy_url(),
            "-H",
            "Proxy-Connection: keep-alive",
            &url,
            &format!("http://{upstream}/b"),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("HTTP/1.1 GET /a host={upstream} hop=false")),
        "{text}"
    );
    assert!(text.contains("GET /b"), "{text}");
    assert_eq!(
        front.counters.snapshot().connections,
        1,
        "one connection for both"
    );

    // Origin form: a client given the front as its base URL, with Host
    // naming the upstream.
    let out = run(
        "curl",
        &[
            "-sS",
            "-H",
            &format!("Host: {upstream}"),
            "--data",
            "hi",
            &format!("{}/c", front.proxy_url()),
        ],
        &[],
    )
    .await;
    assert_eq!(
        stdout(&out),
        format!("HTTP/1.1 POST /c host={upstream} hop=false body=hi")
    );

    // Python's urllib through http_proxy.
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{upstream}/py').read().decode())"
    );
    let out = run(
        "python3",
        &["-c", &script],
        &[("http_proxy", &front.proxy_url())],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("HTTP/1.1 GET /py"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_tls_matches_alpn_end_to_end() {
    let pki = upstream_pki(&[b"h2", b"http/1.1"]);
    let upstream = start_tls_router(&pki).await;
    let front = start_front(Some(&pki.ca_file)).await;
    let ca = front.ca.files.cert.to_str().unwrap().to_string();
    let url = format!("https://localhost:{}/tls", upstream.port());
    for (flag, seen) in [("--http2", "HTTP/2.0"), ("--http1.1", "HTTP/1.1")] {
        let out = run(
            "curl",
            &[
                "-sS",
                flag,
                "-x",
                &front.proxy_url(),
                "--cacert",
                &ca,
                "-w",
                " client=%{http_version}",
                &url,
            ],
            &[],
        )
        .await;
        assert!(out.status.success(), "{flag}: {}", stderr(&out));
        let text = stdout(&out);
        let client = if flag == "--http2" { "2" } else { "1.1" };
        assert!(
            text.starts_with(&format!(
                "{seen} GET /tls host=localhost:{}",
                upstream.port()
            )) && text.ends_with(&format!("client={client}")),
            "{flag}: {text}"
        );
    }
    // A POST over h2 carries its body.
    let out = run(
        "curl",
        &[
            "-sS",
            "--http2",
            "-x",
            &front.proxy_url(),
            "--cacert",
            &ca,
            "--data",
            "amount=100",
            &url,
        ],
        &[],
    )
    .await;
    assert!(
        stdout(&out).ends_with("body=amount=100"),
        "{}",
        stdout(&out)
    );
    let counts = front.counters.snapshot();
    assert_eq!(counts.tunnels, 3);
    assert_eq!(
        counts.client_rejected_certificate + counts.client_tls_failed + counts.upstream_failed,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_http1_in_clear_tunnels() {
    let upstream = start_plain_upstream().await;
    let front = start_front(None).await;
    let url = format!("http://{upstream}/clear");
    let out = run(
        "curl",
        &[
            "-sS",
            "--http2-prior-knowledge",
            "-p",
            "-x",
            &front.proxy_url(),
            &url,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("HTTP/2.0 GET /clear"),
        "{}",
        stdout(&out)
    );
    let out = run("curl", &["-sS", "-p", "-x", &front.proxy_url(), &url], &[]).await;
    assert!(
        stdout(&out).starts_with("HTTP/1.1 GET /clear"),
        "{}",
        stdout(&out)
    );
    assert_eq!(front.counters.snapshot().tunnels, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_through_https_proxy_with_the_variables_of_ca_env() {
    let pki = upstream_pki(&[b"http/1.1"]);
    let upstream = start_tls_router(&pki).await;
    let front = start_front(Some(&pki.ca_file)).await;
    let env = reprise_intercept::ca::env_script(&front.ca.files).unwrap();
    let url = format!("https://localhost:{}/requests", upstream.port());
    let python = format!(
        "import requests, urllib.request\n\
         print(requests.post('{url}', json={{'amount': 100}}).text)\n\
         print(urllib.request.urlopen('{url}').read().decode())\n"
    );
    let script = format!("{env}\nexec python3 -c \"$PY\"");
    let out = run(
        "sh",
        &["-c", &script],
        &[("PY", &python), ("HTTPS_PROXY", &front.proxy_url())],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "HTTP/1.1 POST /requests host=localhost:{} hop=false body={{\"amount\": 100}}",
            upstream.port()
        )
    );
    assert!(
        lines.next().unwrap().starts_with("HTTP/1.1 GET /requests"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_connect_and_tls() {
    use reprise_testkit::echo::Note;
    use reprise_testkit::echo::echo_client::EchoClient;
    use reprise_testkit::echo::echo_server::EchoServer;

    let pki = upstream_pki(&[b"h2"]);
    let echo = EchoServer::new(reprise_testkit::EchoService::default());
    let service = tower::ServiceExt::<http::Request<hyper::body::Incoming>>::map_response(
        echo,
        |r: http::Response<tonic::body::Body>| r.map(axum::body::Body::new),
    );
    let upstream = start_tls_upstream(&pki, service).await;
    let front = start_front(Some(&pki.ca_file)).await;
    let proxy = front.addr;
    let ca = std::fs::read(&front.ca.files.cert).unwrap();
    let port = upstream.port();
    // A client that goes through the proxy as gRPC clients do: CONNECT,
    // then TLS with ALPN h2, trusting the reprise CA.
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let ca = ca.clone();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(proxy).await?;
            tcp.write_all(
                format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
            let head = read_head(&mut tcp).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
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
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    let mut client = EchoClient::new(channel);
    let note = Note {
        text: "through the tunnel".to_string(),
        number: 7,
        tags: vec![],
    };
    let answer = client.unary(note).await.unwrap();
    assert_eq!(answer.get_ref().text, "THROUGH THE TUNNEL");
    assert_eq!(answer.metadata().get("x-echo").unwrap(), "unary");
    // A server stream goes through message by message, and a gRPC error
    // keeps its status.
    let mut stream = client
        .server_stream(reprise_testkit::echo::Count { n: 3, gap_ms: 1 })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(note) = stream.message().await.unwrap() {
        seen.push(note.text);
    }
    assert_eq!(seen, ["note 0", "note 1", "note 2"]);
    let status = client
        .unary(Note {
            text: "fail".to_string(),
            number: 0,
            tags: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_refusing_port_is_a_502_at_once() {
    let front = start_front(None).await;
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {closed} HTTP/1.1\r\nHost: {closed}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tcp))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let mut body = vec![0u8; 200];
    let n = tcp.read(&mut body).await.unwrap();
    let body = String::from_utf8_lossy(&body[..n]);
    assert_eq!(
        body,
        format!("reprise egress: cannot reach {closed}: connection refused\n")
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(front.counters.snapshot().connect_failed, 1);

    // curl says so too, and exits at once.
    let out = run(
        "curl",
        &[
            "-sS",
            "-p",
            "-x",
            &front.proxy_url(),
            &format!("http://{closed}/"),
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("502"), "{}", stderr(&out));
    assert_eq!(front.counters.snapshot().connect_failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_rejects_the_minted_certificate_is_counted_and_the_next_works() {
    let pki = upstream_pki(&[b"h2", b"http/1.1"]);
    let upstream = start_tls_router(&pki).await;
    let front = start_front(Some(&pki.ca_file)).await;
    let url = format!("https://localhost:{}/x", upstream.port());
    // Trusting only the upstream's CA, curl rejects reprise's leaf.
    let out = run(
        "curl",
        &[
            "-sS",
            "-x",
            &front.proxy_url(),
            "--cacert",
            pki.ca_file.to_str().unwrap(),
            &url,
        ],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    let counters = front.counters.clone();
    eventually("the rejection counted", 10, || {
        counters.snapshot().client_rejected_certificate == 1
    })
    .await;
    let ca = front.ca.files.cert.to_str().unwrap();
    let out = run(
        "curl",
        &["-sS", "-x", &front.proxy_url(), "--cacert", ca, &url],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("GET /x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_tls_non_http_bytes_in_a_tunnel_close_it_and_are_counted() {
    let upstream = start_plain_upstream().await;
    let front = start_front(None).await;
    let mut tcp = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(&[0x00, 0x01, 0x02, 0x03]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "the tunnel was closed: {read:?}");
    assert_eq!(front.counters.snapshot().not_tls_or_http, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_tls_failure_is_a_502_inside_the_tunnel() {
    // The front trusts the system's roots, not the upstream's test CA.
    let pki = upstream_pki(&[b"http/1.1"]);
    let upstream = start_tls_router(&pki).await;
    let front = start_front(None).await;
    let ca = front.ca.files.cert.to_str().unwrap();
    let url = format!("https://localhost:{}/x", upstream.port());
    let out = run(
        "curl",
        &[
            "-sS",
            "-x",
            &front.proxy_url(),
            "--cacert",
            ca,
            "-w",
            "%{http_code}",
            &url,
        ],
        &[],
    )
    .await;
    let text = stdout(&out);
    assert!(text.ends_with("502"), "{text}");
    assert!(
        text.contains(&format!(
            "TLS to the upstream localhost:{} failed",
            upstream.port()
        )),
        "{text}"
    );
    assert_eq!(front.counters.snapshot().upstream_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_dials_again_when_the_upstream_closes_its_connection() {
    // An upstream that closes the connection after every answer, as an
    // HTTP/1.0 server does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |r: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(format!(
                                "served {}",
                                r.uri().path()
                            ))),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let front = start_front(None).await;
    let out = run(
        "curl",
        &[
            "-sS",
            "-p",
            "-x",
            &front.proxy_url(),
            &format!("http://{upstream}/one"),
            &format!("http://{upstream}/two"),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "served /oneserved /two");
    assert_eq!(front.counters.snapshot().tunnels, 1, "one tunnel for both");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "dialled again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_sees_each_call_and_its_answer_with_its_target() {
    use reprise_intercept::{Arrival, BoxBody, Forward, Front, Leaves, LocalCa, Target, layered};
    use std::sync::{Arc, Mutex};

    let pki = upstream_pki(&[b"h2", b"http/1.1"]);
    let tls_upstream = start_tls_router(&pki).await;
    let plain_upstream = start_plain_upstream().await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let requests = seen.clone();
    let responses = seen.clone();
    let observe = tower::ServiceBuilder::new()
        .map_request(move |request: http::Request<hyper::body::Incoming>| {
            let target = request.extensions().get::<Target>().unwrap();
            requests.lock().unwrap().push(format!(
                "{} {} {:?} {} {:?}",
                request.method(),
                request.uri().path(),
                target.arrival(),
                target.authority(),
                target
                    .alpn()
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
            ));
            request
        })
        .map_response(move |response: http::Response<BoxBody>| {
            responses
                .lock()
                .unwrap()
                .push(format!("-> {}", response.status()));
            response
        });
    let ca = TestCa::new();
    let leaves = Arc::new(Leaves::new(LocalCa::load(&ca.files.dir).unwrap()).unwrap());
    let forward: Forward = Forward::new(Some(&pki.ca_file)).unwrap();
    let front = Front::new(layered(forward, observe), Some(leaves));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { front.serve(listener).await });
    let cacert = ca.files.cert.to_str().unwrap();
    let tls_url = format!("https://localhost:{}/secure", tls_upstream.port());
    let out = run(
        "curl",
        &["-sS", "--http2", "-x", &proxy, "--cacert", cacert, &tls_url],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        "curl",
        &[
            "-sS",
            "-x",
            &proxy,
            &format!("http://{plain_upstream}/plain"),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    task.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            format!(
                "GET /secure {:?} localhost:{} Some(\"h2\")",
                Arrival::TunnelTls,
                tls_upstream.port()
            ),
            "-> 200 OK".to_string(),
            format!("GET /plain {:?} {plain_upstream} None", Arrival::Plain),
            "-> 200 OK".to_string(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_front_cannot_place_get_a_clear_answer() {
    let front = start_front(None).await;
    let exchange = |request: &'static str| {
        let addr = front.addr;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    // No absolute URI and no Host: nowhere to go.
    let answer = exchange("GET /x HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(
        answer.ends_with(
            "reprise egress: a request needs an absolute URI (http://host/path) or a Host field\n"
        ),
        "{answer}"
    );
    // The front itself, in origin form (Host) or as a CONNECT target:
    // it would loop.
    let request = format!(
        "GET /x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        front.addr
    );
    let answer = exchange(Box::leak(request.into_boxed_str())).await;
    assert!(answer.starts_with("HTTP/1.1 508"), "{answer}");
    assert!(answer.contains("is this proxy"), "{answer}");
    let request = format!(
        "CONNECT localhost:{0} HTTP/1.1\r\nHost: localhost:{0}\r\nConnection: close\r\n\r\n",
        front.addr.port()
    );
    let answer = exchange(Box::leak(request.into_boxed_str())).await;
    assert!(answer.starts_with("HTTP/1.1 508"), "{answer}");
    // https:// in absolute form: only through CONNECT.
    let answer = exchange(
        "GET https://127.0.0.1:9/x HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains("cannot be forwarded: send it through CONNECT"),
        "{answer}"
    );
    // Plain http to a port that refuses: a 502 naming it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let request =
        format!("GET http://{closed}/x HTTP/1.1\r\nHost: {closed}\r\nConnection: close\r\n\r\n");
    let answer = exchange(Box::leak(request.into_boxed_str())).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        answer.contains(&format!("reprise egress: upstream {closed}:")),
        "{answer}"
    );
    assert!(
        answer.to_lowercase().contains("connection refused"),
        "{answer}"
    );
}
