//! The proxy's HTTP/1.1 client to the upstream: a pool of keep-alive
//! connections per serving thread, the request written straight to the
//! socket, the answer read off it with [`reprise_net::h1`], and its body
//! handed to the client's connection as it arrives ([`UpstreamBody`]).
//!
//! Why not hyper's client (HTTP/2 calls and tunnels still use it): under
//! callgrind, hyper-util's pooled client cost about 25,000 instructions
//! per forwarded call (a dispatch channel and a task per connection, the
//! pool's bookkeeping, a header map built and encoded again), more than
//! nginx spends on a whole proxied call. Here the request head is encoded
//! once from the forwarded fields and the pool is a list.
//!
//! A connection goes back to the pool only once its answer has been read
//! to the end, with nothing after it, and the upstream allowed reuse. An
//! idle connection the upstream has closed is noticed before it is used;
//! an idempotent bodiless request that fails on a reused connection before
//! any answer arrived is sent once more on a new one (the upstream may
//! have closed it as the request left). Idle connections older than 90 s
//! are closed, not reused. An upstream silent for `--upstream-timeout` in
//! the middle of a body is given up on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use reprise_model::ErrorKind;
use reprise_net::h1::{
    self, BodyDecoder, Decoded, Framing, LengthField, RequestFraming, ResponseHead, Reuse,
    put_field,
};
use reprise_net::stream::{Stream, write_all_vectored};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// How long an answer may take to be read once sending the request
/// failed (an upstream that answered and closed).
const LATE_ANSWER: Duration = Duration::from_millis(250);
/// How long a half-close of a cut upload may take.
const SHUTDOWN: Duration = Duration::from_secs(1);
/// An idle connection older than this is closed, not reused (hyper's
/// client default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a call to the upstream failed: the kind and one line.
pub type Failed = (ErrorKind, String);

/// Why a call through [`Http1Upstream::send`] failed.
#[derive(Debug)]
pub enum SendError {
    /// The upstream could not be reached, or failed: the kind and one
    /// line.
    Upstream(Failed),
    /// The client's request body was not valid (a bad chunk:
    /// `Protocol`) or broke off (`Reset`...): the client's fault. The
    /// upstream was never sent a complete request, and its answer, if
    /// one came, is not the client's.
    RequestBody(Failed),
}

impl From<Failed> for SendError {
    fn from(failed: Failed) -> Self {
        SendError::Upstream(failed)
    }
}

/// One connection to the upstream and what has been read off it.
struct Connection {
    io: Stream,
    read: BytesMut,
    /// Its place among the pool's connections, given back when the last
    /// half of the socket closes (an early answer's upload holds one).
    slot: Slot,
}

/// A place among [`Http1Upstream`]'s connections.
type Slot = Arc<tokio::sync::OwnedSemaphorePermit>;

struct Idle {
    connection: Connection,
    since: Instant,
}

/// Connections to the upstream for HTTP/1.1 calls.
pub struct Http1Upstream {
    /// `host:port`.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    /// How long the rest of an upload may take once the upstream has
    /// answered before it ended.
    response_timeout: Duration,
    /// Newest at the back, taken first; expired ones leave from the front.
    idle: Mutex<VecDeque<Idle>>,
    /// Connections open, in use or idle: each holds one.
    slots: Arc<tokio::sync::Semaphore>,
    /// How many [`Http1Upstream::slots`] there are.
    max_connections: usize,
    /// A connection went back to the pool: a call waiting for a slot
    /// may take it.
    returned: tokio::sync::Notify,
}

