//! The heads of a call as the recorder keeps them: [`RequestHead`] (what
//! the call's path hands over), a private length-prefixed encoding of the
//! fields copied into the record's buffer as they pass (no allocation
//! per field), read back in place by [`Fields`], and [`HeadView`], the
//! call's head as the `--match` rules and the rate cap judge it.

use std::borrow::Cow;

use http::{HeaderMap, Method, Uri, Version};
use reprise_model::redact::Redactor;
use reprise_model::select::{CallHead, RequestHead as FilteredHead};
use reprise_model::{Header, HeaderList};

use crate::captured::Captured;
use crate::encode::{Parts, protocol};

/// The request head as the client sent it, before any proxy rewriting.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The protocol version.
    pub version: Version,
    /// The fields.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
        }
    }
}

pub(crate) fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    // A field is far below 4 GiB: hyper and h2 cap heads well before.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&bytes[..len as usize]);
}

pub(crate) fn put_fields(buf: &mut Vec<u8>, map: &HeaderMap) {
    let count = u32::try_from(map.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&count.to_le_bytes());
    for (name, value) in map.iter().take(count as usize) {
        put(buf, name.as_str().as_bytes());
        put(buf, value.as_bytes());
    }
}

/// The next length-prefixed piece at `*at` (empty past the end: the
/// buffer is this module's own encoding, so that is never reached).
pub(crate) fn get<'a>(buf: &'a [u8], at: &mut usize) -> &'a [u8] {
    let Some(len) = buf
        .get(*at..*at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
    else {
        return &[];
    };
    let start = *at + 4;
    let piece = buf.get(start..start + len).unwrap_or_default();
    *at = start + piece.len();
    piece
}

/// A block of fields as [`put_fields`] encoded them, read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The block starting at `start` of `buf`.
    pub(crate) fn at(buf: &'a [u8], start: usize) -> Fields<'a> {
        Fields {
            buf: buf.get(start..).unwrap_or_default(),
        }
    }

    /// Each field's name and value, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut at = 0;
        let count = get_u32(self.buf, &mut at);
        let buf = self.buf;
        // Bounded by the bytes too: the buffer is this module's own
        // encoding, so the count always holds, but nothing loops on it.
        (0..count)
            .map_while(move |_| (at < buf.len()).then(|| (get(buf, &mut at), get(buf, &mut at))))
    }

    /// Where the block ends in the buffer it was read from.
    #[cfg(test)]
    pub(crate) fn len(self) -> usize {
        let mut at = 4;
        for (name, value) in self.iter() {
            at += 8 + name.len() + value.len();
        }
        at.min(self.buf.len())
    }

    pub(crate) fn to_headers(self) -> Vec<Header> {
        let mut out = Vec::with_capacity(self.iter().size_hint().1.unwrap_or(0).min(256));
        out.extend(
            self.iter()
                .map(|(name, value)| Header::new(text(name), value)),
        );
        out
    }
}

impl<'a> Fields<'a> {
    /// The first value of `name` (compared case-insensitively).
    pub(crate) fn get(self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }
}

impl HeaderList for Fields<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
    }
}

pub(crate) fn get_u32(buf: &[u8], at: &mut usize) -> u32 {
    let value = buf
        .get(*at..*at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes);
    *at += 4;
    value
}

pub(crate) fn text(bytes: &[u8]) -> Cow<'_, str> {
    // Valid UTF-8 (names and methods always are) is borrowed as it is;
    // `from_utf8` checks it faster than `from_utf8_lossy` does.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl Captured {
    /// The call's head as the `--match` rules and the rate cap read it,
    /// without building its exchange (nor cutting a gRPC call's messages
    /// out of its bodies).
    pub fn head(&self) -> HeadView<'_> {
        HeadView {
            captured: self,
            parts: self.parts(false),
        }
    }
}

/// A recorded call's head, as filters read it ([`CallHead`]).
pub struct HeadView<'a> {
    pub(crate) captured: &'a Captured,
    pub(crate) parts: Parts<'a>,
}

impl HeadView<'_> {
    /// [`Captured::encode`], from the parts already read for the head.
    pub fn encode(self, redactor: &Redactor, sample_rate: f64, out: &mut Vec<u8>) {
        let mut parts = self.parts;
        parts.messages = self.captured.messages();
        self.captured
            .encode_parts(parts, redactor, sample_rate, out);
    }
}

impl CallHead for HeadView<'_> {
    fn recorded_at_ns(&self) -> u64 {
        self.captured.recorded_at_ns
    }

    fn status(&self) -> u32 {
        self.parts
            .response
            .map_or(0, |(status, _)| u32::from(status.as_u16()))
    }

    fn protocol_label(&self) -> &'static str {
        reprise_model::protocol_label(protocol(self.captured.version, self.captured.grpc))
    }

    fn request_head(&self) -> Option<FilteredHead<'_>> {
        Some(FilteredHead {
            method: &self.parts.method,
            path: &self.parts.path,
            authority: &self.parts.authority,
            headers: &self.parts.request_fields,
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_through_their_encoding() {
        let mut map = HeaderMap::new();
        map.append(
            "x-a",
            "1".parse().unwrap_or(http::HeaderValue::from_static("?")),
        );
        map.append("x-a", http::HeaderValue::from_static("2"));
        map.append(
            "x-bin",
            http::HeaderValue::from_bytes(b"\xff\xfe")
                .unwrap_or(http::HeaderValue::from_static("?")),
        );
        let mut buf = Vec::new();
        put_fields(&mut buf, &map);
        put(&mut buf, b"tail");
        let block = Fields::at(&buf, 0);
        let mut at = block.len();
        assert_eq!(
            block.to_headers(),
            [
                Header::new("x-a", "1"),
                Header::new("x-a", "2"),
                Header::new("x-bin", b"\xff\xfe")
            ]
        );
        assert_eq!(get(&buf, &mut at), b"tail");
        // Past the end: empty, never a panic.
        assert_eq!(get(&buf, &mut at), b"");
        assert_eq!(Fields::at(&buf, at).iter().count(), 0);
        assert_eq!(Fields::at(&buf, buf.len() + 9).iter().count(), 0);
    }
}
