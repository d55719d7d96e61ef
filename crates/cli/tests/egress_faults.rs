//! `reprise record --egress / --egress-route` when things go wrong, with
//! the real binary: a tape that cannot be written (a full disk) or a
//! queue that overflows never fails a call (fail-open) and recording
//! resumes; bad input through the proxy (a CONNECT to a port that
//! refuses, a client that rejects the minted certificate, a tunnel that
//! carries neither TLS nor HTTP, a malformed `traceparent` inside a
//! tunnel) is answered or closed at once, said on stderr and counted, and
//! later calls are still recorded; `--link-window` through the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reprise_model::{Exchange, LinkKind, Role};
use reprise_testkit::full_disk::assert_mounting_allowed;
use reprise_testkit::target::{Behaviour, Target};

mod support;
use support::*;

const RECORDED: &str = "reprise_exchanges_recorded_total";
const WRITE_FAILED: &str = "reprise_exchanges_dropped_total{reason=\"write_failed\"}";
const QUEUE_FULL: &str = "reprise_exchanges_dropped_total{reason=\"queue_full\"}";
const UNLINKED: &str = "reprise_egress_calls_total{link=\"unlinked\"}";

/// `reprise ca init` in `dir/ca`: the directory and its certificate.
fn ca_init(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = dir.join("ca");
    let out = reprise(&["ca", "init", "--dir", s(&ca)]);
    assert!(out.status.success(), "{out:?}");
    let cert = ca.join("ca.pem");
    assert!(cert.exists(), "reprise ca init wrote {}", cert.display());
    (ca, cert)
}

/// `curl ARGS` (bounded by `--max-time 20`), whatever it exits with.
fn curl_output(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap()
}

/// The three ways a service's call reaches the recorder: in absolute
/// form through `--egress` (`HTTP_PROXY`), in a CONNECT tunnel carrying
/// TLS through `--egress` (`HTTPS_PROXY`, the reprise CA trusted), and to
/// an `--egress-route` listener.
struct Calls {
    proxy: String,
    ca_cert: PathBuf,
    plain: String,
    https: String,
    route: String,
}

impl Calls {
    /// `path` on the plain downstream `plain`, the TLS one `tls` (as
    /// `https://localhost:PORT`), and the route listening on `route`.
    fn new(
        egress: SocketAddr,
        ca_cert: &Path,
        plain: SocketAddr,
        tls: u16,
        route: SocketAddr,
        path: &str,
    ) -> Calls {
        Calls {
            proxy: format!("http://{egress}"),
            ca_cert: ca_cert.to_path_buf(),
            plain: format!("http://{plain}{path}"),
            https: format!("https://localhost:{tls}{path}"),
            route: format!("http://{route}{path}"),
        }
    }

    /// Makes the three calls; each must give the downstream's `body`.
    fn all(&self, body: &str) {
        for way in 0..3 {
            self.one(way, body);
        }
    }

    /// Makes call `way` (0: through `--egress`, 1: through CONNECT, 2:
    /// through the route), which must give the downstream's `body`.
    fn one(&self, way: usize, body: &str) {
        let (got, _) = match way {
            0 => curl(&["-x", &self.proxy, &self.plain]),
            1 => curl(&["-x", &self.proxy, "--cacert", s(&self.ca_cert), &self.https]),
            _ => curl(&[&self.route]),
        };
        assert!(got == body, "call {way}: {} bytes", got.len());
    }
}

/// The downstreams of the fail-open tests: one over HTTP and one over
/// TLS (certificate for localhost, trusted by the recorder through
/// `--egress-ca`), both serving `big.txt`.
struct Downstreams {
    plain: PythonHttp,
    tls: PythonHttp,
    cert: PathBuf,
}

fn downstreams(dir: &Path, body: &str) -> Downstreams {
    let (cert, key) = self_signed(dir);
    Downstreams {
        plain: PythonHttp::serving(&[("big.txt", body)]),
        tls: PythonHttp::serving_tls(&[("big.txt", body)], &cert, &key),
        cert,
    }
}

