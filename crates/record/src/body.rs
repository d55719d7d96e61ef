//! A body's bytes as they pass through a tap, kept up to the size cap
//! with each frame's time offset, in buffers reused from exchange to
//! exchange.

use bytes::Bytes;
use http::HeaderMap;

use crate::head::{Fields, put_fields};

/// A body's bytes as they passed, up to the cap, with when each frame
/// passed. Small frames are copied into the record's own buffer (no
/// allocation, nothing for another thread to free); a large one is kept by
/// its `Bytes` handle, as copying it would cost more than the allocator
/// does and would hold a second copy of a big body in memory.
#[derive(Debug, Default)]
pub struct BodyCapture {
    /// The small frames' bytes.
    pub(crate) data: Vec<u8>,
    /// Each frame kept, with its time offset.
    pub(crate) frames: Vec<(u64, Piece)>,
    /// Bytes kept in all.
    pub(crate) kept: usize,
    /// Every byte that passed.
    pub(crate) size: u64,
    pub(crate) truncated: bool,
    /// The trailers, encoded like a head's fields.
    pub(crate) trailers: Vec<u8>,
    pub(crate) has_trailers: bool,
    /// The body broke (the error's text).
    pub(crate) error: Option<String>,
    /// The body was dropped before its end.
    pub(crate) cancelled: bool,
}

/// Buffers larger than this are not kept for the next exchange.
pub(crate) const KEEP_CAPACITY: usize = 8 << 10;

/// Frames of this size or more are kept by handle, not copied.
pub(crate) const SHARE_AT: usize = 4 << 10;

/// Where a kept frame's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// In `data`, up to this end.
    Copied(usize),
    /// Its own handle.
    Shared(Bytes),
}

pub(crate) fn clear_bounded<T>(v: &mut Vec<T>) {
    if v.capacity() * std::mem::size_of::<T>() > KEEP_CAPACITY {
        *v = Vec::new();
    } else {
        v.clear();
    }
}

impl BodyCapture {
    /// A data frame passed at `offset_ns`; keeps at most `max - kept` of
    /// its bytes.
    pub fn data(&mut self, offset_ns: u64, data: &Bytes, max: usize) {
        self.size += data.len() as u64;
        let room = max.saturating_sub(self.kept);
        if data.len() > room {
            self.truncated = true;
        }
        let take = room.min(data.len());
        if take == 0 {
            return;
        }
        self.kept += take;
        let piece = if take >= SHARE_AT {
            Piece::Shared(data.slice(..take))
        } else {
            self.data.extend_from_slice(&data[..take]);
            Piece::Copied(self.data.len())
        };
        self.frames.push((offset_ns, piece));
    }

    /// The body's trailers.
    pub fn trailers(&mut self, map: &HeaderMap) {
        self.trailers.clear();
        put_fields(&mut self.trailers, map);
        self.has_trailers = true;
    }

    /// Marks the body as broken.
    pub fn broke(&mut self, error: String) {
        self.error = Some(error);
    }

    /// Marks the body as dropped before its end.
    pub fn cancelled(&mut self) {
        self.cancelled = true;
    }

    pub(crate) fn recycle(&mut self) {
        clear_bounded(&mut self.data);
        clear_bounded(&mut self.frames);
        self.kept = 0;
        clear_bounded(&mut self.trailers);
        self.size = 0;
        self.truncated = false;
        self.has_trailers = false;
        self.error = None;
        self.cancelled = false;
    }

    pub(crate) fn trailer_fields(&self) -> Option<Fields<'_>> {
        self.has_trailers.then(|| Fields::at(&self.trailers, 0))
    }

    /// The frames kept, with their time offsets.
    pub(crate) fn frames(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.frames.iter().map(move |(offset, piece)| {
            let frame = match piece {
                Piece::Copied(end) => {
                    let frame = self.data.get(start..*end).unwrap_or_default();
                    start = *end;
                    frame
                }
                Piece::Shared(bytes) => &bytes[..],
            };
            (*offset, frame)
        })
    }

    /// The body kept, in one piece (a lone large frame is not copied).
    pub(crate) fn bytes(&self) -> Bytes {
        match self.frames.as_slice() {
            [] => Bytes::new(),
            [(_, Piece::Shared(only))] => only.clone(),
            _ if self
                .frames
                .iter()
                .all(|(_, p)| matches!(p, Piece::Copied(_))) =>
            {
                Bytes::copy_from_slice(&self.data)
            }
            _ => {
                let mut joined = Vec::with_capacity(self.kept);
                for (_, frame) in self.frames() {
                    joined.extend_from_slice(frame);
                }
                Bytes::from(joined)
            }
        }
    }
}

/// A body of `frames`, one every 10 ns, kept up to `max` bytes.
#[cfg(test)]
pub(crate) fn body_of(frames: &[&[u8]], max: usize) -> BodyCapture {
    let mut body = BodyCapture::default();
    for (i, frame) in frames.iter().enumerate() {
        body.data(i as u64 * 10, &Bytes::copy_from_slice(frame), max);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_kept_up_to_the_cap() {
        let b = body_of(&[b"hello ", b"world"], 8);
        assert_eq!(
            (&b.bytes()[..], b.size, b.truncated),
            (&b"hello wo"[..], 11, true)
        );
        let frames: Vec<(u64, &[u8])> = b.frames().collect();
        assert_eq!(frames, [(0, &b"hello "[..]), (10, &b"wo"[..])]);
        // Large frames are kept by handle, in order with copied ones.
        let big = vec![7u8; SHARE_AT];
        let mixed = body_of(&[b"ab", &big, b"cd", &big], 2 * SHARE_AT + 2);
        let frames: Vec<usize> = mixed.frames().map(|(_, f)| f.len()).collect();
        assert_eq!(frames, [2, SHARE_AT, 2, SHARE_AT - 2]);
        let bytes = mixed.bytes();
        assert_eq!(
            (bytes.len(), &bytes[..3], mixed.truncated),
            (2 * SHARE_AT + 2, &[b'a', b'b', 7][..], true)
        );
        assert_eq!(&bytes[SHARE_AT + 2..SHARE_AT + 4], b"cd");
    }
}
