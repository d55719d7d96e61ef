//! What a CONNECT tunnel carries, told from its first bytes: a TLS
//! ClientHello, the HTTP/2 preface, HTTP/1.1, or none of these. The bytes
//! read to tell are given back in front of the stream ([`Prefixed`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a tunnel are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carried {
    Tls,
    H2c,
    Http1,
}

/// Why a tunnel's first bytes do not tell a protocol.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SniffError {
    #[error("carried neither TLS nor HTTP (first bytes {})", hex(.0))]
    Unknown(Bytes),
    #[error("sent nothing within {0:?}")]
    Silent(Duration),
    #[error("closed before sending anything")]
    Closed,
    #[error("could not be read: {0}")]
    Io(io::Error),
}

/// Up to the first 16 bytes, in hex.
fn hex(bytes: &Bytes) -> String {
    let shown: Vec<String> = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 16 { " .." } else { "" };
    format!("{}{more}", shown.join(" "))
}

/// Reads the tunnel's first bytes, within `deadline`, until they tell
/// what it carries; returns that and the bytes read.
pub(crate) async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Duration,
) -> Result<(Carried, Bytes), SniffError> {
    let mut buf = BytesMut::with_capacity(4096);
    let work = async {
        loop {
            match judge(&buf) {
                Judgement::Known(carried) => return Ok(carried),
                Judgement::Unknown => return Err(SniffError::Unknown(buf.clone().freeze())),
                Judgement::More => {}
            }
            let n = stream.read_buf(&mut buf).await.map_err(SniffError::Io)?;
            if n == 0 {
                return Err(if buf.is_empty() {
                    SniffError::Closed
                } else {
                    SniffError::Unknown(buf.clone().freeze())
                });
            }
        }
    };
    let carried = tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| SniffError::Silent(deadline))??;
    Ok((carried, buf.freeze()))
}

enum Judgement {
    Known(Carried),
    Unknown,
    More,
}

fn judge(buf: &[u8]) -> Judgement {
    let Some(&first) = buf.first() else {
        return Judgement::More;
    };
    // A TLS handshake record: content type 22, version 3.x.
    if first == 0x16 {
        return match buf.get(1) {
            None => Judgement::More,
            Some(3) => Judgement::Known(Carried::Tls),
            Some(_) => Judgement::Unknown,
        };
    }
    let shared = buf.len().min(H2_PREFACE.len());
    if buf[..shared] == H2_PREFACE[..shared] {
        return if shared == H2_PREFACE.len() {
            Judgement::Known(Carried::H2c)
        } else {
            Judgement::More
        };
    }
    // HTTP/1.1: a method token (upper-case letters) then a space.
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' | b'_' if i < 24 => {}
            b' ' if i > 0 => return Judgement::Known(Carried::Http1),
            _ => return Judgement::Unknown,
        }
    }
    Judgement::More
}

/// A stream with bytes already read from it given back in front.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn sniffed(bytes: &'static [u8]) -> Result<(Carried, Bytes), SniffError> {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, bytes)
            .await
            .unwrap();
        drop(client);
        sniff(&mut server, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn tells_each_protocol_and_gives_the_bytes_back() {
        let tls: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x05];
        assert_eq!(sniffed(tls).await.unwrap().0, Carried::Tls);
        assert_eq!(sniffed(H2_PREFACE).await.unwrap().0, Carried::H2c);
        let (carried, read) = sniffed(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(carried, Carried::Http1);
        let mut again = Prefixed::new(read, tokio::io::empty());
        let mut all = Vec::new();
        again.read_to_end(&mut all).await.unwrap();
        assert!(b"GET / HTTP/1.1\r\n\r\n".starts_with(&all));
        // "PRI" alone is a method; the preface cut short is not HTTP.
        let err = sniffed(&[0x00, 0x01, 0x02]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "carried neither TLS nor HTTP (first bytes 00 01 02)"
        );
        assert!(matches!(sniffed(b"").await, Err(SniffError::Closed)));
        assert!(matches!(
            sniffed(b"PRI * HTTP/2.0\r\n").await,
            Err(SniffError::Unknown(_))
        ));
    }

    #[tokio::test]
    async fn a_silent_tunnel_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let err = sniff(&mut server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, SniffError::Silent(_)));
    }
}
