//! `reprise record --egress` as the front of a real forward proxy: a
//! Python service (examples/python-shop) whose `requests` client reaches
//! an HTTPS downstream through `HTTPS_PROXY` (CONNECT, TLS terminated with
//! a certificate from the reprise CA, trusted by `REQUESTS_CA_BUNDLE` as
//! `reprise ca env` says) and whose `grpcio` client reaches a gRPC
//! downstream through `grpc_proxy` (CONNECT carrying h2c): both calls
//! recorded as downstream calls with their scheme, linked to the inbound
//! call they served.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reprise_model::{LinkKind, Protocol, Role};
use support::{Recorder, eventually, free_port, read_tape, reprise, s, text};

const SHOP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python-shop/shop.py"
);

/// A process serving on 127.0.0.1:`port`, killed on drop.
struct Process(Child);

impl Process {
    /// Runs `python3 shop.py ARGS` with `env` (and none of the machine's
    /// proxy variables) and waits (bounded) for `port` to answer.
    fn shop(args: &[&str], env: &[(&str, String)], port: u16) -> Process {
        let mut command = Command::new("python3");
        command
            .arg(SHOP)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "grpc_proxy",
            "NO_PROXY",
            "no_proxy",
            "no_grpc_proxy",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
        ] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut process = Process(command.spawn().unwrap());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eventually(&format!("shop.py {args:?} listening"), 20, || {
            if let Ok(Some(status)) = process.0.try_wait() {
                panic!("shop.py {args:?} exited with {status}");
            }
            TcpStream::connect(addr).is_ok()
        });
        process
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `reprise ca init` in `dir/ca`, and the variables `reprise ca env`
/// prints for it.
fn ca_env(dir: &Path) -> (std::path::PathBuf, Vec<(String, String)>) {
    let ca = dir.join("ca");
    let out = reprise(&["ca", "init", "--dir", s(&ca)]);
    assert!(out.status.success(), "{out:?}");
    let out = reprise(&["ca", "env", "--dir", s(&ca)]);
    assert!(out.status.success(), "{out:?}");
    let vars = text(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_string(), value.trim_matches('\'').to_string()))
        .collect();
    (ca, vars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpc_calls_through_connect_are_recorded_and_linked() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, vars) = ca_env(dir.path());
    let bundle = vars
        .iter()
        .find(|(name, _)| name == "REQUESTS_CA_BUNDLE")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| panic!("no REQUESTS_CA_BUNDLE in {vars:?}"));
    // The downstreams: payments over HTTPS (its own certificate, which
    // the recorder trusts by --egress-ca), the inventory over h2c.
    let (cert, key) = support::self_signed(dir.path());
    let payments_port = free_port();
    let payments_listen = format!("127.0.0.1:{payments_port}");
    let _payments = Process::shop(
        &[
            "payments",
            "--listen",
            &payments_listen,
            "--cert",
            s(&cert),
            "--key",
            s(&key),
        ],
        &[],
        payments_port,
    );
    let inventory = reprise_testkit::start_echo().await;

    let tape = dir.path().join("shop.tape");
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let egress_text = egress.to_string();
    let shop_port = free_port();
    let recorder = Recorder::start(
        &format!("http://127.0.0.1:{shop_port}"),
        &tape,
        &[
            "--egress",
            &egress_text,
            "--ca-dir",
            s(&ca),
            "--egress-ca",
            s(&cert),
        ],
    );
    let proxy = format!("http://{egress}");
    let shop_listen = format!("127.0.0.1:{shop_port}");
    let payments_url = format!("https://localhost:{payments_port}");
    let inventory_target = format!("localhost:{}", inventory.port());
    let _shop = Process::shop(
        &[
            "shop",
            "--listen",
            &shop_listen,
            "--payments",
            &payments_url,
            "--inventory",
            &inventory_target,
        ],
        &[
            ("HTTPS_PROXY", proxy.clone()),
            ("grpc_proxy", proxy.clone()),
            ("REQUESTS_CA_BUNDLE", bundle),
        ],
        shop_port,
    );
    let (answer, _) = support::curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"order":"o-1","sku":"apple","amount":12}"#,
        &recorder.url("/checkout"),
    ]);
    assert!(
        answer.contains(r#""id": "pay-o-1""#) && answer.contains("APPLE"),
        "{answer}"
    );
    recorder.stop_cleanly("-INT");

    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 3, "{exchanges:?}");
    let inbound = exchanges
        .iter()
        .find(|e| e.role == Role::Inbound as i32)
        .unwrap();
    let mut calls: Vec<_> = exchanges
        .iter()
        .filter(|e| e.role == Role::Downstream as i32)
        .collect();
    calls.sort_by_key(|e| e.link.as_ref().map(|l| l.order));
    let seen: Vec<_> = calls
        .iter()
        .map(|e| {
            let r = e.request.as_ref().unwrap();
            (
                r.method.as_str(),
                r.scheme.as_str(),
                r.authority.as_str(),
                r.path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "POST",
                "http",
                inventory_target.as_str(),
                "/reprise.test.v1.Echo/Unary"
            ),
            (
                "POST",
                "https",
                format!("localhost:{payments_port}").as_str(),
                "/charge"
            ),
        ]
    );
    assert_eq!(calls[0].protocol, Protocol::Grpc as i32);
    for (order, call) in calls.iter().enumerate() {
        assert_eq!(call.parent_id, inbound.id, "{call:?}");
        assert_eq!(call.trace_id, inbound.trace_id);
        let link = call.link.unwrap();
        assert_eq!(
            (link.kind, link.order),
            (LinkKind::Trace as i32, order as u32)
        );
        let source = call.source.as_ref().unwrap();
        assert_eq!(
            (
                source.recorder.as_str(),
                source.listener.as_str(),
                source.route.as_str()
            ),
            ("proxy", egress_text.as_str(), "")
        );
        assert_eq!(call.response.as_ref().unwrap().status, 200);
    }
    let charged = text(&calls[1].response.as_ref().unwrap().body);
    assert!(charged.contains("pay-o-1"), "{charged}");
}

