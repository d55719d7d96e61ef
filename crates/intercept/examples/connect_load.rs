//! A load generator for forward proxies, for `bench/egress.sh`: C
//! connections, each a `CONNECT` tunnel through `--proxy` to `--target`,
//! TLS inside it (trusting `--ca`), then HTTP/1.1 keep-alive `GET`s of
//! `--path` back to back for `--seconds` (`--proxy none`: TLS straight to
//! the target, the direct reference). Prints one line of JSON: calls,
//! errors, calls per second, p50 and p99 in ms.
//!
//! wrk and h2load cannot go through a proxy; this is the part of them the
//! benchmark needs, with the same closed-loop model as wrk (each connection
//! sends its next call when the last one is answered).
//!
//! ```text
//! cargo run --release -p reprise-intercept --example connect_load -- \
//!     --proxy 127.0.0.1:3128 --target localhost:8443 --ca ca.pem \
//!     --path /hello.json --connections 32 --seconds 10
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    proxy: String,
    target: String,
    ca: String,
    path: String,
    connections: usize,
    seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        proxy: String::new(),
        target: String::new(),
        ca: String::new(),
        path: "/".into(),
        connections: 32,
        seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--proxy" => o.proxy = value,
            "--target" => o.target = value,
            "--ca" => o.ca = value,
            "--path" => o.path = value,
            "--connections" => o.connections = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--seconds" => o.seconds = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if o.proxy.is_empty() || o.target.is_empty() || o.ca.is_empty() {
        return Err("--proxy, --target and --ca are needed".into());
    }
    Ok(o)
}

/// Opens one tunnel and its TLS session, ready for HTTP/1.1.
async fn tunnel(
    o: &Options,
    tls: &tokio_rustls::TlsConnector,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let direct = o.proxy == "none";
    let first = if direct { &o.target } else { &o.proxy };
    let mut tcp = TcpStream::connect(first)
        .await
        .map_err(|e| format!("{first}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    if !direct {
        open_tunnel(&mut tcp, &o.target).await?;
    }
    let host = o
        .target
        .rsplit_once(':')
        .map_or(o.target.as_str(), |(h, _)| h);
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

/// Asks the proxy on `tcp` for a tunnel to `target` and reads its answer.
async fn open_tunnel(tcp: &mut TcpStream, target: &str) -> Result<(), String> {
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    tcp.write_all(connect.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The answer to CONNECT ends with an empty line; nothing follows it
    // until the client speaks.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.map_err(|e| e.to_string())? == 0 || head.len() > 8192 {
            return Err("the proxy closed the tunnel".into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        return Err(format!(
            "CONNECT: {}",
            String::from_utf8_lossy(&head).trim()
        ));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let o = Arc::new(options()?);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&o.ca).map_err(|e| format!("{}: {e}", o.ca))? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let end = Instant::now() + Duration::from_secs(o.seconds);
    let mut workers = Vec::new();
    for _ in 0..o.connections {
        let (o, tls) = (o.clone(), tls.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies =
                hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
            let mut errors = 0u64;
            let mut send = tunnel(&o, &tls).await?;
            while Instant::now() < end {
                let request = hyper::Request::get(o.path.as_str())
                    .header(hyper::header::HOST, o.target.as_str())
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let start = Instant::now();
                let ok = match send.send_request(request).await {
                    Ok(response) => {
                        let good = response.status().is_success();
                        good && response.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies
                        .record(start.elapsed().as_micros() as u64)
                        .map_err(|e| e.to_string())?;
                } else {
                    errors += 1;
                    send = tunnel(&o, &tls).await?;
                }
            }
            Ok::<_, String>((latencies, errors))
        }));
    }
    let started = Instant::now();
    let mut all = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut errors = 0;
    for worker in workers {
        let (latencies, e) = worker.await.map_err(|e| e.to_string())??;
        all.add(&latencies).map_err(|e| e.to_string())?;
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64().max(o.seconds as f64);
    println!(
        "{{\"calls\":{},\"errors\":{},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        all.len(),
        errors,
        all.len() as f64 / seconds,
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}
