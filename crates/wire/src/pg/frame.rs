//! Cutting a byte stream into protocol messages, incrementally.
//!
//! Every message after the start-up is a type byte, a big-endian `i32`
//! length that counts itself, and a body. The start-up packets (and SSL,
//! GSSENC and cancel requests) have no type byte, and the server answers
//! an SSLRequest with one bare byte. The framer is told which of the three
//! to expect next by the code that reads the messages.
//!
//! Memory stays bounded: a message whose body is larger than the limit is
//! handed over as its first [`HEAD_CAP`] bytes and the rest is passed over
//! as it arrives, never buffered.

use super::error::{PgError, Side};

/// The largest length field accepted (PostgreSQL's own limit on a
/// message, `PQ_LARGE_MESSAGE_LIMIT`, is 1 GiB).
pub const MAX_MESSAGE: u64 = 1 << 30;
/// PostgreSQL refuses start-up packets longer than this
/// (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP: usize = 10_000;
/// How much of an oversized message is kept (its head: enough for the
/// start of a query's text).
pub const HEAD_CAP: usize = 16 * 1024;

/// What the next frame on a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Type byte, length, body.
    Typed,
    /// Length, body: a start-up, SSL, GSSENC or cancel request.
    Untyped,
    /// One byte: the server's answer to SSLRequest or GSSENCRequest.
    Byte,
}

/// One frame, borrowing from the fed bytes or the framer's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    Typed {
        kind: u8,
        body: &'a [u8],
    },
    Untyped {
        body: &'a [u8],
    },
    Byte(u8),
    /// A typed message larger than the limit: its full body length and
    /// its first bytes; the rest is skipped.
    Oversized {
        kind: u8,
        len: u64,
        head: &'a [u8],
    },
}

/// When a frame's first and last bytes were fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// How many bytes a frame takes from the stream.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Header plus the body bytes kept.
    keep: usize,
    /// Body bytes passed over after `keep`.
    skip: u64,
}

/// An incremental framer for one direction of a connection.
#[derive(Debug)]
pub(crate) struct Framer {
    side: Side,
    mode: Mode,
    /// Bytes of a frame not yet complete: never more than the header plus
    /// `limit` (or [`HEAD_CAP`]) bytes.
    pending: Vec<u8>,
    pending_start_ns: u64,
    skip: u64,
    limit: usize,
}

impl Framer {
    /// A framer for `side` starting in `mode`, keeping bodies up to `limit`.
    pub(crate) fn new(side: Side, mode: Mode, limit: usize) -> Self {
        Framer {
            side,
            mode,
            pending: Vec::new(),
            pending_start_ns: 0,
            skip: 0,
            limit: limit.max(HEAD_CAP),
        }
    }

    /// Sets what the next frame is.
    pub(crate) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Bytes of an unfinished frame held (or being skipped): the stream
    /// ended mid-message when this is non-zero at the close.
    pub(crate) fn mid_frame(&self) -> bool {
        !self.pending.is_empty() || self.skip > 0
    }

    /// Feeds bytes, calling `on_frame` for each complete frame. The
    /// callback returns the mode of the frame after it, so a reader can
    /// switch between start-up and typed messages.
    pub(crate) fn feed<F>(
        &mut self,
        mut bytes: &[u8],
        at_ns: u64,
        on_frame: &mut F,
    ) -> Result<(), PgError>
    where
        F: FnMut(Frame<'_>, Times) -> Result<Mode, PgError>,
    {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = bytes.get(n..).unwrap_or_default();
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            if bytes.is_empty() {
                return Ok(());
            }
            let times = |start_ns| Times {
                start_ns,
                end_ns: at_ns,
            };
            if self.pending.is_empty() {
                self.pending_start_ns = at_ns;
                // Fast path: the whole frame is in the fed bytes.
                if let Some(sizes) = self.complete(bytes)? {
                    let (frame, rest) = bytes.split_at(sizes.keep);
                    bytes = rest;
                    self.skip = sizes.skip;
                    let decoded = decode(self.mode, frame, sizes);
                    self.mode = on_frame(decoded, times(at_ns))?;
                    continue;
                }
            }
            let header = self.mode.header_len();
            let want = if self.pending.len() < header {
                header - self.pending.len()
            } else {
                self.sizes(&self.pending)?.keep - self.pending.len()
            };
            let n = want.min(bytes.len());
            let (taken, rest) = bytes.split_at(n);
            self.pending.extend_from_slice(taken);
            bytes = rest;
            if self.pending.len() >= header {
                let sizes = self.sizes(&self.pending)?;
                if self.pending.len() == sizes.keep {
                    let pending = std::mem::take(&mut self.pending);
                    self.skip = sizes.skip;
                    let decoded = decode(self.mode, &pending, sizes);
                    let next = on_frame(decoded, times(self.pending_start_ns));
                    // Keep the allocation for the next partial frame.
                    self.pending = pending;
                    self.pending.clear();
                    self.mode = next?;
                }
            }
        }
    }

    fn complete(&self, bytes: &[u8]) -> Result<Option<Sizes>, PgError> {
        if bytes.len() < self.mode.header_len() {
            return Ok(None);
        }
        let sizes = self.sizes(bytes)?;
        Ok((bytes.len() >= sizes.keep).then_some(sizes))
    }

