//! Errors of setting the layers up.

/// Why the layers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TowerError {
    /// A configuration value is wrong (the message names it).
    #[error("{0}")]
    Config(String),
    /// The tape could not be opened, read or written.
    #[error(transparent)]
    Tape(#[from] reprise_tape::TapeError),
    /// The recorder's writer thread could not start or finish.
    #[error("{0}")]
    Recorder(String),
}
