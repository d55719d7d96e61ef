//! `reprise record --egress` in front of a Node.js service that reaches
//! an https downstream through its proxy variables: undici's
//! `EnvHttpProxyAgent` reads `HTTPS_PROXY` and opens a CONNECT tunnel,
//! reprise terminates its TLS with a leaf from the reprise CA (which Node
//! trusts through `NODE_EXTRA_CA_CERTS`, as `reprise ca env` prints it)
//! and calls the real downstream over TLS (trusted by `--egress-ca`).
//! Every call is recorded as `https://host:port/...`, linked to exactly
//! the inbound call it served, in its order; a Node that does not trust
//! the CA fails its call at once and recording goes on.
//!
//! undici comes from npm into target/undici (scripts/setup-tests.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprise_model::{Exchange, LinkKind, Role};
use support::{Recorder, counter, eventually, free_port, read_tape, reprise, s, text};

const SERVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/services");
const UNDICI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/undici/node_modules"
);

/// A `node` process serving on 127.0.0.1:`port`, killed on drop.
struct Node {
    child: Child,
}

impl Node {
    /// Runs `node SCRIPT ARGS` with `env` only (none of the machine's
    /// proxy, CA or Node variables) and waits (bounded) for `port`.
    fn start(script: &str, args: &[String], env: &[(&str, String)], port: u16) -> Node {
        assert!(
            Path::new(UNDICI).join("undici/package.json").exists(),
            "{UNDICI}/undici is missing: run scripts/setup-tests.sh (scripts/test.sh does)"
        );
        let mut command = Command::new("node");
        command
            .arg(format!("{SERVICES}/{script}"))
            .args(args)
            .env("NODE_PATH", UNDICI)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
            "NODE_EXTRA_CA_CERTS",
            "NODE_OPTIONS",
            "NODE_USE_ENV_PROXY",
            "NODE_TLS_REJECT_UNAUTHORIZED",
        ] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut node = Node {
            child: command.spawn().unwrap_or_else(|e| panic!("node: {e}")),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eventually(&format!("{script} listening on {addr}"), 20, || {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("{script} {args:?} exited with {status}");
            }
            TcpStream::connect(addr).is_ok()
        });
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An https downstream on `localhost` whose `barrier` calls to
/// /inventory wait for each other; its port and certificate.
fn https_downstream(dir: &Path, barrier: usize) -> (Node, u16, PathBuf) {
    let (cert, key) = support::self_signed(dir);
    let port = free_port();
    let node = Node::start(
        "https_downstream.js",
        &[
            port.to_string(),
            s(&cert).to_string(),
            s(&key).to_string(),
            barrier.to_string(),
        ],
        &[],
        port,
    );
    (node, port, cert)
}

/// `reprise ca init` in `dir/ca`; the directory and the
/// `NODE_EXTRA_CA_CERTS` that `reprise ca env` prints for it.
fn ca_for_node(dir: &Path) -> (PathBuf, String) {
    let ca = dir.join("ca");
    let out = reprise(&["ca", "init", "--dir", s(&ca)]);
    assert!(out.status.success(), "{out:?}");
    let out = reprise(&["ca", "env", "--dir", s(&ca)]);
    assert!(out.status.success(), "{out:?}");
    let printed = text(&out.stdout);
    let file = printed
        .lines()
        .find_map(|line| line.strip_prefix("export NODE_EXTRA_CA_CERTS="))
        .map(|value| value.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("no NODE_EXTRA_CA_CERTS in {printed}"));
    (ca, file)
}

/// A recorder with `--egress` (and the CA, trusting the downstream's
/// certificate) in front of the Node service's port, and that port.
fn recorder(dir: &Path, ca: &Path, downstream_cert: &Path) -> (Recorder, SocketAddr, u16) {
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let service_port = free_port();
    let recorder = Recorder::start(
        &format!("http://127.0.0.1:{service_port}"),
        &dir.join("node.tape"),
        &[
            "--egress",
            &egress.to_string(),
            "--ca-dir",
            s(ca),
            "--egress-ca",
            s(downstream_cert),
            "--admin",
            "127.0.0.1:0",
        ],
    );
    (recorder, egress, service_port)
}

/// The Node service on `port`, calling `https://localhost:DOWNSTREAM`
/// through `HTTPS_PROXY` = the egress proxy, trusting `ca_file` when given.
fn service(port: u16, downstream: u16, egress: SocketAddr, ca_file: Option<&str>) -> Node {
    let mut env = vec![("HTTPS_PROXY", format!("http://{egress}"))];
    if let Some(file) = ca_file {
        env.push(("NODE_EXTRA_CA_CERTS", file.to_string()));
    }
    Node::start(
        "egress_proxy_service.js",
        &[port.to_string(), format!("https://localhost:{downstream}")],
        &env,
        port,
    )
}

/// POSTs `{"id": ID}` (with `traceparent` when given) to `url`; the
/// status and the body of the answer.
fn order(url: &str, id: &str, traceparent: Option<&str>) -> (u16, serde_json::Value) {
    let body = format!("{{\"id\":\"{id}\"}}");
    let header = traceparent.map(|p| format!("traceparent: {p}"));
    let mut args = vec!["-X", "POST", "-d", &body, "-w", "\n%{http_code}"];
    if let Some(header) = &header {
        args.extend(["-H", header]);
    }
    args.push(url);
    let (out, _) = support::curl(&args);
    let (json, status) = out.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}")),
    )
}

