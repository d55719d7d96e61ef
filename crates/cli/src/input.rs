//! Opening what the user names as an input: a tape, or a HAR or GoReplay
//! file read on the fly (detected from the content, never the name).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use reprise_model::select::ExchangeFilter;
use reprise_model::time::parse_time;
use reprise_model::{MemorySink, Source};
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

/// Reads the first bytes of `path` and says what it is.
pub fn kind(path: &Path) -> anyhow::Result<InputKind> {
    if path.is_dir() {
        bail!("{}: is a directory, not a recording", path.display());
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if head.starts_with(&reprise_tape::format::FILE_MAGIC) {
        return Ok(InputKind::Tape);
    }
    match reprise_interop::detect(&head) {
        Some(format) => Ok(InputKind::Importable(format)),
        None if head.is_empty() => bail!("{}: empty file, not a recording", path.display()),
        None => bail!(
            "{}: not a recording: neither a reprise tape, a HAR file nor a GoReplay file",
            path.display()
        ),
    }
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
    let (since_ns, until_ns) = filter.window();
    match kind(path)? {
        InputKind::Tape => {
            let options = ReaderOptions {
                since_ns,
                until_ns,
                follow,
                ..ReaderOptions::default()
            };
            Ok(Box::new(TapeReader::open_with(path, options)?))
        }
        InputKind::Importable(_) if follow.is_some() => {
            bail!(
                "{}: --follow reads a tape as it grows; this is a HAR or GoReplay file",
                path.display()
            )
        }
        InputKind::Importable(_) => {
            let mut sink = MemorySink::new();
            reprise_interop::import_path(path, &mut sink)?;
            Ok(Box::new(sink.source()))
        }
    }
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
