//! The recording proxy between real clients (hyper, curl) and a real axum
//! service on 127.0.0.1: clients get exactly what the upstream sent, and
//! the recording holds each exchange with its fields right.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reprise_model::{ErrorKind, Exchange, HeaderList, MemorySink, Protocol};
use reprise_proxy::{ProxyConfig, RunningProxy, Upstream};

/// What the upstream saw, echoed as JSON.
async fn json(
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> (HeaderMap, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let body = serde_json::json!({
        "host": header("host"),
        "via": header("via"),
        "x_forwarded_for": header("x-forwarded-for"),
        "authorization": header("authorization"),
        "connection": header("connection"),
        "query": query,
    });
    let mut out = HeaderMap::new();
    out.insert("content-type", "application/json".parse().unwrap());
    out.insert("x-upstream", "axum".parse().unwrap());
    (out, body.to_string())
}

/// Streams the request body straight back, however large.
async fn echo(headers: HeaderMap, body: Body) -> (HeaderMap, Body) {
    let mut out = HeaderMap::new();
    if let Some(kind) = headers.get("content-type") {
        out.insert("content-type", kind.clone());
    }
    (out, body)
}

async fn status(Path(code): Path<u16>) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

async fn upstream() -> SocketAddr {
    let app = Router::new()
        .route("/json", get(json))
        .route("/echo", post(echo))
        .route("/status/{code}", get(status))
        .route(
            "/host",
            // Host over HTTP/1.1, the target's authority over HTTP/2.
            get(|headers: HeaderMap, uri: http::Uri| async move {
                headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| uri.authority().map(|a| a.to_string()))
                    .unwrap_or_default()
            }),
        )
        .route(
            "/stream",
            get(|| async { Body::from_stream(slow_chunks()) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Three chunks, 20 ms apart.
fn slow_chunks() -> tokio_stream::wrappers::ReceiverStream<Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(Ok(Bytes::from(format!("chunk {i}\n")))).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn proxy(
    upstream: SocketAddr,
    tweak: impl FnOnce(&mut ProxyConfig),
) -> (RunningProxy, MemorySink) {
    let mut config = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Upstream::parse(&format!("http://{upstream}")).unwrap(),
    );
    config.service = "shop".into();
    // Two serving threads whatever the machine: each records the calls
    // it served in packs of its own, so the sink sees calls of different
    // threads in pack order (`recorded` sorts them back).
    config.threads = Some(2);
    tweak(&mut config);
    let sink = MemorySink::new();
    let running = reprise_proxy::start(config, Box::new(sink.clone()))
        .await
        .unwrap();
    (running, sink)
}

/// What `sink` got, in the order the calls started.
fn recorded(sink: &MemorySink) -> Vec<Exchange> {
    let mut exchanges = sink.exchanges();
    exchanges.sort_by_key(|e| e.recorded_at_ns);
    exchanges
}

fn client(http2: bool) -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build(HttpConnector::new())
}

async fn call(
    http2: bool,
    method: &str,
    url: String,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client(http2)
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn by_path<'a>(exchanges: &'a [Exchange], path: &str) -> &'a Exchange {
    exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path == path)
        .unwrap_or_else(|| panic!("no {path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2c_are_forwarded_and_recorded() {
    let upstream = upstream().await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let base = format!("http://{}", proxy.local_addr());
    let started = reprise_model::time::now_ns();

    // Straight to the upstream, for reference, then through the proxy.
    let (_, _, direct) = call(
        false,
        "GET",
        format!("http://{upstream}/json?x=1&x=2"),
        &[],
        vec![],
    )
    .await;
    let direct: serde_json::Value = serde_json::from_slice(&direct).unwrap();
    let (status, headers, body) = call(
        false,
        "GET",
        format!("{base}/json?x=1&x=2"),
        &[("authorization", "Bearer s3cret"), ("x-custom", "a")],
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-upstream"], "axum");
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        seen["host"], direct["host"],
        "Host rewritten to the upstream"
    );
    assert_eq!(seen["via"], "1.1 reprise");
    assert_eq!(seen["x_forwarded_for"], "127.0.0.1");
    assert_eq!(
        seen["authorization"], "Bearer s3cret",
        "the upstream gets the real credential"
    );
    assert_eq!(seen["query"], direct["query"]);

    let payload = br#"{"sku":"A1","qty":2}"#.to_vec();
    let (status, headers, body) = call(
        true,
        "POST",
        format!("{base}/echo"),
        &[("content-type", "application/json")],
        payload.clone(),
    )
    .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &payload[..]));
    assert_eq!(headers["content-type"], "application/json");

    let stats = proxy.shutdown().await.unwrap();
    assert_eq!((stats.seen, stats.recorded), (2, 2));
    let exchanges = recorded(&sink);
    let get = by_path(&exchanges, "/json?x=1&x=2");
    assert_eq!(get.protocol(), Protocol::Http11);
    assert!(get.recorded_at_ns >= started && get.duration_ns > 0);
    let request = get.request.as_ref().unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.authority,
        format!("{}", base.trim_start_matches("http://"))
    );
    assert_eq!(
        request.headers.header_str("authorization"),
        Some("[redacted]")
    );
    assert_eq!(request.headers.header_str("x-custom"), Some("a"));
    let response = get.response.as_ref().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.header_str("x-upstream"), Some("axum"));
    assert_eq!(&response.body[..], &body_of(&seen)[..]);
    assert!(get.flags.as_ref().unwrap().redacted);
    let source = get.source.as_ref().unwrap();
    assert_eq!(
        (source.recorder.as_str(), source.service.as_str()),
        ("proxy", "shop")
    );
    assert!(source.client_addr.starts_with("127.0.0.1:"));

    let post = by_path(&exchanges, "/echo");
    assert_eq!(post.protocol(), Protocol::Http2);
    assert_eq!(&post.request.as_ref().unwrap().body[..], &payload[..]);
    assert_eq!(&post.response.as_ref().unwrap().body[..], &payload[..]);
    assert_eq!(
        post.request.as_ref().unwrap().body_size,
        payload.len() as u64
    );
    assert!(post.flags.is_none() || !post.flags.as_ref().unwrap().cancelled);
}

