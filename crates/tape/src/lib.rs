//! The reprise tape: an append-only file of exchanges.
//!
//! A tape is a file header followed by blocks. Each block holds a batch of
//! records (length-delimited `reprise.v1.Exchange` messages), compressed
//! with zstd, with a header giving its index, offset, sizes, record count,
//! time range and crc32c checksums of header and payload. So:
//!
//! - writing is append-only and cheap: [`TapeWriter`] batches records on its
//!   own thread and seals a block on a size or an age bound;
//! - a reader can skip to a time by reading block headers only;
//! - a reader can follow a tape still being written ([`Follow`]);
//! - damage (a torn tail after a crash, flipped bytes) costs only the blocks
//!   it touches: [`TapeReader`] reports exactly what it skipped and reads on.
//!
//! The byte layout is in `docs/tape-format.md` and in [`mod@format`].

mod error;
pub mod format;
mod reader;
mod records;
mod rotate;
mod walker;
mod writer;

pub use error::{Damage, DamageKind, TapeError};
pub use reader::{Follow, ReadStats, ReaderOptions, TapeReader, block_index};
pub use rotate::{RotatingTape, Rotation, TapeFilter, TapeSeries, tapes_in};
pub use writer::{
    AppendReport, PACKED_BLOCK_BYTES, TapePacker, TapeWriter, WriterOptions, WriterStats,
    zstd_levels,
};
