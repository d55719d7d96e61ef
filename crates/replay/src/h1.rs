//! The replay's HTTP/1.1 client: one keep-alive connection, one call at a
//! time, on the worker's own task.
//!
//! Why not hyper's client here (nor for HTTP/2, see `h2.rs`): a replay
//! sends the same few prepared requests as fast as the target answers,
//! and on a shared machine every instruction the load generator spends is
//! taken from the target. hyper's connection runs as a task of its own
//! behind a dispatch channel and builds a header map of every response;
//! with it a call cost about 24,000 instructions (callgrind), four times
//! wrk's. Here the request head is encoded once, when the call is built
//! ([`request_head`]), the response head is parsed with `httparse` into a
//! stack array, and a header map is built only when results are written:
//! about 8,000 instructions a call. The answer is read with
//! [`reprise_net::h1`] (RFC 9112's framing, shared with the recording
//! proxy's upstream client); here, 1xx answers are skipped and the
//! connection is kept only when the answer allows it and nothing follows
//! it.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Uri};
use reprise_model::ErrorKind;
use reprise_net::h1::{
    self, BodyDecoder, Decoded, Framing, GivenLength, RequestFraming, ResponseHead, put_field,
};
use reprise_net::stream::write_all_vectored;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::call::Call;
use crate::client::{Answer, Failure, Keep, Stream};

pub use reprise_net::h1::Reuse;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// The request head of an HTTP/1.1 call, encoded once
/// ([`h1::encode_head`]): `headers` as they are (a recorded
/// `content-length` is left in only when it still holds, see `call.rs`),
/// then `transfer-encoding: chunked` when there are trailers to send, or
/// `content-length` for a body the headers give no length for.
pub fn request_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: usize,
    trailers: bool,
) -> Bytes {
    let framing = if trailers {
        RequestFraming::Chunked
    } else if body > 0 && !headers.contains_key(http::header::CONTENT_LENGTH) {
        RequestFraming::Length(body as u64)
    } else {
        RequestFraming::None
    };
    // A chunked body may not carry a length too (RFC 9112 §6.1), even
    // one `--set-header` put back.
    let given = if trailers {
        GivenLength::Drop
    } else {
        GivenLength::Keep
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    Bytes::from(h1::encode_head(method, target, headers, given, framing))
}

/// One HTTP/1.1 connection to the target.
#[derive(Debug)]
pub struct Connection {
    io: Stream,
    read: BytesMut,
    /// Encoded chunk framing and trailers, for calls that send trailers.
    scratch: Vec<u8>,
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
        self.io.closed_while_idle()
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
        if head.framing == Framing::UntilClose {
            reuse = Reuse::Close;
        }
        let trailers = self.read_body(head.framing, &mut body).await?;
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
            None => write_all_vectored(&mut self.io, &[&call.h1_head, &call.body])
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
                    put_field(scratch, name.as_str().as_bytes(), value.as_bytes());
                }
                scratch.extend_from_slice(b"\r\n");
                let (size, tail) = scratch.split_at(split);
                write_all_vectored(&mut self.io, &[&call.h1_head, size, &call.body, tail])
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
    async fn read_head(&mut self, call: &Call, keep: Keep) -> Result<ResponseHead, Failure> {
        loop {
            let parsed =
                h1::parse_response_head(&mut self.read, call.method == Method::HEAD, keep.messages)
                    .map_err(|e| protocol(&e.0, false))?;
            if let Some(head) = parsed {
                return Ok(head);
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

    /// Reads a body framed as `framing` into `body`; the trailers of a
    /// chunked one.
    async fn read_body(
        &mut self,
        framing: Framing,
        body: &mut BodySink,
    ) -> Result<Option<HeaderMap>, Failure> {
        let mut decoder = BodyDecoder::new(framing);
        loop {
            match decoder
                .decode(&mut self.read)
                .map_err(|e| protocol(&e.0, true))?
            {
                Decoded::Data(n) => body.take(&mut self.read, n),
                Decoded::End => return Ok(decoder.take_trailers()),
                Decoded::More => {
                    let more = self
                        .fill()
                        .await
                        .map_err(|e| io_failure(&e, "reading the response body", true))?;
                    if !more {
                        decoder.closed().map_err(|_| closed(true))?;
                    }
                }
            }
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

    use super::{Connection, Reuse, request_head};
    use crate::call::{Call, Wire};

    #[test]
    fn a_chunked_head_carries_no_length_a_plain_one_keeps_the_recorded_one() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("5"));
        let uri: Uri = "/upload".parse().unwrap();
        let chunked = request_head(&Method::POST, &uri, &headers, 5, true);
        assert_eq!(
            &chunked[..],
            b"POST /upload HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let plain = request_head(&Method::POST, &uri, &headers, 5, false);
        assert_eq!(
            &plain[..],
            b"POST /upload HTTP/1.1\r\ncontent-length: 5\r\n\r\n"
        );
    }
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
        let h1_head = request_head(&method, &uri, &headers, body.len(), trailers.is_some());
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
            recorded_status: Some(200),
            recorded_grpc: None,
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
        put.h1_head = request_head(&put.method, &put.uri, &put.headers, 17, true);
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
