//! What a replay reports: the [`Report`] (also written as JSON) and its
//! terminal rendering, and the live [`Progress`] counters.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use reprise_model::latency::LatencyHistogram;
use reprise_model::table::{Column, Table};
use reprise_model::terminal::escape;
use serde::Serialize;

use crate::feed::ReadReport;
use crate::stats::{EndpointRow, Outcome, WorkerStats};

/// Counters so far, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Since the replay started.
    pub elapsed: Duration,
    /// Calls sent.
    pub sent: u64,
    /// Calls answered as recorded.
    pub ok: u64,
    /// Calls answered with another status than recorded.
    pub status_differs: u64,
    /// Calls that got no answer (transport failures).
    pub failed: u64,
    /// p99 latency from the due time so far (µs).
    pub p99_us: u64,
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Percentiles {
    fn of(h: &LatencyHistogram) -> Self {
        Percentiles {
            p50_us: h.quantile(0.5),
            p90_us: h.quantile(0.9),
            p99_us: h.quantile(0.99),
            p999_us: h.quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// Latency measured two ways.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// From the time the schedule said the call was due: corrected for
    /// coordinated omission (a call that waited for a free connection
    /// counts its wait).
    pub from_due: Percentiles,
    /// From the time the call actually left.
    pub from_send: Percentiles,
    /// How long after its due time each call left (the replayer's timer
    /// and any wait for a free worker); absent with `--max`.
    pub send_lag: Option<Percentiles>,
}

/// One endpoint's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointReport {
    /// `METHOD /path/{id}`.
    pub endpoint: String,
    /// Calls.
    pub calls: u64,
    /// Calls answered as recorded.
    pub ok: u64,
    /// Calls answered with another status than recorded.
    pub status_differs: u64,
    /// Calls that got no answer.
    pub failed: u64,
    /// Median latency from the due time, µs.
    pub p50_us: u64,
    /// 99th percentile from the due time, µs.
    pub p99_us: u64,
}

/// What was read from the recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingReport {
    /// Exchanges turned into calls (once per pass read from the file).
    pub replayable: u64,
    /// Exchanges the filters left out.
    pub filtered: u64,
    /// Exchanges that cannot be replayed, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Damaged parts of the recording that were skipped.
    pub damage: Vec<String>,
}

impl RecordingReport {
    pub(crate) fn of(read: ReadReport) -> Self {
        RecordingReport {
            replayable: read.calls,
            filtered: read.filtered,
            skipped: read
                .skipped
                .iter()
                .map(|(skip, n)| (skip.label().to_string(), *n))
                .collect(),
            damage: read.damage,
        }
    }
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Where the calls went.
    pub target: String,
    /// From the start to the last answer, seconds.
    pub elapsed_s: f64,
    /// Calls sent (and finished, one way or another).
    pub calls: u64,
    /// Calls answered with the recorded status and gRPC status (where
    /// the recording holds none: below 400, gRPC OK).
    pub ok: u64,
    /// Calls answered with another status than recorded: a 404 the
    /// recording also had is ok, not this.
    pub status_differs: u64,
    /// Calls that got no answer: transport failures.
    pub failed: u64,
    /// Calls per second over the replay.
    pub throughput: f64,
    /// Failed calls by kind: `connect`, `timeout`, `reset`, `tls`,
    /// `protocol`, `other`.
    pub failures: BTreeMap<String, u64>,
    /// Calls answered with another status, by what came back and what
    /// was recorded: `503 where 200 was recorded`, `grpc UNAVAILABLE
    /// where OK was recorded`.
    pub status_differences: BTreeMap<String, u64>,
    /// One message per failure kind and per status difference.
    pub failure_examples: BTreeMap<String, String>,
    /// Responses by status class (`2xx`...).
    pub statuses: BTreeMap<String, u64>,
    /// Latency percentiles.
    pub latency: Latency,
    /// Per endpoint, busiest first.
    pub endpoints: Vec<EndpointReport>,
    /// What the recording held.
    pub recording: RecordingReport,
    /// Exchanges written to the results tape, when one was asked for.
    pub results_written: Option<u64>,
}

