//! `reprise test`: the Python shop (examples/python-shop/shop.py, with
//! `requests` and `grpcio`) recorded with its downstream calls linked,
//! then tested in the sandbox as it is, with a changed charge, with an
//! extra call, with a direct connection around the proxy; services that
//! never open their port or exit early; refused options.
//!
//! The recording: `reprise record` in front of the shop, with an
//! `--egress-route` to its payments service (`requests`, JSON) and one to
//! its inventory (`grpcio`, h2c; both served by shop.py too), under 8
//! concurrent checkouts: each
//! downstream call linked to its checkout by the trace id the shop passes
//! on (checked before any test uses it).
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

use reprise_model::{Exchange, LinkKind, Role};
use support::{Recorder, eventually, free_port, read_tape, write_exchanges};

/// Checkouts recorded, all in flight at once.
const CHECKOUTS: usize = 8;

/// A Python process (the shop, its payments service) in a process group
/// of its own, killed on drop.
struct Python {
    child: Child,
}

impl Python {
    fn start(args: &[&str], port: u16) -> Python {
        let child = Command::new("python3")
            .arg(shop_py())
            .args(args)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("grpc_proxy")
            .env("NO_PROXY", "localhost,127.0.0.1,::1")
            .env("no_proxy", "localhost,127.0.0.1,::1")
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("python3 runs examples/python-shop/shop.py");
        let python = Python { child };
        eventually(
            &format!("shop.py {} listening on {port}", args[0]),
            20,
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
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

/// The recording every test replays, made once per test binary.
struct Recording {
    _dir: tempfile::TempDir,
    tape: PathBuf,
    /// The shop's port (the recorded service's, given again to `test`).
    shop_port: u16,
    /// The listeners the shop's downstream calls went through.
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
            format!("http://{}", self.payments),
            "--inventory".into(),
            self.inventory.to_string(),
        ]
    }
}

fn recording() -> &'static Recording {
    static RECORDING: OnceLock<Recording> = OnceLock::new();
    RECORDING.get_or_init(record_shop)
}

