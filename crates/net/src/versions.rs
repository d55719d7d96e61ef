//! What changes with the HTTP version a call is sent over, for every
//! client of an upstream (the recording proxy, replay, the mirror, the
//! mock's `--fallthrough`): which calls need HTTP/2, HTTP/2's split
//! `cookie` fields, which HTTP/1.1 does not allow, and which version each
//! call takes to an upstream (`--upstream-protocol`).

use std::time::Duration;

use http::Version;
use http::header::{self, HeaderMap, HeaderValue};
use rustls::pki_types::ServerName;

use crate::probe::{ProbeError, UpstreamProtocol, speaks_h2};
use crate::upstream::Upstream;

/// Whether a `content-type` is gRPC proper, which needs HTTP/2
/// (`application/grpc`, `application/grpc+proto`...), not gRPC-Web
/// (`application/grpc-web*`), which is made for HTTP/1.1.
pub fn needs_h2_content_type(content_type: &[u8]) -> bool {
    reprise_model::grpc::is_grpc_content_type(content_type)
        && !reprise_model::grpc::is_grpc_web_content_type(content_type)
}

/// Whether a call with `headers` is gRPC proper, which needs HTTP/2
/// (see [`needs_h2_content_type`]).
pub fn needs_h2(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| needs_h2_content_type(v.as_bytes()))
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 allows one,
/// joined with `"; "` (RFC 9113 §8.2.3). Call it before a request goes
/// out over HTTP/1.1.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for more in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(more.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Why what an upstream speaks could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
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
        source: ProbeError,
    },
}

/// What a client knows of an upstream's HTTP versions, shared by its
/// tasks. With `h2` it was asked at start (an upstream that does not
/// speak it is an error then); with `auto` it is asked when the first
/// call that would go over HTTP/2 comes in (HTTP/1.1-only traffic never
/// costs a probe, and an upstream that starts after its client is asked
/// once it is up: a probe that reaches nobody is not kept).
pub struct UpstreamVersions {
    protocol: UpstreamProtocol,
    h2: tokio::sync::OnceCell<bool>,
    /// `host:port`.
    authority: String,
    /// An https upstream's TLS settings and the name its certificate
    /// must carry.
    tls: Option<(rustls::ClientConfig, ServerName<'static>)>,
    within: Duration,
}

impl UpstreamVersions {
    /// For `upstream` (trusted by `tls` when it is https), reached as
    /// `protocol` says; asks now, within `connect_timeout`, when that is
    /// h2.
    pub async fn new(
        upstream: &Upstream,
        protocol: UpstreamProtocol,
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
    ) -> Result<UpstreamVersions, VersionsError> {
        let tls = if upstream.is_tls() {
            let name = upstream
                .tls_name()
                .ok_or_else(|| VersionsError::TlsName(upstream.host().to_string()))?;
            Some((tls.clone(), name))
        } else {
            None
        };
        let versions = UpstreamVersions {
            protocol,
            h2: tokio::sync::OnceCell::new(),
            authority: upstream.socket_authority(),
            tls,
            within: connect_timeout.max(Duration::from_secs(1)),
        };
        if versions.protocol == UpstreamProtocol::H2 {
            match versions.ask().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(VersionsError::NotHttp2 {
                        upstream: upstream.base.to_string(),
                        how: if upstream.is_tls() {
                            "ALPN did not agree on h2"
                        } else {
                            "no answer to HTTP/2's connection preface, sent in cleartext with prior knowledge"
                        },
                    });
                }
                Err(source) => {
                    return Err(VersionsError::Probe {
                        upstream: upstream.base.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(versions)
    }

    async fn ask(&self) -> Result<bool, ProbeError> {
        let tls = self
            .tls
            .as_ref()
            .map(|(config, name)| (config, name.clone()));
        speaks_h2(&self.authority, tls, self.within).await
    }

    /// Whether a call that came in over `client` goes to the upstream
    /// over HTTP/2; `grpc`: it is gRPC proper, which needs HTTP/2 (not
    /// gRPC-Web).
    pub async fn over_h2(&self, grpc: bool, client: Version) -> bool {
        // An upstream that took the connection and the preface but did
        // not answer it in time does not speak HTTP/2 (some HTTP/1.1
        // servers wait out a request they cannot parse): kept, or every
        // HTTP/2 call would wait for it again. One that could not be
        // reached (refused, or no connection or TLS session in time) is
        // asked again at the next call.
        let asked = || async {
            self.h2
                .get_or_try_init(|| async {
                    match self.ask().await {
                        Err(ProbeError::Timeout { .. }) => Ok(false),
                        answer => answer,
                    }
                })
                .await
                .is_ok_and(|h2| *h2)
        };
        match self.protocol {
            UpstreamProtocol::Auto if !grpc && client == Version::HTTP_2 => asked().await,
            protocol => over_h2(protocol, false, grpc, client),
        }
    }

    /// Whether the upstream speaks HTTP/2, if it was asked.
    pub fn known_h2(&self) -> Option<bool> {
        match self.protocol {
            UpstreamProtocol::H1 => Some(false),
            UpstreamProtocol::H2 => Some(true),
            UpstreamProtocol::Auto => self.h2.get().copied(),
        }
    }
}

/// Whether a call goes to the upstream over HTTP/2: every call when h2
/// is forced, none with h1; with `auto`, gRPC proper (which needs it)
/// and calls that came in over HTTP/2 to an upstream that speaks it.
pub fn over_h2(protocol: UpstreamProtocol, upstream_h2: bool, grpc: bool, client: Version) -> bool {
    match protocol {
        UpstreamProtocol::H2 => true,
        UpstreamProtocol::H1 => false,
        UpstreamProtocol::Auto => grpc || (client == Version::HTTP_2 && upstream_h2),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grpc_needs_h2_and_grpc_web_does_not() {
        let with = |kind: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            needs_h2(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/grpc-web+proto"));
        assert!(!with("application/grpc-web-text"));
        assert!(!with("application/json"));
    }

    #[test]
    fn cookies_are_joined_for_http1() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn auto_sends_grpc_and_h2_calls_to_an_h2_upstream_over_h2() {
        use UpstreamProtocol::*;
        let (h1, h2) = (Version::HTTP_11, Version::HTTP_2);
        assert!(over_h2(Auto, false, true, h1));
        assert!(!over_h2(Auto, false, false, h2));
        assert!(over_h2(Auto, true, false, h2));
        assert!(!over_h2(Auto, true, false, h1));
        assert!(over_h2(H2, true, false, h1));
        assert!(!over_h2(H1, true, true, h2));
    }

    /// An upstream that takes connections: how many it took, and
    /// whether it answers (an HTTP/1.1 400) or stays silent.
    async fn upstream(answers: bool) -> (Upstream, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&taken);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let _ = socket.read(&mut buf).await;
                    if answers {
                        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    } else {
                        // Holds the connection, says nothing.
                        let _ = socket.read(&mut buf).await;
                    }
                });
            }
        });
        (Upstream::parse(&format!("http://{addr}")).unwrap(), taken)
    }

