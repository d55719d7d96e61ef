//! What can go wrong reading PostgreSQL's wire protocol.

use thiserror::Error;

/// Which end of the connection sent the bytes in question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (frontend).
    Client,
    /// The server (backend).
    Server,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// A stream that does not follow the protocol. Parsers return it instead
/// of panicking; a [`Conversation`](super::Conversation) that meets one
/// stops cutting (the recorder keeps relaying).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PgError {
    /// The client's first packet is not a v3 start-up, SSLRequest,
    /// GSSENCRequest or CancelRequest.
    #[error("not a PostgreSQL v3 start-up: {0}")]
    NotV3(String),
    /// A message's length field is below its own size or absurd (> 1 GiB).
    #[error("message '{kind}' from the {side} has an impossible length {len}")]
    Length {
        /// Who sent it.
        side: Side,
        /// The message's type byte, as a character.
        kind: char,
        /// The length field as sent.
        len: i64,
    },
    /// A message's body does not hold what its type requires.
    #[error("malformed '{kind}' message from the {side}: {what}")]
    Malformed {
        /// Who sent it.
        side: Side,
        /// The message's type byte, as a character.
        kind: char,
        /// What was wrong.
        what: &'static str,
    },
    /// A message that makes no sense where it came.
    #[error("unexpected '{kind}' message from the {side} {during}")]
    Unexpected {
        /// Who sent it.
        side: Side,
        /// The message's type byte, as a character.
        kind: char,
        /// Where in the flow it came, e.g. "with no request pending".
        during: &'static str,
    },
    /// The connection went somewhere this codec cannot follow (GSSAPI
    /// encryption, a TLS handshake inside the stream).
    #[error("cannot follow the connection: {0}")]
    Unsupported(&'static str),
}

impl PgError {
    pub(crate) fn malformed(side: Side, kind: u8, what: &'static str) -> Self {
        PgError::Malformed {
            side,
            kind: char::from(kind),
            what,
        }
    }
}
