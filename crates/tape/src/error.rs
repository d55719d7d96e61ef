//! Tape errors and damage reports.

use std::fmt;
use std::path::PathBuf;

use reprise_model::StoreError;

/// A stretch of a tape the reader skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Index of the first block affected (the one the reader expected here).
    pub first_block: u64,
    /// Index of the last block affected, when more than one block was lost.
    pub last_block: u64,
    /// The damage runs to the end of the tape, so how many blocks it held
    /// is unknown (`last_block` is then the first one).
    pub to_end: bool,
    /// File offset where the skipped bytes start.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// What was wrong.
    pub kind: DamageKind,
}

/// What was wrong with a skipped stretch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// The tape ends inside a block: a write was cut short (a crash).
    TornTail,
    /// Bytes where a block header should be are not a valid header.
    BadHeader,
    /// A block's payload does not match its checksum.
    BadChecksum,
    /// A block passed its checksum but its payload does not decode.
    BadPayload(String),
    /// The file header is damaged (its checksum fails); blocks are still read.
    BadFileHeader,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = if self.to_end && self.kind != DamageKind::TornTail {
            format!("block {} and any after it", self.first_block)
        } else if self.last_block > self.first_block {
            format!("blocks {}-{}", self.first_block, self.last_block)
        } else {
            format!("block {}", self.first_block)
        };
        let what = match &self.kind {
            DamageKind::TornTail => "is cut short (torn tail: an unfinished write)".to_string(),
            DamageKind::BadHeader => "has no valid block header".to_string(),
            DamageKind::BadChecksum => "fails its checksum".to_string(),
            DamageKind::BadPayload(why) => format!("does not decode: {why}"),
            DamageKind::BadFileHeader => {
                return write!(
                    f,
                    "file header at offset 0 fails its checksum; reading blocks anyway"
                );
            }
        };
        write!(
            f,
            "{blocks} at offset {} ({} bytes) {what}; skipped",
            self.offset, self.len
        )
    }
}

/// Errors of the tape reader and writer.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// The file could not be opened, read or written.
    #[error("tape {path}: {action}: {source}")]
    Io {
        /// The tape.
        path: PathBuf,
        /// What was being done: "cannot open", "cannot write".
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The path is a directory.
    #[error("tape {0}: is a directory, not a tape file")]
    IsDirectory(PathBuf),
    /// A rotated recording's directory cannot be used as asked.
    #[error("{path}: {why}")]
    Rotation {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// The file exists and the writer was asked to create a new one.
    #[error("tape {0}: already exists (append to it, or choose another path)")]
    Exists(PathBuf),
    /// The file does not start like a tape.
    #[error("tape {path}: not a reprise tape ({why})")]
    NotATape {
        /// The file.
        path: PathBuf,
        /// e.g. "empty file", "wrong magic bytes".
        why: &'static str,
    },
    /// Written by a newer reprise.
    #[error("tape {path}: format version {version} is newer than this reprise reads ({supported})")]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// Version found.
        version: u16,
        /// Version supported.
        supported: u16,
    },
    /// Part of the tape was skipped; reading goes on after it.
    #[error("tape {path}: {damage}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What was skipped.
        damage: Damage,
    },
    /// The writer's thread stopped (after an earlier error, or `close`).
    #[error("tape {path}: writer is closed{}", .reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Closed {
        /// The file.
        path: PathBuf,
        /// The error that stopped it, if any.
        reason: Option<String>,
    },
    /// An exchange larger than a block can hold.
    #[error("tape {path}: record of {len} bytes is larger than the {max}-byte block limit")]
    RecordTooLarge {
        /// The file.
        path: PathBuf,
        /// Encoded record size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A block could not be written (a full disk, a quota, an I/O error).
    /// What was written of it was cut off, so the tape ends at its last
    /// sealed block, and the writer goes on: a later block may be written
    /// once there is room.
    #[error(
        "tape {path}: cannot write block {seq} ({records} exchanges) at offset {offset}: {source}; the tape ends at its last sealed block"
    )]
    Unwritten {
        /// The file.
        path: PathBuf,
        /// The block's number (the next block takes it again).
        seq: u64,
        /// Where it would have started: the end of the last sealed block.
        offset: u64,
        /// The exchanges it held, lost.
        records: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Some exchanges taken by the writer were never written (see
    /// [`TapeError::Unwritten`]): the tape holds the others, intact.
    #[error(
        "tape {path}: {records} exchanges could not be written (first: {first}); the tape holds the rest, intact"
    )]
    Lost {
        /// The file.
        path: PathBuf,
        /// Exchanges lost over the writer's life.
        records: u64,
        /// The first failure.
        first: String,
    },
    /// A pack of records larger than a block can hold.
    #[error("tape {path}: a pack of {len} bytes is larger than the {max}-byte block limit")]
    PackTooLarge {
        /// The file.
        path: PathBuf,
        /// The pack's size (the larger of stored and raw).
        len: usize,
        /// Limit.
        max: usize,
    },
}

