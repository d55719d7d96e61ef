//! A real Redis server for the tests of `record --egress-db` and
//! `mock --db`: Debian's `redis-server` in the foreground, on a free port
//! of 127.0.0.1, without persistence, in a temporary working directory.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;

use crate::child::{free_port, log_tail, stop, wait_until_ready};

const NOT_INSTALLED: &str = "redis-server is not installed: run scripts/setup-tests.sh";

/// How to start a [`Redis`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// The password of the default user (`--requirepass`): clients must
    /// `AUTH` before anything else.
    pub password: Option<String>,
    /// Whether the server also listens for TLS (`--tls-port`, a
    /// self-signed certificate for localhost and 127.0.0.1, see
    /// [`Redis::cert_pem`]; clients are not asked for certificates).
    pub tls: bool,
}

/// A running Redis server; dropping it stops the server and removes its
/// directory.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    cert_pem: Option<String>,
    options: RedisOptions,
    // Last: removed after the server has stopped.
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server without a password.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server as `options` say and waits until it answers.
    pub fn start_with(options: RedisOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("reprise-redis-")
            .tempdir()
            .unwrap();
        let log_path = dir.path().join("redis.log");
        let cert_pem = options
            .tls
            .then(|| crate::postgres::write_certificate(dir.path()));
        for _ in 0..3 {
            let port = free_port();
            let tls_port = options.tls.then(free_port);
            let log = File::create(&log_path).unwrap();
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if let Some(password) = &options.password {
                command.args(["--requirepass", password]);
            }
            if let Some(tls_port) = tls_port {
                command
                    .args(["--tls-port", &tls_port.to_string()])
                    .args(["--tls-cert-file", "server.crt"])
                    .args(["--tls-key-file", "server.key"])
                    .args(["--tls-auth-clients", "no"]);
            }
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("{NOT_INSTALLED} ({e})"));
            if wait_until_ready(&mut child, || answers_ping(port)) {
                return Self {
                    child: Some(child),
                    port,
                    tls_port,
                    cert_pem,
                    options,
                    _dir: dir,
                };
            }
            let tail = log_tail(&log_path);
            if !tail.contains("Address already in use") {
                panic!("redis-server exited at start:\n{tail}");
            }
        }
        panic!(
            "redis-server could not bind a free port three times:\n{}",
            log_tail(&log_path)
        );
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port on 127.0.0.1, when started with `tls`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The self-signed certificate (PEM) the TLS port presents, when
    /// started with `tls`.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// The server's address, 127.0.0.1:port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A `redis://` URL, with the password when there is one.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The password, if the server requires one.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// Runs `redis-cli` with `args` against the server (authenticated when
    /// it needs a password) and returns what it printed, without the final
    /// newline. An error reply is printed, not a failure: redis-cli exits
    /// 0; this panics only when redis-cli itself fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.options.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command.args(args).output().unwrap_or_else(|e| {
            panic!("redis-cli is not installed ({e}): run scripts/setup-tests.sh")
        });
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    }

    /// Stops the server (SIGTERM; it saves nothing), bounded by a deadline
    /// after which it is killed. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::TERM);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a server on `port` answers a PING at all: `+PONG`, or
/// `-NOAUTH` when it wants a password first (it is serving either way).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match stream.read(&mut reply) {
        Ok(n) => {
            let reply = &reply[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        Err(_) => false,
    }
}