fn request_json(exchange: &Exchange) -> serde_json::Value {
    let body = exchange.request.as_ref().map_or(&[][..], |r| &r.body[..]);
    serde_json::from_slice(body).unwrap_or_default()
}

fn header(exchange: &Exchange, name: &str) -> Option<String> {
    exchange
        .request
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| text(&h.value))
}

fn inbound_by_request_id(exchanges: &[Exchange]) -> HashMap<String, &Exchange> {
    exchanges
        .iter()
        .filter(|e| e.role == Role::Inbound as i32)
        .map(|e| (request_json(e)["id"].as_str().unwrap().to_string(), e))
        .collect()
}

fn downstream_calls(exchanges: &[Exchange]) -> Vec<&Exchange> {
    exchanges
        .iter()
        .filter(|e| e.role == Role::Downstream as i32)
        .collect()
}

/// Every downstream call is an https call to `authority` through
/// `egress`, linked by trace to exactly the inbound call whose request id
/// its body carries (in its trace, with a span of its own), /inventory as
/// order 0 and /charge as order 1 of each of the `calls` inbound calls.
fn assert_each_child_has_its_parent(
    exchanges: &[Exchange],
    calls: usize,
    authority: &str,
    egress: SocketAddr,
) {
    let inbound = inbound_by_request_id(exchanges);
    assert_eq!(inbound.len(), calls, "inbound calls recorded");
    let children = downstream_calls(exchanges);
    assert_eq!(children.len(), 2 * calls, "downstream calls recorded");
    let mut orders: HashMap<&[u8], Vec<(u32, String)>> = HashMap::new();
    for child in children {
        let from = request_json(child)["from"].as_str().unwrap().to_string();
        let parent = inbound
            .get(&from)
            .unwrap_or_else(|| panic!("a downstream call names no inbound call: {child:?}"));
        let request = child.request.clone().unwrap();
        assert_eq!(
            (request.method.as_str(), request.scheme.as_str()),
            ("POST", "https")
        );
        assert_eq!(request.authority, authority);
        assert_eq!(child.parent_id, parent.id, "{} of {from}", request.path);
        let link = child.link.unwrap();
        assert_eq!(
            link.kind,
            LinkKind::Trace as i32,
            "{} of {from}",
            request.path
        );
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.trace_id.len(), 16);
        // The trace id the service sent, in a span of its own.
        let sent = header(child, "traceparent").unwrap();
        let fields: Vec<&str> = sent.split('-').collect();
        assert_eq!(
            fields[1],
            reprise_model::display_id(&parent.trace_id),
            "{sent}"
        );
        if let Some(theirs) = header(parent, "traceparent") {
            assert_ne!(fields[2], theirs.split('-').nth(2).unwrap(), "{sent}");
        }
        let source = child.source.clone().unwrap();
        assert_eq!(
            (
                source.recorder.as_str(),
                source.listener,
                source.route.as_str()
            ),
            ("proxy", egress.to_string(), "")
        );
        let response = child.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        assert!(text(&response.body).contains(&from), "{child:?}");
        orders
            .entry(&parent.id[..])
            .or_default()
            .push((link.order, request.path));
    }
    for (_, mut siblings) in orders {
        siblings.sort();
        assert_eq!(
            siblings,
            [(0, "/inventory".to_string()), (1, "/charge".to_string())]
        );
    }
}

