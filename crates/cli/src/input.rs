//! Opening what the user names as an input: a tape, or a HAR or GoReplay
//! file read on the fly (detected from the content, never the name), or
//! a Kafka topic (`kafka://BROKER[,BROKER...]/TOPIC[?QUERY]`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Seek;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, bail};
use reprise_model::select::ExchangeFilter;
use reprise_model::time::parse_time;
use reprise_model::{MemorySink, Sink, Source};
use reprise_tape::{ReaderOptions, TapeReader};

use crate::args::FilterArgs;

/// What kind of file an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A reprise tape.
    Tape,
    /// A file an importer reads (HAR, .gor).
    Importable(reprise_interop::Format),
}

/// Where an input's exchanges are.
enum Place {
    /// A file (or a pipe's copy).
    File {
        file: File,
        kind: InputKind,
        pipe: bool,
    },
    /// A Kafka topic.
    Kafka(reprise_kafka::KafkaAddress),
    /// Several tapes of a directory, in name order (a rotated
    /// recording): every `.tape` file, or those a glob picks.
    Tapes {
        dir: PathBuf,
        glob: Option<globset::GlobMatcher>,
    },
}

/// An input opened. A pipe (a FIFO, `<(command)`) can be read only once
/// and only forward, while a tape is read at offsets and `diff` or
/// `replay --loop` read their inputs more than once: so a pipe's content
/// is copied to an unnamed temporary file (created 0600, gone at exit)
/// the first time it is opened, and every reader of that path in this
/// run reads the copy, a regular file.
///
/// A Kafka topic is read from `from=` to the end offsets seen the first
/// time it is opened in this run, every time it is opened (unless
/// followed), so that a command that reads it twice reads the same.
pub struct Input {
    path: PathBuf,
    place: Place,
}

