//! RecordLayer on a plain hyper service (HTTP/1.1 and h2c on one
//! listener), and the same call recorded by RecordLayer and by the
//! recording proxy in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use reprise_model::{Exchange, HeaderList, MemorySink, Protocol};
use reprise_tower::{Config, Reprise, TapBody};

/// Answers with the request's body reversed, a header and, when the
/// request had trailers, a trailer counting them.
async fn reverse(request: Request<TapBody<Incoming>>) -> Result<Response<Body>, Infallible> {
    let collected = request.into_body().collect().await;
    let Ok(collected) = collected else {
        return Ok(Response::builder()
            .status(400)
            .body(
                Full::new(Bytes::new())
                    .map_err(|n| match n {})
                    .boxed_unsync(),
            )
            .unwrap());
    };
    let trailers = collected.trailers().map_or(0, HeaderMap::len);
    let mut bytes = collected.to_bytes().to_vec();
    bytes.reverse();
    let mut frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from(bytes)))];
    if trailers > 0 {
        let mut map = HeaderMap::new();
        map.insert("x-trailers-seen", trailers.to_string().parse().unwrap());
        frames.push(Ok(Frame::trailers(map)));
    }
    let body = StreamBody::new(tokio_stream::iter(frames)).boxed_unsync();
    Ok(Response::builder()
        .header("x-reversed", "yes")
        .body(body)
        .unwrap())
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// Serves `reverse` under `reprise.inbound()` on 127.0.0.1, HTTP/1.1 and
/// h2c on one listener.
async fn serve_hyper(reprise: &Reprise) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(reprise.inbound())
        .service(tower::service_fn(reverse));
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let service = tower::ServiceBuilder::new()
                .map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(peer);
                    request
                })
                .service(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    addr
}

/// A request body sent in three frames, then trailers when `trailers`.
fn chunked(trailers: bool) -> Body {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = ["abc", "def", "ghi"]
        .iter()
        .map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
        .collect();
    if trailers {
        let mut map = HeaderMap::new();
        map.insert("x-checksum", "42".parse().unwrap());
        frames.push(Ok(Frame::trailers(map)));
    }
    StreamBody::new(tokio_stream::iter(frames)).boxed_unsync()
}

async fn call(addr: SocketAddr, http2: bool) -> (Response<()>, Bytes, Option<HeaderMap>) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Body>();
    let request = Request::post(format!("http://{addr}/reverse?x=1"))
        .header("content-type", "text/plain")
        .header("x-test", "hyper")
        .body(chunked(http2))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        Response::from_parts(parts, ()),
        collected.to_bytes(),
        trailers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hyper_service_is_recorded_over_http1_and_h2c() {
    let sink = MemorySink::new();
    let reprise = Reprise::record_to(Config::default(), Box::new(sink.clone())).unwrap();
    let addr = serve_hyper(&reprise).await;
    for http2 in [false, true] {
        let (response, body, trailers) = call(addr, http2).await;
        assert_eq!(response.status(), 200);
        assert_eq!(&body[..], b"ihgfedcba");
        assert_eq!(
            trailers.and_then(|t| t.get("x-trailers-seen").cloned()),
            http2.then(|| "1".parse().unwrap())
        );
    }
    support::shut(reprise).await;
    let exchanges: Vec<Exchange> = sink.exchanges();
    assert_eq!(exchanges.len(), 2);
    for exchange in &exchanges {
        let http2 = exchange.protocol() == Protocol::Http2;
        let request = exchange.request.as_ref().unwrap();
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/reverse?x=1")
        );
        assert_eq!(request.authority, addr.to_string());
        assert_eq!(request.headers.header_str("x-test"), Some("hyper"));
        assert_eq!(
            (&request.body[..], request.body_size),
            (&b"abcdefghi"[..], 9)
        );
        let response = exchange.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.headers.header_str("x-reversed"), Some("yes"));
        assert_eq!(&response.body[..], b"ihgfedcba");
        let source = exchange.source.as_ref().unwrap();
        assert!(source.client_addr.starts_with("127.0.0.1:"), "{source:?}");
        if http2 {
            assert_eq!(request.trailers.header_str("x-checksum"), Some("42"));
            assert_eq!(response.trailers.header_str("x-trailers-seen"), Some("1"));
        } else {
            assert_eq!(exchange.protocol(), Protocol::Http11);
            assert!(request.trailers.is_empty() && response.trailers.is_empty());
        }
    }
}

