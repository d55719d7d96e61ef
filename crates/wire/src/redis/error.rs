//! What goes wrong reading RESP, with the context a user needs.

use std::fmt;

/// Why bytes are not RESP: the low-level kinds a parser reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A header or simple line ran past its bound without a line end.
    #[error("a line longer than {limit} bytes")]
    LineTooLong {
        /// The bound, bytes.
        limit: usize,
    },
    /// A line ended with LF alone where RESP requires CRLF.
    #[error("a line ended by LF without CR")]
    BareLineFeed,
    /// A CR inside a line, where RESP forbids it (simple strings, errors,
    /// numbers, headers).
    #[error("a CR inside a line")]
    CarriageReturnInLine,
    /// The first byte of a value is no RESP type.
    #[error("unknown type byte {0:#04x}")]
    UnknownType(u8),
    /// A length or count that is not a number, negative (other than the
    /// null's -1) or `?` where streaming is not allowed.
    #[error("invalid length {0:?}")]
    InvalidLength(String),
    /// A bulk string (or streamed chunk) declared longer than Redis accepts.
    #[error("a bulk string of {0} bytes, over the 512 MB limit")]
    BulkTooLong(u64),
    /// An aggregate declared with more elements than any sane reply holds.
    #[error("an aggregate of {0} elements, over the limit")]
    AggregateTooLong(u64),
    /// Aggregates nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("aggregates nested deeper than {0}")]
    TooDeep(usize),
    /// Bulk data not followed by CRLF.
    #[error("bulk data not followed by CRLF")]
    MissingCrlf,
    /// An integer (`:`) that is not a signed 64-bit number.
    #[error("invalid integer {0:?}")]
    InvalidInteger(String),
    /// A boolean (`#`) other than `t` or `f`.
    #[error("invalid boolean {0:?}")]
    InvalidBoolean(String),
    /// A null (`_`) with something after it on its line.
    #[error("invalid null {0:?}")]
    InvalidNull(String),
    /// The end marker `.` outside a streamed aggregate, or a streamed map
    /// ended after an odd number of elements.
    #[error("an unexpected end of a streamed aggregate")]
    UnexpectedEnd,
    /// Inside a streamed string, a line that is not a `;` chunk header.
    #[error("expected a streamed string chunk (';'), got {0:#04x}")]
    ExpectedChunk(u8),
    /// A command's argument that is not a bulk string (Redis answers
    /// "Protocol error: expected '$'").
    #[error("expected a bulk string argument ('$'), got {0:#04x}")]
    ExpectedBulk(u8),
    /// An inline command with an unclosed quote.
    #[error("unbalanced quotes in an inline command")]
    UnbalancedQuotes,
    /// A reply arrived while no command was waiting for one.
    #[error("a reply with no command waiting for it")]
    UnexpectedReply,
    /// More commands waiting for replies than a conversation keeps.
    #[error("more than {0} commands waiting for their replies")]
    TooManyPending(usize),
}

/// Which of a connection's two streams an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// What the client sent (commands).
    Client,
    /// What the server sent (replies).
    Server,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Client => "client",
            Direction::Server => "server",
        })
    }
}

/// A stream that stopped making sense: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis {direction} stream at byte {offset}: {kind}")]
pub struct RedisError {
    /// The stream it is in.
    pub direction: Direction,
    /// Where, from the stream's start, it was found to fail: at the byte
    /// that is wrong, or just after the line that is.
    pub offset: u64,
    /// What is wrong.
    pub kind: RespError,
}
