//! Records packed by the thread that made them, for a store to take many
//! at once.
//!
//! A producer that owns a [`Packer`] (one per thread, from
//! [`Sink::packer`](crate::Sink::packer)) encodes each record on its own
//! thread and adds it to its pack; only full packs, and packs that have
//! waited their age, cross to the store's thread, which then stores a
//! pack as a whole ([`Sink::append_packed`](crate::Sink::append_packed)).
//! Nothing of a record crosses threads but its packed bytes, and the
//! store's thread wakes once a pack, not once a record. A tape's packer
//! makes sealed blocks (compressed on the producer's thread); any other
//! store gets plain packs ([`PlainPacker`]) and takes their records one
//! by one.

use std::time::{Duration, Instant};

use crate::store::StoreError;

/// How a pack holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedCodec {
    /// As they are: each a varint length then its encoding.
    Plain,
    /// The plain form compressed as one zstd frame.
    Zstd,
}

/// Records packed together, recorded between `min_ts` and `max_ts`.
#[derive(Debug)]
pub struct Packed {
    /// How `bytes` holds the records.
    pub codec: PackedCodec,
    /// The records, in the order they were added.
    pub bytes: Vec<u8>,
    /// Length of the records in the plain form.
    pub raw_len: usize,
    /// Records held.
    pub count: u32,
    /// Earliest `recorded_at_ns` of the records.
    pub min_ts: u64,
    /// Latest `recorded_at_ns` of the records.
    pub max_ts: u64,
}

impl Packed {
    /// The records of a plain pack, each as [`codec::encode`](crate::codec::encode)
    /// wrote it; an error for a compressed pack or a malformed one.
    pub fn plain_records(&self) -> Result<Vec<&[u8]>, StoreError> {
        if self.codec != PackedCodec::Plain {
            return Err(StoreError::failed(
                "pack",
                "a compressed pack is for the store whose packer made it",
            ));
        }
        let mut records = Vec::with_capacity(self.count as usize);
        let mut rest = self.bytes.as_slice();
        while !rest.is_empty() {
            let mut cursor = rest;
            let len = prost::encoding::decode_varint(&mut cursor)
                .ok()
                .and_then(|len| usize::try_from(len).ok())
                .filter(|&len| len <= cursor.len())
                .ok_or_else(|| StoreError::failed("pack", "a record runs past its pack"))?;
            records.push(&cursor[..len]);
            rest = &cursor[len..];
        }
        Ok(records)
    }
}

/// A store that failed part of a pack: how many of its records it stored
/// before failing, and why.
#[derive(Debug)]
pub struct PackedError {
    /// Records stored.
    pub stored: u32,
    /// The failure.
    pub error: StoreError,
}

