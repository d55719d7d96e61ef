//! A block's records, decoded one at a time from its stored payload.
//!
//! A zstd payload is streamed, never decompressed whole: memory holds the
//! record being decoded, not the block, and the stream is never read past
//! the raw length the block header declares (itself at most
//! [`MAX_BLOCK_PAYLOAD`](crate::format::MAX_BLOCK_PAYLOAD)). A block that
//! decompresses to more than it declares, or to less, is damage; so a few
//! KiB that claim to hold 256 MiB cost a few KiB to refuse. What a crafted
//! block can cost is one record (at most the block's raw length, as the
//! writer allows) and a zstd window of at most 128 MiB.

use std::io::{BufReader, Cursor, Read};

use bytes::{Buf, Bytes};
use reprise_model::Exchange;

use crate::error::{Damage, DamageKind};
use crate::format::{BlockHeader, Codec};

/// The largest zstd window a reader accepts: 128 MiB, the largest any
/// `--compression` level writes.
const MAX_WINDOW_LOG: u32 = 27;
/// Bytes read from the zstd stream at a time.
const STREAM_BUFFER: usize = 64 << 10;
/// A record's buffer holds at most this much until the stream has given
/// as many bytes: a length prefix alone reserves no more.
const FIRST_RESERVE: u64 = 1 << 20;

/// The records of one block, decoded one at a time.
pub(crate) struct BlockRecords {
    header: BlockHeader,
    bytes: RecordBytes,
    left: u32,
}

/// Where the records' bytes come from.
enum RecordBytes {
    /// Stored as they are.
    Plain(Bytes),
    /// Streamed out of the block's zstd frame.
    Zstd(Box<ZstdRecords>),
    /// The stream could not start: the block is this damage.
    Failed(String),
}

struct ZstdRecords {
    stream: BufReader<zstd::stream::read::Decoder<'static, Cursor<Bytes>>>,
    /// Raw bytes the header declares that have not been read yet.
    left: u64,
}

impl BlockRecords {
    /// The records of a verified block, from its stored payload.
    pub(crate) fn new(header: BlockHeader, payload: Bytes) -> Self {
        let bytes = match header.codec {
            Codec::None => RecordBytes::Plain(payload),
            Codec::Zstd => match ZstdRecords::new(&header, payload) {
                Ok(stream) => RecordBytes::Zstd(Box::new(stream)),
                Err(why) => RecordBytes::Failed(why),
            },
        };
        BlockRecords {
            header,
            bytes,
            left: header.count,
        }
    }

    /// The next exchange; damage when the rest of the block does not
    /// decode (the block then ends); `None` when done.
    pub(crate) fn next(&mut self) -> Option<Result<Exchange, Damage>> {
        if let RecordBytes::Failed(why) = &mut self.bytes {
            let why = std::mem::take(why);
            return Some(Err(self.give_up(why)));
        }
        if self.left == 0 {
            let end = match &mut self.bytes {
                RecordBytes::Plain(bytes) if bytes.has_remaining() => {
                    Err("bytes left after the last record".to_string())
                }
                RecordBytes::Plain(_) | RecordBytes::Failed(_) => Ok(()),
                RecordBytes::Zstd(stream) => stream.finish(self.header.raw_len),
            };
            return match end {
                Ok(()) => None,
                Err(why) => Some(Err(self.give_up(why))),
            };
        }
        let header = self.header;
        let record = match &mut self.bytes {
            RecordBytes::Plain(bytes) => plain_record(bytes),
            RecordBytes::Zstd(stream) => stream.record(header.raw_len),
            RecordBytes::Failed(_) => Err(String::new()),
        };
        let decoded = record.and_then(|record| {
            let decoded = if header.only_known_fields() {
                reprise_model::codec::decode_known(record)
            } else {
                reprise_model::codec::decode_bytes(record)
            };
            decoded.map_err(|e| e.to_string())
        });
        Some(match decoded {
            Ok(exchange) => {
                self.left -= 1;
                Ok(exchange)
            }
            Err(why) => Err(self.give_up(why)),
        })
    }

