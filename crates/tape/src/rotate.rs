//! [`RotatingTape`]: a recording as a directory of tapes, a new one
//! started when the current one reaches a size or an age, the oldest
//! removed past a count; and [`tapes_in`], the tapes of such a directory
//! in time order, for readers.
//!
//! Each tape is named for the time it was started (UTC, to the
//! millisecond) and a sequence number, `reprise-20261207T101500.123Z-000001.tape`,
//! so that name order is time order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reprise_model::pack::{Packed, PackedError, Packer};
use reprise_model::{Exchange, Sink, SinkTally, StoreError};

use crate::error::TapeError;
use crate::writer::{TapeWriter, WriterOptions};

/// When a [`RotatingTape`] starts a new tape, and how many it keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new tape once the current one holds this many bytes.
    pub size: Option<u64>,
    /// Start a new tape once the current one is this old.
    pub every: Option<Duration>,
    /// Keep this many tapes at most: the oldest go.
    pub keep: Option<usize>,
}

/// The prefix and suffix of the tapes a [`RotatingTape`] writes.
const PREFIX: &str = "reprise-";
const SUFFIX: &str = ".tape";

/// A directory of tapes written one after the other, as a [`Sink`].
pub struct RotatingTape {
    dir: PathBuf,
    options: WriterOptions,
    rotation: Rotation,
    current: TapeWriter,
    started: Instant,
    sequence: u64,
    /// What the closed tapes did.
    closed: SinkTally,
    closed_bytes: u64,
    /// Tapes of this directory, oldest first (the current one last).
    tapes: Vec<PathBuf>,
}

impl std::fmt::Debug for RotatingTape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingTape")
            .field("dir", &self.dir)
            .field("current", &self.current.path())
            .finish_non_exhaustive()
    }
}

impl RotatingTape {
    /// Writes tapes into `dir` (made 0700 when missing; tapes already in
    /// it stay, and count towards `keep`), each as `options` say.
    pub fn create(
        dir: impl AsRef<Path>,
        options: WriterOptions,
        rotation: Rotation,
    ) -> Result<RotatingTape, TapeError> {
        let dir = dir.as_ref().to_path_buf();
        if rotation.keep == Some(0) {
            return Err(TapeError::Rotation {
                path: dir,
                why: "keeping 0 tapes would remove the one being written (--keep 1 or more)",
            });
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(TapeError::Rotation {
                    path: dir,
                    why: "is not a directory (a rotated recording is a directory of tapes)",
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|source| TapeError::Io {
                        path: dir.clone(),
                        action: "cannot create the directory",
                        source,
                    })?;
            }
            Err(source) => {
                return Err(TapeError::Io {
                    path: dir,
                    action: "cannot open the directory",
                    source,
                });
            }
        }
        let tapes = rotated_in(&dir).map_err(|source| TapeError::Io {
            path: dir.clone(),
            action: "cannot list the directory",
            source,
        })?;
        let sequence = tapes.len() as u64;
        let current = TapeWriter::create(tape_name(&dir, sequence + 1), options.clone())?;
        let mut rotating = RotatingTape {
            dir,
            options,
            rotation,
            started: Instant::now(),
            sequence: sequence + 1,
            closed: SinkTally::default(),
            closed_bytes: 0,
            tapes,
            current,
        };
        rotating.tapes.push(rotating.current.path().to_path_buf());
        rotating.prune();
        Ok(rotating)
    }

    /// The tape being written.
    pub fn current(&self) -> &Path {
        self.current.path()
    }

    /// Whether the current tape is due to be closed.
    fn due(&self) -> bool {
        self.rotation
            .size
            .is_some_and(|size| self.current.bytes_written().unwrap_or(0) >= size)
            || self
                .rotation
                .every
                .is_some_and(|every| self.started.elapsed() >= every)
    }

