//! The layers in an axum service that calls an axum downstream through a
//! hyper-util client: recording with children linked under concurrency,
//! mocking with the downstream switched off, misses, fail-open and
//! cancellation. Real servers on 127.0.0.1, real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reprise_model::{Exchange, HeaderList, Role, Sink, StoreError};
use reprise_tower::{Config, Exhausted, MockOptions, MockStore, Mode, Reprise};
use serde_json::{Value, json};
use support::*;

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The inventory's count in each answer of a `/order` call: which
/// recorded answer served each downstream call.
fn asked(answer: &[u8]) -> Vec<Value> {
    json_of(answer)["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["asked"].clone())
        .collect()
}

/// Records `calls` (paths of GET /order/...) plus one checkout, all at
/// once; gives the tape's exchanges and the inventory's authority. The
/// inventory is stopped afterwards.
async fn record(tape: &std::path::Path, calls: &[String]) -> (Vec<Exchange>, String) {
    let (inventory_addr, inventory_task) = inventory().await;
    let inventory = inventory_addr.to_string();
    let reprise = Reprise::start(config(Mode::Record, tape)).unwrap();
    let (shop_addr, shop_task) = serve(shop(&reprise, &inventory)).await;
    let mut tasks = Vec::new();
    for (i, path) in calls.iter().enumerate() {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let call = i.to_string();
            get_with(
                shop_addr,
                &path,
                &[("authorization", "Bearer s3cret"), ("x-call", &call)],
            )
            .await
        }));
    }
    let checkout = http::Request::post(format!("http://{shop_addr}/checkout"))
        .header("content-type", "application/json")
        .body(body(
            r#"{"items": [{"sku": "pen", "n": 2}], "card": "4242"}"#,
        ))
        .unwrap();
    let (status, _, answer) = send(checkout).await;
    assert_eq!(status, 200, "{answer:?}");
    for task in tasks {
        let (status, _, answer) = task.await.unwrap();
        assert_eq!(status, 200, "{answer:?}");
    }
    shop_task.abort();
    inventory_task.abort();
    let stats = shut(reprise).await;
    assert_eq!(stats.dropped(), 0, "{stats:?}");
    (read_tape(tape), inventory)
}

fn children_of<'a>(exchanges: &'a [Exchange], parent: &Exchange) -> Vec<&'a Exchange> {
    let mut children: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.parent_id == parent.id)
        .collect();
    children.sort_by_key(|e| e.recorded_at_ns);
    children
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_calls_are_recorded_with_their_interleaved_downstream_calls() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("shop.tape");
    // Eight calls at once, each asking twice with pauses that make their
    // downstream calls interleave.
    let calls: Vec<String> = (0..8)
        .map(|i| format!("/order/sku{i}?times=2&pause_ms={}", (8 - i) * 6))
        .collect();
    let (exchanges, inventory) = record(&tape, &calls).await;

    let inbound: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.role() == Role::Inbound)
        .collect();
    assert_eq!(inbound.len(), 9, "8 orders and a checkout");
    assert_eq!(exchanges.len(), 9 + 16 + 1);
    for parent in &inbound {
        let source = parent.source.as_ref().unwrap();
        assert_eq!(
            (source.recorder.as_str(), source.service.as_str()),
            ("tower", "shop")
        );
        assert!(source.client_addr.starts_with("127.0.0.1:"), "{source:?}");
        assert!(parent.parent_id.is_empty());
        assert_eq!(parent.trace_id.len(), 16);
        let links: Vec<(i32, u32)> = children_of(&exchanges, parent)
            .iter()
            .map(|child| {
                let link = child.link.unwrap();
                (link.kind, link.order)
            })
            .collect();
        let scope = reprise_model::LinkKind::Scope as i32;
        let expected: Vec<(i32, u32)> = (0..links.len() as u32).map(|n| (scope, n)).collect();
        assert_eq!(
            links, expected,
            "in-process links, in the order the calls started"
        );
        let request = parent.request.as_ref().unwrap();
        let response = parent.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers.header_str("content-type"),
            Some("application/json")
        );
        if request.method == "POST" {
            assert_eq!(request.path, "/checkout");
            assert_eq!(
                json_of(&request.body),
                json!({"items": [{"sku": "pen", "n": 2}], "card": "4242"})
            );
            let children = children_of(&exchanges, parent);
            assert_eq!(children.len(), 1);
            let reserve = children[0].request.as_ref().unwrap();
            assert_eq!(
                (reserve.method.as_str(), reserve.path.as_str()),
                ("POST", "/reserve")
            );
            assert_eq!(reserve.body, request.body);
            assert_eq!(json_of(&response.body)["reservation"], 1);
            continue;
        }
        // The secret never reaches the tape.
        assert_eq!(
            request.headers.header_str("authorization"),
            Some(reprise_model::redact::MARKER)
        );
        assert!(parent.flags.as_ref().unwrap().redacted);
        let call: usize = request
            .headers
            .header_str("x-call")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(request.path, calls[call]);
        let sku = format!("sku{call}");
        let answer = json_of(&response.body);
        assert_eq!(answer["sku"], sku.as_str());

        // Its two downstream calls, and only them, whatever ran meanwhile.
        let children = children_of(&exchanges, parent);
        assert_eq!(children.len(), 2, "children of {sku}");
        for (n, child) in children.iter().enumerate() {
            assert_eq!(child.role(), Role::Downstream);
            assert_eq!(child.trace_id, parent.trace_id);
            let request = child.request.as_ref().unwrap();
            assert_eq!(request.path, format!("/stock/{sku}"));
            assert_eq!(request.authority, inventory);
            assert_eq!(request.scheme, "http");
            let traceparent = request.headers.header_str("traceparent").unwrap();
            assert!(
                traceparent.contains(&reprise_model::display_id(&parent.trace_id)),
                "{traceparent}"
            );
            let downstream = child.response.as_ref().unwrap();
            assert_eq!(downstream.status, 200);
            assert_eq!(json_of(&downstream.body)["asked"], n + 1);
            assert_eq!(answer["answers"][n], json_of(&downstream.body));
            assert!(child.recorded_at_ns >= parent.recorded_at_ns);
            assert!(child.ended_at_ns() <= parent.ended_at_ns());
        }
    }
}

