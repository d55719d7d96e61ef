//! PostgreSQL frontend/backend protocol version 3.
//!
//! - [`Conversation`] cuts a recorded connection into exchanges;
//! - [`Session`] reads what a client sends the mock, and [`serve`]'s
//!   encoders write the mock's answers;
//! - [`first_packet`], [`frontend`] and [`backend`] parse messages,
//!   [`encode`] writes them;
//! - [`normalize`], [`is_write`] and [`traceparent`] read SQL text;
//! - [`strip_channel_binding`] keeps SCRAM from asking for channel binding
//!   the recorder cannot give.

mod batch;
mod client;
mod conversation;
mod draft;
pub mod encode;
mod error;
mod frame;
mod lex;
mod messages;
mod scram;
pub mod serve;
mod sql;
mod startup;

pub use batch::Step;
pub use conversation::{Conversation, PgOptions};
pub use error::{PgError, Side};
pub use frame::MAX_MESSAGE;
pub use messages::{Backend, Column, Frontend, backend, frontend};
pub use scram::{ChannelBindingFilter, strip_channel_binding};
pub use serve::{Answer, Session, SessionEvent, Unit};
pub use sql::{Normalized, is_write, normalize, traceparent};
pub use startup::{FirstPacket, PROTOCOL_3_0, first_packet};