    /// Closes the current tape and starts the next, when due.
    fn rotate_if_due(&mut self) -> Result<(), StoreError> {
        if !self.due() {
            return Ok(());
        }
        // The tape is whole before the next appears: a reader following
        // the directory moves on to a new tape only once the last one
        // has ended.
        let closed = Sink::close(&mut self.current);
        let next_path = tape_name(&self.dir, self.sequence + 1);
        let next =
            TapeWriter::create(&next_path, self.options.clone()).map_err(StoreError::from)?;
        let done = std::mem::replace(&mut self.current, next);
        self.sequence += 1;
        self.started = Instant::now();
        self.tapes.push(next_path);
        let tally = done.tally();
        self.closed.written += tally.written;
        self.closed.unwritten += tally.unwritten;
        self.closed.refused += tally.refused;
        self.closed_bytes += done.bytes_written().unwrap_or(0);
        self.prune();
        closed
    }

    /// Removes the oldest tapes past `keep`.
    fn prune(&mut self) {
        let Some(keep) = self.rotation.keep else {
            return;
        };
        while self.tapes.len() > keep {
            let oldest = self.tapes.remove(0);
            let _ = std::fs::remove_file(oldest);
        }
    }
}

/// The name of the `sequence`th tape of `dir`, started now.
fn tape_name(dir: &Path, sequence: u64) -> PathBuf {
    let now = chrono_free_utc(reprise_model::time::now_ns());
    dir.join(format!("{PREFIX}{now}-{sequence:06}{SUFFIX}"))
}

/// `20261207T101500.123Z` for a time in ns since the epoch.
fn chrono_free_utc(ns: u64) -> String {
    // RFC 3339 (2026-12-07T10:15:00.123Z) without its separators.
    reprise_model::time::format_ns(ns).replace(['-', ':'], "")
}

/// The tapes a [`RotatingTape`] wrote in `dir`, oldest first.
fn rotated_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut tapes: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    tapes.sort();
    Ok(tapes)
}

/// The tapes of a directory for a reader, in name order (time order for
/// the tapes a [`RotatingTape`] wrote): every regular file ending in
/// `.tape`.
pub fn tapes_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut tapes: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "tape"))
        .collect();
    tapes.sort();
    Ok(tapes)
}

/// Which files of a directory a [`TapeSeries`] reads.
pub type TapeFilter = Box<dyn Fn(&Path) -> bool + Send>;

/// Several tapes read as one recording, one after the other in name
/// order: a directory's (`.tape` files), or those a caller picked (a
/// glob). Following, it reads the last tape as it grows and moves on to
/// each new tape that appears in the directory (a [`RotatingTape`] closes
/// a tape before it starts the next).
pub struct TapeSeries {
    dir: PathBuf,
    pick: TapeFilter,
    queue: std::collections::VecDeque<PathBuf>,
    seen: std::collections::HashSet<PathBuf>,
    current: Option<crate::reader::TapeReader>,
    options: crate::reader::ReaderOptions,
    /// The caller's follow (its stop flag ends the series), if following.
    follow: Option<crate::reader::Follow>,
    /// Set when a newer tape appears: the tape followed now ends.
    newer: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The thread that watches the directory for newer tapes, following.
    watcher: Option<std::thread::JoinHandle<()>>,
    finished: bool,
}

impl std::fmt::Debug for TapeSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapeSeries")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TapeSeries {
    /// The tapes of `dir` that `pick` takes (every `.tape` file with
    /// [`TapeSeries::every_tape`]), read with `options` (their
    /// `follow`: read on, and take new tapes as they come, until its
    /// stop flag is set).
    pub fn open(
        dir: &Path,
        pick: TapeFilter,
        options: crate::reader::ReaderOptions,
    ) -> Result<TapeSeries, TapeError> {
        let listed = tapes_in(dir).map_err(|source| TapeError::Io {
            path: dir.to_path_buf(),
            action: "cannot list the directory",
            source,
        })?;
        let queue: std::collections::VecDeque<PathBuf> =
            listed.into_iter().filter(|p| pick(p)).collect();
        let follow = options.follow.clone();
        let series = TapeSeries {
            dir: dir.to_path_buf(),
            seen: queue.iter().cloned().collect(),
            queue,
            pick,
            current: None,
            options: crate::reader::ReaderOptions {
                follow: None,
                ..options
            },
            follow,
            newer: std::sync::Arc::default(),
            watcher: None,
            finished: false,
        };
        if series.queue.is_empty() && series.follow.is_none() {
            return Err(TapeError::Rotation {
                path: dir.to_path_buf(),
                why: "holds no tape (no .tape file matched)",
            });
        }
        Ok(series)
    }

    /// Every `.tape` file.
    pub fn every_tape() -> TapeFilter {
        Box::new(|_| true)
    }

    /// Tapes of the directory not yet queued, in name order.
    fn scan(&mut self) {
        let Ok(listed) = tapes_in(&self.dir) else {
            return;
        };
        for path in listed {
            if (self.pick)(&path) && !self.seen.contains(&path) {
                self.seen.insert(path.clone());
                self.queue.push_back(path);
            }
        }
    }

    /// Starts the thread that sets `newer` once a tape after `path`
    /// appears (or the caller stops following).
    fn watch_after(&mut self, path: &Path) {
        let Some(follow) = &self.follow else { return };
        let (dir, after, stop, newer, poll) = (
            self.dir.clone(),
            path.to_path_buf(),
            std::sync::Arc::clone(&follow.stop),
            std::sync::Arc::clone(&self.newer),
            follow.poll,
        );
        self.watcher = std::thread::Builder::new()
            .name("reprise-tapes".into())
            .spawn(move || {
                use std::sync::atomic::Ordering;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        newer.store(true, Ordering::Relaxed);
                        return;
                    }
                    let later = tapes_in(&dir)
                        .map(|tapes| tapes.iter().any(|t| t.as_path() > after.as_path()))
                        .unwrap_or(false);
                    if later {
                        newer.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(poll);
                }
            })
            .ok();
    }
}

