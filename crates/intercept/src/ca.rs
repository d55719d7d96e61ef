//! The local CA that signs the leaf certificates the front shows to
//! clients: where it lives, how `reprise ca init` makes it, how it is
//! loaded, and the environment variables that make clients trust it.
//!
//! A CA directory holds `ca.pem` (the CA certificate), `ca-key.pem` (its
//! key) and `bundle.pem` (the system's roots followed by the CA
//! certificate, for `SSL_CERT_FILE`, which replaces OpenSSL's bundle
//! rather than adding to it). The directory is created 0700, every file
//! 0600, each written to a temporary file and renamed into place, so a
//! symbolic link planted at a file's name is replaced, never followed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA certificate's file name in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name in a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The bundle (system roots + the CA) in a CA directory.
pub const BUNDLE_FILE: &str = "bundle.pem";
/// The environment variable naming the CA directory.
pub const CA_DIR_ENV: &str = "REPRISE_CA_DIR";
/// The CA certificate's common name.
pub const CA_NAME: &str = "reprise local CA";
/// Where Debian (and most distributions) keep the system's roots.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A CA that cannot be made, found or used, and why.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// No directory given and none can be derived from the environment.
    #[error("no CA directory: give --ca-dir, or set {CA_DIR_ENV}, XDG_DATA_HOME or HOME")]
    NoDirectory,
    /// The directory has no CA.
    #[error("no reprise CA in {}: run `reprise ca init{}`", dir.display(), dir_flag(dir))]
    Missing {
        /// The CA directory.
        dir: PathBuf,
    },
    /// `init` found a CA and was not told to replace it.
    #[error(
        "{} already holds a reprise CA; clients may trust it already: keep it, or replace it with `reprise ca init --force`",
        dir.display()
    )]
    Exists {
        /// The CA directory.
        dir: PathBuf,
    },
    /// A file or directory cannot be read, created or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done ("read", "create the directory", ...).
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not what it should be (bad PEM, not a certificate).
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error(
        "{} does not go with {}: the key is not the certificate's (run `reprise ca init --force` to make a new CA)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// Making a certificate failed (rcgen).
    #[error("cannot make a certificate for {what}: {reason}")]
    Mint {
        /// What was being made.
        what: String,
        /// rcgen's reason.
        reason: String,
    },
}

fn dir_flag(dir: &Path) -> String {
    format!(" --dir {}", dir.display())
}

fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> CaError {
    CaError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The CA directory: `explicit` (`--dir`/`--ca-dir`), else
/// `$REPRISE_CA_DIR`, else `$XDG_DATA_HOME/reprise/ca`, else
/// `$HOME/.local/share/reprise/ca`.
pub fn resolve_dir(explicit: Option<&Path>) -> Result<PathBuf, CaError> {
    resolve_dir_with(explicit, |name| std::env::var_os(name))
}

/// [`resolve_dir`] with the environment read through `var`.
pub fn resolve_dir_with(
    explicit: Option<&Path>,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, CaError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(CA_DIR_ENV) {
        return Ok(dir);
    }
    if let Some(data) = set("XDG_DATA_HOME") {
        return Ok(data.join("reprise").join("ca"));
    }
    if let Some(home) = set("HOME") {
        return Ok(home.join(".local/share/reprise/ca"));
    }
    Err(CaError::NoDirectory)
}

/// The files of a CA directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The directory.
    pub dir: PathBuf,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
    /// The CA key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The system's roots followed by the CA certificate (PEM).
    pub bundle: PathBuf,
}

impl CaFiles {
    /// The files of the CA in `dir`.
    pub fn in_dir(dir: &Path) -> CaFiles {
        CaFiles {
            dir: dir.to_path_buf(),
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
            bundle: dir.join(BUNDLE_FILE),
        }
    }
}

/// Creates a CA in `dir` (made 0700 if missing): an ECDSA P-256 key and
/// a self-signed certificate named "reprise local CA", valid ten years,
/// and the bundle. An existing CA is an error unless `force`.
pub fn init(dir: &Path, force: bool) -> Result<CaFiles, CaError> {
    let files = CaFiles::in_dir(dir);
    create_dir(dir)?;
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if !force && (exists(&files.cert) || exists(&files.key)) {
        return Err(CaError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    let key = KeyPair::generate().map_err(|e| mint_error(CA_NAME, e))?;
    let cert = ca_params()
        .self_signed(&key)
        .map_err(|e| mint_error(CA_NAME, e))?;
    // The key first: a certificate without its key is a broken CA, a key
    // without a certificate is no CA at all (and `init` can run again).
    write_private(&files.key, key.serialize_pem().as_bytes(), force)?;
    write_private(&files.cert, cert.pem().as_bytes(), true)?;
    write_bundle(&files)?;
    Ok(files)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    name.push(DnType::OrganizationName, "reprise");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

pub(crate) fn mint_error(what: &str, e: rcgen::Error) -> CaError {
    CaError::Mint {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io_error(
                dir,
                "use as the CA directory",
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            ));
        }
        Err(_) => {}
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, "create the directory", e))
}

