//! Recordings on Apache Kafka: a topic as a reprise [`Sink`] and
//! [`Source`], named `kafka://BROKER[,BROKER...]/TOPIC[?QUERY]` wherever
//! a tape path is accepted.
//!
//! - [`KafkaSink`] writes one message per exchange (its record encoding,
//!   keyed by trace id, stamped with its recorded time, the schema
//!   revision in a header) through an idempotent, zstd-compressing
//!   producer whose queue is the recording's bypass.
//! - [`KafkaSource`] reads every partition from `from=` to the end
//!   offsets seen when it opened, or on with `follow`.
//! - [`GroupSource`] reads a member's share of a topic in a consumer
//!   group (`group=NAME`), committing what its user settles ([`Acks`]).
//! - [`KafkaOptions`] carries the librdkafka settings a real cluster
//!   needs (`security.protocol`, SASL, TLS) from `--kafka-option` or a
//!   properties file.
//!
//! [`Sink`]: reprise_model::Sink
//! [`Source`]: reprise_model::Source

mod address;
mod client;
mod error;
mod group;
mod sink;
mod source;

pub use address::{KafkaAddress, KafkaOptions, SCHEME, Start, is_kafka};
pub use client::{CONNECT_TIMEOUT, SCHEMA_HEADER};
pub use error::KafkaError;
pub use group::{Acks, GroupSource};
pub use sink::{KafkaSink, SinkOptions};
pub use source::{Ends, KafkaSource, SourceOptions};
