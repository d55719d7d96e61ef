//! What the end-to-end tests of the binary share: running `reprise
//! record` (also under a file-descriptor limit), starting nginx, calling
//! curl, reading tapes.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reprise_model::Exchange;

/// A `reprise record`, `mock` or `mirror` process; killed if the test
/// ends without stopping it.
pub struct Recorder {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub stderr: mpsc::Receiver<String>,
}

impl Recorder {
    /// Starts the binary and waits (bounded) for its "recording" line.
    pub fn start(upstream: &str, tape: &Path, extra: &[&str]) -> Recorder {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
        command
            .args([
                "record",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--out",
            ])
            .arg(tape)
            // Two serving threads whatever the machine, so that the tests
            // see calls recorded by different threads.
            .args(if extra.contains(&"--threads") {
                &[][..]
            } else {
                &["--threads", "2"][..]
            })
            .args(extra);
        Recorder::spawn(command)
    }

    /// Starts `reprise mock SOURCE --listen 127.0.0.1:0 EXTRA...` and waits
    /// (bounded) for its "mocking" line.
    pub fn mock(source: &Path, extra: &[&str]) -> Recorder {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
        command
            .arg("mock")
            .arg(source)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra);
        Recorder::spawn(command)
    }

    /// Starts `reprise mirror` (two serving threads) in front of `primary`,
    /// copying to `shadow`, recording into `tape`, and waits (bounded) for
    /// its "mirroring" line.
    pub fn mirror(primary: &str, shadow: &str, tape: &Path, extra: &[&str]) -> Recorder {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
        command
            .args(["mirror", "--listen", "127.0.0.1:0", "--threads", "2"])
            .args(["--upstream", primary, "--shadow", shadow, "--out"])
            .arg(tape)
            .args(extra);
        Recorder::spawn(command)
    }

    /// Starts `reprise ARGS` (`record`, `mock` or `mirror`, listening on
    /// 127.0.0.1:0) under `prlimit --nofile=NOFILE` (util-linux's prlimit
    /// sets the limit and execs: the process is reprise's) and waits
    /// (bounded) for its first line.
    pub fn limited(nofile: u32, args: &[&str]) -> Recorder {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_reprise"))
            .args(args);
        Recorder::spawn(command)
    }

    /// Runs `command` (reprise, or a shell that runs it with the same
    /// stderr) and reads the address it serves from its first line on
    /// stderr. The process leads a process group of its own, so that
    /// dropping the `Recorder` ends whatever it started too (a shell's
    /// reprise).
    pub fn spawn(mut command: Command) -> Recorder {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("reprise starts serving within 20 s");
        let addr = line
            .split_whitespace()
            .find_map(|w| {
                w.strip_prefix("http://")
                    .or_else(|| w.strip_prefix("https://"))
            })
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        let admin = line
            .split("metrics: http://")
            .nth(1)
            .map(|rest| rest.split('/').next().unwrap().parse().unwrap());
        Recorder {
            child: Some(child),
            addr,
            admin,
            stderr: rx,
        }
    }

    /// The process started (reprise, or the shell that runs it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `/healthz` now (started with `--admin`): its status code and body.
    pub fn health(&self) -> (String, String) {
        let admin = self.admin.expect("started with --admin");
        let (out, _) = curl(&["-w", "\n%{http_code}", &format!("http://{admin}/healthz")]);
        let (body, code) = out.rsplit_once('\n').unwrap_or((out.as_str(), ""));
        (code.to_string(), body.to_string())
    }

    /// The next stderr line containing `what` (20 s at most); the lines
    /// read before it go to `skipped` (shown if it never comes).
    pub fn line_with(&self, what: &str, skipped: &mut Vec<String>) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no line with {what:?} ({e}); before: {skipped:?}"));
            if line.contains(what) {
                return line;
            }
            skipped.push(line);
        }
    }

    /// `/metrics` now (the process was started with `--admin`).
    pub fn metrics(&self) -> String {
        let admin = self.admin.expect("started with --admin");
        curl(&[&format!("http://{admin}/metrics")]).0
    }

    /// Polls `/metrics` until the counter `name` (a full series name, its
    /// labels included) reaches `want`, 20 s at most; gives the text.
    pub fn wait_for_counter(&self, name: &str, want: u64) -> String {
        let mut text = String::new();
        eventually(&format!("{name} reaching {want}"), 20, || {
            text = self.metrics();
            counter(&text, name) == want
        });
        text
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `signal`, waits (bounded) for the exit; returns the exit code
    /// and the rest of stderr.
    pub fn stop(mut self, signal: &str) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        // The shell's own `kill`: no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill {signal} {}", child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reprise did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The rest of stderr, to its end: the thread reading it may not
        // have passed on the last lines yet when the process is gone.
        let mut rest = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stderr still open 10 s after the exit")
                }
            }
        }
        (code, rest.join("\n"))
    }
}

