//! PostgreSQL and Redis on the wire, for `reprise record --egress-db` and
//! `reprise mock --db`.
//!
//! Sans-I/O: the recorder passes every byte of a connection through
//! unchanged and feeds a copy of each direction to a conversation
//! ([`pg::Conversation`], [`redis::Conversation`]), which cuts the two
//! streams into exchanges (the model's [`DbCall`](reprise_model::pb::DbCall)).
//! The mock parses what a client sends with the same code and encodes its
//! answers from recorded exchanges. Nothing here opens a socket.

pub mod pg;
pub mod redis;