/// Replays each recorded inbound call against `shop_addr` (all at once),
/// carrying its id; checks each answer equals the recorded one.
async fn replay_all(shop_addr: std::net::SocketAddr, exchanges: &[Exchange]) -> usize {
    let mut tasks = Vec::new();
    for exchange in exchanges.iter().filter(|e| e.role() == Role::Inbound) {
        let request = exchange.request.clone().unwrap();
        let recorded = exchange.response.clone().unwrap();
        let id = exchange.id_hex();
        tasks.push(tokio::spawn(async move {
            let mut call = http::Request::builder()
                .method(request.method.as_str())
                .uri(format!("http://{shop_addr}{}", request.path))
                .header("x-reprise-replay", id.as_str());
            if let Some(kind) = request.headers.header_str("content-type") {
                call = call.header("content-type", kind);
            }
            let (status, _, answer) = send(call.body(body(request.body.clone())).unwrap()).await;
            assert_eq!(status.as_u16() as u32, recorded.status, "{id}: {answer:?}");
            assert_eq!(answer, recorded.body, "{id}");
        }));
    }
    let n = tasks.len();
    for task in tasks {
        task.await.unwrap();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mocks_answer_replayed_calls_with_the_downstream_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("shop.tape");
    let calls: Vec<String> = (0..6)
        .map(|i| format!("/order/sku{i}?times=3&pause_ms={}", (6 - i) * 4))
        .chain(["/spawned/pencil".to_string()])
        .collect();
    let (exchanges, inventory) = record(&tape, &calls).await;

    // The inventory is gone; the same build, in mock mode, answers.
    let reprise = Reprise::start(config(Mode::Mock, &tape)).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &inventory)).await;
    let replayed = replay_all(shop_addr, &exchanges).await;
    assert_eq!(replayed, 8);
    // Scopes are per inbound call: the same recording replays again, in
    // the same order, as often as it is asked.
    replay_all(shop_addr, &exchanges).await;
    let report = reprise.mock_report().unwrap();
    let downstream = exchanges.iter().filter(|e| e.is_downstream()).count() as u64;
    assert_eq!(downstream, 6 * 3 + 1 + 1);
    assert_eq!(
        (report.served, report.missed),
        (2 * downstream, 0),
        "{:?}",
        report.misses
    );

    // The same from an in-memory recording instead of a tape.
    let store = MockStore::new(exchanges.clone(), MockOptions::default());
    assert_eq!(store.len() as u64, downstream);
    let reprise = Reprise::mock_from(Config::default(), store).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &inventory)).await;
    replay_all(shop_addr, &exchanges).await;
    assert_eq!(reprise.mock_report().unwrap().served, downstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_say_why_and_name_the_nearest_recorded_calls() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("shop.tape");
    let calls = vec!["/order/ink?times=2".to_string()];
    let (exchanges, inventory) = record(&tape, &calls).await;
    let ink = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path.starts_with("/order/ink"))
        .unwrap()
        .id_hex();

    let reprise = Reprise::start(config(Mode::Mock, &tape)).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &inventory)).await;
    let replaying = [("x-reprise-replay", ink.as_str())];
    let cases = [
        // A call the recording never made: the nearest differs in path.
        (
            "/order/paper",
            &replaying[..],
            "none of the 2 recorded calls in scope matches",
        ),
        // One more call than recorded.
        (
            "/order/ink?times=3",
            &replaying[..],
            "every recorded response has been served",
        ),
        // Not a replay, or not a valid one.
        (
            "/order/ink",
            &[][..],
            "carried no valid x-reprise-replay header",
        ),
        (
            "/order/ink",
            &[("x-reprise-replay", "not-an-id")][..],
            "carried no valid x-reprise-replay header",
        ),
        // A task that lost the scope.
        ("/detached/ink", &replaying[..], "outside any inbound call"),
    ];
    for (path, headers, says) in cases {
        let (status, response_headers, answer) = get_with(shop_addr, path, headers).await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 502, "{path}: {text}");
        // The inbound answer says so too, whatever the service did with
        // the failed call (a call made outside any scope cannot be told).
        let told = response_headers
            .get("x-reprise-mock-misses")
            .and_then(|v| v.to_str().ok());
        let expected = if path.starts_with("/detached") {
            None
        } else {
            Some("1")
        };
        assert_eq!(told, expected, "{path}");
        assert!(text.contains("reprise mock miss"), "{path}: {text}");
        assert!(text.contains(says), "{path}: {text}");
        if path == "/order/paper" {
            assert!(text.contains("differs in path"), "{text}");
            assert!(text.contains("/stock/ink"), "{text}");
            // Named for `reprise diff`: the call the recording never saw,
            // and the two recorded ones it did not make.
            let named = |name: &str| -> Vec<String> {
                response_headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_string())
                    .collect()
            };
            assert_eq!(
                named("x-reprise-mock-new"),
                [format!("GET {inventory}/stock/paper")]
            );
            assert_eq!(
                named("x-reprise-mock-missing"),
                [
                    format!("GET {inventory}/stock/ink"),
                    format!("GET {inventory}/stock/ink")
                ]
            );
        }
        if path.ends_with("times=3") {
            assert!(text.contains("already used by call 1"), "{text}");
        }
    }
    // One call fewer than recorded: answered, and the answer says one
    // recorded call was not made.
    let (status, response_headers, _) = get_with(shop_addr, "/order/ink?times=1", &replaying).await;
    assert_eq!(status, 200);
    assert_eq!(
        response_headers
            .get("x-reprise-mock-unused")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(response_headers.get("x-reprise-mock-misses").is_none());
    assert_eq!(
        response_headers
            .get("x-reprise-mock-missing")
            .and_then(|v| v.to_str().ok()),
        Some(format!("GET {inventory}/stock/ink").as_str())
    );
    assert!(response_headers.get("x-reprise-mock-new").is_none());
    let report = reprise.mock_report().unwrap();
    assert_eq!(report.missed, 5);
    assert_eq!(report.misses.len(), 5);
    // The exhausted case served its two recorded answers before missing,
    // the short one one.
    assert_eq!(report.served, 3);

    // With repeat-last, the third identical call gets the second answer.
    let mut repeat = config(Mode::Mock, &tape);
    repeat.mock.exhausted = Exhausted::RepeatLast;
    let reprise = Reprise::start(repeat).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &inventory)).await;
    let (status, _, answer) = get_with(shop_addr, "/order/ink?times=3", &replaying).await;
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(asked(&answer), [json!(1), json!(2), json!(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_recorded_calls_answer_outside_their_scope_and_past_their_count() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("shop.tape");
    let (exchanges, inventory) = record(&tape, &["/order/ink?times=2".to_string()]).await;
    let ink = exchanges
        .iter()
        .find(|e| e.request.as_ref().unwrap().path.starts_with("/order/ink"))
        .unwrap()
        .id_hex();
    let replaying = [("x-reprise-replay", ink.as_str())];

    let mut shared = config(Mode::Mock, &tape);
    shared.mock.shared = Some(
        reprise_model::select::ExchangeFilter::new()
            .add_match("path=/stock/ink")
            .unwrap(),
    );
    let reprise = Reprise::start(shared).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &inventory)).await;
    // A task that lost the scope: the shared call answers it.
    let (status, _, answer) = get_with(shop_addr, "/detached/ink", &replaying).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(json_of(&answer)["sku"], "ink");
    // One call more than recorded: the two recorded under the replayed
    // exchange, in order, then the shared one (the first recorded).
    let (status, headers, answer) = get_with(shop_addr, "/order/ink?times=3", &replaying).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(asked(&answer), [json!(1), json!(2), json!(1)]);
    assert!(headers.get("x-reprise-mock-misses").is_none());
    // Calls the filter does not name still miss outside their scope.
    let (status, _, _) = get_with(shop_addr, "/detached/paper", &replaying).await;
    assert_eq!(status, 502);
    let report = reprise.mock_report().unwrap();
    assert_eq!(
        (report.served, report.shared, report.missed),
        (4, 2, 1),
        "{:?}",
        report.misses
    );
}