impl Http1Upstream {
    /// Connections to `upstream`, at most `max_connections` open (in use
    /// or idle: past it a call waits for one to come back or close); TLS
    /// with `tls` (ALPN http/1.1) when it is https.
    pub fn new(
        upstream: &crate::config::Upstream,
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
        max_connections: usize,
    ) -> Result<Self, crate::ProxyError> {
        let max_connections = max_connections.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let tls = if upstream.scheme == http::uri::Scheme::HTTPS {
            let name = crate::protocol::tls_name(upstream)?;
            let mut config = tls.clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Http1Upstream {
            authority: upstream.socket_authority(),
            tls,
            connect_timeout,
            response_timeout,
            idle: Mutex::new(VecDeque::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            max_connections,
            returned: tokio::sync::Notify::new(),
        })
    }

    /// A kept connection still open, or a new one; whether it was kept.
    /// With every slot taken, waits for a connection to come back to the
    /// pool or to close (the caller bounds the wait by
    /// `--upstream-timeout`).
    async fn checkout(&self) -> Result<(Connection, bool), Failed> {
        loop {
            // Listening before looking, so that a connection returned
            // in between is not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(kept) = self.take_idle() {
                return Ok((kept, true));
            }
            let slot = tokio::select! {
                biased;
                () = &mut returned => continue,
                slot = Arc::clone(&self.slots).acquire_owned() => slot,
            };
            let slot = slot.map_err(|_| {
                (
                    ErrorKind::Connect,
                    format!(
                        "no connection to {} free (of {})",
                        self.authority, self.max_connections
                    ),
                )
            })?;
            return Ok((self.connect(Arc::new(slot)).await?, false));
        }
    }

    /// The newest idle connection still open; expired ones are closed.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut kept) = idle.pop_back() {
            if kept.since.elapsed() < IDLE_TIMEOUT && !kept.connection.io.closed_while_idle() {
                return Some(kept.connection);
            }
        }
        None
    }

    fn checkin(&self, connection: Connection) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // Connections idle too long are closed here, not left waiting
        // at the bottom of the pool for a burst to reach them.
        while idle
            .front()
            .is_some_and(|oldest| oldest.since.elapsed() >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        // Never more than the slots: each idle connection holds one.
        idle.push_back(Idle {
            connection,
            since: Instant::now(),
        });
        drop(idle);
        self.returned.notify_one();
    }

    /// A new connection in `slot`.
    async fn connect(&self, slot: Slot) -> Result<Connection, Failed> {
        let failed = |message: String| (ErrorKind::Connect, message);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| {
                failed(format!(
                    "cannot connect to {} within {:?}",
                    self.authority, self.connect_timeout
                ))
            })?
            .map_err(|e| failed(format!("cannot connect to {}: {e}", self.authority)))?;
        let _ = tcp.set_nodelay(true);
        let io = match &self.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| {
                    failed(format!(
                        "no TLS handshake with {} within {:?}",
                        self.authority, self.connect_timeout
                    ))
                })?
                .map_err(|e| (ErrorKind::Tls, format!("TLS with {}: {e}", self.authority)))?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Connection {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            slot,
        })
    }

    /// The head of a request for the upstream (origin form, `Content-Length`
    /// or chunked as `body_size` and the request's own fields say), and
    /// the framing [`Http1Upstream::send`] then gives the body.
    pub fn request_head(
        parts: &http::request::Parts,
        body_size: Option<u64>,
    ) -> (Vec<u8>, RequestFraming) {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let framing = RequestFraming::of(
            body_size,
            parts.headers.contains_key(header::CONTENT_LENGTH),
        );
        let head = h1::encode_head(
            &parts.method,
            target,
            &parts.headers,
            h1::GivenLength::Drop,
            framing,
        );
        (head, framing)
    }

    /// Sends a `method` request (`head` from [`h1::encode_head`], then `body`
    /// framed as `framing`) and reads the answer's head; the body follows
    /// in the returned [`UpstreamBody`].
    pub async fn send<B>(
        self: &Arc<Self>,
        method: &http::Method,
        head: Vec<u8>,
        body: B,
        framing: RequestFraming,
    ) -> Result<(ResponseHead, UpstreamBody), SendError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + 'static,
    {
        let head_request = method == http::Method::HEAD;
        let (mut connection, kept) = self.checkout().await?;
        let answer = if matches!(framing, RequestFraming::None | RequestFraming::Length(0)) {
            match exchange_bodiless(&mut connection, &head, head_request).await {
                // The upstream closed the kept connection as the request
                // left: once more, on a new one, if sending it twice is
                // harmless (RFC 9110 §9.2.2).
                Err(Attempt::Unanswered(_)) if kept && method.is_idempotent() => {
                    // In the same slot: the old socket is closed first.
                    let Connection { slot, .. } = connection;
                    connection = self.connect(slot).await?;
                    exchange_bodiless(&mut connection, &head, head_request).await
                }
                other => other,
            }
            .map(|head| (head, Reader::Whole(connection)))
        } else {
            let bound = self.response_timeout;
            exchange_with_body(connection, head, body, framing, head_request, bound).await
        };
        let (mut head, reader) = answer.map_err(Attempt::into_send_error)?;
        fix_length(&mut head);
        let mut reuse = head.reuse;
        if head.framing == Framing::UntilClose {
            reuse = Reuse::Close;
        }
        let decoder = BodyDecoder::new(head.framing);
        let mut body = UpstreamBody {
            reader: Some(reader),
            decoder,
            reuse,
            pool: Arc::clone(self),
            broken: None,
            idle: None,
        };
        if body.decoder.is_done() {
            body.release();
        }
        Ok((head, body))
    }
}

