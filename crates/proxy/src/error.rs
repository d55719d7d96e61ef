//! Errors of the recording proxy.

use std::net::SocketAddr;

/// Why the proxy could not run or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate, key or CA file cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] reprise_net::tls::TlsError),
    /// An https upstream's host cannot be checked against a certificate.
    #[error("TLS: the upstream host {0:?} is not a name a certificate can be checked against")]
    TlsName(String),
    /// What the upstream speaks could not be settled (`--upstream-protocol h2`
    /// and it does not speak HTTP/2, or it could not be asked).
    #[error(transparent)]
    Versions(#[from] reprise_net::VersionsError),
    /// The recorder did not finish cleanly; the recording may be
    /// incomplete.
    #[error("recording failed: {0}")]
    Recorder(#[from] reprise_record::RecorderError),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}
