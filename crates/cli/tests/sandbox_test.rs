//! `reprise test`: the Python shop (examples/python-shop/shop.py, with
//! `requests` and `grpcio`) recorded with its downstream calls linked,
//! then tested in the sandbox as it is, with a changed charge, with an
//! extra call, with a direct connection around the proxy; services that
//! never open their port or exit early; refused options.
//!
//! The recording: `reprise record --egress` in front of the shop, the
//! real forward proxy its clients reach through the standard variables:
//! `requests` to its payments service over HTTPS (`HTTPS_PROXY`, CONNECT,
//! TLS terminated with a certificate from the reprise CA, trusted by
//! `REQUESTS_CA_BUNDLE` from `reprise ca env`), `grpcio` to its inventory
//! (`grpc_proxy`, CONNECT carrying h2c); both served by shop.py too.
//! 8 checkouts in flight at once (the payments service holds every
//! `/charge` until all 8 wait), their downstream calls interleaved: each
//! linked to exactly its checkout by the trace id the shop passes on, in
//! the order made (checked before any test uses it). Every shop test
//! runs `reprise test` on that one recording.
//!
//! These tests need root (network namespaces) and Debian's nftables;
//! scripts/setup-tests.sh installs them and the PyPI packages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reprise_model::{Exchange, LinkKind, Protocol, Role};
use support::{Recorder, eventually, free_port, read_tape, s, text, write_exchanges};

/// Checkouts recorded, all in flight at once.
const CHECKOUTS: usize = 8;

/// A Python process (the shop, its payments service, its inventory) in a
/// process group of its own, killed on drop.
struct Python {
    child: Child,
}

impl Python {
    /// Runs `python3 shop.py ARGS` with none of the machine's proxy or CA
    /// variables, `env` added, and waits (bounded) for `addr` to answer.
    fn start(args: &[&str], env: &[(&str, &str)], addr: SocketAddr) -> Python {
        let mut command = Command::new("python3");
        command.arg(shop_py()).args(args);
        for name in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "grpc_proxy",
            "no_grpc_proxy",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
        ] {
            command.env_remove(name);
        }
        let child = command
            .env("NO_PROXY", "localhost,127.0.0.1,::1")
            .env("no_proxy", "localhost,127.0.0.1,::1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("python3 runs examples/python-shop/shop.py");
        let mut python = Python { child };
        eventually(
            &format!("shop.py {} listening on {addr}", args[0]),
            20,
            || {
                if let Ok(Some(status)) = python.child.try_wait() {
                    panic!("shop.py {args:?} exited with {status}");
                }
                TcpStream::connect(addr).is_ok()
            },
        );
        python
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if let Some(group) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

fn shop_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-shop/shop.py")
}

/// The recording every shop test replays, made once per test binary.
struct Recording {
    dir: tempfile::TempDir,
    tape: PathBuf,
    /// The shop's port (the recorded service's, given again to `test`).
    shop_port: u16,
    /// The payments service (HTTPS) and the inventory (gRPC over h2c),
    /// each on a loopback address of its own: not 127.0.0.1, which
    /// clients reach directly (`NO_PROXY`), here and in the sandbox.
    payments: SocketAddr,
    inventory: SocketAddr,
}

impl Recording {
    /// The shop's command line, as recorded.
    fn command(&self) -> Vec<String> {
        vec![
            "python3".into(),
            shop_py().display().to_string(),
            "shop".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.shop_port),
            "--payments".into(),
            format!("https://{}", self.payments),
            "--inventory".into(),
            self.inventory.to_string(),
        ]
    }

    /// The reprise CA the recording's TLS tunnels were terminated with
    /// (`reprise ca init`), which `reprise test` is given again.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca")
    }
}

fn recording() -> &'static Recording {
    static RECORDING: OnceLock<Recording> = OnceLock::new();
    RECORDING.get_or_init(record_shop)
}

