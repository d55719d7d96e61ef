//! [`KafkaSource`]: a topic read as a recording's [`Source`].
//!
//! Every partition is read from `from=` (the beginning by default) to the
//! end offsets seen when the topic was opened ([`Ends`]), or on as it
//! grows with `follow`. Partitions interleave: each partition's messages
//! come in their order, and readers that need time order sort, as they
//! do for a tape written by several threads. A message that is not a
//! record is skipped and reported as damage (topic, partition, offset,
//! why), as a broken tape block is.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use reprise_model::{Exchange, StoreError};

use crate::address::{KafkaAddress, KafkaOptions, Start};
use crate::client::{self, LastError, SCHEMA_HEADER};
use crate::error::KafkaError;

/// Where each partition ends for a reader: the offset after its last
/// message when the topic was first opened. Kept by a caller that opens
/// the same topic again (`diff` reads its inputs more than once) so that
/// every pass reads the same messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ends(HashMap<i32, i64>);

/// How a [`KafkaSource`] reads.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// How long opening waits for a broker to answer.
    pub connect_timeout: Duration,
    /// Read on as the topic grows, until the flag is set (then up to the
    /// end offsets of that moment).
    pub follow: Option<Arc<AtomicBool>>,
    /// Start at the first message recorded at or after this time (ns),
    /// when later than `from=`: messages are stamped with their
    /// exchange's `recorded_at`, so nothing earlier is fetched.
    pub since_ns: Option<u64>,
    /// The end offsets of an earlier open of the same topic.
    pub ends: Option<Ends>,
    /// How long reading goes on with no broker answering before it fails.
    pub lost_after: Duration,
    /// Set to end a group member's reading at once (a stopped replay).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            connect_timeout: client::CONNECT_TIMEOUT,
            follow: None,
            since_ns: None,
            ends: None,
            lost_after: Duration::from_secs(30),
            stop: None,
        }
    }
}

#[derive(Default)]
struct Context {
    last_error: LastError,
}

client::remembering_context!(Context);

impl ConsumerContext for Context {}

