//! `kafka://BROKER[,BROKER...]/TOPIC[?from=...&group=...]`, and the
//! librdkafka settings a user passes through (`--kafka-option`, a
//! properties file).

use std::fmt;

use rdkafka::ClientConfig;

use crate::error::KafkaError;

/// The scheme that names a topic wherever a tape path is accepted.
pub const SCHEME: &str = "kafka://";

/// Whether `text` names a Kafka topic rather than a file.
pub fn is_kafka(text: &str) -> bool {
    text.len() >= SCHEME.len() && text[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
}

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest message the broker keeps (readers' default).
    Beginning,
    /// After the last message: only what is written from now on.
    End,
    /// The first message recorded at or after this time (ns since the
    /// Unix epoch): each message's Kafka timestamp is its exchange's
    /// `recorded_at`.
    Time(u64),
}

/// A topic named as `kafka://BROKER[,BROKER...]/TOPIC[?QUERY]`.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaAddress {
    /// The bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// `from=beginning|end|RFC3339` (readers only).
    pub from: Option<Start>,
    /// `group=NAME`: a consumer group sharing the topic's partitions
    /// (readers only).
    pub group: Option<String>,
    /// The address as given, for messages.
    text: String,
}

impl fmt::Debug for KafkaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for KafkaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The query keys an address may carry.
const KEYS: [&str; 2] = ["from", "group"];

