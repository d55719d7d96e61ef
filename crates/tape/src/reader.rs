//! The tape reader: exchanges in tape order, with damage reported and
//! skipped. Blocks are read, verified and decompressed one step ahead on a
//! read-ahead thread while the caller decodes the records of the last one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::time::Duration;

use reprise_model::{Exchange, StoreError};

use crate::error::{Damage, TapeError};
use crate::format::{BlockHeader, FILE_HEADER_LEN, FileHeader};
use crate::records::BlockRecords;
use crate::walker::{WalkItem, Walker};

/// Following a tape that is still being written.
#[derive(Debug, Clone)]
pub struct Follow {
    /// How often to look for new blocks at the end of the tape.
    pub poll: Duration,
    /// Set to stop following: the reader then ends once it finds no more
    /// at the end of the tape (what was written before is read).
    pub stop: Arc<AtomicBool>,
    /// Counts the looks at the end that found nothing new, each bumped
    /// just before the sleep that follows it: a test's way to tell that
    /// the follower has looked, without timing it.
    #[doc(hidden)]
    pub idle_looks: Arc<AtomicU64>,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            poll: Duration::from_millis(50),
            stop: Arc::new(AtomicBool::new(false)),
            idle_looks: Arc::new(AtomicU64::new(0)),
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

/// What the reader gets next: an item of the walk, or the records of a
/// block already decoded by the read-ahead thread.
enum ReaderItem {
    /// An item of the walk, as it found it.
    Walked(Result<WalkItem, TapeError>),
    /// A block's records, decoded by the read-ahead thread.
    Decoded(Vec<Result<Exchange, Damage>>),
}

/// Where the reader gets its blocks: the walk itself, or a read-ahead
/// thread running it.
enum Blocks {
    Inline(Box<Walker>),
    ReadAhead {
        /// `None` once the reader is being dropped.
        items: Option<Receiver<ReaderItem>>,
        /// Joined when the reader is dropped: no thread outlives its reader.
        thread: Option<std::thread::JoinHandle<()>>,
        abandoned: Arc<AtomicBool>,
    },
}

impl Blocks {
    fn next(&mut self) -> ReaderItem {
        match self {
            Blocks::Inline(walker) => ReaderItem::Walked(walker.next_item()),
            // The thread ends after sending End or an error; a closed
            // channel means the same.
            Blocks::ReadAhead { items, .. } => items
                .as_ref()
                .and_then(|items| items.recv().ok())
                .unwrap_or(ReaderItem::Walked(Ok(WalkItem::End))),
        }
    }
}

/// The block being read.
enum Current {
    None,
    Raw(BlockRecords),
    Decoded(std::vec::IntoIter<Result<Exchange, Damage>>),
}

/// Reads exchanges from a tape file in order. An iterator of
/// `Result<Exchange, StoreError>`, so it is a [`reprise_model::Source`];
/// [`TapeReader::next_exchange`] gives the same with [`TapeError`].
pub struct TapeReader {
    path: PathBuf,
    header: Option<FileHeader>,
    blocks: Blocks,
    current: Current,
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
        let opened = Walker::open(path, &options, true)?;
        Ok(Self::start(path, opened, options))
    }

    /// Reads a tape from a file already open; `path` names it in
    /// messages. It is read at offsets (never through the file's own
    /// position), so it must be a regular file: a pipe's content is
    /// copied to a file first (`reprise` does so for its inputs).
    pub fn open_file(
        file: std::fs::File,
        path: impl AsRef<Path>,
        options: ReaderOptions,
    ) -> Result<TapeReader, TapeError> {
        let path = path.as_ref();
        let opened = Walker::from_file(file, path, &options, true)?;
        Ok(Self::start(path, opened, options))
    }

