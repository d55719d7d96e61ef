//! Other tools' recordings in and out of reprise.
//!
//! - [`import_path`] / [`import_reader`]: HAR 1.2 (browsers, Charles,
//!   mitmproxy, Postman) and GoReplay `.gor` files into any [`Sink`]. The
//!   format is read from the content ([`detect`]), never from the name.
//! - [`export_har`]: any [`Source`](reprise_model::Source) to a HAR 1.2 document.
//!
//! A file that is not HAR or GoReplay at all, or a HAR document that is not
//! JSON or has no `log.entries`, is an [`ImportError`]. Inside a readable
//! file, an entry or payload that cannot be converted is skipped and listed
//! in [`ImportReport::skipped`] with its place, and the rest is imported.

mod error;
mod gor;
mod har;
mod ids;
mod target;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub use error::{ExportError, ImportError};
pub use har::export::{ExportOptions, ExportReport, export_har};
use reprise_model::Sink;

/// A recording format reprise imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// HAR 1.2 (JSON).
    Har,
    /// GoReplay's `.gor` payload files.
    Gor,
}

impl Format {
    /// The format's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Har => "HAR",
            Format::Gor => "GoReplay",
        }
    }
}

/// The UTF-8 byte order mark some editors start a text file with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Tells the format from the first bytes of a file (a few KiB are enough).
pub fn detect(head: &[u8]) -> Option<Format> {
    let text = head.strip_prefix(BOM).unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &text[start..];
    if text.first() == Some(&b'{') {
        // A JSON object whose keys include "log" (it is usually the first).
        return memchr::memmem::find(text, b"\"log\"").map(|_| Format::Har);
    }
    gor::looks_like_gor(text).then_some(Format::Gor)
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The format read.
    pub format: Format,
    /// Exchanges written to the sink.
    pub exchanges: u64,
    /// Entries or payloads skipped, each with its place and reason.
    pub skipped: Vec<String>,
    /// Responses whose request never came (GoReplay).
    pub unpaired_responses: u64,
}

impl ImportReport {
    fn new(format: Format) -> Self {
        ImportReport {
            format,
            exchanges: 0,
            skipped: Vec::new(),
            unpaired_responses: 0,
        }
    }

    /// One line for a person: what was imported from where to where.
    pub fn summary(&self, input: &Path, output: &Path) -> String {
        let mut line = format!(
            "imported {} exchanges from {} ({}) into {}",
            self.exchanges,
            input.display(),
            self.format.name(),
            output.display()
        );
        if !self.skipped.is_empty() {
            line.push_str(&format!("; skipped {}", self.skipped.len()));
        }
        if self.unpaired_responses > 0 {
            line.push_str(&format!(
                "; {} responses without a request",
                self.unpaired_responses
            ));
        }
        line
    }
}

/// Imports the file at `path` into `sink`.
pub fn import_path(path: &Path, sink: &mut dyn Sink) -> Result<ImportReport, ImportError> {
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(ImportError::IsDirectory { file: name });
    }
    let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        file: name.clone(),
        source,
    })?;
    import_reader(BufReader::with_capacity(1 << 16, file), &name, sink)
}

/// Imports from any reader; `name` is used in messages.
pub fn import_reader(
    mut reader: impl BufRead,
    name: &str,
    sink: &mut dyn Sink,
) -> Result<ImportReport, ImportError> {
    let head = reader
        .fill_buf()
        .map_err(|source| ImportError::Io {
            file: name.to_string(),
            source,
        })?
        .to_vec();
    match detect(&head) {
        Some(Format::Har) => {
            // JSON has no byte order mark; editors on Windows write one.
            if head.starts_with(BOM) {
                reader.consume(BOM.len());
            }
            har::import::import(reader, name, sink)
        }
        Some(Format::Gor) => {
            // What `detect` looked past (a byte order mark, blank lines)
            // is not part of the first payload.
            let bom = if head.starts_with(BOM) { BOM.len() } else { 0 };
            let blank = head[bom..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            reader.consume(bom + blank);
            gor::import(reader, name, sink)
        }
        None if head.is_empty() => Err(ImportError::Empty {
            file: name.to_string(),
        }),
        None => Err(ImportError::UnknownFormat {
            file: name.to_string(),
        }),
    }
}

/// Imports from bytes in memory (for tests and fuzzing).
pub fn import_bytes(
    bytes: &[u8],
    name: &str,
    sink: &mut dyn Sink,
) -> Result<ImportReport, ImportError> {
    import_reader(BufReader::new(Read::take(bytes, u64::MAX)), name, sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_from_content() {
        assert_eq!(
            detect(b"{\"log\": {\"version\": \"1.2\"}}"),
            Some(Format::Har)
        );
        assert_eq!(
            detect(b"\xEF\xBB\xBF  \n{\n  \"log\": {}}"),
            Some(Format::Har)
        );
        assert_eq!(
            detect(b"1 0a1b2c 1568139746437296000\nGET / HTTP/1.1\r\n"),
            Some(Format::Gor)
        );
        assert_eq!(
            detect(b"2 0a1b2c 1568139746437296000 1234\nHTTP/1.1 200 OK\r\n"),
            Some(Format::Gor)
        );
        assert_eq!(detect(b"{\"entries\": []}"), None);
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"\x89PNG\r\n"), None);
    }
}
