//! SCRAM channel binding through a recorder that ends TLS on both sides:
//! which client settings get through once `ChannelBindingFilter` removes
//! SCRAM-SHA-256-PLUS, checked against a real PostgreSQL and psql.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use reprise_testkit::postgres::{PgAuth, Postgres, PostgresOptions};
use reprise_wire::pg::ChannelBindingFilter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, crypto};
use tokio_rustls::{TlsAcceptor, TlsConnector};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// How the relay treats the two legs.
#[derive(Clone, Copy)]
struct Legs {
    upstream_tls: bool,
    strip: bool,
}

fn acceptor() -> TlsAcceptor {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

fn connector(pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A relay that answers the client's SSLRequest itself and ends its TLS,
/// and reaches the server with TLS or without, as a recorder does.
fn start_relay(
    runtime: &tokio::runtime::Runtime,
    upstream: SocketAddr,
    pem: String,
    legs: Legs,
) -> SocketAddr {
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = acceptor();
    let connector = connector(&pem);
    runtime.spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let (acceptor, connector) = (acceptor.clone(), connector.clone());
            tokio::spawn(async move {
                let mut first = [0; 8];
                client.read_exact(&mut first).await.unwrap();
                assert_eq!(first, SSL_REQUEST, "the test's clients ask for TLS");
                client.write_all(b"S").await.unwrap();
                let client: Box<dyn Io> = Box::new(acceptor.accept(client).await.unwrap());
                let mut server = TcpStream::connect(upstream).await.unwrap();
                let server: Box<dyn Io> = if legs.upstream_tls {
                    server.write_all(&SSL_REQUEST).await.unwrap();
                    let mut answer = [0; 1];
                    server.read_exact(&mut answer).await.unwrap();
                    assert_eq!(&answer, b"S");
                    let name = ServerName::try_from("localhost").unwrap();
                    Box::new(connector.connect(name, server).await.unwrap())
                } else {
                    Box::new(server)
                };
                pipe(client, server, legs.strip).await;
            });
        }
    });
    addr
}

async fn pipe(client: Box<dyn Io>, server: Box<dyn Io>, strip: bool) {
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut filter = ChannelBindingFilter::new();
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n) = sr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let out = if strip {
            filter.feed(&buf[..n])
        } else {
            buf[..n].to_vec()
        };
        if cw.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
    let _ = up.await;
}

fn psql(pg: &Postgres, port: u16, channel_binding: &str) -> (bool, String) {
    let out = Command::new(pg.bin_dir().join("psql"))
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-c", "select 'through'"])
        .env("PGPASSWORD", pg.password())
        .env("PGSSLMODE", "require")
        .env("PGCHANNELBINDING", channel_binding)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn which_clients_get_through_with_plus_removed() {
    let pg = Postgres::start_with(PostgresOptions {
        auth: PgAuth::Scram,
        password: "pw-of-reprise".to_owned(),
        tls: true,
    });
    let pem = pg.cert_pem().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let both_tls = start_relay(
        &runtime,
        pg.addr(),
        pem.clone(),
        Legs {
            upstream_tls: true,
            strip: true,
        },
    );
    let plain_upstream = start_relay(
        &runtime,
        pg.addr(),
        pem.clone(),
        Legs {
            upstream_tls: false,
            strip: true,
        },
    );
    let unstripped = start_relay(
        &runtime,
        pg.addr(),
        pem,
        Legs {
            upstream_tls: true,
            strip: false,
        },
    );

    // TLS on both legs: only a client that does not do channel binding.
    let (ok, said) = psql(&pg, both_tls.port(), "disable");
    assert!(ok && said.contains("through"), "{said}");
    let (ok, said) = psql(&pg, both_tls.port(), "prefer");
    assert!(
        !ok && said.contains("SCRAM channel binding negotiation error"),
        "{said}"
    );
    let (ok, said) = psql(&pg, both_tls.port(), "require");
    assert!(!ok, "{said}");
    // Plaintext to the server: it offers no -PLUS and accepts 'y'.
    for binding in ["disable", "prefer"] {
        let (ok, said) = psql(&pg, plain_upstream.port(), binding);
        assert!(ok && said.contains("through"), "{binding}: {said}");
    }
    // Not stripping does not help: the client binds to the relay's
    // certificate, the server checks against its own.
    let (ok, said) = psql(&pg, unstripped.port(), "prefer");
    assert!(!ok && said.contains("channel binding"), "{said}");
    let (ok, _) = psql(&pg, unstripped.port(), "disable");
    assert!(ok);
}
