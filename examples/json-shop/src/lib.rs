//! An axum JSON shop that calls a downstream inventory over HTTP, wired
//! with reprise's tower layers in the few lines a real service needs:
//!
//! ```text
//! let reprise = Reprise::from_env()?;                    // REPRISE_MODE, REPRISE_TAPE
//! let client = ServiceBuilder::new()
//!     .layer(reprise.downstream(inventory))              // capture / mock / pass
//!     .service(hyper_client);
//! let app = router.layer(reprise.inbound());             // record / scope
//! ```
//!
//! The same build records (`REPRISE_MODE=record`), answers its inventory
//! calls from the recording while the inventory is switched off
//! (`REPRISE_MODE=mock`), or does nothing (`off`, the default).
//!
//! - `GET /order/{sku}?qty=N`: asks the inventory for the sku's stock and
//!   price and answers whether N are available and what they cost.
//! - `POST /checkout` with `{"sku": ..., "qty": N}`: reserves at the
//!   inventory and answers the reservation.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reprise_tower::{Downstream, Reprise, TapBody};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The inventory calls' request body. The client is built for the layer's
/// `TapBody<Body>`: the shop sends plain `Full` bodies through the layer.
type Body = Full<Bytes>;

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The downstream inventory: `GET /stock/{sku}` (stock and price from the
/// sku's name, so answers are stable) and `POST /reserve` (numbered
/// reservations).
pub fn inventory() -> Router {
    let reservations = Arc::new(AtomicU64::new(0));
    Router::new()
        .route(
            "/stock/{sku}",
            get(|Path(sku): Path<String>| async move {
                let seed: u64 = sku.bytes().map(u64::from).sum();
                axum::Json(json!({
                    "sku": sku,
                    "stock": seed % 40,
                    "price_cents": 100 + seed % 900,
                }))
            }),
        )
        .route(
            "/reserve",
            post(
                |State(next): State<Arc<AtomicU64>>, axum::Json(order): axum::Json<Value>| async move {
                    let number = next.fetch_add(1, Ordering::SeqCst) + 1;
                    axum::Json(json!({"reservation": format!("R-{number:05}"), "order": order}))
                },
            ),
        )
        .with_state(reservations)
}

#[derive(Clone)]
struct Shop {
    client: Downstream<Client<HttpConnector, TapBody<Body>>>,
    inventory: String,
}

#[derive(serde::Deserialize)]
struct Qty {
    qty: Option<u64>,
}

/// A failed inventory call, as the shop answers it.
fn bad_gateway(text: String) -> Response {
    (StatusCode::BAD_GATEWAY, text).into_response()
}

impl Shop {
    /// Calls the inventory; a failure or a non-2xx answer is the text the
    /// shop answers with a 502.
    async fn call(&self, method: &str, path: &str, body: Bytes) -> Result<Value, String> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.inventory))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the inventory call: {e}"))?;
        let response = self
            .client
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| format!("inventory unreachable: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("inventory broke off: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "inventory answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("inventory sent bad JSON: {e}"))
    }
}

async fn order(
    State(shop): State<Shop>,
    Path(sku): Path<String>,
    Query(qty): Query<Qty>,
) -> Response {
    let qty = qty.qty.unwrap_or(1);
    match shop
        .call("GET", &format!("/stock/{sku}"), Bytes::new())
        .await
    {
        Ok(stock) => {
            let available = stock["stock"].as_u64().unwrap_or(0);
            let price = stock["price_cents"].as_u64().unwrap_or(0);
            axum::Json(json!({
                "sku": sku,
                "qty": qty,
                "available": available >= qty,
                "total_cents": price.saturating_mul(qty),
            }))
            .into_response()
        }
        Err(text) => bad_gateway(text),
    }
}

async fn checkout(State(shop): State<Shop>, body: Bytes) -> Response {
    match shop.call("POST", "/reserve", body).await {
        Ok(reserved) => axum::Json(json!({
            "status": "reserved",
            "reservation": reserved["reservation"],
        }))
        .into_response(),
        Err(text) => bad_gateway(text),
    }
}

/// The shop, calling the inventory at `inventory` (`host:port`), with
/// `reprise`'s layers on both sides.
pub fn shop(reprise: &Reprise, inventory: &str) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http::<TapBody<Body>>();
    let client = tower::ServiceBuilder::new()
        .layer(reprise.downstream(inventory))
        .service(client);
    Router::new()
        .route("/order/{sku}", get(order))
        .route("/checkout", post(checkout))
        .with_state(Shop {
            client,
            inventory: inventory.to_string(),
        })
        .layer(reprise.inbound())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = interrupt.await;
            return;
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
