//! The replay's HTTP/1.1 client: one keep-alive connection, one call at a
//! time, on the worker's own task.
//!
//! Why not hyper's client here (the HTTP/2 calls do use hyper): a replay
//! sends the same few prepared requests as fast as the target answers,
//! and on a shared machine every instruction the load generator spends is
//! taken from the target. hyper's connection runs as a task of its own
//! behind a dispatch channel and builds a header map of every response;
//! with it a call cost about 24,000 instructions (callgrind), four times
//! wrk's. Here the request head is encoded once, when the call is built
//! ([`encode_head`]), the response head is parsed with `httparse` into a
//! stack array, and a header map is built only when results are written:
//! about 8,000 instructions a call. The framing rules are RFC 9112's: 1xx
//! answers skipped, no body for HEAD, 204 and 304, chunked (with
//! trailers) before Content-Length, close-delimited bodies, and
//! `Connection: close` and HTTP/1.0 honoured when deciding to reuse.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use reprise_model::ErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::call::Call;
use crate::client::{Answer, Failure, Keep, Stream};

/// Most response header fields read (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Largest response head read before giving up on the target.
const MAX_HEAD: usize = 1 << 20;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// The request head of an HTTP/1.1 call, encoded once: request line,
/// `headers` in the header map's order (lower-case names, as hyper
/// writes them), and the body's framing: `content-length` for a body the
/// headers give no length for, `transfer-encoding: chunked` when there
/// are trailers to send.
pub fn encode_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: usize,
    trailers: bool,
) -> Bytes {
    let mut head = Vec::with_capacity(64 + headers.len() * 48);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    if trailers {
        field(&mut head, b"transfer-encoding", b"chunked");
    } else if body > 0 && !headers.contains_key(http::header::CONTENT_LENGTH) {
        field(&mut head, b"content-length", body.to_string().as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether the connection may carry another call after this answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Keep it.
    Keep,
    /// Close it: the target said so, or the body ran to the close.
    Close,
}

/// One HTTP/1.1 connection to the target.
#[derive(Debug)]
pub struct Connection {
    io: Stream,
    read: BytesMut,
    /// Encoded chunk framing and trailers, for calls that send trailers.
    scratch: Vec<u8>,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the response head says.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    reuse: Reuse,
}

impl Connection {
    /// A connection over `io`, fresh from the connector.
    pub fn new(io: Stream) -> Self {
        Connection {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            scratch: Vec::new(),
        }
    }

    /// Whether the target has closed this idle connection (or sent bytes
    /// nobody asked for): checked without waiting, before a kept
    /// connection is used, so a request never goes out on a connection
    /// already known dead.
    pub fn closed_while_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        !matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// Sends `call` and reads the whole answer. `sent` is when the call
    /// left, for the results' head time.
    pub async fn call(
        &mut self,
        call: &Call,
        keep: Keep,
        sent: Instant,
    ) -> Result<(Answer, Reuse), Failure> {
        self.send(call).await?;
        let head = loop {
            let head = self.read_head(call, keep).await?;
            // Interim answers (100 Continue, 103 Early Hints) come before
            // the real one; 101 ends HTTP on this connection.
            let interim = head.status.is_informational() && head.status.as_u16() != 101;
            if !interim {
                break head;
            }
        };
        let head_after = if keep.messages {
            sent.elapsed()
        } else {
            Duration::ZERO
        };
        let mut body = BodySink {
            kept: BytesMut::new(),
            cap: keep.body,
            size: 0,
        };
        let mut reuse = head.reuse;
        let trailers = match head.framing {
            Framing::Empty => None,
            Framing::Length(length) => {
                self.read_length(length, &mut body).await?;
                None
            }
            Framing::Chunked => self.read_chunked(&mut body).await?,
            Framing::UntilClose => {
                reuse = Reuse::Close;
                self.read_until_close(&mut body).await?;
                None
            }
        };
        // Bytes past the answer were never asked for: the connection's
        // framing cannot be trusted any more.
        if !self.read.is_empty() {
            reuse = Reuse::Close;
        }
        Ok((
            Answer {
                status: head.status,
                headers: head.headers,
                body: body.kept.freeze(),
                body_size: body.size,
                trailers,
                // gRPC is never sent over HTTP/1.1 (the call builder skips it).
                grpc: None,
                messages: Vec::new(),
                head_after,
            },
            reuse,
        ))
    }

    /// Writes the head and body (chunked, then the trailers, when the
    /// call has trailers), in as few writes as the socket takes.
    async fn send(&mut self, call: &Call) -> Result<(), Failure> {
        let failed = |e: std::io::Error| io_failure(&e, "sending the request", false);
        match &call.trailers {
            None => write_all(&mut self.io, &[&call.h1_head, &call.body])
                .await
                .map_err(failed),
            Some(trailers) => {
                let scratch = &mut self.scratch;
                scratch.clear();
                if !call.body.is_empty() {
                    scratch.extend_from_slice(format!("{:x}\r\n", call.body.len()).as_bytes());
                }
                let split = scratch.len();
                if !call.body.is_empty() {
                    scratch.extend_from_slice(b"\r\n");
                }
                scratch.extend_from_slice(b"0\r\n");
                for (name, value) in trailers {
                    field(scratch, name.as_str().as_bytes(), value.as_bytes());
                }
                scratch.extend_from_slice(b"\r\n");
                let (size, tail) = scratch.split_at(split);
                write_all(&mut self.io, &[&call.h1_head, size, &call.body, tail])
                    .await
                    .map_err(failed)
            }
        }
    }

    /// Reads more from the target into the read buffer; `Ok(false)` at
    /// the end of the stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        self.read.reserve(READ_CHUNK);
        Ok(self.io.read_buf(&mut self.read).await? > 0)
    }

    /// Reads and parses one response head.
    async fn read_head(&mut self, call: &Call, keep: Keep) -> Result<Head, Failure> {
        loop {
            if let Some(head) = parse_head(&mut self.read, &call.method, keep.messages)? {
                return Ok(head);
            }
            if self.read.len() > MAX_HEAD {
                return Err(protocol("the response head is larger than 1 MiB", false));
            }
            let more = self
                .fill()
                .await
                .map_err(|e| io_failure(&e, "reading the response", false))?;
            if !more {
                return Err(closed(false));
            }
        }
    }

    async fn read_length(&mut self, mut left: u64, body: &mut BodySink) -> Result<(), Failure> {
        loop {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.read.len());
            body.take(&mut self.read, take);
            left -= take as u64;
            if left == 0 {
                return Ok(());
            }
            self.fill_body().await?;
        }
    }

    async fn read_until_close(&mut self, body: &mut BodySink) -> Result<(), Failure> {
        loop {
            let all = self.read.len();
            body.take(&mut self.read, all);
            self.read.reserve(READ_CHUNK);
            match self.io.read_buf(&mut self.read).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(io_failure(&e, "reading the response body", true)),
            }
        }
    }

    /// Reads a chunked body and its trailers (RFC 9112 §7.1).
    async fn read_chunked(&mut self, body: &mut BodySink) -> Result<Option<HeaderMap>, Failure> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.read.advance(used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_body().await?,
                    Err(_) => return Err(protocol("invalid chunk size line", true)),
                }
            };
            if size == 0 {
                return self.read_trailers().await;
            }
            let mut left = size;
            while left > 0 {
                if self.read.is_empty() {
                    self.fill_body().await?;
                }
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.read.len());
                body.take(&mut self.read, take);
                left -= take as u64;
            }
            while self.read.len() < 2 {
                self.fill_body().await?;
            }
            if &self.read[..2] != b"\r\n" {
                return Err(protocol("a chunk does not end with CRLF", true));
            }
            self.read.advance(2);
        }
    }

    async fn read_trailers(&mut self) -> Result<Option<HeaderMap>, Failure> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&self.read, &mut fields) {
                Ok(httparse::Status::Complete((used, fields))) => {
                    let trailers = header_map(fields);
                    self.read.advance(used);
                    return Ok((!trailers.is_empty()).then_some(trailers));
                }
                Ok(httparse::Status::Partial) => {
                    if self.read.len() > MAX_HEAD {
                        return Err(protocol("the trailers are larger than 1 MiB", true));
                    }
                    self.fill_body().await?;
                }
                Err(e) => return Err(protocol(&format!("invalid trailers: {e}"), true)),
            }
        }
    }

    /// [`Connection::fill`] inside a body, where the end of the stream
    /// means the answer was cut short.
    async fn fill_body(&mut self) -> Result<(), Failure> {
        match self.fill().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(closed(true)),
            Err(e) => Err(io_failure(&e, "reading the response body", true)),
        }
    }
}

