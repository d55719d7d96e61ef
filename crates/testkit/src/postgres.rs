//! A real PostgreSQL server for the tests of `record --egress-db` and
//! `mock --db`: Debian's PostgreSQL (the newest version installed under
//! `/usr/lib/postgresql`), a fresh cluster in a temporary directory,
//! listening on a free port of 127.0.0.1 only, with the authentication
//! method and TLS a test asks for.
//!
//! initdb and postgres refuse to run as root: under root (as in CI) the
//! directory belongs to user `postgres` and both run through `setpriv`;
//! otherwise they run as the current user.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::process::Signal;

use crate::child::{free_port, log_tail, stop, wait_until_ready};

const NOT_INSTALLED: &str = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
                             run scripts/setup-tests.sh";

/// How clients prove who they are over TCP (the `pg_hba.conf` method for
/// host 127.0.0.1/32). Each is a different start-up conversation on the
/// wire, which the recording proxy must pass through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgAuth {
    /// No password asked (`trust`).
    #[default]
    Trust,
    /// MD5 challenge (`md5`; the password is stored MD5-hashed so the
    /// server does not upgrade the exchange to SCRAM).
    Md5,
    /// SCRAM-SHA-256 (`scram-sha-256`).
    Scram,
    /// The password in cleartext (`password`).
    Password,
}

/// How to start a [`Postgres`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The authentication method for TCP clients.
    pub auth: PgAuth,
    /// The password of user `postgres` (set whatever the method, so that
    /// [`Postgres::url`] always works).
    pub password: String,
    /// Whether the server offers TLS (`ssl=on`, a self-signed certificate
    /// for `localhost` and 127.0.0.1; plaintext stays allowed).
    pub tls: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            auth: PgAuth::Trust,
            password: "reprise".to_owned(),
            tls: false,
        }
    }
}

