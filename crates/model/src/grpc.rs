//! gRPC's message framing (a 1-byte compressed flag, a 4-byte big-endian
//! length, the payload) and its status text, shared by every part of
//! reprise that cuts a gRPC body into [`StreamMessage`]s or puts it back.

use crate::pb::{Direction, StreamMessage};

/// Most messages kept per direction of one call; later ones are counted
/// in the exchange's truncation but not stored.
pub const MAX_MESSAGES: usize = 10_000;

/// Length of the prefix before each message.
pub const PREFIX_LEN: usize = 5;

/// Whether a `content-type` value is gRPC's (`application/grpc`,
/// `application/grpc+proto`, and gRPC-Web's `application/grpc-web*`,
/// whose bodies are framed the same way). Media types are
/// case-insensitive.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    starts_with_ignore_case(value, b"application/grpc")
}

/// Whether a `content-type` value is gRPC-Web's (`application/grpc-web`,
/// `application/grpc-web-text`, with or without `+proto`), which is made
/// for HTTP/1.1.
pub fn is_grpc_web_content_type(value: &[u8]) -> bool {
    starts_with_ignore_case(value, b"application/grpc-web")
}

fn starts_with_ignore_case(value: &[u8], prefix: &[u8]) -> bool {
    value
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// What the 5-byte prefix before a gRPC message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagePrefix {
    /// The compressed flag is set: the payload is in the call's
    /// `grpc-encoding`.
    pub compressed: bool,
    /// The payload's length in bytes (the prefix not included).
    pub len: usize,
}

/// Reads the prefix at the front of `buf`; `None` while fewer than
/// [`PREFIX_LEN`] bytes are there. The one reader of gRPC's framing, for
/// every part of reprise that walks a gRPC body.
pub fn message_prefix(buf: &[u8]) -> Option<MessagePrefix> {
    let &[flag, a, b, c, d] = buf.first_chunk::<PREFIX_LEN>()?;
    Some(MessagePrefix {
        compressed: flag == 1,
        // Lossless: reprise runs on 32- and 64-bit targets.
        len: u32::from_be_bytes([a, b, c, d]) as usize,
    })
}

/// Cuts a gRPC body into messages however its frames cut them. Each
/// message takes the time offset of the frame that completed it and keeps
/// at most `keep` bytes of its payload (its full size is still counted).
#[derive(Debug)]
pub struct Deframer {
    direction: Direction,
    keep: usize,
    prefix: Vec<u8>,
    current: Option<Partial>,
    messages: Vec<StreamMessage>,
    truncated: bool,
}

#[derive(Debug)]
struct Partial {
    compressed: bool,
    len: usize,
    seen: usize,
    data: Vec<u8>,
}

impl Deframer {
    /// A deframer for one direction of a call.
    pub fn new(direction: Direction, keep: usize) -> Self {
        Deframer {
            direction,
            keep,
            prefix: Vec::with_capacity(PREFIX_LEN),
            current: None,
            messages: Vec::new(),
            truncated: false,
        }
    }

    /// Takes the next bytes of the body, which arrived at `offset_ns`.
    pub fn push(&mut self, offset_ns: u64, mut data: &[u8]) {
        while !data.is_empty() {
            match self.current.as_mut() {
                None => {
                    let take = (PREFIX_LEN - self.prefix.len()).min(data.len());
                    self.prefix.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if let Some(MessagePrefix { compressed, len }) = message_prefix(&self.prefix) {
                        self.current = Some(Partial {
                            compressed,
                            len,
                            seen: 0,
                            data: Vec::with_capacity(len.min(self.keep)),
                        });
                        self.prefix.clear();
                    }
                }
                Some(partial) => {
                    let take = (partial.len - partial.seen).min(data.len());
                    let room = self.keep.saturating_sub(partial.data.len()).min(take);
                    partial.data.extend_from_slice(&data[..room]);
                    partial.seen += take;
                    data = &data[take..];
                }
            }
            if let Some(done) = self.current.take_if(|p| p.seen == p.len) {
                self.emit(offset_ns, done);
            }
        }
    }

    /// The messages, and whether any was cut short or left out: a message
    /// still open when the body ended is kept as what arrived, at `end_ns`.
    pub fn finish(mut self, end_ns: u64) -> (Vec<StreamMessage>, bool) {
        if let Some(open) = self.current.take() {
            self.emit(end_ns, open);
            self.truncated = true;
        } else if !self.prefix.is_empty() {
            let data = std::mem::take(&mut self.prefix);
            self.emit(
                end_ns,
                Partial {
                    compressed: false,
                    len: PREFIX_LEN,
                    seen: data.len(),
                    data,
                },
            );
            self.truncated = true;
        }
        (self.messages, self.truncated)
    }