/// Makes the answer's `content-length` agree with its framing, for the
/// client's connection, which frames by it: dropped when
/// `transfer-encoding` overrides it (RFC 9112 §6.3), one plain number
/// when the upstream sent a list of the same value.
fn fix_length(head: &mut ResponseHead) {
    match (head.framing, head.length_field) {
        (_, LengthField::Absent)
        | (Framing::Length(_), LengthField::Plain)
        | (Framing::Empty, _) => {}
        (Framing::Chunked | Framing::UntilClose, _) => {
            head.headers.remove(header::CONTENT_LENGTH);
        }
        (Framing::Length(n), LengthField::Other) => {
            head.headers
                .insert(header::CONTENT_LENGTH, http::HeaderValue::from(n));
        }
    }
}

/// How an exchange failed: before any answer arrived (safe to send a
/// bodiless request again), or after.
enum Attempt {
    Unanswered(Failed),
    Failed(Failed),
    /// The client's request body failed.
    RequestBody(Failed),
}

impl Attempt {
    fn into_send_error(self) -> SendError {
        match self {
            Attempt::Unanswered(failed) | Attempt::Failed(failed) => SendError::Upstream(failed),
            Attempt::RequestBody(why) => SendError::RequestBody(why),
        }
    }
}

impl From<Failed> for Attempt {
    fn from(failed: Failed) -> Self {
        Attempt::Failed(failed)
    }
}

