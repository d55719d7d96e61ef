//! The two example services under `examples/`, end to end with the real
//! `reprise` binary: record a session with `REPRISE_MODE=record`, switch
//! the downstream off, serve the same build with `REPRISE_MODE=mock`,
//! replay the recording against it with `reprise replay`, and see `reprise
//! diff` find every response identical. As a control, the same replay
//! against the build with the layers off (downstream still off) is a
//! regression, so the clean result is the mock's doing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reprise_tower::{Config, Mode, Reprise};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

mod support;

use support::{reprise, s, text};

fn config(mode: Mode, tape: &Path, service: &str) -> Config {
    Reprise::builder()
        .mode(mode)
        .tape(tape)
        .service(service)
        .config()
        .unwrap()
}

/// A server started on the runtime, stopped (gracefully) on demand.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    fn stop(self, rt: &Runtime) {
        let _ = self.stop.send(());
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), self.done)
                .await
                .expect("the server did not stop within 10 s")
                .unwrap();
        });
    }
}

/// Binds 127.0.0.1 and runs `serve(listener, stop)` on `rt`.
fn start<F, Fut>(rt: &Runtime, serve: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let done = rt.spawn(serve(listener, stopped));
    Running { addr, stop, done }
}

async fn stopped(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Replays `tape` against `target` and diffs; gives the diff's exit code
/// and its JSON report.
fn replay_and_diff(
    dir: &Path,
    tape: &Path,
    target: SocketAddr,
    name: &str,
) -> (i32, serde_json::Value) {
    let out = dir.join(format!("{name}.tape"));
    let replayed = reprise(&[
        "replay",
        s(tape),
        "--target",
        &format!("http://{target}"),
        "--out",
        s(&out),
        "-q",
    ]);
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        text(&replayed.stderr)
    );
    let json = dir.join(format!("{name}.json"));
    let diff = reprise(&["diff", s(tape), s(&out), "--json", s(&json)]);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (diff.status.code().unwrap_or(-1), report)
}

fn shut(rt: &Runtime, reprise: Reprise) -> reprise_tower::RecorderStats {
    rt.block_on(async { reprise.shutdown(Duration::from_secs(10)).await.unwrap() })
}

