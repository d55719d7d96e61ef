//! What a recorder counts (the proxy or the tower layers), shared by the call
//! path, the writer thread and whatever serves it
//! (`/metrics`, Prometheus/OpenMetrics text format).
//!
//! Every counter is an atomic; the per-reason ones are handles into their
//! label family, taken once at start, so counting never takes a lock.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use reprise_model::ErrorKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Link {
    link: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

/// A change in whether recording works, as [`Metrics::on_health`] hears
/// of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// The sink failed: exchanges are dropped until it writes again.
    Degraded {
        /// The sink's error.
        reason: String,
    },
    /// The sink writes again.
    Resumed {
        /// Exchanges dropped because the sink could not write them, over
        /// the whole run so far.
        dropped: u64,
    },
}

impl std::fmt::Display for HealthEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthEvent::Degraded { reason } => write!(
                f,
                "recording degraded: {reason}; exchanges are dropped (write_failed) until it can write again"
            ),
            HealthEvent::Resumed { dropped } => write!(
                f,
                "recording resumed: the recording is written again; {dropped} exchanges dropped (write_failed) so far"
            ),
        }
    }
}

/// A listener to [`HealthEvent`]s.
type HealthLog = Arc<dyn Fn(&HealthEvent) + Send + Sync>;

/// Whether recording works, and who hears when that changes.
#[derive(Default)]
struct Health {
    degraded: Option<String>,
    log: Option<HealthLog>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("degraded", &self.degraded)
            .finish_non_exhaustive()
    }
}

/// A recorder's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Exchanges that reached the recorder.
    pub seen: Counter,
    /// Exchanges written to the sink.
    pub recorded: Counter,
    /// Skipped by sampling.
    pub sampled_out: Counter,
    /// Skipped by `--match`.
    pub unmatched: Counter,
    /// Dropped: the queue to the writer was full.
    pub dropped_queue_full: Counter,
    /// Dropped: over `--max-record-rate`.
    pub dropped_rate_limit: Counter,
    /// Dropped: the sink refused them.
    pub dropped_sink_error: Counter,
    /// Dropped: finished after the recorder closed (past the drain).
    pub dropped_closed: Counter,
    /// Dropped: taken by the sink, which could not write them (a full
    /// disk); it goes on, and writes again once it can.
    pub dropped_write_failed: Counter,
    /// 1 while recording is degraded (see [`Metrics::degraded`]), else 0.
    pub degraded_gauge: Gauge,
    health: Mutex<Health>,
    /// Bytes the sink has written (a tape: the file's size).
    pub sink_bytes: Gauge,
    /// Exchanges waiting for the writer.
    pub queue_depth: Gauge,
    /// Seconds from sending a request upstream to its response head.
    pub upstream_latency: Histogram,
    errors: Family<Kind, Counter>,
    /// Downstream calls recorded by the egress proxy, by how they were
    /// linked to their inbound call.
    pub egress: EgressMetrics,
    registry: Registry,
}

/// How the egress proxy's downstream calls were linked to the inbound
/// calls they served (`reprise_egress_calls{link=...}`).
#[derive(Debug, Clone, Default)]
pub struct EgressMetrics {
    /// Linked to their inbound call by trace id.
    pub linked: Counter,
    /// Their trace id belonged to overlapping inbound calls.
    pub ambiguous: Counter,
    /// No trace context (no or a malformed `traceparent`).
    pub unlinked: Counter,
    /// A trace id no inbound call in flight or within the window had.
    pub unknown_trace: Counter,
    /// Not recorded: their inbound call was sampled out.
    pub parent_sampled_out: Counter,
    /// The `--egress` proxy's CONNECT tunnels: opened, and failed by
    /// reason (`reprise_egress_tunnels_total{outcome=...}`): the attempts
    /// that never became a call to record.
    pub tunnels: Family<Outcome, Counter>,
}

/// The label of `reprise_egress_tunnels_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `opened`, or why the tunnel failed (`connect_failed`,
    /// `not_tls_or_http`, `client_rejected_certificate`,
    /// `client_tls_failed`, `upstream_failed`).
    pub outcome: String,
}