/// Fields the server's HTTP layer writes below the service, which
/// RecordLayer (inside) never sees and the proxy (on the wire) does.
const WRITTEN_BELOW_THE_SERVICE: [&str; 3] = ["date", "content-length", "transfer-encoding"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_and_the_proxy_record_the_same_exchange() {
    let inside = MemorySink::new();
    let reprise = Reprise::record_to(Config::default(), Box::new(inside.clone())).unwrap();
    let service = serve_hyper(&reprise).await;
    let outside = MemorySink::new();
    let mut proxy_config = reprise_proxy::ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        reprise_proxy::Upstream::parse(&format!("http://{service}")).unwrap(),
    );
    proxy_config.preserve_host = true;
    proxy_config.forwarded_headers = false;
    let proxy = reprise_proxy::start(proxy_config, Box::new(outside.clone()))
        .await
        .unwrap();
    for http2 in [false, true] {
        let (response, body, _) = call(proxy.local_addr(), http2).await;
        assert_eq!(
            (response.status().as_u16(), &body[..]),
            (200, &b"ihgfedcba"[..])
        );
    }
    proxy.shutdown().await.unwrap();
    support::shut(reprise).await;
    let (inside, outside) = (inside.exchanges(), outside.exchanges());
    assert_eq!((inside.len(), outside.len()), (2, 2));
    for (layer, proxy) in inside.iter().zip(&outside) {
        let (mut layer, mut proxy) = (layer.clone(), proxy.clone());
        assert_eq!(layer.source.as_ref().unwrap().recorder, "tower");
        assert_eq!(proxy.source.as_ref().unwrap().recorder, "proxy");
        for exchange in [&mut layer, &mut proxy] {
            exchange.id.clear();
            exchange.trace_id.clear();
            exchange.recorded_at_ns = 0;
            exchange.duration_ns = 0;
            exchange.source = None;
            if let Some(response) = exchange.response.as_mut() {
                response
                    .headers
                    .retain(|h| !WRITTEN_BELOW_THE_SERVICE.contains(&h.name.as_str()));
            }
        }
        assert_eq!(layer, proxy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_full_bodies_is_captured() {
    use http_body_util::Full;
    let sink = MemorySink::new();
    let reprise = Reprise::record_to(Config::default(), Box::new(sink.clone())).unwrap();
    let service = serve_hyper(&Reprise::off()).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<TapBody<Full<Bytes>>>();
    let client = tower::ServiceBuilder::new()
        .layer(reprise.downstream(&service.to_string()))
        .service(client);
    use tower::ServiceExt;
    let request = Request::post(format!("http://{service}/reverse"))
        .body(Full::new(Bytes::from_static(b"full body")))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ydob lluf");
    support::shut(reprise).await;
    let exchanges = sink.exchanges();
    assert_eq!(exchanges.len(), 1);
    let request = exchanges[0].request.as_ref().unwrap();
    assert_eq!(
        (&request.body[..], exchanges[0].is_downstream()),
        (&b"full body"[..], true)
    );
    assert_eq!(
        &exchanges[0].response.as_ref().unwrap().body[..],
        b"ydob lluf"
    );
}

/// A request body type of the caller's own: the layer needs nothing of it
/// but `Body<Data = Bytes>`.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(
            self.0
                .pop_front()
                .map(|chunk| Ok(http_body::Frame::data(chunk))),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_body_type_of_its_own_is_captured_and_passed_through() {
    let sink = MemorySink::new();
    let reprise = Reprise::builder()
        .record_to(Box::new(sink.clone()))
        .unwrap();
    let service = serve_hyper(&Reprise::off()).await;
    for layers in [&reprise, &Reprise::off()] {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<TapBody<Chunks>>();
        let client = tower::ServiceBuilder::new()
            .layer(layers.downstream(&service.to_string()))
            .service(client);
        use tower::ServiceExt;
        let chunks = [&b"own "[..], b"body"].map(Bytes::from_static);
        let request = Request::post(format!("http://{service}/reverse"))
            .body(Chunks(chunks.into_iter().collect()))
            .unwrap();
        let response = client.oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ydob nwo");
    }
    support::shut(reprise).await;
    let exchanges = sink.exchanges();
    assert_eq!(exchanges.len(), 1);
    let request = exchanges[0].request.as_ref().unwrap();
    assert_eq!(
        (&request.body[..], exchanges[0].is_downstream()),
        (&b"own body"[..], true)
    );
}
