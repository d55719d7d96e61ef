//! TLS (rustls with the ring provider): a listener's certificate with ALPN
//! h2 and http/1.1, and the trust a client puts in the servers it calls
//! (the system's roots, one CA file, or, for self-signed staging
//! certificates, none at all).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsError {
    path: PathBuf,
    reason: String,
}

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            path,
            "no certificate in the file (expected PEM: -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The listener's TLS: `cert` (PEM chain) and `key` (PEM), offering h2
/// and http/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_error(key, format!("not a PEM private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_error(cert, format!("certificate and key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Trust for https upstreams: the system's roots, or only `ca`.
pub fn client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    match ca {
        Some(ca) => client_config_for(Trust::CaFile(ca)),
        None => client_config_for(Trust::System),
    }
}

/// Which servers a client accepts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Certificates that chain to the system's roots (with the
    /// `native-roots` feature; an error without it).
    System,
    /// Certificates that chain to the CA(s) in this PEM file.
    CaFile(&'a Path),
    /// Any certificate, for any name (`--insecure`: self-signed staging
    /// servers). Handshake signatures are still checked, so the peer must
    /// hold the key of the certificate it shows.
    Any,
    /// No certificate at all: for a client that will not speak TLS (an
    /// http:// upstream), so that the system's store is not read for
    /// nothing.
    Nobody,
}

/// A client configuration for `trust`, without ALPN (callers set it).
pub fn client_config_for(trust: Trust<'_>) -> Result<ClientConfig, TlsError> {
    let ca = match trust {
        Trust::Any => {
            let verifier = Arc::new(AnyCertificate(provider()));
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_error(Path::new("TLS client"), e))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            return Ok(config);
        }
        Trust::CaFile(ca) => Some(ca),
        Trust::System | Trust::Nobody => None,
    };
    let mut roots = RootCertStore::empty();
    match ca {
        None if matches!(trust, Trust::Nobody) => {}
        Some(ca) => {
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error(ca, format!("not a usable CA certificate: {e}")))?;
            }
        }
        None => system_roots(&mut roots)?,
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(ca.unwrap_or(Path::new("system roots")), e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Adds the system's roots to `roots`.
#[cfg(feature = "native-roots")]
fn system_roots(roots: &mut RootCertStore) -> Result<(), TlsError> {
    // Unreadable entries in the system store are skipped, as every TLS
    // client does; an empty store fails at the first handshake.
    let loaded = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(loaded.certs);
    Ok(())
}

/// Built without the system's store: [`Trust::System`] cannot be had.
#[cfg(not(feature = "native-roots"))]
fn system_roots(_roots: &mut RootCertStore) -> Result<(), TlsError> {
    Err(tls_error(
        Path::new("system roots"),
        "this build cannot read the system's trust store (reprise-net's `native-roots` feature is off): give a CA file",
    ))
}

/// Accepts any certificate (see [`Trust::Any`]).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "native-roots")]
    #[test]
    fn system_trust_reads_the_store() {
        // An empty or unreadable store is not an error here: the first
        // handshake fails instead.
        assert!(client_config_for(Trust::System).is_ok());
    }

    #[cfg(not(feature = "native-roots"))]
    #[test]
    fn system_trust_says_what_is_missing() {
        let Err(e) = client_config_for(Trust::System) else {
            panic!("system trust without the native-roots feature");
        };
        assert!(e.to_string().contains("native-roots"), "{e}");
    }

    #[test]
    fn no_trust_never_reads_the_store() {
        let config = client_config_for(Trust::Nobody);
        assert!(config.is_ok());
    }
}
