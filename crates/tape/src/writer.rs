//! The tape writer: batches records on its own thread, seals a block on a
//! size or an age bound, and makes everything durable on `sync()`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reprise_model::drain::{Drain, Next};
use reprise_model::pack::{Packed, PackedCodec, PackedError, Packer};
use reprise_model::{Exchange, Sink, SinkTally, StoreError};

use crate::error::{Damage, TapeError};
use crate::format::{BlockHeader, Codec, FORMAT_VERSION, FileHeader, MAX_BLOCK_PAYLOAD};
use crate::reader::append_point;

/// The longest the writer thread sleeps with nothing queued: how long a
/// `sync` or `close` may wait to be noticed on an idle tape.
const IDLE_NAP: Duration = Duration::from_millis(20);

/// The zstd levels a writer accepts (negative ones trade size for speed).
pub fn zstd_levels() -> std::ops::RangeInclusive<i32> {
    zstd::compression_level_range()
}

/// How the writer batches and compresses.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Seal a block once its uncompressed records reach this many bytes.
    pub block_bytes: usize,
    /// Seal a block once its oldest record has waited this long, so that
    /// followers see records promptly and a crash loses little.
    pub block_age: Duration,
    /// zstd level (1 is fast and still compresses HTTP traffic well;
    /// negative levels are faster still); `None` stores blocks as they
    /// are (codec 0).
    pub zstd_level: Option<i32>,
    /// Records queued between `append` and the writer thread; `append`
    /// waits when the queue is full.
    pub queue_records: usize,
    /// Compress and write on the caller's thread, with no writer thread:
    /// for a caller that is itself a thread of its own writing records
    /// (the recorder), which saves a hand-off and a thread waking per
    /// record. Blocks are then sealed on age when the caller calls
    /// [`Sink::tick`] (or writes, syncs or closes).
    pub inline: bool,
    /// fsync on [`TapeWriter::sync`] and when finishing (default on).
    /// Off only for a scratch tape that dies with its process, such as
    /// the parts a comparison spills to disk: nothing is lost to a
    /// crash that would not be lost anyway.
    pub durable: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            block_bytes: 1 << 20,
            block_age: Duration::from_millis(100),
            zstd_level: Some(1),
            queue_records: 4096,
            inline: false,
            durable: true,
        }
    }
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended to sealed blocks.
    pub records: u64,
    /// Blocks sealed.
    pub blocks: u64,
    /// Bytes written to the file (headers included).
    pub file_bytes: u64,
    /// Uncompressed record bytes in sealed blocks.
    pub raw_bytes: u64,
}

#[derive(Default)]
struct SharedStats {
    records: AtomicU64,
    blocks: AtomicU64,
    file_bytes: AtomicU64,
    raw_bytes: AtomicU64,
    /// Records taken (queued, or added to the open block).
    accepted: AtomicU64,
    /// Records taken, then lost with a block that could not be written.
    unwritten: AtomicU64,
    /// Records refused when handed over.
    refused: AtomicU64,
    /// The first block that could not be written, said.
    first_unwritten: Mutex<Option<String>>,
}

impl SharedStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The writer is closed for good: whatever it took and did not write
    /// is lost.
    fn settle(&self) {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let written = self.records.load(Ordering::Relaxed);
        self.unwritten
            .store(accepted.saturating_sub(written), Ordering::Relaxed);
    }
}

/// What the writer thread answers a `sync` or `close` with.
type Reply = SyncSender<Result<(), TapeError>>;

enum Command {
    Record {
        bytes: Vec<u8>,
        recorded_at_ns: u64,
        carries_unknown: bool,
    },
    /// A block packed by a producer's thread ([`TapePacker`]).
    Packed(Packed),
    Sync(Reply),
    Close(Reply),
}

