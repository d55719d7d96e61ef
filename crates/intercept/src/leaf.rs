//! Leaf certificates for the hosts clients tunnel to, signed by the local
//! CA: minted on first use and kept in a bounded cache, one TLS server
//! configuration per (host, ALPN protocol chosen).
//!
//! Every leaf carries the same key (made once per [`Leaves`]): a leaf is
//! then one signature, not a key generation, and the CA's signature is
//! what clients check. Minting happens inline on the task that needs it
//! (well under a millisecond); two tasks asking for a new host at once
//! may both mint, and the second result is dropped.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::ca::{CaError, LocalCa, mint_error};

/// How many hosts the cache keeps by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Leaf certificates signed by a [`LocalCa`], per host.
pub struct Leaves {
    ca: Arc<LocalCa>,
    key: KeyPair,
    signing: Arc<dyn rustls::sign::SigningKey>,
    provider: Arc<CryptoProvider>,
    capacity: usize,
    cache: Mutex<HashMap<String, Entry>>,
    clock: AtomicU64,
    minted: AtomicU64,
}

impl std::fmt::Debug for Leaves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaves")
            .field("ca", &self.ca)
            .field("capacity", &self.capacity)
            .field("minted", &self.minted())
            .finish_non_exhaustive()
    }
}

struct Entry {
    key: Arc<CertifiedKey>,
    /// Server configurations by the ALPN protocol they select (at most a
    /// few: none, h2, http/1.1).
    configs: Vec<(Option<Vec<u8>>, Arc<ServerConfig>)>,
    used: u64,
}

impl Leaves {
    /// Leaves signed by `ca`, keeping up to [`DEFAULT_CAPACITY`] hosts.
    pub fn new(ca: Arc<LocalCa>) -> Result<Leaves, CaError> {
        Leaves::with_capacity(ca, DEFAULT_CAPACITY)
    }

    /// Leaves signed by `ca`, keeping up to `capacity` hosts (at least 1).
    pub fn with_capacity(ca: Arc<LocalCa>, capacity: usize) -> Result<Leaves, CaError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = KeyPair::generate().map_err(|e| mint_error("the leaf key", e))?;
        let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| CaError::Mint {
            what: "the leaf key".to_string(),
            reason: e.to_string(),
        })?;
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| CaError::Mint {
                what: "the leaf key".to_string(),
                reason: e.to_string(),
            })?;
        Ok(Leaves {
            ca,
            key,
            signing,
            provider,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            minted: AtomicU64::new(0),
        })
    }

    /// The CA that signs the leaves.
    pub fn ca(&self) -> &Arc<LocalCa> {
        &self.ca
    }

    /// How many leaves were minted so far (cache misses).
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// The leaf for `host` (a DNS name or an IP literal, IPv6 with or
    /// without brackets), with the CA certificate as its chain.
    pub fn certified_key(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let host = normalize(host);
        if let Some(entry) = self.lock().get_mut(host.as_str()) {
            entry.used = self.tick();
            return Ok(entry.key.clone());
        }
        let minted = self.mint(&host)?;
        let mut cache = self.lock();
        let used = self.tick();
        self.make_room(&mut cache);
        let entry = cache.entry(host).or_insert_with(|| Entry {
            key: minted,
            configs: Vec::new(),
            used,
        });
        Ok(entry.key.clone())
    }

    /// A TLS server configuration that shows `host`'s leaf and selects
    /// `alpn` (when the client offered it; none when `None`).
    pub fn server_config(
        &self,
        host: &str,
        alpn: Option<&[u8]>,
    ) -> Result<Arc<ServerConfig>, CaError> {
        let name = normalize(host);
        if let Some(entry) = self.lock().get_mut(name.as_str()) {
            entry.used = self.tick();
            if let Some((_, config)) = entry.configs.iter().find(|(a, _)| a.as_deref() == alpn) {
                return Ok(config.clone());
            }
        }
        let key = self.certified_key(&name)?;
        let config = self.build_config(key, alpn)?;
        if let Some(entry) = self.lock().get_mut(name.as_str())
            && entry.configs.len() < 8
        {
            entry
                .configs
                .push((alpn.map(<[u8]>::to_vec), config.clone()));
        }
        Ok(config)
    }

    fn build_config(
        &self,
        key: Arc<CertifiedKey>,
        alpn: Option<&[u8]>,
    ) -> Result<Arc<ServerConfig>, CaError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Mint {
                what: "a TLS configuration".to_string(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneLeaf(key)));
        config.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
        Ok(Arc::new(config))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a consistent map (every
        // write is one insert or remove): keep using it.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Evicts the least recently used eighth of the cache when it is
    /// full: one scan per many inserts, not one per insert.
    fn make_room(&self, cache: &mut HashMap<String, Entry>) {
        if cache.len() < self.capacity {
            return;
        }
        let mut ages: Vec<u64> = cache.values().map(|e| e.used).collect();
        let drop = (self.capacity / 8).max(1);
        ages.sort_unstable();
        let cutoff = ages[(drop - 1).min(ages.len() - 1)];
        cache.retain(|_, e| e.used > cutoff);
    }

    fn mint(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let mut params = CertificateParams::default();
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e| mint_error(host, e))?,
            ),
        };
        params.subject_alt_names = vec![san];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        name.push(DnType::OrganizationName, "reprise");
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial(host));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params
            .signed_by(&self.key, &self.ca.issuer)
            .map_err(|e| mint_error(host, e))?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        let chain: Vec<CertificateDer<'static>> =
            vec![cert.der().clone(), self.ca.certificate().clone()];
        Ok(Arc::new(CertifiedKey::new(chain, self.signing.clone())))
    }
}