/// The kind of a failure talking to the upstream: the I/O error's in its
/// chain (reset, timeout...), else a protocol failure. Both clients,
/// this one and hyper-util's for HTTP/2, classify with it.
pub fn failure_kind(error: &(dyn std::error::Error + 'static)) -> ErrorKind {
    match reprise_model::error::io_failure(error) {
        Some(ErrorKind::Other) | None => ErrorKind::Protocol,
        Some(kind) => kind,
    }
}

async fn exchange_bodiless(
    connection: &mut Connection,
    head: &[u8],
    head_request: bool,
) -> Result<ResponseHead, Attempt> {
    let sent = async {
        connection.io.write_all(head).await?;
        connection.io.flush().await
    };
    sent.await.map_err(|e| {
        Attempt::Unanswered((failure_kind(&e), format!("sending the request: {e}")))
    })?;
    read_head_from(&mut connection.io, &mut connection.read, head_request).await
}

/// Writes the head and the body while watching for the answer. An
/// upstream may answer before it has read the whole body: a 413 that
/// refuses it, or an answer that does not need it (nginx's `return`,
/// which reads the rest and discards it). Either way the answer is the
/// client's at once, as hyper's client does: the upload goes on, on a
/// task of its own, until it ends or either side stops it; the answer is
/// read off the connection's read half, and the connection is not kept.
async fn exchange_with_body<B>(
    connection: Connection,
    head: Vec<u8>,
    mut body: B,
    framing: RequestFraming,
    head_request: bool,
    bound: Duration,
) -> Result<(ResponseHead, Reader), Attempt>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + 'static,
{
    let Connection { io, mut read, slot } = connection;
    // The upload's task holds the slot too: the socket stays open until
    // both halves are gone.
    let sending_slot = Arc::clone(&slot);
    let (mut reader, mut writer) = tokio::io::split(io);
    // Armed only if the answer comes first: the rest of the upload then
    // has `bound` to finish.
    let (arm, armed) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let mut sending = Box::pin(async move {
        let deadline = async {
            match armed.await {
                Ok(at) => tokio::time::sleep_until(at).await,
                Err(_) => std::future::pending().await,
            }
        };
        let upload = async {
            writer
                .write_all(&head)
                .await
                .map_err(|e| (failure_kind(&e), format!("sending the request: {e}")))?;
            send_body(&mut writer, &mut body, framing).await
        };
        let sent = tokio::select! {
            sent = upload => sent,
            () = deadline => Err(Attempt::Failed((
                ErrorKind::Timeout,
                "the upload outlasted --upstream-timeout after the upstream answered".into(),
            ))),
        };
        if sent.is_err() {
            // Half-closed, so the upstream sees the request end rather
            // than wait for the rest of it (the read half still holds
            // the connection open).
            let _ = tokio::time::timeout(SHUTDOWN, writer.shutdown()).await;
        }
        (writer, sent, sending_slot)
    });
    let (answer, upload) = {
        let answering = read_head_from(&mut reader, &mut read, head_request);
        tokio::pin!(answering);
        tokio::select! {
            biased;
            answered = &mut answering => (answered, Upload::Going),
            (writer, sent, _) = &mut sending => match sent {
                Ok(()) => (answering.await, Upload::Done(writer)),
                // A request the client broke is answered by the proxy:
                // whatever the upstream made of the part it got (an
                // upstream that does not read bodies answers at once)
                // was not an answer to the client's request.
                Err(broken @ Attempt::RequestBody(_)) => return Err(broken),
                // The upstream may have answered and closed (a 413): its
                // answer, if it is there, is the client's.
                Err(failed) => match tokio::time::timeout(LATE_ANSWER, &mut answering).await {
                    Ok(Ok(head)) => (Ok(head), Upload::Failed),
                    _ => return Err(failed),
                },
            }
        }
    };
    let mut head = answer?;
    match upload {
        Upload::Done(writer) => {
            let io = reader.unsplit(writer);
            Ok((head, Reader::Whole(Connection { io, read, slot })))
        }
        Upload::Going => {
            // Bounded: an upstream that answered, then stopped reading
            // without closing, must not hold the task and both
            // connections forever.
            let _ = arm.send(tokio::time::Instant::now() + bound);
            tokio::spawn(sending);
            head.reuse = Reuse::Close;
            Ok((
                head,
                Reader::Half {
                    io: reader,
                    read,
                    _slot: slot,
                },
            ))
        }
        Upload::Failed => {
            head.reuse = Reuse::Close;
            Ok((
                head,
                Reader::Half {
                    io: reader,
                    read,
                    _slot: slot,
                },
            ))
        }
    }
}

/// Where the request body stands once the answer's head is in.
enum Upload<W> {
    /// Sent whole; the write half, to make the connection whole again.
    Done(W),
    /// Still going (the answer came first).
    Going,
    /// Failed after the upstream had answered.
    Failed,
}

/// Reads an answer's head (skipping interim answers) off `io`;
/// [`Attempt::Unanswered`] when the connection failed before a byte of
/// any answer came.
async fn read_head_from<R: tokio::io::AsyncRead + Unpin>(
    io: &mut R,
    read: &mut BytesMut,
    head_request: bool,
) -> Result<ResponseHead, Attempt> {
    let mut answered = false;
    loop {
        while let Some(head) = h1::parse_response_head(read, head_request, true)
            .map_err(|e| Attempt::Failed((ErrorKind::Protocol, invalid_answer(&e))))?
        {
            if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(Attempt::Failed((
                    ErrorKind::Protocol,
                    "the upstream switched protocols for a request that did not ask to".into(),
                )));
            }
            if !is_interim(&head) {
                return Ok(head);
            }
            answered = true;
        }
        read.reserve(READ_CHUNK);
        let failed = match io.read_buf(read).await {
            Ok(0) => cut_before_head(),
            Ok(_) => continue,
            Err(e) => (failure_kind(&e), format!("reading the response: {e}")),
        };
        return Err(if answered || !read.is_empty() {
            Attempt::Failed(failed)
        } else {
            Attempt::Unanswered(failed)
        });
    }
}