    /// The sizes of the frame whose header starts `head`.
    fn sizes(&self, head: &[u8]) -> Result<Sizes, PgError> {
        match self.mode {
            Mode::Byte => Ok(Sizes { keep: 1, skip: 0 }),
            Mode::Untyped => {
                let len = be_i32(head, 0);
                let fits = usize::try_from(len).is_ok_and(|n| (8..=MAX_STARTUP).contains(&n));
                if !fits {
                    return Err(PgError::NotV3(untyped_length_problem(head, len)));
                }
                Ok(Sizes {
                    keep: usize::try_from(len).unwrap_or(8),
                    skip: 0,
                })
            }
            Mode::Typed => {
                let kind = head.first().copied().unwrap_or(0);
                let len = be_i32(head, 1);
                let body = u64::try_from(len)
                    .ok()
                    .filter(|n| (4..=MAX_MESSAGE).contains(n))
                    .map(|n| n - 4)
                    .ok_or(PgError::Length {
                        side: self.side,
                        kind: char::from(kind),
                        len: i64::from(len),
                    })?;
                if body > self.limit as u64 {
                    Ok(Sizes {
                        keep: 5 + HEAD_CAP,
                        skip: body - HEAD_CAP as u64,
                    })
                } else {
                    Ok(Sizes {
                        keep: 5 + usize::try_from(body).unwrap_or(0),
                        skip: 0,
                    })
                }
            }
        }
    }
}

impl Mode {
    fn header_len(self) -> usize {
        match self {
            Mode::Typed => 5,
            Mode::Untyped => 4,
            Mode::Byte => 1,
        }
    }
}

fn decode(mode: Mode, frame: &[u8], sizes: Sizes) -> Frame<'_> {
    match mode {
        Mode::Byte => Frame::Byte(frame.first().copied().unwrap_or(0)),
        Mode::Untyped => Frame::Untyped {
            body: frame.get(4..).unwrap_or_default(),
        },
        Mode::Typed => {
            let kind = frame.first().copied().unwrap_or(0);
            let body = frame.get(5..).unwrap_or_default();
            if sizes.skip > 0 {
                Frame::Oversized {
                    kind,
                    len: body.len() as u64 + sizes.skip,
                    head: body,
                }
            } else {
                Frame::Typed { kind, body }
            }
        }
    }
}

/// A big-endian `i32` at `at`, 0 when out of range (callers check lengths
/// first).
pub(crate) fn be_i32(bytes: &[u8], at: usize) -> i32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, i32::from_be_bytes)
}

/// Why a start-up packet's length is refused, in words a user can act on.
pub(crate) fn untyped_length_problem(head: &[u8], len: i32) -> String {
    match head.first() {
        Some(0x16) => {
            "a TLS handshake sent without SSLRequest (sslnegotiation=direct) is not supported"
                .to_owned()
        }
        Some(b'G' | b'P') if head.starts_with(b"GET ") || head.starts_with(b"POST") => {
            "an HTTP request".to_owned()
        }
        _ => format!("packet length {len} outside 8..={MAX_STARTUP}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frames(framer: &mut Framer, chunks: &[&[u8]]) -> Result<Vec<String>, PgError> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.feed(chunk, 7, &mut |f, _| {
                out.push(format!("{f:?}"));
                Ok(Mode::Typed)
            })?;
        }
        Ok(out)
    }

    #[test]
    fn typed_messages_whole_and_split() {
        let bytes = b"Z\0\0\0\x05IC\0\0\0\x0bSELECT\0";
        let whole = frames(&mut Framer::new(Side::Server, Mode::Typed, 100), &[bytes]).unwrap();
        assert_eq!(whole.len(), 2);
        let mut framer = Framer::new(Side::Server, Mode::Typed, 100);
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(frames(&mut framer, &singles).unwrap(), whole);
    }

    #[test]
    fn impossible_lengths_are_errors() {
        for bad in [&b"Q\0\0\0\x03"[..], b"Q\xff\xff\xff\xff", b"Q\x40\0\0\x01"] {
            let err = frames(&mut Framer::new(Side::Client, Mode::Typed, 100), &[bad]).unwrap_err();
            assert!(matches!(err, PgError::Length { kind: 'Q', .. }), "{err}");
        }
    }

    #[test]
    fn oversized_message_is_headed_and_skipped() {
        let body = vec![b'x'; HEAD_CAP * 3];
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        msg.extend_from_slice(b"S\0\0\0\x04");
        let mut framer = Framer::new(Side::Client, Mode::Typed, 10);
        let mut seen = Vec::new();
        for chunk in msg.chunks(1000) {
            framer
                .feed(chunk, 0, &mut |f, _| {
                    seen.push(match f {
                        Frame::Oversized { kind, len, head } => (kind, len, head.len()),
                        Frame::Typed { kind, body } => (kind, body.len() as u64, 0),
                        _ => (0, 0, 0),
                    });
                    Ok(Mode::Typed)
                })
                .unwrap();
            assert!(framer.pending.len() <= HEAD_CAP + 5);
        }
        assert_eq!(
            seen,
            vec![(b'Q', body.len() as u64, HEAD_CAP), (b'S', 0, 0)]
        );
    }

    #[test]
    fn startup_length_and_direct_tls() {
        let err = frames(
            &mut Framer::new(Side::Client, Mode::Untyped, 100),
            &[b"\x16\x03\x01\x02"],
        )
        .unwrap_err();
        assert!(err.to_string().contains("sslnegotiation=direct"), "{err}");
    }
}
