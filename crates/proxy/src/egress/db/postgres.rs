//! A PostgreSQL connection's start: what the client sends before its
//! StartupMessage, answered as the server would.
//!
//! - `SSLRequest`: passed to the server; when it accepts, the recorder
//!   accepts too, terminates the client's TLS with a leaf from the reprise
//!   CA and makes its own TLS connection to the server (with
//!   `?sslmode=disable` on the listener's URL it answers the client
//!   itself and stays plain to the server). Without the CA
//!   (`--ca-dir`), the client is told no, as a server without TLS says.
//!   With TLS terminated, SCRAM-SHA-256-PLUS is taken out of the
//!   mechanisms the server offers: channel binding ties the
//!   authentication to one TLS connection, and there are two.
//! - `GSSENCRequest`: refused by the recorder itself (GSSAPI encryption
//!   cannot be seen through); clients then go on without it.
//! - `CancelRequest`: passed to the server on a connection of its own, not
//!   recorded.
//! - A TLS ClientHello first (PostgreSQL 17's `sslnegotiation=direct`) or
//!   anything else: closed, with a warning.

use std::sync::Arc;
use std::time::Duration;

use reprise_wire::pg::{self, FirstPacket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::relay::{Connection, Io, relay};

/// The longest start-up packet taken (PostgreSQL's own limit is 10000).
const STARTUP_MAX: usize = 10_000;

/// How long the client has to send its start-up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn serve(connection: &Connection, client: TcpStream, server: TcpStream) {
    let shared = &connection.shared;
    let name = &shared.db.name;
    let started =
        tokio::time::timeout(STARTUP_TIMEOUT, negotiate(connection, client, server)).await;
    let (client, server, first, tls) = match started {
        Ok(Ok(Some(negotiated))) => negotiated,
        Ok(Ok(None)) => return,
        Ok(Err(why)) => {
            shared.warn(format!(
                "--egress-db {name}: a connection from {}: {why}",
                connection.peer
            ));
            return;
        }
        Err(_) => {
            shared.warn(format!(
                "--egress-db {name}: a connection from {} sent no start-up within {STARTUP_TIMEOUT:?}",
                connection.peer
            ));
            return;
        }
    };
    let cutter = pg::Conversation::new(pg::PgOptions {
        max_body: shared.max_body,
        tls,
    });
    // With the client's TLS ended here, SCRAM may not offer channel
    // binding: the client would bind to the recorder's certificate.
    let filter = tls.then(pg::ChannelBindingFilter::new);
    relay(connection, client, server, first, Box::new(cutter), filter).await;
}

/// Reads the client's packets up to its StartupMessage, answering TLS and
/// GSSAPI requests; the two sides to relay, the StartupMessage's bytes,
/// and whether TLS was terminated. `None`: a cancel request, passed on.
async fn negotiate(
    connection: &Connection,
    mut client: TcpStream,
    mut server: TcpStream,
) -> Result<Option<(Box<dyn Io>, Box<dyn Io>, Vec<u8>, bool)>, String> {
    let shared = &connection.shared;
    let mut buffer = Vec::with_capacity(64);
    loop {
        let (packet, length) = read_first(&mut client, &mut buffer).await?;
        let bytes: Vec<u8> = buffer.drain(..length).collect();
        match packet {
            FirstPacket::GssEncRequest => {
                client
                    .write_all(b"N")
                    .await
                    .map_err(|e| format!("the client's connection broke: {e}"))?;
            }
            FirstPacket::CancelRequest { .. } => {
                server
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("the server's connection broke: {e}"))?;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                return Ok(None);
            }
            FirstPacket::SslRequest => {
                let Some(leaves) = &shared.leaves else {
                    shared.warn(format!(
                        "--egress-db {}: a client asked for TLS; without the reprise CA (--ca-dir, `reprise ca init`) the listener said no",
                        shared.db.name
                    ));
                    client
                        .write_all(b"N")
                        .await
                        .map_err(|e| format!("the client's connection broke: {e}"))?;
                    continue;
                };
                if !shared.db.server_plain {
                    server
                        .write_all(&bytes)
                        .await
                        .map_err(|e| format!("the server's connection broke: {e}"))?;
                    let mut answer = [0u8; 1];
                    server
                        .read_exact(&mut answer)
                        .await
                        .map_err(|e| format!("the server did not answer the SSLRequest: {e}"))?;
                    if answer != *b"S" {
                        // The server speaks no TLS: neither does the listener.
                        client
                            .write_all(b"N")
                            .await
                            .map_err(|e| format!("the client's connection broke: {e}"))?;
                        continue;
                    }
                }
                return start_tls(connection, leaves, client, server, buffer)
                    .await
                    .map(Some);
            }
            FirstPacket::Startup { .. } => {
                let mut first = bytes;
                first.extend_from_slice(&buffer);
                return Ok(Some((Box::new(client), Box::new(server), first, false)));
            }
        }
    }
}

