//! A replay target: an HTTP server for reprise's own tests that records every
//! request it receives, so a test can assert byte for byte what a replayer
//! sent.
//!
//! [`Target::start`] binds 127.0.0.1 on a free port and serves HTTP/1.1 and
//! HTTP/2 with prior knowledge (h2c) on the same port; its [`Behaviour`] says
//! how it answers. The server stops when the [`Target`] is dropped.
//!
//! ```no_run
//! # async fn demo() {
//! use reprise_testkit::target::{Behaviour, Target};
//!
//! let target = Target::start(Behaviour::Ok).await;
//! // ... replay a tape against target.url() ...
//! for request in target.received() {
//!     println!("{} {} {:?}", request.method, request.path, request.version);
//! }
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;

/// What [`Behaviour::Garbage`] writes: bytes no HTTP client can parse.
const GARBAGE: &[u8] = b"garbage\r\nthis is not HTTP\r\n\r\n";

/// One request as the target received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The HTTP version of the connection (`HTTP_11` or `HTTP_2`).
    pub version: Version,
    /// The method, as sent.
    pub method: String,
    /// The path and query as received: the origin form for HTTP/1.1, the
    /// `:path` pseudo-header for HTTP/2.
    pub path: String,
    /// The `Host` header for HTTP/1.1, the `:authority` for HTTP/2.
    pub authority: Option<String>,
    /// The headers with lowercase names (`host` included for HTTP/1.1). The
    /// values of one name keep their order; the interleaving of different
    /// names is lost (hyper's `HeaderMap` groups them).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, all its data frames concatenated.
    pub body: Vec<u8>,
    /// The request trailers, if the client sent any.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// When the request head arrived.
    pub at: Instant,
}

/// How the target answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with `{"ok":true,"path":"..."}` as `application/json`. A gRPC
    /// request over HTTP/2 (`content-type: application/grpc...`) is answered
    /// like a gRPC server instead: 200, `application/grpc`, the request's
    /// messages echoed back as they arrive, then the trailer `grpc-status: 0`.
    Ok,
    /// Like [`Behaviour::Ok`], after sleeping this long once the request has
    /// been read (tests of coordinated omission).
    Delay(Duration),
    /// Like [`Behaviour::Ok`], as a service whose answers also carry noise
    /// (`request_id`, different on every call) and its build's `version`:
    /// two targets of the same version differ by noise only.
    Noisy {
        /// The build's version, answered as `$.version`.
        version: u32,
    },
    /// Accepts each connection and resets it at once, without answering.
    Reset,
    /// Accepts each connection, reads a little, writes bytes that are not
    /// HTTP, then closes it.
    Garbage,
}

/// 128 bits as a UUID's text: 8-4-4-4-12 hex digits.
fn uuid_like(v: u128) -> String {
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A running replay target; the server stops when this is dropped.
#[derive(Debug)]
pub struct Target {
    /// Where the target listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    log: Arc<Log>,
    server: AbortHandle,
}

/// What the server has seen, shared between its tasks and the [`Target`].
#[derive(Debug, Default)]
struct Log {
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
}

impl Log {
    fn push(&self, request: Received) {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }
}

impl Target {
    /// Starts a target on 127.0.0.1 (a free port) that answers as `behaviour`
    /// says. Must be called within a tokio runtime.
    pub async fn start(behaviour: Behaviour) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let server = tokio::spawn(accept(listener, behaviour, Arc::clone(&log))).abort_handle();
        Target { addr, log, server }
    }

    /// The requests received so far, in order of arrival of their heads. A
    /// request appears once its body (and trailers) has been read in full.
    pub fn received(&self) -> Vec<Received> {
        let mut received = self
            .log
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Requests are logged when their body ends, which for concurrent
        // streams need not be the order in which they arrived.
        received.sort_by_key(|request| request.at);
        received
    }

    /// How many TCP connections the target has accepted so far.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    /// The target's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept(listener: TcpListener, behaviour: Behaviour, log: Arc<Log>) {
    // The connections are owned here so that aborting this task (when the
    // Target is dropped) ends them too.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        log.connections.fetch_add(1, Ordering::SeqCst);
        while connections.try_join_next().is_some() {}
        match behaviour {
            Behaviour::Reset => {
                // SO_LINGER 0 makes the close an RST rather than a FIN.
                let _ = stream.set_zero_linger();
                drop(stream);
            }
            Behaviour::Garbage => {
                connections.spawn(garbage(stream));
            }
            Behaviour::Ok | Behaviour::Delay(_) | Behaviour::Noisy { .. } => {
                connections.spawn(serve(stream, behaviour, Arc::clone(&log)));
            }
        }
    }
}

