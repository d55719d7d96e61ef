//! The upstream a client of reprise's sends calls to (the recording
//! proxy, the mock's `--fallthrough`, the mirror's shadow): parsed from
//! `http[s]://host[:port]`, with what dialling it needs.

use rustls::pki_types::ServerName;

/// An upstream calls are forwarded to: `http://host:port` or `https://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// `scheme://host:port/`: what connections to it dial.
    pub base: http::Uri,
}

/// An upstream URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid upstream {url:?}: {reason}")]
pub struct UpstreamError {
    url: String,
    reason: String,
}

impl Upstream {
    /// Parses `http[s]://host[:port]` (a trailing `/` is fine; a path is not).
    pub fn parse(url: &str) -> Result<Upstream, UpstreamError> {
        let bad = |reason: &str| UpstreamError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("expected http://host:port or https://host:port"))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(bad("the scheme must be http or https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(bad(
                "an upstream is a scheme and host only; paths are forwarded as they come",
            ));
        }
        let base = http::Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Upstream {
            scheme,
            authority,
            base,
        })
    }

    /// Whether it is reached over TLS (`https`).
    pub fn is_tls(&self) -> bool {
        self.scheme == http::uri::Scheme::HTTPS
    }

    /// `host:port`, the port filled in from the scheme.
    pub fn socket_authority(&self) -> String {
        let port = self
            .authority
            .port_u16()
            .unwrap_or(if self.is_tls() { 443 } else { 80 });
        format!("{}:{port}", self.authority.host())
    }

    /// The name an https upstream's certificate is checked against; `None`
    /// when its host is not one a certificate can carry.
    pub fn tls_name(&self) -> Option<ServerName<'static>> {
        let host = self.host();
        ServerName::try_from(host.to_string()).ok()
    }

    /// Its host, without the brackets of an IPv6 address (`[::1]` names
    /// the address inside them).
    pub fn host(&self) -> &str {
        let host = self.authority.host();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams() {
        assert!(Upstream::parse("http://127.0.0.1:8080").is_ok());
        assert!(Upstream::parse("http://svc.local/").is_ok());
        assert!(Upstream::parse("https://svc.local:8443").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://x/api",
            "http://x/?a=1",
            "http:///",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