/// Writes `body` framed as `framing`.
async fn send_body<W, B>(
    writer: &mut W,
    body: &mut B,
    framing: RequestFraming,
) -> Result<(), Attempt>
where
    W: tokio::io::AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let chunked = framing == RequestFraming::Chunked;
    let sending = |e: std::io::Error| (failure_kind(&e), format!("sending the request body: {e}"));
    let mut tail = Vec::new();
    let mut sent: u64 = 0;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                let why = reprise_model::error::one_line(&e);
                return Err(Attempt::RequestBody((failure_kind(&e), why)));
            }
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => continue,
            Ok(data) if chunked => {
                sent += data.len() as u64;
                let size = format!("{:x}\r\n", data.len());
                write_all_vectored(writer, &[size.as_bytes(), &data, b"\r\n"])
                    .await
                    .map_err(sending)?;
            }
            Ok(data) => {
                sent += data.len() as u64;
                if let RequestFraming::Length(n) = framing
                    && sent > n
                {
                    return Err(longer_than_declared(n).into());
                }
                writer.write_all(&data).await.map_err(sending)?;
            }
            Err(frame) => {
                if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                    for (name, value) in &trailers {
                        put_field(&mut tail, name.as_str().as_bytes(), value.as_bytes());
                    }
                }
                continue;
            }
        }
        // Each piece goes on as it came (TLS may hold it otherwise).
        writer.flush().await.map_err(sending)?;
    }
    match framing {
        RequestFraming::Chunked => {
            write_all_vectored(writer, &[b"0\r\n", &tail, b"\r\n"])
                .await
                .map_err(sending)?;
        }
        // The connection's framing would be off: it must not be reused.
        RequestFraming::Length(n) if sent != n => return Err(longer_than_declared(n).into()),
        _ => {}
    }
    Ok(writer.flush().await.map_err(sending)?)
}

fn longer_than_declared(n: u64) -> Failed {
    (
        ErrorKind::Protocol,
        format!("the request body is not the {n} bytes its length says"),
    )
}

/// 1xx answers other than 101 come before the real one and are skipped
/// (the client's `100 Continue` is the proxy's own).
fn is_interim(head: &ResponseHead) -> bool {
    head.status.is_informational() && head.status != http::StatusCode::SWITCHING_PROTOCOLS
}

fn invalid_answer(e: &h1::Invalid) -> String {
    format!("the upstream's answer is not valid HTTP/1.1: {e}")
}

fn cut_before_head() -> Failed {
    (
        ErrorKind::Reset,
        "the upstream closed the connection before answering".to_string(),
    )
}

