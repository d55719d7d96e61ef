//! A tonic gRPC shop that calls a downstream gRPC inventory, wired with
//! reprise's tower layers in the few lines a real service needs:
//!
//! ```text
//! let reprise = Reprise::from_env()?;                    // REPRISE_MODE, REPRISE_TAPE
//! let channel = ServiceBuilder::new()
//!     .layer(reprise.downstream("inventory:50051").rebox()) // capture / mock / pass
//!     .service(channel);
//! Server::builder().layer(reprise.inbound())             // record / scope
//!     .add_service(ShopServer::new(shop))
//! ```
//!
//! The same build records (`REPRISE_MODE=record`), answers its inventory
//! calls from the recording while the inventory is switched off
//! (`REPRISE_MODE=mock`), or does nothing (`off`, the default). The
//! streaming call `Track` passes on the inventory's stream, which the
//! mock replays message by message at the recorded pace.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use reprise_tower::{Downstream, Rebox, Reprise};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// The generated types and stubs of `proto/shop.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("shop.v1");
}

use pb::inventory_client::InventoryClient;
use pb::inventory_server::{Inventory, InventoryServer};
use pb::shop_server::{Shop, ShopServer};
use pb::{OrderReply, OrderRequest, StockReply, StockRequest, TrackEvent, TrackRequest};

type Events = Pin<Box<dyn Stream<Item = Result<TrackEvent, Status>> + Send>>;

/// The downstream inventory: stock and price from the sku's name (stable
/// answers), and three shipment events per order, 20 ms apart.
#[derive(Debug, Default, Clone)]
pub struct InventoryService;

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn stock(&self, request: Request<StockRequest>) -> Result<Response<StockReply>, Status> {
        let sku = request.into_inner().sku;
        let seed: u64 = sku.bytes().map(u64::from).sum();
        Ok(Response::new(StockReply {
            stock: u32::try_from(seed % 40).unwrap_or(0),
            price_cents: 100 + seed % 900,
            sku,
        }))
    }

    type ShipmentsStream = Events;

    async fn shipments(&self, request: Request<TrackRequest>) -> Result<Response<Events>, Status> {
        let order = request.into_inner().order;
        if order == "lost" {
            return Err(Status::not_found("no order named lost"));
        }
        let events = ["packed", "shipped", "delivered"]
            .into_iter()
            .enumerate()
            .map(move |(step, status)| {
                Ok(TrackEvent {
                    order: order.clone(),
                    step: u32::try_from(step).unwrap_or(0),
                    status: status.into(),
                })
            });
        let paced = tokio_stream::iter(events).throttle(Duration::from_millis(20));
        Ok(Response::new(Box::pin(paced)))
    }
}

/// The shop: each call is served by calling the inventory through
/// `reprise.downstream(...)`.
#[derive(Debug, Clone)]
pub struct ShopService {
    inventory: InventoryClient<Downstream<Channel, Rebox>>,
}

impl ShopService {
    /// The shop, calling the inventory at `inventory` (`host:port`).
    /// Connections are made on first use, so the shop starts (and, in mock
    /// mode, serves) with the inventory switched off.
    pub fn new(reprise: &Reprise, inventory: &str) -> Result<ShopService, tonic::transport::Error> {
        let channel = Endpoint::from_shared(format!("http://{inventory}"))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        // A Channel takes tonic's own body type only: `rebox` hands it
        // that type back after the tap.
        let channel = tower::ServiceBuilder::new()
            .layer(reprise.downstream(inventory).rebox())
            .service(channel);
        Ok(ShopService {
            inventory: InventoryClient::new(channel),
        })
    }
}

#[tonic::async_trait]
impl Shop for ShopService {
    async fn order(&self, request: Request<OrderRequest>) -> Result<Response<OrderReply>, Status> {
        let OrderRequest { sku, qty } = request.into_inner();
        let stock = self
            .inventory
            .clone()
            .stock(StockRequest { sku: sku.clone() })
            .await?
            .into_inner();
        Ok(Response::new(OrderReply {
            sku,
            qty,
            available: stock.stock >= qty,
            total_cents: stock.price_cents.saturating_mul(u64::from(qty)),
        }))
    }

    type TrackStream = Events;

    async fn track(&self, request: Request<TrackRequest>) -> Result<Response<Events>, Status> {
        let events = self
            .inventory
            .clone()
            .shipments(request.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(events)))
    }
}

/// Serves the inventory on `listener` until `shutdown` completes.
pub async fn serve_inventory(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(InventoryServer::new(InventoryService))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

/// Serves `shop` on `listener`, with `reprise.inbound()`, until `shutdown`
/// completes.
pub async fn serve_shop(
    listener: TcpListener,
    reprise: &Reprise,
    shop: ShopService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(reprise.inbound())
        .add_service(ShopServer::new(shop))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
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
