//! HTTP/1.1 on the client's side (RFC 9112), shared by the replay's
//! client and the recording proxy's upstream client, which both write
//! requests and read answers straight off the socket instead of through
//! hyper (see `docs/architecture.md`).
//!
//! [`encode_head`] writes a request head once, from a header map, with
//! the framing ([`RequestFraming`]) its caller chose.
//!
//! [`parse_response_head`] parses a head off the front of a read buffer
//! with `httparse` (into a stack array; a header map only when asked) and
//! decides the framing: no body for HEAD, 1xx, 204 and 304; chunked
//! before Content-Length; a body without either runs to the close.
//! [`BodyDecoder`] then walks the body as bytes arrive, without copying
//! them: it says how many of the buffer's first bytes are body data and
//! the caller takes them.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

/// Most header (or trailer) fields read (hyper's limit too).
pub const MAX_HEADERS: usize = 100;
/// Largest response head read before giving up.
pub const MAX_HEAD: usize = 1 << 20;
/// Largest chunk-size line (with its extensions) read before giving up.
const MAX_CHUNK_LINE: usize = 4 << 10;
/// Largest trailer section read before giving up.
const MAX_TRAILERS: usize = 64 << 10;

/// An answer that is not valid HTTP/1.1; the text says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked, perhaps with trailers.
    Chunked,
    /// Everything until the connection closes.
    UntilClose,
}

/// Whether the connection may carry another request after this answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Keep it.
    Keep,
    /// Close it: the server said so, the answer is HTTP/1.0 without
    /// keep-alive, or it switched protocols.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status.
    pub status: StatusCode,
    /// The fields (empty unless asked for).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may be reused after the body.
    pub reuse: Reuse,
    /// What the `content-length` field looked like, for a proxy that
    /// passes the head on.
    pub length_field: LengthField,
}

/// The shape of a response's `content-length` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthField {
    /// There is none.
    Absent,
    /// One field, one plain decimal number.
    Plain,
    /// Present otherwise: repeated, a list of the same value, padded.
    Other,
}

/// Parses a complete response head off the front of `read` (`None`: not
/// all there yet; the buffer is left as it was). `head_request`: the
/// request was HEAD, so the answer has no body whatever it says. Builds
/// a header map only when `headers` is set.
pub fn parse_response_head(
    read: &mut BytesMut,
    head_request: bool,
    headers: bool,
) -> Result<Option<ResponseHead>, Invalid> {
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
        Ok(httparse::Status::Partial) => {
            if read.len() > MAX_HEAD {
                return Err(invalid("the response head is larger than 1 MiB"));
            }
            return Ok(None);
        }
        Err(e) => return Err(invalid(format!("invalid response head: {e}"))),
    };
    let code = response.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| invalid(format!("invalid status code {code}")))?;
    let http10 = response.version == Some(0);
    let fields = FramingFields::read(response.headers.iter())?;
    let no_body = bodiless(status, head_request);
    let framing = fields.response_framing(no_body);
    let (close, keep_alive, length_field) = (fields.close, fields.keep_alive, fields.length_field);
    let reuse = if close || (http10 && !keep_alive) || status == StatusCode::SWITCHING_PROTOCOLS {
        Reuse::Close
    } else {
        Reuse::Keep
    };
    let headers = if headers {
        crate::headers::parsed(response.headers)
    } else {
        HeaderMap::new()
    };
    read.advance(used);
    Ok(Some(ResponseHead {
        status,
        headers,
        framing,
        reuse,
        length_field,
    }))
}