#[test]
fn the_axum_example_replays_identically_with_its_downstream_mocked() {
    use example_json_shop::{inventory, serve, shop};
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("json-shop.tape");
    let rt = Runtime::new().unwrap();

    let inventory_server = start(&rt, |l, rx| async move {
        serve(l, inventory(), stopped(rx)).await.unwrap();
    });
    let downstream = inventory_server.addr.to_string();
    // The shop, built with `reprise`'s layers, served until stopped.
    let start_shop = |reprise: &Reprise| {
        let router = shop(reprise, &downstream);
        start(&rt, |l, rx| async move {
            serve(l, router, stopped(rx)).await.unwrap();
        })
    };
    let recording = Reprise::start(config(Mode::Record, &tape, "json-shop")).unwrap();
    let shop_server = start_shop(&recording);
    let base = format!("http://{}", shop_server.addr);
    for path in ["/order/pen?qty=3", "/order/ink?qty=50", "/order/paper"] {
        let (_, status) = curl_status(&format!("{base}{path}"), None);
        assert_eq!(status, "200", "{path}");
    }
    for order in [r#"{"sku":"pen","qty":1}"#, r#"{"qty":2,"sku":"ink"}"#] {
        let (body, status) = curl_status(&format!("{base}/checkout"), Some(order));
        assert_eq!(status, "200", "{body}");
        assert!(body.contains("R-0000"), "{body}");
    }
    shop_server.stop(&rt);
    let stats = shut(&rt, recording);
    assert_eq!((stats.recorded, stats.dropped()), (10, 0), "{stats:?}");
    // The downstream is switched off from here on.
    inventory_server.stop(&rt);

    let mocking = Reprise::start(config(Mode::Mock, &tape, "json-shop")).unwrap();
    let mocked = start_shop(&mocking);
    let (code, report) = replay_and_diff(dir.path(), &tape, mocked.addr, "mocked");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (&report["pairs"], &report["identical"]),
        (&5.into(), &5.into()),
        "{report:#}"
    );
    let mocks = mocking.mock_report().unwrap();
    assert_eq!((mocks.served, mocks.missed), (5, 0), "{:?}", mocks.misses);
    mocked.stop(&rt);

    // The same with the mock standing apart, as for a service in any
    // language: the build with its layers off calls `reprise mock` for
    // its inventory. It passes no trace context on, so the recorded calls
    // are one pool (--global), matched as made to the recorded inventory.
    let mock = support::Recorder::mock(&tape, &["--global", "--authority", &downstream]);
    let off = Reprise::off();
    let apart = {
        let router = shop(&off, &mock.addr.to_string());
        start(&rt, |l, rx| async move {
            serve(l, router, stopped(rx)).await.unwrap();
        })
    };
    let (code, report) = replay_and_diff(dir.path(), &tape, apart.addr, "apart");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["identical"], 5, "{report:#}");
    apart.stop(&rt);
    let (code, stderr) = mock.stop("-INT");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("served 5 calls (5 from all recorded calls), missed 0"),
        "{stderr}"
    );

    // A build that asks the inventory something the recording never saw:
    // here, mocks from a recording without the pen order's stock call.
    // The pen order regresses, and the diff names the call.
    let exchanges: Vec<reprise_model::Exchange> = reprise_tape::TapeReader::open(&tape)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let pen = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path == "/order/pen?qty=3")
        .unwrap()
        .id
        .clone();
    let without: Vec<_> = exchanges
        .into_iter()
        .filter(|e| e.parent_id != pen)
        .collect();
    let store = reprise_tower::MockStore::new(without, reprise_tower::MockOptions::default());
    let changed = Reprise::mock_from(config(Mode::Mock, &tape, "json-shop"), store).unwrap();
    let new_call = start_shop(&changed);
    let (code, report) = replay_and_diff(dir.path(), &tape, new_call.addr, "new-call");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        (&report["pairs"], &report["identical"]),
        (&5.into(), &4.into()),
        "{report:#}"
    );
    let said = report.to_string();
    assert!(said.contains("x-reprise-mock-new"), "{report:#}");
    assert!(
        said.contains(&format!("GET {downstream}/stock/pen")),
        "{report:#}"
    );
    new_call.stop(&rt);

    // Control: the layers off, the downstream still off.
    let off = Reprise::off();
    let unmocked = start_shop(&off);
    let (code, report) = replay_and_diff(dir.path(), &tape, unmocked.addr, "unmocked");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["regressed"], 5, "{report:#}");
    unmocked.stop(&rt);
}

/// `curl -s` the URL (POSTing `body` as JSON when given); gives the body
/// and the status code.
fn curl_status(url: &str, body: Option<&str>) -> (String, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command.args(["-H", "content-type: application/json", "--data", body]);
    }
    let output = command.arg(url).output().unwrap();
    let out = text(&output.stdout);
    let (body, status) = out.rsplit_once('\n').unwrap_or((&out, ""));
    (body.to_string(), status.to_string())
}

