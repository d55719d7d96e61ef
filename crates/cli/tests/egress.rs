//! `reprise record --egress / --egress-route`: the service's own calls
//! recorded in the same tape, each linked to the inbound call it served
//! by W3C trace context. Real services (Python's http.server with urllib,
//! Node's http), a real downstream, the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reprise_model::trace::trace_id_from;
use reprise_model::{Exchange, LinkKind, Role};
use support::{Recorder, counter, eventually, free_port, read_tape, reprise, s, text};

const SERVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services");

/// A process serving on 127.0.0.1:`port`, killed on drop.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    /// Runs `program ARGS` with `env` and waits (bounded) for its port.
    fn start(program: &str, args: &[String], env: &[(&str, String)], port: u16) -> Process {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // The proxy variables of the machine running the tests must not
        // reach the services: each test sets its own.
        for name in ["HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut process = Process {
            child: command.spawn().unwrap_or_else(|e| panic!("{program}: {e}")),
            port,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eventually(&format!("{program} listening on {addr}"), 20, || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{program} {args:?} exited with {status}");
            }
            TcpStream::connect(addr).is_ok()
        });
        process
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The downstream: `barrier` calls to /inventory wait for each other.
fn downstream(barrier: usize) -> Process {
    let port = free_port();
    Process::start(
        "python3",
        &[
            format!("{SERVICES}/downstream.py"),
            port.to_string(),
            barrier.to_string(),
        ],
        &[],
        port,
    )
}

/// A recording of a Python service whose calls go through `--egress` (to
/// the downstream) and the route `pay` (to the downstream's `/v1`).
struct Recording {
    _dir: tempfile::TempDir,
    tape: PathBuf,
    recorder: Recorder,
    egress: SocketAddr,
    _service: Process,
    _downstream: Process,
}

fn record_python(barrier: usize, extra: &[&str]) -> Recording {
    let downstream = downstream(barrier);
    record_python_to(downstream, extra, None)
}

/// As [`record_python`], the route `pay` going to `route_to` when given.
fn record_python_to(downstream: Process, extra: &[&str], route_to: Option<&str>) -> Recording {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("egress.tape");
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let route = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let service_port = free_port();
    let route_url = route_to.map_or_else(|| format!("{}/v1", downstream.url()), str::to_string);
    let route_spec = format!("pay={route}={route_url}");
    let egress_text = egress.to_string();
    let upstream = format!("http://127.0.0.1:{service_port}");
    let mut args = vec![
        "--egress",
        &egress_text,
        "--egress-route",
        &route_spec,
        "--admin",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let recorder = Recorder::start(&upstream, &tape, &args);
    let service = Process::start(
        "python3",
        &[
            format!("{SERVICES}/egress_service.py"),
            service_port.to_string(),
            downstream.url(),
            format!("http://{route}"),
        ],
        &[("HTTP_PROXY", format!("http://{egress}"))],
        service_port,
    );
    Recording {
        _dir: dir,
        tape,
        recorder,
        egress,
        _service: service,
        _downstream: downstream,
    }
}

/// POSTs an order with request id `id` (and `traceparent` when given)
/// to `url` (the recorder's); the service's answer.
fn order(url: &str, id: &str, traceparent: Option<&str>) -> String {
    let mut args = vec![
        "-X".to_string(),
        "POST".into(),
        "-d".into(),
        "{}".into(),
        "-H".into(),
        format!("x-request-id: {id}"),
    ];
    if let Some(parent) = traceparent {
        args.extend(["-H".into(), format!("traceparent: {parent}")]);
    }
    args.push(url.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::curl(&args).0
}

fn header<'a>(exchange: &'a Exchange, name: &str) -> Option<&'a [u8]> {
    exchange
        .request
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| &h.value[..])
}

/// The request id a downstream call's body names.
fn from(exchange: &Exchange) -> String {
    let body = exchange
        .request
        .as_ref()
        .map(|r| &r.body[..])
        .unwrap_or(&[]);
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    json["from"].as_str().unwrap_or_default().to_string()
}

fn link_kind(exchange: &Exchange) -> Option<LinkKind> {
    exchange.link.and_then(|l| LinkKind::try_from(l.kind).ok())
}