/// A certificate for `ip`, self-signed: the payments service's (which
/// the recorder trusts by `--egress-ca`). The paths of its PEM files.
fn certificate_for(dir: &Path, ip: &str) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec![ip.to_string()]).unwrap();
    let cert = dir.join("payments-cert.pem");
    let key = dir.join("payments-key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// `reprise ca init --dir DIR`, and the value `reprise ca env --dir DIR`
/// gives `name`.
fn ca_init(dir: &Path, name: &str) -> String {
    let made = support::reprise(&["ca", "init", "--dir", s(dir)]);
    assert!(made.status.success(), "{made:?}");
    let env = support::reprise(&["ca", "env", "--dir", s(dir)]);
    assert!(env.status.success(), "{env:?}");
    support::text(&env.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("reprise ca env prints no {name}"))
}

/// Records the shop under concurrent load through the real forward
/// proxy, `reprise record --egress` (`requests` over HTTPS through
/// `HTTPS_PROXY`: CONNECT, TLS terminated with a certificate from the
/// reprise CA the shop trusts by `REQUESTS_CA_BUNDLE`; `grpcio` through
/// `grpc_proxy`: CONNECT carrying h2c), all checkouts in flight at once
/// (the payments service holds each `/charge` until all are waiting), and
/// checks that every downstream call is linked to exactly the checkout
/// it was made for, in the order made.
fn record_shop() -> Recording {
    let dir = tempfile::tempdir().unwrap();
    let bundle = ca_init(&dir.path().join("ca"), "REQUESTS_CA_BUNDLE");
    let payments = SocketAddr::from(([127, 0, 0, 2], free_port()));
    let inventory = SocketAddr::from(([127, 0, 0, 3], free_port()));
    let (cert, key) = certificate_for(dir.path(), "127.0.0.2");
    let barrier = CHECKOUTS.to_string();
    let _payments = Python::start(
        &[
            "payments",
            "--listen",
            &payments.to_string(),
            "--cert",
            s(&cert),
            "--key",
            s(&key),
        ],
        &[("SHOP_PAYMENTS_BARRIER", &barrier)],
        payments,
    );
    let _inventory = Python::start(
        &["inventory", "--listen", &inventory.to_string()],
        &[],
        inventory,
    );
    let tape = dir.path().join("recording.tape");
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let shop_port = free_port();
    let ca = dir.path().join("ca");
    let recorder = Recorder::start(
        &format!("http://127.0.0.1:{shop_port}"),
        &tape,
        &[
            "--egress",
            &egress.to_string(),
            "--ca-dir",
            s(&ca),
            "--egress-ca",
            s(&cert),
        ],
    );
    let proxy = format!("http://{egress}");
    let shop = Python::start(
        &[
            "shop",
            "--listen",
            &format!("127.0.0.1:{shop_port}"),
            "--payments",
            &format!("https://{payments}"),
            "--inventory",
            &inventory.to_string(),
        ],
        &[
            ("HTTPS_PROXY", &proxy),
            ("grpc_proxy", &proxy),
            ("REQUESTS_CA_BUNDLE", &bundle),
        ],
        SocketAddr::from(([127, 0, 0, 1], shop_port)),
    );
    let url = recorder.url("/checkout");
    let calls: Vec<_> = (0..CHECKOUTS)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let trace = format!("00-{:032x}-{:016x}-01", 0xabc0 + i, 0x100 + i);
                let body = format!(
                    r#"{{"order":"o-{i}","sku":"sku-{i}","amount":{}}}"#,
                    100 + i
                );
                support::curl(&[
                    "-f",
                    "-H",
                    "content-type: application/json",
                    "-H",
                    &format!("traceparent: {trace}"),
                    "-d",
                    &body,
                    &url,
                ])
                .0
            })
        })
        .collect();
    for call in calls {
        let answer = call.join().unwrap();
        assert!(answer.contains("\"reserved\""), "{answer}");
    }
    recorder.stop_cleanly("-INT");
    drop(shop);
    let exchanges = read_tape(&tape);
    let inbound: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.role == Role::Inbound as i32)
        .collect();
    assert_eq!(inbound.len(), CHECKOUTS);
    // All in flight at once: each started before any ended.
    let last_start = inbound.iter().map(|e| e.recorded_at_ns).max().unwrap();
    let first_end = inbound
        .iter()
        .map(|e| e.recorded_at_ns + e.duration_ns)
        .min()
        .unwrap();
    assert!(last_start < first_end, "the checkouts did not overlap");
    let downstream: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.role == Role::Downstream as i32)
        .collect();
    assert_eq!(downstream.len(), 2 * CHECKOUTS);
    // Interleaved: every inventory call was made before any charge ended.
    let charged_first = downstream
        .iter()
        .filter(|c| c.request.as_ref().unwrap().path == "/charge")
        .map(|c| c.recorded_at_ns + c.duration_ns)
        .min()
        .unwrap();
    assert!(
        downstream
            .iter()
            .filter(|c| c.request.as_ref().unwrap().path != "/charge")
            .all(|c| c.recorded_at_ns < charged_first),
        "the downstream calls did not interleave"
    );
    // Each checkout's two calls are linked to it, and only to it, in the
    // order made: the inventory (gRPC, in a tunnel carrying h2c), then
    // the payment (HTTPS, in a tunnel carrying TLS), for its own order.
    for call in &downstream {
        let parents = inbound.iter().filter(|p| p.id == call.parent_id).count();
        assert_eq!(parents, 1, "{call:?}");
    }
    for parent in &inbound {
        let mut children: Vec<&&Exchange> = downstream
            .iter()
            .filter(|c| c.parent_id == parent.id)
            .collect();
        children.sort_by_key(|c| c.link.as_ref().map(|l| l.order));
        let seen: Vec<(String, String, String)> = children
            .iter()
            .map(|c| {
                let r = c.request.as_ref().unwrap();
                (r.scheme.clone(), r.authority.clone(), r.path.clone())
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "http".to_string(),
                    inventory.to_string(),
                    "/reprise.test.v1.Echo/Unary".to_string()
                ),
                ("https".to_string(), payments.to_string(), "/charge".into()),
            ]
        );
        assert_eq!(children[0].protocol, Protocol::Grpc as i32);
        let order = text(&parent.request.as_ref().unwrap().body);
        let order = order.split('"').nth(3).unwrap();
        let charged = text(&children[1].request.as_ref().unwrap().body);
        assert!(charged.contains(&format!("\"{order}\"")), "{charged}");
        for (n, child) in children.iter().enumerate() {
            let link = child.link.as_ref().unwrap();
            assert_eq!(link.kind, LinkKind::Trace as i32);
            assert_eq!(link.order as usize, n);
            assert_eq!(trace_of(child), trace_of(parent));
            let source = child.source.as_ref().unwrap();
            assert_eq!(
                (source.listener.as_str(), source.route.as_str()),
                (egress.to_string().as_str(), "")
            );
            assert_eq!(child.response.as_ref().unwrap().status, 200);
        }
    }
    Recording {
        dir,
        tape,
        shop_port,
        payments,
        inventory,
    }
}

