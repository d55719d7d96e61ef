//! Wall-clock times as the record model holds them: ns since the Unix epoch.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    let now = Utc::now();
    u64::try_from(now.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0)
}

/// `850µs`, `12.3ms`, `1.24s`, `2m05s`; `-` for an unknown (zero) duration.
pub fn human_duration(ns: u64) -> String {
    let us = ns as f64 / 1_000.0;
    match ns {
        0 => "-".to_string(),
        n if n < 1_000_000 => format!("{us:.0}µs"),
        n if n < 100_000_000 => format!("{:.1}ms", us / 1_000.0),
        n if n < 1_000_000_000 => format!("{:.0}ms", us / 1_000.0),
        n if n < 60_000_000_000 => format!("{:.2}s", us / 1_000_000.0),
        n => format!("{}m{:02}s", n / 60_000_000_000, (n / 1_000_000_000) % 60),
    }
}

/// RFC 3339 with milliseconds, UTC: `2026-11-24T23:33:24.123Z`.
pub fn format_ns(ns: u64) -> String {
    to_datetime(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 with microseconds, UTC.
pub fn format_ns_micros(ns: u64) -> String {
    to_datetime(ns).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn to_datetime(ns: u64) -> DateTime<Utc> {
    let ns = i64::try_from(ns).unwrap_or(i64::MAX);
    DateTime::from_timestamp_nanos(ns)
}

/// A time given by a user or a file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time {text:?}: expected RFC 3339 (2026-11-24T10:00:00Z) or ns since the epoch")]
pub struct TimeParseError {
    text: String,
}

/// Parses RFC 3339 (with any offset) or a plain integer of ns since the epoch.
pub fn parse_time(text: &str) -> Result<u64, TimeParseError> {
    let trimmed = text.trim();
    if let Ok(ns) = trimmed.parse::<u64>() {
        return Ok(ns);
    }
    DateTime::parse_from_rfc3339(trimmed)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .and_then(|ns| u64::try_from(ns).ok())
        .ok_or_else(|| TimeParseError {
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let ns = 1_700_000_000_123_000_000;
        let text = format_ns(ns);
        assert_eq!(text, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_time(&text).ok(), Some(ns));
        assert_eq!(parse_time("42").ok(), Some(42));
        assert!(parse_time("yesterday").is_err());
    }
}