fn path(exchange: &Exchange) -> &str {
    exchange.request.as_ref().map_or("", |r| r.path.as_str())
}

/// Inbound exchanges by the request id they carried.
fn inbound_by_request_id(exchanges: &[Exchange]) -> HashMap<String, &Exchange> {
    exchanges
        .iter()
        .filter(|e| e.role == Role::Inbound as i32)
        .map(|e| {
            let id = header(e, "x-request-id").unwrap_or_default();
            (text(id), e)
        })
        .collect()
}

fn downstream_calls(exchanges: &[Exchange]) -> Vec<&Exchange> {
    exchanges
        .iter()
        .filter(|e| e.role == Role::Downstream as i32)
        .collect()
}

/// Every downstream call is linked by trace to exactly the inbound call
/// whose request id it carries, the first call (`first`) as order 0 and
/// the second (`second`) as order 1, with its parent's trace id.
fn assert_each_child_has_its_parent(
    exchanges: &[Exchange],
    calls: usize,
    first: &str,
    second: &str,
) {
    let inbound = inbound_by_request_id(exchanges);
    assert_eq!(inbound.len(), calls, "inbound calls recorded");
    let children = downstream_calls(exchanges);
    assert_eq!(children.len(), 2 * calls, "downstream calls recorded");
    let mut orders: HashMap<&[u8], Vec<(u32, &str)>> = HashMap::new();
    for child in &children {
        let parent = inbound
            .get(&from(child))
            .unwrap_or_else(|| panic!("a downstream call names no inbound call: {child:?}"));
        assert_eq!(
            child.parent_id,
            parent.id,
            "{} of {}",
            path(child),
            from(child)
        );
        assert_eq!(link_kind(child), Some(LinkKind::Trace));
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.trace_id.len(), 16);
        let order = child.link.map_or(u32::MAX, |l| l.order);
        orders
            .entry(&parent.id[..])
            .or_default()
            .push((order, path(child)));
    }
    for (_, mut siblings) in orders {
        siblings.sort();
        assert_eq!(siblings, [(0, first), (1, second)]);
    }
}

#[test]
fn a_python_services_calls_are_linked_to_their_inbound_call_under_load() {
    const CALLS: usize = 8;
    // Each call's first downstream call waits until all eight are
    // waiting: eight inbound calls in flight at once, their downstream
    // calls interleaved.
    let recording = record_python(CALLS, &[]);
    std::thread::scope(|scope| {
        for i in 0..CALLS {
            let url = recording.recorder.url("/order");
            scope.spawn(move || {
                // Half come with a trace of their own, half with none
                // (the proxy starts one).
                let parent = format!("00-{:032x}-{:016x}-01", 0xabc000 + i, 7 + i);
                let traceparent = (i % 2 == 0).then_some(parent.as_str());
                let answer = order(&url, &format!("r{i}"), traceparent);
                assert!(answer.contains(&format!("\"id\": \"r{i}\"")), "{answer}");
                assert_eq!(answer.matches("[200,").count(), 2, "{answer}");
            });
        }
    });
    let metrics = recording.recorder.wait_for_counter(
        "reprise_egress_calls_total{link=\"trace\"}",
        2 * CALLS as u64,
    );
    assert_eq!(
        counter(&metrics, "reprise_egress_calls_total{link=\"unlinked\"}"),
        0
    );
    let said = recording.recorder.stop_cleanly("-INT");
    assert!(
        said.contains("egress: 16 calls, 16 linked, 0 ambiguous, 0 unlinked"),
        "{said}"
    );
    let exchanges = read_tape(&recording.tape);
    assert_each_child_has_its_parent(&exchanges, CALLS, "/inventory", "/v1/charge");
    let inbound = inbound_by_request_id(&exchanges);
    // A caller's trace is kept; the others' started from the exchange id.
    for i in 0..CALLS {
        let exchange = inbound[&format!("r{i}")];
        if i % 2 == 0 {
            assert_eq!(
                reprise_model::display_id(&exchange.trace_id),
                format!("{:032x}", 0xabc000 + i)
            );
        } else {
            assert_eq!(exchange.trace_id, trace_id_from(&exchange.id));
        }
    }
    // Where each call went, and through which listener.
    for child in downstream_calls(&exchanges) {
        let source = child.source.clone().unwrap_or_default();
        let request = child.request.clone().unwrap_or_default();
        assert_eq!(source.recorder, "proxy");
        assert_eq!(request.scheme, "http");
        assert!(request.authority.starts_with("127.0.0.1:"), "{request:?}");
        if request.path == "/inventory" {
            assert_eq!(
                (source.route.as_str(), source.listener),
                ("", recording.egress.to_string())
            );
        } else {
            assert_eq!(source.route, "pay");
        }
        assert_eq!(child.response.as_ref().map(|r| r.status), Some(200));
    }
}

