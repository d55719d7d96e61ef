//! Redis serialization protocol, RESP2 and RESP3.
//!
//! - [`Conversation`] cuts a recorded connection into exchanges, one per
//!   command with its reply, for `reprise record --egress-db`.
//! - [`Session`], [`encode`], [`miss_reply`] and [`command_key`] are what
//!   `reprise mock --db` answers with.
//! - [`ReplyParser`] and [`CommandParser`] are the incremental parsers
//!   under both: bounded (lengths, counts and nesting are checked before
//!   anything is reserved) and total (every input gives a value, "more",
//!   or a typed error).

mod command;
mod conversation;
mod encode;
mod error;
mod inline;
mod key;
mod line;
mod redact;
mod reply;
mod session;
mod writes;

pub use command::{Command, CommandParser, INLINE_LIMIT, MAX_ARGS};
pub use conversation::{Conversation, MAX_PENDING, Passthrough, RedisOptions};
pub use encode::{RespVersion, encode, encode_command, encode_into, error_reply, miss_reply};
pub use error::{Direction, RedisError, RespError};
pub use inline::split_inline;
pub use key::{CommandKey, command_key};
pub use redact::redact_command;
pub use reply::{MAX_AGGREGATE, MAX_BULK, MAX_DEPTH, Reply, ReplyParser};
pub use session::Session;
pub use writes::is_write;
