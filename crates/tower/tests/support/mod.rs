//! Real services for the layers' tests: an axum "inventory" (the
//! downstream), an axum "shop" wired with the layers that calls it, and a
//! way to read what was recorded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reprise_model::Exchange;
use reprise_tower::{Downstream, Reprise, TapBody};
use serde_json::{Value, json};
use tower::ServiceExt;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A body from bytes.
pub fn body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// Serves `router` on 127.0.0.1 (a free port) until the handle is aborted.
pub async fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, task)
}

/// The downstream: `GET /stock/{sku}` answers the sku, a count, and how
/// many times that sku was asked (so repeated identical calls get different
/// answers); `POST /reserve` echoes its JSON body with a reservation
/// number; `GET /slow` answers after 100 ms.
pub async fn inventory() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    #[derive(Default)]
    struct Counts {
        per_sku: Mutex<HashMap<String, u64>>,
        reservations: AtomicU64,
    }
    let counts = Arc::new(Counts::default());
    let router = Router::new()
        .route(
            "/stock/{sku}",
            get(
                |State(counts): State<Arc<Counts>>, UrlPath(sku): UrlPath<String>| async move {
                    let asked = {
                        let mut per_sku = counts.per_sku.lock().unwrap();
                        let n = per_sku.entry(sku.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    axum::Json(json!({"sku": sku, "count": sku.len() * 7, "asked": asked}))
                },
            ),
        )
        .route(
            "/reserve",
            post(
                |State(counts): State<Arc<Counts>>, axum::Json(order): axum::Json<Value>| async move {
                    let n = counts.reservations.fetch_add(1, Ordering::SeqCst) + 1;
                    axum::Json(json!({"order": order, "reservation": n}))
                },
            ),
        )
        .with_state(counts);
    serve(router).await
}

/// The client the shop calls the inventory with: built for the layer's
/// `TapBody<B>`, it takes `B` requests through the layer.
pub type InventoryClient = Downstream<Client<HttpConnector, TapBody<Body>>>;

/// A hyper-util client wrapped in `reprise.downstream(inventory)`.
pub fn inventory_client(reprise: &Reprise, inventory: &str) -> InventoryClient {
    let client = Client::builder(TokioExecutor::new()).build_http::<TapBody<Body>>();
    tower::ServiceBuilder::new()
        .layer(reprise.downstream(inventory))
        .service(client)
}

#[derive(Clone)]
struct Shop {
    client: InventoryClient,
    inventory: String,
}

impl Shop {
    /// Calls the inventory; a failed call or a non-2xx answer is an error
    /// text the shop passes on.
    async fn call(&self, request: http::Request<Body>) -> Result<Value, String> {
        let response = self
            .client
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| format!("inventory call failed: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("inventory body failed: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "inventory answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("inventory sent no JSON: {e}"))
    }

    async fn stock(&self, sku: &str) -> Result<Value, String> {
        let request = http::Request::get(format!("http://{}/stock/{sku}", self.inventory))
            .body(body(Bytes::new()))
            .unwrap();
        self.call(request).await
    }
}

fn answer(result: Result<Value, String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(text) => (http::StatusCode::BAD_GATEWAY, text).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Times {
    times: Option<u32>,
    pause_ms: Option<u64>,
}

/// The service under test, wired with `reprise`'s layers:
/// - `GET /order/{sku}?times=N&pause_ms=P`: asks the inventory N times
///   (default 1) for the sku, pausing P ms before each call, and answers
///   the list of answers;
/// - `POST /checkout`: reserves its JSON body at the inventory;
/// - `GET /spawned/{sku}`: asks from a task started with
///   `reprise_tower::spawn`;
/// - `GET /detached/{sku}`: asks from a plain `tokio::spawn`ed task.
pub fn shop(reprise: &Reprise, inventory: &str) -> Router {
    let shop = Shop {
        client: inventory_client(reprise, inventory),
        inventory: inventory.to_string(),
    };
    Router::new()
        .route(
            "/order/{sku}",
            get(
                |State(shop): State<Shop>,
                 UrlPath(sku): UrlPath<String>,
                 Query(times): Query<Times>| async move {
                    let mut answers = Vec::new();
                    for _ in 0..times.times.unwrap_or(1) {
                        if let Some(ms) = times.pause_ms {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        match shop.stock(&sku).await {
                            Ok(value) => answers.push(value),
                            Err(text) => return answer(Err(text)),
                        }
                    }
                    answer(Ok(json!({"sku": sku, "answers": answers})))
                },
            ),
        )
        .route(
            "/checkout",
            post(|State(shop): State<Shop>, order: Bytes| async move {
                let request = http::Request::post(format!("http://{}/reserve", shop.inventory))
                    .header("content-type", "application/json")
                    .body(body(order))
                    .unwrap();
                answer(shop.call(request).await)
            }),
        )
        .route(
            "/spawned/{sku}",
            get(
                |State(shop): State<Shop>, UrlPath(sku): UrlPath<String>| async move {
                    let task = reprise_tower::spawn(async move { shop.stock(&sku).await });
                    answer(task.await.unwrap_or_else(|e| Err(e.to_string())))
                },
            ),
        )
        .route(
            "/detached/{sku}",
            get(
                |State(shop): State<Shop>, UrlPath(sku): UrlPath<String>| async move {
                    let task = tokio::spawn(async move { shop.stock(&sku).await });
                    answer(task.await.unwrap_or_else(|e| Err(e.to_string())))
                },
            ),
        )
        .with_state(shop)
        .layer(reprise.inbound())
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http::<Body>()
}

/// Sends `request`; gives the status, headers and body.
pub async fn send(request: http::Request<Body>) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("the call took over 10 s")
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

/// `GET http://{addr}{path}` with extra headers.
pub async fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(body(Bytes::new())).unwrap()).await
}

/// Closes the tape and gives the final counts.
pub async fn shut(reprise: Reprise) -> reprise_tower::RecorderStats {
    reprise.shutdown(Duration::from_secs(10)).await.unwrap()
}

/// Every exchange of the tape at `path`.
pub fn read_tape(path: &Path) -> Vec<Exchange> {
    let mut reader = reprise_tape::TapeReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(exchange) = reader.next_exchange() {
        out.push(exchange.unwrap());
    }
    assert!(reader.damage().is_empty(), "{:?}", reader.damage());
    out
}

/// A config recording to (or mocking from) `tape`.
pub fn config(mode: reprise_tower::Mode, tape: &Path) -> reprise_tower::Config {
    Reprise::builder()
        .mode(mode)
        .tape(tape)
        .service("shop")
        .config()
        .unwrap()
}

/// Waits until `check` holds (up to 5 s).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}