fn trace_of(exchange: &Exchange) -> Option<[u8; 16]> {
    let request = exchange.request.as_ref()?;
    let header = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("traceparent"))?;
    reprise_model::trace::trace_id_of(&header.value)
}

/// What a `reprise test` run gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    out: tempfile::TempDir,
}

impl Run {
    fn both(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `reprise test TAPE` with `args` before `--` and `command` after
/// it, the environment given added; killed (its process group) if it
/// takes more than `seconds`.
fn reprise_test(
    tape: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    command: &[String],
    seconds: u64,
) -> Run {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(tape)
        .args(["--out"])
        .arg(out.path())
        .args(args)
        .arg("--")
        .args(command)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let status = exit_within(&mut child, seconds, "reprise test");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        out,
    }
}

fn shop_test(env: &[(&str, &str)]) -> Run {
    let r = recording();
    let port = r.shop_port.to_string();
    reprise_test(
        &r.tape,
        &[
            "--port",
            &port,
            "--max",
            "--concurrency",
            "4",
            "--ca-dir",
            s(&r.ca()),
        ],
        env,
        &r.command(),
        120,
    )
}

#[test]
fn the_same_build_passes_and_its_downstream_calls_are_written() {
    let run = shop_test(&[]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(run.stdout.contains("no escape attempts"), "{}", run.stdout);
    let replayed = read_tape(&run.out.path().join("replayed.tape"));
    assert_eq!(replayed.len(), CHECKOUTS);
    let downstream = read_tape(&run.out.path().join("downstream.tape"));
    assert_eq!(downstream.len(), 2 * CHECKOUTS, "{}", run.both());
    let recorded = read_tape(&recording().tape);
    // Both clients reached the mock through the proxy variables, by the
    // targets the shop was given, HTTPS inside its TLS tunnel included.
    let r = recording();
    for (scheme, authority) in [
        ("https", r.payments.to_string()),
        ("http", r.inventory.to_string()),
    ] {
        let made = downstream
            .iter()
            .filter(|c| {
                let q = c.request.as_ref().unwrap();
                q.scheme == scheme && q.authority == authority
            })
            .count();
        assert_eq!(made, CHECKOUTS, "{scheme}://{authority}: {}", run.both());
    }
    for call in &downstream {
        assert_eq!(call.role, Role::Downstream as i32);
        assert!(!call.flags.as_ref().is_some_and(|f| f.mock_miss));
        // Each call made for a replayed checkout is charged to the
        // recorded checkout it replays.
        let parent = recorded
            .iter()
            .find(|e| e.id == call.parent_id)
            .expect("linked to a recorded inbound call");
        assert_eq!(parent.role, Role::Inbound as i32);
    }
    for name in ["report.txt", "report.json"] {
        let path = run.out.path().join(name);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["service"]["escapes"], serde_json::json!([]));
}

#[test]
fn a_changed_charge_is_named_by_its_field() {
    let run = shop_test(&[("SHOP_CHARGE_DELTA", "10")]);
    assert_eq!(run.code, 1, "{}", run.both());
    // The write is compared, field by field, with the recorded one.
    // One of the 8 as the example: amount 10i charged 10 more.
    let said = format!("POST {}/charge: $.amount 10", recording().payments);
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&said))
        .unwrap_or_else(|| panic!("no {said}: {}", run.stdout));
    assert!(line.contains(" → 11"), "{line}");
    let report = std::fs::read_to_string(run.out.path().join("report.txt")).unwrap();
    assert!(report.contains("$.amount"), "{report}");
}

#[test]
fn an_extra_call_is_named_as_extra() {
    let run = shop_test(&[("SHOP_EXTRA_CALL", "1")]);
    assert_eq!(run.code, 1, "{}", run.both());
    let said = format!("new call: POST {}/audit", recording().payments);
    assert!(run.stdout.contains(&said), "{}", run.stdout);
    // The mock had nothing to answer it with: a miss too, and written.
    let downstream = read_tape(&run.out.path().join("downstream.tape"));
    assert_eq!(downstream.len(), 3 * CHECKOUTS);
    let misses: Vec<&Exchange> = downstream
        .iter()
        .filter(|c| c.flags.as_ref().is_some_and(|f| f.mock_miss))
        .collect();
    assert_eq!(misses.len(), CHECKOUTS);
    assert!(
        misses
            .iter()
            .all(|c| c.request.as_ref().unwrap().path == "/audit")
    );
}