/// Where a response body goes: counted, and its first `cap` bytes kept.
struct BodySink {
    kept: BytesMut,
    cap: usize,
    size: u64,
}

impl BodySink {
    /// Takes `n` bytes off the front of `read`.
    fn take(&mut self, read: &mut BytesMut, n: usize) {
        if n == 0 {
            return;
        }
        let room = self.cap.saturating_sub(self.kept.len()).min(n);
        if room > 0 {
            self.kept.extend_from_slice(&read[..room]);
        }
        read.advance(n);
        self.size += n as u64;
    }
}

/// Parses a complete response head off the front of `read` (`None`:
/// not all there yet). Builds a header map only when `headers` is set.
fn parse_head(
    read: &mut BytesMut,
    method: &Method,
    headers: bool,
) -> Result<Option<Head>, Failure> {
    // Uninitialised: filling a hundred empty fields costs more than
    // parsing the head.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        read,
        &mut fields,
    );
    let used = match parsed {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(protocol(&format!("invalid response head: {e}"), false)),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| protocol(&format!("invalid status code {code}"), false))?;
    let http10 = response.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive = false;
    for field in response.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            for value in field.value.split(|&b| b == b',') {
                let value = std::str::from_utf8(value)
                    .ok()
                    .map(str::trim)
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| protocol("invalid content-length", false))?;
                if length.is_some_and(|l| l != value) {
                    return Err(protocol("conflicting content-length values", false));
                }
                length = Some(value);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            let last = field
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (no_body, chunked, length) {
        (true, _, _) => Framing::Empty,
        (false, Some(true), _) => Framing::Chunked,
        (false, Some(false), _) => Framing::UntilClose,
        (false, None, Some(0)) => Framing::Empty,
        (false, None, Some(n)) => Framing::Length(n),
        (false, None, None) => Framing::UntilClose,
    };
    let reuse = if close || (http10 && !keep_alive) || status == StatusCode::SWITCHING_PROTOCOLS {
        Reuse::Close
    } else {
        Reuse::Keep
    };
    let headers = if headers {
        header_map(response.headers)
    } else {
        HeaderMap::new()
    };
    read.advance(used);
    Ok(Some(Head {
        status,
        headers,
        framing,
        reuse,
    }))
}