impl Iterator for TapeSeries {
    type Item = Result<Exchange, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::sync::atomic::Ordering;
        loop {
            if self.finished {
                return None;
            }
            if let Some(reader) = self.current.as_mut() {
                match reader.next() {
                    Some(item) => return Some(item),
                    None => {
                        self.current = None;
                        if let Some(watcher) = self.watcher.take() {
                            let _ = watcher.join();
                        }
                        continue;
                    }
                }
            }
            if self.queue.is_empty() {
                self.scan();
            }
            if let Some(path) = self.queue.pop_front() {
                let mut options = self.options.clone();
                if self.queue.is_empty()
                    && let Some(follow) = &self.follow
                {
                    // The last tape so far: read as it grows, until a
                    // newer one appears (or the caller stops).
                    self.newer = std::sync::Arc::default();
                    options.follow = Some(crate::reader::Follow {
                        stop: std::sync::Arc::clone(&self.newer),
                        poll: follow.poll,
                        idle_looks: std::sync::Arc::clone(&follow.idle_looks),
                    });
                    self.watch_after(&path);
                }
                match crate::reader::TapeReader::open_with(&path, options) {
                    Ok(reader) => self.current = Some(reader),
                    // A tape removed before it was read (`--keep`): gone.
                    Err(TapeError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Some(Err(error.into())),
                }
                continue;
            }
            match &self.follow {
                Some(follow) if !follow.stop.load(Ordering::Relaxed) => {
                    follow.idle_looks.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(follow.poll);
                }
                _ => {
                    self.finished = true;
                    return None;
                }
            }
        }
    }
}

impl Sink for RotatingTape {
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError> {
        self.current.append(exchange)?;
        self.rotate_if_due()
    }

    fn append_encoded(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<(), StoreError> {
        self.current.append_encoded(record, recorded_at_ns)?;
        self.rotate_if_due()
    }

    fn tick(&mut self) -> Result<(), StoreError> {
        Sink::tick(&mut self.current)?;
        self.rotate_if_due()
    }

    fn packer(&self) -> Box<dyn Packer> {
        // Every tape is written with the same options: a block sealed
        // for one fits the next.
        self.current.packer()
    }

    fn append_packed(&mut self, packed: Packed) -> Result<(), PackedError> {
        self.current.append_packed(packed)?;
        self.rotate_if_due()
            .map_err(|error| PackedError { stored: 0, error })
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Sink::sync(&mut self.current)
    }

    fn close(&mut self) -> Result<(), StoreError> {
        Sink::close(&mut self.current)
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.closed_bytes + self.current.bytes_written().unwrap_or(0))
    }

    fn tally(&self) -> Option<SinkTally> {
        let now = self.current.tally();
        Some(SinkTally {
            written: self.closed.written + now.written,
            unwritten: self.closed.unwritten + now.unwritten,
            refused: self.closed.refused + now.refused,
        })
    }
}