/// Records the shop under concurrent load with `reprise record
/// --egress-route` (one route to the payments service, one to the
/// inventory), and checks that every downstream call is linked to the
/// checkout it was made for.
fn record_shop() -> Recording {
    let dir = tempfile::tempdir().unwrap();
    let inventory_port = free_port();
    let _inventory = Python::start(
        &[
            "inventory",
            "--listen",
            &format!("127.0.0.1:{inventory_port}"),
        ],
        inventory_port,
    );
    let payments_port = free_port();
    let _payments = Python::start(
        &[
            "payments",
            "--listen",
            &format!("127.0.0.1:{payments_port}"),
        ],
        payments_port,
    );
    let tape = dir.path().join("recording.tape");
    let payments = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let inventory = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let shop_port = free_port();
    let routes = [
        format!("payments={payments}=http://127.0.0.1:{payments_port}"),
        format!("inventory={inventory}=http://127.0.0.1:{inventory_port}"),
    ];
    let recorder = Recorder::start(
        &format!("http://127.0.0.1:{shop_port}"),
        &tape,
        &["--egress-route", &routes[0], "--egress-route", &routes[1]],
    );
    let shop = Python::start(
        &[
            "shop",
            "--listen",
            &format!("127.0.0.1:{shop_port}"),
            "--payments",
            &format!("http://{payments}"),
            "--inventory",
            &inventory.to_string(),
        ],
        shop_port,
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
    let downstream: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.role == Role::Downstream as i32)
        .collect();
    assert_eq!(downstream.len(), 2 * CHECKOUTS);
    // Each checkout's two calls are linked to it, in the order made:
    // the inventory, then the payment.
    for parent in &inbound {
        let mut children: Vec<&&Exchange> = downstream
            .iter()
            .filter(|c| c.parent_id == parent.id)
            .collect();
        children.sort_by_key(|c| c.link.as_ref().map(|l| l.order));
        let routes: Vec<&str> = children
            .iter()
            .map(|c| c.source.as_ref().unwrap().route.as_str())
            .collect();
        assert_eq!(routes, ["inventory", "payments"]);
        for (n, child) in children.iter().enumerate() {
            let link = child.link.as_ref().unwrap();
            assert_eq!(link.kind, LinkKind::Trace as i32);
            assert_eq!(link.order as usize, n);
            assert_eq!(trace_of(child), trace_of(parent));
        }
    }
    Recording {
        _dir: dir,
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

/// Runs `reprise test` on the recording with `args` before `--` and
/// `command` after it, the environment given added; killed (its process
/// group) if it takes more than `seconds`.
fn reprise_test(args: &[&str], env: &[(&str, &str)], command: &[String], seconds: u64) -> Run {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("test")
        .arg(&recording().tape)
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
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let _ = child.wait();
            panic!("reprise test did not finish within {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
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
        &["--port", &port, "--max", "--concurrency", "4"],
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
    assert!(
        run.stdout.contains("/charge: $.amount 10"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" → 11"), "{}", run.stdout);
    let report = std::fs::read_to_string(run.out.path().join("report.txt")).unwrap();
    assert!(report.contains("$.amount"), "{report}");
}

#[test]
fn an_extra_call_is_named_as_extra() {
    let run = shop_test(&[("SHOP_EXTRA_CALL", "1")]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(run.stdout.contains("new call: POST "), "{}", run.stdout);
    assert!(run.stdout.contains("/audit"), "{}", run.stdout);
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
    let run = reprise_test(
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
    let run = reprise_test(&["--port", &port], &[], &command, 60);
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
        &["--port", &port, "--max", "--baseline-cmd", &baseline],
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

/// Waits (bounded) for `child` to exit; its code and stderr.
fn finished(mut child: Child, seconds: u64) -> (i32, String) {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("reprise test did not exit within {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
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

/// The recording as if the shop had reached its dependencies through the
/// forward proxy (`reprise record --egress ADDR`, HTTPS_PROXY and
/// grpc_proxy): the same calls, stored with no route, the proxy's
/// address, and the names the shop used (`https://payments.example`,
/// `inventory.internal:50051`).
fn through_the_proxy(dir: &Path) -> (PathBuf, SocketAddr) {
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut exchanges = read_tape(&recording().tape);
    for call in exchanges
        .iter_mut()
        .filter(|e| e.role == Role::Downstream as i32)
    {
        let source = call.source.as_mut().unwrap();
        let payments = source.route == "payments";
        source.route.clear();
        source.listener = proxy.to_string();
        let request = call.request.as_mut().unwrap();
        if payments {
            request.scheme = "https".into();
            request.authority = "payments.example:443".into();
        } else {
            request.scheme = "http".into();
            request.authority = "inventory.internal:50051".into();
        }
    }
    let tape = dir.join("proxied.tape");
    write_exchanges(&tape, &exchanges);
    (tape, proxy)
}

#[test]
fn through_the_forward_proxy_https_and_grpc_are_answered_inside() {
    let dir = tempfile::tempdir().unwrap();
    let (tape, _) = through_the_proxy(dir.path());
    let ca = dir.path().join("ca");
    let made = support::reprise(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    assert!(made.status.success(), "{made:?}");
    let port = recording().shop_port.to_string();
    let run = |env: &[(&str, &str)]| {
        let out = dir.path().join(format!("out{}", env.len()));
        let output = Command::new(env!("CARGO_BIN_EXE_reprise"))
            .arg("test")
            .arg(&tape)
            .args(["--port", &port, "--max", "--ca-dir"])
            .arg(&ca)
            .arg("--out")
            .arg(&out)
            .arg("--")
            .arg("python3")
            .arg(shop_py())
            .args(["shop", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--payments", "https://payments.example"])
            .args(["--inventory", "inventory.internal:50051"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code(), text, out)
    };
    let (code, text, out) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    let calls = read_tape(&out.join("downstream.tape"));
    assert_eq!(calls.len(), 2 * CHECKOUTS, "{text}");
    // Each call reached the mock by the name the shop used, TLS included.
    assert!(calls.iter().any(|c| {
        let r = c.request.as_ref().unwrap();
        r.authority == "payments.example:443" && r.path == "/charge"
    }));
    let (code, text, _) = run(&[("SHOP_CHARGE_DELTA", "10")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("POST payments.example:443/charge: $.amount 10"),
        "{text}"
    );
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
