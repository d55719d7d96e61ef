//! One database connection to the mock, sans I/O: bytes from the client
//! in, the answer's bytes out, and what to do next. The listener's loop
//! ([`serve_listener`](super::serve_listener)) reads and writes a socket
//! around it; a fuzz target or another front can drive it directly.

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::DbProtocol;
use super::pg::PgState;
use super::redis::RedisState;
use super::serve::DbConn;
use super::stream::{DbStream, read_some};

/// What a connection does after what it was fed is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbStep {
    /// Read on.
    Continue,
    /// PostgreSQL's SSLRequest was accepted (`S` is the answer): the TLS
    /// handshake comes next, then the client's bytes inside it.
    StartTls,
    /// Write the answer, then close: the client left or broke the
    /// protocol.
    Close,
}

/// A client connection to a database listener of a
/// [`MockServer`](crate::server::MockServer), as the server answers it
/// (see [`MockServer::db_connection`](crate::server::MockServer::db_connection)).
pub struct DbConnection {
    conn: DbConn,
    state: State,
}

enum State {
    Postgres(Box<PgState>),
    Redis(Box<RedisState>),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConnection")
            .field("connection", &self.conn.connection)
            .finish()
    }
}

impl DbConnection {
    pub(crate) fn new(conn: DbConn, protocol: DbProtocol) -> DbConnection {
        let state = match protocol {
            DbProtocol::Postgres => State::Postgres(Box::new(PgState::new(&conn))),
            DbProtocol::Redis => State::Redis(Box::new(RedisState::new(&conn))),
        };
        DbConnection { conn, state }
    }

    /// Feeds bytes the client sent; appends the answer to `out` (write
    /// it before acting on the step).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> DbStep {
        match &mut self.state {
            State::Postgres(pg) => pg.feed(&self.conn, bytes, out),
            State::Redis(redis) => redis.feed(&self.conn, bytes, out),
        }
    }

    /// Serves `stream` until the client leaves, breaks the protocol, or
    /// `stop` turns true (between reads).
    pub(crate) async fn serve(mut self, mut stream: DbStream, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        loop {
            let Some(read) = read_some(&mut stream, &mut buf, &mut stop).await else {
                return;
            };
            out.clear();
            let step = self.feed(buf.get(..read).unwrap_or_default(), &mut out);
            if !out.is_empty() && stream.write_all(&out).await.is_err() {
                return;
            }
            match step {
                DbStep::Continue => {}
                DbStep::StartTls => {
                    let Some(tls) = self.conn.tls.clone() else {
                        return;
                    };
                    if let Err(why) = stream.upgrade(&self.conn.local_host, &tls).await {
                        self.conn.note(&format!("{why}; connection closed"));
                        return;
                    }
                }
                DbStep::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
    }
}
