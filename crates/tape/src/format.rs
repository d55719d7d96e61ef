//! The bytes of a tape: file header and block headers.
//!
//! ```text
//! file   = file-header block*
//! block  = block-header payload
//! payload = zstd( record* )          record = varint(len) Exchange
//! ```
//!
//! All integers are little-endian. See docs/tape-format.md for the full
//! description; this module is its executable form.

/// First bytes of every tape.
pub const FILE_MAGIC: [u8; 8] = *b"RPRSTAPE";
/// Version of the container format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the file header in bytes.
pub const FILE_HEADER_LEN: usize = 32;
/// First bytes of every block header.
pub const BLOCK_MAGIC: [u8; 4] = *b"RPBK";
/// Size of a block header in bytes.
pub const BLOCK_HEADER_LEN: usize = 64;
/// Largest payload (compressed or not) a block may declare. Bounds what a
/// reader allocates for a damaged header that still passes its checksum.
pub const MAX_BLOCK_PAYLOAD: u32 = 256 << 20;

/// How a block's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Records stored as they are.
    None = 0,
    /// One zstd frame holding the records.
    Zstd = 1,
}

impl Codec {
    fn from_byte(byte: u8) -> Option<Codec> {
        match byte {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// The file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Container format version.
    pub format_version: u16,
    /// Record schema version (`reprise.v1` = 1).
    pub schema_version: u32,
    /// When the tape was created, ns since the epoch.
    pub created_at_ns: u64,
}

/// Why a file header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileHeaderProblem {
    /// Fewer bytes than a header.
    Short,
    /// The magic is not `RPRSTAPE`: not a tape at all.
    NotATape,
    /// Magic right, checksum wrong: the header itself is damaged.
    Checksum,
    /// Written by a newer format version.
    NewerVersion(u16),
}

impl FileHeader {
    /// Encodes the header to its 32 bytes.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        out[0..8].copy_from_slice(&FILE_MAGIC);
        out[8..10].copy_from_slice(&self.format_version.to_le_bytes());
        out[10..12].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
        out[12..16].copy_from_slice(&self.schema_version.to_le_bytes());
        out[16..24].copy_from_slice(&self.created_at_ns.to_le_bytes());
        // 24..28: flags, none defined.
        let crc = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a file header.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, FileHeaderProblem> {
        if bytes.len() < FILE_HEADER_LEN {
            return Err(if bytes.len() >= 8 && bytes[0..8] != FILE_MAGIC {
                FileHeaderProblem::NotATape
            } else {
                FileHeaderProblem::Short
            });
        }
        if bytes[0..8] != FILE_MAGIC {
            return Err(FileHeaderProblem::NotATape);
        }
        if crc32c::crc32c(&bytes[0..28]) != le_u32(&bytes[28..32]) {
            return Err(FileHeaderProblem::Checksum);
        }
        let format_version = le_u16(&bytes[8..10]);
        if format_version > FORMAT_VERSION {
            return Err(FileHeaderProblem::NewerVersion(format_version));
        }
        Ok(FileHeader {
            format_version,
            schema_version: le_u32(&bytes[12..16]),
            created_at_ns: le_u64(&bytes[16..24]),
        })
    }
}

/// A block header: where the block is, what it holds and its checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// How the payload is stored.
    pub codec: Codec,
    /// Index of the block in the tape, from 0.
    pub seq: u64,
    /// File offset of this header; a header found elsewhere (inside another
    /// block's payload, say) is not a block of this tape.
    pub offset: u64,
    /// Payload length as stored.
    pub payload_len: u32,
    /// Payload length once decompressed.
    pub raw_len: u32,
    /// Number of records.
    pub count: u32,
    /// crc32c of the stored payload.
    pub payload_crc: u32,
    /// Schema revision of the build that wrote the block
    /// ([`reprise_model::SCHEMA_REVISION`]).
    pub schema_rev: u16,
    /// Some record of the block carries fields its writer did not know (read
    /// from a newer recording and written back).
    pub carries_unknown: bool,
    /// Earliest `recorded_at_ns` of the block's records.
    pub min_ts: u64,
    /// Latest `recorded_at_ns` of the block's records.
    pub max_ts: u64,
}