/// Writes `bytes` to `path`, mode 0600, through a temporary file beside
/// it renamed into place: a symlink at `path` is replaced, never
/// followed. Without `replace`, an existing `path` is left alone and an
/// error.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile creates it O_EXCL, mode 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(".reprise-ca.")
        .tempfile_in(dir)
        .map_err(|e| io_error(path, "create", e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_error(path, "write", e))?;
    let persisted = if replace {
        temp.persist(path).map(drop)
    } else {
        temp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| io_error(path, "write", e.error))
}

/// Writes the bundle: the system's roots (when the system has a bundle)
/// followed by the CA certificate.
pub fn write_bundle(files: &CaFiles) -> Result<(), CaError> {
    let ca = std::fs::read(&files.cert).map_err(|e| read_error(files, &files.cert, e))?;
    let mut bundle = std::fs::read(SYSTEM_BUNDLE).unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(format!("# {CA_NAME}\n").as_bytes());
    bundle.extend_from_slice(&ca);
    write_private(&files.bundle, &bundle, true)
}

fn read_error(files: &CaFiles, path: &Path, e: std::io::Error) -> CaError {
    if e.kind() != std::io::ErrorKind::NotFound {
        return io_error(path, "read", e);
    }
    let dir = &files.dir;
    let dangling = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_symlink())
        && std::fs::metadata(dir).is_err();
    if dangling {
        return io_error(
            dir,
            "use as the CA directory (a symbolic link to nothing)",
            e,
        );
    }
    CaError::Missing { dir: dir.clone() }
}

/// A loaded CA: its certificate and the issuer that signs leaves.
pub struct LocalCa {
    files: CaFiles,
    cert: CertificateDer<'static>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.files.dir)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA in `dir`: a clear error when it is missing,
    /// unreadable, malformed, or when the key is not the certificate's.
    pub fn load(dir: &Path) -> Result<Arc<LocalCa>, CaError> {
        let files = CaFiles::in_dir(dir);
        let cert_pem =
            std::fs::read(&files.cert).map_err(|e| read_error(&files, &files.cert, e))?;
        let key_pem = std::fs::read(&files.key).map_err(|e| read_error(&files, &files.key, e))?;
        let cert = CertificateDer::from_pem_slice(&cert_pem).map_err(|e| CaError::Malformed {
            path: files.cert.clone(),
            reason: format!("not a PEM certificate (-----BEGIN CERTIFICATE-----): {e}"),
        })?;
        let key_text = std::str::from_utf8(&key_pem).map_err(|_| CaError::Malformed {
            path: files.key.clone(),
            reason: "not a PEM private key: the file is not text".to_string(),
        })?;
        let key = KeyPair::from_pem(key_text).map_err(|e| CaError::Malformed {
            path: files.key.clone(),
            reason: format!("not a PEM private key (-----BEGIN PRIVATE KEY-----): {e}"),
        })?;
        check_pair(&files, &cert, &key)?;
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| CaError::Malformed {
            path: files.cert.clone(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
        Ok(Arc::new(LocalCa {
            files,
            cert,
            issuer,
        }))
    }

    /// The CA certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA's files.
    pub fn files(&self) -> &CaFiles {
        &self.files
    }
}

/// The key must be the one whose public half the certificate carries.
fn check_pair(
    files: &CaFiles,
    cert: &CertificateDer<'static>,
    key: &KeyPair,
) -> Result<(), CaError> {
    let provider = rustls::crypto::ring::default_provider();
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| CaError::Malformed {
        path: files.key.clone(),
        reason: format!("not a usable private key: {e}"),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| CaError::Malformed {
            path: files.key.clone(),
            reason: format!("not a usable private key: {e}"),
        })?;
    let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], signing);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CaError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        Err(e) => Err(CaError::Malformed {
            path: files.cert.clone(),
            reason: format!("not a usable certificate: {e}"),
        }),
    }
}

/// Shell `export` lines pointing each ecosystem's clients at the CA in
/// `files` (the bundle where a variable replaces the system's roots),
/// with a comment on Java, whose trust store is not a variable. Writes
/// the bundle first if it is missing.
pub fn env_script(files: &CaFiles) -> Result<String, CaError> {
    if std::fs::symlink_metadata(&files.bundle).is_err() {
        write_bundle(files)?;
    } else {
        // The CA must be there (and readable) for the lines to mean anything.
        std::fs::metadata(&files.cert).map_err(|e| read_error(files, &files.cert, e))?;
    }
    let bundle = shell_quote(&files.bundle);
    let ca = shell_quote(&files.cert);
    Ok(format!(
        "# reprise local CA: {dir}\n\
         # OpenSSL-based clients (Python ssl, Ruby, PHP, curl, git): the system roots + the reprise CA\n\
         export SSL_CERT_FILE={bundle}\n\
         # Python requests (certifi's bundle otherwise)\n\
         export REQUESTS_CA_BUNDLE={bundle}\n\
         # curl built on OpenSSL honours this too\n\
         export CURL_CA_BUNDLE={bundle}\n\
         # Node.js adds these to its built-in roots\n\
         export NODE_EXTRA_CA_CERTS={ca}\n\
         # gRPC C-core (Python grpcio, Ruby, PHP, C++): replaces its roots\n\
         export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={bundle}\n\
         # Java reads neither: import the CA into a trust store and point the JVM at it:\n\
         #   keytool -importcert -alias reprise -file {ca} -keystore reprise.jks -storepass changeit -noprompt\n\
         #   java -Djavax.net.ssl.trustStore=reprise.jks -Djavax.net.ssl.trustStorePassword=changeit ...\n",
        dir = files.dir.display(),
    ))
}

