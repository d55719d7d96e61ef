//! An axum hello-world for bench/tower.sh: `GET /` answers a fixed 1 KiB
//! JSON body, through `RecordLayer` as `REPRISE_MODE` says, or with no
//! layer at all.
//!
//! ```text
//! hello [--listen] ADDR                      (default 127.0.0.1:3000)
//! HELLO_NO_LAYER=1 hello ADDR                the router alone
//! REPRISE_MODE=off hello ADDR                router.layer(reprise.inbound()), recording nothing
//! REPRISE_MODE=record REPRISE_TAPE=x.tape hello ADDR   recording every call
//! ```
//!
//! Prints `hello: listening on http://ADDR (...)` once it answers; on
//! SIGTERM or SIGINT stops accepting, lets open calls finish (at most 5 s),
//! closes the tape and prints what the recorder stored. Exits 0 when all
//! went well, 2 on a bad argument or setting, 1 on any other failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::header;
use reprise_tower::{Error, Mode, Reprise};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long calls still open at the signal may take to finish.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the recorder may take to store what is queued and close the tape.
const CLOSE: Duration = Duration::from_secs(10);

/// A failure, with the exit code it maps to.
enum Failure {
    /// A bad argument or setting: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Run(String),
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("hello: {message}");
            eprintln!(
                "usage: hello [--listen] ADDR   (env: HELLO_NO_LAYER=1, REPRISE_MODE, REPRISE_TAPE)"
            );
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("hello: {message}");
            ExitCode::from(1)
        }
    }
}

/// The address to listen on, from `--listen ADDR`, `--listen=ADDR` or a
/// lone `ADDR`.
fn listen_addr(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, Failure> {
    let text = match args.next() {
        None => "127.0.0.1:3000".to_string(),
        Some(flag) if flag == "--listen" => args
            .next()
            .ok_or_else(|| Failure::Usage("--listen needs an address".into()))?,
        Some(flag) if flag.starts_with("--listen=") => flag["--listen=".len()..].to_string(),
        Some(flag) if flag.starts_with('-') => {
            return Err(Failure::Usage(format!("unknown option {flag}")));
        }
        Some(addr) => addr,
    };
    if let Some(extra) = args.next() {
        return Err(Failure::Usage(format!("unexpected argument {extra}")));
    }
    text.parse()
        .map_err(|_| Failure::Usage(format!("{text:?} is not an address like 127.0.0.1:3000")))
}

/// `HELLO_NO_LAYER`: true serves the router without `RecordLayer`.
fn no_layer() -> Result<bool, Failure> {
    match std::env::var("HELLO_NO_LAYER") {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(v) if matches!(v.trim(), "" | "0") => Ok(false),
        Ok(v) if v.trim() == "1" => Ok(true),
        Ok(v) => Err(Failure::Usage(format!("HELLO_NO_LAYER={v:?}: use 1 or 0"))),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(Failure::Usage(format!("HELLO_NO_LAYER={v:?}: use 1 or 0")))
        }
    }
}

/// The 1 KiB JSON body: exactly 1024 bytes (the same as benches/layer.rs).
fn hello_json() -> Bytes {
    let head =
        r#"{"message":"hello from the reprise tower benchmark","items":[0,1,2,3,4,5,6,7],"pad":""#;
    let tail = r#""}"#;
    let pad = "x".repeat(1024 - head.len() - tail.len());
    Bytes::from(format!("{head}{pad}{tail}"))
}

fn hello_router() -> Router {
    let body = hello_json();
    Router::new().route(
        "/",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
}

fn run() -> Result<(), Failure> {
    let addr = listen_addr(std::env::args().skip(1))?;
    let reprise = if no_layer()? {
        if std::env::var("REPRISE_MODE").is_ok_and(|m| !matches!(m.trim(), "" | "off")) {
            return Err(Failure::Usage(
                "HELLO_NO_LAYER=1 serves without the layer: unset REPRISE_MODE".into(),
            ));
        }
        None
    } else {
        Some(Reprise::from_env().map_err(|e| match e {
            e @ (Error::BadSetting { .. } | Error::NoTape { .. }) => Failure::Usage(e.to_string()),
            other => Failure::Run(other.to_string()),
        })?)
    };
    let (app, what) = match &reprise {
        None => (hello_router(), "no layer".to_string()),
        Some(reprise) => {
            let what = match reprise.mode() {
                Mode::Off => "RecordLayer, REPRISE_MODE=off".to_string(),
                Mode::Record => format!(
                    "RecordLayer recording everything into {}",
                    std::env::var("REPRISE_TAPE").unwrap_or_default()
                ),
                Mode::Mock => "RecordLayer, REPRISE_MODE=mock".to_string(),
                other => format!("RecordLayer, REPRISE_MODE={other}"),
            };
            (hello_router().layer(reprise.inbound()), what)
        }
    };

    // One serving thread, whatever the variant: the layer's cost then comes
    // out of the same single core of serving in each, instead of being
    // hidden by (or lost among) a second worker competing with wrk and the
    // recorder for the machine's two cores. The recorder's own thread is
    // part of what recording costs, so it is not pinned or excluded.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(format!("cannot start the async runtime: {e}")))?;
    let served = runtime.block_on(serve(addr, app, &what));
    // Calls still open when the server stopped end with the runtime: only
    // then may the recorder be closed.
    drop(runtime);

    let Some(reprise) = reprise else {
        return served;
    };
    let recording = reprise.mode() == Mode::Record;
    // The runtime is gone: the blocking variant closes the tape.
    let closed = match reprise.shutdown_blocking(CLOSE) {
        Ok(stats) if recording => {
            eprintln!(
                "hello: {} calls seen, {} recorded, {} dropped",
                stats.seen,
                stats.recorded,
                stats.dropped()
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::Run(format!("closing the tape: {e}"))),
    };
    served.and(closed)
}

/// Serves `app` on `addr` until SIGTERM or SIGINT, then gives open calls
/// [`DRAIN`] to finish.
async fn serve(addr: SocketAddr, app: Router, what: &str) -> Result<(), Failure> {
    // Hooked before the port opens, so a signal sent as soon as it answers
    // is not lost.
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| Failure::Run(format!("SIGTERM: {e}")))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| Failure::Run(format!("SIGINT: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Run(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Run(format!("cannot tell the listening address: {e}")))?;
    eprintln!("hello: listening on http://{local} ({what})");

    let (stop, mut stopping) = watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    // Ends DRAIN after the signal; it holds the sender until then.
    let drained = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        let _ = stop.send(true);
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = server => result.map_err(|e| Failure::Run(format!("serving: {e}"))),
        () = drained => {
            eprintln!("hello: calls still open {} s after the signal; stopping", DRAIN.as_secs());
            Ok(())
        }
    }
}