impl Input {
    /// Opens `path`, copying a pipe's content aside, and says what it is
    /// from its first bytes; a `kafka://` address names a topic, reached
    /// when it is read.
    pub fn open(path: &Path) -> anyhow::Result<Input> {
        if let Some(address) = crate::store::kafka_address(path)? {
            return Ok(Input {
                path: path.to_path_buf(),
                place: Place::Kafka(address),
            });
        }
        if path.is_dir() {
            return Ok(Input {
                path: path.to_path_buf(),
                place: Place::Tapes {
                    dir: path.to_path_buf(),
                    glob: None,
                },
            });
        }
        if let Some((dir, glob)) = tape_glob(path)? {
            return Ok(Input {
                path: path.to_path_buf(),
                place: Place::Tapes {
                    dir,
                    glob: Some(glob),
                },
            });
        }
        let cannot_read = || format!("{}: cannot read", path.display());
        // Without opening it: opening a FIFO waits for its writer. Only a
        // FIFO or a socket is a pipe to copy aside; a device (`/dev/zero`)
        // could fill the disk with its copy, so it is refused.
        let file_type = std::fs::metadata(path)
            .with_context(cannot_read)?
            .file_type();
        let pipe = file_type.is_fifo() || file_type.is_socket();
        if !pipe && !file_type.is_file() {
            bail!(
                "{}: not a regular file, a FIFO or a socket (a device?); \
                 a recording is read from a file or a pipe",
                path.display()
            );
        }
        let file = if pipe {
            piped(path).with_context(cannot_read)?
        } else {
            File::open(path).with_context(cannot_read)?
        };
        let mut head = vec![0u8; 4096];
        let mut filled = 0;
        while filled < head.len() {
            match file.read_at(&mut head[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(cannot_read),
            }
        }
        head.truncate(filled);
        let kind = if head.starts_with(&reprise_tape::format::FILE_MAGIC) {
            InputKind::Tape
        } else {
            match reprise_interop::detect(&head) {
                Some(format) => InputKind::Importable(format),
                None if head.is_empty() => {
                    bail!("{}: empty file, not a recording", path.display())
                }
                None => bail!(
                    "{}: not a recording: neither a reprise tape, a HAR file nor a GoReplay file",
                    path.display()
                ),
            }
        };
        Ok(Input {
            path: path.to_path_buf(),
            place: Place::File { file, kind, pipe },
        })
    }

    /// What kind of file it is (`None` for a topic).
    pub fn kind(&self) -> Option<InputKind> {
        match &self.place {
            Place::File { kind, .. } => Some(*kind),
            Place::Kafka(_) => None,
            Place::Tapes { .. } => Some(InputKind::Tape),
        }
    }

    /// The input as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The input's exchanges from the start, restricted to the filter's
    /// time window (a tape skips whole blocks outside it); with `follow`,
    /// a tape is read on as it grows until its stop flag is set. Each
    /// call reads the input again from its start.
    pub fn source(
        &self,
        filter: &ExchangeFilter,
        follow: Option<reprise_tape::Follow>,
    ) -> anyhow::Result<Box<dyn Source>> {
        let path = self.path.display();
        let (since_ns, until_ns) = filter.window();
        let (file, kind, pipe) = match &self.place {
            Place::File { file, kind, pipe } => (file, *kind, *pipe),
            Place::Kafka(address) => {
                return Ok(Box::new(kafka_source(address, since_ns, follow)?));
            }
            Place::Tapes { dir, glob } => {
                let pick: reprise_tape::TapeFilter = match glob.clone() {
                    Some(glob) => Box::new(move |p: &Path| {
                        p.file_name().is_some_and(|name| glob.is_match(name))
                    }),
                    None => reprise_tape::TapeSeries::every_tape(),
                };
                let options = ReaderOptions {
                    since_ns,
                    until_ns,
                    follow,
                    ..ReaderOptions::default()
                };
                return Ok(Box::new(reprise_tape::TapeSeries::open(
                    dir, pick, options,
                )?));
            }
        };
        if follow.is_some() && pipe {
            bail!("{path}: is a pipe; following a tape as it grows needs the tape file itself");
        }
        let file = file
            .try_clone()
            .with_context(|| format!("{path}: cannot read"))?;
        match kind {
            InputKind::Tape => {
                let options = ReaderOptions {
                    since_ns,
                    until_ns,
                    follow,
                    ..ReaderOptions::default()
                };
                Ok(Box::new(TapeReader::open_file(file, &self.path, options)?))
            }
            InputKind::Importable(_) if follow.is_some() => {
                bail!("{path}: --follow reads a tape as it grows; this is a HAR or GoReplay file")
            }
            InputKind::Importable(_) => {
                let mut sink = MemorySink::new();
                self.import(&mut sink)?;
                Ok(Box::new(sink.source()))
            }
        }
    }

    /// Imports a HAR or GoReplay input into `sink`, from its start.
    pub fn import(&self, sink: &mut dyn Sink) -> anyhow::Result<reprise_interop::ImportReport> {
        let file = match &self.place {
            Place::File { file, .. } => file,
            Place::Kafka(_) => bail!(
                "{}: a Kafka topic holds reprise records already: read it directly, or copy it with `reprise copy`",
                self.path.display()
            ),
            Place::Tapes { .. } => bail!(
                "{}: is a directory (of tapes); import reads a HAR or .gor file",
                self.path.display()
            ),
        };
        let mut file = file
            .try_clone()
            .with_context(|| format!("{}: cannot read", self.path.display()))?;
        // The clone shares the file's position: start from the top.
        file.rewind()
            .with_context(|| format!("{}: cannot read", self.path.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        let name = self.path.display().to_string();
        Ok(reprise_interop::import_reader(reader, &name, sink)?)
    }
}

/// A path whose file name is a glob (`rec/*.tape`, `rec/reprise-20261207*`)
/// and that names no file: its directory and the glob. An error when its
/// directory is a glob too or does not exist.
fn tape_glob(path: &Path) -> anyhow::Result<Option<(PathBuf, globset::GlobMatcher)>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let globbing = |text: &str| text.contains(['*', '?', '[']);
    if !globbing(name) || path.exists() {
        return Ok(None);
    }
    let dir = match path.parent() {
        Some(dir) if dir.as_os_str().is_empty() => PathBuf::from("."),
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    if dir.to_str().is_some_and(globbing) {
        bail!(
            "{}: only the file name may be a glob (tapes of one directory)",
            path.display()
        );
    }
    if !dir.is_dir() {
        bail!("{}: no such directory", dir.display());
    }
    let glob = globset::Glob::new(name)
        .with_context(|| format!("{}: not a glob", path.display()))?
        .compile_matcher();
    Ok(Some((dir, glob)))
}

/// Reads a topic from `from=` (or `since_ns`, when later) to the end
/// offsets seen the first time it was opened in this run, or on as it
/// grows with `follow`.
fn kafka_source(
    address: &reprise_kafka::KafkaAddress,
    since_ns: Option<u64>,
    follow: Option<reprise_tape::Follow>,
) -> anyhow::Result<reprise_kafka::KafkaSource> {
    static ENDS: OnceLock<Mutex<HashMap<String, reprise_kafka::Ends>>> = OnceLock::new();
    let key = address.to_string();
    let ends = match follow {
        Some(_) => None,
        None => ENDS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned(),
    };
    let options = reprise_kafka::SourceOptions {
        follow: follow.map(|f| f.stop),
        since_ns,
        ends,
        ..reprise_kafka::SourceOptions::default()
    };
    let source = reprise_kafka::KafkaSource::open(address, crate::store::kafka_options(), options)?;
    ENDS.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_insert_with(|| source.ends().clone());
    Ok(source)
}

/// The copy of the pipe at `path`, made the first time it is opened in
/// this run (a second open of the pipe itself would wait for a writer
/// that is gone).
fn piped(path: &Path) -> std::io::Result<File> {
    static COPIES: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    let mut copies = COPIES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(copy) = copies.get(path) {
        return copy.try_clone();
    }
    let mut copy = tempfile::tempfile()?;
    std::io::copy(&mut File::open(path)?, &mut copy)?;
    copy.rewind()?;
    copies.insert(path.to_path_buf(), copy.try_clone()?);
    Ok(copy)
}

/// Opens `path` as a source of exchanges restricted to the filter's time
/// window (a tape skips whole blocks outside it).
pub fn open(path: &Path, filter: &ExchangeFilter) -> anyhow::Result<Box<dyn Source>> {
    open_with(path, filter, false)
}

/// Like [`open`]; with `follow`, a tape is read on as it grows.
pub fn open_with(
    path: &Path,
    filter: &ExchangeFilter,
    follow: bool,
) -> anyhow::Result<Box<dyn Source>> {
    open_following(path, filter, follow.then(reprise_tape::Follow::default))
}

/// Like [`open`]; with `follow`, a tape is read on as it grows until its
/// stop flag is set.
pub fn open_following(
    path: &Path,
    filter: &ExchangeFilter,
    follow: Option<reprise_tape::Follow>,
) -> anyhow::Result<Box<dyn Source>> {
    Input::open(path)?.source(filter, follow)
}

/// Builds the exchange filter from the command-line options.
pub fn filter(args: &FilterArgs) -> anyhow::Result<ExchangeFilter> {
    let mut filter = ExchangeFilter::new();
    for method in &args.method {
        filter = filter.method(method);
    }
    for path in &args.path {
        filter = filter.path(path)?;
    }
    for status in &args.status {
        filter = filter.status(status)?;
    }
    for term in &args.matches {
        filter = filter.add_match(term)?;
    }
    if let Some(since) = &args.since {
        filter = filter.since(parse_time(since).context("--since")?);
    }
    if let Some(until) = &args.until {
        filter = filter.until(parse_time(until).context("--until")?);
    }
    Ok(filter)
}
