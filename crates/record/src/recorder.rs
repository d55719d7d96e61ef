//! The bypass: a bounded queue between the forward path and the sink.
//! `submit` never waits: when the queue is full the exchange is dropped
//! from the recording (never from the forward path) and counted. A writer
//! thread builds each exchange from what the forward path captured,
//! applies the selection and redaction rules, and owns the sink.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reprise_model::drain::{Drain, Next};
use reprise_model::redact::Redactor;
use reprise_model::sample::RateLimit;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Flags, Role, Sink};

use crate::metrics::Metrics;
use crate::recording::Captured;

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
    Record(Box<Captured>),
    /// Write what came before, close the sink, stop.
    Close,
}

/// The sending end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Message>,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
}

/// Records cleared by the writer thread, for the next exchanges: in a
/// steady state the call's path allocates none and frees none.
#[derive(Debug, Default)]
pub struct Pool {
    // Boxed: a record travels the queue as a box, which is what is reused.
    #[allow(clippy::vec_box)]
    free: Mutex<Vec<Box<Captured>>>,
}

/// Records kept for reuse at most. Each keeps buffers of at most 8 KiB
/// (`recording::KEEP_CAPACITY`: bigger ones are freed), so the pool holds a
/// few MiB at worst and well under one for typical calls.
const POOL_MAX: usize = 512;

/// Records the writer gives back at once.
const GIVE_BATCH: usize = 8;

impl Pool {
    /// A cleared record.
    pub fn take(&self) -> Box<Captured> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    #[allow(clippy::vec_box)] // see `free`
    fn give(&self, batch: &mut Vec<Box<Captured>>) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let room = POOL_MAX.saturating_sub(free.len());
        let keep = batch.len().min(room);
        free.extend(batch.drain(..keep));
        drop(free);
        batch.clear();
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("queued", &self.metrics.queue_depth.get())
            .finish()
    }
}

/// The writer thread, to close at shutdown.
#[derive(Debug)]
pub struct RecorderThread {
    thread: JoinHandle<Result<(), String>>,
}

impl Recorder {
    /// Starts the writer thread over `sink` with a queue of `capacity`.
    pub fn start(
        sink: Box<dyn Sink>,
        rules: Rules,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Recorder, RecorderThread)> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let thread_metrics = Arc::clone(&metrics);
        let pool = Arc::new(Pool::default());
        let thread_pool = Arc::clone(&pool);
        let thread = std::thread::Builder::new()
            .name("reprise-recorder".into())
            .spawn(move || write_loop(rx, sink, rules, &thread_metrics, &thread_pool))?;
        Ok((Recorder { tx, metrics, pool }, RecorderThread { thread }))
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where a new exchange's record comes from.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Queues an exchange for storage, or drops and counts it.
    pub fn submit(&self, captured: Box<Captured>) {
        match self.tx.try_send(Message::Record(captured)) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
            }
            Err(TrySendError::Full(_)) => {
                self.metrics.dropped_queue_full.inc();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.dropped_closed.inc();
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
        let stalled = |metrics: &Metrics| {
            format!(
                "the sink did not finish writing within {deadline:?}; {} queued exchanges were not recorded",
                metrics.queue_depth.get()
            )
        };
        loop {
            match recorder.tx.try_send(Message::Close) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(_)) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(TrySendError::Full(_)) => return Err(stalled(&recorder.metrics)),
            }
        }
        while !self.thread.is_finished() {
            if Instant::now() >= until {
                return Err(stalled(&recorder.metrics));
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
    metrics: &Metrics,
    pool: &Pool,
) -> Result<(), String> {
    let mut cleared: Vec<Box<Captured>> = Vec::with_capacity(GIVE_BATCH);
    let mut limit = rules.max_rate.map(RateLimit::new);
    let mut first_error = None;
    // An exchange waits at most this long to be looked at; the forward
    // path never wakes this thread.
    let mut drain = Drain::new(rx, Duration::from_millis(20));
    while let Next::Item(Message::Record(mut captured)) = drain.next(None) {
        let mut exchange = captured.to_exchange();
        metrics.queue_depth.dec();
        captured.recycle();
        cleared.push(captured);
        if cleared.len() >= GIVE_BATCH {
            pool.give(&mut cleared);
        }
        // `--match` chooses inbound calls; a recorded call's downstream
        // calls are kept with it.
        if exchange.role() != Role::Downstream && !rules.filter.matches(&exchange) {
            metrics.unmatched.inc();
            continue;
        }
        if let Some(limit) = limit.as_mut()
            && !limit.allow(reprise_model::time::now_ns())
        {
            metrics.dropped_rate_limit.inc();
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
                metrics.recorded.inc();
                if let Some(bytes) = sink.bytes_written() {
                    metrics
                        .sink_bytes
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
            }
            Err(error) => {
                metrics.dropped_sink_error.inc();
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
