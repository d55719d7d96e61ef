//! The block walk: from one block header to the next, verifying checksums,
//! skipping blocks outside the time window by their headers, waiting at
//! the end when following, and resynchronising after damage.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::error::{Damage, DamageKind, TapeError};
use crate::format::{
    BLOCK_HEADER_LEN, BLOCK_MAGIC, BlockHeader, FILE_HEADER_LEN, FileHeader, FileHeaderProblem,
};
use crate::reader::{Follow, ReaderOptions};

/// What the walk found next.
pub(crate) enum WalkItem {
    /// A verified block; its stored payload when its records are wanted
    /// (`None`: outside the time window, or the walk only verifies).
    Block(BlockHeader, Option<Bytes>),
    /// Damaged bytes, skipped.
    Damage(Damage),
    /// The end of the tape (or following was stopped).
    End,
}

pub(crate) struct Walker {
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) offset: u64,
    next_seq: u64,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
    follow: Option<Follow>,
    /// Set when the reader is dropped, so a following walk ends.
    pub(crate) abandoned: Arc<AtomicBool>,
    /// Whether the payloads are wanted (not only verified).
    decompress: bool,
    payload: Vec<u8>,
}

/// What reading at `offset` found.
enum Probe {
    /// Something the walk reports.
    Found(WalkItem),
    /// Following, and the bytes there are not complete yet.
    Incomplete,
}

