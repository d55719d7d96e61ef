//! What changes when a call crosses from one HTTP version to the other
//! (which version each call takes, `--upstream-protocol`, is
//! `reprise_net::versions`). Most services behind a recording proxy
//! speak HTTP/1.1 only (Python, Ruby, PHP, most Node), while browsers and
//! curl negotiate HTTP/2 with the proxy: like nginx and Envoy, the proxy
//! translates.

use http::Version;
use http::header::{self, HeaderValue};
use rustls::pki_types::ServerName;

use crate::config::Upstream;
use crate::error::ProxyError;

/// The name an https upstream's certificate is checked against.
pub(crate) fn tls_name(upstream: &Upstream) -> Result<ServerName<'static>, ProxyError> {
    upstream
        .tls_name()
        .ok_or_else(|| ProxyError::TlsName(upstream.host().to_string()))
}

pub use reprise_net::versions::UpstreamVersions;
pub(crate) use reprise_net::versions::{join_cookies, needs_h2};

/// The authority the client named: HTTP/2's `:authority` (the target's),
/// else its Host field; HTTP/1.1's Host, else an absolute target's.
pub(crate) fn client_authority(parts: &http::request::Parts) -> Option<HeaderValue> {
    let from_target = || {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    };
    let from_host = || parts.headers.get(header::HOST).cloned();
    if parts.version == Version::HTTP_2 {
        from_target().or_else(from_host)
    } else {
        from_host().or_else(from_target)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_client_authority_follows_its_version() {
        let h2 = http::Request::builder()
            .version(Version::HTTP_2)
            .uri("https://shop.example/x")
            .body(())
            .unwrap();
        assert_eq!(
            client_authority(&h2.into_parts().0).unwrap(),
            "shop.example"
        );
        let h1 = http::Request::builder()
            .uri("/x")
            .header("host", "shop.example:8080")
            .body(())
            .unwrap();
        assert_eq!(
            client_authority(&h1.into_parts().0).unwrap(),
            "shop.example:8080"
        );
    }
}