/// Writes exchanges to a tape file. Implements [`Sink`].
///
/// `append` encodes the exchange on the caller's thread and queues it; a
/// writer thread owns the file, compresses and writes sealed blocks.
/// Sealed blocks are written to the OS at once (a killed process loses only
/// the unsealed block); [`TapeWriter::sync`] also fsyncs.
///
/// A block that cannot be written (a full disk) is cut off again, so the
/// tape always ends at a sealed block, and its records are counted lost
/// ([`Sink::tally`]); the writer goes on, and the next block is written
/// after the last sealed one once there is room. Such a failure is
/// returned as [`TapeError::Unwritten`] where it happens (inline), and
/// [`TapeWriter::finish`] ends with [`TapeError::Lost`] if any record was
/// lost that way. Any other write failure closes the writer.
pub struct TapeWriter {
    path: PathBuf,
    tx: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    /// The writer's state, when it runs on the caller's thread
    /// ([`WriterOptions::inline`]); gone once closed or failed.
    inline: Option<Box<WriterThread>>,
    failure: Arc<Mutex<Option<String>>>,
    stats: Arc<SharedStats>,
    /// What the writer was made with (for [`Sink::packer`]).
    options: WriterOptions,
}

/// What opening an existing tape for appending found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// Blocks already in the tape.
    pub blocks: u64,
    /// The torn tail cut off, if there was one.
    pub cut: Option<Damage>,
}

