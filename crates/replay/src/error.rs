//! What can stop a replay from running at all. Calls that fail are not
//! errors: they are counted in the [`Report`](crate::Report).

use reprise_model::StoreError;

/// A replay that cannot start or cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target URL is not one reprise can send to.
    #[error("--target {url}: {reason}")]
    Target {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option's value cannot be used.
    #[error("{option} {value:?}: {reason}")]
    Option {
        /// The option, e.g. `--rewrite-path`.
        option: &'static str,
        /// Its value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target's host name does not resolve.
    #[error("--target {host}: cannot resolve the host name: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The recording cannot be read, or the results cannot be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] reprise_net::TlsError),
    /// The replay's threads or runtime cannot start.
    #[error("cannot start the replay: {0}")]
    Start(#[source] std::io::Error),
    /// A thread of the replay panicked: its part of the work is lost, so
    /// the report would be wrong.
    #[error("a replay thread failed: {thread} panicked: {message}")]
    ThreadFailed {
        /// Which thread (`reader`, `sender 0`, `results writer`).
        thread: String,
        /// The panic's message.
        message: String,
    },
}

impl ReplayError {
    /// The error for a thread that panicked with `payload`.
    pub(crate) fn panicked(
        thread: impl Into<String>,
        payload: &(dyn std::any::Any + Send),
    ) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        ReplayError::ThreadFailed {
            thread: thread.into(),
            message,
        }
    }
}