impl Recorder {
    /// Stops with `signal` and checks that it exited 0; returns the rest
    /// of stderr.
    pub fn stop_cleanly(self, signal: &str) -> String {
        let (code, stderr) = self.stop(signal);
        assert_eq!(code, 0, "reprise exited {code}: {stderr}");
        stderr
    }
}

impl Drop for Recorder {
    /// Kills the whole process group: the process started and anything it
    /// started (a shell's reprise, which would otherwise hold its port
    /// and, under `unshare`, its mount namespace).
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tape's exchanges in the order the calls started: a proxy with
/// several serving threads writes each thread's blocks as they fill.
pub fn read_tape(path: &Path) -> Vec<Exchange> {
    let mut exchanges: Vec<Exchange> = reprise_tape::TapeReader::open(path)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    exchanges.sort_by_key(|e| e.recorded_at_ns);
    exchanges
}

/// Writes `exchanges` to a new tape at `path`, in this order.
pub fn write_exchanges(path: &Path, exchanges: &[Exchange]) {
    let mut writer = reprise_tape::TapeWriter::create(path, Default::default()).unwrap();
    for exchange in exchanges {
        writer.write(exchange).unwrap();
    }
    writer.finish().unwrap();
}

/// The value of the series `name` (labels included) in Prometheus text,
/// 0 when absent.
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

pub fn temp_tape(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// `n` calls through `recorder` on one keep-alive connection (curl),
/// paths `/a.json?TAG=i`; each must be answered 200.
pub fn calls(recorder: &Recorder, tag: &str, n: usize) {
    let urls: Vec<String> = (0..n)
        .map(|i| recorder.url(&format!("/a.json?{tag}={i}")))
        .collect();
    let mut args = vec!["-w", "\n%{http_code}\n"];
    args.extend(urls.iter().map(String::as_str));
    let (codes, _) = curl(&args);
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), n, "{codes}");
}

pub fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// nginx from Debian's packages (scripts/install-nginx.sh), serving JSON
/// files over HTTP/1.1 on one port and h2c on another, stopped on drop.
pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub http1: SocketAddr,
    pub h2c: SocketAddr,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Serves `api/item.json`: `{"id":7,"name":"teapot",...}`.
    pub fn start() -> Nginx {
        Self::serving(&[(
            "api/item.json",
            r#"{"id":7,"name":"teapot","tags":["kitchen","gift"]}"#,
        )])
    }

    /// Serves these files (path under the root, content).
    pub fn serving(files: &[(&str, &str)]) -> Nginx {
        let binary = Path::new("/usr/sbin/nginx");
        assert!(
            binary.exists(),
            "nginx is missing: run scripts/install-nginx.sh (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        for (path, content) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let (p1, p2) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "daemon on; pid {d}/nginx.pid; error_log {d}/error.log; worker_processes 1;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               default_type application/json; gzip on; gzip_proxied any; gzip_types application/json; gzip_min_length 1;\n\
               server {{ listen 127.0.0.1:{p1}; root {root}; add_header x-served-by nginx; }}\n\
               server {{ listen 127.0.0.1:{p2} http2; root {root}; add_header x-served-by nginx; }} }}\n",
            root = root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let status = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "nginx starts: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        let nginx = Nginx {
            http1: ([127, 0, 0, 1], p1).into(),
            h2c: ([127, 0, 0, 1], p2).into(),
            dir,
        };
        for addr in [nginx.http1, nginx.h2c] {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(addr).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nginx listens on {addr}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .args(["-s", "stop"])
            .status();
    }
}

/// httpbin (PyPI) under gunicorn on a free port of 127.0.0.1, stopped on
/// drop. scripts/setup-tests.sh installs both.
pub struct Httpbin {
    child: Child,
    pub addr: SocketAddr,
}