/// A topic read as a recording's [`Source`](reprise_model::Source).
pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    address: KafkaAddress,
    ends: Ends,
    /// Partitions not yet read to their end.
    open: HashMap<i32, i64>,
    follow: Option<Arc<AtomicBool>>,
    /// The settings, for the clients that find where partitions end.
    settings: KafkaOptions,
    /// Messages recorded before this (ns) are skipped.
    since_ns: u64,
    lost_after: Duration,
    /// When the last message or end came (for `lost_after`).
    heard: Instant,
    finished: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Opens `address` for reading: a clear error when no broker answers
    /// within `options.connect_timeout` or the topic is not there.
    pub fn open(
        address: &KafkaAddress,
        settings: &KafkaOptions,
        options: SourceOptions,
    ) -> Result<KafkaSource, KafkaError> {
        if address.group.is_some() {
            return Err(KafkaError::Address {
                address: address.to_string(),
                why: "group= shares a topic among `reprise replay` processes (GroupSource); this command reads the whole topic (leave group= out)".into(),
            });
        }
        let mut config = client::config(address);
        config
            // Partitions are assigned, not shared: the group is private
            // and never committed to.
            .set(
                "group.id",
                format!(
                    "reprise-reader-{}",
                    reprise_model::display_id(&reprise_model::id::new_id())
                ),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        settings.apply(&mut config);
        let consumer: BaseConsumer<Context> = config
            .create_with_context(Context::default())
            .map_err(|e| client::refused(address, &e))?;
        let timeout = options.connect_timeout;
        let partitions = match client::partitions(consumer.client(), address, timeout) {
            Err(KafkaError::Unreachable {
                address,
                timeout,
                why: None,
            }) => {
                // A consumer's log lines and errors wait in its queue
                // until it is polled: serve them, to say why.
                let _ = consumer.poll(Duration::from_millis(100));
                return Err(KafkaError::Unreachable {
                    address,
                    timeout,
                    why: consumer.context().last_error.get(),
                });
            }
            other => other?,
        };
        let lost = |error: RdError| KafkaError::Client {
            address: address.to_string(),
            detail: consumer
                .context()
                .last_error
                .get()
                .unwrap_or_else(|| error.to_string()),
        };
        let ends = match options.ends {
            Some(ends) => ends,
            None => Ends(
                client::ends(address, settings, &partitions, timeout)?
                    .into_iter()
                    .map(|(partition, (_, end))| (partition, end))
                    .collect(),
            ),
        };
        // Where each partition starts.
        let from = address.from.unwrap_or(Start::Beginning);
        let since = match (from, options.since_ns) {
            (Start::Time(at), Some(since)) => Some(at.max(since)),
            (Start::Time(at), None) => Some(at),
            (Start::Beginning, since) => since,
            (Start::End, _) => None,
        };
        let mut starts = TopicPartitionList::new();
        for &partition in &partitions {
            let offset = match (from, since) {
                (Start::End, _) => Offset::End,
                (_, Some(ns)) => Offset::Offset(i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)),
                (_, None) => Offset::Beginning,
            };
            starts
                .add_partition_offset(&address.topic, partition, offset)
                .map_err(lost)?;
        }
        if since.is_some() && from != Start::End {
            // The broker finds the first offset stamped at or after the
            // time; where it finds none (or cannot look: librdkafka's mock
            // cluster), the partition is read from its start, and the
            // messages before the time are skipped as they come.
            let found = consumer.offsets_for_times(starts, timeout).map_err(lost)?;
            starts = TopicPartitionList::new();
            for element in found.elements() {
                let offset = match element.offset() {
                    Offset::Offset(at) => Offset::Offset(at),
                    _ => Offset::Beginning,
                };
                starts
                    .add_partition_offset(&address.topic, element.partition(), offset)
                    .map_err(lost)?;
            }
        }
        let mut open = HashMap::new();
        for element in starts.elements() {
            let partition = element.partition();
            let end = ends.0.get(&partition).copied().unwrap_or(0);
            let reads_some = match element.offset() {
                Offset::Offset(at) => at < end,
                Offset::End => false,
                _ => end > 0,
            };
            if reads_some || options.follow.is_some() {
                open.insert(partition, end);
            }
        }
        consumer.assign(&starts).map_err(lost)?;
        Ok(KafkaSource {
            consumer,
            address: address.clone(),
            ends,
            open,
            follow: options.follow,
            settings: settings.clone(),
            since_ns: since.unwrap_or(0),
            lost_after: options.lost_after,
            heard: Instant::now(),
            finished: false,
        })
    }

    /// The end offsets this source reads to (for [`SourceOptions::ends`]).
    pub fn ends(&self) -> &Ends {
        &self.ends
    }

    /// The topic read.
    pub fn address(&self) -> &KafkaAddress {
        &self.address
    }

    fn following(&self) -> bool {
        self.follow
            .as_ref()
            .is_some_and(|stop| !stop.load(Ordering::Relaxed))
    }

    /// A partition read up to `next` (the offset after the last message
    /// seen, or its end of partition): done when it reached its end,
    /// unless following.
    fn reached(&mut self, partition: i32, next: i64) {
        if self.following() {
            return;
        }
        if self.open.get(&partition).is_some_and(|&end| next >= end) {
            self.open.remove(&partition);
        }
    }

    /// When following stops: each partition now ends where the topic
    /// ends at this moment.
    fn stop_following(&mut self) -> Result<(), StoreError> {
        self.follow = None;
        let partitions: Vec<i32> = self.open.keys().copied().collect();
        let ends = client::ends(
            &self.address,
            &self.settings,
            &partitions,
            Duration::from_secs(10),
        )
        .map_err(|e| self.failed(e.to_string()))?;
        for partition in partitions {
            let high = ends.get(&partition).map_or(0, |(_, end)| *end);
            let position = self.position_of(partition);
            if position.is_some_and(|at| at >= high) || high == 0 {
                self.open.remove(&partition);
            } else {
                self.open.insert(partition, high);
            }
        }
        Ok(())
    }

    fn position_of(&self, partition: i32) -> Option<i64> {
        let positions = self.consumer.position().ok()?;
        let element = positions.find_partition(&self.address.topic, partition)?;
        match element.offset() {
            Offset::Offset(at) => Some(at),
            _ => None,
        }
    }

    fn failed(&self, detail: String) -> StoreError {
        StoreError::failed(self.address.to_string(), detail)
    }
}

