//! `--faketime`: the inbound calls replayed one at a time, in recorded
//! order, the service's clock (libfaketime, `reprise_sandbox::FakeClock`)
//! set to each call's recorded start before it is sent. Each call is a
//! replay of its own, into one results tape; their reports are added up.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use reprise_model::{Exchange, Role, Sink, StoreError};
use reprise_replay::{Opener, Pacing, Replay, ReplayConfig, Report};
use reprise_sandbox::FakeClock;

use super::interrupt::Interrupt;

/// A time in nanoseconds since the epoch.
pub(crate) fn at_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The start of the first inbound exchange, for the clock the service
/// starts with under `--faketime`.
pub(crate) fn first_inbound_ns(recording: &[Exchange]) -> Option<u64> {
    recording
        .iter()
        .filter(|e| e.role != Role::Downstream as i32)
        .map(|e| e.recorded_at_ns)
        .min()
}

/// `--faketime`: one call at a time, in recorded order, the service's
/// clock set to each call's recorded start before it is sent.
pub(crate) fn replay_in_recorded_time(
    config: ReplayConfig,
    mut inbound: Vec<Exchange>,
    sink: SharedSink,
    clock: &FakeClock,
    interrupt: &Interrupt,
) -> anyhow::Result<Report> {
    inbound.retain(|e| config.filter.matches(e));
    inbound.sort_by_key(|e| e.recorded_at_ns);
    if let Some(limit) = config.limit {
        inbound.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let mut total: Option<Report> = None;
    for exchange in inbound {
        if interrupt.caught() {
            break;
        }
        clock.set(at_ns(exchange.recorded_at_ns))?;
        let mut one = config.clone();
        one.pacing = Pacing::Max;
        one.concurrency = 1;
        one.limit = None;
        let mut once = Some(exchange);
        let opener: Opener = Box::new(move || {
            let exchanges: Vec<Exchange> = once.take().into_iter().collect();
            Ok(Box::new(reprise_model::MemorySource::new(exchanges))
                as Box<dyn reprise_model::Source>)
        });
        let replay = Replay::start(one, opener, Some(Box::new(sink.clone())), None)?;
        interrupt.watch(replay.stop_handle());
        let report = replay.wait()?;
        total = Some(match total {
            None => report,
            Some(sum) => add(sum, report),
        });
    }
    total.context("--faketime: no inbound exchange in the recording to replay")
}

/// One results tape shared by several replays (`--faketime` replays one
/// call at a time).
#[derive(Clone)]
pub(crate) struct SharedSink(pub(crate) Arc<Mutex<reprise_tape::TapeWriter>>);

impl Sink for SharedSink {
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError> {
        Sink::append(
            &mut *self.0.lock().unwrap_or_else(PoisonError::into_inner),
            exchange,
        )
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Sink::sync(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Two replays' reports as one: the counts added, the rest the first's
/// (under `--faketime`, each call is a replay of its own).
fn add(mut sum: Report, one: Report) -> Report {
    sum.elapsed_s += one.elapsed_s;
    sum.calls += one.calls;
    sum.ok += one.ok;
    sum.status_differs += one.status_differs;
    sum.failed += one.failed;
    for (what, n) in one.failures {
        *sum.failures.entry(what).or_default() += n;
    }
    for (what, n) in one.status_differences {
        *sum.status_differences.entry(what).or_default() += n;
    }
    for (what, example) in one.failure_examples {
        sum.failure_examples.entry(what).or_insert(example);
    }
    for (status, n) in one.statuses {
        *sum.statuses.entry(status).or_default() += n;
    }
    sum.results_written = match (sum.results_written, one.results_written) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    sum.throughput = if sum.elapsed_s > 0.0 {
        sum.calls as f64 / sum.elapsed_s
    } else {
        0.0
    };
    sum
}