/// `path` quoted for a POSIX shell.
fn shell_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,".contains(&b));
    if plain && !text.is_empty() {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn directory_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = env(&[(CA_DIR_ENV, "/r"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            resolve_dir_with(Some(Path::new("/given")), all).unwrap(),
            PathBuf::from("/given")
        );
        assert_eq!(resolve_dir_with(None, all).unwrap(), PathBuf::from("/r"));
        let xdg = env(&[(CA_DIR_ENV, ""), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            resolve_dir_with(None, xdg).unwrap(),
            PathBuf::from("/x/reprise/ca")
        );
        let home = env(&[("HOME", "/h")]);
        assert_eq!(
            resolve_dir_with(None, home).unwrap(),
            PathBuf::from("/h/.local/share/reprise/ca")
        );
        let none = env(&[]);
        assert!(matches!(
            resolve_dir_with(None, none),
            Err(CaError::NoDirectory)
        ));
    }

    #[test]
    fn init_then_load_with_private_modes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/ca");
        let files = init(&dir, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert), 0o600);
        assert_eq!(mode(&files.bundle), 0o600);
        let bundle = std::fs::read_to_string(&files.bundle).unwrap();
        let ca = std::fs::read_to_string(&files.cert).unwrap();
        assert!(bundle.ends_with(&ca));
        let loaded = LocalCa::load(&dir).unwrap();
        assert_eq!(loaded.files(), &files);

        // Twice without --force: refused, the CA unchanged.
        let err = init(&dir, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), ca);
        init(&dir, true).unwrap();
        assert_ne!(std::fs::read_to_string(&files.cert).unwrap(), ca);
    }

    #[test]
    fn a_symlink_at_the_key_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dir = root.path().join("ca");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(CA_KEY_FILE)).unwrap();
        // Without --force the planted link counts as an existing CA.
        assert!(matches!(init(&dir, false), Err(CaError::Exists { .. })));
        init(&dir, true).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(
            !std::fs::symlink_metadata(dir.join(CA_KEY_FILE))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn load_errors_are_clear() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("nothing");
        let err = LocalCa::load(&missing).unwrap_err().to_string();
        assert!(err.contains("reprise ca init"), "{err}");

        // A file where the directory should be.
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = LocalCa::load(&file).unwrap_err().to_string();
        assert!(err.contains("file/ca.pem: cannot read"), "{err}");
        assert!(matches!(init(&file, false), Err(CaError::Io { .. })));

        // A dangling symlink as the directory.
        let dangling = root.path().join("dangling");
        std::os::unix::fs::symlink(root.path().join("gone"), &dangling).unwrap();
        let err = LocalCa::load(&dangling).unwrap_err().to_string();
        assert!(err.contains("symbolic link to nothing"), "{err}");

        // Bad PEM in the key, then a key of another CA.
        let dir = root.path().join("ca");
        let files = init(&dir, false).unwrap();
        let good_key = std::fs::read(&files.key).unwrap();
        std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nnot base64!\n").unwrap();
        let err = LocalCa::load(&dir).unwrap_err().to_string();
        assert!(err.contains("ca-key.pem: not a PEM private key"), "{err}");
        let other = root.path().join("other");
        let other_files = init(&other, false).unwrap();
        std::fs::copy(&other_files.key, &files.key).unwrap();
        let err = LocalCa::load(&dir).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
        std::fs::write(&files.key, good_key).unwrap();
        std::fs::write(&files.cert, "hello").unwrap();
        let err = LocalCa::load(&dir).unwrap_err().to_string();
        assert!(err.contains("ca.pem: not a PEM certificate"), "{err}");
    }

    #[test]
    fn env_names_every_ecosystem_and_writes_a_missing_bundle() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("my ca");
        let files = init(&dir, false).unwrap();
        std::fs::remove_file(&files.bundle).unwrap();
        let script = env_script(&files).unwrap();
        assert!(files.bundle.exists());
        let bundle = format!("'{}'", files.bundle.display());
        for var in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        ] {
            assert!(
                script.contains(&format!("export {var}={bundle}\n")),
                "{script}"
            );
        }
        let ca = format!("'{}'", files.cert.display());
        assert!(script.contains(&format!("export NODE_EXTRA_CA_CERTS={ca}\n")));
        assert!(script.contains("keytool -importcert -alias reprise"));
        assert!(script.contains("-Djavax.net.ssl.trustStore"));
    }
}
