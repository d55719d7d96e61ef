//! The tape reader: exchanges in tape order, with damage reported and
//! skipped. Blocks are read, verified and decompressed one step ahead on a
//! read-ahead thread while the caller decodes the records of the last one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use bytes::{Buf, Bytes};
use reprise_model::{Exchange, StoreError};

use crate::error::{Damage, DamageKind, TapeError};
use crate::format::{BlockHeader, FILE_HEADER_LEN, FileHeader};
use crate::walker::{Step, Walker};

/// Following a tape that is still being written.
#[derive(Debug, Clone)]
pub struct Follow {
    /// How often to look for new blocks at the end of the tape.
    pub poll: Duration,
    /// Set to stop following: the reader then ends at the next poll.
    pub stop: Arc<AtomicBool>,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            poll: Duration::from_millis(50),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Only exchanges recorded at or after this time (ns since the epoch).
    /// Blocks entirely before it are skipped by their headers.
    pub since_ns: Option<u64>,
    /// Only exchanges recorded before this time.
    pub until_ns: Option<u64>,
    /// Wait for more at the end instead of stopping.
    pub follow: Option<Follow>,
    /// Read and decompress the next block on a second thread while the
    /// records of the current one are decoded (default on).
    pub read_ahead: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            since_ns: None,
            until_ns: None,
            follow: None,
            read_ahead: true,
        }
    }
}

/// Counters of a read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Blocks read and verified.
    pub blocks: u64,
    /// Blocks skipped by the time window without reading their payload.
    pub blocks_skipped: u64,
    /// Exchanges returned.
    pub exchanges: u64,
    /// Bytes skipped as damaged.
    pub damaged_bytes: u64,
}

/// Where the reader gets its blocks: the walk itself, or a read-ahead
/// thread running it.
enum Blocks {
    Inline(Box<Walker>),
    Ahead {
        steps: Receiver<Result<Step, TapeError>>,
        abandoned: Arc<AtomicBool>,
    },
}

impl Blocks {
    fn next(&mut self) -> Result<Step, TapeError> {
        match self {
            Blocks::Inline(walker) => walker.next_step(),
            // The thread ends after sending End or an error; a closed
            // channel means the same.
            Blocks::Ahead { steps, .. } => steps.recv().unwrap_or(Ok(Step::End)),
        }
    }
}

/// Reads exchanges from a tape file in order. An iterator of
/// `Result<Exchange, StoreError>`, so it is a [`reprise_model::Source`];
/// [`TapeReader::next_exchange`] gives the same with [`TapeError`].
pub struct TapeReader {
    path: PathBuf,
    header: Option<FileHeader>,
    blocks: Blocks,
    block: Bytes,
    block_left: u32,
    block_header: Option<BlockHeader>,
    pending: VecDeque<Damage>,
    damage: Vec<Damage>,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    finished: bool,
    stats: ReadStats,
}

impl TapeReader {
    /// Opens a tape to read everything in it.
    pub fn open(path: impl AsRef<Path>) -> Result<TapeReader, TapeError> {
        Self::open_with(path, ReaderOptions::default())
    }

    /// Opens a tape with a time window and/or follow mode.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: ReaderOptions,
    ) -> Result<TapeReader, TapeError> {
        let path = path.as_ref();
        let (walker, header, header_damage) = Walker::open(path, &options, true)?;
        let blocks = if options.read_ahead {
            spawn_read_ahead(walker)
        } else {
            Blocks::Inline(Box::new(walker))
        };
        let mut reader = TapeReader {
            path: path.to_path_buf(),
            header,
            blocks,
            block: Bytes::new(),
            block_left: 0,
            block_header: None,
            pending: VecDeque::new(),
            damage: Vec::new(),
            since_ns: options.since_ns,
            until_ns: options.until_ns,
            finished: false,
            stats: ReadStats::default(),
        };
        if let Some(damage) = header_damage {
            reader.record_damage(damage);
        }
        Ok(reader)
    }

    /// The file header, unless it was damaged.
    pub fn header(&self) -> Option<&FileHeader> {
        self.header.as_ref()
    }

    /// The tape's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything skipped so far.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Counters so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The next exchange, a report of skipped damage (reading goes on after
    /// it), a fatal error, or `None` at the end.
    pub fn next_exchange(&mut self) -> Option<Result<Exchange, TapeError>> {
        loop {
            if let Some(damage) = self.pending.pop_front() {
                return Some(Err(TapeError::Damaged {
                    path: self.path.clone(),
                    damage,
                }));
            }
            if self.block_left > 0 {
                match self.next_record() {
                    Some(exchange) if self.in_window(&exchange) => {
                        self.stats.exchanges += 1;
                        return Some(Ok(exchange));
                    }
                    _ => continue,
                }
            }
            if self.finished {
                return None;
            }
            match self.blocks.next() {
                Ok(Step::Block(header, Some(records))) => {
                    self.stats.blocks += 1;
                    self.block = records;
                    self.block_left = header.count;
                    self.block_header = Some(header);
                }
                Ok(Step::Block(_, None)) => self.stats.blocks_skipped += 1,
                Ok(Step::Damage(damage)) => self.record_damage(damage),
                Ok(Step::End) => self.finished = true,
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            }
        }
    }

    fn record_damage(&mut self, damage: Damage) {
        self.stats.damaged_bytes += damage.len;
        self.damage.push(damage.clone());
        self.pending.push_back(damage);
    }

    fn in_window(&self, exchange: &Exchange) -> bool {
        let t = exchange.recorded_at_ns;
        !(self.since_ns.is_some_and(|s| t < s) || self.until_ns.is_some_and(|u| t >= u))
    }

    /// Decodes the next record of the current block. A record that does not
    /// decode ends the block with a damage report.
    fn next_record(&mut self) -> Option<Exchange> {
        let header = self.block_header?;
        let decoded = prost::encoding::decode_varint(&mut self.block)
            .ok()
            .and_then(|len| usize::try_from(len).ok())
            .filter(|len| *len <= self.block.remaining())
            .ok_or_else(|| "record length runs past the block".to_string())
            .and_then(|len| {
                let record = self.block.split_to(len);
                let decoded = if header.only_known_fields() {
                    reprise_model::codec::decode_known(record)
                } else {
                    reprise_model::codec::decode_bytes(record)
                };
                decoded.map_err(|e| e.to_string())
            });
        match decoded {
            Ok(exchange) => {
                self.block_left -= 1;
                if self.block_left == 0 && self.block.has_remaining() {
                    self.block_damage(header, "bytes left after the last record".into());
                }
                Some(exchange)
            }
            Err(why) => {
                self.block_damage(header, why);
                None
            }
        }
    }

    fn block_damage(&mut self, header: BlockHeader, why: String) {
        self.block_left = 0;
        self.block = Bytes::new();
        self.record_damage(Damage {
            first_block: header.seq,
            last_block: header.seq,
            to_end: false,
            offset: header.offset,
            len: header.end() - header.offset,
            kind: DamageKind::BadPayload(why),
        });
    }
}