fn body_of(value: &serde_json::Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_whole_and_are_recorded_up_to_the_cap() {
    let upstream = upstream().await;
    let (proxy, sink) = proxy(upstream, |c| c.max_body = 64 << 10).await;
    let payload: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let (status, _, body) = call(
        false,
        "POST",
        format!("http://{}/echo", proxy.local_addr()),
        &[],
        payload.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), payload.len());
    assert!(body[..] == payload[..], "the client gets every byte");
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    let request = exchanges[0].request.as_ref().unwrap();
    assert_eq!(
        (
            request.body.len(),
            request.body_size,
            request.body_truncated
        ),
        (64 << 10, 3 << 20, true)
    );
    assert_eq!(&request.body[..], &payload[..64 << 10]);
    let response = exchanges[0].response.as_ref().unwrap();
    assert_eq!(
        (
            response.body.len(),
            response.body_size,
            response.body_truncated
        ),
        (64 << 10, 3 << 20, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_flow_as_they_arrive() {
    let upstream = upstream().await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let (status, _, body) = call(
        true,
        "GET",
        format!("http://{}/stream", proxy.local_addr()),
        &[],
        vec![],
    )
    .await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"chunk 0\nchunk 1\nchunk 2\n"[..])
    );
    proxy.shutdown().await.unwrap();
    let exchange = &recorded(&sink)[0];
    assert_eq!(
        &exchange.response.as_ref().unwrap().body[..],
        b"chunk 0\nchunk 1\nchunk 2\n"
    );
    assert!(
        exchange.duration_ns >= 40_000_000,
        "the exchange lasts until the stream ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_a_502_and_recorded_with_its_error() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (proxy, sink) = proxy(closed, |_| {}).await;
    let (status, headers, body) = call(
        false,
        "GET",
        format!("http://{}/json", proxy.local_addr()),
        &[],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-reprise-error"], "upstream");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.starts_with(&format!(
            "reprise: upstream failed: cannot connect to {closed}"
        )),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
    // gRPC callers get UNAVAILABLE instead.
    let (status, headers, _) = call(
        true,
        "POST",
        format!("http://{}/pkg.Svc/Call", proxy.local_addr()),
        &[("content-type", "application/grpc")],
        vec![0, 0, 0, 0, 0],
    )
    .await;
    assert_eq!(
        (status, headers["grpc-status"].to_str().unwrap()),
        (StatusCode::OK, "14")
    );
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    assert_eq!(exchanges.len(), 2);
    let error = exchanges[0].error.as_ref().unwrap();
    assert_eq!(error.kind(), ErrorKind::Connect);
    assert!(exchanges[0].response.is_none());
    assert!(
        !exchanges[0].flags.as_ref().is_some_and(|f| f.cancelled),
        "an upstream failure is not a cancellation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_matching_choose_what_is_recorded() {
    let upstream = upstream().await;
    let (sampled, sink) = proxy(upstream, |c| {
        c.sampler = reprise_model::sample::Sampler::new(0.0).unwrap()
    })
    .await;
    for _ in 0..5 {
        let (status, _, _) = call(
            false,
            "GET",
            format!("http://{}/status/204", sampled.local_addr()),
            &[],
            vec![],
        )
        .await;
        assert_eq!(status, 204);
    }
    let stats = sampled.shutdown().await.unwrap();
    assert_eq!((stats.seen, stats.sampled_out, stats.recorded), (5, 5, 0));
    assert!(recorded(&sink).is_empty());

    let (matched, sink) = proxy(upstream, |c| {
        c.filter = reprise_model::select::ExchangeFilter::new()
            .status("5xx")
            .unwrap()
    })
    .await;
    for code in [200, 500, 404, 503] {
        call(
            false,
            "GET",
            format!("http://{}/status/{code}", matched.local_addr()),
            &[],
            vec![],
        )
        .await;
    }
    let stats = matched.shutdown().await.unwrap();
    assert_eq!((stats.recorded, stats.unmatched), (2, 2));
    let statuses: Vec<u32> = recorded(&sink).iter().map(Exchange::status).collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&500) && statuses.contains(&503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http1_and_http2_prior_knowledge() {
    let upstream = upstream().await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let url = format!("http://{}/echo", proxy.local_addr());
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-s",
                "-S",
                flag,
                "-H",
                "content-type: text/plain",
                "--data-binary",
                "hello curl",
                &url,
            ])
            .output()
            .await
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"hello curl");
    }
    proxy.shutdown().await.unwrap();
    let protocols: Vec<Protocol> = recorded(&sink).iter().map(Exchange::protocol).collect();
    assert_eq!(protocols, [Protocol::Http11, Protocol::Http2]);
    assert!(
        recorded(&sink)
            .iter()
            .all(|e| &e.request.as_ref().unwrap().body[..] == b"hello curl")
    );
}

