//! Import and export errors: each names the file and what is wrong where.

/// A file that cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Cannot open or read the file.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The path is a directory.
    #[error("{file}: is a directory, not a recording")]
    IsDirectory {
        /// The path.
        file: String,
    },
    /// The file is empty.
    #[error("{file}: empty file, not a recording")]
    Empty {
        /// The file.
        file: String,
    },
    /// Neither HAR nor GoReplay.
    #[error(
        "{file}: not a recording reprise can import (expected a HAR 1.2 JSON document or a GoReplay .gor file)"
    )]
    UnknownFormat {
        /// The file.
        file: String,
    },
    /// A HAR document that is not valid JSON, or lacks what HAR requires
    /// (`path` says where, e.g. `log.entries[12].request.url`).
    #[error("{file}: invalid HAR at {path}: {message}")]
    Har {
        /// The file.
        file: String,
        /// Where in the document.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The sink refused an exchange.
    #[error("{file}: cannot store an exchange: {source}")]
    Sink {
        /// The file being imported.
        file: String,
        /// The store's error.
        #[source]
        source: reprise_model::StoreError,
    },
}

/// An export that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output failed.
    #[error("cannot write the HAR file: {0}")]
    Io(#[from] std::io::Error),
    /// The source failed (not just damage, which is counted).
    #[error(transparent)]
    Source(#[from] reprise_model::StoreError),
}
