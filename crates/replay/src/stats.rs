//! Latency and outcome accounting. Workers count into a few [`Shard`]s
//! (about two per core, each behind a lock the progress display takes
//! once a second), so that neither the locks nor the histograms grow with
//! the concurrency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reprise_model::ErrorKind;
use reprise_model::latency::LatencyHistogram;

/// Latencies are counted in microseconds, up to an hour.
const HIGHEST_US: u64 = 3_600_000_000;

/// A latency histogram (µs) that starts small and grows to the largest
/// latency recorded (at most an hour: see [`micros`]).
pub fn histogram(significant: u8) -> LatencyHistogram {
    LatencyHistogram::new(2, significant)
}

/// Records a latency, growing the histogram as needed.
pub fn record(h: &mut LatencyHistogram, latency: Duration) {
    h.record(micros(latency));
}

/// Microseconds of a duration, at least 1, at most an hour.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, HIGHEST_US)
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered with the recorded status and gRPC status (where the
    /// recording holds none: a status below 400 and gRPC OK). A 404 the
    /// recording also had is a faithful replay, not a failure.
    Ok,
    /// Answered with another status than the recorded one.
    Status {
        /// The status that came back.
        got: u16,
        /// The recorded one, if the recording holds one.
        recorded: Option<u16>,
    },
    /// Answered with another gRPC status than the recorded one.
    Grpc {
        /// The gRPC status that came back.
        got: i32,
        /// The recorded one, if the recording holds one.
        recorded: Option<i32>,
    },
    /// No response: a transport failure.
    Failed(ErrorKind),
}

impl Outcome {
    /// How an answer with `status` (and gRPC status `grpc`; none counts
    /// as OK) compares with what the recording of `call` was answered.
    pub fn of_answer(call: &crate::Call, status: u16, grpc: Option<i32>) -> Outcome {
        let got = grpc.unwrap_or(0);
        if got != call.recorded_grpc.unwrap_or(0) {
            return Outcome::Grpc {
                got,
                recorded: call.recorded_grpc,
            };
        }
        let expected = match call.recorded_status {
            Some(recorded) => status == recorded,
            None => status < 400,
        };
        if expected {
            Outcome::Ok
        } else {
            Outcome::Status {
                got: status,
                recorded: call.recorded_status,
            }
        }
    }

    /// An answer with another status than the recorded one.
    pub fn differs(&self) -> bool {
        matches!(self, Outcome::Status { .. } | Outcome::Grpc { .. })
    }