/// Whether an answer has no body whatever its fields say: it answers
/// HEAD, or its status is 1xx, 204 or 304.
fn bodiless(status: StatusCode, head_request: bool) -> bool {
    head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// What a head's fields say about its body and its connection: every
/// HTTP/1 head reprise reads (answers off a socket, captured requests and
/// responses in imported files) is framed by these rules.
#[derive(Debug, Clone, Copy)]
struct FramingFields {
    /// The content-length, when every value given agrees.
    length: Option<u64>,
    length_field: LengthField,
    /// `Some(true)`: a transfer-encoding whose last coding is chunked;
    /// `Some(false)`: one whose last coding is something else.
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl FramingFields {
    fn read<'a>(fields: impl Iterator<Item = &'a httparse::Header<'a>>) -> Result<Self, Invalid> {
        let mut read = FramingFields {
            length: None,
            length_field: LengthField::Absent,
            chunked: None,
            close: false,
            keep_alive: false,
        };
        for field in fields {
            let name = field.name;
            if name.eq_ignore_ascii_case("content-length") {
                read.length_field = if read.length_field == LengthField::Absent
                    && field.value.iter().all(u8::is_ascii_digit)
                {
                    LengthField::Plain
                } else {
                    LengthField::Other
                };
                for value in field.value.split(|&b| b == b',') {
                    // Digits only: `+5` or a Unicode space is not a length.
                    let value = value.trim_ascii();
                    let value = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
                        .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                        .flatten()
                        .ok_or_else(|| invalid("invalid content-length"))?;
                    if read.length.is_some_and(|l| l != value) {
                        return Err(invalid("conflicting content-length values"));
                    }
                    read.length = Some(value);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Only the last coding decides whether the body is chunked.
                let last = field
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or_default();
                read.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in field.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    read.close |= token.eq_ignore_ascii_case(b"close");
                    read.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        Ok(read)
    }

    /// A response's framing (RFC 9112 §6.3): chunked before
    /// content-length; any other transfer coding, or neither field, runs
    /// to the close.
    fn response_framing(&self, no_body: bool) -> Framing {
        match (no_body, self.chunked, self.length) {
            (true, _, _) => Framing::Empty,
            (false, Some(true), _) => Framing::Chunked,
            (false, Some(false), _) => Framing::UntilClose,
            (false, None, Some(0)) => Framing::Empty,
            (false, None, Some(n)) => Framing::Length(n),
            (false, None, None) => Framing::UntilClose,
        }
    }

    /// A request's framing (RFC 9112 §6.3): chunked before
    /// content-length; a transfer coding other than chunked last cannot
    /// be delimited, so it is invalid; neither field, no body.
    fn request_framing(&self) -> Result<Framing, Invalid> {
        match (self.chunked, self.length) {
            (Some(true), _) => Ok(Framing::Chunked),
            (Some(false), _) => Err(invalid(
                "a transfer-encoding whose last coding is not chunked",
            )),
            (None, Some(0) | None) => Ok(Framing::Empty),
            (None, Some(n)) => Ok(Framing::Length(n)),
        }
    }
}

/// A whole HTTP/1 message head read from a buffer (a captured message,
/// as recording files store them), borrowing from the buffer.
#[derive(Debug)]
pub struct MessageHead<'b> {
    /// What starts the head.
    pub start: StartLine<'b>,
    /// `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub minor_version: u8,
    /// The fields, in order, as written.
    pub fields: Vec<httparse::Header<'b>>,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Length of the head in bytes (the body starts there).
    pub len: usize,
}

/// A request line or a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'b> {
    /// `METHOD TARGET HTTP/1.x`.
    Request {
        /// The method.
        method: &'b str,
        /// The request target as written (origin or absolute form).
        target: &'b str,
    },
    /// `HTTP/1.x STATUS REASON`.
    Response {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: &'b str,
    },
}

/// Parses a request head off the front of `buf` (`None`: the head is not
/// complete), with the framing of the body after it.
pub fn parse_request_message(buf: &[u8]) -> Result<Option<MessageHead<'_>>, Invalid> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("invalid request head: {e}"))),
    };
    let fields: Vec<httparse::Header<'_>> = request.headers.to_vec();
    let framing = FramingFields::read(fields.iter())?.request_framing()?;
    Ok(Some(MessageHead {
        start: StartLine::Request {
            method: request.method.unwrap_or_default(),
            target: request.path.unwrap_or_default(),
        },
        minor_version: request.version.unwrap_or(1),
        fields,
        framing,
        len,
    }))
}