/// Mounts a 1 MiB tmpfs on `$1` and runs `$3 record --out $1/x.tape`
/// with the rest of the arguments until SIGTERM, which it passes on;
/// then copies the tape out to `$2` (the tmpfs goes with the namespace)
/// and exits with reprise's code. (As full_disk.rs, with egress.)
const IN_NAMESPACE: &str = r#"
mount -t tmpfs -o size=1m,mode=0700 tmpfs "$1" || exit 97
disk=$1 out=$2 bin=$3
shift 3
"$bin" record --listen 127.0.0.1:0 --out "$disk/x.tape" \
    --admin 127.0.0.1:0 --threads 1 --compression none "$@" &
pid=$!
stopping=
trap 'stopping=1; kill -TERM $pid' TERM
wait $pid
code=$?
if [ -n "$stopping" ] && [ $code -gt 128 ]; then wait $pid; code=$?; fi
cp "$disk/x.tape" "$out/x.tape" || exit 98
exit $code
"#;

/// Runs `script` (given the mount point as `$0`) in the recorder's
/// mount namespace.
fn inside(recorder: &Recorder, disk: &Path, script: &str) {
    let status = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", recorder.pid()))
        .args(["--", "sh", "-c", script])
        .arg(disk)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

fn downstream_calls(exchanges: &[Exchange]) -> Vec<&Exchange> {
    exchanges
        .iter()
        .filter(|e| e.role == Role::Downstream as i32)
        .collect()
}

fn link_kind(exchange: &Exchange) -> Option<LinkKind> {
    exchange.link.and_then(|l| LinkKind::try_from(l.kind).ok())
}

/// (scheme, route) of each call, in the order they started.
fn where_they_went(exchanges: &[Exchange]) -> Vec<(String, String)> {
    exchanges
        .iter()
        .map(|e| {
            let request = e.request.clone().unwrap_or_default();
            let route = e.source.clone().unwrap_or_default().route;
            (request.scheme, route)
        })
        .collect()
}

#[test]
fn egress_calls_go_on_while_the_disk_is_full_and_are_recorded_again_once_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let out = dir.path().join("out");
    std::fs::create_dir(&disk).unwrap();
    std::fs::create_dir(&out).unwrap();
    assert_mounting_allowed(&disk);
    // 8 KiB answers: with --compression none every block needs pages the
    // full disk does not have.
    let body: String = (0..1024).map(|i| format!("{:07}\n", i)).collect();
    let servers = downstreams(dir.path(), &body);
    let (ca, ca_cert) = ca_init(dir.path());
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let route = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (egress_text, route_spec) = (
        egress.to_string(),
        format!("pay={route}={}", servers.plain.url()),
    );
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(IN_NAMESPACE)
        .arg("sh")
        .arg(&disk)
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .args(["--upstream", "http://127.0.0.1:1", "--egress", &egress_text])
        .args(["--ca-dir", s(&ca), "--egress-ca", s(&servers.cert)])
        .args(["--egress-route", &route_spec]);
    let recorder = Recorder::spawn(command);
    let calls = Calls::new(
        egress,
        &ca_cert,
        servers.plain.addr,
        servers.tls.addr.port(),
        route,
        "/big.txt",
    );

    // Room: recorded.
    calls.all(&body);
    recorder.wait_for_counter(RECORDED, 3);

    // Full: every call still answered by its downstream; the loss said
    // at once, counted, and /healthz says why.
    inside(
        &recorder,
        &disk,
        r#"dd if=/dev/zero of="$0/filler" bs=4k 2>/dev/null; true"#,
    );
    calls.all(&body);
    let degraded = recorder.line_with("recording degraded", &mut Vec::new());
    assert!(
        degraded.contains("No space left on device") && degraded.contains("x.tape"),
        "{degraded}"
    );
    let text = recorder.wait_for_counter(WRITE_FAILED, 3);
    assert_eq!(counter(&text, RECORDED), 3, "{text}");
    assert_eq!(counter(&text, UNLINKED), 6, "every call seen: {text}");
    let (code, why) = recorder.health();
    assert_eq!(code, "503", "{why}");
    assert!(why.contains("No space left on device"), "{why}");

    // Space again: recorded again.
    inside(&recorder, &disk, r#"rm "$0/filler""#);
    calls.all(&body);
    recorder.line_with("recording resumed", &mut Vec::new());
    let text = recorder.wait_for_counter(RECORDED, 6);
    assert_eq!(counter(&text, WRITE_FAILED), 3, "{text}");
    assert_eq!(recorder.health().0, "200");

    let (code, stderr) = recorder.stop("-TERM");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("9 exchanges seen, 6 recorded, 3 dropped (the tape could not be written)"),
        "{stderr}"
    );
    let exchanges = read_tape(&out.join("x.tape"));
    assert_eq!(downstream_calls(&exchanges).len(), 6, "{exchanges:?}");
    let mut went = where_they_went(&exchanges);
    went.sort();
    let one_round = [("http", ""), ("http", "pay"), ("https", "")];
    let want: Vec<(String, String)> = one_round
        .iter()
        .chain(one_round.iter())
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(went, want);
    for exchange in &exchanges {
        let response = exchange.response.clone().unwrap_or_default();
        assert_eq!((response.status, response.body.len()), (200, body.len()));
    }
}