/// A sink that never returns from `append` (a disk that hangs): the
/// forward path must not notice.
struct StalledSink(std::sync::Arc<std::sync::Barrier>);

impl reprise_model::Sink for StalledSink {
    fn append(&mut self, _: Exchange) -> Result<(), reprise_model::StoreError> {
        // Waits for a party that never comes.
        self.0.wait();
        Ok(())
    }
    fn sync(&mut self) -> Result<(), reprise_model::StoreError> {
        Ok(())
    }
}

/// A sink that refuses everything.
struct FailingSink;

impl reprise_model::Sink for FailingSink {
    fn append(&mut self, _: Exchange) -> Result<(), reprise_model::StoreError> {
        Err(reprise_model::StoreError::failed(
            "test sink",
            "refused on purpose",
        ))
    }
    fn sync(&mut self) -> Result<(), reprise_model::StoreError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_failing_sink_never_fails_a_call() {
    let upstream = upstream().await;
    for stalled in [true, false] {
        let mut config = ProxyConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            Upstream::parse(&format!("http://{upstream}")).unwrap(),
        );
        config.queue_capacity = 4;
        config.drain_timeout = Duration::from_millis(300);
        let sink: Box<dyn reprise_model::Sink> = if stalled {
            Box::new(StalledSink(std::sync::Arc::new(std::sync::Barrier::new(2))))
        } else {
            Box::new(FailingSink)
        };
        let proxy = reprise_proxy::start(config, sink).await.unwrap();
        // Calls go on until the stalled sink's queue overflows: each
        // serving thread packs its calls and hands a pack over when it has
        // waited its age (20 ms), so it takes a few packs.
        let mut calls = 0;
        while calls < 40 || (stalled && proxy.stats().dropped_queue_full == 0 && calls < 2000) {
            let payload = format!("call {calls}").into_bytes();
            let (status, _, body) = call(
                calls % 2 == 0,
                "POST",
                format!("http://{}/echo", proxy.local_addr()),
                &[],
                payload.clone(),
            )
            .await;
            assert_eq!(
                (status, &body[..]),
                (StatusCode::OK, &payload[..]),
                "call {calls} answered correctly"
            );
            calls += 1;
        }
        let metrics = proxy.metrics().render();
        let stats = proxy.stats();
        assert_eq!(stats.seen, calls);
        assert_eq!(stats.recorded, 0, "{stats:?}");
        if stalled {
            // One pack is stuck in the sink, one waits in the queue (it
            // takes a pack bigger than its 4 records when empty), the
            // rest were dropped.
            assert!(stats.dropped_queue_full > 0, "{stats:?}");
            assert!(
                metrics.contains("reprise_exchanges_dropped_total{reason=\"queue_full\"}"),
                "{metrics}"
            );
            let error = proxy.shutdown().await.unwrap_err().to_string();
            assert!(
                error.contains("the sink did not finish writing within 300ms"),
                "{error}"
            );
        } else {
            let counters = std::sync::Arc::clone(proxy.metrics());
            let error = proxy.shutdown().await.unwrap_err().to_string();
            assert!(error.contains("refused on purpose"), "{error}");
            // Every call was refused by the sink, or dropped before it
            // from the 4-record queue.
            let stats = counters.snapshot();
            assert!(stats.dropped_sink_error > 0, "{stats:?}");
            assert_eq!(
                stats.dropped_sink_error + stats.dropped_queue_full,
                calls,
                "{stats:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_body_is_recorded_with_its_error() {
    // A raw upstream: a response head promising 1000 bytes, 10 of them, then a reset.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            drop(socket);
        }
    });
    let (proxy, sink) = proxy(addr, |_| {}).await;
    let response = client(false)
        .request(
            http::Request::get(format!("http://{}/half", proxy.local_addr()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.into_body().collect().await.is_err(),
        "the client sees the body break too"
    );
    let metrics = proxy.metrics().render();
    proxy.shutdown().await.unwrap();
    assert!(
        metrics.contains("reprise_errors_total{kind=\"reset\"} 1"),
        "{metrics}"
    );
    let exchanges = recorded(&sink);
    let response = exchanges[0].response.as_ref().unwrap();
    assert_eq!(&response.body[..], b"0123456789");
    let error = exchanges[0].error.as_ref().unwrap();
    assert_eq!(error.kind(), ErrorKind::Reset);
    assert!(
        error.after_response_head && error.message.starts_with("response body:"),
        "{error:?}"
    );

    // Not recorded (sampled out), still counted.
    let (unsampled, sink) = self::proxy(addr, |c: &mut ProxyConfig| {
        c.sampler = reprise_model::sample::Sampler::new(0.0).unwrap();
    })
    .await;
    let response = client(false)
        .request(
            http::Request::get(format!("http://{}/half", unsampled.local_addr()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(response.into_body().collect().await.is_err());
    let metrics = unsampled.metrics().render();
    unsampled.shutdown().await.unwrap();
    assert!(
        metrics.contains("reprise_errors_total{kind=\"reset\"} 1"),
        "{metrics}"
    );
    assert!(recorded(&sink).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_upload_leaves_an_exchange_with_its_upload_reset() {
    let upstream = upstream().await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let addr = proxy.local_addr();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n")
            .await
            .unwrap();
        socket.write_all(&[b'x'; 100_000]).await.unwrap();
        // The echo answers as the upload streams: once its head and the
        // first echoed bytes are here, the upload is under way at both
        // ends, and the client leaves in the middle of it.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(5).any(|w| w == b"\r\n\r\nx") {
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
                .await
                .expect("the echo answers within 10 s")
                .unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
    }
    // The proxy notices, ends the exchange, and goes on serving.
    let (status, _, body) = call(
        false,
        "POST",
        format!("http://{addr}/echo"),
        &[],
        b"next".to_vec(),
    )
    .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"next"[..]));
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    assert_eq!(exchanges.len(), 2);
    let left = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().body_size >= 100_000)
        .unwrap();
    // The break is the client's upload, after the answer had begun: a
    // reset of the request body (an error tells it, so not `cancelled`).
    let error = left.error.as_ref().unwrap();
    assert_eq!(
        (error.kind(), error.after_response_head),
        (ErrorKind::Reset, true),
        "{left:?}"
    );
    assert!(error.message.starts_with("request body: "), "{error:?}");
    assert_eq!(left.flags, None, "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_grpc_length_prefix_is_forwarded_and_kept_as_a_truncated_message() {
    let upstream = upstream().await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    // The prefix promises 1000 bytes; 3 follow. The echo upstream sends it back as is.
    let body = vec![0, 0, 0, 3, 232, b'a', b'b', b'c'];
    let (status, _, echoed) = call(
        true,
        "POST",
        format!("http://{}/echo", proxy.local_addr()),
        &[("content-type", "application/grpc")],
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, &echoed[..]),
        (StatusCode::OK, &body[..]),
        "forwarded untouched"
    );
    proxy.shutdown().await.unwrap();
    let exchange = &recorded(&sink)[0];
    assert_eq!(exchange.protocol(), Protocol::Grpc);
    assert_eq!(exchange.messages.len(), 2);
    for message in &exchange.messages {
        assert_eq!(
            (&message.data[..], message.size, message.truncated),
            (&b"abc"[..], 1000, true)
        );
    }
    assert!(exchange.request.as_ref().unwrap().body_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_is_the_upstreams_unless_preserved_over_both_protocols() {
    let upstream = upstream().await;
    for preserve in [false, true] {
        let (proxy, _) = proxy(upstream, |c| c.preserve_host = preserve).await;
        let front = proxy.local_addr();
        for http2 in [false, true] {
            let (status, _, host) =
                call(http2, "GET", format!("http://{front}/host"), &[], vec![]).await;
            assert_eq!(status, 200);
            let expected = if preserve { front } else { upstream };
            assert_eq!(
                std::str::from_utf8(&host).unwrap(),
                expected.to_string(),
                "preserve {preserve}, http2 {http2}"
            );
        }
        proxy.shutdown().await.unwrap();
    }
}

/// One HTTP/1.1 connection to `addr`: every request sent on it reaches
/// the same serving thread, and so the same upstream pool (a pooling
/// client may open a second connection while the first is on its way
/// back to its pool).
async fn one_connection<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// What a scripted upstream connection does with each request it reads.
#[derive(Clone, Copy)]
enum Step {
    /// Writes these bytes (one at a time when `slowly`).
    Answer(&'static [u8], bool),
    /// Closes the connection without answering.
    Close,
}

/// A raw HTTP/1.1 upstream: its n-th connection reads requests and
/// follows `scripts[n]`, one step per request, then closes. Every request
/// read (connection, bytes) goes to the returned channel.
async fn scripted_upstream(
    scripts: Vec<Vec<Step>>,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (n, script) in scripts.into_iter().enumerate() {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buffered = Vec::new();
                for step in script {
                    let Some(request) = read_request(&mut socket, &mut buffered).await else {
                        return;
                    };
                    let _ = seen.send((n, request));
                    match step {
                        Step::Answer(bytes, false) => socket.write_all(bytes).await.unwrap(),
                        Step::Answer(bytes, true) => {
                            for byte in bytes {
                                socket.write_all(&[*byte]).await.unwrap();
                                socket.flush().await.unwrap();
                            }
                        }
                        Step::Close => return,
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// Reads one whole request (head, then a content-length or chunked
/// body) off `socket`, keeping what follows it in `buffered`.
async fn read_request(
    socket: &mut tokio::net::TcpStream,
    buffered: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let complete = |data: &[u8]| -> Option<usize> {
        let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            // The last chunk ("0"), then trailers up to an empty line.
            let body = &data[end..];
            let last = if body.starts_with(b"0\r\n") {
                0
            } else {
                body.windows(5).position(|w| w == b"\r\n0\r\n")? + 2
            };
            let tail = body[last..].windows(4).position(|w| w == b"\r\n\r\n")?;
            return Some(end + last + tail + 4);
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        (data.len() >= end + length).then_some(end + length)
    };
    loop {
        if let Some(n) = complete(buffered) {
            return Some(buffered.drain(..n).collect());
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffered.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http1_framing_passes_through_and_connections_are_reused() {
    let (upstream, mut requests) = scripted_upstream(vec![
        vec![
            Step::Answer(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
                  5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
                true,
            ),
            Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfixed", true),
            // A list of one value: the client gets one plain number.
            Step::Answer(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nlists",
                false,
            ),
            // Transfer-Encoding overrides the length (RFC 9112 §6.3).
            Step::Answer(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n\
                  7\r\nchunked\r\n0\r\n\r\n",
                false,
            ),
            Step::Answer(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n", false),
            // HTTP/1.0, no length: the body runs to the close.
            Step::Answer(b"HTTP/1.0 200 OK\r\n\r\nuntil the close", true),
        ],
        vec![Step::Answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nagain",
            false,
        )],
        // Switching protocols for a request that did not ask to.
        vec![Step::Answer(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
            false,
        )],
    ])
    .await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let base = format!("http://{}", proxy.local_addr());
    let mut client = one_connection(proxy.local_addr()).await;
    let mut got = Vec::new();
    let mut trailers = None;
    for (method, path, body) in [
        ("GET", "/chunked", ""),
        ("GET", "/length", ""),
        ("GET", "/listed", ""),
        ("GET", "/overridden", ""),
        ("DELETE", "/empty", ""),
        ("HEAD", "/head", ""),
        ("GET", "/close", ""),
        ("POST", "/after", "posted"),
        ("GET", "/switch", ""),
    ] {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("te", "trailers")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        client.ready().await.unwrap();
        let response = client.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let length = response.headers().get("content-length").cloned();
        let body = response.into_body().collect().await.unwrap();
        if path == "/chunked" {
            trailers = body.trailers().cloned();
        }
        let body = body.to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        got.push((status, text, length));
    }
    let bodies: Vec<_> = got
        .iter()
        .map(|(s, b, _)| (*s, b.lines().next().unwrap_or("")))
        .collect();
    assert_eq!(
        bodies,
        [
            (200, "hello world"),
            (200, "fixed"),
            (200, "lists"),
            (200, "chunked"),
            (204, ""),
            (200, ""),
            (200, "until the close"),
            (201, "again"),
            (
                502,
                "reprise: upstream failed: the upstream switched protocols for a request that did not ask to"
            ),
        ]
    );
    // Declared trailers reach a client that takes them.
    assert_eq!(trailers.unwrap()["x-sum"], "11");
    // A listed length arrives plain, an overridden one not at all; a HEAD
    // answer keeps its own.
    assert_eq!(got[2].2.as_ref().unwrap(), "5");
    assert!(got[3].2.is_none(), "{:?}", got[3]);
    assert_eq!(got[5].2.as_ref().unwrap(), "4");
    proxy.shutdown().await.unwrap();

    // One connection until the upstream ended it; the body went framed.
    let mut seen = Vec::new();
    while let Ok((connection, request)) = requests.try_recv() {
        seen.push((connection, String::from_utf8(request).unwrap()));
    }
    let connections: Vec<usize> = seen.iter().map(|(c, _)| *c).collect();
    assert_eq!(connections, [0, 0, 0, 0, 0, 0, 0, 1, 2]);
    let posted = &seen[7].1;
    assert!(posted.starts_with("POST /after HTTP/1.1\r\n"), "{posted}");
    assert!(posted.contains("\r\ncontent-length: 6\r\n"), "{posted}");
    assert!(posted.ends_with("\r\n\r\nposted"), "{posted}");
    assert!(!seen[0].1.contains("content-length"), "{}", seen[0].1);

    let exchanges = recorded(&sink);
    let chunked = by_path(&exchanges, "/chunked").response.as_ref().unwrap();
    assert_eq!(&chunked.body[..], b"hello world");
    assert_eq!(
        (
            chunked.trailers[0].name.as_str(),
            &chunked.trailers[0].value[..]
        ),
        ("x-sum", &b"11"[..])
    );
    let closed = by_path(&exchanges, "/close").response.as_ref().unwrap();
    assert_eq!((closed.body_size, closed.status), (15, 200));
    let switched = by_path(&exchanges, "/switch").error.as_ref().unwrap();
    assert_eq!(switched.kind(), ErrorKind::Protocol);
    let failed: Vec<&str> = exchanges
        .iter()
        .filter(|e| e.error.is_some())
        .map(|e| e.request.as_ref().unwrap().path.as_str())
        .collect();
    assert_eq!(failed, ["/switch"]);
}

/// Reads a request head a byte at a time, leaving the body unread;
/// lower-cased. `None`: the connection closed first.
async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8(head).unwrap().to_ascii_lowercase())
}

/// A raw upstream on 127.0.0.1: each connection it accepts goes to
/// `serve` on a task of its own.
async fn raw_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_upload_ends_reaches_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The upstream answers 413 after the head, without reading the body.
    let upstream = raw_upstream(|mut socket| async move {
        if read_head(&mut socket).await.is_none() {
            return;
        }
        let _ = socket
            .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let socket = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let upload = tokio::spawn(async move {
        let _ = writer
            .write_all(b"PUT /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 67108864\r\n\r\n")
            .await;
        let block = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            if writer.write_all(&block).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(2), async {
        while !answer.ends_with(b"too big!") {
            let n = reader.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the early answer reaches the client while it is still uploading");
    assert!(answer.starts_with(b"HTTP/1.1 413 "));
    upload.abort();
    drop(reader);
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    assert_eq!(exchanges[0].response.as_ref().unwrap().status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_request_the_upstream_drops_on_a_kept_connection_is_sent_again() {
    let ok = |body: &'static [u8]| Step::Answer(body, false);
    let (upstream, mut requests) = scripted_upstream(vec![
        // Answers, then drops the next request unanswered (the race of an
        // upstream closing an idle connection as a request arrives).
        vec![
            ok(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none"),
            Step::Close,
        ],
        vec![
            ok(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo"),
            Step::Close,
        ],
        vec![
            ok(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfour"),
            Step::Close,
        ],
    ])
    .await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let base = format!("http://{}", proxy.local_addr());
    // One client connection, so one serving thread and its one pool.
    let client = std::sync::Arc::new(tokio::sync::Mutex::new(
        one_connection(proxy.local_addr()).await,
    ));
    let send = |method: &str, path: &str, body: &'static [u8]| {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let client = std::sync::Arc::clone(&client);
        async move {
            let mut client = client.lock().await;
            client.ready().await.unwrap();
            let response = client.send_request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    assert_eq!(send("GET", "/1", b"").await.1, "one");
    // Dropped on connection 0, sent again on connection 1.
    assert_eq!(send("GET", "/2", b"").await.1, "two");
    // A request with a body is not sent twice: the client hears why.
    let (status, text) = send("POST", "/3", b"once").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        text.contains("closed the connection before answering"),
        "{text}"
    );
    assert_eq!(send("GET", "/4", b"").await.1, "four");
    // Nor is a POST without a body (not idempotent: it may have been
    // carried out before the connection dropped).
    let (status, text) = send("POST", "/5", b"").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        text.contains("closed the connection before answering"),
        "{text}"
    );
    proxy.shutdown().await.unwrap();
    let mut seen = Vec::new();
    while let Ok((connection, request)) = requests.try_recv() {
        let line = String::from_utf8(request).unwrap();
        seen.push((connection, line.split(' ').nth(1).unwrap().to_string()));
    }
    let seen: Vec<(usize, &str)> = seen.iter().map(|(c, p)| (*c, p.as_str())).collect();
    assert_eq!(
        seen,
        [
            (0, "/1"),
            (0, "/2"),
            (1, "/2"),
            (1, "/3"),
            (2, "/4"),
            (2, "/5")
        ]
    );
    let exchanges = recorded(&sink);
    let failed = by_path(&exchanges, "/3").error.as_ref().unwrap();
    assert_eq!(failed.kind(), ErrorKind::Reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_does_not_wait_for_the_body_lets_the_upload_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // As nginx's `return`: answers after the head, then reads the body
    // and throws it away, and serves the next request.
    let (discarded, mut discards) = tokio::sync::mpsc::unbounded_channel();
    let upstream = raw_upstream(move |mut socket| {
        let discarded = discarded.clone();
        async move {
            loop {
                let Some(head) = read_head(&mut socket).await else {
                    return;
                };
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<u64>().unwrap());
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly")
                    .await
                    .unwrap();
                let mut rest = (&mut socket).take(length);
                let thrown = tokio::io::copy(&mut rest, &mut tokio::io::sink())
                    .await
                    .unwrap();
                let _ = discarded.send(thrown);
            }
        }
    })
    .await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let client = client(false);
    let url = format!("http://{}/upload", proxy.local_addr());
    for size in [8 << 20, 10] {
        let request = http::Request::post(&url)
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"early");
        let thrown = tokio::time::timeout(Duration::from_secs(5), discards.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(thrown, size as u64, "the whole upload reached the upstream");
    }
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    assert_eq!(exchanges.len(), 2);
    for exchange in &exchanges {
        assert_eq!(exchange.response.as_ref().unwrap().status, 200);
        assert!(exchange.error.is_none(), "{exchange:?}");
    }
    assert_eq!(exchanges[0].request.as_ref().unwrap().body_size, 8 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_goes_chunked_with_its_trailers() {
    let (upstream, mut requests) = scripted_upstream(vec![vec![Step::Answer(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
    )]])
    .await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let mut client = one_connection(proxy.local_addr()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(4);
    let request = http::Request::post(format!("http://{}/stream", proxy.local_addr()))
        .header("trailer", "x-sum")
        .body(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap();
    client.ready().await.unwrap();
    let response = client.send_request(request);
    let feed = tokio::spawn(async move {
        for piece in [&b"one "[..], b"two"] {
            tx.send(Ok(http_body::Frame::data(Bytes::from_static(piece))))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "7".parse().unwrap());
        tx.send(Ok(http_body::Frame::trailers(trailers)))
            .await
            .unwrap();
    });
    let response = response.await.unwrap();
    feed.await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    proxy.shutdown().await.unwrap();

    let (_, request) = requests.try_recv().unwrap();
    let request = String::from_utf8(request).unwrap();
    assert!(
        request.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\ntrailer: x-sum\r\n"), "{request}");
    assert!(!request.contains("content-length"), "{request}");
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body, "4\r\none \r\n3\r\ntwo\r\n0\r\nx-sum: 7\r\n\r\n");
    let exchanges = recorded(&sink);
    let recorded = exchanges[0].request.as_ref().unwrap();
    assert_eq!(&recorded.body[..], b"one two");
    assert_eq!(recorded.trailers[0].name, "x-sum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_outlasts_the_timeout_after_an_early_answer_is_cut_and_ended() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers at once, streams (a piece every 100 ms, so the answer is
    // never idle long), and ends its answer when the upload ends.
    let upstream = raw_upstream(|mut socket| async move {
        if read_head(&mut socket).await.is_none() {
            return;
        }
        let (mut read, mut write) = socket.into_split();
        let upload = tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = read.read_to_end(&mut rest).await;
        });
        let _ = write
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await;
        while !upload.is_finished() {
            if write.write_all(b"1\r\n.\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = write.write_all(b"4\r\ndone\r\n0\r\n\r\n").await;
    })
    .await;
    let (proxy, _sink) = proxy(upstream, |c: &mut ProxyConfig| {
        c.response_timeout = Duration::from_millis(500);
    })
    .await;
    let mut socket = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    // A chunked upload that stalls after its first chunk.
    socket
        .write_all(
            b"POST /slow HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.ends_with(b"0\r\n\r\n") {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the upstream sees the cut upload end, and so its answer ends");
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("first") && answer.contains("done"),
        "{answer}"
    );
    drop(socket);
    proxy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_goes_silent_mid_body_is_given_up_on() {
    use tokio::io::AsyncWriteExt;
    // A head promising 100 bytes, 10 of them, then silence (not a close).
    let upstream = raw_upstream(|mut socket| async move {
        if read_head(&mut socket).await.is_none() {
            return;
        }
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let (proxy, sink) = proxy(upstream, |c: &mut ProxyConfig| {
        c.response_timeout = Duration::from_millis(300);
    })
    .await;
    let response = client(false)
        .request(
            http::Request::get(format!("http://{}/silent", proxy.local_addr()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(3), response.into_body().collect())
        .await
        .expect("the body ends (broken) soon after the upstream's silence passes the timeout");
    assert!(body.is_err(), "the client sees the body break");
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    assert_eq!(
        &exchanges[0].response.as_ref().unwrap().body[..],
        b"0123456789"
    );
    let error = exchanges[0].error.as_ref().unwrap();
    assert!(
        error
            .message
            .contains("sent nothing more of the response body"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_not_http_are_a_502_or_a_broken_body() {
    let (upstream, _requests) = scripted_upstream(vec![
        vec![Step::Answer(b"SPDY/3 200 OK\r\n\r\n", false)],
        vec![Step::Answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
            false,
        )],
    ])
    .await;
    let (proxy, sink) = proxy(upstream, |_| {}).await;
    let mut client = one_connection(proxy.local_addr()).await;
    let base = format!("http://{}", proxy.local_addr());
    // A head that is not HTTP/1.1: the client hears why.
    client.ready().await.unwrap();
    let response = client
        .send_request(
            http::Request::get(format!("{base}/garbage"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(text.contains("not valid HTTP/1.1"), "{text}");
    // A bad chunk after a good one: the client sees the body break.
    client.ready().await.unwrap();
    let response = client
        .send_request(
            http::Request::get(format!("{base}/badchunk"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.into_body().collect().await.is_err());
    proxy.shutdown().await.unwrap();
    let exchanges = recorded(&sink);
    let garbage = by_path(&exchanges, "/garbage").error.as_ref().unwrap();
    assert_eq!(garbage.kind(), ErrorKind::Protocol);
    let bad = by_path(&exchanges, "/badchunk");
    assert_eq!(&bad.response.as_ref().unwrap().body[..], b"hello");
    let error = bad.error.as_ref().unwrap();
    assert!(
        error.after_response_head && error.message.contains("invalid chunk size"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_serving_thread_serves_every_connection_from_one_upstream_pool() {
    let ok = Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false);
    // One upstream connection answers all four calls; a second would get
    // nothing but a close.
    let (upstream, mut requests) = scripted_upstream(vec![vec![ok; 4], vec![Step::Close; 4]]).await;
    let (proxy, _sink) = proxy(upstream, |config| config.threads = Some(1)).await;
    for n in 0..4 {
        // A new client connection each time: with one serving thread,
        // each reaches the same pool, and its kept upstream connection.
        let mut client = one_connection::<Full<Bytes>>(proxy.local_addr()).await;
        let request = http::Request::builder()
            .uri(format!("http://{}/{n}", proxy.local_addr()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "call {n}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    for n in 0..4 {
        let (connection, _) = requests.recv().await.unwrap();
        assert_eq!(connection, 0, "call {n} took a new upstream connection");
    }
    proxy.shutdown().await.unwrap();
}
