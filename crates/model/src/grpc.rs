//! gRPC's message framing (a 1-byte compressed flag, a 4-byte big-endian
//! length, the payload) and its status text, shared by every part of
//! reprise that cuts a gRPC body into [`StreamMessage`]s or puts it back.

use crate::pb::{Direction, StreamMessage};

/// Most messages kept per direction of one call; later ones are counted
/// in the exchange's truncation but not stored.
pub const MAX_MESSAGES: usize = 10_000;

/// Length of the prefix before each message.
pub const PREFIX_LEN: usize = 5;

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
                    if self.prefix.len() == PREFIX_LEN {
                        let p = &self.prefix;
                        let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
                        self.current = Some(Partial {
                            compressed: p[0] == 1,
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

/// The payload length the prefix at the start of `bytes` announces; `None`
/// until the whole prefix is there.
pub fn message_len(bytes: &[u8]) -> Option<usize> {
    let length = bytes.get(1..PREFIX_LEN)?;
    Some(u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize)
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