/// A text of `len` bytes that zstd's highest level works hard on.
fn busy_text(len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut text = String::with_capacity(len);
    for word in 1.. {
        if text.len() >= len {
            break;
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("{state:016x}"));
        if word % 8 == 0 {
            text.push('\n');
        }
    }
    text.truncate(len);
    text
}

#[test]
fn egress_calls_go_on_when_the_queue_is_full_and_later_ones_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let body = busy_text(256 << 10);
    let servers = downstreams(dir.path(), &body);
    let (ca, ca_cert) = ca_init(dir.path());
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let route = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (egress_text, route_spec) = (
        egress.to_string(),
        format!("pay={route}={}", servers.plain.url()),
    );
    let tape = dir.path().join("queue.tape");
    // One record in the queue, and a writer busy compressing at zstd's
    // highest level: a burst of calls overflows it.
    let recorder = Recorder::start(
        "http://127.0.0.1:1",
        &tape,
        &[
            "--egress",
            &egress_text,
            "--ca-dir",
            s(&ca),
            "--egress-ca",
            s(&servers.cert),
            "--egress-route",
            &route_spec,
            "--queue",
            "1",
            "--compression",
            "22",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let calls = Calls::new(
        egress,
        &ca_cert,
        servers.plain.addr,
        servers.tls.addr.port(),
        route,
        "/big.txt",
    );
    let mut rounds = 0;
    loop {
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| calls.all(&body));
            }
        });
        rounds += 1;
        if counter(&recorder.metrics(), QUEUE_FULL) > 0 {
            break;
        }
        assert!(rounds < 20, "no queue_full in {rounds} bursts of 9 calls");
    }
    // Every call seen is stored or counted as dropped.
    let seen = 9 * rounds;
    let mut text = String::new();
    eventually("every call recorded or dropped", 60, || {
        text = recorder.metrics();
        counter(&text, RECORDED) + counter(&text, QUEUE_FULL) == seen
    });
    assert_eq!(counter(&text, UNLINKED), seen, "{text}");
    let recorded = counter(&text, RECORDED);
    // The queue has room again: calls one at a time (each once the one
    // before is stored) are all recorded.
    for i in 0..9 {
        calls.one(i % 3, &body);
        recorder.wait_for_counter(RECORDED, recorded + i as u64 + 1);
    }
    let stderr = recorder.stop_cleanly("-INT");
    let dropped = counter(&text, QUEUE_FULL);
    assert!(
        stderr.contains(&format!(
            "{} exchanges seen, {} recorded",
            seen + 9,
            recorded + 9
        )) && stderr.contains(&format!("{dropped} dropped")),
        "{stderr}"
    );
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len() as u64, recorded + 9);
    // The last nine are the three rounds after the overflow.
    let last = where_they_went(&exchanges[exchanges.len() - 9..]);
    assert_eq!(last.iter().filter(|(s, _)| s == "https").count(), 3);
    assert_eq!(last.iter().filter(|(_, r)| r == "pay").count(), 3);
}

/// Sends `CONNECT target` on a new connection to the proxy at `egress`;
/// the connection and the proxy's answer head (10 s at most).
fn connect(egress: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(egress).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("CONNECT {target}: {other:?} after {:?}", text(&head)),
        }
    }
    (stream, text(&head))
}

