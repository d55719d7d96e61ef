//! A protobuf message written field by field, for code that holds a
//! record's parts without building an [`Exchange`](crate::Exchange) (the
//! recorder: building one costs an allocation per header, and prost then
//! walks it twice, once to size each nested message and once to write it).
//!
//! A nested message's length is filled in when the message closes: one
//! byte is set aside for it (two for a
//! [`large_message`](MessageWriter::large_message)), and the message is
//! moved when its length needs another number of bytes. Written in field-number order, with proto3's defaults left
//! out (which the methods here do), the bytes are exactly those
//! [`codec::encode`](crate::codec::encode) writes for the same record; the
//! recorder's tests hold the two equal.

use prost::Message;
use prost::encoding::{WireType, encoded_len_varint};

/// Appends fields to a buffer.
#[derive(Debug)]
pub struct MessageWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> MessageWriter<'a> {
    /// Writes fields at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        MessageWriter { buf }
    }

    /// A singular `uint64`/`uint32`/enum field; 0 is left out.
    pub fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, WireType::Varint);
            varint(self.buf, value);
        }
    }

    /// A singular `int32` field; 0 is left out. Negative values take ten
    /// bytes, as protobuf sign-extends them.
    pub fn int32(&mut self, field: u32, value: i32) {
        self.uint(field, i64::from(value) as u64);
    }

    /// A singular `bool` field; `false` is left out.
    pub fn bool(&mut self, field: u32, value: bool) {
        self.uint(field, u64::from(value));
    }

    /// An `optional double` field: written whenever it is set, 0 included.
    pub fn double(&mut self, field: u32, value: f64) {
        self.key(field, WireType::SixtyFourBit);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A singular `bytes` field; empty is left out.
    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        if !value.is_empty() {
            self.each_bytes(field, value);
        }
    }

    /// A singular `string` field; empty is left out.
    pub fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// One element of a `repeated bytes` field (or a `bytes` field of a
    /// message being written): written even when empty.
    pub fn each_bytes(&mut self, field: u32, value: &[u8]) {
        self.buf.reserve(value.len() + 8);
        self.key(field, WireType::LengthDelimited);
        varint(self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// One element of a `repeated string` field: written even when empty.
    pub fn each_string(&mut self, field: u32, value: &str) {
        self.each_bytes(field, value.as_bytes());
    }

    /// A singular `bytes` field given in pieces, `len` bytes in all (the
    /// pieces' lengths must add up to it); empty is left out.
    pub fn bytes_in_pieces<'p>(
        &mut self,
        field: u32,
        len: usize,
        pieces: impl IntoIterator<Item = &'p [u8]>,
    ) {
        if len == 0 {
            return;
        }
        self.buf.reserve(len + 8);
        self.key(field, WireType::LengthDelimited);
        varint(self.buf, len as u64);
        let start = self.buf.len();
        for piece in pieces {
            self.buf.extend_from_slice(piece);
        }
        debug_assert_eq!(self.buf.len() - start, len, "pieces do not add up");
    }

    /// A message-typed field (a set singular one, or one element of a
    /// repeated one): always written, even when it has no fields. `body`
    /// writes its fields.
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut MessageWriter<'_>)) {
        self.message_sized(field, 1, body);
    }

    /// As [`message`](Self::message), for a message that usually holds
    /// 128 bytes or more (up to 16 KiB): two bytes are set aside for its
    /// length, so that it is moved only when it is not.
    pub fn large_message(&mut self, field: u32, body: impl FnOnce(&mut MessageWriter<'_>)) {
        self.message_sized(field, 2, body);
    }

    fn message_sized(
        &mut self,
        field: u32,
        room: usize,
        body: impl FnOnce(&mut MessageWriter<'_>),
    ) {
        self.key(field, WireType::LengthDelimited);
        let at = self.buf.len();
        self.buf.resize(at + room, 0);
        body(&mut MessageWriter { buf: self.buf });
        let end = self.buf.len();
        let len = end - at - room;
        let width = encoded_len_varint(len as u64);
        if width != room {
            // Move the message to fit its length.
            let start = at + room;
            if width > room {
                self.buf.resize(end + width - room, 0);
            }
            self.buf.copy_within(start..end, at + width);
            self.buf.truncate(at + width + len);
        }
        let mut slot = &mut self.buf[at..at + width];
        prost::encoding::encode_varint(len as u64, &mut slot);
    }

    #[inline]
    fn key(&mut self, field: u32, wire_type: WireType) {
        varint(self.buf, u64::from(field << 3 | wire_type as u32));
    }

    /// A message-typed field whose message holds two `bytes` or `string`
    /// fields, numbered 1 and 2 (a `Header`), written in one go: its length
    /// is known before it is written.
    // Always inlined: called once a field in the recorder's loop over a
    // head's fields, where a call cost more than the writing (callgrind:
    // about 1,000 instructions an exchange of nine fields).
    #[inline(always)]
    pub fn pair(&mut self, field: u32, first: &[u8], second: &[u8]) {
        let part = |value: &[u8]| {
            if value.is_empty() {
                0
            } else {
                1 + encoded_len_varint(value.len() as u64) + value.len()
            }
        };
        let len = part(first) + part(second);
        self.buf.reserve(len + 15);
        self.key(field, WireType::LengthDelimited);
        varint(self.buf, len as u64);
        for (number, value) in [(1u8, first), (2, second)] {
            if !value.is_empty() {
                self.buf.push(number << 3 | WireType::LengthDelimited as u8);
                varint(self.buf, value.len() as u64);
                self.buf.extend_from_slice(value);
            }
        }
    }

    /// A message-typed field held as a prost message.
    pub fn prost(&mut self, field: u32, message: &impl Message) {
        prost::encoding::message::encode(field, message, self.buf);
    }
}

/// Appends `value` as a varint. prost's `encode_varint` was not inlined
/// here: a call per varint, 1,400 instructions an exchange in the
/// recorder's callgrind profile; this one is.
#[inline]
fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{Exchange, Flags, GrpcStatus, Header, Request, Response};

    #[test]
    fn writes_what_prost_writes() {
        let long = vec![b'x'; 300];
        let exchange = Exchange {
            id: vec![1; 16],
            recorded_at_ns: 1 << 40,
            protocol: 2,
            request: Some(Request {
                method: "GET".into(),
                headers: vec![Header::new("", ""), Header::new("a", &long)],
                trailers: vec![
                    Header::new("a", ""),
                    Header::new("", "b"),
                    Header::new("n", &long),
                ],
                body: long.clone().into(),
                body_size: 300,
                ..Default::default()
            }),
            response: Some(Response {
                grpc: Some(GrpcStatus {
                    code: -3,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            flags: Some(Flags {
                redacted: true,
                redactions: vec![String::new(), "x".into()],
                sample_rate: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut ours = Vec::new();
        let mut w = MessageWriter::new(&mut ours);
        w.bytes(1, &[1; 16]);
        w.bytes(2, b"");
        w.uint(4, 1 << 40);
        w.uint(5, 0);
        w.uint(7, 2);
        w.large_message(9, |r| {
            r.string(1, "GET");
            r.pair(5, b"", b"");
            r.message(5, |h| {
                h.string(1, "a");
                h.bytes(2, &long);
            });
            r.bytes_in_pieces(6, 300, [&long[..100], &long[100..]]);
            r.pair(7, b"a", b"");
            r.pair(7, b"", b"b");
            r.pair(7, b"n", &long);
            r.uint(8, 300);
            r.bool(9, false);
        });
        w.message(10, |r| {
            r.message(9, |g| g.int32(1, -3));
        });
        w.message(13, |f| {
            f.bool(1, true);
            f.each_string(2, "");
            f.each_string(2, "x");
            f.double(5, 0.0);
        });
        assert_eq!(ours, crate::codec::encode_to_vec(&exchange));
    }

    #[test]
    fn lengths_of_every_width() {
        for len in [
            0, 1, 120, 124, 125, 127, 128, 16_379, 16_380, 16_383, 16_384, 2_097_152,
        ] {
            let body = vec![7u8; len];
            let request = Request {
                body: body.clone().into(),
                ..Default::default()
            };
            let mut theirs = Vec::new();
            prost::encoding::message::encode(9, &request, &mut theirs);
            for large in [false, true] {
                let mut ours = vec![1, 2, 3];
                let mut w = MessageWriter::new(&mut ours);
                if large {
                    w.large_message(9, |r| r.bytes(6, &body));
                } else {
                    w.message(9, |r| r.bytes(6, &body));
                }
                assert_eq!(ours[3..], theirs[..], "a body of {len} bytes");
            }
        }
    }
}