impl KafkaAddress {
    /// Parses `text`; every mistake is named.
    pub fn parse(text: &str) -> Result<KafkaAddress, KafkaError> {
        let bad = |why: String| KafkaError::Address {
            address: text.to_string(),
            why,
        };
        if !is_kafka(text) {
            return Err(bad(format!("does not start with {SCHEME}")));
        }
        let rest = &text[SCHEME.len()..];
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        let Some((brokers, topic)) = location.split_once('/') else {
            return Err(bad(
                "no topic: expected kafka://BROKER[,BROKER...]/TOPIC".into()
            ));
        };
        if brokers.is_empty() {
            return Err(bad(
                "no broker: expected kafka://BROKER[,BROKER...]/TOPIC".into()
            ));
        }
        for broker in brokers.split(',') {
            let port = broker.rsplit_once(':').map(|(_, port)| port);
            if broker.is_empty() || port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(bad(format!(
                    "broker {broker:?}: expected HOST:PORT (Kafka has no default port here)"
                )));
            }
        }
        check_topic(topic).map_err(bad)?;
        let mut address = KafkaAddress {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            from: None,
            group: None,
            text: text.to_string(),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "from" => {
                    address.from = Some(match value {
                        "beginning" => Start::Beginning,
                        "end" => Start::End,
                        time => {
                            Start::Time(reprise_model::time::parse_time(time).map_err(|_| {
                                bad(format!(
                                    "from={time:?}: expected beginning, end or an RFC 3339 time"
                                ))
                            })?)
                        }
                    })
                }
                "group" if value.is_empty() => {
                    return Err(bad("group= needs a name".into()));
                }
                "group" => address.group = Some(value.to_string()),
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?}: the options are {}",
                        KEYS.join(", ")
                    )));
                }
            }
        }
        Ok(address)
    }

    /// Refuses the options only readers take, for an address written to.
    pub fn for_writing(&self) -> Result<(), KafkaError> {
        if self.from.is_some() || self.group.is_some() {
            return Err(KafkaError::Address {
                address: self.text.clone(),
                why: "from= and group= are for reading a topic, not writing one".into(),
            });
        }
        Ok(())
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[A-Za-z0-9._-]`, not `.`
/// or `..`.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("no topic: expected kafka://BROKER[,BROKER...]/TOPIC".into());
    }
    if topic.len() > 249 || topic == "." || topic == ".." {
        return Err(format!("topic {topic:?}: not a valid Kafka topic name"));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic {topic:?}: {c:?} is not allowed in a Kafka topic name (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// librdkafka settings passed through to every client reprise makes
/// (`security.protocol`, `sasl.*`, `ssl.ca.location`...), applied after
/// reprise's own so that they win. Their values never appear in
/// messages or `Debug` output (they hold passwords).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions {
    settings: Vec<(String, String)>,
}

impl fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.settings.iter().map(|(key, _)| key))
            .finish()
    }
}

impl KafkaOptions {
    /// No settings.
    pub fn new() -> KafkaOptions {
        KafkaOptions::default()
    }

    /// Adds `KEY=VALUE` (as `--kafka-option` gives it); a later setting
    /// of the same key wins.
    pub fn add(&mut self, setting: &str) -> Result<(), KafkaError> {
        match setting.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                self.set(key.trim(), value.trim());
                Ok(())
            }
            _ => Err(KafkaError::Setting(setting.to_string())),
        }
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), value.to_string()));
    }

    /// Adds the settings of a Java properties file's text (`key=value`
    /// or `key: value` lines, `#` and `!` comments), as Kafka's own tools
    /// read `client.properties`; `name` names it in errors.
    pub fn add_properties(&mut self, text: &str, name: &str) -> Result<(), KafkaError> {
        for (number, line) in (1..).zip(text.lines()) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let split = line
                .find(['=', ':'])
                .map(|at| (line[..at].trim(), line[at + 1..].trim()));
            match split {
                Some((key, value)) if !key.is_empty() => self.set(key, value),
                _ => {
                    return Err(KafkaError::Properties {
                        file: name.to_string(),
                        line: number,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether `key` was set.
    pub fn has(&self, key: &str) -> bool {
        self.settings.iter().any(|(k, _)| k == key)
    }

    pub(crate) fn apply(&self, config: &mut ClientConfig) {
        for (key, value) in &self.settings {
            config.set(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_their_options() {
        let a = KafkaAddress::parse("kafka://127.0.0.1:9092,b:9093/exchanges").unwrap();
        assert_eq!(a.brokers, "127.0.0.1:9092,b:9093");
        assert_eq!(a.topic, "exchanges");
        assert_eq!((a.from, a.group.as_deref()), (None, None));
        assert!(a.for_writing().is_ok());
        let a = KafkaAddress::parse("KAFKA://h:1/t.x-1?from=end&group=replayers").unwrap();
        assert_eq!(
            (a.from, a.group.as_deref()),
            (Some(Start::End), Some("replayers"))
        );
        assert!(a.for_writing().is_err());
        let a = KafkaAddress::parse("kafka://h:1/t?from=2026-12-07T10:00:00Z").unwrap();
        assert_eq!(a.from, Some(Start::Time(1_796_637_600_000_000_000)));
        assert!(is_kafka("kafka://x") && !is_kafka("tape.tape") && !is_kafka("kafka:/"));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (text, says) in [
            ("kafka://h:1", "no topic"),
            ("kafka:///t", "no broker"),
            ("kafka://h/t", "HOST:PORT"),
            ("kafka://h:x/t", "HOST:PORT"),
            ("kafka://h:1,/t", "HOST:PORT"),
            ("kafka://h:1/", "no topic"),
            ("kafka://h:1/a b", "not allowed"),
            ("kafka://h:1/..", "not a valid"),
            ("kafka://h:1/t?from=yesterday", "from=\"yesterday\""),
            ("kafka://h:1/t?group=", "group= needs a name"),
            ("kafka://h:1/t?partition=3", "unknown option \"partition\""),
            ("tape.tape", "does not start with kafka://"),
        ] {
            let error = KafkaAddress::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
            assert!(error.starts_with(text), "{text}: {error}");
        }
    }

    #[test]
    fn options_from_flags_and_properties_files_hide_their_values() {
        let mut options = KafkaOptions::new();
        options.add("security.protocol=SASL_SSL").unwrap();
        options
            .add_properties(
                "# client.properties\nsasl.mechanism: PLAIN\n\nsasl.password = s3cret\n! old\nsecurity.protocol=SSL\n",
                "client.properties",
            )
            .unwrap();
        assert!(options.has("sasl.password"));
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let mut config = ClientConfig::new();
        options.apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert!(options.add("novalue").is_err());
        assert!(options.add("=x").is_err());
        let error = options
            .add_properties("ok=1\njust a line\n", "p.properties")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "p.properties: line 2: expected KEY=VALUE (or KEY: VALUE)"
        );
    }
}
