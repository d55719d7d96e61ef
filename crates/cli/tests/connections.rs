//! Client connections under limits, end to end: the real binary
//! (`record`, `mock`, `mirror`) under `prlimit --nofile=256`, a few
//! hundred connections that never send a byte, a kept-alive connection
//! left idle, `/metrics` read throughout, and the process's CPU time from
//! `/proc/PID/stat` bounded while it holds them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use reprise_testkit::target::{Behaviour, Target};

mod support;
use support::*;

/// The open-files limit the binary runs under: its default
/// `--max-connections` with one serving thread is then (256 - 64 - 4) / 2
/// = 94.
const NOFILE: u32 = 256;

/// Silent connections opened: more than the limit lets the proxy hold
/// (94), not so many that the machine's other tests feel them.
const SILENT: usize = 160;

/// Silent connections opened to run the proxy out of descriptors: more
/// than `NOFILE`.
const PAST_NOFILE: usize = 300;

/// Opens `n` connections that send nothing. They connect whether or not
/// the proxy accepts them (the kernel's backlog completes the handshake).
fn silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"))
        })
        .collect()
}

/// Asserts that the proxy closes every one of `streams` (a read sees the
/// end, or a reset) before `deadline`.
fn all_closed_by(streams: Vec<TcpStream>, deadline: Instant) {
    for (i, mut stream) in streams.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(_) => panic!("connection {i}: the proxy sent bytes to a silent client"),
            Err(e) => panic!("connection {i} still open at the deadline: {e}"),
        }
    }
}

/// CPU time (user + system, in clock ticks) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime 14,
    // stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks a second (`getconf CLK_TCK`).
fn ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    text(&out.stdout).trim().parse().unwrap()
}

/// `GET path` over HTTP/1.1 on a fresh connection; the status and body,
/// or why it failed.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    get_within(addr, path, Duration::from_secs(5))
}

/// [`get`], waiting up to `wait` for the answer (a client queued behind
/// others).
fn get_within(addr: SocketAddr, path: &str, wait: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {answer:?}"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// The value of the sample `name` (its whole name and labels) in
/// `/metrics`; panics if `/metrics` does not answer.
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let (status, body) = get(admin, "/metrics").unwrap_or_else(|e| panic!("/metrics: {e}"));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{body}"))
}

