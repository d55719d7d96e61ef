//! PostgreSQL and Redis on the wire, for `reprise record --egress-db` and
//! `reprise mock --db`.
//!
//! Sans-I/O: the recorder passes every byte of a connection through
//! unchanged and feeds a copy of each direction to a conversation
//! ([`pg::Conversation`], [`redis::Conversation`]), which cuts the two
//! streams into exchanges (the model's [`reprise_model::DbCall`]).
//! The mock parses what a client sends with the same code and encodes its
//! answers from recorded exchanges. Nothing here opens a socket.

pub mod pg;
pub mod redis;

use reprise_model::DbCall;

/// One exchange a conversation cut from a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct DbExchange {
    /// What was asked and answered.
    pub call: DbCall,
    /// When the exchange's first byte from the client was seen, ns since
    /// the Unix epoch (the `at_ns` the conversation was fed).
    pub started_ns: u64,
    /// When its last byte from the server was seen, ns since the epoch.
    pub ended_ns: u64,
    /// The W3C `traceparent` value the client sent with it (PostgreSQL: in
    /// an sqlcommenter comment of its SQL), when there was one.
    pub traceparent: Option<String>,
    /// Why the exchange did not complete (the connection ended or broke
    /// before the answer did, the stream stopped making sense); `None` when
    /// it did.
    pub incomplete: Option<String>,
}

/// What the recorder needs of a protocol's conversation: it is fed a copy
/// of each direction's bytes as they cross (before they are passed on, so
/// a question is always seen before its answer) and hands out the
/// exchanges it cut.
pub trait Cutter: Send {
    /// Bytes the client sent, seen at `at_ns` (ns since the epoch).
    fn client(&mut self, bytes: &[u8], at_ns: u64);
    /// Bytes the server sent, seen at `at_ns`.
    fn server(&mut self, bytes: &[u8], at_ns: u64);
    /// The exchanges completed since the last call, in order.
    fn take(&mut self) -> Vec<DbExchange>;
    /// The connection ended at `at_ns` (`reason`: how, when it broke): the
    /// exchanges completed and the one under way, marked incomplete.
    fn close(&mut self, at_ns: u64, reason: Option<&str>) -> Vec<DbExchange>;
    /// Why the conversation stopped cutting (bytes that are not the
    /// protocol); the recorder still passes them on.
    fn broken(&self) -> Option<String>;
}

impl Cutter for pg::Conversation {
    fn client(&mut self, bytes: &[u8], at_ns: u64) {
        pg::Conversation::client(self, bytes, at_ns);
    }
    fn server(&mut self, bytes: &[u8], at_ns: u64) {
        pg::Conversation::server(self, bytes, at_ns);
    }
    fn take(&mut self) -> Vec<DbExchange> {
        pg::Conversation::take(self)
    }
    fn close(&mut self, at_ns: u64, reason: Option<&str>) -> Vec<DbExchange> {
        pg::Conversation::close(self, at_ns, reason)
    }
    fn broken(&self) -> Option<String> {
        pg::Conversation::broken(self).map(ToString::to_string)
    }
}

impl Cutter for redis::Conversation {
    fn client(&mut self, bytes: &[u8], at_ns: u64) {
        redis::Conversation::client(self, bytes, at_ns);
    }
    fn server(&mut self, bytes: &[u8], at_ns: u64) {
        redis::Conversation::server(self, bytes, at_ns);
    }
    fn take(&mut self) -> Vec<DbExchange> {
        redis::Conversation::take(self)
    }
    fn close(&mut self, at_ns: u64, reason: Option<&str>) -> Vec<DbExchange> {
        redis::Conversation::close(self, at_ns, reason)
    }
    fn broken(&self) -> Option<String> {
        redis::Conversation::broken(self).map(ToString::to_string)
    }
}

/// A PostgreSQL FATAL ErrorResponse with SQLSTATE `code`: what a listener
/// answers a client it cannot serve (08006 when the server cannot be
/// reached, 08P01 for a start-up it cannot read), as a server would.
pub fn postgres_fatal(code: &str, message: &str) -> Vec<u8> {
    let error = reprise_model::SqlError {
        severity: "FATAL".into(),
        code: code.into(),
        message: message.into(),
        fields: Vec::new(),
    };
    let mut out = Vec::new();
    pg::encode::backend::error(&mut out, b'E', &error);
    out
}