/// A running PostgreSQL server; dropping it stops the server and removes
/// its directory.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    options: PostgresOptions,
    cert_pem: Option<String>,
    // Last: removed after the server has stopped.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a server with the default options (trust, no TLS).
    pub fn start() -> Self {
        Self::start_with(PostgresOptions::default())
    }

    /// Starts a server as `options` say and waits until it accepts
    /// connections.
    pub fn start_with(options: PostgresOptions) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("reprise-pg-")
            .tempdir()
            .unwrap();
        let cert_pem = options.tls.then(|| write_certificate(dir.path()));
        let as_root = rustix::process::getuid().is_root();
        if as_root {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
            );
        }
        let data = dir.path().join("data");
        run_ok(
            as_server_user(&bin.join("initdb"), as_root, dir.path())
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"]),
        );
        write_hba(&data, options.auth);
        let mut server = Self {
            child: None,
            port: 0,
            bin,
            options,
            cert_pem,
            dir,
        };
        server.launch(as_root);
        server.set_password();
        server
    }

    /// Starts postgres on a free port, retrying with another port when
    /// someone else took it in the meantime.
    fn launch(&mut self, as_root: bool) {
        let log_path = self.dir.path().join("postgres.log");
        for _ in 0..3 {
            let port = free_port();
            let log = File::create(&log_path).unwrap();
            let mut command = as_server_user(&self.bin.join("postgres"), as_root, self.dir.path());
            command
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(self.dir.path())
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=50"])
                .args(["-c", self.password_encryption()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if self.options.tls {
                command.args(["-c", "ssl=on"]);
                command.arg("-c").arg(format!(
                    "ssl_cert_file={}",
                    self.dir.path().join("server.crt").display()
                ));
                command.arg("-c").arg(format!(
                    "ssl_key_file={}",
                    self.dir.path().join("server.key").display()
                ));
            }
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("{NOT_INSTALLED} ({e})"));
            let isready = self.bin.join("pg_isready");
            let ready = wait_until_ready(&mut child, || {
                Command::new(&isready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success())
            });
            if ready {
                self.child = Some(child);
                self.port = port;
                return;
            }
            let tail = log_tail(&log_path);
            if !tail.contains("could not bind") {
                panic!("postgres exited at start:\n{tail}");
            }
        }
        panic!(
            "postgres could not bind a free port three times:\n{}",
            log_tail(&log_path)
        );
    }

    /// The `password_encryption` setting: MD5 authentication needs the
    /// password stored as an MD5 hash, or the server answers with SCRAM.
    fn password_encryption(&self) -> &'static str {
        match self.options.auth {
            PgAuth::Md5 => "password_encryption=md5",
            _ => "password_encryption=scram-sha-256",
        }
    }

    /// Sets the password of `postgres` over the Unix socket (trusted: it
    /// lives in the test's own directory).
    fn set_password(&self) {
        let sql = format!(
            "ALTER USER postgres PASSWORD '{}'",
            self.options.password.replace('\'', "''")
        );
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setting the password failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address, 127.0.0.1:port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A libpq URL for user `postgres`, database `postgres`, with the
    /// password.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            percent_encode(&self.options.password),
            self.port
        )
    }

    /// The password of user `postgres`.
    pub fn password(&self) -> &str {
        &self.options.password
    }

    /// The self-signed certificate (PEM) the server presents, when it was
    /// started with TLS: a client that verifies trusts it as its root.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// The directory of PostgreSQL's programs (psql, pgbench, ...).
    pub fn bin_dir(&self) -> PathBuf {
        self.bin.clone()
    }

    /// Runs `sql` with psql over TCP as `postgres` (unaligned, tuples
    /// only: `-At`) and returns what it printed, without the final
    /// newline. Panics with psql's error when it fails.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .env("PGPASSWORD", &self.options.password)
            .env_remove("PGSSLMODE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql -c {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    }

    /// Stops the server (a fast shutdown: open sessions are ended), bounded
    /// by a deadline after which it is killed. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::INT);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/N/bin` that holds a `postgres`.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let entries = fs::read_dir(root).unwrap_or_else(|e| panic!("{NOT_INSTALLED} ({e})"));
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}

/// A command that runs `program` as the user the server runs as: user
/// `postgres` under root, else the current user. The working directory is
/// the server's own: `postgres` may not be allowed into the test's.
fn as_server_user(program: &Path, as_root: bool, dir: &Path) -> Command {
    let mut command = if as_root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    };
    command.current_dir(dir);
    command
}

/// Runs `command` to completion and panics with its output if it failed.
fn run_ok(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} ({NOT_INSTALLED}?)"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `pg_hba.conf`: the Unix socket trusted (only this test can reach
/// it), TCP from 127.0.0.1 with `auth`.
fn write_hba(data: &Path, auth: PgAuth) {
    let method = match auth {
        PgAuth::Trust => "trust",
        PgAuth::Md5 => "md5",
        PgAuth::Scram => "scram-sha-256",
        PgAuth::Password => "password",
    };
    let hba = format!("local all all trust\nhost all all 127.0.0.1/32 {method}\n");
    // Written into a file that initdb made, so it keeps its owner.
    fs::write(data.join("pg_hba.conf"), hba).unwrap();
}

/// Writes a self-signed certificate for localhost and 127.0.0.1 and its
/// key (mode 0600, as postgres demands) into `dir` (`server.crt`,
/// `server.key`) and returns the certificate's PEM.
pub(crate) fn write_certificate(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let pem = certified.cert.pem();
    fs::write(dir.join("server.crt"), &pem).unwrap();
    let key = dir.join("server.key");
    fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    pem
}

/// Percent-encodes what a URL's userinfo may not hold as it is.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_percent_encoded_in_urls() {
        assert_eq!(percent_encode("a b@c:d/é"), "a%20b%40c%3Ad%2F%C3%A9");
        assert_eq!(percent_encode("Plain-1.x_~"), "Plain-1.x_~");
    }
}
