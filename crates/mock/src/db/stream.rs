//! A database connection's stream: plain TCP, or TLS once a PostgreSQL
//! client's SSLRequest was accepted.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Plain TCP, TLS after the upgrade, or nothing (an upgrade failed).
pub(crate) enum DbStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

impl DbStream {
    /// Turns the plain stream into TLS: the handshake with the
    /// configuration `config` gives for the name the client asked for
    /// (SNI), or for `host` when it named none.
    pub(crate) async fn upgrade(
        &mut self,
        host: &str,
        config: &super::DbTls,
    ) -> Result<(), String> {
        let DbStream::Plain(tcp) = std::mem::replace(self, DbStream::Closed) else {
            return Err("TLS asked for twice".to_string());
        };
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = acceptor.await.map_err(|e| format!("TLS handshake: {e}"))?;
        let name = start
            .client_hello()
            .server_name()
            .map_or_else(|| host.to_string(), str::to_string);
        let server_config: Arc<rustls::ServerConfig> = config(&name)?;
        let tls = start
            .into_stream(server_config)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        *self = DbStream::Tls(Box::new(tls));
        Ok(())
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl AsyncRead for DbStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DbStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            DbStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            DbStream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for DbStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DbStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            DbStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            DbStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DbStream::Plain(s) => Pin::new(s).poll_flush(cx),
            DbStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            DbStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DbStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            DbStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            DbStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// Reads what the client sent next into `buf`: how many bytes, or `None`
/// when the connection ended, broke, or the mock is stopping.
pub(crate) async fn read_some(
    stream: &mut DbStream,
    buf: &mut [u8],
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        read = stream.read(buf) => match read {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        _ = stop.wait_for(|stop| *stop) => None,
    }
}
