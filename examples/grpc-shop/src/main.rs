//! `grpc-shop inventory LISTEN` serves the downstream;
//! `grpc-shop shop LISTEN INVENTORY` serves the shop in front of it, in the
//! mode `REPRISE_MODE` says (`off`, `record`, `mock`; with `REPRISE_TAPE`).

use std::process::ExitCode;
use std::time::Duration;

use example_grpc_shop::{ShopService, serve_inventory, serve_shop, stop_signal};
use reprise_tower::Reprise;

const USAGE: &str = "usage: grpc-shop inventory LISTEN | grpc-shop shop LISTEN INVENTORY_HOST:PORT";

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("grpc-shop: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let (role, listen) = match args.as_slice() {
        [role, listen, ..] => (role.as_str(), listen.as_str()),
        _ => return Err(USAGE.into()),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    match (role, args.get(2)) {
        ("inventory", None) => serve_inventory(listener, stop_signal())
            .await
            .map_err(|e| e.to_string()),
        ("shop", Some(inventory)) => {
            let reprise = Reprise::from_env().map_err(|e| e.to_string())?;
            eprintln!(
                "grpc-shop: serving on {listen}, reprise mode {:?}",
                reprise.mode()
            );
            let shop = ShopService::new(&reprise, inventory).map_err(|e| e.to_string())?;
            let served = serve_shop(listener, &reprise, shop, stop_signal()).await;
            let closed = reprise.shutdown(Duration::from_secs(5)).await;
            served.map_err(|e| e.to_string())?;
            let stats = closed.map_err(|e| e.to_string())?;
            if stats.recorded > 0 || stats.dropped() > 0 {
                eprintln!(
                    "grpc-shop: recorded {} exchanges, dropped {}",
                    stats.recorded,
                    stats.dropped()
                );
            }
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}