impl TapeWriter {
    /// Creates a new tape (mode 0600). Fails if `path` exists.
    pub fn create(path: impl AsRef<Path>, options: WriterOptions) -> Result<TapeWriter, TapeError> {
        let path = path.as_ref();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists if path.is_dir() => {
                    TapeError::IsDirectory(path.to_path_buf())
                }
                std::io::ErrorKind::AlreadyExists => TapeError::Exists(path.to_path_buf()),
                _ => TapeError::io(path, "cannot create", e),
            })?;
        let header = FileHeader {
            format_version: FORMAT_VERSION,
            schema_version: reprise_model::SCHEMA_VERSION,
            created_at_ns: reprise_model::time::now_ns(),
        };
        let bytes = header.encode();
        file.write_all(&bytes)
            .map_err(|e| TapeError::io(path, "cannot write", e))?;
        Ok(Self::start(path, file, bytes.len() as u64, 0, options))
    }

    /// Opens a tape for appending, creating it if it does not exist. A torn
    /// tail left by a crash is cut off (and reported); blocks before it are
    /// never touched.
    pub fn open(
        path: impl AsRef<Path>,
        options: WriterOptions,
    ) -> Result<(TapeWriter, AppendReport), TapeError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(TapeError::IsDirectory(path.to_path_buf()));
        }
        if !path.exists() {
            return Ok((Self::create(path, options)?, AppendReport::default()));
        }
        let point = append_point(path)?;
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| TapeError::io(path, "cannot open", e))?;
        if point.cut.is_some() {
            file.set_len(point.end)
                .map_err(|e| TapeError::io(path, "cannot cut the torn tail", e))?;
            file.sync_all()
                .map_err(|e| TapeError::io(path, "cannot sync", e))?;
        }
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(point.end))
            .map_err(|e| TapeError::io(path, "cannot seek", e))?;
        let writer = Self::start(path, file, point.end, point.next_seq, options);
        Ok((
            writer,
            AppendReport {
                blocks: point.next_seq,
                cut: point.cut,
            },
        ))
    }

    fn start(path: &Path, file: File, offset: u64, seq: u64, options: WriterOptions) -> TapeWriter {
        let failure = Arc::new(Mutex::new(None));
        let stats = Arc::new(SharedStats::default());
        let inline = options.inline;
        let kept = options.clone();
        let mut state = WriterThread {
            path: path.to_path_buf(),
            file,
            offset,
            seq,
            block: OpenBlock::new(options.block_bytes + 4096, options.zstd_level),
            options,
            stats: Arc::clone(&stats),
        };
        if inline {
            return TapeWriter {
                path: path.to_path_buf(),
                tx: None,
                thread: None,
                inline: Some(Box::new(state)),
                failure,
                stats,
                options: kept,
            };
        }
        let (tx, rx) = mpsc::sync_channel(state.options.queue_records.max(1));
        let thread_failure = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("reprise-tape-writer".into())
            .spawn(move || {
                if let Err(message) = state.run(rx) {
                    *thread_failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(message);
                }
            });
        match thread {
            Ok(thread) => TapeWriter {
                path: path.to_path_buf(),
                tx: Some(tx),
                thread: Some(thread),
                inline: None,
                failure,
                stats,
                options: kept,
            },
            Err(e) => {
                *failure.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("cannot start writer thread: {e}"));
                TapeWriter {
                    path: path.to_path_buf(),
                    tx: None,
                    thread: None,
                    inline: None,
                    failure,
                    stats,
                    options: kept,
                }
            }
        }
    }

    /// The tape's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What became of every record handed over: written, lost with a
    /// block that could not be written, refused. Once finished, every
    /// record taken is written or lost.
    pub fn tally(&self) -> SinkTally {
        SinkTally {
            written: self.stats.records.load(Ordering::Relaxed),
            unwritten: self.stats.unwritten.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
        }
    }

    /// Counts `records` refused, and gives `error` back.
    fn refuse(&self, records: u64, error: TapeError) -> TapeError {
        SharedStats::add(&self.stats.refused, records);
        error
    }

    fn accept(&self, records: u64) {
        SharedStats::add(&self.stats.accepted, records);
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            records: self.stats.records.load(Ordering::Relaxed),
            blocks: self.stats.blocks.load(Ordering::Relaxed),
            file_bytes: self.stats.file_bytes.load(Ordering::Relaxed),
            raw_bytes: self.stats.raw_bytes.load(Ordering::Relaxed),
        }
    }

    fn closed(&self) -> TapeError {
        let reason = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TapeError::Closed {
            path: self.path.clone(),
            reason,
        }
    }

    /// Queues one exchange. Waits while the queue is full.
    pub fn write(&mut self, exchange: &Exchange) -> Result<(), TapeError> {
        let len = reprise_model::encoded_len(exchange);
        self.check_len(len).map_err(|e| self.refuse(1, e))?;
        let mut bytes = Vec::with_capacity(len + 10);
        prost::encoding::encode_varint(len as u64, &mut bytes);
        reprise_model::encode(exchange, &mut bytes);
        self.queue(
            bytes,
            exchange.recorded_at_ns,
            exchange.unknown_fields.is_some(),
        )
    }

    /// Queues one exchange given as its encoding (`reprise_model::encode`'s
    /// bytes, holding no fields of a newer schema). Waits while the queue
    /// is full.
    pub fn write_encoded(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<(), TapeError> {
        self.check_len(record.len())
            .map_err(|e| self.refuse(1, e))?;
        if self.inline.is_some() {
            self.accept(1);
        }
        if let Some(state) = self.inline.as_mut() {
            let mut prefix = [0; 10];
            let width = varint(record.len(), &mut prefix);
            let added = state.add(&[&prefix[..width], record], recorded_at_ns, false);
            return self.inline_result(added);
        }
        let mut bytes = Vec::with_capacity(record.len() + 10);
        prost::encoding::encode_varint(record.len() as u64, &mut bytes);
        bytes.extend_from_slice(record);
        self.queue(bytes, recorded_at_ns, false)
    }

    /// Writes a block packed by this tape's [`TapePacker`] (or any plain
    /// pack of records holding no fields of a newer schema), after the
    /// block being filled. A pack over a block's limits is refused, and
    /// the tape goes on.
    pub fn write_packed(&mut self, packed: Packed) -> Result<(), TapeError> {
        let len = packed.raw_len.max(packed.bytes.len());
        let count = u64::from(packed.count);
        if len > MAX_BLOCK_PAYLOAD as usize {
            let error = TapeError::PackTooLarge {
                path: self.path.clone(),
                len,
                max: MAX_BLOCK_PAYLOAD as usize,
            };
            return Err(self.refuse(count, error));
        }
        if self.inline.is_some() {
            self.accept(count);
        }
        if let Some(state) = self.inline.as_mut() {
            let written = state.put_packed(&packed);
            return self.inline_result(written);
        }
        let Some(tx) = self.tx.as_ref() else {
            return Err(self.refuse(count, self.closed()));
        };
        match tx.send(Command::Packed(packed)) {
            Ok(()) => {
                self.accept(count);
                Ok(())
            }
            Err(_) => Err(self.refuse(count, self.closed())),
        }
    }

    fn check_len(&self, len: usize) -> Result<(), TapeError> {
        if len > MAX_RECORD {
            return Err(TapeError::RecordTooLarge {
                path: self.path.clone(),
                len,
                max: MAX_BLOCK_PAYLOAD as usize,
            });
        }
        Ok(())
    }

    fn queue(
        &mut self,
        bytes: Vec<u8>,
        recorded_at_ns: u64,
        carries_unknown: bool,
    ) -> Result<(), TapeError> {
        if self.inline.is_some() {
            self.accept(1);
        }
        if let Some(state) = self.inline.as_mut() {
            let added = state.add(&[&bytes], recorded_at_ns, carries_unknown);
            return self.inline_result(added);
        }
        let Some(tx) = self.tx.as_ref() else {
            return Err(self.refuse(1, self.closed()));
        };
        let record = Command::Record {
            bytes,
            recorded_at_ns,
            carries_unknown,
        };
        match tx.send(record) {
            Ok(()) => {
                self.accept(1);
                Ok(())
            }
            Err(_) => Err(self.refuse(1, self.closed())),
        }
    }

    /// Seals the current block and fsyncs: everything written so far is
    /// durable when this returns (unless [`WriterOptions::durable`] is off).
    pub fn sync(&mut self) -> Result<(), TapeError> {
        if let Some(state) = self.inline.as_mut() {
            let synced = state.seal_and_sync();
            return self.inline_result(synced);
        }
        self.round_trip(Command::Sync)
    }

    /// Seals the current block if its oldest record has waited the
    /// block's age: what the writer thread does by itself, for an inline
    /// writer ([`WriterOptions::inline`]).
    pub fn tick(&mut self) -> Result<(), TapeError> {
        let Some(state) = self.inline.as_mut() else {
            return Ok(());
        };
        if state.block.due(Instant::now(), state.options.block_age) {
            let sealed = state.seal();
            return self.inline_result(sealed);
        }
        Ok(())
    }

    /// An inline writer's outcome: a block that could not be written
    /// leaves it open (see [`TapeError::Unwritten`]); any other failure
    /// closes it, with its reason.
    fn inline_result(&mut self, result: Result<(), TapeError>) -> Result<(), TapeError> {
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.is_unwritten() => Err(error),
            Err(error) => {
                let reason = error.to_string();
                self.inline = None;
                self.stats.settle();
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
                Err(TapeError::Closed {
                    path: self.path.clone(),
                    reason: Some(reason),
                })
            }
        }
    }

    /// Seals, fsyncs (when [`WriterOptions::durable`]) and stops the
    /// writer thread. Ends with [`TapeError::Lost`] if some records could
    /// not be written (the tape holds the others, intact).
    pub fn finish(&mut self) -> Result<WriterStats, TapeError> {
        if self.inline.is_some() {
            let closed = self
                .inline
                .as_mut()
                .map_or(Ok(()), |state| state.seal_and_sync());
            self.inline_result(closed)
                .or_else(|e| if e.is_unwritten() { Ok(()) } else { Err(e) })?;
            self.inline = None;
        } else if self.tx.is_some() {
            let result = self.round_trip(Command::Close);
            self.tx = None;
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
            self.stats.settle();
            result.or_else(|e| if e.is_unwritten() { Ok(()) } else { Err(e) })?;
        }
        self.stats.settle();
        let lost = self.stats.unwritten.load(Ordering::Relaxed);
        if lost > 0 {
            let first = self
                .stats
                .first_unwritten
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "the writer stopped".into());
            return Err(TapeError::Lost {
                path: self.path.clone(),
                records: lost,
                first,
            });
        }
        Ok(self.stats())
    }

    fn round_trip(&mut self, make: fn(Reply) -> Command) -> Result<(), TapeError> {
        let tx = self.tx.as_ref().ok_or_else(|| self.closed())?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        tx.send(make(reply_tx)).map_err(|_| self.closed())?;
        match reply_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if error.is_unwritten() => Err(error),
            Ok(Err(error)) => Err(TapeError::Closed {
                path: self.path.clone(),
                reason: Some(error.to_string()),
            }),
            Err(_) => Err(self.closed()),
        }
    }
}