/// The exchange a message of `address` holds, or why it holds none (a
/// damage report naming its partition and offset).
pub(crate) fn decode_message(
    address: &KafkaAddress,
    message: &BorrowedMessage<'_>,
) -> Result<Exchange, StoreError> {
    let damaged = |why: String| StoreError::Damaged {
        store: address.to_string(),
        detail: format!(
            "partition {} offset {}: not a reprise record, skipped: {why}",
            message.partition(),
            message.offset()
        ),
    };
    let revision = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == SCHEMA_HEADER)
            .and_then(|h| h.value)
    });
    let Some(revision) = revision else {
        return Err(damaged(format!("no {SCHEMA_HEADER} header")));
    };
    let known = std::str::from_utf8(revision)
        .ok()
        .and_then(|r| r.parse::<u16>().ok())
        .ok_or_else(|| damaged(format!("{SCHEMA_HEADER} is not a number")))?;
    let payload = bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default());
    let decoded = if known <= reprise_model::SCHEMA_REVISION {
        reprise_model::codec::decode_known(payload)
    } else {
        reprise_model::codec::decode_bytes(payload)
    };
    decoded.map_err(|e| damaged(e.to_string()))
}

impl Iterator for KafkaSource {
    type Item = Result<Exchange, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            if self.follow.is_some()
                && !self.following()
                && let Err(error) = self.stop_following()
            {
                self.finished = true;
                return Some(Err(error));
            }
            if self.follow.is_none() && self.open.is_empty() {
                self.finished = true;
                return None;
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {
                    if !self.following() && self.heard.elapsed() > self.lost_after {
                        self.finished = true;
                        let why = self.consumer.context().last_error.get();
                        return Some(Err(self.failed(format!(
                            "nothing from the brokers for {}s{}",
                            self.lost_after.as_secs(),
                            why.map(|w| format!(" ({w})")).unwrap_or_default()
                        ))));
                    }
                }
                Some(Err(RdError::PartitionEOF(partition))) => {
                    // It may have been queued before messages that came
                    // later (while following): the position decides.
                    self.heard = Instant::now();
                    let end = self.open.get(&partition).copied().unwrap_or(0);
                    let at = self.position_of(partition).unwrap_or(end);
                    self.reached(partition, at);
                }
                Some(Err(error)) => {
                    // Transport failures are retried by the client; what
                    // lasts is caught by `lost_after`.
                    self.consumer.context().last_error.set(error.to_string());
                }
                Some(Ok(message)) => {
                    self.heard = Instant::now();
                    let (partition, offset) = (message.partition(), message.offset());
                    let end = self.open.get(&partition).copied();
                    if !self.following() && end.is_none_or(|end| offset >= end) {
                        // Past where this reader stops.
                        self.open.remove(&partition);
                        continue;
                    }
                    let early = self.since_ns > 0
                        && message
                            .payload()
                            .and_then(reprise_model::peek_head)
                            .is_some_and(|head| head.recorded_at_ns < self.since_ns);
                    let record = (!early).then(|| decode_message(&self.address, &message));
                    drop(message);
                    self.reached(partition, offset + 1);
                    if let Some(record) = record {
                        return Some(record);
                    }
                }
            }
        }
    }
}
