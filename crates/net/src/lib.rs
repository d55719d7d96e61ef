//! HTTP plumbing shared by every part of reprise that speaks to the
//! network: the recording proxy, the replayer, the mock and the tower
//! layers. No RPC framework: to reprise, gRPC is HTTP/2 and a few fields.
//!
//! # Connections
//!
//! [`stream`]: a client's connection, TCP or TLS over TCP. [`tls`]: the
//! rustls settings of listeners and clients (the system's trust store
//! with the default `native-roots` feature). [`probe`]: which HTTP
//! version an upstream speaks.
//!
//! # HTTP/1.1 on the wire
//!
//! [`h1`]: request heads encoded once, answers and their body framing
//! read straight off the socket (RFC 9112).
//!
//! # Header fields
//!
//! [`hop`]: what stays on one hop and what a proxy adds. [`versions`]:
//! what changes with the HTTP version a call goes over. [`headers`]:
//! recorded fields as an [`http::HeaderMap`]. [`grpc_status`] and
//! [`grpc_error_fields`]: a gRPC status in a header block.

pub mod h1;
pub mod headers;
pub mod hop;
pub mod probe;
pub mod stream;
pub mod tls;
pub mod upstream;
pub mod versions;

use http::HeaderMap;
use reprise_model::GrpcStatus;
use reprise_model::grpc::percent_decode;

/// The gRPC status a header or trailer block carries: `grpc-status`, and
/// `grpc-message` percent-decoded as gRPC encodes it.
pub fn grpc_status(map: &HeaderMap) -> Option<GrpcStatus> {
    let code = map.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = map
        .get("grpc-message")
        .map_or_else(String::new, |raw| percent_decode(raw.as_bytes()));
    Some(GrpcStatus {
        code,
        message,
        ..Default::default()
    })
}

/// Makes `headers` those of a trailers-only gRPC error response:
/// `content-type: application/grpc`, `grpc-status: code` and `message` as
/// gRPC percent-encodes `grpc-message`.
pub fn grpc_error_fields(headers: &mut HeaderMap, code: u16, message: &str) {
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", http::HeaderValue::from(code));
    if let Ok(value) = http::HeaderValue::from_str(&reprise_model::grpc::percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
}

pub use probe::UpstreamProtocol;
pub use tls::TlsError;
pub use upstream::{Upstream, UpstreamError};
pub use versions::{UpstreamVersions, VersionsError};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grpc_message_text_is_percent_decoded() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", "5".parse().unwrap());
        map.insert(
            "grpc-message",
            "no%20such%20note:%20fail%E2%9C%93".parse().unwrap(),
        );
        let status = grpc_status(&map).unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (5, "no such note: fail✓")
        );
    }
}
