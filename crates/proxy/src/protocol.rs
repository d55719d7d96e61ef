//! Which protocol each call takes to the upstream (`--upstream-protocol`),
//! and what changes when a call crosses from one HTTP version to the
//! other. Most services behind a recording proxy speak HTTP/1.1 only
//! (Python, Ruby, PHP, most Node), while browsers and curl negotiate
//! HTTP/2 with the proxy: like nginx and Envoy, the proxy translates.

use std::time::Duration;

use http::Version;
use http::header::{self, HeaderValue};
use reprise_net::UpstreamProtocol;
use reprise_net::probe::{ProbeError, speaks_h2};
use rustls::pki_types::ServerName;

use crate::config::Upstream;
use crate::error::ProxyError;

/// The name an https upstream's certificate is checked against.
pub(crate) fn tls_name(upstream: &Upstream) -> Result<ServerName<'static>, ProxyError> {
    let host = upstream.authority.host();
    // `[::1]` names the address inside the brackets.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string()).map_err(|_| ProxyError::TlsName(host.to_string()))
}

fn is_tls(upstream: &Upstream) -> bool {
    upstream.scheme == http::uri::Scheme::HTTPS
}

/// `host:port` of the upstream, the port filled in from the scheme.
pub(crate) fn socket_authority(upstream: &Upstream) -> String {
    let port = upstream
        .authority
        .port_u16()
        .unwrap_or(if is_tls(upstream) { 443 } else { 80 });
    format!("{}:{port}", upstream.authority.host())
}

/// What the proxy knows of the upstream's HTTP versions, shared by the
/// serving threads. With `h2` it was asked at start (an upstream that
/// does not speak it is an error then); with `auto` it is asked when the
/// first call that would go over HTTP/2 comes in (HTTP/1.1-only traffic
/// never costs a probe, and an upstream that starts after the proxy is
/// asked once it is up: a probe that reaches nobody is not kept).
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
    ) -> Result<UpstreamVersions, ProxyError> {
        let versions = UpstreamVersions {
            protocol,
            h2: tokio::sync::OnceCell::new(),
            authority: socket_authority(upstream),
            tls: if is_tls(upstream) {
                Some((tls.clone(), tls_name(upstream)?))
            } else {
                None
            },
            within: connect_timeout.max(Duration::from_secs(1)),
        };
        if versions.protocol == UpstreamProtocol::H2 {
            match versions.ask().await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ProxyError::NotHttp2 {
                        upstream: upstream.base.to_string(),
                        how: if is_tls(upstream) {
                            "ALPN did not agree on h2"
                        } else {
                            "no answer to HTTP/2's connection preface, sent in cleartext with prior knowledge"
                        },
                    });
                }
                Err(source) => {
                    return Err(ProxyError::Probe {
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

pub(crate) use reprise_net::versions::{join_cookies, needs_h2};

/// Whether a call goes to the upstream over HTTP/2: every call when h2
/// is forced, none with h1; with `auto`, gRPC proper (which needs it)
/// and calls that came in over HTTP/2 to an upstream that speaks it.
pub(crate) fn over_h2(
    protocol: UpstreamProtocol,
    upstream_h2: bool,
    grpc: bool,
    client: Version,
) -> bool {
    match protocol {
        UpstreamProtocol::H2 => true,
        UpstreamProtocol::H1 => false,
        UpstreamProtocol::Auto => grpc || (client == Version::HTTP_2 && upstream_h2),
    }
}

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
        let tls = reprise_net::tls::client_config_for(reprise_net::tls::Trust::Nobody).unwrap();
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
        let tls = reprise_net::tls::client_config_for(reprise_net::tls::Trust::Nobody).unwrap();
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
