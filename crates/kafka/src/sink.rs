//! [`KafkaSink`]: a topic as a recording's [`Sink`].
//!
//! One message per exchange: the record's encoding (what
//! `reprise_model::encode` writes, the tape's record) as its value, the
//! exchange's trace id (else its id) as its key, so an inbound call and
//! its downstream calls land in one partition in order, its
//! `recorded_at` as its timestamp, and the schema revision in the
//! [`SCHEMA_HEADER`] header. An idempotent producer, zstd batches.
//!
//! The producer's queue is the bypass: `append` never waits. When the
//! broker is slow or gone the queue fills and further exchanges are
//! refused (counted, [`SinkTally::refused`]); those the broker never
//! acknowledges within `message.timeout.ms` are lost (counted,
//! [`SinkTally::unwritten`]); once the broker is back, what waits in the
//! queue is delivered and recording goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use reprise_model::pack::{Packed, PackedError};
use reprise_model::{Exchange, Sink, SinkTally, StoreError};

use crate::address::{KafkaAddress, KafkaOptions};
use crate::client::{self, LastError, SCHEMA_HEADER};
use crate::error::KafkaError;

/// How a [`KafkaSink`] waits.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// How long opening waits for a broker to answer.
    pub connect_timeout: Duration,
    /// How long closing waits for the queue to be delivered; what is
    /// still queued then is counted as unwritten.
    pub close_timeout: Duration,
    /// Wait for room when the producer's queue is full, instead of
    /// refusing the exchange: for a copy, not for a recording (whose
    /// calls must never wait on the broker).
    pub wait_when_full: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            connect_timeout: client::CONNECT_TIMEOUT,
            // Under the recorder's own 10 s for closing its sink.
            close_timeout: Duration::from_secs(5),
            wait_when_full: false,
        }
    }
}

/// Counts deliveries, on the producer's polling thread.
#[derive(Default)]
struct Deliveries {
    written: AtomicU64,
    written_bytes: AtomicU64,
    unwritten: AtomicU64,
    last_error: LastError,
}

client::remembering_context!(Deliveries);

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                self.written_bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.unwritten.fetch_add(1, Ordering::Relaxed);
                self.last_error.set(error.to_string());
            }
        }
    }
}

/// A topic written as a recording's [`Sink`].
pub struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    deliveries: Arc<Deliveries>,
    address: KafkaAddress,
    refused: u64,
    close_timeout: Duration,
    wait_when_full: bool,
    revision: String,
    closed: bool,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Opens `address` for writing once a broker has answered and the
    /// topic is there (within `options.connect_timeout`): a broker that
    /// cannot be reached, or a topic that does not exist, is an error
    /// now, not dropped exchanges later.
    pub fn open(
        address: &KafkaAddress,
        settings: &KafkaOptions,
        options: &SinkOptions,
    ) -> Result<KafkaSink, KafkaError> {
        address.for_writing()?;
        let mut config = client::config(address);
        config
            .set("enable.idempotence", "true")
            .set("compression.type", "zstd")
            .set("linger.ms", "5")
            // A missing topic is an error, not one made with the
            // cluster's defaults (ask for it with this setting).
            .set("allow.auto.create.topics", "false")
            // The bypass: at most this much waits for the broker.
            .set("queue.buffering.max.kbytes", "65536")
            .set("queue.buffering.max.messages", "100000");
        settings.apply(&mut config);
        let producer: ThreadedProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .map_err(|e| client::refused(address, &e))?;
        client::partitions(producer.client(), address, options.connect_timeout)?;
        let deliveries = Arc::clone(producer.context());
        Ok(KafkaSink {
            producer,
            deliveries,
            address: address.clone(),
            refused: 0,
            close_timeout: options.close_timeout,
            wait_when_full: options.wait_when_full,
            revision: reprise_model::SCHEMA_REVISION.to_string(),
            closed: false,
        })
    }

    /// The topic written.
    pub fn address(&self) -> &KafkaAddress {
        &self.address
    }

    /// Queues one record; a refusal (the queue full, a record too large)
    /// is counted and said.
    fn produce(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<(), StoreError> {
        if self.closed {
            self.refused += 1;
            return Err(StoreError::failed(self.address.to_string(), "closed"));
        }
        let head = reprise_model::peek_head(record);
        let key = head.map(|h| h.routing_key()).unwrap_or_default();
        let millis = i64::try_from(recorded_at_ns / 1_000_000).unwrap_or(i64::MAX);
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: SCHEMA_HEADER,
            value: Some(self.revision.as_bytes()),
        });
        let message = BaseRecord::to(&self.address.topic)
            .payload(record)
            .key(key)
            .headers(headers);
        let mut message = if millis > 0 {
            message.timestamp(millis)
        } else {
            message
        };
        loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                Err((error, again))
                    if self.wait_when_full
                        && error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                {
                    // Room comes as the broker acknowledges: the
                    // producer's thread serves the deliveries.
                    let _ = self.producer.flush(Duration::from_millis(10));
                    message = again;
                }
                Err((error, _)) => return Err(self.refuse(&error, record.len())),
            }
        }
    }

    /// Counts and says why a record was refused.
    fn refuse(&mut self, error: &RdError, len: usize) -> StoreError {
        self.refused += 1;
        let why = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => {
                "the producer's queue is full (the broker is slow or unreachable): exchange dropped"
                    .to_string()
            }
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => format!(
                "a record of {len} bytes is over the producer's message.max.bytes: exchange dropped"
            ),
            _ => format!("exchange dropped: {error}"),
        };
        StoreError::Unwritten {
            store: self.address.to_string(),
            detail: why,
            source: None,
        }
    }
}

impl Sink for KafkaSink {
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError> {
        let mut record = Vec::with_capacity(reprise_model::encoded_len(&exchange));
        reprise_model::encode(&exchange, &mut record);
        self.produce(&record, exchange.recorded_at_ns)
    }

    fn append_encoded(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<(), StoreError> {
        self.produce(record, recorded_at_ns)
    }

    fn append_packed(&mut self, packed: Packed) -> Result<(), PackedError> {
        let records = packed
            .plain_records()
            .map_err(|error| PackedError { stored: 0, error })?;
        let mut failed = None;
        for record in records {
            let at = reprise_model::peek_head(record).map_or(packed.min_ts, |h| h.recorded_at_ns);
            // Each record is tried: the queue may have room again.
            if let Err(error) = self.produce(record, at) {
                failed.get_or_insert(error);
            }
        }
        match failed {
            // Every record is counted in the tally, taken or refused.
            Some(error) => Err(PackedError { stored: 0, error }),
            None => Ok(()),
        }
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.producer
            .flush(self.close_timeout)
            .map_err(|error| StoreError::Unwritten {
                store: self.address.to_string(),
                detail: format!(
                    "not every exchange reached the broker within {}s: {error}",
                    self.close_timeout.as_secs_f64()
                ),
                source: None,
            })
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let synced = self.sync();
        if synced.is_err() {
            // What is left is lost: its delivery reports say so (counted
            // as unwritten) once purged.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.flush(Duration::from_secs(1));
        }
        synced
    }

    fn bytes_written(&self) -> Option<u64> {
        Some(self.deliveries.written_bytes.load(Ordering::Relaxed))
    }

    fn tally(&self) -> Option<SinkTally> {
        Some(SinkTally {
            written: self.deliveries.written.load(Ordering::Relaxed),
            unwritten: self.deliveries.unwritten.load(Ordering::Relaxed),
            refused: self.refused,
        })
    }
}
