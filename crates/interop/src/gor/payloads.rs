//! Splitting a `.gor` stream into payloads, in one pass: each byte is
//! searched once, and only the payload being read is held in memory.

use std::io::BufRead;

use bytes::BytesMut;

use crate::error::ImportError;

/// What separates two payloads.
pub(super) const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();
/// The separator's marks without its line breaks: found anywhere else in
/// a payload, they are a damaged separator.
pub(super) const MARKS: &[u8] = "🐵🙈🙉".as_bytes();
/// Largest payload accepted.
pub(super) const MAX_PAYLOAD: usize = 256 << 20;

/// One payload, or the place of one too large to read.
pub(super) enum Payload {
    /// The bytes between two separators.
    Bytes(BytesMut),
    /// Larger than [`MAX_PAYLOAD`]: skipped up to the next separator.
    TooLarge,
}

/// Splits a reader into payloads, each with its byte offset.
pub(super) struct Payloads<R> {
    reader: R,
    buffer: BytesMut,
    /// How far `buffer` has been searched for a separator already.
    searched: usize,
    /// Skipping an oversized payload up to the next separator.
    skipping: bool,
    /// Bytes of the payload being skipped that were dropped.
    dropped: u64,
    /// Offset of the first byte of the payload being read.
    offset: u64,
    done: bool,
    finder: memchr::memmem::Finder<'static>,
    /// Largest payload read ([`MAX_PAYLOAD`]; smaller in tests).
    limit: usize,
}

impl<R: BufRead> Payloads<R> {
    pub(super) fn new(reader: R) -> Self {
        Payloads {
            reader,
            buffer: BytesMut::new(),
            searched: 0,
            skipping: false,
            dropped: 0,
            offset: 0,
            done: false,
            finder: memchr::memmem::Finder::new(SEPARATOR),
            limit: MAX_PAYLOAD,
        }
    }

    /// The next payload and the offset of its first byte.
    pub(super) fn next(&mut self, file: &str) -> Result<Option<(u64, Payload)>, ImportError> {
        loop {
            // A separator may straddle what was searched and what came
            // since: search again from just before the new bytes.
            let from = self.searched.saturating_sub(SEPARATOR.len() - 1);
            if let Some(at) = self.finder.find(&self.buffer[from..]).map(|at| from + at) {
                let mut payload = self.buffer.split_to(at + SEPARATOR.len());
                payload.truncate(at);
                return Ok(Some(self.emit(payload, SEPARATOR.len())));
            }
            self.searched = self.buffer.len();
            if self.done {
                let payload = std::mem::take(&mut self.buffer);
                if !self.skipping && payload.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Ok(Some(self.emit(payload, 0)));
            }
            if self.buffer.len() > self.limit {
                // Too large: drop all but what may begin a separator.
                let drop = self.buffer.len() - (SEPARATOR.len() - 1);
                let _ = self.buffer.split_to(drop);
                self.dropped += drop as u64;
                self.searched = self.buffer.len();
                self.skipping = true;
            }
            let chunk = self.reader.fill_buf().map_err(|source| ImportError::Io {
                file: file.to_string(),
                source,
            })?;
            if chunk.is_empty() {
                self.done = true;
                continue;
            }
            let n = chunk.len();
            self.buffer.extend_from_slice(chunk);
            self.reader.consume(n);
        }
    }

    /// Hands out a payload that was followed by `separator` bytes.
    fn emit(&mut self, payload: BytesMut, separator: usize) -> (u64, Payload) {
        let start = self.offset;
        self.offset += self.dropped + (payload.len() + separator) as u64;
        self.dropped = 0;
        self.searched = 0;
        // Too large whether it was cut while read or arrived whole.
        if std::mem::take(&mut self.skipping) || payload.len() > self.limit {
            return (start, Payload::TooLarge);
        }
        // A copy of its own: the payload's bodies may be held (a request
        // waiting for its response, up to thousands of them), and a view
        // would keep the whole read buffer it was cut from alive.
        (start, Payload::Bytes(BytesMut::from(&payload[..])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every payload of `file` read `step` bytes at a time, payloads
    /// larger than `limit` skipped: (offset, bytes or None when skipped).
    fn split(file: &[u8], step: usize, limit: usize) -> Vec<(u64, Option<Vec<u8>>)> {
        let mut payloads = Payloads::new(std::io::BufReader::with_capacity(step, file));
        payloads.limit = limit;
        let mut out = Vec::new();
        while let Some((offset, payload)) = payloads.next("t.gor").unwrap() {
            out.push((
                offset,
                match payload {
                    Payload::Bytes(bytes) => Some(bytes.to_vec()),
                    Payload::TooLarge => None,
                },
            ));
        }
        out
    }

    /// A payload (whose bodies an import may hold, waiting for their
    /// other half) is a copy of its own, not a view that keeps the read
    /// buffer it was cut from alive.
    #[test]
    fn a_payload_does_not_share_the_read_buffer() {
        let file = "1 a 1\nGET / HTTP/1.1\r\n\r\n\n🐵🙈🙉\n1 b 2\nGET / HTTP/1.1\r\n\r\n";
        let mut payloads = Payloads::new(file.as_bytes());
        let Ok(Some((_, Payload::Bytes(first)))) = payloads.next("t.gor") else {
            panic!("no first payload");
        };
        assert_eq!(&first[..], b"1 a 1\nGET / HTTP/1.1\r\n\r\n");
        let (start, end) = (
            first.as_ptr() as usize,
            first.as_ptr() as usize + first.len(),
        );
        let rest = payloads.buffer.as_ptr() as usize;
        assert!(
            !(start..=end + SEPARATOR.len()).contains(&rest),
            "the payload is cut from the read buffer"
        );
    }

    #[test]
    fn an_oversized_payload_is_skipped_to_the_next_separator() {
        let big = vec![b'x'; 1000];
        let mut file = b"1 a 1\nA".to_vec();
        file.extend_from_slice(SEPARATOR);
        let second = file.len() as u64;
        file.extend_from_slice(&big);
        file.extend_from_slice(SEPARATOR);
        let third = file.len() as u64;
        file.extend_from_slice(b"1 b 1\nB");
        for step in [1, 5, 64, 4096] {
            assert_eq!(
                split(&file, step, 100),
                [
                    (0, Some(b"1 a 1\nA".to_vec())),
                    (second, None),
                    (third, Some(b"1 b 1\nB".to_vec())),
                ],
                "{step}"
            );
        }
        // Oversized up to the end of the file.
        file.extend_from_slice(SEPARATOR);
        let last = file.len() as u64;
        file.extend_from_slice(&big);
        assert_eq!(split(&file, 64, 100).last(), Some(&(last, None)));
    }
}
