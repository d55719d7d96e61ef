//! The bypass: a bounded queue between the forward path and the sink.
//! `submit` never waits: when the queue is full the exchange is dropped
//! from the recording (never from the forward path) and counted. A writer
//! thread applies the selection and redaction rules and owns the sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reprise_model::redact::Redactor;
use reprise_model::sample::RateLimit;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Flags, Sink};

/// Counters of the recorder, readable while it runs.
#[derive(Debug, Default)]
pub struct RecorderCounters {
    /// Exchanges that reached the proxy.
    pub seen: AtomicU64,
    /// Exchanges skipped by sampling.
    pub sampled_out: AtomicU64,
    /// Exchanges skipped by `--match`.
    pub unmatched: AtomicU64,
    /// Exchanges written to the sink.
    pub recorded: AtomicU64,
    /// Dropped: the queue to the writer was full.
    pub dropped_queue_full: AtomicU64,
    /// Dropped: over `--max-record-rate`.
    pub dropped_rate_limit: AtomicU64,
    /// Dropped: the sink refused them.
    pub dropped_sink_error: AtomicU64,
    /// Dropped: submitted after the recorder closed.
    pub dropped_closed: AtomicU64,
    /// Exchanges waiting in the queue.
    pub queue_depth: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// See [`RecorderCounters::seen`].
    pub seen: u64,
    /// See [`RecorderCounters::sampled_out`].
    pub sampled_out: u64,
    /// See [`RecorderCounters::unmatched`].
    pub unmatched: u64,
    /// See [`RecorderCounters::recorded`].
    pub recorded: u64,
    /// See [`RecorderCounters::dropped_queue_full`].
    pub dropped_queue_full: u64,
    /// See [`RecorderCounters::dropped_rate_limit`].
    pub dropped_rate_limit: u64,
    /// See [`RecorderCounters::dropped_sink_error`].
    pub dropped_sink_error: u64,
    /// See [`RecorderCounters::dropped_closed`].
    pub dropped_closed: u64,
}

impl RecorderCounters {
    /// A snapshot.
    pub fn snapshot(&self) -> RecorderStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RecorderStats {
            seen: get(&self.seen),
            sampled_out: get(&self.sampled_out),
            unmatched: get(&self.unmatched),
            recorded: get(&self.recorded),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_rate_limit: get(&self.dropped_rate_limit),
            dropped_sink_error: get(&self.dropped_sink_error),
            dropped_closed: get(&self.dropped_closed),
        }
    }
}

/// What the writer thread applies before storing.
pub struct Rules {
    /// `--match` conditions (the response status included).
    pub filter: ExchangeFilter,
    /// `--max-record-rate`.
    pub max_rate: Option<u32>,
    /// Redaction.
    pub redactor: Redactor,
    /// The sampling rate, noted on each exchange when below 1.
    pub sample_rate: f64,
}

/// What goes down the queue.
enum Message {
    Record(Box<Exchange>),
    /// Write what came before, close the sink, stop.
    Close,
}

/// The sending end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Message>,
    counters: Arc<RecorderCounters>,
}

/// The writer thread, to close at shutdown.
pub struct RecorderThread {
    thread: JoinHandle<Result<(), String>>,
}

impl Recorder {
    /// Starts the writer thread over `sink` with a queue of `capacity`.
    pub fn start(
        sink: Box<dyn Sink>,
        rules: Rules,
        capacity: usize,
        counters: Arc<RecorderCounters>,
    ) -> std::io::Result<(Recorder, RecorderThread)> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("reprise-recorder".into())
            .spawn(move || write_loop(rx, sink, rules, &thread_counters))?;
        Ok((Recorder { tx, counters }, RecorderThread { thread }))
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<RecorderCounters> {
        &self.counters
    }

    /// Queues an exchange for storage, or drops and counts it.
    pub fn submit(&self, exchange: Exchange) {
        match self.tx.try_send(Message::Record(Box::new(exchange))) {
            Ok(()) => {
                self.counters.queue_depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped_closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl RecorderThread {
    /// Lets the writer store what is queued, close the sink and stop;
    /// exchanges submitted afterwards are counted as dropped. Blocks for
    /// at most `deadline`: a sink that stalls longer is abandoned with an
    /// error saying how much was lost. Call it off the async runtime.
    pub fn close(self, recorder: &Recorder, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        let stalled = |counters: &RecorderCounters| {
            format!(
                "the sink did not finish writing within {deadline:?}; {} queued exchanges were not recorded",
                counters.queue_depth.load(Ordering::Relaxed)
            )
        };
        loop {
            match recorder.tx.try_send(Message::Close) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(_)) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(TrySendError::Full(_)) => return Err(stalled(&recorder.counters)),
            }
        }
        while !self.thread.is_finished() {
            if Instant::now() >= until {
                return Err(stalled(&recorder.counters));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the recorder thread panicked".into()))
    }
}

fn write_loop(
    rx: Receiver<Message>,
    mut sink: Box<dyn Sink>,
    rules: Rules,
    counters: &RecorderCounters,
) -> Result<(), String> {
    let mut limit = rules.max_rate.map(RateLimit::new);
    let mut first_error = None;
    for message in rx {
        let Message::Record(exchange) = message else {
            break;
        };
        let mut exchange = *exchange;
        counters.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if !rules.filter.matches(&exchange) {
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(limit) = limit.as_mut()
            && !limit.allow(reprise_model::time::now_ns())
        {
            counters.dropped_rate_limit.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        rules.redactor.apply(&mut exchange);
        if rules.sample_rate < 1.0 {
            exchange
                .flags
                .get_or_insert_with(Flags::default)
                .sample_rate = Some(rules.sample_rate);
        }
        match sink.append(exchange) {
            Ok(()) => {
                counters.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                counters.dropped_sink_error.fetch_add(1, Ordering::Relaxed);
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    let closed = sink.close().map_err(|e| e.to_string());
    match first_error {
        Some(error) => Err(error),
        None => closed,
    }
}