    #[tokio::test]
    async fn auto_asks_once_and_keeps_a_no_even_a_silent_one() {
        use std::sync::atomic::Ordering;
        let tls = crate::tls::client_config_for(crate::tls::Trust::Nobody).unwrap();
        for answers in [true, false] {
            let (upstream, taken) = upstream(answers).await;
            let versions = UpstreamVersions::new(
                &upstream,
                UpstreamProtocol::Auto,
                &tls,
                Duration::from_millis(100),
            )
            .await
            .unwrap();
            // Not asked until an HTTP/2 call comes; gRPC and HTTP/1.1
            // calls never ask.
            assert!(versions.over_h2(true, Version::HTTP_11).await);
            assert!(!versions.over_h2(false, Version::HTTP_11).await);
            assert_eq!(
                (versions.known_h2(), taken.load(Ordering::SeqCst)),
                (None, 0)
            );
            for _ in 0..3 {
                assert!(!versions.over_h2(false, Version::HTTP_2).await);
            }
            assert_eq!(versions.known_h2(), Some(false));
            assert_eq!(taken.load(Ordering::SeqCst), 1, "answers: {answers}");
        }
    }

    #[tokio::test]
    async fn forced_h2_asks_at_once_and_fails_clearly() {
        let tls = crate::tls::client_config_for(crate::tls::Trust::Nobody).unwrap();
        let (upstream, _) = upstream(true).await;
        let refused = UpstreamVersions::new(
            &upstream,
            UpstreamProtocol::H2,
            &tls,
            Duration::from_secs(1),
        )
        .await;
        let Err(error) = refused else {
            panic!("an HTTP/1.1 upstream is refused")
        };
        assert!(
            error.to_string().contains("does not speak HTTP/2"),
            "{error}"
        );
    }
}
