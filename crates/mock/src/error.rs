//! Errors of setting a mock up.

use std::path::PathBuf;

/// Why a mock could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The recording could not be opened or read.
    #[error(transparent)]
    Tape(#[from] reprise_tape::TapeError),
    /// The recording is damaged: mocks from it would miss calls.
    #[error("{} is damaged ({damage}); mocks from a damaged recording would miss calls", path.display())]
    Damaged {
        /// The recording.
        path: PathBuf,
        /// The first damage found.
        damage: String,
    },
    /// An exhausted-mock policy that does not exist.
    #[error("unknown exhausted-mock policy {0:?}: use error, repeat-last or cycle")]
    UnknownExhausted(String),
}

/// Why misses cannot fall through to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum FallthroughError {
    /// Only cleartext upstreams are supported.
    #[error("only http:// upstreams for now")]
    NotHttp,
    /// The client's TLS settings could not be made.
    #[error(transparent)]
    Tls(#[from] reprise_net::TlsError),
    /// What the upstream speaks could not be settled.
    #[error(transparent)]
    Versions(#[from] reprise_net::VersionsError),
}

/// Why a mock server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The `--out` tape could not be created or written.
    #[error("--out {store}: {reason}")]
    Out {
        /// The tape or topic.
        store: String,
        /// What failed.
        reason: String,
    },
    /// The thread writing the `--out` tape stopped unexpectedly.
    #[error("--out: the thread writing the tape stopped unexpectedly")]
    OutThread,
    /// A listener could not be used.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No listener was given.
    #[error("nothing to listen on")]
    NoListener,
}
