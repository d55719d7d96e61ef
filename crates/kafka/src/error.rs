//! What can go wrong reaching a topic.

use std::time::Duration;

/// A Kafka address, setting or client that cannot be used. Each message
/// names the address (never a setting's value: they hold passwords).
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The address is not `kafka://BROKER[,BROKER...]/TOPIC[?QUERY]`.
    #[error("{address}: {why}")]
    Address {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        why: String,
    },
    /// A `--kafka-option` that is not `KEY=VALUE`.
    #[error("--kafka-option {0:?}: expected KEY=VALUE (a librdkafka setting)")]
    Setting(String),
    /// A properties file line that is not a setting.
    #[error("{file}: line {line}: expected KEY=VALUE (or KEY: VALUE)")]
    Properties {
        /// The file.
        file: String,
        /// Its line, from 1.
        line: usize,
    },
    /// librdkafka refused the settings (an unknown key, a bad value).
    #[error("{address}: the Kafka client refused its settings: {detail}")]
    Settings {
        /// The address.
        address: String,
        /// librdkafka's words.
        detail: String,
    },
    /// No broker answered in time.
    #[error("{address}: no broker answered within {}s{}", timeout.as_secs_f64(), why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default())]
    Unreachable {
        /// The address.
        address: String,
        /// How long reprise waited.
        timeout: Duration,
        /// The last error the client reported (a refused connection, a
        /// failed TLS handshake, a SASL failure), when there was one.
        why: Option<String>,
    },
    /// The brokers answered, without the topic.
    #[error(
        "{address}: topic {topic:?} does not exist on the cluster (create it first, e.g. `kafka-topics.sh --create --topic {topic} --partitions N`)"
    )]
    NoTopic {
        /// The address.
        address: String,
        /// The topic.
        topic: String,
    },
    /// The client failed otherwise.
    #[error("{address}: {detail}")]
    Client {
        /// The address.
        address: String,
        /// What failed.
        detail: String,
    },
}