impl TapeError {
    /// Whether reading goes on after this error.
    pub fn is_damage(&self) -> bool {
        matches!(self, TapeError::Damaged { .. })
    }

    /// Whether the tape is intact and the writer goes on after this error
    /// (exchanges were lost, not the tape).
    pub fn is_unwritten(&self) -> bool {
        matches!(self, TapeError::Unwritten { .. } | TapeError::Lost { .. })
    }

    pub(crate) fn io(path: &std::path::Path, action: &'static str, source: std::io::Error) -> Self {
        TapeError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

impl From<TapeError> for StoreError {
    fn from(error: TapeError) -> Self {
        match error {
            TapeError::Damaged { path, damage } => StoreError::Damaged {
                store: format!("tape {}", path.display()),
                detail: damage.to_string(),
            },
            other => {
                let unwritten = other.is_unwritten();
                let store = match &other {
                    TapeError::Io { path, .. }
                    | TapeError::IsDirectory(path)
                    | TapeError::Exists(path)
                    | TapeError::NotATape { path, .. }
                    | TapeError::NewerVersion { path, .. }
                    | TapeError::Closed { path, .. }
                    | TapeError::RecordTooLarge { path, .. }
                    | TapeError::Unwritten { path, .. }
                    | TapeError::Lost { path, .. }
                    | TapeError::PackTooLarge { path, .. } => format!("tape {}", path.display()),
                    TapeError::Rotation { path, .. } => path.display().to_string(),
                    TapeError::Damaged { .. } => String::new(),
                };
                let full = other.to_string();
                let detail = full
                    .strip_prefix(&format!("{store}: "))
                    .unwrap_or(&full)
                    .to_string();
                let source: Option<Box<dyn std::error::Error + Send + Sync>> =
                    Some(Box::new(other));
                if unwritten {
                    StoreError::Unwritten {
                        store,
                        detail,
                        source,
                    }
                } else {
                    StoreError::Failed {
                        store,
                        detail,
                        source,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_messages_say_where_and_what() {
        let d = Damage {
            first_block: 12,
            last_block: 12,
            to_end: false,
            offset: 65536,
            len: 1048,
            kind: DamageKind::BadChecksum,
        };
        assert_eq!(
            d.to_string(),
            "block 12 at offset 65536 (1048 bytes) fails its checksum; skipped"
        );
        let d = Damage {
            first_block: 3,
            last_block: 5,
            to_end: false,
            offset: 10,
            len: 20,
            kind: DamageKind::BadHeader,
        };
        assert_eq!(
            d.to_string(),
            "blocks 3-5 at offset 10 (20 bytes) has no valid block header; skipped"
        );
        let e: StoreError = TapeError::Damaged {
            path: "x.tape".into(),
            damage: d,
        }
        .into();
        assert!(e.is_damage());
        assert!(e.to_string().starts_with("tape x.tape: blocks 3-5"));
        let e: StoreError = TapeError::IsDirectory("/tmp".into()).into();
        assert_eq!(e.to_string(), "tape /tmp: is a directory, not a tape file");
    }
}