/// Host names compare without case and IPv6 literals without brackets.
fn normalize(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

/// A unique, positive 16-byte serial: every leaf shares one key, so the
/// serial is what tells two leaves of the CA apart.
fn serial(host: &str) -> SerialNumber {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let mut bytes = Vec::with_capacity(16);
    for round in 0u8..2 {
        let mut hasher = state.build_hasher();
        hasher.write(host.as_bytes());
        hasher.write_u8(round);
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        bytes.extend_from_slice(&hasher.finish().to_be_bytes());
    }
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// A certificate resolver that always shows one leaf.
#[derive(Debug)]
struct OneLeaf(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneLeaf {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rustls::pki_types::ServerName;

    fn leaves(capacity: usize) -> (tempfile::TempDir, Leaves) {
        let dir = tempfile::tempdir().unwrap();
        crate::ca::init(dir.path(), false).unwrap();
        let ca = LocalCa::load(dir.path()).unwrap();
        (dir, Leaves::with_capacity(ca, capacity).unwrap())
    }

    /// A rustls client trusting only the CA: does it accept the leaf
    /// `config` shows when it connects to `name`?
    fn handshake(
        ca: &CertificateDer<'static>,
        config: Arc<ServerConfig>,
        name: &str,
    ) -> Result<Option<Vec<u8>>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(config).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut read = &buf[..];
            while !read.is_empty() {
                server.read_tls(&mut read).unwrap();
            }
            server.process_new_packets()?;
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut read = &buf[..];
            while !read.is_empty() {
                client.read_tls(&mut read).unwrap();
            }
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(client.alpn_protocol().map(<[u8]>::to_vec));
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_the_leaf_for_its_host_only() {
        let (_dir, leaves) = leaves(16);
        let ca = leaves.ca().certificate().clone();
        let config = leaves
            .server_config("api.example.com", Some(b"h2"))
            .unwrap();
        assert_eq!(
            handshake(&ca, config.clone(), "api.example.com").unwrap(),
            Some(b"h2".to_vec())
        );
        let err = handshake(&ca, config, "other.example.com").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                    | rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForNameContext { .. }
                    )
            ),
            "{err:?}"
        );
        // An IP literal gets an IP SAN; http/1.1 is chosen when asked.
        let config = leaves
            .server_config("127.0.0.1", Some(b"http/1.1"))
            .unwrap();
        assert_eq!(
            handshake(&ca, config, "127.0.0.1").unwrap(),
            Some(b"http/1.1".to_vec())
        );
        let config = leaves.server_config("[::1]", None).unwrap();
        assert_eq!(handshake(&ca, config, "::1").unwrap(), None);
    }

    #[test]
    fn minted_once_per_host_and_bounded() {
        let (_dir, leaves) = leaves(8);
        let a = leaves.certified_key("A.example").unwrap();
        let b = leaves.certified_key("a.example").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        leaves.server_config("a.example", Some(b"h2")).unwrap();
        leaves.server_config("a.example", Some(b"h2")).unwrap();
        assert_eq!(leaves.minted(), 1);
        for i in 0..20 {
            leaves.certified_key(&format!("h{i}.example")).unwrap();
            // The host in use stays.
            leaves.certified_key("a.example").unwrap();
        }
        assert!(leaves.lock().len() <= 8);
        assert_eq!(leaves.minted(), 21, "a.example was never evicted");
        // A name that is no DNS name is an error, not a panic.
        assert!(leaves.certified_key("b\u{e4}d.example").is_err());
    }
}