/// Where an answer's body is read from.
enum Reader {
    /// The connection, which may go back to the pool.
    Whole(Connection),
    /// The read half of a connection whose other half is still sending
    /// the request body (an early answer): never kept.
    Half {
        io: tokio::io::ReadHalf<Stream>,
        read: BytesMut,
        _slot: Slot,
    },
}

impl Reader {
    fn buffer(&mut self) -> &mut BytesMut {
        match self {
            Reader::Whole(connection) => &mut connection.read,
            Reader::Half { read, .. } => read,
        }
    }

    /// Reads more into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        match self {
            Reader::Whole(connection) => {
                connection.read.reserve(READ_CHUNK);
                tokio_util::io::poll_read_buf(
                    Pin::new(&mut connection.io),
                    cx,
                    &mut connection.read,
                )
            }
            Reader::Half { io, read, .. } => {
                read.reserve(READ_CHUNK);
                tokio_util::io::poll_read_buf(Pin::new(io), cx, read)
            }
        }
    }
}

/// The upstream's answer body, read off its connection as the client's
/// connection asks for it; the connection goes back to the pool once the
/// body has been read whole (or is dropped with it otherwise).
pub struct UpstreamBody {
    reader: Option<Reader>,
    decoder: BodyDecoder,
    reuse: Reuse,
    pool: Arc<Http1Upstream>,
    /// A break found but not yet reported (see [`UpstreamBody::fail`]).
    broken: Option<UpstreamBodyError>,
    /// Runs while the body waits on a silent upstream: made the first
    /// time a read has to wait (a body that came with its head never
    /// needs one), moved on whenever bytes arrive.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The upstream's answer body broke.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamBodyError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl UpstreamBody {
    /// The body is complete: its connection is kept if it may carry
    /// another request.
    fn release(&mut self) {
        if let Some(Reader::Whole(connection)) = self.reader.take()
            && self.reuse == Reuse::Keep
            && connection.read.is_empty()
        {
            self.pool.checkin(connection);
        }
    }

    /// The body broke. The break is reported at the next poll: the
    /// client's connection first writes out what came before it (hyper
    /// drops its unwritten buffer when a body fails), so the client sees
    /// the answer cut where the upstream cut it.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        kind: ErrorKind,
        message: String,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        self.reader = None;
        self.broken = Some(UpstreamBodyError { kind, message });
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = self.get_mut();
        if let Some(broken) = this.broken.take() {
            return Poll::Ready(Some(Err(broken)));
        }
        loop {
            let Some(reader) = this.reader.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(reader.buffer()) {
                Err(e) => {
                    let message = invalid_answer(&e);
                    return this.fail(cx, ErrorKind::Protocol, message);
                }
                Ok(Decoded::Data(n)) => {
                    let data = reader.buffer().split_to(n).freeze();
                    if this.decoder.is_done() {
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.release();
                    let trailers = this.decoder.take_trailers();
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
                Ok(Decoded::More) => match reader.poll_fill(cx) {
                    Poll::Pending => {
                        // An upstream that goes silent mid-body is given
                        // up on after --upstream-timeout, as nginx does
                        // with proxy_read_timeout.
                        let limit = this.pool.response_timeout;
                        let idle = this
                            .idle
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                        if idle.as_mut().poll(cx).is_ready() {
                            let message = format!(
                                "the upstream sent nothing more of the response body for {limit:?}"
                            );
                            return this.fail(cx, ErrorKind::Timeout, message);
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(0)) => {
                        if this.decoder.closed().is_err() {
                            let message = "the upstream closed the connection before the \
                                           response body was complete"
                                .to_string();
                            return this.fail(cx, ErrorKind::Reset, message);
                        }
                        this.reader = None;
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Ok(_)) => {
                        if let Some(idle) = this.idle.as_mut() {
                            let limit = this.pool.response_timeout;
                            idle.as_mut().reset(tokio::time::Instant::now() + limit);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        let message = format!("reading the response body: {e}");
                        return this.fail(cx, failure_kind(&e), message);
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done() && self.broken.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