#[test]
fn a_direct_connection_is_reported_and_reaches_nothing() {
    // Nothing listens at 10.1.2.3 from here; inside, the connection is
    // taken by the sandbox's reporter and closed.
    let run = shop_test(&[("SHOP_DIRECT", "10.1.2.3:5432")]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(run.stdout.contains("10.1.2.3:5432"), "{}", run.stdout);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.out.path().join("report.json")).unwrap())
            .unwrap();
    let escapes = json["service"]["escapes"].as_array().unwrap();
    assert!(
        escapes
            .iter()
            .any(|e| e.as_str().unwrap().contains("10.1.2.3:5432")),
        "{escapes:?}"
    );
    // The answers were the same: the run fails on the escape alone.
    assert!(
        run.stdout.contains("0 exchanges regressed"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_service_that_never_opens_its_port_is_an_error_with_its_last_lines() {
    let port = free_port().to_string();
    let command = [
        "python3",
        "-c",
        "import sys, time\nprint('warming the cache', flush=True)\nprint('still warming', file=sys.stderr, flush=True)\ntime.sleep(60)",
    ]
    .map(String::from);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let run = reprise_test(
        &clock_tape(dir.path()),
        &["--port", &port, "--start-timeout", "2s"],
        &[],
        &command,
        60,
    );
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(run.stderr.contains(&port), "{}", run.stderr);
    assert!(run.stderr.contains("still warming"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_service_that_exits_early_is_an_error_with_its_status_and_last_lines() {
    let port = free_port().to_string();
    let command = ["sh", "-c", "echo 'cannot reach the database' >&2; exit 3"].map(String::from);
    let dir = tempfile::tempdir().unwrap();
    let run = reprise_test(
        &clock_tape(dir.path()),
        &["--port", &port],
        &[],
        &command,
        60,
    );
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(
        run.stderr.contains("cannot reach the database"),
        "{}",
        run.stderr
    );
    // All of it, in the service's log.
    let log = std::fs::read_to_string(run.out.path().join("service.log")).unwrap();
    assert!(log.contains("cannot reach the database"), "{log}");
    assert!(run.stderr.contains('3'), "{}", run.stderr);
}

/// Usage errors come before anything starts: no recording is needed.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["test", "no-such.tape", "--port", "8080"])
        .args(args)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn fallthrough_is_refused() {
    let stderr = refused(&["--fallthrough", "http://127.0.0.1:1"]);
    assert!(stderr.contains("--fallthrough"), "{stderr}");
    assert!(
        stderr.contains("never lets a call reach a real system"),
        "{stderr}"
    );
}

#[test]
fn faketime_with_concurrency_is_refused() {
    let stderr = refused(&["--faketime", "--concurrency", "4"]);
    assert!(stderr.contains("--faketime"), "{stderr}");
    assert!(stderr.contains("--concurrency 4"), "{stderr}");
}

#[test]
fn options_that_cannot_be_kept_are_refused_before_anything_starts() {
    for (args, said) in [
        (
            &["--fallthrough-writes"][..],
            "never lets a call reach a real system",
        ),
        (
            &["--auto-noise", "--baseline-cmd", "true"][..],
            "with --baseline-cmd the baseline decides",
        ),
        (
            &["--start-timeout", "0s"][..],
            "--start-timeout must be above 0",
        ),
        (&["--start-timeout", "soon"][..], "--start-timeout \"soon\""),
        (&["--mock-exhausted", "never"][..], "--mock-exhausted"),
        (
            &["--concurrency", "0"][..],
            "--concurrency must be at least 1",
        ),
    ] {
        let stderr = refused(args);
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_command_or_recording_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(["test", "no-such.tape", "--port", "8080"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("COMMAND"), "{stderr}");
    let stderr = refused(&[]);
    assert!(stderr.contains("no-such.tape"), "{stderr}");
}

/// A service that answers the time it reads from its clock, to the
/// nearest second (libfaketime sets a clock to within microseconds of the
/// time given, on either side).
const CLOCK_SERVICE: &str = r#"
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Clock(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"now": round(time.time())}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Clock).serve_forever()
"#;

/// A recording of two `GET /now` answered with the time, recorded in
/// 2020 and 2021 (no downstream calls).
fn clock_tape(dir: &Path) -> PathBuf {
    let tape = dir.join("clock.tape");
    let times = [1_577_836_800u64, 1_622_505_600];
    let exchanges: Vec<Exchange> = times
        .iter()
        .enumerate()
        .map(|(i, seconds)| {
            let mut exchange = support::answered(i, &format!(r#"{{"now":{seconds}}}"#));
            exchange.recorded_at_ns = seconds * 1_000_000_000;
            exchange.request.as_mut().unwrap().path = "/now".into();
            exchange
        })
        .collect();
    write_exchanges(&tape, &exchanges);
    tape
}

#[test]
fn faketime_gives_the_service_each_exchanges_recorded_time() {
    let dir = tempfile::tempdir().unwrap();
    let tape = clock_tape(dir.path());
    let port = free_port().to_string();
    let command = ["python3", "-c", CLOCK_SERVICE, &port].map(String::from);
    let run = |extra: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("test")
            .arg(&tape)
            .args(["--port", &port, "--out"])
            .arg(out.path())
            .args(extra)
            .arg("--")
            .args(&command)
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    };
    let html = dir.path().join("report.html");
    let junit = dir.path().join("junit.xml");
    let (code, text) = run(&[
        "--faketime",
        "--max",
        "--report",
        html.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 identical"), "{text}");
    // Diff's report files, as `reprise diff` writes them.
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("<testsuite")
    );
    // The control: on the real clock the answers differ.
    let (code, text) = run(&["--max"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("$.now"), "{text}");
}

#[test]
fn a_baseline_copy_runs_in_a_sandbox_of_its_own() {
    let r = recording();
    let port = r.shop_port.to_string();
    let baseline = r
        .command()
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let run = reprise_test(
        &r.tape,
        &[
            "--port",
            &port,
            "--max",
            "--ca-dir",
            s(&r.ca()),
            "--baseline-cmd",
            &baseline,
        ],
        &[],
        &r.command(),
        120,
    );
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        run.stdout.contains("baseline: 8 calls replayed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        read_tape(&run.out.path().join("baseline-replayed.tape")).len(),
        CHECKOUTS
    );
    // The baseline's own downstream calls (all answered) and its output.
    let calls = read_tape(&run.out.path().join("baseline-downstream.tape"));
    assert_eq!(calls.len(), 2 * CHECKOUTS);
    assert!(
        calls
            .iter()
            .all(|c| !c.flags.as_ref().is_some_and(|f| f.mock_miss))
    );
    let log = std::fs::read_to_string(run.out.path().join("baseline.log")).unwrap();
    assert!(log.contains("shop listening on"), "{log}");
}

/// A service that writes its pid to `MARKER.pid`, and on a call either
/// exits at once (`die`) or writes `MARKER` and takes a minute to answer
/// (`hang`).
const TROUBLED_SERVICE: &str = r#"
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, mode, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(marker + ".pid", "w") as f:
    f.write(str(os.getpid()))
class Troubled(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if mode == "die":
            print("fatal: the cache is corrupt", flush=True)
            os._exit(5)
        with open(marker, "w") as f:
            f.write("called")
        time.sleep(60)
ThreadingHTTPServer(("127.0.0.1", port), Troubled).serve_forever()
"#;

/// Starts `reprise test` on the clock recording with the troubled service
/// in `mode`; gives the child, its output readers and the marker path.
fn troubled(mode: &str, dir: &Path) -> (Child, PathBuf) {
    let tape = clock_tape(dir);
    let marker = dir.join("called");
    let port = free_port().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(&tape)
        .args(["--port", &port, "--max", "--concurrency", "1", "--out"])
        .arg(dir.join("out"))
        .args(["--", "python3", "-c", TROUBLED_SERVICE, &port, mode])
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, marker)
}

/// Waits for `child` to exit, at most `seconds`: past that its process
/// group is killed and the test fails, naming `what`.
fn exit_within(child: &mut Child, seconds: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) for `child` to exit; its code and stderr.
fn finished(mut child: Child, seconds: u64) -> (i32, String) {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = exit_within(&mut child, seconds, "reprise test");
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

fn gone(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    !Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[test]
fn a_service_that_dies_under_the_replay_is_an_error_with_its_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (child, marker) = troubled("die", dir.path());
    let (code, stderr) = finished(child, 60);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("exited during the replay"), "{stderr}");
    assert!(stderr.contains("fatal: the cache is corrupt"), "{stderr}");
    assert!(gone(&marker.with_extension("pid")));
}

#[test]
fn an_interrupted_test_stops_the_service_and_ends_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (child, marker) = troubled("hang", dir.path());
    // The replay's first call is in the service's hands.
    eventually("the service got a call", 30, || marker.exists());
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let started = Instant::now();
    let (code, stderr) = finished(child, 30);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // Not the service's minute, nor the replay's 30 s timeout.
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert!(
        gone(&dir.path().join("called.pid")),
        "the service was left running"
    );
    assert!(dir.path().join("out/report.txt").exists());
}

#[test]
fn a_ca_dir_without_a_ca_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tape = clock_tape(dir.path());
    let empty = dir.path().join("no-ca");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(&tape)
        .args(["--port", "8080", "--ca-dir"])
        .arg(&empty)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ca-dir"), "{stderr}");
    assert!(stderr.contains("reprise ca init"), "{stderr}");
}

#[test]
fn as_a_user_the_sandbox_is_an_unprivileged_user_namespace() {
    // reprise enters a user namespace of its own before any thread
    // starts, then builds the same sandbox in it.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let tape = clock_tape(dir.path());
    std::fs::set_permissions(&tape, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port().to_string();
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(&tape)
        .args(["--port", &port, "--faketime", "--out"])
        .arg(dir.path().join("out"))
        .args(["--", "python3", "-c", CLOCK_SERVICE, &port])
        .env("HOME", dir.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("REPRISE_CA_DIR")
        .output()
        .expect("setpriv (util-linux, scripts/setup-tests.sh) runs reprise as nobody");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("2 identical"), "{text}");
    let meta = std::fs::metadata(dir.path().join("out/replayed.tape")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
}

#[test]
fn an_out_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tape = clock_tape(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(&tape)
        .args(["--port", "8080", "--out"])
        .arg(&tape)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a directory"), "{stderr}");
}

/// Set for [`with_namespaces_denied`]: the tape it tests with.
const DENIED_TAPE: &str = "REPRISE_SANDBOX_TEST_DENIED_TAPE";

#[test]
fn where_namespaces_are_not_permitted_the_error_says_what_is_needed() {
    // A seccomp filter stays with the thread that installs it and its
    // children: the case runs in a process of its own (this test binary
    // again, running only the case below).
    let dir = tempfile::tempdir().unwrap();
    let tape = clock_tape(dir.path());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "with_namespaces_denied",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(DENIED_TAPE, &tape)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Run by the test above: `reprise test` (as root, and as nobody) under
/// a filter that makes `unshare`, `setns` and namespace `clone`s fail.
#[test]
#[ignore = "run by where_namespaces_are_not_permitted_the_error_says_what_is_needed"]
fn with_namespaces_denied() {
    let tape = std::env::var_os(DENIED_TAPE).expect("run by its caller, which names the tape");
    deny_namespaces();
    let port = free_port().to_string();
    let reprise = env!("CARGO_BIN_EXE_reprise");
    let out = Path::new(&tape).with_file_name("out");
    let test = [
        "test",
        tape.to_str().unwrap(),
        "--port",
        &port,
        "--out",
        out.to_str().unwrap(),
        "--",
        "true",
    ];
    let as_nobody = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"];
    for (program, before) in [(reprise, &[][..]), ("setpriv", &as_nobody[..])] {
        let mut command = Command::new(program);
        if program == "setpriv" {
            command.args(before).arg("--").arg(reprise);
        }
        let out = command.args(test).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{program}: {stderr}");
        // One line, the last, says what is needed.
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("reprise: reprise test needs root or unprivileged user namespaces"),
            "{program}: {stderr}"
        );
    }
}

/// What a locked-down container does: namespaces cannot be made or
/// joined (EPERM); clone3, whose flags a filter cannot read, is "not
/// implemented", so the C library falls back to clone.
fn deny_namespaces() {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    use std::collections::BTreeMap;
    let arch = std::env::consts::ARCH.try_into().unwrap();
    let clone_rules = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ]
    .iter()
    .map(|flag| {
        let flag = *flag as u64;
        let condition = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .unwrap();
        SeccompRule::new(vec![condition]).unwrap()
    })
    .collect();
    let filters = [
        SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, vec![])]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .unwrap(),
        SeccompFilter::new(
            BTreeMap::from([
                (libc::SYS_unshare, vec![]),
                (libc::SYS_setns, vec![]),
                (libc::SYS_clone, clone_rules),
            ]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .unwrap(),
    ];
    for filter in filters {
        let program: BpfProgram = filter.try_into().unwrap();
        seccompiler::apply_filter(&program).unwrap();
    }
}

#[test]
fn the_hosts_unix_sockets_are_out_of_reach() {
    // A database's socket on the host, where clients look by default.
    let folder = PathBuf::from(format!("/run/reprise-sandbox-test-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let socket = folder.join(".s.PGSQL.5432");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tape = clock_tape(dir.path());
    let reached = dir.path().join("reached");
    let port = free_port().to_string();
    // Tries the socket first thing, then serves the clock.
    let service = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({socket:?})\n    open({reached:?}, 'w').write('yes')\nexcept OSError as e:\n    print('no database:', e, flush=True)\n{CLOCK_SERVICE}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(&tape)
        .args(["--port", &port, "--faketime", "--out"])
        .arg(dir.path().join("out"))
        .args(["--", "python3", "-c", &service, &port])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&folder);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!reached.exists(), "the service reached the host's socket");
    assert!(matches!(
        listener.accept(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    ));
}

#[test]
fn a_baseline_tells_noise_from_regressions() {
    // On the real clock every answer differs from the recording's; the
    // old build's differ the same way: noise, not a regression.
    let dir = tempfile::tempdir().unwrap();
    let tape = clock_tape(dir.path());
    let port = free_port().to_string();
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("test")
            .arg(&tape)
            .args(["--port", &port, "--max", "--out"])
            .arg(dir.path().join(format!("out{}", extra.len())))
            .args(extra)
            .args(["--", "python3", "-c", CLOCK_SERVICE, &port])
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text)
    };
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    let baseline = format!("python3 -c '{CLOCK_SERVICE}' {port}");
    let (code, text) = run(&["--baseline-cmd", &baseline]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 noise only"), "{text}");
    assert!(text.contains("baseline: 2 calls replayed"), "{text}");
}

/// Runs `reprise test TAPE ARGS -- COMMAND` with `env` added, bounded.
fn test_tape(tape: &Path, args: &[&str], env: &[(&str, &str)], command: &[String]) -> Run {
    reprise_test(tape, args, env, command, 120)
}

#[test]
fn a_damaged_recording_is_refused_with_2_and_too_few_compared_is_4() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let clock = ["python3", "-c", CLOCK_SERVICE, &port].map(String::from);
    // The mock built from a damaged recording would miss the calls its
    // damaged part held: refused before anything starts, as `reprise
    // mock` refuses it.
    let damaged = dir.path().join("damaged.tape");
    let exchanges: Vec<Exchange> = (0..200)
        .map(|i| support::answered(i, r#"{"ok":true}"#))
        .collect();
    support::write_blocks(&damaged, &exchanges, true);
    let run = test_tape(&damaged, &["--port", &port], &[], &clock);
    assert_eq!(run.code, 2, "{}", run.both());
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    assert!(run.stderr.contains("would miss calls"), "{}", run.stderr);
    assert!(!run.out.path().join("service.log").exists());
    // Fewer pairs compared than --min-compared: not a pass, as for diff.
    let tape = clock_tape(dir.path());
    let run = test_tape(
        &tape,
        &["--port", &port, "--faketime", "--min-compared", "3"],
        &[],
        &clock,
    );
    assert_eq!(run.code, 4, "{}", run.both());
    assert!(
        run.stderr.contains("fewer than --min-compared 3"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("not a pass"), "{}", run.stdout);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["exit_code"], 4);
}

/// A service whose every answer is `{"ok":true,"path":...}` and which,
/// for each call, posts `{"path":...,"nonce":...}` to a log service at
/// `http://LOG/log` (argv 2), fire and forget: the log's answer is never
/// read. The nonce is `$NONCE`, else a new one per call; with `TWICE=1`
/// it posts twice. With `PROBE=1` it first looks up `logs.internal` (a
/// name the recording used) and `db.internal` (one it did not), and sends
/// a UDP datagram to 10.1.2.3:8125, printing what it saw.
const LOGGING_SERVICE: &str = r#"
import json, os, secrets, socket, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, log = int(sys.argv[1]), sys.argv[2]
if os.environ.get("PROBE") == "1":
    print("logs.internal resolves to", socket.gethostbyname("logs.internal"), flush=True)
    try:
        print("db.internal resolves to", socket.gethostbyname("db.internal"), flush=True)
    except OSError as e:
        print("db.internal does not resolve:", e, flush=True)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.sendto(b"checkouts:1|c", ("10.1.2.3", 8125))
    except OSError as e:
        print("the datagram was refused:", e, flush=True)
    udp.close()
class Logging(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        nonce = os.environ.get("NONCE") or secrets.token_hex(4)
        headers = {"content-type": "application/json", "user-agent": "logger"}
        if self.headers.get("traceparent"):
            headers["traceparent"] = self.headers["traceparent"]
        for _ in range(2 if os.environ.get("TWICE") == "1" else 1):
            data = json.dumps({"path": self.path, "nonce": nonce}).encode()
            request = urllib.request.Request(f"http://{log}/log", data=data, headers=headers)
            try:
                urllib.request.urlopen(request, timeout=5).read()
            except OSError:
                pass
        body = json.dumps({"ok": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", port), Logging).serve_forever()
"#;

/// A recording of two `GET /calls/{i}` answered `{"ok":true,...}`, each
/// with its one linked call `POST logs.internal:9000/log` (nonce `r`)
/// recorded through `--egress-route log=LISTEN=http://logs.internal:9000`:
/// the tape and LISTEN.
fn logging_tape(dir: &Path) -> (PathBuf, SocketAddr) {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut exchanges = Vec::new();
    for i in 0..2 {
        let path = format!("/calls/{i}");
        let inbound = support::answered(i, &format!(r#"{{"ok":true,"path":"{path}"}}"#));
        let body = format!(r#"{{"path": "{path}", "nonce": "r"}}"#);
        let call = Exchange {
            id: reprise_model::id::new_id(),
            parent_id: inbound.id.clone(),
            trace_id: inbound.trace_id.clone(),
            recorded_at_ns: inbound.recorded_at_ns + 1_000,
            duration_ns: 1_000,
            source: Some(reprise_model::RecordSource {
                recorder: "proxy".into(),
                route: "log".into(),
                listener: listen.to_string(),
                ..Default::default()
            }),
            protocol: Protocol::Http11 as i32,
            role: Role::Downstream as i32,
            request: Some(reprise_model::Request {
                method: "POST".into(),
                scheme: "http".into(),
                authority: "logs.internal:9000".into(),
                path: "/log".into(),
                headers: vec![
                    reprise_model::Header::new("accept-encoding", "identity"),
                    reprise_model::Header::new("content-type", "application/json"),
                    reprise_model::Header::new("user-agent", "logger"),
                ],
                body_size: body.len() as u64,
                body: body.into(),
                ..Default::default()
            }),
            response: Some(reprise_model::Response {
                status: 200,
                headers: vec![reprise_model::Header::new(
                    "content-type",
                    "application/json",
                )],
                body: "{}".into(),
                body_size: 2,
                ..Default::default()
            }),
            link: Some(reprise_model::Link {
                kind: LinkKind::Trace as i32,
                order: 0,
            }),
            ..Default::default()
        };
        exchanges.push(inbound);
        exchanges.push(call);
    }
    let tape = dir.join("logging.tape");
    write_exchanges(&tape, &exchanges);
    (tape, listen)
}

#[test]
fn unknown_names_and_udp_are_escapes_and_recorded_names_resolve_inside() {
    let dir = tempfile::tempdir().unwrap();
    let (tape, log) = logging_tape(dir.path());
    let port = free_port().to_string();
    let service = ["python3", "-c", LOGGING_SERVICE, &port, &log.to_string()].map(String::from);
    let run = test_tape(
        &tape,
        &["--port", &port],
        &[("PROBE", "1"), ("NONCE", "r")],
        &service,
    );
    assert_eq!(run.code, 1, "{}", run.both());
    let log_text = std::fs::read_to_string(run.out.path().join("service.log")).unwrap();
    assert!(
        log_text.contains("logs.internal resolves to 127.0.0.1"),
        "{log_text}"
    );
    assert!(
        log_text.contains("db.internal does not resolve"),
        "{log_text}"
    );
    let looked_up = "the service looked up db.internal (A), a name the recording never used";
    let udp = "the service sent 1 UDP packet(s), dropped";
    let report = std::fs::read_to_string(run.out.path().join("report.txt")).unwrap();
    for said in [looked_up, udp] {
        assert!(run.stdout.contains(said), "{said}: {}", run.stdout);
        assert!(report.contains(said), "{said}: {report}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.out.path().join("report.json")).unwrap())
            .unwrap();
    let escapes: Vec<&str> = json["service"]["escapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(escapes, [looked_up, udp], "{}", run.stdout);
    assert_eq!(json["exit_code"], 1);
    // The rest was as recorded: the escapes alone fail the run.
    assert!(
        run.stdout.contains(
            "test failed: 0 exchanges regressed, 0 downstream calls missed, 2 escape attempts"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_mock_miss_alone_fails_the_run() {
    // A new nonce in each log call: the diff is told to ignore it, the
    // mock cannot answer the call (its body is not the recorded one),
    // and the service never reads the answer: nothing differs but the
    // misses.
    let dir = tempfile::tempdir().unwrap();
    let (tape, log) = logging_tape(dir.path());
    let port = free_port().to_string();
    let service = ["python3", "-c", LOGGING_SERVICE, &port, &log.to_string()].map(String::from);
    let run = test_tape(
        &tape,
        &["--port", &port, "--ignore", "$.nonce"],
        &[],
        &service,
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout.contains(
            "test failed: 0 exchanges regressed, 2 downstream calls missed, 0 escape attempts"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_mock_option_takes_effect_through_reprise_test() {
    // Each call logged twice: once more than recorded. By default the
    // second is a miss; --mock-exhausted repeat-last answers it with the
    // recorded answer again (the diff still names the extra call).
    let dir = tempfile::tempdir().unwrap();
    let (tape, log) = logging_tape(dir.path());
    let port = free_port().to_string();
    let service = ["python3", "-c", LOGGING_SERVICE, &port, &log.to_string()].map(String::from);
    let run = test_tape(
        &tape,
        &["--port", &port, "--mock-exhausted", "repeat-last"],
        &[("NONCE", "r"), ("TWICE", "1")],
        &service,
    );
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout
            .contains("the mock answered 4 downstream calls, missed 0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("new call: POST logs.internal:9000/log"),
        "{}",
        run.stdout
    );
}

#[test]
fn auto_noise_passes_a_run_where_only_a_timestamp_differs() {
    // Recorded a minute ago: the clock's answers differ by a minute.
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let tape = dir.path().join("recent.tape");
    let exchanges: Vec<Exchange> = (0..2)
        .map(|i| {
            let mut exchange = support::answered(i, &format!(r#"{{"now":{now}}}"#));
            exchange.recorded_at_ns = now * 1_000_000_000;
            exchange.request.as_mut().unwrap().path = "/now".into();
            exchange
        })
        .collect();
    write_exchanges(&tape, &exchanges);
    let port = free_port().to_string();
    let clock = ["python3", "-c", CLOCK_SERVICE, &port].map(String::from);
    let run = test_tape(&tape, &["--port", &port, "--auto-noise"], &[], &clock);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(run.stdout.contains("guess"), "{}", run.stdout);
}

/// The README's `reprise test` session, as written: its shell block run
/// by bash in a temporary directory (the example's path made absolute,
/// its ports swapped for free ones, `reprise` this build), each `reprise
/// test` line's output checked against the comment under it.
#[test]
fn the_readmes_session_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("### Any language: `reprise test`")
        .nth(1)
        .expect("the README's reprise test section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("its shell block");
    let dir = tempfile::tempdir().unwrap();
    let mut script = block.replace(
        "examples/python-shop/shop.py",
        &shop_py().display().to_string(),
    );
    // Through placeholders, so that a free port is never rewritten.
    let ports = ["8080", "8000", "9001", "9002", "7001", "7002"];
    let free: Vec<String> = ports.iter().map(|_| free_port().to_string()).collect();
    for (n, port) in ports.iter().enumerate() {
        script = script.replace(port, &format!("@PORT{n}@"));
    }
    for (n, port) in free.iter().enumerate() {
        script = script.replace(&format!("@PORT{n}@"), port);
    }
    let mut expected = Vec::new();
    let mut lines = Vec::new();
    let mut block_lines = script.lines().peekable();
    while let Some(line) = block_lines.next() {
        if !line.contains("reprise test ") {
            lines.push(line.to_string());
            continue;
        }
        let said = block_lines
            .next_if(|next| next.starts_with("# "))
            .unwrap_or_else(|| panic!("no expectation under {line:?}"));
        let (text, code) = said
            .trim_start_matches("# ")
            .split_once(" (exit ")
            .unwrap_or_else(|| panic!("no exit code in {said:?}"));
        let code: i32 = code
            .trim_end_matches(')')
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let n = expected.len();
        lines.push(format!(
            "{line} > run{n}.txt 2>&1; echo \"exit $?\" >> run{n}.txt"
        ));
        expected.push((line.to_string(), text.to_string(), code));
    }
    assert_eq!(expected.len(), 4, "{script}");
    let bin = Path::new(env!("CARGO_BIN_EXE_reprise")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-c", &lines.join("\n")])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("REPRISE_CA_DIR", dir.path().join("no-ca"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "grpc_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(name);
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = exit_within(&mut child, 180, "the README's session");
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    // "9 exchanges: 3 checkouts, each with its 2 linked calls"
    let recorded = read_tape(&dir.path().join("shop.tape"));
    assert_eq!(recorded.len(), 9, "{stderr}");
    assert_eq!(
        recorded.iter().filter(|e| !e.parent_id.is_empty()).count(),
        6
    );
    for (n, (line, text, code)) in expected.iter().enumerate() {
        let got = std::fs::read_to_string(dir.path().join(format!("run{n}.txt"))).unwrap();
        assert!(got.contains(text.as_str()), "{line}: want {text:?}: {got}");
        assert!(
            got.trim_end().ends_with(&format!("exit {code}")),
            "{line}: want exit {code}: {got}"
        );
    }
}