impl Httpbin {
    pub fn start() -> Httpbin {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "gunicorn", "-w", "1", "-b"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("httpbin:app")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs gunicorn (scripts/setup-tests.sh installs httpbin and gunicorn)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut httpbin = Httpbin { child, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = httpbin.child.try_wait() {
                panic!("gunicorn httpbin:app exited with {status}: run scripts/setup-tests.sh");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "httpbin listens on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        httpbin
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Httpbin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` to its end.
pub fn reprise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(args)
        .output()
        .unwrap()
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path as an argument.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A note for the test echo service (one tag).
pub fn note(text: &str, number: i64) -> reprise_testkit::echo::Note {
    reprise_testkit::echo::Note {
        text: text.into(),
        number,
        tags: vec!["t".into()],
    }
}

/// The texts of the notes the echo service's server stream sends for
/// `count`, read to the stream's end.
pub async fn streamed_notes(
    client: &mut reprise_testkit::echo::echo_client::EchoClient<tonic::transport::Channel>,
    count: reprise_testkit::echo::Count,
) -> Vec<String> {
    let mut stream = client.server_stream(count).await.unwrap().into_inner();
    let mut notes = Vec::new();
    while let Some(note) = stream.message().await.unwrap() {
        notes.push(note.text);
    }
    notes
}

/// A recorded inbound `GET /calls/{i}` that was answered 200 with `body`
/// as JSON (the answer `reprise_testkit`'s target gives when `body` is
/// `{"ok":true,"path":"/calls/{i}"}`).
pub fn answered(i: usize, body: &str) -> Exchange {
    let mut exchange = reprise_model::synthetic::realistic(i);
    exchange.parent_id.clear();
    exchange.role = reprise_model::Role::Inbound as i32;
    exchange.protocol = reprise_model::Protocol::Http11 as i32;
    if let Some(request) = exchange.request.as_mut() {
        request.method = "GET".into();
        request.path = format!("/calls/{i}");
        request.body = Default::default();
        request.body_size = 0;
    }
    exchange.response = Some(reprise_model::Response {
        status: 200,
        headers: vec![reprise_model::Header::new(
            "content-type",
            "application/json",
        )],
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        body_size: body.len() as u64,
        ..Default::default()
    });
    exchange
}

/// What `reprise replay --out` writes for `recorded` when the answer's
/// body was `body`.
pub fn replayed(recorded: &Exchange, body: &str) -> Exchange {
    let mut exchange = answered(0, body);
    exchange.id = reprise_model::id::new_id();
    exchange.request = recorded.request.clone();
    exchange.replay = Some(reprise_model::Replay {
        recorded_id: recorded.id.clone(),
        ..Default::default()
    });
    exchange
}

/// Writes `exchanges` to a tape of small blocks (16 KiB); with
/// `damaged`, the second block is then corrupted, as a disk would.
pub fn write_blocks(path: &Path, exchanges: &[Exchange], damaged: bool) {
    let options = reprise_tape::WriterOptions {
        block_bytes: 16 << 10,
        ..Default::default()
    };
    let mut writer = reprise_tape::TapeWriter::create(path, options).unwrap();
    for exchange in exchanges {
        writer.write(exchange).unwrap();
    }
    writer.finish().unwrap();
    if damaged {
        let (blocks, _) = reprise_tape::block_index(path).unwrap();
        assert!(blocks.len() >= 3, "{} blocks", blocks.len());
        let mut bytes = std::fs::read(path).unwrap();
        let victim = blocks[1].end() as usize - 10;
        bytes[victim] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }
}

/// Python's `http.server` (an HTTP/1.1-only service, as most Python,
/// Ruby, PHP and Node services are) serving `files` from a temporary
/// directory on a free port of 127.0.0.1; stopped on drop.
pub struct PythonHttp {
    child: Child,
    _root: tempfile::TempDir,
    pub addr: SocketAddr,
    tls: bool,
}

/// `http.server` behind Python's own TLS: ROOT PORT CERT KEY.
const PYTHON_TLS: &str = "import functools, http.server, ssl, sys
root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(('127.0.0.1', port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.set_alpn_protocols(['http/1.1'])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
";

impl PythonHttp {
    pub fn serving(files: &[(&str, &str)]) -> PythonHttp {
        Self::start(files, None)
    }

    /// The same over TLS with this PEM certificate and key, offering
    /// only `http/1.1` by ALPN (`url` is then `https://localhost:PORT`).
    pub fn serving_tls(files: &[(&str, &str)], cert: &Path, key: &Path) -> PythonHttp {
        Self::start(files, Some((cert, key)))
    }

    fn start(files: &[(&str, &str)], tls: Option<(&Path, &Path)>) -> PythonHttp {
        let root = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let file = root.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let port = free_port();
        let mut command = Command::new("python3");
        match tls {
            None => {
                command
                    .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
                    .arg(root.path())
                    .arg(port.to_string());
            }
            Some((cert, key)) => {
                command
                    .arg("-c")
                    .arg(PYTHON_TLS)
                    .arg(root.path())
                    .arg(port.to_string())
                    .arg(cert)
                    .arg(key);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs http.server");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = PythonHttp {
            child,
            _root: root,
            addr,
            tls: tls.is_some(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("python3 -m http.server exited with {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "http.server listens on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }
}

impl Drop for PythonHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 in `dir`:
/// the paths of its PEM certificate and key.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// An upstream on 127.0.0.1 that answers a request asking for `Upgrade:
/// echo` with `101 Switching Protocols` (any other gets 404), then echoes what comes through
/// the tunnel and closes when the other side does. Plain threads: it
/// needs no runtime.
pub fn start_upgrade_echo() -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if !text(&head).to_ascii_lowercase().contains("upgrade: echo") {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                }
                let switched = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n";
                if stream.write_all(switched).is_err() {
                    return;
                }
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Polls `condition` (every 20 ms) until it holds; fails the test, naming
/// `what`, after `seconds`.
pub fn eventually(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {seconds} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