    fn start(
        path: &Path,
        (walker, header, header_damage): (Walker, Option<FileHeader>, Option<Damage>),
        options: ReaderOptions,
    ) -> TapeReader {
        let blocks = if options.read_ahead {
            spawn_read_ahead(walker)
        } else {
            Blocks::Inline(Box::new(walker))
        };
        let mut reader = TapeReader {
            path: path.to_path_buf(),
            header,
            blocks,
            current: Current::None,
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
        reader
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
            let record = match &mut self.current {
                Current::None => None,
                Current::Raw(records) => records.next(),
                Current::Decoded(records) => records.next(),
            };
            match record {
                Some(Ok(exchange)) if self.in_window(&exchange) => {
                    self.stats.exchanges += 1;
                    return Some(Ok(exchange));
                }
                Some(Ok(_)) => continue,
                Some(Err(damage)) => {
                    self.record_damage(damage);
                    continue;
                }
                None => self.current = Current::None,
            }
            if self.finished {
                return None;
            }
            match self.blocks.next() {
                ReaderItem::Decoded(records) => {
                    self.stats.blocks += 1;
                    self.current = Current::Decoded(records.into_iter());
                }
                ReaderItem::Walked(Ok(WalkItem::Block(header, Some(records)))) => {
                    self.stats.blocks += 1;
                    self.current = Current::Raw(BlockRecords::new(header, records));
                }
                ReaderItem::Walked(Ok(WalkItem::Block(_, None))) => self.stats.blocks_skipped += 1,
                ReaderItem::Walked(Ok(WalkItem::Damage(damage))) => self.record_damage(damage),
                ReaderItem::Walked(Ok(WalkItem::End)) => self.finished = true,
                ReaderItem::Walked(Err(error)) => {
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
}

/// Runs the walk on its own thread, two items ahead of the reader. When
/// the reader is behind (the channel is full), the thread decodes the
/// block's records itself instead of waiting, so both cores stay busy
/// whichever side is slower.
fn spawn_read_ahead(mut walker: Walker) -> Blocks {
    let abandoned = Arc::clone(&walker.abandoned);
    let path = walker.path.clone();
    let (tx, rx) = sync_channel(2);
    let spawned = std::thread::Builder::new()
        .name("reprise-tape-read-ahead".into())
        .spawn(move || {
            loop {
                let step = walker.next_item();
                let last = matches!(step, Ok(WalkItem::End) | Err(_));
                let sent = match tx.try_send(ReaderItem::Walked(step)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(ReaderItem::Walked(Ok(WalkItem::Block(
                        header,
                        Some(bytes),
                    ))))) => {
                        let mut records = BlockRecords::new(header, bytes);
                        let decoded: Vec<_> = std::iter::from_fn(|| records.next()).collect();
                        tx.send(ReaderItem::Decoded(decoded)).is_ok()
                    }
                    Err(TrySendError::Full(item)) => tx.send(item).is_ok(),
                    Err(TrySendError::Disconnected(_)) => false,
                };
                if !sent || last {
                    return;
                }
            }
        });
    match spawned {
        Ok(thread) => Blocks::ReadAhead {
            items: Some(rx),
            thread: Some(thread),
            abandoned,
        },
        // No thread to be had: report it as the tape's error rather than
        // silently reading nothing.
        Err(e) => {
            let (tx, rx) = sync_channel(1);
            let _ = tx.send(ReaderItem::Walked(Err(TapeError::Io {
                path,
                action: "cannot start the read-ahead thread",
                source: e,
            })));
            Blocks::ReadAhead {
                items: Some(rx),
                thread: None,
                abandoned,
            }
        }
    }
}

impl Drop for TapeReader {
    fn drop(&mut self) {
        if let Blocks::ReadAhead {
            abandoned,
            items,
            thread,
        } = &mut self.blocks
        {
            // Stop a following walk, unblock a send into a full channel,
            // then wait for the thread: it ends within one block or poll.
            abandoned.store(true, Ordering::Relaxed);
            drop(items.take());
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
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
        match walker.next_item()? {
            WalkItem::Block(header, _) => {
                end = header.end();
                next_seq = header.seq + 1;
                damage_after_end = None;
            }
            WalkItem::Damage(damage) => {
                damage_after_end.get_or_insert(damage);
            }
            WalkItem::End => break,
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
        match walker.next_item()? {
            WalkItem::Block(header, _) => blocks.push(header),
            WalkItem::Damage(d) => damage.push(d),
            WalkItem::End => break,
        }
    }
    Ok((blocks, damage))
}