#[test]
fn the_tonic_example_replays_identically_with_its_downstream_mocked() {
    use example_grpc_shop::pb::shop_client::ShopClient;
    use example_grpc_shop::pb::{OrderRequest, TrackRequest};
    use example_grpc_shop::{ShopService, serve_inventory, serve_shop};
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("grpc-shop.tape");
    let rt = Runtime::new().unwrap();

    let inventory_server = start(&rt, |l, rx| async move {
        serve_inventory(l, stopped(rx)).await.unwrap();
    });
    let downstream = inventory_server.addr.to_string();
    let start_shop = |reprise: Reprise| {
        // The lazy channel starts its worker on the runtime.
        let shop = {
            let _runtime = rt.enter();
            ShopService::new(&reprise, &downstream).unwrap()
        };
        start(&rt, |l, rx| async move {
            serve_shop(l, &reprise, shop, stopped(rx)).await.unwrap();
            // The tape is complete once the server has stopped.
            reprise.shutdown(Duration::from_secs(10)).await.unwrap();
        })
    };
    let recording = Reprise::start(config(Mode::Record, &tape, "grpc-shop")).unwrap();
    let metrics = std::sync::Arc::clone(recording.metrics());
    let shop_server = start_shop(recording);
    rt.block_on(async {
        let mut client = ShopClient::connect(format!("http://{}", shop_server.addr))
            .await
            .unwrap();
        for (sku, qty) in [("pen", 3), ("ink", 50)] {
            let reply = client
                .order(OrderRequest {
                    sku: sku.into(),
                    qty,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(reply.sku, sku);
        }
        let events: Vec<_> = client
            .track(TrackRequest {
                order: "o-1".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .collect()
            .await;
        assert_eq!(events.len(), 3);
        let lost = client
            .track(TrackRequest {
                order: "lost".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(lost.code(), tonic::Code::NotFound);
    });
    shop_server.stop(&rt);
    let stats = metrics.snapshot();
    assert_eq!((stats.recorded, stats.dropped()), (8, 0), "{stats:?}");
    inventory_server.stop(&rt);

    let mocking = Reprise::start(config(Mode::Mock, &tape, "grpc-shop")).unwrap();
    let mocked = start_shop(mocking);
    let (code, report) = replay_and_diff(dir.path(), &tape, mocked.addr, "mocked");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (&report["pairs"], &report["identical"]),
        (&4.into(), &4.into()),
        "{report:#}"
    );
    mocked.stop(&rt);

    let unmocked = start_shop(Reprise::off());
    let (code, report) = replay_and_diff(dir.path(), &tape, unmocked.addr, "unmocked");
    assert_eq!(code, 1, "{report:#}");
    unmocked.stop(&rt);
}

#[test]
fn the_axum_example_records_into_a_kafka_topic_through_reprise_tape() {
    use example_json_shop::{inventory, serve, shop};
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("json-shop", 3, 1).unwrap();
    let topic =
        std::path::PathBuf::from(format!("kafka://{}/json-shop", cluster.bootstrap_servers()));
    let rt = Runtime::new().unwrap();
    let inventory_server = start(&rt, |l, rx| async move {
        serve(l, inventory(), stopped(rx)).await.unwrap();
    });
    let recording = Reprise::start(config(Mode::Record, &topic, "json-shop")).unwrap();
    let router = shop(&recording, &inventory_server.addr.to_string());
    let shop_server = start(&rt, |l, rx| async move {
        serve(l, router, stopped(rx)).await.unwrap();
    });
    let base = format!("http://{}", shop_server.addr);
    for path in ["/order/pen?qty=3", "/order/ink?qty=50", "/order/paper"] {
        let (_, status) = curl_status(&format!("{base}{path}"), None);
        assert_eq!(status, "200", "{path}");
    }
    shop_server.stop(&rt);
    let stats = shut(&rt, recording);
    inventory_server.stop(&rt);
    assert_eq!((stats.recorded, stats.dropped()), (6, 0), "{stats:?}");

    // Each order and the inventory call made for it, read back from the
    // topic: the downstream call is listed under its inbound call.
    let ls = reprise(&["ls", s(&topic), "--json"]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    let listed: Vec<serde_json::Value> = text(&ls.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 6, "{listed:?}");
    let inbound: Vec<&serde_json::Value> =
        listed.iter().filter(|e| e["role"] == "inbound").collect();
    assert_eq!(inbound.len(), 3, "{listed:?}");
    for parent in inbound {
        let children = listed
            .iter()
            .filter(|e| e["parent_id"] == parent["id"])
            .count();
        assert_eq!(children, 1, "{parent}: {listed:?}");
    }

    // Mock mode answers from a tape, and a missing topic is said.
    let error = Reprise::start(config(Mode::Mock, &topic, "json-shop"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("mock mode answers from a tape"), "{error}");
    let absent =
        std::path::PathBuf::from(format!("kafka://{}/absent", cluster.bootstrap_servers()));
    let error = Reprise::start(config(Mode::Record, &absent, "json-shop"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("topic \"absent\" does not exist"), "{error}");
}