    /// The label the report counts it under.
    pub fn label(&self) -> String {
        let recorded = |what: Option<String>| match what {
            Some(what) => format!("where {what} was recorded"),
            None => "where none was recorded".to_string(),
        };
        match self {
            Outcome::Ok => "ok".to_string(),
            Outcome::Status { got, recorded: r } => {
                format!("{got} {}", recorded(r.map(|r| r.to_string())))
            }
            Outcome::Grpc { got, recorded: r } => format!(
                "grpc {} {}",
                grpc_code_name(*got),
                recorded(r.map(grpc_code_name))
            ),
            Outcome::Failed(kind) => reprise_model::error_kind_label(*kind).to_string(),
        }
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
    pub scheduled: LatencyHistogram,
    /// From the send to the end of the response.
    pub sent: LatencyHistogram,
    /// From the due time to the send, for calls that had one.
    pub lag: LatencyHistogram,
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
            lag: histogram(2),
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
        record(&mut self.scheduled, scheduled);
        record(&mut self.sent, sent);
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
        self.scheduled.add(&other.scheduled);
        self.sent.add(&other.sent);
        self.lag.add(&other.lag);
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

/// One endpoint's counts.
#[derive(Debug)]
pub struct EndpointRow {
    /// Calls.
    pub calls: u64,
    /// Calls answered as recorded.
    pub ok: u64,
    /// Calls answered with another status than recorded.
    pub status_differs: u64,
    /// Latency from the due time (µs).
    pub latency: LatencyHistogram,
}

impl EndpointRow {
    fn new() -> Self {
        EndpointRow {
            calls: 0,
            ok: 0,
            status_differs: 0,
            latency: histogram(2),
        }
    }

    fn merge(&mut self, other: &EndpointRow) {
        self.calls += other.calls;
        self.ok += other.ok;
        self.status_differs += other.status_differs;
        self.latency.add(&other.latency);
    }
}

/// The counts of a group of workers, behind one lock: a worker takes it
/// once per call; the progress display once a second.
#[derive(Debug, Default)]
pub struct Shard {
    /// Latency and outcomes.
    pub stats: WorkerStats,
    /// Per endpoint, by endpoint index.
    pub endpoints: Vec<EndpointRow>,
}

impl Shard {
    /// Counts a call to endpoint `index`.
    pub fn count_endpoint(&mut self, index: usize, outcome: &Outcome, scheduled: Duration) {
        while self.endpoints.len() <= index {
            self.endpoints.push(EndpointRow::new());
        }
        let row = &mut self.endpoints[index];
        row.calls += 1;
        row.ok += u64::from(*outcome == Outcome::Ok);
        row.status_differs += u64::from(outcome.differs());
        record(&mut row.latency, scheduled);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Shard) {
        self.stats.merge(&other.stats);
        while self.endpoints.len() < other.endpoints.len() {
            self.endpoints.push(EndpointRow::new());
        }
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.merge(theirs);
        }
    }
}

/// A shard's lock and sent counter on cache lines of their own: threads
/// taking their own shards never contend for one line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>, AtomicU64);

/// The shards of a replay.
#[derive(Debug)]
pub struct Shards(Vec<Padded>);

impl Shards {
    /// `n` shards (at least one).
    pub fn new(n: usize) -> Self {
        Shards((0..n.max(1)).map(|_| Padded::default()).collect())
    }

    /// The shard worker `worker` counts into.
    pub fn of(&self, worker: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.0[worker % self.0.len()]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a call leaving, for worker `worker`: read without a lock.
    pub fn sent(&self, worker: usize) {
        self.0[worker % self.0.len()]
            .1
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Calls sent so far.
    pub fn sent_total(&self) -> u64 {
        self.0.iter().map(|p| p.1.load(Ordering::Relaxed)).sum()
    }

    /// All counts so far, merged.
    pub fn merged(&self) -> Shard {
        let mut all = Shard::default();
        for shard in &self.0 {
            all.merge(&shard.0.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_grow_to_the_latencies_recorded() {
        let mut shard = Shard::default();
        for ms in [1, 10, 100, 2_000] {
            let d = Duration::from_millis(ms);
            shard.stats.count(Outcome::Ok, Some(200), d, d, None);
            shard.count_endpoint(3, &Outcome::Ok, d);
        }
        let h = &shard.stats.scheduled;
        assert_eq!(h.len(), 4);
        assert!((1_990_000..=2_010_000).contains(&h.max()), "{}", h.max());
        assert!((9_900..=10_100).contains(&h.quantile(0.5)));
        assert_eq!(shard.endpoints.len(), 4);
        assert!(shard.endpoints[3].latency.max() >= 1_980_000);
        let mut all = Shard::default();
        all.merge(&shard);
        all.merge(&shard);
        assert_eq!(all.stats.outcomes[&Outcome::Ok], 8);
        assert_eq!(all.endpoints[3].calls, 8);
    }

    #[test]
    fn outcome_labels() {
        let grpc = |got, recorded| Outcome::Grpc { got, recorded }.label();
        assert_eq!(grpc(14, Some(0)), "grpc UNAVAILABLE where OK was recorded");
        assert_eq!(grpc(99, None), "grpc 99 where none was recorded");
        let status = |got, recorded| Outcome::Status { got, recorded }.label();
        assert_eq!(status(503, Some(200)), "503 where 200 was recorded");
        assert_eq!(status(404, None), "404 where none was recorded");
        assert_eq!(Outcome::Failed(ErrorKind::Connect).label(), "connect");
    }
}
