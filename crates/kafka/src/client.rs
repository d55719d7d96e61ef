//! What producers and consumers share: their settings, the last error a
//! client reported, and the check that the topic is there.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::client::Client;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;

use crate::address::KafkaAddress;
use crate::error::KafkaError;

/// The header each message carries: the schema revision of its record,
/// in decimal.
pub const SCHEMA_HEADER: &str = "reprise-schema";

/// How long opening a topic waits for a broker to answer, unless the
/// caller says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings reprise starts every client with; the caller adds its
/// own, then the user's (`KafkaOptions::apply`), which win.
pub(crate) fn config(address: &KafkaAddress) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &address.brokers)
        .set("client.id", "reprise")
        // Warnings and errors reach the context's `log`, which keeps the
        // last one (`LastError`) to say why a broker did not answer;
        // nothing is printed.
        .set("log_level", "4");
    config
}

/// Keeps the last error a client reported (a refused connection, a TLS
/// or SASL failure), to say why a broker did not answer.
#[derive(Default)]
pub(crate) struct LastError(Mutex<Option<String>>);

impl LastError {
    pub(crate) fn set(&self, error: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Keeps `error` unless a more telling one is held: librdkafka's
    /// "all brokers are down" follows the failure that brought them down.
    pub(crate) fn client_error(&self, error: &RdError, reason: &str) {
        let generic = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !(generic && held.is_some()) {
            *held = Some(self::reason(error, reason));
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a context does with librdkafka's log lines: keeps the last
/// warning or error, prints nothing.
pub(crate) fn log(last: &LastError, level: RDKafkaLogLevel, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        last.set(reprise_model::terminal::escape(message).into_owned());
    }
}

/// A client context that remembers the last error.
pub(crate) trait Remembers: ClientContext {
    fn last_error(&self) -> &LastError;
}

/// Makes `$context` (a struct with a `last_error: LastError` field) a
/// client context that keeps librdkafka's last warning or error and
/// prints nothing: [`ClientContext`] and [`Remembers`].
macro_rules! remembering_context {
    ($context:ty) => {
        impl rdkafka::ClientContext for $context {
            fn log(&self, level: rdkafka::config::RDKafkaLogLevel, _: &str, message: &str) {
                $crate::client::log(&self.last_error, level, message);
            }

            fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
                self.last_error.client_error(&error, reason);
            }
        }

        impl $crate::client::Remembers for $context {
            fn last_error(&self) -> &$crate::client::LastError {
                &self.last_error
            }
        }
    };
}
pub(crate) use remembering_context;

/// Why a client error happened, in one line: librdkafka's own reason
/// when it gave one.
pub(crate) fn reason(error: &RdError, reason: &str) -> String {
    if reason.is_empty() {
        error.to_string()
    } else {
        reprise_model::terminal::escape(reason).into_owned()
    }
}

/// The topic's partitions, once a broker has answered; a clear error when
/// none does within `timeout` or the topic is not there.
pub(crate) fn partitions<C: Remembers>(
    client: &Client<C>,
    address: &KafkaAddress,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = client
        .fetch_metadata(Some(&address.topic), timeout)
        .map_err(|error| match error {
            RdError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)
            | RdError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown)
            | RdError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure) => {
                KafkaError::Unreachable {
                    address: address.to_string(),
                    timeout,
                    why: client.context().last_error().get(),
                }
            }
            other => KafkaError::Client {
                address: address.to_string(),
                detail: client
                    .context()
                    .last_error()
                    .get()
                    .unwrap_or_else(|| other.to_string()),
            },
        })?;
    let topic = metadata.topics().iter().find(|t| t.name() == address.topic);
    let no_topic = || KafkaError::NoTopic {
        address: address.to_string(),
        topic: address.topic.clone(),
    };
    let Some(topic) = topic else {
        return Err(no_topic());
    };
    match topic.error() {
        None => {}
        Some(code) if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Err(no_topic());
        }
        Some(code) => {
            return Err(KafkaError::Client {
                address: address.to_string(),
                detail: format!(
                    "the brokers answered for the topic with {}",
                    RDKafkaErrorCode::from(code)
                ),
            });
        }
    }
    let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(no_topic());
    }
    partitions.sort_unstable();
    Ok(partitions)
}

/// Each partition's first offset and the offset after its last message,
/// as a fetch finds them: the broker's watermarks (ListOffsets), then
/// each partition's last message read, and on to the end of its batch. A
/// broker whose ListOffsets answer falls short of its last message
/// (tansu 0.6 answers the last batch's first offset + 1) is read past.
pub(crate) fn ends(
    address: &KafkaAddress,
    settings: &crate::address::KafkaOptions,
    partitions: &[i32],
    timeout: Duration,
) -> Result<std::collections::HashMap<i32, (i64, i64)>, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = config(address);
    config
        .set(
            "group.id",
            format!(
                "reprise-ends-{}",
                reprise_model::display_id(&reprise_model::id::new_id())
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    settings.apply(&mut config);
    let consumer: BaseConsumer = config.create().map_err(|e| refused(address, &e))?;
    let failed = |error: RdError| KafkaError::Client {
        address: address.to_string(),
        detail: error.to_string(),
    };
    let mut ends = std::collections::HashMap::new();
    let mut last = rdkafka::TopicPartitionList::new();
    for &partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&address.topic, partition, timeout)
            .map_err(failed)?;
        ends.insert(partition, (low, high));
        if high > low {
            last.add_partition_offset(&address.topic, partition, rdkafka::Offset::Offset(high - 1))
                .map_err(failed)?;
        }
    }
    if last.count() == 0 {
        return Ok(ends);
    }
    consumer.assign(&last).map_err(failed)?;
    let mut waiting: std::collections::HashSet<i32> =
        last.elements().iter().map(|e| e.partition()).collect();
    let deadline = std::time::Instant::now() + timeout;
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                use rdkafka::message::Message;
                if let Some((_, end)) = ends.get_mut(&message.partition()) {
                    *end = (*end).max(message.offset() + 1);
                }
            }
            Some(Err(RdError::PartitionEOF(partition))) => {
                waiting.remove(&partition);
            }
            _ => {}
        }
    }
    Ok(ends)
}

/// librdkafka refused a setting.
pub(crate) fn refused(address: &KafkaAddress, error: &RdError) -> KafkaError {
    KafkaError::Settings {
        address: address.to_string(),
        detail: reprise_model::error::one_line(error),
    }
}