/// Parses a response head off the front of `buf` (`None`: the head is
/// not complete), with the framing of the body after it. `head_request`:
/// it answers a HEAD request, so it has no body whatever it says.
pub fn parse_response_message(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<MessageHead<'_>>, Invalid> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("invalid response head: {e}"))),
    };
    let code = response.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| invalid(format!("invalid status code {code}")))?;
    let fields: Vec<httparse::Header<'_>> = response.headers.to_vec();
    let no_body = bodiless(status, head_request);
    let framing = FramingFields::read(fields.iter())?.response_framing(no_body);
    Ok(Some(MessageHead {
        start: StartLine::Response {
            status: code,
            reason: response.reason.unwrap_or_default(),
        },
        minor_version: response.version.unwrap_or(1),
        fields,
        framing,
        len,
    }))
}

/// A whole body taken off the front of a buffer holding a captured
/// message: the data, and whether the capture ended before the body did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedBody {
    /// The body's data (dechunked).
    pub data: Bytes,
    /// The capture ended before the framing said the body does.
    pub cut: bool,
}

/// Decodes the body framed as `framing` from the front of `buf`, which
/// holds the rest of a captured message; what follows the body is left
/// in `buf`. A body that runs to the close takes everything.
pub fn take_captured_body(buf: &mut BytesMut, framing: Framing) -> Result<CapturedBody, Invalid> {
    if let Framing::Length(n) = framing {
        // The common case, without a copy.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let take = n.min(buf.len());
        return Ok(CapturedBody {
            data: buf.split_to(take).freeze(),
            cut: take < n,
        });
    }
    let mut decoder = BodyDecoder::new(framing);
    let mut data = BytesMut::new();
    loop {
        match decoder.decode(buf)? {
            Decoded::Data(n) if data.is_empty() && framing == Framing::UntilClose => {
                data = buf.split_to(n);
            }
            Decoded::Data(n) => data.extend_from_slice(&buf.split_to(n)),
            Decoded::End => {
                return Ok(CapturedBody {
                    data: data.freeze(),
                    cut: false,
                });
            }
            Decoded::More => {
                let cut = decoder.closed().is_err();
                return Ok(CapturedBody {
                    data: data.freeze(),
                    cut,
                });
            }
        }
    }
}

/// How a request body goes on the wire, as its head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No length field added: no body, or one whose length the given
    /// fields already state.
    None,
    /// `content-length: n`, then the body as it comes.
    Length(u64),
    /// `transfer-encoding: chunked` (a body of unknown length, or with
    /// trailers).
    Chunked,
}

impl RequestFraming {
    /// What suits a body of `exact` bytes (`None`: not known in advance):
    /// its length when known (`content-length: 0` only if the client sent
    /// one), chunked otherwise.
    pub fn of(exact: Option<u64>, client_sent_length: bool) -> Self {
        match exact {
            Some(0) if !client_sent_length => RequestFraming::None,
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        }
    }
}

/// What becomes of a `content-length` among the fields given to
/// [`encode_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GivenLength {
    /// It goes out as it is, in its place: the replayer's recorded length,
    /// left in only when it still holds.
    Keep,
    /// It is left out and the framing states the length: the proxy, whose
    /// body may go upstream framed otherwise than it came.
    Drop,
}

/// Encodes an HTTP/1.1 request head: the request line (`target` in origin
/// form), `headers` in the map's order (lower-case names, as hyper writes
/// them; a `content-length` as `given_length` says), the field `framing`
/// adds, and the blank line. One allocation, sized for the usual head.
pub fn encode_head(
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    given_length: GivenLength,
    framing: RequestFraming,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(64 + target.len() + headers.len() * 48);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if given_length == GivenLength::Keep || name != http::header::CONTENT_LENGTH {
            put_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            put_field(&mut head, b"content-length", n.to_string().as_bytes());
        }
        RequestFraming::Chunked => put_field(&mut head, b"transfer-encoding", b"chunked"),
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Appends `name: value\r\n` to an encoded head.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What the next bytes of a body are.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer's first `n` bytes are body data: the caller takes them
    /// off (all of them) before decoding again.
    Data(usize),
    /// More bytes are needed (or, for a body that runs to the close, the
    /// close); read, then decode again, or call [`BodyDecoder::closed`]
    /// if the connection ended.
    More,
    /// The body is complete; a chunked body's trailers, if it had any,
    /// are in [`BodyDecoder::take_trailers`].
    End,
}