impl Drop for TapeWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Sink for TapeWriter {
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError> {
        self.write(&exchange).map_err(StoreError::from)
    }

    fn append_encoded(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<(), StoreError> {
        self.write_encoded(record, recorded_at_ns)
            .map_err(StoreError::from)
    }

    fn tick(&mut self) -> Result<(), StoreError> {
        TapeWriter::tick(self).map_err(StoreError::from)
    }

    fn packer(&self) -> Box<dyn Packer> {
        Box::new(TapePacker::new(&self.options))
    }

    fn append_packed(&mut self, packed: Packed) -> Result<(), PackedError> {
        self.write_packed(packed).map_err(|e| PackedError {
            stored: 0,
            error: StoreError::from(e),
        })
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        TapeWriter::sync(self).map_err(StoreError::from)
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.finish().map(|_| ()).map_err(StoreError::from)
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.stats().file_bytes)
    }

    fn tally(&self) -> Option<SinkTally> {
        Some(TapeWriter::tally(self))
    }
}

/// The block being filled: records, then sealed (compressed) at once.
struct OpenBlock {
    raw: Vec<u8>,
    /// What `raw` is made with.
    capacity: usize,
    count: u32,
    carries_unknown: bool,
    min_ts: u64,
    max_ts: u64,
    oldest: Option<Instant>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl OpenBlock {
    fn new(capacity: usize, zstd_level: Option<i32>) -> Self {
        OpenBlock {
            raw: Vec::with_capacity(capacity),
            capacity,
            count: 0,
            carries_unknown: false,
            min_ts: u64::MAX,
            max_ts: 0,
            oldest: None,
            compressor: zstd_level.and_then(|level| zstd::bulk::Compressor::new(level).ok()),
        }
    }

    /// Adds one record, given in pieces (its length prefix, its bytes).
    fn add(&mut self, record: &[&[u8]], recorded_at_ns: u64, carries_unknown: bool) {
        if self.raw.capacity() == 0 {
            self.raw.reserve(self.capacity);
        }
        for piece in record {
            self.raw.extend_from_slice(piece);
        }
        self.count += 1;
        self.carries_unknown |= carries_unknown;
        self.min_ts = self.min_ts.min(recorded_at_ns);
        self.max_ts = self.max_ts.max(recorded_at_ns);
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Whether adding `len` bytes would take a block holding records
    /// past `block_bytes`.
    fn overflows(&self, len: usize, block_bytes: usize) -> bool {
        self.count > 0 && self.raw.len() + len > block_bytes
    }

    fn due(&self, now: Instant, age: Duration) -> bool {
        self.oldest
            .is_some_and(|oldest| now.saturating_duration_since(oldest) >= age)
    }

    /// The block's records, compressed when that makes them smaller, and
    /// whether some carry fields unknown to this build; the block is
    /// empty again. `None` when it was.
    fn seal(&mut self) -> Option<(Packed, bool)> {
        if self.count == 0 {
            return None;
        }
        let raw_len = self.raw.len();
        let compressed = self
            .compressor
            .as_mut()
            .and_then(|c| c.compress(&self.raw).ok())
            .filter(|bytes| bytes.len() < raw_len);
        let (codec, bytes) = match compressed {
            Some(bytes) => (PackedCodec::Zstd, bytes),
            // The records themselves: the buffer goes with the pack (the
            // writer gives it back, see `WriterThread::seal`).
            None => (PackedCodec::Plain, std::mem::take(&mut self.raw)),
        };
        let sealed = Packed {
            codec,
            bytes,
            raw_len,
            count: self.count,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
        };
        let carries_unknown = self.carries_unknown;
        self.raw.clear();
        self.count = 0;
        self.carries_unknown = false;
        self.min_ts = u64::MAX;
        self.max_ts = 0;
        self.oldest = None;
        Some((sealed, carries_unknown))
    }
}

/// A tape's [`Packer`]: packs are whole blocks, compressed on the
/// producer's thread, which the writer only frames and writes. They are
/// at most [`PACKED_BLOCK_BYTES`] of records: the calls waiting on a
/// producer's thread wait while it compresses.
pub struct TapePacker {
    block: OpenBlock,
    block_bytes: usize,
    block_age: Duration,
    zstd_level: Option<i32>,
}

/// The records of a block a producer's thread seals, at most (unless one
/// record is bigger): zstd level 1 compresses it in 0.1–0.4 ms, from
/// repetitive to varied traffic, while the thread's other calls wait.
pub const PACKED_BLOCK_BYTES: usize = 256 << 10;

impl TapePacker {
    /// A packer making the blocks `options` ask for, of at most
    /// [`PACKED_BLOCK_BYTES`].
    pub fn new(options: &WriterOptions) -> TapePacker {
        TapePacker::with(
            options.block_bytes.clamp(1, PACKED_BLOCK_BYTES),
            options.block_age,
            options.zstd_level,
        )
    }

    fn with(block_bytes: usize, block_age: Duration, zstd_level: Option<i32>) -> TapePacker {
        TapePacker {
            block: OpenBlock::new(block_bytes + 4096, zstd_level),
            block_bytes,
            block_age,
            zstd_level,
        }
    }
}

impl Packer for TapePacker {
    fn add(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<Option<Packed>, StoreError> {
        if record.len() > MAX_RECORD {
            return Err(StoreError::failed(
                "tape",
                format!(
                    "a record of {} bytes is over the limit of {MAX_RECORD}",
                    record.len()
                ),
            ));
        }
        let mut prefix = [0; 10];
        let width = varint(record.len(), &mut prefix);
        let len = width + record.len();
        // A block full before this record goes first; this one waits in
        // the next (alone if it is that big, until the next add or flush).
        if self.block.overflows(len, self.block_bytes) {
            let sealed = self.block.seal().map(|(sealed, _)| sealed);
            self.block
                .add(&[&prefix[..width], record], recorded_at_ns, false);
            return Ok(sealed);
        }
        self.block
            .add(&[&prefix[..width], record], recorded_at_ns, false);
        if self.block.raw.len() >= self.block_bytes {
            return Ok(self.flush());
        }
        Ok(None)
    }

    fn flush(&mut self) -> Option<Packed> {
        self.block.seal().map(|(sealed, _)| sealed)
    }

    fn due(&self, now: Instant) -> bool {
        self.block.due(now, self.block_age)
    }

    fn another(&self) -> Box<dyn Packer> {
        Box::new(TapePacker::with(
            self.block_bytes,
            self.block_age,
            self.zstd_level,
        ))
    }
}

/// The longest record a block can hold (a block's records are at most
/// [`MAX_BLOCK_PAYLOAD`] bytes, its length prefix included).
const MAX_RECORD: usize = MAX_BLOCK_PAYLOAD as usize - 16;

/// Writes `len` as a varint into `out`; returns its width.
fn varint(len: usize, out: &mut [u8; 10]) -> usize {
    let mut slot = &mut out[..];
    prost::encoding::encode_varint(len as u64, &mut slot);
    10 - slot.len()
}

/// State owned by the writer thread.
struct WriterThread {
    path: PathBuf,
    file: File,
    offset: u64,
    seq: u64,
    block: OpenBlock,
    options: WriterOptions,
    stats: Arc<SharedStats>,
}

impl WriterThread {
    /// Runs until closed or until the file fails; returns the failure. A
    /// block that cannot be written is not a failure of the writer (see
    /// [`TapeError::Unwritten`]): it goes on.
    fn run(&mut self, rx: Receiver<Command>) -> Result<(), String> {
        let going = |result: Result<(), TapeError>| match result {
            Err(error) if !error.is_unwritten() => Err(error.to_string()),
            _ => Ok(()),
        };
        let mut drain = Drain::new(rx, IDLE_NAP);
        loop {
            let due = self.block.oldest.map(|oldest| {
                (oldest + self.options.block_age).saturating_duration_since(Instant::now())
            });
            let command = match drain.next(due) {
                Next::Item(command) => command,
                Next::Timeout => {
                    going(self.seal())?;
                    continue;
                }
                Next::Closed => return going(self.seal()),
            };
            match command {
                Command::Record {
                    bytes,
                    recorded_at_ns,
                    carries_unknown,
                } => going(self.add(&[&bytes], recorded_at_ns, carries_unknown))?,
                Command::Packed(packed) => going(self.put_packed(&packed))?,
                Command::Sync(reply) => {
                    let result = self.seal_and_sync();
                    let fatal = match &result {
                        Err(error) if !error.is_unwritten() => Some(error.to_string()),
                        _ => None,
                    };
                    let _ = reply.send(result);
                    if let Some(message) = fatal {
                        return Err(message);
                    }
                }
                Command::Close(reply) => {
                    let result = self.seal_and_sync();
                    let fatal = match &result {
                        Err(error) if !error.is_unwritten() => Some(error.to_string()),
                        _ => None,
                    };
                    let _ = reply.send(result);
                    return fatal.map_or(Ok(()), Err);
                }
            }
        }
    }

    /// Adds one record, given in pieces (its length prefix, its bytes).
    /// The record is taken even when the block before it could not be
    /// written.
    fn add(
        &mut self,
        record: &[&[u8]],
        recorded_at_ns: u64,
        carries_unknown: bool,
    ) -> Result<(), TapeError> {
        let len: usize = record.iter().map(|piece| piece.len()).sum();
        let before = if self.block.overflows(len, self.options.block_bytes) {
            self.seal()
        } else {
            Ok(())
        };
        if is_fatal(&before) {
            return before;
        }
        self.block.add(record, recorded_at_ns, carries_unknown);
        if self.block.raw.len() < self.options.block_bytes {
            return before;
        }
        // The last write decides what the call says: a block before it
        // that could not be written is counted (the tally) and cut off.
        self.seal()
    }

    fn seal(&mut self) -> Result<(), TapeError> {
        let Some((sealed, carries_unknown)) = self.block.seal() else {
            return Ok(());
        };
        let written = self.write_block(&sealed, carries_unknown);
        if sealed.codec == PackedCodec::Plain {
            // Stored as it was: its buffer serves the next block.
            let mut raw = sealed.bytes;
            raw.clear();
            self.block.raw = raw;
        }
        written
    }

    /// Seals the open block and fsyncs what is written (also when the
    /// block could not be).
    fn seal_and_sync(&mut self) -> Result<(), TapeError> {
        let sealed = self.seal();
        if is_fatal(&sealed) {
            return sealed;
        }
        let synced = self.fsync();
        synced.and(sealed)
    }

    /// Seals the open block, then writes `packed` as the next one.
    fn put_packed(&mut self, packed: &Packed) -> Result<(), TapeError> {
        let sealed = self.seal();
        if is_fatal(&sealed) {
            return sealed;
        }
        // The pack, written last, decides what the call says: a block
        // before it that could not be written is counted (the tally) and
        // cut off.
        self.write_block(packed, false)
    }

    /// Frames `block` (header, then payload) and writes it in one call.
    /// When that fails, what was written of it is cut off again.
    fn write_block(&mut self, block: &Packed, carries_unknown: bool) -> Result<(), TapeError> {
        let fits = |len: usize| u32::try_from(len).ok().filter(|&n| n <= MAX_BLOCK_PAYLOAD);
        let (Some(payload_len), Some(raw_len)) = (fits(block.bytes.len()), fits(block.raw_len))
        else {
            return Err(TapeError::PackTooLarge {
                path: self.path.clone(),
                len: block.raw_len.max(block.bytes.len()),
                max: MAX_BLOCK_PAYLOAD as usize,
            });
        };
        let header = BlockHeader {
            codec: match block.codec {
                PackedCodec::Plain => Codec::None,
                PackedCodec::Zstd => Codec::Zstd,
            },
            seq: self.seq,
            offset: self.offset,
            payload_len,
            raw_len,
            count: block.count,
            payload_crc: crc32c::crc32c(&block.bytes),
            schema_rev: reprise_model::SCHEMA_REVISION,
            carries_unknown,
            min_ts: block.min_ts,
            max_ts: block.max_ts,
        };
        let mut framed = Vec::with_capacity(crate::format::BLOCK_HEADER_LEN + block.bytes.len());
        framed.extend_from_slice(&header.encode());
        framed.extend_from_slice(&block.bytes);
        if let Err(source) = self.file.write_all(&framed) {
            self.cut_back()?;
            SharedStats::add(&self.stats.unwritten, u64::from(block.count));
            let error = TapeError::Unwritten {
                path: self.path.clone(),
                seq: self.seq,
                offset: self.offset,
                records: block.count,
                source,
            };
            self.stats
                .first_unwritten
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| error.to_string());
            return Err(error);
        }
        self.offset += framed.len() as u64;
        self.seq += 1;
        self.stats
            .records
            .fetch_add(u64::from(block.count), Ordering::Relaxed);
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        self.stats
            .file_bytes
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
        self.stats
            .raw_bytes
            .fetch_add(block.raw_len as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Cuts off what a failed write left after the last sealed block, so
    /// that the tape ends at it and the next block follows it.
    fn cut_back(&mut self) -> Result<(), TapeError> {
        let cut = |e| TapeError::io(&self.path, "cannot cut off a block it could not write", e);
        self.file.set_len(self.offset).map_err(cut)?;
        std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(self.offset)).map_err(cut)?;
        Ok(())
    }

    fn fsync(&mut self) -> Result<(), TapeError> {
        if !self.options.durable {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| TapeError::io(&self.path, "cannot sync", e))
    }
}

/// Whether `result` is a failure that closes the writer (returned before
/// anything else is tried); a block that could not be written is not one.
fn is_fatal(result: &Result<(), TapeError>) -> bool {
    matches!(result, Err(error) if !error.is_unwritten())
}
