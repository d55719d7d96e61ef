//! The reprise record model.
//!
//! One [`Exchange`] per call, as defined by `proto/reprise/v1/exchange.proto`
//! (the types here are generated from it by prost). This crate also holds
//! what every part of reprise shares about exchanges and is free of I/O:
//!
//! - [`codec`]: the one way exchanges become bytes and back, keeping fields
//!   of newer schemas it does not know;
//! - [`store`]: the [`Sink`]/[`Source`] traits behind which tapes, Kafka
//!   and in-memory stores sit;
//! - [`select`]: filters over exchanges (method, path glob, status, time);
//! - [`id`]: exchange ids;
//! - [`key`]: the canonical key a mocked call is matched by;
//! - [`writer`]: records written field by field, without an [`Exchange`];
//! - [`terminal`]: recorded text escaped for a terminal;
//! - [`protocol`]: the header fields reprise adds to calls and answers;
//! - [`size`]: sizes as people write them (`64KiB`);
//! - [`table`]: the text tables of the terminal reports;
//! - [`latency`]: the latency histograms of `stats`, `replay` and `diff`;
//! - helpers on the generated types ([`Exchange::endpoint`], header lookup).

pub mod codec;
pub mod coding;
pub mod drain;
pub mod error;
mod exchange;
pub mod grpc;
pub mod id;
pub mod key;
pub mod latency;
pub mod pack;
pub mod protocol;
pub mod redact;
pub mod sample;
pub mod select;
pub mod size;
pub mod store;
pub mod synthetic;
pub mod table;
pub mod terminal;
pub mod time;
pub mod trace;
pub mod wire;
pub mod writer;

/// Generated protobuf types of `reprise.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/reprise.v1.rs"));
}

pub use codec::{DecodeError, RecordHead, decode, encode, encoded_len, peek_head};
pub use exchange::{
    HeaderList, display_id, endpoint_key, error_kind_label, is_id_segment, protocol_label,
};
pub use pb::{
    DbCall, Direction, ErrorKind, Exchange, Flags, GrpcStatus, Header, Link, LinkKind, Protocol,
    RedisCommand, Replay, Request, RespKind, RespValue, Response, Role, Source as RecordSource,
    SqlColumn, SqlError, SqlErrorField, SqlRow, SqlStartup, SqlStatement, SqlValue, StreamMessage,
    Timings, TransportError,
};
pub use store::{Intact, MemorySink, MemorySource, Sink, SinkTally, Source, StoreError};

/// Version of the record schema (`reprise.v1`) this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Revision of `reprise.v1` this build knows: bumped each time fields are
/// added to the schema. A record written by a build of this revision or an
/// older one holds no field this build does not know, so stores that note
/// the writer's revision can decode it with [`codec::decode_known`].
pub const SCHEMA_REVISION: u16 = 3;

/// The compiled schema as an encoded `FileDescriptorSet`, for tools that
/// decode records dynamically.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reprise_v1.fds"));
