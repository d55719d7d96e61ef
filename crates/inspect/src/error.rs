//! Errors of the inspection engines.

/// Why an inspection could not be done.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The source failed (damage is not an error: it is collected).
    #[error(transparent)]
    Source(#[from] reprise_model::StoreError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// `show` was given something that is not a hex id or prefix.
    #[error("invalid exchange id {0:?}: expected hex digits (a unique prefix of at least 6)")]
    BadId(String),
    /// No exchange has that id.
    #[error("no exchange with id {0}")]
    NotFound(String),
    /// Several exchanges start with that prefix.
    #[error("id prefix {prefix} is ambiguous: {}", .candidates.join(", "))]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// Some of the ids it matches.
        candidates: Vec<String>,
    },
}