impl Report {
    pub(crate) fn new(
        target: String,
        elapsed: Duration,
        stats: WorkerStats,
        endpoints: Vec<EndpointRow>,
        read: ReadReport,
        results_written: Option<u64>,
    ) -> Report {
        let calls: u64 = stats.outcomes.values().sum();
        let ok = stats.outcomes.get(&Outcome::Ok).copied().unwrap_or(0);
        let mut failures = BTreeMap::new();
        let mut status_differences = BTreeMap::new();
        let mut failure_examples = BTreeMap::new();
        for (outcome, n) in &stats.outcomes {
            if *outcome != Outcome::Ok {
                let counts = if outcome.differs() {
                    &mut status_differences
                } else {
                    &mut failures
                };
                *counts.entry(outcome.label()).or_default() += n;
                if let Some(example) = stats.examples.get(outcome) {
                    failure_examples
                        .entry(outcome.label())
                        .or_insert_with(|| example.clone());
                }
            }
        }
        let statuses = stats
            .classes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(class, n)| {
                let label = if class == 0 {
                    "other".to_string()
                } else {
                    format!("{class}xx")
                };
                (label, *n)
            })
            .collect();
        let mut endpoint_reports: Vec<EndpointReport> = endpoints
            .iter()
            .enumerate()
            .filter(|(_, row)| row.calls > 0)
            .map(|(i, row)| EndpointReport {
                endpoint: read
                    .endpoints
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("endpoint {i}")),
                calls: row.calls,
                ok: row.ok,
                status_differs: row.status_differs,
                failed: row.calls - row.ok - row.status_differs,
                p50_us: row.latency.quantile(0.5),
                p99_us: row.latency.quantile(0.99),
            })
            .collect();
        endpoint_reports.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.endpoint.cmp(&b.endpoint)));
        let secs = elapsed.as_secs_f64();
        let status_differs: u64 = status_differences.values().sum();
        Report {
            target,
            elapsed_s: secs,
            calls,
            ok,
            status_differs,
            failed: calls - ok - status_differs,
            throughput: if secs > 0.0 { calls as f64 / secs } else { 0.0 },
            failures,
            status_differences,
            failure_examples,
            statuses,
            latency: Latency {
                from_due: Percentiles::of(&stats.scheduled),
                from_send: Percentiles::of(&stats.sent),
                send_lag: (!stats.lag.is_empty()).then(|| Percentiles::of(&stats.lag)),
            },
            endpoints: endpoint_reports,
            recording: RecordingReport::of(read),
            results_written,
        }
    }

    /// Whether calls were sent and every one failed below HTTP: the target
    /// was never really reached.
    pub fn nothing_reached(&self) -> bool {
        self.calls > 0 && self.statuses.values().sum::<u64>() == 0
    }

    /// The terminal report.
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "replay: {} calls to {} in {:.2} s, {:.1} calls/s",
            self.calls, self.target, self.elapsed_s, self.throughput
        )?;
        writeln!(
            out,
            "  ok {}, failed {}, status differs {}",
            self.ok, self.failed, self.status_differs
        )?;
        for (what, counts) in [
            ("failed", &self.failures),
            ("status differs", &self.status_differences),
        ] {
            if counts.is_empty() {
                continue;
            }
            let kinds: Vec<String> = counts
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            writeln!(out, "  {what}: {}", kinds.join(", "))?;
            for kind in counts.keys() {
                if let Some(example) = self.failure_examples.get(kind) {
                    writeln!(out, "    {kind}: {}", escape(example))?;
                }
            }
        }
        if !self.statuses.is_empty() {
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .map(|(class, n)| format!("{class} {n}"))
                .collect();
            writeln!(out, "  responses: {}", statuses.join(", "))?;
        }
        if self.calls > 0 {
            writeln!(
                out,
                "latency {:>12} {:>9} {:>9} {:>9} {:>9}",
                "p50", "p90", "p99", "p99.9", "max"
            )?;
            for (label, p) in [
                ("from due", &self.latency.from_due),
                ("from send", &self.latency.from_send),
            ] {
                writeln!(
                    out,
                    "  {label:<10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    micros(p.p50_us),
                    micros(p.p90_us),
                    micros(p.p99_us),
                    micros(p.p999_us),
                    micros(p.max_us)
                )?;
            }
            writeln!(
                out,
                "  (\"from due\" counts the wait for a free connection: the gap between the rows is queueing the target caused)"
            )?;
            if let Some(lag) = &self.latency.send_lag {
                writeln!(
                    out,
                    "schedule: calls left {} (p50), {} (p99), {} (max) after their due time",
                    micros(lag.p50_us),
                    micros(lag.p99_us),
                    micros(lag.max_us)
                )?;
            }
            // Endpoints are recorded text: the table shows them escaped,
            // long ones shortened (`--json` keeps them whole).
            let mut table = Table::new(vec![
                Column::left("endpoint").max_width(60),
                Column::right("calls").width(9),
                Column::right("ok").width(9),
                Column::right("failed").width(7),
                Column::right("differs").width(7),
                Column::right("p50").width(9),
                Column::right("p99").width(9),
            ])
            .indent_rows(2);
            for e in self.endpoints.iter().take(50) {
                table.row([
                    e.endpoint.clone(),
                    e.calls.to_string(),
                    e.ok.to_string(),
                    e.failed.to_string(),
                    e.status_differs.to_string(),
                    micros(e.p50_us),
                    micros(e.p99_us),
                ]);
            }
            write!(out, "{table}")?;
            if self.endpoints.len() > 50 {
                writeln!(
                    out,
                    "  ... {} more endpoints (see --json)",
                    self.endpoints.len() - 50
                )?;
            }
        }
        let skipped: u64 = self.recording.skipped.values().sum();
        if skipped > 0 || self.recording.filtered > 0 {
            writeln!(
                out,
                "recording: {} exchanges replayable, {} filtered out, {} skipped",
                self.recording.replayable, self.recording.filtered, skipped
            )?;
            for (reason, n) in &self.recording.skipped {
                writeln!(out, "  {n} {reason}")?;
            }
        }
        if let Some(written) = self.results_written {
            writeln!(out, "results: {written} exchanges written")?;
        }
        Ok(())
    }
}

/// A latency in µs for people: `850µs`, `12.3ms`, `1.24s`.
pub fn micros(us: u64) -> String {
    reprise_model::time::human_duration(us.saturating_mul(1_000))
}