#[test]
fn a_node_services_https_calls_through_its_proxy_variables_are_linked_under_load() {
    const CALLS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = ca_for_node(dir.path());
    // Each call's first downstream call waits until all eight are
    // waiting: eight inbound calls in flight at once, their downstream
    // calls interleaved.
    let (_downstream, downstream_port, cert) = https_downstream(dir.path(), CALLS);
    let (recorder, egress, port) = recorder(dir.path(), &ca, &cert);
    let _service = service(port, downstream_port, egress, Some(&ca_file));
    std::thread::scope(|scope| {
        for i in 0..CALLS {
            let url = recorder.url("/order");
            scope.spawn(move || {
                // Half come with a trace of their own, half with none
                // (the proxy starts one).
                let parent = format!("00-{:032x}-{:016x}-01", 0xdef000 + i, 9 + i);
                let traceparent = (i % 2 == 0).then_some(parent.as_str());
                let id = format!("n{i}");
                let (status, answer) = order(&url, &id, traceparent);
                assert_eq!(status, 200, "{answer}");
                for (call, path) in answer["calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(["/inventory", "/charge"])
                {
                    assert_eq!(call[0], 200, "{answer}");
                    assert_eq!(call[1]["path"], path, "{answer}");
                    assert!(call[1]["got"].as_str().unwrap().contains(&id), "{answer}");
                }
                // All eight /inventory calls were at the downstream at once.
                assert_eq!(answer["calls"][0][1]["together"], CALLS, "{answer}");
            });
        }
    });
    let metrics = recorder.wait_for_counter(
        "reprise_egress_calls_total{link=\"trace\"}",
        2 * CALLS as u64,
    );
    assert_eq!(
        counter(&metrics, "reprise_egress_calls_total{link=\"unlinked\"}"),
        0
    );
    let said = recorder.stop_cleanly("-INT");
    assert!(
        said.contains("egress: 16 calls, 16 linked, 0 ambiguous, 0 unlinked"),
        "{said}"
    );
    let exchanges = read_tape(&dir.path().join("node.tape"));
    assert_each_child_has_its_parent(
        &exchanges,
        CALLS,
        &format!("localhost:{downstream_port}"),
        egress,
    );
    // A caller's trace is kept.
    let inbound = inbound_by_request_id(&exchanges);
    for i in (0..CALLS).step_by(2) {
        assert_eq!(
            reprise_model::display_id(&inbound[&format!("n{i}")].trace_id),
            format!("{:032x}", 0xdef000 + i)
        );
    }
}

#[test]
fn a_node_that_does_not_trust_the_reprise_ca_fails_its_call_at_once_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = ca_for_node(dir.path());
    let (_downstream, downstream_port, cert) = https_downstream(dir.path(), 1);
    let (recorder, egress, port) = recorder(dir.path(), &ca, &cert);

    // Without NODE_EXTRA_CA_CERTS, Node rejects the leaf reprise minted:
    // the service's call fails at once with the reason, and reprise says
    // the likely cause and what to do (Node hangs up without a TLS alert).
    let untrusting = service(port, downstream_port, egress, None);
    let started = Instant::now();
    let (status, answer) = order(&recorder.url("/order"), "bad", None);
    let took = started.elapsed();
    assert_eq!(status, 502, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("fetch failed") && error.contains("certificate"),
        "{error}"
    );
    // Well under reprise's 10 s handshake timeout: nobody waited.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let mut seen = Vec::new();
    eventually("reprise saying why the tunnel ended", 20, || {
        seen.extend(recorder.stderr.try_iter());
        seen.iter().any(|l| {
            l.contains("after reprise's certificate for localhost")
                && l.contains("does not trust the reprise CA")
                && l.contains("reprise ca env")
        })
    });
    drop(untrusting);

    // The same recorder goes on: the service trusting the CA, on the
    // same port, has its calls recorded and linked.
    let _trusting = service(port, downstream_port, egress, Some(&ca_file));
    let (status, answer) = order(&recorder.url("/order"), "good", None);
    assert_eq!(status, 200, "{answer}");
    let said = recorder.stop_cleanly("-INT");
    assert!(
        said.contains("egress: 2 calls, 2 linked, 0 ambiguous, 0 unlinked"),
        "{said}"
    );
    let exchanges = read_tape(&dir.path().join("node.tape"));
    assert_eq!(exchanges.len(), 4, "{exchanges:?}");
    let inbound = inbound_by_request_id(&exchanges);
    let bad = inbound["bad"];
    assert_eq!(bad.response.as_ref().map(|r| r.status), Some(502));
    assert!(
        exchanges.iter().all(|e| e.parent_id != bad.id),
        "the rejected call never reached the downstream"
    );
    let good: Vec<Exchange> = exchanges
        .iter()
        .filter(|e| request_json(e)["id"] != "bad")
        .cloned()
        .collect();
    assert_each_child_has_its_parent(&good, 1, &format!("localhost:{downstream_port}"), egress);
}