impl Walker {
    /// Opens `path` and checks its file header. A damaged header is returned
    /// as damage to report; the walk goes on with the blocks.
    pub(crate) fn open(
        path: &Path,
        options: &ReaderOptions,
        decompress: bool,
    ) -> Result<(Walker, Option<FileHeader>, Option<Damage>), TapeError> {
        if path.is_dir() {
            return Err(TapeError::IsDirectory(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| TapeError::io(path, "cannot open", e))?;
        Self::from_file(file, path, options, decompress)
    }

    /// Like [`Walker::open`], on a file already open (`path` names it in
    /// messages). The file is read at offsets, so it must be a regular
    /// file, not a pipe.
    pub(crate) fn from_file(
        file: File,
        path: &Path,
        options: &ReaderOptions,
        decompress: bool,
    ) -> Result<(Walker, Option<FileHeader>, Option<Damage>), TapeError> {
        let walker = Walker {
            path: path.to_path_buf(),
            file,
            offset: FILE_HEADER_LEN as u64,
            next_seq: 0,
            since_ns: options.since_ns,
            until_ns: options.until_ns,
            follow: options.follow.clone(),
            abandoned: Arc::new(AtomicBool::new(false)),
            decompress,
            payload: Vec::new(),
        };
        loop {
            let mut buf = [0u8; FILE_HEADER_LEN];
            let n = walker.read_at(&mut buf, 0)?;
            let path = walker.path.clone();
            return match FileHeader::decode(&buf[..n]) {
                Ok(header) => Ok((walker, Some(header), None)),
                Err(FileHeaderProblem::Short) if walker.wait() => continue,
                Err(FileHeaderProblem::Short) => {
                    let why = if n == 0 {
                        "empty file"
                    } else {
                        "file header is cut short"
                    };
                    Err(TapeError::NotATape { path, why })
                }
                Err(FileHeaderProblem::NotATape) => Err(TapeError::NotATape {
                    path,
                    why: "wrong magic bytes",
                }),
                Err(FileHeaderProblem::NewerVersion(version)) => Err(TapeError::NewerVersion {
                    path,
                    version,
                    supported: crate::format::FORMAT_VERSION,
                }),
                Err(FileHeaderProblem::Checksum) => {
                    let damage = Damage {
                        first_block: 0,
                        last_block: 0,
                        to_end: false,
                        offset: 0,
                        len: FILE_HEADER_LEN as u64,
                        kind: DamageKind::BadFileHeader,
                    };
                    Ok((walker, None, Some(damage)))
                }
            };
        }
    }

    /// The next item; waits at the end of the tape while following.
    pub(crate) fn next_item(&mut self) -> Result<WalkItem, TapeError> {
        loop {
            // Read before looking: a stop takes effect at an end found
            // after it was asked for, so every whole block written before
            // it is read.
            let stopped = self.stopped();
            match self.probe()? {
                Probe::Found(step) => return Ok(step),
                Probe::Incomplete => {
                    if stopped || !self.wait() {
                        return Ok(WalkItem::End);
                    }
                }
            }
        }
    }

    /// Whether following was asked to stop, or the reader abandoned.
    fn stopped(&self) -> bool {
        self.follow
            .as_ref()
            .is_some_and(|follow| follow.stop.load(Ordering::SeqCst))
            || self.abandoned.load(Ordering::SeqCst)
    }

    /// Sleeps one poll interval when following; false when not following.
    fn wait(&self) -> bool {
        let Some(follow) = &self.follow else {
            return false;
        };
        follow.idle_looks.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(follow.poll);
        true
    }

    fn following(&self) -> bool {
        self.follow.is_some()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, TapeError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TapeError::io(&self.path, "cannot read", e)),
            }
        }
        Ok(filled)
    }

    fn file_len(&self) -> Result<u64, TapeError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| TapeError::io(&self.path, "cannot stat", e))
    }

    fn probe(&mut self) -> Result<Probe, TapeError> {
        let mut buf = [0u8; BLOCK_HEADER_LEN];
        let n = self.read_at(&mut buf, self.offset)?;
        if n == 0 {
            return Ok(if self.following() {
                Probe::Incomplete
            } else {
                Probe::Found(WalkItem::End)
            });
        }
        let file_len = self.file_len()?;
        let Some(header) = BlockHeader::decode(&buf[..n]).filter(|h| h.offset == self.offset)
        else {
            if n < BLOCK_HEADER_LEN {
                if self.following() {
                    return Ok(Probe::Incomplete);
                }
                return Ok(self.damage_to(file_len, DamageKind::TornTail, self.next_seq));
            }
            return self.resync(file_len);
        };
        if file_len < header.end() {
            if self.following() {
                return Ok(Probe::Incomplete);
            }
            return Ok(self.damage_to(file_len, DamageKind::TornTail, header.seq));
        }
        if self.decompress && !self.in_window(&header) {
            // Outside the time window: skipped by its header alone.
            self.advance_past(&header);
            return Ok(Probe::Found(WalkItem::Block(header, None)));
        }
        // One buffer for every payload: fresh pages for each block would be
        // zeroed by the kernel first, a measurable part of a scan.
        let mut payload = std::mem::take(&mut self.payload);
        payload.resize(header.payload_len as usize, 0);
        let got = self.read_at(&mut payload, self.offset + BLOCK_HEADER_LEN as u64);
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                self.payload = payload;
                return Err(e);
            }
        };
        if got < payload.len() {
            // The file shrank under us: what is left is a torn tail.
            self.payload = payload;
            return Ok(self.damage_to(file_len, DamageKind::TornTail, header.seq));
        }
        if crc32c::crc32c(&payload) != header.payload_crc {
            self.payload = payload;
            return Ok(self.damage_to(header.end(), DamageKind::BadChecksum, header.seq));
        }
        self.advance_past(&header);
        if !self.decompress {
            self.payload = payload;
            return Ok(Probe::Found(WalkItem::Block(header, None)));
        }
        // Decompressed as its records are read (records.rs), never here.
        Ok(Probe::Found(WalkItem::Block(
            header,
            Some(Bytes::from(payload)),
        )))
    }

    fn advance_past(&mut self, header: &BlockHeader) {
        self.offset = header.end();
        self.next_seq = header.seq + 1;
    }

    fn in_window(&self, header: &BlockHeader) -> bool {
        !(self.since_ns.is_some_and(|s| header.max_ts < s)
            || self.until_ns.is_some_and(|u| header.min_ts >= u))
    }

    /// Reports the bytes from the current offset to `end` as damage and
    /// moves past them.
    fn damage_to(&mut self, end: u64, kind: DamageKind, block: u64) -> Probe {
        let to_end = self.file_len().is_ok_and(|len| end >= len);
        let damage = Damage {
            first_block: block,
            last_block: block,
            to_end,
            offset: self.offset,
            len: end.saturating_sub(self.offset),
            kind,
        };
        self.offset = end.max(self.offset);
        self.next_seq = block + 1;
        Probe::Found(WalkItem::Damage(damage))
    }

    /// No valid block header at the current offset: report the bytes up to
    /// the next valid one (or the end) as damage.
    fn resync(&mut self, file_len: u64) -> Result<Probe, TapeError> {
        let expected = self.next_seq;
        match self.find_header(self.offset + 1, file_len)? {
            Some(next) => {
                let look = self.damage_to(next.offset, DamageKind::BadHeader, expected);
                self.next_seq = next.seq;
                Ok(match look {
                    Probe::Found(WalkItem::Damage(mut damage)) => {
                        damage.last_block = next.seq.saturating_sub(1).max(expected);
                        Probe::Found(WalkItem::Damage(damage))
                    }
                    other => other,
                })
            }
            // A writer may be in the middle of writing a header.
            None if self.following() => Ok(Probe::Incomplete),
            None => Ok(self.damage_to(file_len, DamageKind::BadHeader, expected)),
        }
    }

    /// The first valid block header at or after `from` whose recorded
    /// offset is where it was found (a header copied inside a payload is
    /// not one of ours).
    fn find_header(&self, from: u64, file_len: u64) -> Result<Option<BlockHeader>, TapeError> {
        const CHUNK: usize = 1 << 20;
        let finder = memchr::memmem::Finder::new(&BLOCK_MAGIC);
        let mut start = from;
        let mut chunk = vec![0u8; CHUNK];
        while start < file_len {
            let n = self.read_at(&mut chunk, start)?;
            if n == 0 {
                break;
            }
            for hit in finder.find_iter(&chunk[..n]) {
                let at = start + hit as u64;
                let mut buf = [0u8; BLOCK_HEADER_LEN];
                let got = self.read_at(&mut buf, at)?;
                if let Some(header) = BlockHeader::decode(&buf[..got]).filter(|h| h.offset == at) {
                    return Ok(Some(header));
                }
            }
            // Overlap the chunks so a magic split between two is still found.
            start += n.saturating_sub(BLOCK_MAGIC.len() - 1).max(1) as u64;
        }
        Ok(None)
    }
}