    fn give_up(&mut self, why: String) -> Damage {
        self.left = 0;
        self.bytes = RecordBytes::Plain(Bytes::new());
        Damage {
            first_block: self.header.seq,
            last_block: self.header.seq,
            to_end: false,
            offset: self.header.offset,
            len: self.header.end() - self.header.offset,
            kind: DamageKind::BadPayload(why),
        }
    }
}

/// The next length-prefixed record of a stored payload.
fn plain_record(bytes: &mut Bytes) -> Result<Bytes, String> {
    prost::encoding::decode_varint(bytes)
        .ok()
        .and_then(|len| usize::try_from(len).ok())
        .filter(|len| *len <= bytes.remaining())
        .map(|len| bytes.split_to(len))
        .ok_or_else(|| "record length runs past the block".to_string())
}

impl ZstdRecords {
    fn new(header: &BlockHeader, payload: Bytes) -> Result<Self, String> {
        let mut decoder = zstd::stream::read::Decoder::with_buffer(Cursor::new(payload))
            .map_err(|e| format!("zstd: {e}"))?;
        // The frame's window (what the decoder allocates) may not be
        // larger than the block says it holds, nor than the largest window
        // the writer makes (2^27, at `--compression` 22).
        let window_log = (u32::BITS - header.raw_len.saturating_sub(1).leading_zeros())
            .clamp(10, MAX_WINDOW_LOG);
        decoder
            .window_log_max(window_log)
            .map_err(|e| format!("zstd: {e}"))?;
        Ok(ZstdRecords {
            stream: BufReader::with_capacity(STREAM_BUFFER, decoder),
            left: u64::from(header.raw_len),
        })
    }

    /// What a stream that ends before the declared length says.
    fn short(&self, raw_len: u32) -> String {
        format!(
            "{} bytes once decompressed, header says {raw_len}",
            u64::from(raw_len) - self.left
        )
    }

    fn error(&self, raw_len: u32, error: std::io::Error) -> String {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            self.short(raw_len)
        } else {
            format!("zstd: {error}")
        }
    }

    /// The next length-prefixed record.
    fn record(&mut self, raw_len: u32) -> Result<Bytes, String> {
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            if self.left == 0 || shift > 63 {
                return Err("record length runs past the block".into());
            }
            let mut byte = [0u8];
            self.stream
                .read_exact(&mut byte)
                .map_err(|e| self.error(raw_len, e))?;
            self.left -= 1;
            len |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if len > self.left {
            return Err("record length runs past the block".into());
        }
        // The first MiB as it comes; once the stream has shown it holds
        // that much, the rest in one reservation of the declared length
        // (pages are only resident once written), so that a large record
        // costs its size, not the copies of a growing buffer.
        let first = len.min(FIRST_RESERVE);
        let mut record = Vec::with_capacity(first as usize);
        let mut got = (&mut self.stream)
            .take(first)
            .read_to_end(&mut record)
            .map_err(|e| self.error(raw_len, e))? as u64;
        self.left -= got;
        if got == first && len > first {
            record.reserve_exact((len - first) as usize);
            let rest = (&mut self.stream)
                .take(len - first)
                .read_to_end(&mut record)
                .map_err(|e| self.error(raw_len, e))? as u64;
            self.left -= rest;
            got += rest;
        }
        if got < len {
            return Err(self.short(raw_len));
        }
        Ok(Bytes::from(record))
    }

    /// After the last record: the stream must end exactly at the declared
    /// length. One byte past it is read, no more.
    fn finish(&mut self, raw_len: u32) -> Result<(), String> {
        let mut byte = [0u8];
        let extra = loop {
            match self.stream.read(&mut byte) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(raw_len, e)),
            }
        };
        match (self.left, extra) {
            (0, 0) => Ok(()),
            (0, _) => Err(format!(
                "decompresses to more than the {raw_len} bytes its header declares"
            )),
            (_, 0) => Err(self.short(raw_len)),
            (_, _) => Err("bytes left after the last record".into()),
        }
    }
}