/// A sink that blocks in `append` until released.
struct Stalling(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Sink for Stalling {
    fn append(&mut self, _: Exchange) -> Result<(), StoreError> {
        let (released, wake) = &*self.0;
        let mut released = released.lock().unwrap();
        while !*released {
            released = wake.wait(released).unwrap();
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Failing;

impl Sink for Failing {
    fn append(&mut self, _: Exchange) -> Result<(), StoreError> {
        Err(StoreError::failed("test", "disk on fire"))
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_failing_sink_never_fails_or_blocks_a_call() {
    let (inventory_addr, _inventory) = inventory().await;
    let inventory = inventory_addr.to_string();
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let small_queue = Reprise::builder().queue(2).config().unwrap();
    let stalled =
        Reprise::record_to(small_queue.clone(), Box::new(Stalling(Arc::clone(&gate)))).unwrap();
    let failing = Reprise::record_to(small_queue, Box::new(Failing)).unwrap();
    for reprise in [&stalled, &failing] {
        let (shop_addr, _shop) = serve(shop(reprise, &inventory)).await;
        for i in 0..30 {
            let path = format!("/order/sku{i}");
            let started = std::time::Instant::now();
            let (status, _, answer) = get_with(shop_addr, &path, &[]).await;
            assert_eq!(status, 200, "{answer:?}");
            assert_eq!(json_of(&answer)["sku"], format!("sku{i}"));
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    }
    // 30 inbound and 30 downstream calls each: the stalled sink took one
    // and holds two in the queue; the rest were dropped, and counted.
    let stats = stalled.metrics().snapshot();
    assert_eq!(stats.seen, 60);
    assert!(stats.dropped_queue_full >= 50, "{stats:?}");
    // The failing sink refused what reached it; a burst may also have
    // overrun the small queue. Nothing was recorded, everything counted.
    eventually("the failing sink's drops are counted", || {
        failing.metrics().snapshot().dropped() == 60
    })
    .await;
    let stats = failing.metrics().snapshot();
    assert!(
        stats.dropped_sink_error > 0 && stats.recorded == 0,
        "{stats:?}"
    );
    let text = failing.metrics().render();
    let line = format!(
        "reprise_exchanges_dropped_total{{reason=\"sink_error\"}} {}",
        stats.dropped_sink_error
    );
    assert!(text.lines().any(|l| l == line), "{line} not in {text}");
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    shut(stalled).await;
    let error = failing
        .shutdown(Duration::from_secs(5))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("disk on fire"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_a_stream_leaves_a_cancelled_exchange_and_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("stream.tape");
    let reprise = Reprise::start(config(Mode::Record, &tape)).unwrap();
    // An endless stream of ticks; the flag says when it was dropped.
    let dropped = Arc::new(AtomicBool::new(false));
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Arc::clone(&dropped);
    let router = axum::Router::new()
        .route(
            "/ticks",
            axum::routing::get(move || {
                let guard = Guard(Arc::clone(&flag));
                async move {
                    let ticks = futures_ticks(guard);
                    axum::body::Body::from_stream(ticks)
                }
            }),
        )
        .layer(reprise.inbound());
    let (addr, _server) = serve(router).await;
    let response = client()
        .request(
            http::Request::get(format!("http://{addr}/ticks"))
                .body(body(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut stream = response.into_body();
    use http_body_util::BodyExt;
    let first = stream.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"tick 0\n");
    drop(stream);
    eventually("the stream is dropped server-side", || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    eventually("the exchange is written", || {
        reprise.metrics().snapshot().recorded == 1
    })
    .await;
    assert_eq!(reprise.metrics().queue_depth.get(), 0);
    shut(reprise).await;
    let exchanges = read_tape(&tape);
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    assert!(exchange.flags.as_ref().unwrap().cancelled, "{exchange:?}");
    let response = exchange.response.as_ref().unwrap();
    assert!(response.body.starts_with(b"tick 0\n"), "{response:?}");
}

/// `tick N` every 20 ms, forever; owns `guard`.
fn futures_ticks<G: Send + 'static>(
    guard: G,
) -> impl tokio_stream::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    use tokio_stream::StreamExt;
    let interval = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0u64;
    tokio_stream::wrappers::IntervalStream::new(interval).map(move |_| {
        let _owned = &guard;
        n += 1;
        Ok(Bytes::from(format!("tick {}\n", n - 1)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_that_failed_when_recorded_fails_the_same_way_when_mocked() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("down.tape");
    // Nothing listens there: the inventory call is refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let reprise = Reprise::start(config(Mode::Record, &tape)).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &closed)).await;
    let (status, _, answer) = get_with(shop_addr, "/order/pen", &[]).await;
    assert_eq!(status, 502, "{answer:?}");
    shut(reprise).await;
    let exchanges = read_tape(&tape);
    let child = exchanges.iter().find(|e| e.is_downstream()).unwrap();
    let error = child.error.as_ref().unwrap();
    assert_eq!(error.kind(), reprise_model::ErrorKind::Connect, "{error:?}");
    assert!(child.response.is_none());
    let parent = exchanges.iter().find(|e| !e.is_downstream()).unwrap();

    let reprise = Reprise::start(config(Mode::Mock, &tape)).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &closed)).await;
    let id = parent.id_hex();
    let (status, _, answer) = get_with(
        shop_addr,
        "/order/pen",
        &[("x-reprise-replay", id.as_str())],
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("recorded failure (connect)"), "{text}");
    let report = reprise.mock_report().unwrap();
    assert_eq!((report.served, report.missed), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_out_call_takes_its_downstream_calls_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("checkout.tape");
    let (inventory_addr, _inventory) = inventory().await;
    let mut only_checkout = config(Mode::Record, &tape);
    only_checkout.matches = vec!["path=/checkout".into()];
    let reprise = Reprise::start(only_checkout).unwrap();
    let (shop_addr, _shop) = serve(shop(&reprise, &inventory_addr.to_string())).await;
    for i in 0..3 {
        let (status, _, _) = get_with(shop_addr, &format!("/order/sku{i}?times=2"), &[]).await;
        assert_eq!(status, 200);
    }
    let checkout = http::Request::post(format!("http://{shop_addr}/checkout"))
        .header("content-type", "application/json")
        .body(body(r#"{"sku":"pen"}"#))
        .unwrap();
    assert_eq!(send(checkout).await.0, 200);
    let stats = shut(reprise).await;
    let exchanges = read_tape(&tape);
    let paths: Vec<&str> = exchanges
        .iter()
        .map(|e| e.request.as_ref().unwrap().path.as_str())
        .collect();
    assert_eq!(paths, ["/checkout", "/reserve"], "{stats:?}");
    assert_eq!(exchanges[1].parent_id, exchanges[0].id);
    // Three orders and their six inventory calls were left out.
    assert_eq!((stats.recorded, stats.unmatched), (2, 9), "{stats:?}");
}