/// A snapshot of [`EgressMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressStats {
    /// Linked to their inbound call by trace id.
    pub linked: u64,
    /// Their trace id belonged to overlapping inbound calls.
    pub ambiguous: u64,
    /// No trace context.
    pub unlinked: u64,
    /// A trace id no inbound call had.
    pub unknown_trace: u64,
    /// Not recorded: their inbound call was sampled out.
    pub parent_sampled_out: u64,
}

impl EgressStats {
    /// Egress calls seen, however they were linked.
    pub fn total(&self) -> u64 {
        self.linked + self.ambiguous + self.unlinked + self.unknown_trace + self.parent_sampled_out
    }
}

impl EgressMetrics {
    /// Counts one tunnel `outcome`.
    pub fn tunnel(&self, outcome: &str) {
        self.tunnels
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The counters now.
    pub fn snapshot(&self) -> EgressStats {
        EgressStats {
            linked: self.linked.get(),
            ambiguous: self.ambiguous.get(),
            unlinked: self.unlinked.get(),
            unknown_trace: self.unknown_trace.get(),
            parent_sampled_out: self.parent_sampled_out.get(),
        }
    }
}

/// What a listener counts about its connections (the proxy's and the
/// mock's: `--max-connections`, `--header-timeout`, `--idle-timeout`).
/// Clones share their counters.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections accepted.
    pub accepted: Counter,
    /// Times the listener stopped accepting because `--max-connections`
    /// were open (it resumes when one closes).
    pub limited: Counter,
    /// Failed accepts (out of file descriptors and the like); the listener
    /// backs off after each.
    pub accept_errors: Counter,
    /// Closed: no whole request head (or TLS handshake) within
    /// `--header-timeout` of the connection's start.
    pub closed_header_timeout: Counter,
    /// Closed: no request for `--idle-timeout` between requests.
    pub closed_idle_timeout: Counter,
    closed: Family<Reason, Counter>,
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        let closed = Family::<Reason, Counter>::default();
        let reason = |reason: &str| {
            closed.get_or_create_owned(&Reason {
                reason: reason.into(),
            })
        };
        ConnectionMetrics {
            open: Gauge::default(),
            accepted: Counter::default(),
            limited: Counter::default(),
            accept_errors: Counter::default(),
            closed_header_timeout: reason("header_timeout"),
            closed_idle_timeout: reason("idle_timeout"),
            closed,
        }
    }
}

impl ConnectionMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_open",
            "Client connections open",
            self.open.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            self.accepted.clone(),
        );
        registry.register(
            "connections_limited",
            "Times the listener stopped accepting because --max-connections were open",
            self.limited.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts (such as out of file descriptors), each followed by a back-off",
            self.accept_errors.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections the proxy closed, by reason",
            self.closed.clone(),
        );
    }
}

/// A snapshot of the recording counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Exchanges that reached the recorder.
    pub seen: u64,
    /// Skipped by sampling.
    pub sampled_out: u64,
    /// Skipped by `--match`.
    pub unmatched: u64,
    /// Written to the sink.
    pub recorded: u64,
    /// Dropped: the queue was full.
    pub dropped_queue_full: u64,
    /// Dropped: over the rate cap.
    pub dropped_rate_limit: u64,
    /// Dropped: the sink failed.
    pub dropped_sink_error: u64,
    /// Dropped: finished after the recorder closed.
    pub dropped_closed: u64,
    /// Dropped: the sink could not write them (a full disk).
    pub dropped_write_failed: u64,
}

impl RecorderStats {
    /// Exchanges dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_rate_limit
            + self.dropped_sink_error
            + self.dropped_closed
            + self.dropped_write_failed
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh counters, registered for `/metrics`.
    pub fn new() -> Metrics {
        Metrics::build(None)
    }

    /// Fresh counters and a listener's `connections`, all registered for
    /// `/metrics` (the proxy's; the tower layers' host serves its own
    /// connections).
    pub fn serving(connections: &ConnectionMetrics) -> Metrics {
        Metrics::build(Some(connections))
    }

