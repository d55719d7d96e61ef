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
    /// HTTP/2 to the upstream was asked for, and it does not speak it.
    #[error(
        "the upstream {upstream} does not speak HTTP/2 ({how}); use --upstream-protocol auto or h1"
    )]
    NotHttp2 {
        /// The upstream's URL.
        upstream: String,
        /// How that was found.
        how: &'static str,
    },
    /// HTTP/2 to the upstream was asked for, and whether it speaks it
    /// could not be found out.
    #[error("cannot tell whether the upstream {upstream} speaks HTTP/2: {source}")]
    Probe {
        /// The upstream's URL.
        upstream: String,
        /// Why.
        #[source]
        source: reprise_net::probe::ProbeError,
    },
    /// The sink failed; the recording may be incomplete.
    #[error("recording failed: {0}")]
    Sink(String),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}