/// Walks one response body through a read buffer (RFC 9112 §6, §7.1).
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// A chunked body's trailers, once read. (Kept here rather than in
    /// [`Decoded`], which stays small: it is returned once per read.)
    trailers: Option<HeaderMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes left of a length-delimited body.
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// This many bytes left of a chunk.
    ChunkData(u64),
    /// Before the CRLF that ends a chunk.
    ChunkEnd,
    /// Before the trailer section (after the last chunk).
    Trailers,
    /// Until the connection closes.
    UntilClose,
    /// Complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder {
            state,
            trailers: None,
        }
    }

    /// The trailers a chunked body ended with, once [`Decoded::End`] has
    /// been returned.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of body still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Decodes from the front of `read`: framing bytes are consumed,
    /// data bytes are left for the caller (see [`Decoded::Data`]).
    pub fn decode(&mut self, read: &mut BytesMut) -> Result<Decoded, Invalid> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length(left) | State::ChunkData(left) => {
                    if read.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(read.len());
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Decoded::Data(n));
                }
                State::UntilClose => {
                    return Ok(if read.is_empty() {
                        Decoded::More
                    } else {
                        Decoded::Data(read.len())
                    });
                }
                State::ChunkSize => match httparse::parse_chunk_size(read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        read.advance(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if read.len() > MAX_CHUNK_LINE {
                            return Err(invalid("a chunk-size line is larger than 4 KiB"));
                        }
                        return Ok(Decoded::More);
                    }
                    Err(_) => return Err(invalid("invalid chunk size line")),
                },
                State::ChunkEnd => {
                    if read.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &read[..2] != b"\r\n" {
                        return Err(invalid("a chunk does not end with CRLF"));
                    }
                    read.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(read, &mut fields) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            let trailers = crate::headers::parsed(fields);
                            read.advance(used);
                            self.state = State::Done;
                            self.trailers = (!trailers.is_empty()).then_some(trailers);
                            return Ok(Decoded::End);
                        }
                        Ok(httparse::Status::Partial) => {
                            if read.len() > MAX_TRAILERS {
                                return Err(invalid("the trailers are larger than 64 KiB"));
                            }
                            return Ok(Decoded::More);
                        }
                        Err(e) => return Err(invalid(format!("invalid trailers: {e}"))),
                    }
                }
            }
        }
    }

    /// The connection ended (with nothing left in the buffer): the end
    /// of a body that runs to the close, `Err` for any other body that
    /// is not complete.
    pub fn closed(&mut self) -> Result<(), Cut> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Cut),
        }
    }
}