#[test]
fn a_node_services_calls_are_linked_to_their_inbound_call_under_load() {
    const CALLS: usize = 8;
    let downstream = downstream(CALLS);
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("node.tape");
    let (first, second) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let service_port = free_port();
    let routes = [
        format!("inventory={first}={}", downstream.url()),
        format!("payments={second}={}/v2", downstream.url()),
    ];
    let recorder = Recorder::start(
        &format!("http://127.0.0.1:{service_port}"),
        &tape,
        &["--egress-route", &routes[0], "--egress-route", &routes[1]],
    );
    let _service = Process::start(
        "node",
        &[
            format!("{SERVICES}/egress_service.js"),
            service_port.to_string(),
            format!("http://{first}"),
            format!("http://{second}"),
        ],
        &[],
        service_port,
    );
    std::thread::scope(|scope| {
        for i in 0..CALLS {
            let url = recorder.url("/order");
            scope.spawn(move || {
                let answer = order(&url, &format!("n{i}"), None);
                assert_eq!(answer.matches("[200,").count(), 2, "{answer}");
            });
        }
    });
    let said = recorder.stop_cleanly("-INT");
    assert!(said.contains("16 linked"), "{said}");
    let exchanges = read_tape(&tape);
    assert_each_child_has_its_parent(&exchanges, CALLS, "/inventory", "/v2/charge");
    for child in downstream_calls(&exchanges) {
        let route = child.source.as_ref().map_or("", |s| s.route.as_str());
        let want = if path(child) == "/inventory" {
            "inventory"
        } else {
            "payments"
        };
        assert_eq!(route, want);
    }
}

#[test]
fn a_malformed_traceparent_is_replaced_by_a_trace_from_the_exchange_id() {
    let recording = record_python(1, &[]);
    order(&recording.recorder.url("/order"), "bad", Some("00-zz-01"));
    let said = recording.recorder.stop_cleanly("-INT");
    assert!(said.contains("2 linked"), "{said}");
    let exchanges = read_tape(&recording.tape);
    let inbound = inbound_by_request_id(&exchanges)["bad"];
    assert_eq!(inbound.trace_id, trace_id_from(&inbound.id));
    // Recorded as the client sent it.
    assert_eq!(header(inbound, "traceparent"), Some(&b"00-zz-01"[..]));
    assert_each_child_has_its_parent(&exchanges, 1, "/inventory", "/v1/charge");
}

/// A call straight through the egress proxy (no inbound call), with
/// `traceparent` when given.
fn call_through_proxy(recording: &Recording, target: &str, traceparent: Option<&str>) -> String {
    let proxy = format!("http://{}", recording.egress);
    let mut args = vec!["-x", &proxy, "-X", "POST", "-d", "{\"from\":\"nobody\"}"];
    let header = traceparent.map(|p| format!("traceparent: {p}"));
    if let Some(header) = &header {
        args.extend(["-H", header]);
    }
    args.push(target);
    support::curl(&args).0
}

#[test]
fn calls_with_no_or_an_unknown_trace_are_stored_unlinked_and_counted() {
    let recording = record_python(1, &[]);
    let target = format!("{}/token", recording._downstream.url());
    let unknown = "00-0000000000000000000000000000beef-00f067aa0ba902b7-01";
    call_through_proxy(&recording, &target, Some(unknown));
    call_through_proxy(&recording, &target, None);
    let metrics = recording
        .recorder
        .wait_for_counter("reprise_egress_calls_total{link=\"unknown_trace\"}", 1);
    assert_eq!(
        counter(&metrics, "reprise_egress_calls_total{link=\"unlinked\"}"),
        1
    );
    let said = recording.recorder.stop_cleanly("-INT");
    assert!(
        said.contains("2 calls, 0 linked, 0 ambiguous, 2 unlinked (1 with an unknown trace id)"),
        "{said}"
    );
    let exchanges = read_tape(&recording.tape);
    let calls = downstream_calls(&exchanges);
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert!(call.parent_id.is_empty());
        assert_eq!(link_kind(call), Some(LinkKind::Unlinked));
        assert_eq!(path(call), "/token");
    }
    let traces: Vec<String> = calls
        .iter()
        .map(|c| reprise_model::display_id(&c.trace_id))
        .collect();
    assert!(traces.contains(&format!("{:032x}", 0xbeef)), "{traces:?}");
    assert!(traces.contains(&String::new()), "{traces:?}");
}