fn header_closed(admin: SocketAddr) -> u64 {
    metric(
        admin,
        "reprise_connections_closed_total{reason=\"header_timeout\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_closes_silent_connections_at_its_limit_and_keeps_serving() {
    let upstream = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "silent.tape");
    let proxy = Recorder::limited(
        NOFILE,
        &[
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url(),
            "--out",
            s(&tape),
            "--admin",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--header-timeout",
            "2s",
        ],
    );
    let admin = proxy.admin.unwrap();
    let (addr, pid) = (proxy.addr, proxy.pid());
    let started = (Instant::now(), cpu_ticks(pid));

    let streams = silent(addr, SILENT);
    // At its limit (94 open, the rest waiting): /metrics answers and
    // says so; never more than the limit are open.
    support::eventually("the limit counted", 20, || {
        let open = metric(admin, "reprise_connections_open");
        assert!(open <= 94, "{open} connections open");
        metric(admin, "reprise_connections_limited_total") >= 1
    });
    assert_eq!(get(admin, "/healthz").unwrap().0, 200);
    // A real client queued behind the silent ones is served once the
    // limit frees.
    let served = std::thread::spawn(move || get_within(addr, "/api/late", Duration::from_secs(30)));
    all_closed_by(streams, Instant::now() + Duration::from_secs(30));
    let (status, body) = served.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/api/late"), "{body}");
    support::eventually("every silent connection counted", 20, || {
        header_closed(admin) == SILENT as u64
    });
    assert!(metric(admin, "reprise_connections_accepted_total") > SILENT as u64);
    assert_eq!(metric(admin, "reprise_accept_errors_total"), 0);

    // Holding 160 connections for seconds took little CPU: no spinning
    // (a spinning accept loop uses a whole core).
    let wall = started.0.elapsed();
    let used = cpu_ticks(pid) - started.1;
    let bound = wall.as_secs_f64() * ticks_per_second() as f64 / 4.0;
    assert!(
        (used as f64) < bound,
        "{used} ticks of CPU in {wall:?}: over a quarter of a core"
    );

    let stderr = proxy.stop_cleanly("-TERM");
    let logged = stderr
        .lines()
        .filter(|l| l.contains("connections open (--max-connections)"))
        .count();
    // Logged once, however many times it was reached.
    assert_eq!(logged, 1, "{stderr}");
    assert_eq!(read_tape(&tape).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_backs_off_accept_when_out_of_file_descriptors() {
    let upstream = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "emfile.tape");
    // A limit above what 256 descriptors can hold: accept fails (EMFILE).
    let proxy = Recorder::limited(
        NOFILE,
        &[
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url(),
            "--out",
            s(&tape),
            "--admin",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--max-connections",
            "1000",
            "--header-timeout",
            "3s",
        ],
    );
    let admin = proxy.admin.unwrap();
    let (addr, pid) = (proxy.addr, proxy.pid());
    let started = (Instant::now(), cpu_ticks(pid));
    let streams = silent(addr, PAST_NOFILE);
    all_closed_by(streams, Instant::now() + Duration::from_secs(30));
    let wall = started.0.elapsed();
    let used = cpu_ticks(pid) - started.1;
    let bound = wall.as_secs_f64() * ticks_per_second() as f64 / 4.0;
    assert!(
        (used as f64) < bound,
        "{used} ticks of CPU in {wall:?}: over a quarter of a core"
    );
    support::eventually("every silent connection counted", 20, || {
        header_closed(admin) == PAST_NOFILE as u64
    });
    assert!(metric(admin, "reprise_accept_errors_total") >= 1);
    let (status, _) = get(addr, "/after").unwrap();
    assert_eq!(status, 200);
    let stderr = proxy.stop_cleanly("-TERM");
    assert!(
        stderr.contains("cannot accept connections: Too many open files")
            && stderr.contains("backing off"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("cannot accept connections").count(), 1);
}

/// Sends `GET path` on `stream` (kept alive) and reads the whole answer
/// (it has a Content-Length).
fn call_kept_alive(stream: &mut TcpStream, path: &str) -> String {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering: {}", text(&answer));
        answer.extend_from_slice(&buf[..n]);
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            let head = text(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if answer.len() >= end + 4 + length {
                return text(&answer);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_closes_kept_alive_connections_idle_past_the_idle_timeout() {
    let upstream = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "idle.tape");
    // A long header timeout: only the idle timeout can close them.
    let proxy = Recorder::start(
        &upstream.url(),
        &tape,
        &[
            "--admin",
            "127.0.0.1:0",
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "3s",
        ],
    );
    let admin = proxy.admin.unwrap();

    // HTTP/1.1: two calls on one connection, then nothing.
    let mut h1 = TcpStream::connect(proxy.addr).unwrap();
    assert!(call_kept_alive(&mut h1, "/one").starts_with("HTTP/1.1 200"));
    assert!(call_kept_alive(&mut h1, "/two").starts_with("HTTP/1.1 200"));
    all_closed_by(vec![h1], Instant::now() + Duration::from_secs(20));

    // HTTP/2 (h2c): a call, then no open stream; the proxy says GOAWAY
    // and the connection ends.
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let ended = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/h2", proxy.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert!(text(&body.to_bytes()).contains("/h2"));
    tokio::time::timeout(Duration::from_secs(20), ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .unwrap();

    assert_eq!(
        metric(
            admin,
            "reprise_connections_closed_total{reason=\"idle_timeout\"}"
        ),
        2
    );
    assert_eq!(header_closed(admin), 0);
    proxy.stop_cleanly("-TERM");
    assert_eq!(read_tape(&tape).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_request_head_left_unfinished_has_the_header_timeout_from_its_first_byte() {
    let upstream = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "slow.tape");
    // A long idle timeout: only the header timeout can close it.
    let proxy = Recorder::start(
        &upstream.url(),
        &tape,
        &[
            "--admin",
            "127.0.0.1:0",
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "10m",
        ],
    );
    let admin = proxy.admin.unwrap();
    let mut kept = TcpStream::connect(proxy.addr).unwrap();
    assert!(call_kept_alive(&mut kept, "/one").starts_with("HTTP/1.1 200"));
    // The next head begins, and never ends.
    kept.write_all(b"GET /two HTTP/1.1\r\nHost: te").unwrap();
    all_closed_by(vec![kept], Instant::now() + Duration::from_secs(20));
    assert_eq!(header_closed(admin), 1);
    assert_eq!(
        metric(
            admin,
            "reprise_connections_closed_total{reason=\"idle_timeout\"}"
        ),
        0
    );
    proxy.stop_cleanly("-TERM");
    assert_eq!(read_tape(&tape).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_tunnel_keeps_its_place_under_max_connections() {
    let upstream = start_upgrade_echo();
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "tunnel.tape");
    let proxy = Recorder::start(
        &format!("http://{upstream}"),
        &tape,
        &["--admin", "127.0.0.1:0", "--max-connections", "1"],
    );
    let (addr, admin) = (proxy.addr, proxy.admin.unwrap());
    let mut tunnel = TcpStream::connect(addr).unwrap();
    tunnel
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tunnel
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tunnel.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(text(&head).starts_with("HTTP/1.1 101"), "{}", text(&head));
    tunnel.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    tunnel.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    // The tunnel is a connection: at the limit, the next client waits.
    assert_eq!(metric(admin, "reprise_connections_open"), 1);
    let waiting = std::thread::spawn(move || get_within(addr, "/after", Duration::from_secs(30)));
    support::eventually("the next client held back", 20, || {
        metric(admin, "reprise_connections_limited_total") >= 1
    });
    assert!(!waiting.is_finished());
    drop(tunnel);
    let (status, _) = waiting.join().unwrap().unwrap();
    assert_eq!(status, 404);
    proxy.stop_cleanly("-TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_that_never_says_hello_is_closed_by_the_header_timeout() {
    let upstream = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&key_file, key.signing_key.serialize_pem()).unwrap();
    let tape = temp_tape(&dir, "tls.tape");
    let proxy = Recorder::start(
        &upstream.url(),
        &tape,
        &[
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key_file),
            "--admin",
            "127.0.0.1:0",
            "--header-timeout",
            "1s",
        ],
    );
    let admin = proxy.admin.unwrap();
    // No ClientHello at all.
    let silent_tcp = silent(proxy.addr, 3);
    all_closed_by(silent_tcp, Instant::now() + Duration::from_secs(20));
    support::eventually("three closed by the header timeout", 20, || {
        header_closed(admin) == 3
    });
    // A client that completes the handshake within the timeout is served.
    let url = format!("https://localhost:{}/tls", proxy.addr.port());
    let (out, _) = curl(&["--cacert", s(&cert), &url]);
    assert!(out.contains("/tls"), "{out}");
    proxy.stop_cleanly("-TERM");
}

/// `reprise mock` from the HTTP sample under the fd limit, with `extra`.
fn mock(extra: &[&str]) -> Recorder {
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/httpbin.har");
    let mut args = vec![
        "mock",
        s(&har),
        "--listen",
        "127.0.0.1:0",
        "--inbound",
        "--ignore-authority",
    ];
    args.extend_from_slice(extra);
    Recorder::limited(NOFILE, &args)
}

#[test]
fn mock_closes_silent_and_idle_connections_and_says_so_at_the_end() {
    let mock = mock(&["--header-timeout", "1s", "--idle-timeout", "1s"]);
    let (addr, pid) = (mock.addr, mock.pid());
    let started = (Instant::now(), cpu_ticks(pid));
    let streams = silent(addr, SILENT);
    // Served once the silent ones are gone.
    let served = std::thread::spawn(move || get_within(addr, "/uuid", Duration::from_secs(30)));
    all_closed_by(streams, Instant::now() + Duration::from_secs(30));
    let (status, body) = served.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    let wall = started.0.elapsed();
    let used = cpu_ticks(pid) - started.1;
    let bound = wall.as_secs_f64() * ticks_per_second() as f64 / 4.0;
    assert!((used as f64) < bound, "{used} ticks of CPU in {wall:?}");

    let mut kept = TcpStream::connect(addr).unwrap();
    assert!(call_kept_alive(&mut kept, "/uuid").starts_with("HTTP/1.1 200"));
    all_closed_by(vec![kept], Instant::now() + Duration::from_secs(20));

    let stderr = mock.stop_cleanly("-TERM");
    assert!(
        stderr.contains("held back")
            && stderr.contains(&format!("{SILENT} closed by --header-timeout")),
        "{stderr}"
    );
    assert!(stderr.contains("1 by --idle-timeout"), "{stderr}");
    assert!(
        stderr.contains("94 connections open (--max-connections)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_takes_the_connection_flags_and_applies_them() {
    let primary = Target::start(Behaviour::Ok).await;
    let shadow = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "mirror.tape");
    let mirror = Recorder::mirror(
        &primary.url(),
        &shadow.url(),
        &tape,
        &[
            "--admin",
            "127.0.0.1:0",
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "3s",
            "--max-connections",
            "2",
        ],
    );
    let admin = mirror.admin.unwrap();
    let streams = silent(mirror.addr, 5);
    all_closed_by(streams, Instant::now() + Duration::from_secs(20));
    support::eventually("five closed by the header timeout", 20, || {
        header_closed(admin) == 5
    });
    // Five connections past a limit of two: it stopped accepting.
    assert!(metric(admin, "reprise_connections_limited_total") >= 1);
    let mut kept = TcpStream::connect(mirror.addr).unwrap();
    assert!(call_kept_alive(&mut kept, "/x").starts_with("HTTP/1.1 200"));
    all_closed_by(vec![kept], Instant::now() + Duration::from_secs(20));
    assert_eq!(
        metric(
            admin,
            "reprise_connections_closed_total{reason=\"idle_timeout\"}"
        ),
        1
    );
    mirror.stop_cleanly("-TERM");
}

#[test]
fn bad_connection_flags_are_one_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "never.tape");
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/httpbin.har");
    let record = [
        "record",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:1",
        "--out",
        s(&tape),
    ];
    let mirror = [
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:1",
        "--shadow",
        "http://127.0.0.1:1",
        "--out",
        s(&tape),
    ];
    let mock = ["mock", s(&har), "--listen", "127.0.0.1:0", "--inbound"];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--max-connections", "0"],
            "--max-connections 0 would serve nobody: give at least 1",
        ),
        (
            &["--idle-timeout", "soon"],
            "--idle-timeout \"soon\": expected a duration such as 500ms, 10s or 2m",
        ),
        (
            &["--header-timeout", "0s"],
            "--header-timeout \"0s\" would close every connection at once",
        ),
        (
            &["--idle-timeout", "0ms"],
            "--idle-timeout \"0ms\" would close every connection at once",
        ),
    ];
    for command in [&record[..], &mirror[..], &mock[..]] {
        for (flags, said) in &cases {
            let args: Vec<&str> = command.iter().chain(flags.iter()).copied().collect();
            let out = reprise(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(said), "{args:?}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        }
    }
    assert!(!tape.exists());
}

/// An HTTP/1.1-only upstream that holds every answer until `release` is
/// sent `true`: how many connections it has open now, and the most at once.
struct HeldUpstream {
    addr: SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

fn held_upstream(runtime: &tokio::runtime::Runtime) -> HeldUpstream {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (release, released) = tokio::sync::watch::channel(false);
    let counted = (Arc::clone(&open), Arc::clone(&most));
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (open, most) = (Arc::clone(&counted.0), Arc::clone(&counted.1));
            let mut released = released.clone();
            most.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                'calls: loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break 'calls,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if buf.starts_with(b"PRI ") {
                        // HTTP/2's preface (the proxy asking): refused
                        // at once, as an HTTP/1.1-only server does.
                        let _ = socket.write_all(b"HTTP/1.1 505 \r\n\r\n").await;
                        break;
                    }
                    buf.clear();
                    if released.wait_for(|go| *go).await.is_err() {
                        break;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(answer).await.is_err() {
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    HeldUpstream {
        addr,
        open,
        most,
        release,
    }
}

#[test]
fn one_h2_client_cannot_spend_every_descriptor_on_upstream_connections() {
    use std::sync::atomic::Ordering;
    const STREAMS: usize = 150;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upstream = held_upstream(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "streams.tape");
    let proxy = Recorder::limited(
        NOFILE,
        &[
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{}", upstream.addr),
            "--out",
            s(&tape),
            "--admin",
            "127.0.0.1:0",
            "--threads",
            "1",
        ],
    );
    let (addr, admin) = (proxy.addr, proxy.admin.unwrap());
    // One h2c connection, every call on it at once: each is forwarded
    // over HTTP/1.1 and needs an upstream connection of its own.
    let calls = runtime.spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let mut sender = sender.clone();
            calls.spawn(async move {
                let request = http::Request::get(format!("http://{addr}/call/{i}"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                match sender.send_request(request).await {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(e) => Err(e.to_string()),
                }
            });
        }
        calls.join_all().await
    });
    // The proxy opens upstream connections up to its budget and no
    // further; /metrics and /healthz answer meanwhile.
    support::eventually("upstream connections opened", 20, || {
        upstream.open.load(Ordering::SeqCst) >= 32
    });
    assert_eq!(get(admin, "/healthz").unwrap().0, 200);
    let _ = metric(admin, "reprise_connections_open");
    upstream.release.send(true).unwrap();
    let statuses = runtime.block_on(calls).unwrap();
    let most = upstream.most.load(Ordering::SeqCst);
    assert!(most <= 94, "{most} upstream connections at once");
    assert!(
        statuses.iter().all(|status| status == &Ok(200)),
        "{statuses:?}"
    );
    assert_eq!(metric(admin, "reprise_accept_errors_total"), 0);
    proxy.stop_cleanly("-TERM");
}

/// An upstream whose every answer is a body without end (in practice:
/// far more than any socket buffer holds).
fn endless_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1099511627776\r\n\r\n";
                if socket.write_all(head).is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                while socket.write_all(&chunk).is_ok() {}
            });
        }
    });
    addr
}

#[test]
fn a_client_that_stops_reading_its_answer_is_closed_after_the_idle_timeout() {
    let upstream = endless_upstream();
    let dir = tempfile::tempdir().unwrap();
    let tape = temp_tape(&dir, "unread.tape");
    let proxy = Recorder::start(
        &format!("http://{upstream}"),
        &tape,
        &["--admin", "127.0.0.1:0", "--idle-timeout", "2s"],
    );
    let admin = proxy.admin.unwrap();
    // Asks for the answer, never reads it.
    let mut unread = TcpStream::connect(proxy.addr).unwrap();
    unread
        .write_all(b"GET /large HTTP/1.1\r\nhost: shop\r\n\r\n")
        .unwrap();
    support::eventually("the stalled connection closed", 20, || {
        metric(
            admin,
            "reprise_connections_closed_total{reason=\"idle_timeout\"}",
        ) == 1
    });
    assert_eq!(metric(admin, "reprise_connections_open"), 0);
    drop(unread);
    proxy.stop_cleanly("-TERM");
}