fn spawn_read_ahead(mut walker: Walker) -> Blocks {
    let abandoned = Arc::clone(&walker.abandoned);
    // Two blocks in flight: one being decoded, one ready.
    let (tx, rx) = sync_channel(2);
    let spawned = std::thread::Builder::new()
        .name("reprise-tape-read-ahead".into())
        .spawn(move || {
            loop {
                let step = walker.next_step();
                let last = matches!(step, Ok(Step::End) | Err(_));
                if tx.send(step).is_err() || last {
                    return;
                }
            }
        });
    match spawned {
        Ok(_) => Blocks::Ahead {
            steps: rx,
            abandoned,
        },
        // No thread to be had: report it as the tape's error rather than
        // silently reading nothing.
        Err(e) => {
            let (tx, rx) = sync_channel(1);
            let _ = tx.send(Err(TapeError::Io {
                path: PathBuf::new(),
                action: "cannot start the read-ahead thread",
                source: e,
            }));
            Blocks::Ahead {
                steps: rx,
                abandoned,
            }
        }
    }
}

impl Drop for TapeReader {
    fn drop(&mut self) {
        if let Blocks::Ahead { abandoned, .. } = &self.blocks {
            abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Iterator for TapeReader {
    type Item = Result<Exchange, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_exchange().map(|r| r.map_err(StoreError::from))
    }
}

/// Where a writer appending to an existing tape starts.
pub(crate) struct AppendPoint {
    pub end: u64,
    pub next_seq: u64,
    pub cut: Option<Damage>,
}

/// Walks a tape's blocks (verifying checksums, not decompressing) to find
/// the end of the last valid block. Damage after it is the torn tail.
pub(crate) fn append_point(path: &Path) -> Result<AppendPoint, TapeError> {
    let options = ReaderOptions {
        read_ahead: false,
        ..ReaderOptions::default()
    };
    let (mut walker, _, _) = Walker::open(path, &options, false)?;
    let mut end = FILE_HEADER_LEN as u64;
    let mut next_seq = 0;
    let mut damage_after_end: Option<Damage> = None;
    loop {
        match walker.next_step()? {
            Step::Block(header, _) => {
                end = header.end();
                next_seq = header.seq + 1;
                damage_after_end = None;
            }
            Step::Damage(damage) => {
                damage_after_end.get_or_insert(damage);
            }
            Step::End => break,
        }
    }
    let cut = damage_after_end.map(|mut d| {
        d.len = walker.offset.saturating_sub(d.offset);
        d
    });
    Ok(AppendPoint { end, next_seq, cut })
}

/// Every valid block of a tape, and the damage between them (checksums are
/// verified; payloads are not decompressed).
pub fn block_index(path: impl AsRef<Path>) -> Result<(Vec<BlockHeader>, Vec<Damage>), TapeError> {
    let options = ReaderOptions {
        read_ahead: false,
        ..ReaderOptions::default()
    };
    let (mut walker, _, header_damage) = Walker::open(path.as_ref(), &options, false)?;
    let mut blocks = Vec::new();
    let mut damage: Vec<Damage> = header_damage.into_iter().collect();
    loop {
        match walker.next_step()? {
            Step::Block(header, _) => blocks.push(header),
            Step::Damage(d) => damage.push(d),
            Step::End => break,
        }
    }
    Ok((blocks, damage))
}