impl BlockHeader {
    /// Encodes the header to its 64 bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut out = [0u8; BLOCK_HEADER_LEN];
        out[0..4].copy_from_slice(&BLOCK_MAGIC);
        out[4] = self.codec as u8;
        out[5..7].copy_from_slice(&self.schema_rev.to_le_bytes());
        out[7] = u8::from(self.carries_unknown);
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.offset.to_le_bytes());
        out[24..28].copy_from_slice(&self.payload_len.to_le_bytes());
        out[28..32].copy_from_slice(&self.raw_len.to_le_bytes());
        out[32..36].copy_from_slice(&self.count.to_le_bytes());
        out[36..40].copy_from_slice(&self.payload_crc.to_le_bytes());
        out[40..48].copy_from_slice(&self.min_ts.to_le_bytes());
        out[48..56].copy_from_slice(&self.max_ts.to_le_bytes());
        // 56..60 reserved.
        let crc = crc32c::crc32c(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header, or `None` when the bytes are not a valid block
    /// header (wrong magic, checksum, codec or sizes).
    pub fn decode(bytes: &[u8]) -> Option<BlockHeader> {
        let bytes = bytes.get(0..BLOCK_HEADER_LEN)?;
        if bytes[0..4] != BLOCK_MAGIC || crc32c::crc32c(&bytes[0..60]) != le_u32(&bytes[60..64]) {
            return None;
        }
        let header = BlockHeader {
            codec: Codec::from_byte(bytes[4])?,
            schema_rev: le_u16(&bytes[5..7]),
            carries_unknown: bytes[7] & 1 != 0,
            seq: le_u64(&bytes[8..16]),
            offset: le_u64(&bytes[16..24]),
            payload_len: le_u32(&bytes[24..28]),
            raw_len: le_u32(&bytes[28..32]),
            count: le_u32(&bytes[32..36]),
            payload_crc: le_u32(&bytes[36..40]),
            min_ts: le_u64(&bytes[40..48]),
            max_ts: le_u64(&bytes[48..56]),
        };
        let sane = header.payload_len <= MAX_BLOCK_PAYLOAD && header.raw_len <= MAX_BLOCK_PAYLOAD;
        sane.then_some(header)
    }

    /// Whether every record of this block holds only fields this build
    /// knows, so decoding can skip the unknown-field check.
    pub fn only_known_fields(&self) -> bool {
        !self.carries_unknown && self.schema_rev <= reprise_model::SCHEMA_REVISION
    }

    /// Offset just past this block.
    pub fn end(&self) -> u64 {
        self.offset + BLOCK_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> BlockHeader {
        BlockHeader {
            codec: Codec::Zstd,
            seq: 3,
            offset: 4096,
            payload_len: 100,
            raw_len: 400,
            count: 7,
            payload_crc: 0xdead_beef,
            schema_rev: 1,
            carries_unknown: true,
            min_ts: 10,
            max_ts: 20,
        }
    }

    #[test]
    fn block_header_round_trip_and_checksum() {
        let bytes = block().encode();
        assert_eq!(BlockHeader::decode(&bytes), Some(block()));
        for i in 0..BLOCK_HEADER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x40;
            assert_eq!(BlockHeader::decode(&bad), None, "flip at {i}");
        }
        assert_eq!(BlockHeader::decode(&bytes[..10]), None);
    }

    #[test]
    fn file_header_round_trip_and_problems() {
        let header = FileHeader {
            format_version: 1,
            schema_version: 1,
            created_at_ns: 5,
        };
        let bytes = header.encode();
        assert_eq!(FileHeader::decode(&bytes), Ok(header));
        let mut bad = bytes;
        bad[20] ^= 1;
        assert_eq!(FileHeader::decode(&bad), Err(FileHeaderProblem::Checksum));
        assert_eq!(
            FileHeader::decode(b"GIF89a.........................."),
            Err(FileHeaderProblem::NotATape)
        );
        assert_eq!(FileHeader::decode(b"RPRS"), Err(FileHeaderProblem::Short));
        let newer = FileHeader {
            format_version: 9,
            ..header
        };
        assert_eq!(
            FileHeader::decode(&newer.encode()),
            Err(FileHeaderProblem::NewerVersion(9))
        );
    }
}
