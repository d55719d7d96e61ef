//! The demo's sample service: a small JSON shop (axum) on 127.0.0.1, with
//! the usual mix of a real API: lists, lookups that miss, orders that get
//! a fresh id and timestamp, and an endpoint that fails now and then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

const PRODUCTS: [(&str, &str, u32); 10] = [
    ("A1", "teapot", 2400),
    ("A2", "kettle", 3900),
    ("A3", "mug", 800),
    ("B1", "grinder", 5600),
    ("B2", "scale", 2100),
    ("B3", "filter papers", 450),
    ("C1", "beans, 1 kg", 2900),
    ("C2", "beans, 250 g", 900),
    ("C3", "tea, 100 g", 700),
    ("D1", "gift card", 2500),
];

#[derive(Default)]
struct Shop {
    orders: AtomicU64,
    calls: AtomicU64,
}

fn product(index: usize) -> Value {
    let (sku, name, price) = PRODUCTS[index];
    json!({ "sku": sku, "name": name, "price_cents": price })
}

async fn products() -> Json<Value> {
    Json(json!({ "items": (0..PRODUCTS.len()).map(product).collect::<Vec<_>>() }))
}

async fn one_product(Path(sku): Path<String>) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    match PRODUCTS.iter().position(|(s, _, _)| *s == sku) {
        Some(index) => Ok(Json(product(index))),
        None => Err((
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no product {sku}") })),
        )),
    }
}

async fn search(Query(query): Query<Vec<(String, String)>>) -> Json<Value> {
    let q = query
        .iter()
        .find(|(k, _)| k == "q")
        .map_or("", |(_, v)| v.as_str())
        .to_lowercase();
    let hits: Vec<Value> = (0..PRODUCTS.len())
        .filter(|&i| PRODUCTS[i].1.contains(&q))
        .map(product)
        .collect();
    Json(json!({ "q": q, "hits": hits }))
}

async fn order(
    State(shop): State<Arc<Shop>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = shop.orders.fetch_add(1, Ordering::Relaxed) + 1;
    let qty = body.get("qty").and_then(Value::as_u64).unwrap_or(1);
    let sku = body
        .get("sku")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let price = PRODUCTS
        .iter()
        .find(|(s, _, _)| *s == sku)
        .map_or(0, |p| u64::from(p.2));
    let created = reprise_model::time::now_ns() / 1_000_000;
    (
        StatusCode::CREATED,
        Json(
            json!({ "id": format!("ord-{n:05}"), "sku": sku, "qty": qty, "total_cents": price * qty, "created_at_ms": created }),
        ),
    )
}

async fn flaky(State(shop): State<Arc<Shop>>) -> (StatusCode, Json<Value>) {
    if shop.calls.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "inventory backend timed out" })),
        )
    } else {
        (StatusCode::OK, Json(json!({ "in_stock": true })))
    }
}

/// Starts the shop on a free port of 127.0.0.1.
pub async fn start() -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/api/products", get(products))
        .route("/api/products/{sku}", get(one_product))
        .route("/api/search", get(search))
        .route("/api/orders", post(order))
        .route("/api/stock", get(flaky))
        .with_state(Arc::new(Shop::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// The `i`-th call of the demo's traffic: method, path and JSON body.
pub fn call(i: usize) -> (&'static str, String, Option<String>) {
    let sku = PRODUCTS[i % PRODUCTS.len()].0;
    match i % 6 {
        0 => ("GET", "/api/products".into(), None),
        1 => (
            "GET",
            format!("/api/products/{}", if i % 25 == 1 { "Z9" } else { sku }),
            None,
        ),
        2 => {
            let body = json!({ "sku": sku, "qty": 1 + i % 3, "card": { "number": "4111111111111111", "cvc": "123" } });
            ("POST", "/api/orders".into(), Some(body.to_string()))
        }
        3 => (
            "GET",
            format!("/api/search?q={}", ["tea", "beans", "mug"][i % 3]),
            None,
        ),
        4 => ("GET", "/api/stock".into(), None),
        _ => ("GET", format!("/api/products/{sku}"), None),
    }
}
