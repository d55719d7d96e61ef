//! Shared by the front's tests: a CA in a temporary directory, a front
//! with the `Forward` handler, real upstreams on 127.0.0.1 (plain, TLS
//! with a test CA of their own, tonic over TLS), and clients.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::any;
use http::{HeaderMap, Method, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use reprise_intercept::{Forward, Front, FrontCounters, Leaves, LocalCa, ca};
use tokio::net::TcpListener;

/// A reprise CA in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub files: ca::CaFiles,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let files = ca::init(&dir.path().join("ca"), false).unwrap();
        TestCa { dir, files }
    }
}

/// A running front.
pub struct RunningFront {
    pub addr: SocketAddr,
    pub counters: Arc<FrontCounters>,
    pub ca: TestCa,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningFront {
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A front with `Forward`, trusting `upstream_ca` (else the system's roots).
pub async fn start_front(upstream_ca: Option<&Path>) -> RunningFront {
    let ca = TestCa::new();
    let loaded = LocalCa::load(&ca.files.dir).unwrap();
    let leaves = Arc::new(Leaves::new(loaded).unwrap());
    let forward: Forward = Forward::new(upstream_ca).unwrap();
    let front = Front::new(forward, Some(leaves));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = front.counters();
    let task = tokio::spawn(async move { front.serve(listener).await });
    RunningFront {
        addr,
        counters,
        ca,
        task,
    }
}

/// What the upstream answers: the version, method, path, Host and body
/// it received, so a test sees what reached it.
async fn describe(
    version: Version,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> String {
    let host = headers
        .get("host")
        .map(|v| v.to_str().unwrap().to_string())
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let hop =
        headers.contains_key("proxy-connection") || headers.contains_key("proxy-authorization");
    format!(
        "{version:?} {method} {} host={host} hop={hop} body={}",
        uri.path(),
        String::from_utf8_lossy(&body)
    )
}

fn router() -> Router {
    Router::new().fallback(any(describe))
}

/// A plain HTTP upstream (HTTP/1.1 and h2c prior knowledge).
pub async fn start_plain_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(router());
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A test CA of the upstreams' own (not reprise's) and a leaf for
/// `localhost` and 127.0.0.1 it signed.
pub struct UpstreamPki {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

pub fn upstream_pki(alpn: &[&[u8]]) -> UpstreamPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "upstream test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    UpstreamPki {
        dir,
        ca_file,
        config: Arc::new(config),
    }
}

/// A TLS upstream serving `service` (the describing router by default).
pub async fn start_tls_upstream<S>(pki: &UpstreamPki, service: S) -> SocketAddr
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<axum::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.config.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let service = service.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(service);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

pub async fn start_tls_router(pki: &UpstreamPki) -> SocketAddr {
    start_tls_upstream(pki, router()).await
}

/// Runs a command to the end (within 30 s).
pub async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true);
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} took over 30 s"))
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `cond` until it holds, for at most `seconds`.
pub async fn eventually(what: &str, seconds: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
