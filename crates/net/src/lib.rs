//! HTTP plumbing that every part of reprise that speaks to the network
//! shares (the recording proxy, the replayer, the tower layers): which
//! header fields belong to one hop only, and the TLS settings (rustls with
//! the ring provider) for listeners and clients.

pub mod hop;
pub mod tls;

pub use tls::TlsError;