/// Reads until `buffer` starts with a whole first packet. What is not
/// PostgreSQL is told to the client as a server tells it (FATAL 08P01).
async fn read_first(
    client: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<(FirstPacket, usize), String> {
    loop {
        match pg::first_packet(buffer) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) if buffer.len() > STARTUP_MAX => {
                return Err(format!("a start-up packet longer than {STARTUP_MAX} bytes"));
            }
            Ok(None) => {}
            Err(error) => {
                let answer =
                    reprise_wire::postgres_fatal("08P01", &format!("reprise --egress-db: {error}"));
                let _ = client.write_all(&answer).await;
                return Err(error.to_string());
            }
        }
        let mut chunk = [0u8; 1024];
        let read = client
            .read(&mut chunk)
            .await
            .map_err(|e| format!("the client's connection broke: {e}"))?;
        let Some(bytes) = chunk.get(..read).filter(|b| !b.is_empty()) else {
            return Err("the client closed the connection before its start-up".to_string());
        };
        buffer.extend_from_slice(bytes);
    }
}

/// TLS on both sides: the client's terminated with a leaf for the
/// server's host, the server reached over TLS of the recorder's own
/// (unless the listener keeps it plain).
async fn start_tls(
    connection: &Connection,
    leaves: &Arc<reprise_intercept::Leaves>,
    mut client: TcpStream,
    server: TcpStream,
    early: Vec<u8>,
) -> Result<(Box<dyn Io>, Box<dyn Io>, Vec<u8>, bool), String> {
    let shared = &connection.shared;
    if !early.is_empty() {
        return Err("the client sent bytes before the answer to its SSLRequest".to_string());
    }
    let host = super::relay::server_host(&shared.db.server).to_string();
    let config = leaves
        .server_config(&host, None)
        .map_err(|e| format!("cannot make a certificate for {host}: {e}"))?;
    let server: Box<dyn Io> = if shared.db.server_plain {
        Box::new(server)
    } else {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?} is not a name TLS can check: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&shared.server_tls));
        Box::new(
            connector
                .connect(name, server)
                .await
                .map_err(|e| format!("TLS to the server {}: {e}", shared.db.server))?,
        )
    };
    client
        .write_all(b"S")
        .await
        .map_err(|e| format!("the client's connection broke: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let client = acceptor
        .accept(client)
        .await
        .map_err(|e| format!("TLS with the client (does it trust the reprise CA?): {e}"))?;
    let mut client: Box<dyn Io> = Box::new(client);
    // The StartupMessage comes again, inside TLS.
    let mut buffer = Vec::with_capacity(256);
    match read_first(&mut client, &mut buffer).await? {
        (FirstPacket::Startup { .. }, _) => {}
        _ => return Err("the client sent another request inside TLS".to_string()),
    }
    Ok((client, server, buffer, true))
}