    fn build(connections: Option<&ConnectionMetrics>) -> Metrics {
        let mut registry = Registry::with_prefix("reprise");
        let seen = Counter::default();
        let recorded = Counter::default();
        let skipped = Family::<Reason, Counter>::default();
        let dropped = Family::<Reason, Counter>::default();
        let sink_bytes = Gauge::default();
        let queue_depth = Gauge::default();
        // 100 µs to ~52 s.
        let upstream_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 20));
        let errors = Family::<Kind, Counter>::default();
        registry.register(
            "exchanges_seen",
            "Exchanges that reached the recorder",
            seen.clone(),
        );
        registry.register(
            "exchanges_recorded",
            "Exchanges written to the recording",
            recorded.clone(),
        );
        registry.register(
            "exchanges_skipped",
            "Exchanges not recorded by choice (sampling, --match)",
            skipped.clone(),
        );
        registry.register(
            "exchanges_dropped",
            "Exchanges that should have been recorded but were dropped",
            dropped.clone(),
        );
        registry.register(
            "sink_bytes",
            "Bytes the recording has written (a tape: its file size)",
            sink_bytes.clone(),
        );
        registry.register(
            "record_queue_depth",
            "Exchanges waiting for the recording writer",
            queue_depth.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from sending a request upstream to its response head",
            upstream_latency.clone(),
        );
        registry.register("errors", "Failed exchanges by kind", errors.clone());
        let degraded_gauge = Gauge::default();
        registry.register(
            "recording_degraded",
            "1 while the recording cannot be written (exchanges are dropped as write_failed), else 0",
            degraded_gauge.clone(),
        );

        let links = Family::<Link, Counter>::default();
        registry.register(
            "egress_calls",
            "Downstream calls through the egress proxy, by how they were linked to their inbound call",
            links.clone(),
        );
        let link = |link: &str| links.get_or_create_owned(&Link { link: link.into() });
        let tunnels = Family::<Outcome, Counter>::default();
        registry.register(
            "egress_tunnels",
            "CONNECT tunnels through the egress proxy: opened, or failed by reason (never a recorded call)",
            tunnels.clone(),
        );
        let egress = EgressMetrics {
            tunnels,
            linked: link("trace"),
            ambiguous: link("ambiguous"),
            unlinked: link("unlinked"),
            unknown_trace: link("unknown_trace"),
            parent_sampled_out: link("parent_sampled_out"),
        };
        if let Some(connections) = connections {
            connections.register(&mut registry);
        }
        let reason = |family: &Family<Reason, Counter>, reason: &str| {
            family.get_or_create_owned(&Reason {
                reason: reason.into(),
            })
        };
        Metrics {
            seen,
            recorded,
            sampled_out: reason(&skipped, "sampled_out"),
            unmatched: reason(&skipped, "unmatched"),
            dropped_queue_full: reason(&dropped, "queue_full"),
            dropped_rate_limit: reason(&dropped, "rate_limit"),
            dropped_sink_error: reason(&dropped, "sink_error"),
            dropped_closed: reason(&dropped, "closed"),
            dropped_write_failed: reason(&dropped, "write_failed"),
            degraded_gauge,
            health: Mutex::new(Health::default()),
            sink_bytes,
            queue_depth,
            upstream_latency,
            errors,
            egress,
            registry,
        }
    }

    /// Counts a failed exchange.
    pub fn error(&self, kind: ErrorKind) {
        let kind = reprise_model::error_kind_label(kind);
        self.errors.get_or_create(&Kind { kind: kind.into() }).inc();
    }

    /// The recording counters now.
    pub fn snapshot(&self) -> RecorderStats {
        RecorderStats {
            seen: self.seen.get(),
            sampled_out: self.sampled_out.get(),
            unmatched: self.unmatched.get(),
            recorded: self.recorded.get(),
            dropped_queue_full: self.dropped_queue_full.get(),
            dropped_rate_limit: self.dropped_rate_limit.get(),
            dropped_sink_error: self.dropped_sink_error.get(),
            dropped_closed: self.dropped_closed.get(),
            dropped_write_failed: self.dropped_write_failed.get(),
        }
    }

    /// Why recording is degraded (the sink's last failure), while it is:
    /// from a failure until the sink writes again. `/healthz` says it.
    pub fn degraded(&self) -> Option<String> {
        self.health().degraded.clone()
    }

    /// Calls `log` at every [`HealthEvent`] from now on (in place of any
    /// earlier listener), and at once if recording is degraded now. It
    /// runs on the recorder's writer thread, outside the health state's
    /// lock: keep it short (print a line, emit a log event).
    pub fn on_health(&self, log: impl Fn(&HealthEvent) + Send + Sync + 'static) {
        let log: HealthLog = Arc::new(log);
        let degraded = {
            let mut health = self.health();
            health.log = Some(Arc::clone(&log));
            health.degraded.clone()
        };
        if let Some(reason) = degraded {
            log(&HealthEvent::Degraded { reason });
        }
    }

    /// The sink failed with `reason`: degraded, said once until it
    /// resumes.
    pub(crate) fn degrade(&self, reason: String) {
        let log = {
            let mut health = self.health();
            if health.degraded.is_some() {
                return;
            }
            self.degraded_gauge.set(1);
            health.degraded = Some(reason.clone());
            health.log.clone()
        };
        if let Some(log) = log {
            log(&HealthEvent::Degraded { reason });
        }
    }

    /// The sink wrote again: no longer degraded.
    pub(crate) fn resume(&self) {
        let log = {
            let mut health = self.health();
            if health.degraded.take().is_none() {
                return;
            }
            self.degraded_gauge.set(0);
            health.log.clone()
        };
        if let Some(log) = log {
            log(&HealthEvent::Resumed {
                dropped: self.dropped_write_failed.get(),
            });
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let metrics = Metrics::new();
        metrics.seen.inc();
        metrics.dropped_queue_full.inc_by(3);
        metrics.error(ErrorKind::Connect);
        metrics.upstream_latency.observe(0.002);
        metrics.egress.tunnel("connect_failed");
        let text = metrics.render();
        for line in [
            "reprise_egress_tunnels_total{outcome=\"connect_failed\"} 1",
            "reprise_exchanges_seen_total 1",
            "reprise_exchanges_dropped_total{reason=\"queue_full\"} 3",
            "reprise_exchanges_dropped_total{reason=\"sink_error\"} 0",
            "reprise_errors_total{kind=\"connect\"} 1",
            "reprise_upstream_latency_seconds_count 1",
            "reprise_record_queue_depth 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert_eq!(metrics.snapshot().dropped(), 3);
        assert!(!text.contains("reprise_connections"), "{text}");
    }

    #[test]
    fn a_listeners_connections_are_rendered_when_served() {
        let connections = ConnectionMetrics::default();
        let metrics = Metrics::serving(&connections);
        connections.open.inc();
        connections.limited.inc_by(2);
        connections.closed_idle_timeout.inc();
        let text = metrics.render();
        for line in [
            "reprise_connections_open 1",
            "reprise_connections_limited_total 2",
            "reprise_accept_errors_total 0",
            "reprise_connections_closed_total{reason=\"idle_timeout\"} 1",
            "reprise_connections_closed_total{reason=\"header_timeout\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn health_is_said_once_per_change() {
        let metrics = Metrics::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let heard = Mutex::new(tx);
        metrics.on_health(move |event| {
            let _ = heard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(event.clone());
        });
        assert_eq!(metrics.degraded(), None);
        metrics.degrade("disk full".into());
        metrics.degrade("still full".into());
        assert_eq!(metrics.degraded().as_deref(), Some("disk full"));
        assert!(
            metrics
                .render()
                .lines()
                .any(|l| l == "reprise_recording_degraded 1")
        );
        metrics.dropped_write_failed.inc_by(4);
        metrics.resume();
        metrics.resume();
        assert_eq!(metrics.degraded(), None);
        let events: Vec<HealthEvent> = rx.try_iter().collect();
        assert_eq!(
            events,
            [
                HealthEvent::Degraded {
                    reason: "disk full".into()
                },
                HealthEvent::Resumed { dropped: 4 }
            ]
        );
        assert!(
            metrics
                .render()
                .lines()
                .any(|l| l == "reprise_exchanges_dropped_total{reason=\"write_failed\"} 4")
        );
    }
}