#[test]
fn without_a_ca_tls_tunnels_are_refused_and_said_and_plain_tunnels_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let downstream = support::PythonHttp::serving(&[("hello.json", "{\"hi\":1}")]);
    let tape = dir.path().join("plain.tape");
    let egress = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let egress_text = egress.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_reprise"));
    command
        .env("REPRISE_CA_DIR", dir.path().join("no-ca"))
        .args(["record", "--listen", "127.0.0.1:0"])
        .args(["--upstream", "http://127.0.0.1:1", "--out", s(&tape)])
        .args(["--egress", &egress_text]);
    let recorder = Recorder::spawn(command);
    let proxy = format!("http://{egress}");
    // HTTP/1.1 through a CONNECT tunnel in clear, recorded.
    let (body, _) = support::curl(&[
        "-p",
        "-x",
        &proxy,
        &format!("{}/hello.json", downstream.url()),
    ]);
    assert_eq!(body, "{\"hi\":1}");
    // TLS in a tunnel: refused, the reason on stderr.
    let refused = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-x", &proxy])
        .arg(format!(
            "https://localhost:{}/hello.json",
            downstream.addr.port()
        ))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    let mut seen = Vec::new();
    eventually("the refused tunnel said", 20, || {
        seen.extend(recorder.stderr.try_iter());
        seen.iter()
            .any(|l| l.contains("carries TLS") && l.contains("reprise ca init"))
    });
    assert!(seen.iter().any(|l| l.contains("no reprise CA")), "{seen:?}");
    // A request for the proxy itself would loop.
    let (said, _) = support::curl(&["-w", "%{http_code}", &format!("http://{egress}/x")]);
    assert!(
        said.ends_with("508") && said.contains("is this proxy"),
        "{said}"
    );
    recorder.stop_cleanly("-INT");
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    let request = exchanges[0].request.as_ref().unwrap();
    assert_eq!(
        (request.scheme.as_str(), request.path.as_str()),
        ("http", "/hello.json")
    );
    assert_eq!(
        request.authority,
        format!("127.0.0.1:{}", downstream.addr.port())
    );

    // --ca-dir without --egress, and a --ca-dir with no CA: one line, exit 2.
    let no_ca = dir.path().join("no-ca");
    for (args, want) in [
        (vec!["--ca-dir", s(&no_ca)], "it needs one of them"),
        (
            vec!["--egress", "127.0.0.1:0", "--ca-dir", s(&no_ca)],
            "reprise ca init",
        ),
    ] {
        let mut all = vec![
            "record",
            "--upstream",
            "http://127.0.0.1:1",
            "--out",
            s(&tape),
            "--append",
        ];
        all.extend_from_slice(&args);
        let out = reprise(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