#[test]
fn overlapping_inbound_calls_of_one_trace_make_their_calls_ambiguous() {
    // Both calls' first downstream calls wait for each other: the two
    // inbound calls are in flight at once.
    let recording = record_python(2, &[]);
    let shared = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    std::thread::scope(|scope| {
        for id in ["a", "b"] {
            let url = recording.recorder.url("/order");
            scope.spawn(move || order(&url, id, Some(shared)));
        }
    });
    // An /inventory call that reached reprise before the other inbound
    // call did can only be its own call's, and is linked; every call
    // after both had arrived is ambiguous: both charges (made after the
    // barrier, where both were in flight) and at least one /inventory.
    let said = recording.recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&recording.tape);
    let inbound = inbound_by_request_id(&exchanges);
    let calls = downstream_calls(&exchanges);
    assert_eq!(calls.len(), 4);
    let mut ambiguous = 0;
    for call in calls {
        assert_eq!(
            reprise_model::display_id(&call.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let path = path(call).to_string();
        match link_kind(call) {
            Some(LinkKind::Ambiguous) => {
                assert!(call.parent_id.is_empty(), "never given to one of them");
                ambiguous += 1;
            }
            Some(LinkKind::Trace) => {
                assert!(path.ends_with("/inventory"), "only a first call: {path}");
                assert_eq!(call.parent_id, inbound[&from(call)].id, "its own call");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(ambiguous >= 3, "{ambiguous} ambiguous");
    assert!(
        said.contains(&format!("{} linked, {ambiguous} ambiguous", 4 - ambiguous)),
        "{said}"
    );
}

#[test]
fn a_fresh_trace_links_overlapping_calls_exactly_and_keeps_the_callers_trace() {
    let recording = record_python(2, &["--fresh-trace"]);
    let shared = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    std::thread::scope(|scope| {
        for id in ["a", "b"] {
            let url = recording.recorder.url("/order");
            scope.spawn(move || order(&url, id, Some(shared)));
        }
    });
    let said = recording.recorder.stop_cleanly("-INT");
    assert!(said.contains("4 linked, 0 ambiguous"), "{said}");
    let exchanges = read_tape(&recording.tape);
    assert_each_child_has_its_parent(&exchanges, 2, "/inventory", "/v1/charge");
    let inbound = inbound_by_request_id(&exchanges);
    assert_ne!(inbound["a"].trace_id, inbound["b"].trace_id);
    for exchange in inbound.values() {
        assert_eq!(exchange.trace_id, trace_id_from(&exchange.id));
    }
    // The service saw the caller's trace id in tracestate, and passed it on.
    for child in downstream_calls(&exchanges) {
        let state = text(header(child, "tracestate").unwrap_or_default());
        assert_eq!(state, "reprise-caller=0af7651916cd43dd8448eb211c80319c");
    }
}

#[test]
fn a_sampled_out_inbound_call_records_no_calls_of_its_own() {
    let recording = record_python(1, &["--sample", "0"]);
    order(&recording.recorder.url("/order"), "x", None);
    order(&recording.recorder.url("/order"), "y", None);
    let metrics = recording
        .recorder
        .wait_for_counter("reprise_egress_calls_total{link=\"parent_sampled_out\"}", 4);
    assert_eq!(
        counter(&metrics, "reprise_egress_calls_total{link=\"trace\"}"),
        0
    );
    let said = recording.recorder.stop_cleanly("-INT");
    assert!(
        said.contains("4 skipped with their sampled-out inbound call"),
        "{said}"
    );
    assert!(read_tape(&recording.tape).is_empty());
}

#[test]
fn calls_follow_their_inbound_calls_match_verdict() {
    let recording = record_python(1, &["--match", "header=x-request-id:keep*"]);
    order(&recording.recorder.url("/order"), "keep-1", None);
    order(&recording.recorder.url("/order"), "skip-1", None);
    recording.recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&recording.tape);
    let inbound = inbound_by_request_id(&exchanges);
    assert_eq!(inbound.keys().collect::<Vec<_>>(), ["keep-1"]);
    let calls = downstream_calls(&exchanges);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| c.parent_id == inbound["keep-1"].id));
}

#[test]
fn a_downstream_that_refuses_gives_a_502_recorded_with_its_error() {
    let refusing = format!("http://127.0.0.1:{}", free_port());
    let recording = record_python_to(downstream(1), &[], Some(&refusing));
    let answer = order(&recording.recorder.url("/order"), "r", None);
    // The proxied call went through; the route's downstream refused.
    assert!(answer.contains("[200,"), "{answer}");
    assert!(
        answer.contains("[502,") && answer.contains("downstream failed"),
        "{answer}"
    );
    // Recording goes on.
    order(&recording.recorder.url("/order"), "s", None);
    let said = recording.recorder.stop_cleanly("-INT");
    assert!(said.contains("4 linked"), "{said}");
    let exchanges = read_tape(&recording.tape);
    let refused: Vec<&Exchange> = downstream_calls(&exchanges)
        .into_iter()
        .filter(|c| c.source.as_ref().is_some_and(|s| s.route == "pay"))
        .collect();
    assert_eq!(refused.len(), 2);
    for call in refused {
        let error = call.error.clone().unwrap_or_default();
        assert_eq!(
            error.kind,
            reprise_model::ErrorKind::Connect as i32,
            "{error:?}"
        );
        assert!(call.response.is_none());
        assert_eq!(link_kind(call), Some(LinkKind::Trace));
    }
}

fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("never.tape");
    let mut all = vec![
        "record",
        "--upstream",
        "http://127.0.0.1:1",
        "--out",
        s(&tape),
    ];
    all.extend_from_slice(args);
    let out = reprise(&all);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(!Path::new(&tape).exists());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_egress_flags_are_refused_with_one_line() {
    for (args, says) in [
        (&["--egress-route", "pay"][..], "expected NAME=LISTEN=URL"),
        (
            &["--egress-route", "pay=127.0.0.1:9=ftp://x"],
            "http or https",
        ),
        (
            &["--egress-route", "pay=nowhere=http://x"],
            "is not an address",
        ),
        (
            &["--egress-route", "p y=127.0.0.1:9=http://x"],
            "the name must be",
        ),
        (
            &[
                "--egress-route",
                "a=127.0.0.1:9=http://x",
                "--egress-route",
                "a=127.0.0.1:10=http://x",
            ],
            "given twice",
        ),
        (
            &[
                "--egress",
                "127.0.0.1:9",
                "--egress-route",
                "a=127.0.0.1:9=http://x",
            ],
            "given twice",
        ),
        (&["--egress", "somewhere"], "--egress"),
        (
            &["--fresh-trace"],
            "needs --egress, --egress-route or --egress-db",
        ),
        (
            &["--egress-ca", "/nonexistent.pem"],
            "needs --egress, --egress-route or --egress-db",
        ),
        (
            &["--egress", "127.0.0.1:0", "--link-window", "soon"],
            "--link-window",
        ),
    ] {
        let said = refused(args);
        assert!(said.contains(says), "{args:?}: {said}");
    }
}

#[test]
fn egress_calls_are_redacted_and_capped_as_inbound_ones() {
    let recording = record_python(
        1,
        &["--redact-header", "user-agent", "--redact-json", "$.got"],
    );
    order(&recording.recorder.url("/order"), "secret", None);
    recording.recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&recording.tape);
    let calls = downstream_calls(&exchanges);
    assert_eq!(calls.len(), 2);
    for call in calls {
        assert_eq!(header(call, "user-agent"), Some(&b"[redacted]"[..]));
        let response = call.response.clone().unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        assert_eq!(body["got"], "[redacted]", "{body}");
    }

    let capped = record_python(1, &["--max-body", "8"]);
    order(&capped.recorder.url("/order"), "long-request-id", None);
    capped.recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&capped.tape);
    let calls = downstream_calls(&exchanges);
    assert_eq!(calls.len(), 2);
    for call in calls {
        let request = call.request.clone().unwrap_or_default();
        assert!(
            request.body.len() <= 8 && request.body_truncated,
            "{request:?}"
        );
        assert_eq!(call.parent_id.len(), 16);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_through_a_route_are_recorded_with_their_messages_and_status() {
    let echo = reprise_testkit::start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("grpc.tape");
    let route = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let spec = format!("echo={route}=http://{echo}");
    let recorder = Recorder::start("http://127.0.0.1:1", &tape, &["--egress-route", &spec]);
    let mut client = reprise_testkit::echo_client(route).await;
    let mut unary = tonic::Request::new(support::note("hello", 7));
    unary.metadata_mut().insert(
        "traceparent",
        "00-0000000000000000000000000000c0de-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let answer = client.unary(unary).await.unwrap();
    assert_eq!(answer.get_ref().text, "HELLO");
    let failed = client.unary(support::note("fail", 0)).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let mut stream = client
        .server_stream(reprise_testkit::echo::Count { n: 3, gap_ms: 10 })
        .await
        .unwrap()
        .into_inner();
    let mut notes = 0;
    while stream.message().await.unwrap().is_some() {
        notes += 1;
    }
    assert_eq!(notes, 3);
    let said = tokio::task::spawn_blocking(move || recorder.stop_cleanly("-INT"))
        .await
        .unwrap();
    assert!(
        said.contains(
            "egress: 3 calls, 0 linked, 0 ambiguous, 3 unlinked (1 with an unknown trace id)"
        ),
        "{said}"
    );
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 3);
    for exchange in &exchanges {
        assert_eq!(exchange.protocol, reprise_model::Protocol::Grpc as i32);
        assert_eq!(
            exchange.source.as_ref().map(|s| s.route.as_str()),
            Some("echo")
        );
        let request = exchange.request.clone().unwrap_or_default();
        assert_eq!(request.authority, echo.to_string());
    }
    let statuses: Vec<i32> = exchanges
        .iter()
        .map(|e| {
            e.response
                .as_ref()
                .and_then(|r| r.grpc.as_ref())
                .map_or(-1, |g| g.code)
        })
        .collect();
    assert_eq!(statuses, [0, 5, 0]);
    let streamed = exchanges[2]
        .messages
        .iter()
        .filter(|m| m.direction == reprise_model::Direction::Response as i32)
        .count();
    assert_eq!(streamed, 3);
}

#[test]
fn an_https_downstream_is_reached_with_the_egress_ca_and_recorded_as_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path());
    let server = support::PythonHttp::serving_tls(&[("v1/hello.json", "{\"hi\":1}")], &cert, &key);
    let tape = dir.path().join("tls.tape");
    let route = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let spec = format!("tls={route}={}/v1", server.url());
    let recorder = Recorder::start(
        "http://127.0.0.1:1",
        &tape,
        &["--egress-route", &spec, "--egress-ca", s(&cert)],
    );
    let (body, _) = support::curl(&[&format!("http://{route}/hello.json")]);
    assert_eq!(body, "{\"hi\":1}");
    recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    let request = exchanges[0].request.clone().unwrap_or_default();
    assert_eq!(
        (
            request.scheme.as_str(),
            request.authority.as_str(),
            request.path.as_str()
        ),
        (
            "https",
            format!("localhost:{}", server.addr.port()).as_str(),
            "/v1/hello.json"
        )
    );
    assert_eq!(
        exchanges[0].source.as_ref().map(|s| s.listener.clone()),
        Some(route.to_string())
    );

    // Without the CA, the system roots do not know the certificate: a 502
    // saying why, recorded with its error.
    let tape = dir.path().join("untrusted.tape");
    let recorder = Recorder::start("http://127.0.0.1:1", &tape, &["--egress-route", &spec]);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "%{http_code}"])
        .arg(format!("http://{route}/hello.json"))
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(
        said.ends_with("502") && said.contains("downstream failed"),
        "{said}"
    );
    recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    assert!(exchanges[0].error.is_some());
}