/// Reads what is left until the proxy closes (10 s at most).
fn rest(mut stream: TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the proxy did not close the connection: {e}"),
    }
    rest
}

fn tunnels(outcome: &str) -> String {
    format!("reprise_egress_tunnels_total{{outcome=\"{outcome}\"}}")
}

#[test]
fn bad_input_through_the_egress_proxy_is_answered_at_once_said_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let servers = downstreams(dir.path(), "{\"hi\":1}");
    let (ca, ca_cert) = ca_init(dir.path());
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let egress_text = egress.to_string();
    let tape = dir.path().join("bad.tape");
    let recorder = Recorder::start(
        "http://127.0.0.1:1",
        &tape,
        &[
            "--egress",
            &egress_text,
            "--ca-dir",
            s(&ca),
            "--egress-ca",
            s(&servers.cert),
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let proxy = format!("http://{egress}");
    let tls_url = format!("https://localhost:{}/big.txt", servers.tls.addr.port());

    // A CONNECT to a port that refuses: a 502 at once, naming the
    // target and why; said, counted, never a recorded call.
    let closed = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (stream, head) = connect(egress, &closed);
    let took = started.elapsed();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut said = vec![0; length];
    let mut stream = stream;
    stream.read_exact(&mut said).unwrap();
    let said = text(&said);
    assert!(
        said.contains(&format!("cannot reach {closed}: connection refused")),
        "{said}"
    );
    let line = recorder.line_with(&format!("cannot reach {closed}"), &mut Vec::new());
    assert!(line.contains("connection refused"), "{line}");
    recorder.wait_for_counter(&tunnels("connect_failed"), 1);

    // A client that does not trust the reprise CA: the line names the
    // host and the alert it sent.
    let rejected = curl_output(&["-x", &proxy, &tls_url]);
    assert_eq!(rejected.status.code(), Some(60), "{rejected:?}");
    let line = recorder.line_with("rejected reprise's certificate", &mut Vec::new());
    assert!(
        line.contains("for localhost")
            && line.contains("UnknownCA")
            && line.contains("reprise ca env"),
        "{line}"
    );
    recorder.wait_for_counter(&tunnels("client_rejected_certificate"), 1);
    // The next call, trusting the CA, works and is recorded.
    let (body, _) = curl(&["-x", &proxy, "--cacert", s(&ca_cert), &tls_url]);
    assert_eq!(body, "{\"hi\":1}");
    recorder.wait_for_counter(RECORDED, 1);

    // A tunnel carrying neither TLS nor HTTP: closed, said, counted.
    let target = format!("localhost:{}", servers.tls.addr.port());
    let (mut stream, head) = connect(egress, &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
        .write_all(b"\x00\x01\x02 not a protocol\r\n")
        .unwrap();
    assert!(rest(stream).is_empty(), "nothing answered");
    let line = recorder.line_with("carried neither TLS nor HTTP", &mut Vec::new());
    assert!(
        line.contains(&target) && line.contains("00 01 02"),
        "{line}"
    );
    recorder.wait_for_counter(&tunnels("not_tls_or_http"), 1);

    // A malformed traceparent inside a TLS tunnel: recorded, unlinked.
    let (body, _) = curl(&[
        "-x",
        &proxy,
        "--cacert",
        s(&ca_cert),
        "-H",
        "traceparent: 00-zz-01",
        &tls_url,
    ]);
    assert_eq!(body, "{\"hi\":1}");
    // And a plain call after all that: still recorded.
    let (body, _) = curl(&["-x", &proxy, &format!("{}/big.txt", servers.plain.url())]);
    assert_eq!(body, "{\"hi\":1}");
    let metrics = recorder.wait_for_counter(RECORDED, 3);
    assert_eq!(counter(&metrics, UNLINKED), 3, "{metrics}");
    assert_eq!(counter(&metrics, &tunnels("opened")), 4, "{metrics}");

    let stderr = recorder.stop_cleanly("-INT");
    assert!(
        stderr.contains("egress: 3 calls, 0 linked, 0 ambiguous, 3 unlinked"),
        "{stderr}"
    );
    let exchanges = read_tape(&tape);
    let seen: Vec<(String, String)> = exchanges
        .iter()
        .map(|e| {
            let request = e.request.clone().unwrap_or_default();
            let traceparent = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("traceparent"))
                .map(|h| text(&h.value))
                .unwrap_or_default();
            (request.scheme, traceparent)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("https".to_string(), String::new()),
            ("https".to_string(), "00-zz-01".to_string()),
            ("http".to_string(), String::new()),
        ]
    );
    for exchange in &exchanges {
        assert_eq!(link_kind(exchange), Some(LinkKind::Unlinked));
        assert!(exchange.parent_id.is_empty());
        assert!(exchange.trace_id.is_empty(), "{:?}", exchange.trace_id);
    }
}

/// A `traceparent` of trace `trace` (a new span id each time).
fn traceparent(trace: u128, span: u64) -> String {
    format!("traceparent: 00-{trace:032x}-{span:016x}-01")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_link_window_links_a_late_child_within_it_and_not_after() {
    let service = Target::start(Behaviour::Ok).await;
    let downstream = Target::start(Behaviour::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("window.tape");
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let egress_text = egress.to_string();
    const WINDOW: Duration = Duration::from_secs(1);
    let recorder = Recorder::start(
        &service.url(),
        &tape,
        &[
            "--egress",
            &egress_text,
            "--link-window",
            "1s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let proxy = format!("http://{egress}");
    let (within, late) = (0xa11ce_u128, 0xb0b_u128);
    let (child_within, child_late) = (
        format!("{}/child/within", downstream.url()),
        format!("{}/child/late", downstream.url()),
    );
    let said = tokio::task::spawn_blocking(move || {
        // The inbound call finishes; its child comes after, within the
        // window (the test's clock starts once the answer is here, after
        // reprise finished the call).
        curl(&[
            "-H",
            &traceparent(within, 1),
            &recorder.url("/parent/within"),
        ]);
        let finished = Instant::now();
        curl(&["-x", &proxy, "-H", &traceparent(within, 2), &child_within]);
        let took = finished.elapsed();
        assert!(
            took < WINDOW,
            "the child came {took:?} after its parent finished: not within the window"
        );

        // Another inbound call; its child comes once the window has
        // passed (a margin for reprise's own clock reading at the end).
        curl(&["-H", &traceparent(late, 1), &recorder.url("/parent/late")]);
        let finished = Instant::now();
        eventually("the link window passing", 10, || {
            finished.elapsed() > WINDOW + Duration::from_millis(250)
        });
        curl(&["-x", &proxy, "-H", &traceparent(late, 2), &child_late]);
        let text =
            recorder.wait_for_counter("reprise_egress_calls_total{link=\"unknown_trace\"}", 1);
        assert_eq!(
            counter(&text, "reprise_egress_calls_total{link=\"trace\"}"),
            1,
            "{text}"
        );
        recorder.stop_cleanly("-INT")
    })
    .await
    .unwrap();
    assert!(
        said.contains(
            "egress: 2 calls, 1 linked, 0 ambiguous, 1 unlinked (1 with an unknown trace id)"
        ),
        "{said}"
    );
    let exchanges = read_tape(&tape);
    let by_path = |path: &str| {
        exchanges
            .iter()
            .find(|e| e.request.as_ref().is_some_and(|r| r.path == path))
            .unwrap_or_else(|| panic!("{path} not recorded: {exchanges:?}"))
    };
    let parent = by_path("/parent/within");
    let child = by_path("/child/within");
    assert_eq!(child.parent_id, parent.id);
    assert_eq!(link_kind(child), Some(LinkKind::Trace));
    assert_eq!(child.link.unwrap().order, 0);
    assert_eq!(
        reprise_model::display_id(&child.trace_id),
        format!("{within:032x}")
    );
    let late_child = by_path("/child/late");
    assert!(late_child.parent_id.is_empty(), "{late_child:?}");
    assert_eq!(link_kind(late_child), Some(LinkKind::Unlinked));
    assert_eq!(
        reprise_model::display_id(&late_child.trace_id),
        format!("{late:032x}"),
        "its trace id kept"
    );
    assert_eq!(by_path("/parent/late").role, Role::Inbound as i32);
}