/// The connection ended before the body was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection closed before the response was complete")]
pub struct Cut;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_heads_keep_or_replace_the_given_length() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.test".parse().unwrap());
        headers.insert("content-length", "7".parse().unwrap());
        headers.append("x-many", "1".parse().unwrap());
        headers.append("x-many", "2".parse().unwrap());
        let post = http::Method::POST;
        let kept = encode_head(
            &post,
            "/a?b=1",
            &headers,
            GivenLength::Keep,
            RequestFraming::None,
        );
        assert_eq!(
            String::from_utf8_lossy(&kept),
            "POST /a?b=1 HTTP/1.1\r\nhost: example.test\r\ncontent-length: 7\r\nx-many: 1\r\nx-many: 2\r\n\r\n"
        );
        let replaced = encode_head(
            &post,
            "/",
            &headers,
            GivenLength::Drop,
            RequestFraming::Length(9),
        );
        assert_eq!(
            String::from_utf8_lossy(&replaced),
            "POST / HTTP/1.1\r\nhost: example.test\r\nx-many: 1\r\nx-many: 2\r\ncontent-length: 9\r\n\r\n"
        );
        let chunked = encode_head(
            &post,
            "/",
            &headers,
            GivenLength::Drop,
            RequestFraming::Chunked,
        );
        assert!(
            String::from_utf8_lossy(&chunked)
                .ends_with("x-many: 2\r\ntransfer-encoding: chunked\r\n\r\n")
        );
    }

    #[test]
    fn request_framing_of_a_body() {
        assert_eq!(RequestFraming::of(Some(0), false), RequestFraming::None);
        assert_eq!(RequestFraming::of(Some(0), true), RequestFraming::Length(0));
        assert_eq!(
            RequestFraming::of(Some(5), false),
            RequestFraming::Length(5)
        );
        assert_eq!(RequestFraming::of(None, true), RequestFraming::Chunked);
    }

    fn head(text: &str, head_request: bool) -> Result<Option<ResponseHead>, Invalid> {
        parse_response_head(&mut BytesMut::from(text), head_request, true)
    }

    /// Decodes `wire` fed `step` bytes at a time: the data and trailers.
    fn decode(framing: Framing, wire: &[u8], step: usize) -> (Vec<u8>, Option<HeaderMap>) {
        let mut decoder = BodyDecoder::new(framing);
        let mut read = BytesMut::new();
        let mut rest = wire;
        let mut data = Vec::new();
        loop {
            match decoder.decode(&mut read).unwrap() {
                Decoded::Data(n) => data.extend_from_slice(&read.split_to(n)),
                Decoded::End => return (data, decoder.take_trailers()),
                Decoded::More if rest.is_empty() => {
                    decoder.closed().unwrap();
                    return (data, None);
                }
                Decoded::More => {
                    let n = step.min(rest.len());
                    read.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
            }
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |text: &str, head_request| head(text, head_request).unwrap().unwrap().framing;
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
            Framing::Length(5)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
            Framing::Empty
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false),
            Framing::UntilClose
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            Framing::UntilClose
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Framing::Empty
        );
        assert_eq!(
            framing("HTTP/1.1 304 OK\r\ncontent-length: 9\r\n\r\n", false),
            Framing::Empty
        );
        let field = |text: &str| head(text, false).unwrap().unwrap().length_field;
        assert_eq!(field("HTTP/1.1 200 OK\r\n\r\n"), LengthField::Absent);
        assert_eq!(
            field("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            LengthField::Plain
        );
        assert_eq!(
            field("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            LengthField::Other
        );
        assert_eq!(
            field("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n"),
            LengthField::Other
        );
        let reuse = |text: &str| head(text, false).unwrap().unwrap().reuse;
        assert_eq!(
            reuse("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Reuse::Keep
        );
        assert_eq!(
            reuse("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"),
            Reuse::Close
        );
        assert_eq!(
            reuse("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Reuse::Close
        );
        assert_eq!(
            reuse("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"),
            Reuse::Keep
        );
    }

    #[test]
    fn bad_heads_are_invalid_and_partial_heads_wait() {
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n", false)
                .unwrap()
                .is_none()
        );
        for bad in [
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "SPDY/3 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
        ] {
            assert!(head(bad, false).is_err(), "{bad:?}");
        }
        let mut read = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx: "[..]);
        read.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert!(parse_response_head(&mut read, false, false).is_err());
    }

    #[test]
    fn bodies_decode_whole_however_they_arrive() {
        let chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\r\n\r\n";
        for step in [1, 2, 7, 1000] {
            let (data, trailers) = decode(Framing::Chunked, chunked, step);
            assert_eq!(data, b"hello world");
            assert_eq!(trailers.unwrap()["x-sum"], "1");
            let (data, trailers) = decode(Framing::Length(5), b"hello", step);
            assert_eq!((&data[..], trailers), (&b"hello"[..], None));
            let (data, _) = decode(Framing::UntilClose, b"to the end", step);
            assert_eq!(data, b"to the end");
        }
        let (data, trailers) = decode(Framing::Chunked, b"0\r\n\r\n", 1);
        assert_eq!((data.len(), trailers), (0, None));
    }

    #[test]
    fn bad_or_cut_bodies_are_errors() {
        for bad in [&b"zz\r\n"[..], b"2\r\nabXY", b"1\r\na\r\n0\r\n: x\r\n\r\n"] {
            let mut decoder = BodyDecoder::new(Framing::Chunked);
            let mut read = BytesMut::from(bad);
            let failed = loop {
                match decoder.decode(&mut read) {
                    Ok(Decoded::Data(n)) => read.advance(n),
                    Ok(Decoded::More | Decoded::End) => break false,
                    Err(_) => break true,
                }
            };
            assert!(failed, "{bad:?}");
        }
        let mut long_line = BytesMut::from(&b"5;"[..]);
        long_line.extend_from_slice(&vec![b'x'; MAX_CHUNK_LINE]);
        assert!(
            BodyDecoder::new(Framing::Chunked)
                .decode(&mut long_line)
                .is_err()
        );
        let mut decoder = BodyDecoder::new(Framing::Length(10));
        let mut read = BytesMut::from(&b"12345"[..]);
        assert_eq!(decoder.decode(&mut read), Ok(Decoded::Data(5)));
        read.advance(5);
        assert_eq!(decoder.remaining(), Some(5));
        assert_eq!(decoder.decode(&mut read), Ok(Decoded::More));
        assert_eq!(decoder.closed(), Err(Cut));
    }
    fn request(text: &str) -> Result<Framing, Invalid> {
        Ok(parse_request_message(text.as_bytes())?.unwrap().framing)
    }

    fn response(text: &str) -> Result<Framing, Invalid> {
        Ok(parse_response_message(text.as_bytes(), false)?
            .unwrap()
            .framing)
    }

    /// The cases the importer's own parser once read differently from
    /// the proxy's and the replay's.
    #[test]
    fn captured_messages_are_framed_by_the_same_rules() {
        let te = |value: &str| format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
        assert_eq!(request(&te("gzip, chunked")), Ok(Framing::Chunked));
        assert_eq!(request(&te("Chunked")), Ok(Framing::Chunked));
        assert!(request(&te("chunkedx")).is_err());
        assert!(request(&te("chunked, gzip")).is_err());
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n"),
            Ok(Framing::UntilClose)
        );
        let cl = |value: &str| format!("POST / HTTP/1.1\r\n{value}\r\n\r\n");
        assert_eq!(request(&cl("Content-Length: 5")), Ok(Framing::Length(5)));
        assert_eq!(
            request(&cl("Content-Length: +5")),
            Err(Invalid("invalid content-length".into()))
        );
        assert_eq!(
            request(&cl("Content-Length: 5\r\nContent-Length: 6")),
            Err(Invalid("conflicting content-length values".into()))
        );
        assert_eq!(
            request(&cl("Content-Length: 5\r\nContent-Length: 5")),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request(&cl("Content-Length: 5\r\nTransfer-Encoding: chunked")),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
            Err(Invalid("invalid content-length".into()))
        );
        assert_eq!(
            request("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert!(
            parse_request_message(b"GET / HTTP/1.1\r\nHost: a")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn captured_bodies_are_taken_whole_or_marked_cut() {
        let take = |wire: &[u8], framing| {
            let mut buf = BytesMut::from(wire);
            let body = take_captured_body(&mut buf, framing);
            (body, buf)
        };
        let (body, rest) = take(b"5\r\nhello\r\n0\r\n\r\nNEXT", Framing::Chunked);
        assert_eq!(body.unwrap().data, &b"hello"[..]);
        assert_eq!(&rest[..], b"NEXT");
        let (body, _) = take(b"5\r\nhel", Framing::Chunked);
        let body = body.unwrap();
        assert_eq!((&body.data[..], body.cut), (&b"hel"[..], true));
        let (body, _) = take(b"zz\r\nhello\r\n0\r\n\r\n", Framing::Chunked);
        assert!(body.is_err());
        let (body, rest) = take(b"abcdef", Framing::Length(4));
        assert_eq!(body.unwrap().data, &b"abcd"[..]);
        assert_eq!(&rest[..], b"ef");
        let (body, _) = take(b"ab", Framing::Length(4));
        assert!(body.unwrap().cut);
        let (body, rest) = take(b"to the end", Framing::UntilClose);
        assert_eq!(body.unwrap().data, &b"to the end"[..]);
        assert!(rest.is_empty());
    }
}