    fn emit(&mut self, offset_ns: u64, message: Partial) {
        let cut = message.data.len() < message.len;
        self.truncated |= cut;
        if self.messages.len() >= MAX_MESSAGES {
            self.truncated = true;
            return;
        }
        self.messages.push(StreamMessage {
            direction: self.direction as i32,
            offset_ns,
            data: message.data.into(),
            compressed: message.compressed,
            size: message.len as u64,
            truncated: cut,
        });
    }
}

/// The message with its gRPC prefix, as it goes on the wire.
pub fn frame(message: &StreamMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + message.data.len());
    out.push(u8::from(message.compressed));
    // A stored message is at most 4 GiB: gRPC's own prefix says so.
    let len = u32::try_from(message.data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&message.data);
    out
}

/// gRPC's percent-encoding of `grpc-message`.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `grpc-message` text as gRPC percent-encodes it, decoded.
pub fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make one byte: hi * 16 + lo < 256.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_in_any_case() {
        for value in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC",
            b"application/grpc-web-text",
        ] {
            assert!(is_grpc_content_type(value), "{value:?}");
        }
        for value in [&b"application/json"[..], b"application/grp", b""] {
            assert!(!is_grpc_content_type(value), "{value:?}");
        }
        assert!(is_grpc_web_content_type(b"application/grpc-web+proto"));
        assert!(!is_grpc_web_content_type(b"application/grpc+proto"));
    }

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        payloads
            .iter()
            .flat_map(|p| {
                frame(&StreamMessage {
                    data: p.to_vec().into(),
                    ..Default::default()
                })
            })
            .collect()
    }

    #[test]
    fn prefix_read_only_once_whole() {
        let body = [1, 0, 0, 1, 2, 0xaa];
        assert_eq!(
            message_prefix(&body),
            Some(MessagePrefix {
                compressed: true,
                len: 258
            })
        );
        assert_eq!(
            message_prefix(&[0, 0xff, 0xff, 0xff, 0xff]),
            Some(MessagePrefix {
                compressed: false,
                len: u32::MAX as usize
            })
        );
        assert_eq!(message_prefix(&body[..4]), None);
        assert_eq!(message_prefix(&[]), None);
    }

    #[test]
    fn messages_across_any_cut_of_the_body() {
        let body = framed(&[b"one", b"", b"three!"]);
        for cut in 0..body.len() {
            let mut d = Deframer::new(Direction::Response, usize::MAX);
            d.push(1, &body[..cut]);
            d.push(2, &body[cut..]);
            let (messages, truncated) = d.finish(9);
            assert!(!truncated);
            let data: Vec<&[u8]> = messages.iter().map(|m| &m.data[..]).collect();
            assert_eq!(data, [&b"one"[..], b"", b"three!"], "cut at {cut}");
            assert_eq!(messages[2].offset_ns, 2);
        }
    }

    #[test]
    fn keep_caps_payload_but_counts_size() {
        let body = framed(&[b"abcdef"]);
        let mut d = Deframer::new(Direction::Request, 2);
        d.push(5, &body);
        let (messages, truncated) = d.finish(9);
        assert!(truncated);
        assert_eq!(messages[0].data, &b"ab"[..]);
        assert_eq!(messages[0].size, 6);
        assert!(messages[0].truncated);
        assert_eq!(messages[0].offset_ns, 5);
    }

    #[test]
    fn an_open_message_at_the_end_is_kept_truncated() {
        let body = framed(&[b"abcdef"]);
        let mut d = Deframer::new(Direction::Request, usize::MAX);
        d.push(1, &body[..7]);
        let (messages, truncated) = d.finish(9);
        assert!(truncated);
        assert_eq!(messages[0].data, &b"ab"[..]);
        assert_eq!(messages[0].offset_ns, 9);
        let mut d = Deframer::new(Direction::Request, usize::MAX);
        d.push(1, &body[..3]);
        let (messages, truncated) = d.finish(9);
        assert!(truncated);
        assert_eq!(messages[0].data, body[..3]);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode(b"no such note: 50%25 %zz"),
            "no such note: 50% %zz"
        );
    }
}
