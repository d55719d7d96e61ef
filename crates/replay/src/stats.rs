//! Latency and outcome accounting. Each worker counts into its own
//! [`WorkerStats`] (a lock nobody else takes, but the progress display
//! once a tick); endpoints are counted in one shared table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use reprise_model::ErrorKind;

/// Latencies are counted in microseconds, up to an hour.
const HIGHEST_US: u64 = 3_600_000_000;

/// A latency histogram (µs).
pub fn histogram(significant: u8) -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HIGHEST_US, significant).unwrap_or_else(|_| {
        Histogram::new(significant.min(5)).unwrap_or_else(|_| unreachable_histogram())
    })
}

#[allow(clippy::expect_used)]
fn unreachable_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid histogram")
}

/// Microseconds of a duration, at least 1.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A response with status below 400 (and gRPC status OK).
    Ok,
    /// A 4xx or 5xx response; the class (4 or 5).
    Status(u16),
    /// A gRPC status other than OK.
    Grpc(i32),
    /// No response: a transport failure.
    Failed(ErrorKind),
}

impl Outcome {
    /// The label the report counts it under.
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".to_string(),
            Outcome::Status(class) => format!("{class}xx"),
            Outcome::Grpc(code) => format!("grpc {}", grpc_code_name(*code)),
            Outcome::Failed(kind) => failure_label(*kind).to_string(),
        }
    }
}

/// The report's word for a transport failure.
pub fn failure_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Reset => "reset",
        ErrorKind::Tls => "tls",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Other | ErrorKind::Unspecified => "other",
    }
}

/// gRPC's name for a status code.
pub fn grpc_code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| code.to_string(), |name| (*name).to_string())
}

/// One worker's counts.
#[derive(Debug)]
pub struct WorkerStats {
    /// From the due time to the end of the response.
    pub scheduled: Histogram<u64>,
    /// From the send to the end of the response.
    pub sent: Histogram<u64>,
    /// Calls by outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Responses by status class (1..=5; 0 for anything else).
    pub classes: [u64; 6],
    /// An example message per failure kind.
    pub examples: BTreeMap<Outcome, String>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            scheduled: histogram(3),
            sent: histogram(3),
            outcomes: BTreeMap::new(),
            classes: [0; 6],
            examples: BTreeMap::new(),
        }
    }
}

impl WorkerStats {
    /// Counts one call.
    pub fn count(
        &mut self,
        outcome: Outcome,
        status: Option<u16>,
        scheduled: Duration,
        sent: Duration,
        example: Option<&str>,
    ) {
        self.scheduled.saturating_record(micros(scheduled));
        self.sent.saturating_record(micros(sent));
        if let Some(status) = status {
            let class = usize::from(status / 100);
            self.classes[if (1..=5).contains(&class) { class } else { 0 }] += 1;
        }
        if let Some(example) = example
            && !self.examples.contains_key(&outcome)
        {
            self.examples.insert(outcome.clone(), example.to_string());
        }
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &WorkerStats) {
        let _ = self.scheduled.add(&other.scheduled);
        let _ = self.sent.add(&other.sent);
        for (outcome, n) in &other.outcomes {
            *self.outcomes.entry(outcome.clone()).or_default() += n;
        }
        for (mine, theirs) in self.classes.iter_mut().zip(other.classes) {
            *mine += theirs;
        }
        for (outcome, example) in &other.examples {
            self.examples
                .entry(outcome.clone())
                .or_insert_with(|| example.clone());
        }
    }
}

/// Per-endpoint counts, shared by the workers.
#[derive(Debug, Default)]
pub struct EndpointTable {
    rows: Mutex<Vec<EndpointRow>>,
}

/// One endpoint's counts.
#[derive(Debug)]
pub struct EndpointRow {
    /// Calls.
    pub calls: u64,
    /// Calls that ended ok.
    pub ok: u64,
    /// Latency from the due time (µs).
    pub latency: Histogram<u64>,
}

impl EndpointTable {
    /// Counts a call to endpoint `index`.
    pub fn count(&self, index: usize, ok: bool, scheduled: Duration) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        while rows.len() <= index {
            rows.push(EndpointRow {
                calls: 0,
                ok: 0,
                latency: histogram(2),
            });
        }
        let row = &mut rows[index];
        row.calls += 1;
        row.ok += u64::from(ok);
        row.latency.saturating_record(micros(scheduled));
    }

    /// Takes the rows out.
    pub fn take(&self) -> Vec<EndpointRow> {
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Counters the progress display reads without locks.
#[derive(Debug, Default)]
pub struct Live {
    /// Calls sent so far.
    pub sent: AtomicU64,
    /// Calls finished ok.
    pub ok: AtomicU64,
    /// Calls finished otherwise.
    pub failed: AtomicU64,
}

impl Live {
    /// Counts a finished call.
    pub fn finished(&self, ok: bool) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