/// Parsed fields as a header map; fields that are not valid HTTP are
/// left out.
fn header_map(fields: &[httparse::Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Writes every slice whole, with vectored writes.
async fn write_all(io: &mut Stream, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

fn protocol(message: &str, after_head: bool) -> Failure {
    Failure {
        kind: ErrorKind::Protocol,
        message: format!("the target's answer is not valid HTTP/1.1: {message}"),
        after_head,
    }
}

fn closed(after_head: bool) -> Failure {
    Failure {
        kind: ErrorKind::Reset,
        message: "the target closed the connection before the response was complete".into(),
        after_head,
    }
}

fn io_failure(error: &std::io::Error, doing: &str, after_head: bool) -> Failure {
    Failure {
        kind: reprise_model::error::io_failure(error).unwrap_or(ErrorKind::Other),
        message: format!("{doing}: {error}"),
        after_head,
    }
}

#[cfg(test)]
mod tests {
    //! Each test runs a scripted HTTP/1.1 server of its own on 127.0.0.1:
    //! it reads whole requests and answers with the exact bytes given,
    //! written a byte at a time where the test says, so every parsing
    //! state is crossed.

    use std::time::Duration;

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method, Uri};
    use reprise_model::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::{Connection, Reuse, encode_head};
    use crate::call::{Call, Wire};
    use crate::client::{Answer, Failure, Keep, Stream};

    /// What the server does after reading one request.
    #[derive(Clone)]
    enum Step {
        /// Writes these bytes whole.
        Answer(&'static [u8]),
        /// Writes these bytes one at a time.
        Trickle(&'static [u8]),
        /// Writes these bytes, then closes the connection.
        AnswerAndClose(&'static [u8]),
    }

    /// A server answering the requests of each connection with `steps`
    /// in order; every request it reads (head and body, raw) is sent on
    /// the channel with the number of the connection it came on.
    async fn server(steps: Vec<Step>) -> (String, mpsc::UnboundedReceiver<(usize, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((mut socket, _)) = listener.accept().await {
                connection += 1;
                let (steps, tx) = (steps.clone(), tx.clone());
                tokio::spawn(async move {
                    for step in steps {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        let _ = tx.send((connection, request));
                        match step {
                            Step::Answer(bytes) => socket.write_all(bytes).await.unwrap(),
                            Step::Trickle(bytes) => {
                                for byte in bytes {
                                    socket.write_all(&[*byte]).await.unwrap();
                                    socket.flush().await.unwrap();
                                    tokio::time::sleep(Duration::from_micros(50)).await;
                                }
                            }
                            Step::AnswerAndClose(bytes) => {
                                socket.write_all(bytes).await.unwrap();
                                return;
                            }
                        }
                    }
                    // Hold the connection open until the client closes it.
                    let mut rest = Vec::new();
                    let _ = socket.read_to_end(&mut rest).await;
                });
            }
        });
        (addr, rx)
    }

    /// One request, raw: the head, then a content-length body or a
    /// chunked body through its trailers.
    async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            // Up to the empty line after the last chunk and its trailers.
            let mut tail = Vec::new();
            while !(tail.starts_with(b"0\r\n") && tail.ends_with(b"\r\n\r\n")
                || tail.windows(5).any(|w| w == b"\r\n0\r\n") && tail.ends_with(b"\r\n\r\n"))
            {
                socket.read_exact(&mut byte).await.ok()?;
                tail.push(byte[0]);
            }
            raw.extend_from_slice(&tail);
        } else if let Some(length) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            let mut body = vec![0u8; length];
            socket.read_exact(&mut body).await.ok()?;
            raw.extend_from_slice(&body);
        }
        Some(raw)
    }

    fn call(method: Method, body: &'static [u8], trailers: Option<HeaderMap>) -> Call {
        let uri = Uri::from_static("/things?a=1");
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.test"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let h1_head = encode_head(&method, &uri, &headers, body.len(), trailers.is_some());
        Call {
            recorded_id: vec![1; 16],
            recorded_at_ns: 0,
            endpoint: 0,
            wire: Wire::Http1,
            grpc: false,
            method,
            uri,
            headers,
            body: Bytes::from_static(body),
            messages: Vec::new(),
            trailers,
            h1_head,
        }
    }

    const ALL: Keep = Keep {
        body: 1 << 20,
        messages: true,
    };

    async fn connect(addr: &str) -> Connection {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Connection::new(Stream::Plain(tcp))
    }

    async fn send(connection: &mut Connection, call: &Call) -> Result<(Answer, Reuse), Failure> {
        tokio::time::timeout(
            Duration::from_secs(10),
            connection.call(call, ALL, Instant::now()),
        )
        .await
        .expect("the call ends within 10 s")
    }

    #[tokio::test]
    async fn requests_go_out_as_encoded_and_a_kept_connection_carries_the_next() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Answer: yes\r\n\r\nhello";
        let (addr, mut received) = server(vec![Step::Answer(answer), Step::Trickle(answer)]).await;
        let mut connection = connect(&addr).await;
        let post = call(Method::POST, b"{\"a\":1}", None);
        for _ in 0..2 {
            let (answer, reuse) = send(&mut connection, &post).await.unwrap();
            assert_eq!(reuse, Reuse::Keep);
            assert_eq!(answer.status, 200);
            assert_eq!(answer.headers["x-answer"], "yes");
            assert_eq!((&answer.body[..], answer.body_size), (&b"hello"[..], 5));
            assert_eq!(answer.trailers, None);
        }
        let expected = b"POST /things?a=1 HTTP/1.1\r\nhost: example.test\r\nx-many: 1\r\nx-many: 2\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        for _ in 0..2 {
            let (on, raw) = received.recv().await.unwrap();
            assert_eq!(on, 1, "both calls on the first connection");
            assert_eq!(
                String::from_utf8_lossy(&raw),
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[tokio::test]
    async fn request_trailers_go_out_chunked() {
        let (addr, mut received) =
            server(vec![Step::Answer(b"HTTP/1.1 204 No Content\r\n\r\n")]).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc"));
        let mut put = call(Method::PUT, b"0123456789abcdefg", Some(trailers));
        put.headers
            .insert("trailer", HeaderValue::from_static("x-checksum"));
        put.h1_head = encode_head(&put.method, &put.uri, &put.headers, 17, true);
        let (answer, _) = send(&mut connect(&addr).await, &put).await.unwrap();
        assert_eq!((answer.status.as_u16(), answer.body_size), (204, 0));
        let (_, raw) = received.recv().await.unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        assert!(
            raw.ends_with("transfer-encoding: chunked\r\n\r\n11\r\n0123456789abcdefg\r\n0\r\nx-checksum: abc\r\n\r\n"),
            "{raw:?}"
        );
        assert!(!raw.contains("content-length"), "{raw:?}");
    }

    #[tokio::test]
    async fn chunked_answers_with_extensions_and_trailers_byte_by_byte() {
        let answer: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nx-sum: 7\r\ngrpc-status: 0\r\n\r\n";
        let (addr, _received) = server(vec![Step::Trickle(answer), Step::Answer(answer)]).await;
        let mut connection = connect(&addr).await;
        for _ in 0..2 {
            let (answer, reuse) = send(&mut connection, &call(Method::GET, b"", None))
                .await
                .unwrap();
            assert_eq!(reuse, Reuse::Keep);
            assert_eq!((&answer.body[..], answer.body_size), (&b"abcdefg"[..], 7));
            let trailers = answer.trailers.expect("trailers");
            assert_eq!(
                (&trailers["x-sum"], &trailers["grpc-status"]),
                (
                    &HeaderValue::from_static("7"),
                    &HeaderValue::from_static("0")
                )
            );
        }
    }

    #[tokio::test]
    async fn bodies_that_run_to_the_close_and_answers_that_close() {
        let (addr, _r) = server(vec![Step::AnswerAndClose(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        )])
        .await;
        let (answer, reuse) = send(&mut connect(&addr).await, &call(Method::GET, b"", None))
            .await
            .unwrap();
        assert_eq!(
            (&answer.body[..], reuse),
            (&b"until the end"[..], Reuse::Close)
        );

        for (bytes, reuse) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..],
                Reuse::Close,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Reuse::Close,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                Reuse::Keep,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                Reuse::Close,
            ),
        ] {
            let (addr, _r) = server(vec![Step::Answer(bytes)]).await;
            let got = send(&mut connect(&addr).await, &call(Method::GET, b"", None))
                .await
                .unwrap();
            assert_eq!((&got.0.body[..], got.1), (&b"ok"[..], reuse), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_bodiless_answers_read_no_body() {
        let (addr, _r) = server(vec![Step::Trickle(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew",
        )])
        .await;
        let (answer, _) = send(&mut connect(&addr).await, &call(Method::POST, b"x", None))
            .await
            .unwrap();
        assert_eq!(
            (answer.status.as_u16(), &answer.body[..]),
            (201, &b"new"[..])
        );

        // Lengths that announce bodies never sent: HEAD, 204 and 304 have
        // none, and the connection stays usable.
        for (method, bytes) in [
            (
                Method::HEAD,
                &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"[..],
            ),
            (
                Method::GET,
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n",
            ),
            (
                Method::GET,
                b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
        ] {
            let (addr, _r) = server(vec![Step::Answer(bytes), Step::Answer(bytes)]).await;
            let mut connection = connect(&addr).await;
            for _ in 0..2 {
                let (answer, reuse) = send(&mut connection, &call(method.clone(), b"", None))
                    .await
                    .unwrap();
                assert_eq!((answer.body_size, reuse), (0, Reuse::Keep), "{bytes:?}");
            }
        }
    }

    #[tokio::test]
    async fn bad_answers_are_protocol_errors_and_cut_answers_resets() {
        let cases: [(&'static [u8], ErrorKind, bool, &str); 7] = [
            (
                b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                ErrorKind::Protocol,
                false,
                "invalid response head",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
                ErrorKind::Protocol,
                false,
                "conflicting content-length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                ErrorKind::Protocol,
                false,
                "invalid content-length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ErrorKind::Protocol,
                true,
                "invalid chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
                ErrorKind::Protocol,
                true,
                "does not end with CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                ErrorKind::Reset,
                true,
                "closed the connection before the response was complete",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-",
                ErrorKind::Reset,
                false,
                "closed the connection before the response was complete",
            ),
        ];
        for (bytes, kind, after_head, message) in cases {
            let (addr, _r) = server(vec![Step::AnswerAndClose(bytes)]).await;
            let failure = send(&mut connect(&addr).await, &call(Method::GET, b"", None))
                .await
                .unwrap_err();
            assert_eq!(
                (failure.kind, failure.after_head),
                (kind, after_head),
                "{bytes:?}"
            );
            assert!(
                failure.message.contains(message),
                "{bytes:?}: {}",
                failure.message
            );
        }
    }

    #[tokio::test]
    async fn a_connection_the_target_closed_is_seen_before_it_is_used() {
        let (addr, _r) = server(vec![Step::AnswerAndClose(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )])
        .await;
        let mut connection = connect(&addr).await;
        assert!(!connection.closed_while_idle(), "open before the call");
        let (_, reuse) = send(&mut connection, &call(Method::GET, b"", None))
            .await
            .unwrap();
        assert_eq!(reuse, Reuse::Keep, "the answer itself allows reuse");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !connection.closed_while_idle() {
            assert!(std::time::Instant::now() < deadline, "the close is seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