async fn garbage(mut stream: TcpStream) {
    let mut buf = [0; 4096];
    // Reading first lets the request land before the reply; then draining
    // until the client closes keeps unread bytes from turning our close into
    // a reset that could discard the garbage before the client reads it.
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
    let _ = stream.write_all(GARBAGE).await;
    let _ = stream.shutdown().await;
    let drain = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn serve(stream: TcpStream, behaviour: Behaviour, log: Arc<Log>) {
    let service = service_fn(move |request| answer(request, behaviour, Arc::clone(&log)));
    // A client going away mid-request is something tests do on purpose, not
    // a failure of the target.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The frames of a gRPC echo, streamed back as the request's arrive.
type Echo = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

/// The body of the target's answers: JSON, or a gRPC echo.
type Answer = Either<Full<Bytes>, Echo>;

async fn answer(
    request: Request<Incoming>,
    behaviour: Behaviour,
    log: Arc<Log>,
) -> Result<Response<Answer>, Infallible> {
    let at = Instant::now();
    let (head, mut body) = request.into_parts();
    let mut received = Received::head(&head, at);
    let is_grpc = head.version == Version::HTTP_2
        && head
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));

    if is_grpc {
        if let Behaviour::Delay(delay) = behaviour {
            tokio::time::sleep(delay).await;
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(echo(body, received, log, tx));
        let response = Response::builder()
            .header(CONTENT_TYPE, "application/grpc")
            .body(Either::Right(StreamBody::new(ReceiverStream::new(rx))))
            .unwrap();
        return Ok(response);
    }

    while let Some(Ok(frame)) = body.frame().await {
        received.add(frame);
    }
    let json = match behaviour {
        Behaviour::Noisy { version } => {
            static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            serde_json::json!({
                "ok": true,
                "path": received.path,
                "request_id": uuid_like(nanos ^ (u128::from(n) << 64)),
                "version": version,
            })
            .to_string()
        }
        _ => serde_json::json!({ "ok": true, "path": received.path }).to_string(),
    };
    log.push(received);
    if let Behaviour::Delay(delay) = behaviour {
        tokio::time::sleep(delay).await;
    }
    let response = Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .body(Either::Left(Full::new(Bytes::from(json))))
        .unwrap();
    Ok(response)
}

/// Sends the request's data frames back as they arrive, then `grpc-status: 0`.
async fn echo(
    mut body: Incoming,
    mut received: Received,
    log: Arc<Log>,
    tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = received.add(frame) {
            // The client may stop reading; the request is still worth logging.
            let _ = tx.send(Ok(Frame::data(data))).await;
        }
    }
    // Logged before the trailers go out, so a client that has seen them will
    // find its request in `Target::received`.
    log.push(received);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = tx.send(Ok(Frame::trailers(trailers))).await;
}

impl Received {
    /// A record of the head, before any of the body has arrived.
    fn head(head: &http::request::Parts, at: Instant) -> Received {
        let authority = if head.version == Version::HTTP_2 {
            head.uri.authority().map(ToString::to_string)
        } else {
            head.headers
                .get(HOST)
                .map(|host| String::from_utf8_lossy(host.as_bytes()).into_owned())
        };
        Received {
            version: head.version,
            method: head.method.to_string(),
            path: head
                .uri
                .path_and_query()
                .map_or_else(|| head.uri.to_string(), ToString::to_string),
            authority,
            headers: pairs(&head.headers),
            body: Vec::new(),
            trailers: Vec::new(),
            at,
        }
    }

    /// Adds a body frame to the record; returns it if it is data.
    fn add(&mut self, frame: Frame<Bytes>) -> Option<Bytes> {
        match frame.into_data() {
            Ok(data) => {
                self.body.extend_from_slice(&data);
                Some(data)
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    self.trailers.extend(pairs(&trailers));
                }
                None
            }
        }
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::client::conn::{http1, http2};

    fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    async fn h1_send(
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> hyper::Result<Response<Incoming>> {
        let stream = TcpStream::connect(target.addr).await.unwrap();
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        sender.send_request(request).await
    }

    #[tokio::test]
    async fn records_an_http1_request_and_answers_json() {
        let target = Target::start(Behaviour::Ok).await;
        let request = Request::post("/orders?id=7")
            .header(HOST, target.addr.to_string())
            .header("x-b", "2")
            .header("x-a", "1")
            .header("x-a", "one")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let response = h1_send(&target, request).await.unwrap();

        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"ok":true,"path":"/orders?id=7"}"#);

        let received = target.received();
        assert_eq!(received.len(), 1);
        let request = &received[0];
        assert_eq!(request.version, Version::HTTP_11);
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/orders?id=7");
        assert_eq!(
            request.authority.as_deref(),
            Some(&*target.addr.to_string())
        );
        assert_eq!(
            header(&request.headers, "host"),
            Some(target.addr.to_string().as_bytes())
        );
        assert_eq!(header(&request.headers, "content-length"), Some(&b"5"[..]));
        let x_a: Vec<_> = request.headers.iter().filter(|(n, _)| n == "x-a").collect();
        assert_eq!(
            x_a,
            [
                &("x-a".to_owned(), b"1".to_vec()),
                &("x-a".to_owned(), b"one".to_vec())
            ]
        );
        assert_eq!(request.body, b"hello");
        assert!(request.trailers.is_empty());
        assert_eq!(target.connections(), 1);
    }

    #[tokio::test]
    async fn echoes_grpc_over_h2c_and_records_the_client_trailers() {
        let target = Target::start(Behaviour::Ok).await;
        let stream = TcpStream::connect(target.addr).await.unwrap();
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);

        // Two length-prefixed messages, then trailers from the client.
        let messages: &[u8] = b"\0\0\0\0\x02hi\0\0\0\0\x03you";
        let mut client_trailers = HeaderMap::new();
        client_trailers.insert("x-client-trailer", HeaderValue::from_static("yes"));
        let frames: Vec<Result<_, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(&messages[..7]))),
            Ok(Frame::data(Bytes::from_static(&messages[7..]))),
            Ok(Frame::trailers(client_trailers)),
        ];
        let request = Request::post(format!("{}/reprise.test.v1.Echo/Bidi", target.url()))
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .body(StreamBody::new(tokio_stream::iter(frames)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();

        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], messages);

        let received = target.received();
        assert_eq!(received.len(), 1);
        let request = &received[0];
        assert_eq!(request.version, Version::HTTP_2);
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/reprise.test.v1.Echo/Bidi");
        assert_eq!(
            request.authority.as_deref(),
            Some(&*target.addr.to_string())
        );
        assert_eq!(
            header(&request.headers, "content-type"),
            Some(&b"application/grpc"[..])
        );
        assert_eq!(header(&request.headers, "te"), Some(&b"trailers"[..]));
        assert_eq!(request.body, messages);
        assert_eq!(
            request.trailers,
            [("x-client-trailer".to_owned(), b"yes".to_vec())]
        );
    }

    #[tokio::test]
    async fn serves_h2c_and_http1_on_one_port_in_arrival_order() {
        let target = Target::start(Behaviour::Ok).await;
        let stream = TcpStream::connect(target.addr).await.unwrap();
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::get(format!("{}/first", target.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"ok":true,"path":"/first"}"#);

        let request = Request::get("/second")
            .header(HOST, "example.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(h1_send(&target, request).await.unwrap().status(), 200);

        let received = target.received();
        let seen: Vec<_> = received
            .iter()
            .map(|r| (r.version, r.path.as_str(), r.authority.as_deref()))
            .collect();
        let h2_authority = target.addr.to_string();
        assert_eq!(
            seen,
            [
                (Version::HTTP_2, "/first", Some(&*h2_authority)),
                (Version::HTTP_11, "/second", Some("example.test")),
            ]
        );
        assert_eq!(target.connections(), 2);
    }

    #[tokio::test]
    async fn delay_holds_the_answer_back() {
        let target = Target::start(Behaviour::Delay(Duration::from_millis(100))).await;
        let request = Request::get("/slow")
            .header(HOST, "t")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let start = Instant::now();
        let response = h1_send(&target, request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(target.received()[0].path, "/slow");
    }

    #[tokio::test]
    async fn reset_closes_without_answering() {
        let target = Target::start(Behaviour::Reset).await;
        let request = Request::get("/")
            .header(HOST, "t")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(h1_send(&target, request).await.is_err());
        assert_eq!(target.connections(), 1);
        assert!(target.received().is_empty());
    }

    #[tokio::test]
    async fn garbage_is_not_http() {
        let target = Target::start(Behaviour::Garbage).await;
        let mut stream = TcpStream::connect(target.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, GARBAGE);

        let request = Request::get("/")
            .header(HOST, "t")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let error = h1_send(&target, request).await.unwrap_err();
        assert!(error.is_parse(), "{error}");
        assert_eq!(target.connections(), 2);
        assert!(target.received().is_empty());
    }

    #[tokio::test]
    async fn dropping_the_target_stops_the_server() {
        let target = Target::start(Behaviour::Ok).await;
        let addr = target.addr;
        drop(target);
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{addr} still accepts connections after the target was dropped");
    }
}