/// Packs records on one producer's thread.
pub trait Packer: Send {
    /// Adds one record, given as [`codec::encode`](crate::codec::encode)
    /// writes it (holding no fields of a newer schema); returns a pack
    /// when one is full. An error (a record the
    /// store cannot hold) leaves the packer as it was.
    fn add(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<Option<Packed>, StoreError>;

    /// Whatever is packed, full or not; `None` when empty.
    fn flush(&mut self) -> Option<Packed>;

    /// Whether the oldest record packed has waited the longest a record
    /// may wait before it is handed to the store (its pack is then
    /// flushed): a producer looks every few milliseconds, also while idle.
    fn due(&self, now: Instant) -> bool;

    /// An empty packer with the same settings, for another thread.
    fn another(&self) -> Box<dyn Packer>;
}

/// The packer of stores with no packing of their own: plain packs of up
/// to `max_bytes`, or of records up to `max_age` old.
#[derive(Debug)]
pub struct PlainPacker {
    bytes: Vec<u8>,
    count: u32,
    min_ts: u64,
    max_ts: u64,
    oldest: Option<Instant>,
    max_bytes: usize,
    max_age: Duration,
}

impl PlainPacker {
    /// Packs of up to `max_bytes` (a record bigger than that is a pack of
    /// its own), handed over once their oldest record is `max_age` old.
    pub fn new(max_bytes: usize, max_age: Duration) -> Self {
        PlainPacker {
            bytes: Vec::new(),
            count: 0,
            min_ts: u64::MAX,
            max_ts: 0,
            oldest: None,
            max_bytes,
            max_age,
        }
    }
}

impl Default for PlainPacker {
    /// 64 KiB packs, handed over within 20 ms.
    fn default() -> Self {
        PlainPacker::new(64 << 10, Duration::from_millis(20))
    }
}

impl Packer for PlainPacker {
    fn add(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<Option<Packed>, StoreError> {
        prost::encoding::encode_varint(record.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(record);
        self.count += 1;
        self.min_ts = self.min_ts.min(recorded_at_ns);
        self.max_ts = self.max_ts.max(recorded_at_ns);
        self.oldest.get_or_insert_with(Instant::now);
        if self.bytes.len() >= self.max_bytes {
            return Ok(self.flush());
        }
        Ok(None)
    }

    fn flush(&mut self) -> Option<Packed> {
        if self.count == 0 {
            return None;
        }
        let bytes = std::mem::take(&mut self.bytes);
        let packed = Packed {
            codec: PackedCodec::Plain,
            raw_len: bytes.len(),
            bytes,
            count: self.count,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
        };
        self.count = 0;
        self.min_ts = u64::MAX;
        self.max_ts = 0;
        self.oldest = None;
        Some(packed)
    }

    fn due(&self, now: Instant) -> bool {
        self.oldest
            .is_some_and(|oldest| now.saturating_duration_since(oldest) >= self.max_age)
    }

    fn another(&self) -> Box<dyn Packer> {
        Box::new(PlainPacker::new(self.max_bytes, self.max_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_pack_gives_back_its_records_in_order() {
        let mut packer = PlainPacker::new(10, Duration::from_secs(60));
        assert!(packer.add(b"abc", 7).expect("plain").is_none());
        assert!(packer.add(b"", 3).expect("plain").is_none());
        let packed = packer
            .add(b"0123456789", 5)
            .expect("plain")
            .expect("full at 10 bytes");
        assert_eq!((packed.count, packed.min_ts, packed.max_ts), (3, 3, 7));
        assert_eq!(packed.raw_len, packed.bytes.len());
        let records = packed.plain_records().expect("plain");
        assert_eq!(records, [&b"abc"[..], b"", b"0123456789"]);
        assert!(packer.flush().is_none(), "emptied by the full pack");
    }

    #[test]
    fn a_pack_is_due_at_its_oldest_records_age() {
        let mut packer = PlainPacker::new(1 << 20, Duration::from_millis(50));
        let now = Instant::now();
        assert!(!packer.due(now), "an empty packer is never due");
        assert!(packer.add(b"x", 1).expect("plain").is_none());
        assert!(!packer.due(Instant::now()));
        assert!(packer.due(Instant::now() + Duration::from_millis(50)));
        assert_eq!(packer.flush().map(|p| p.count), Some(1));
        assert!(!packer.due(Instant::now() + Duration::from_secs(1)));
    }

    #[test]
    fn a_malformed_or_compressed_pack_is_refused() {
        let cut = Packed {
            codec: PackedCodec::Plain,
            bytes: vec![5, b'a'],
            raw_len: 2,
            count: 1,
            min_ts: 0,
            max_ts: 0,
        };
        let error = cut.plain_records().expect_err("cut");
        assert!(error.to_string().contains("runs past its pack"), "{error}");
        let zstd = Packed {
            codec: PackedCodec::Zstd,
            ..cut
        };
        let error = zstd.plain_records().expect_err("compressed");
        assert!(error.to_string().contains("compressed pack"), "{error}");
    }
}
