//! The bypass: [`Recorder`], the handles that feed a bounded queue to the
//! writer thread, and [`RecorderThread`], which closes it. `submit` never
//! waits: when the queue is full the exchange is dropped from the
//! recording (never from the call) and counted. On a handle made by
//! [`Recorder::local`] the serving thread packs its calls itself (see
//! `local.rs`); on a shared handle the record crosses whole and the
//! writer thread (`writer.rs`) judges, encodes and stores it.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reprise_model::Sink;
use reprise_model::pack::{Packed, Packer};

use crate::captured::Captured;
use crate::local::{LOCAL_RECORD_MAX, Local, Packing};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::rules::{Judge, Rules};
use crate::writer::write_loop;

/// What goes down the queue.
pub(crate) enum Message {
    /// A call's record, for the writer thread to judge, encode and store.
    Record(Box<Captured>),
    /// A call too big to pack on a local handle's thread: judged alone
    /// (an inbound call by the rules; a downstream call not held for its
    /// inbound call's verdict), encoded and stored by the writer thread.
    Whole(Box<Captured>),
    /// Records a serving thread packed.
    Packed(Packed),
    /// An exchange built whole by its recorder (a database call cut from
    /// a connection's bytes), stored as it is.
    Built(Box<reprise_model::Exchange>),
    /// Write what came before, close the sink, stop.
    Close,
}

/// The sending end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    pub(crate) tx: SyncSender<Message>,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
    /// The packing of the thread this handle is for ([`Recorder::local`]).
    pub(crate) local: Option<Arc<Mutex<Local>>>,
}

/// What every handle and the writer thread share.
pub(crate) struct Shared {
    /// The rules, and the verdicts on inbound calls.
    pub(crate) judge: Judge,
    /// Most records queued (a pack counts its records).
    pub(crate) capacity: usize,
    /// The sink's packer, which each local handle's is made from.
    packer: Mutex<Box<dyn Packer>>,
    /// The first failure met packing (a record too large for the sink),
    /// reported at close as the sink's own are.
    pub(crate) first_error: Mutex<Option<String>>,
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
    /// Starts the writer thread over `sink` with a queue of `capacity`
    /// records.
    pub fn start(
        sink: Box<dyn Sink>,
        rules: Rules,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Recorder, RecorderThread)> {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            judge: Judge::new(rules),
            capacity,
            packer: Mutex::new(sink.packer()),
            first_error: Mutex::new(None),
        });
        let thread_metrics = Arc::clone(&metrics);
        let pool = Arc::new(Pool::default());
        let thread_pool = Arc::clone(&pool);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("reprise-recorder".into())
            .spawn(move || write_loop(rx, sink, &thread_shared, &thread_metrics, &thread_pool))?;
        let recorder = Recorder {
            tx,
            metrics,
            pool,
            shared,
            local: None,
        };
        Ok((recorder, RecorderThread { thread }))
    }

    /// A handle for one thread, which judges, encodes and packs the calls
    /// submitted through it on the submitting thread (see the module's
    /// documentation). Its clones share its packing; what it packed goes
    /// to the writer when full, when [`Recorder::tick`] finds it due, on
    /// [`Recorder::flush_within`], and when the last clone is dropped.
    ///
    /// A call whose record holds more than [`LOCAL_RECORD_MAX`] bytes goes
    /// to the writer thread whole, after what the thread packed before it,
    /// so that the thread's other calls never wait on a big record's
    /// encoding, redaction or compression.
    ///
    /// It is for a thread whose calls are inbound (the proxy's): the
    /// verdicts of `--match` and the rate cap stay on the thread, so a
    /// downstream call submitted through it is stored without waiting for
    /// its inbound call's verdict. The tower layers, whose downstream
    /// calls follow that verdict, use the shared handle.
    pub fn local(&self) -> Recorder {
        let packer = self
            .shared
            .packer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .another();
        let local = Local::new(
            packer,
            self.tx.clone(),
            Arc::clone(&self.metrics),
            Arc::clone(&self.shared),
        );
        Recorder {
            local: Some(Arc::new(Mutex::new(local))),
            ..self.clone()
        }
    }

    /// On a local handle, the task that packs this thread's calls after
    /// they are answered: spawn it on the thread's runtime, beside its
    /// calls. Until it runs (and on a shared handle, where it is `None`)
    /// each call is packed as it completes, before its last bytes are
    /// written.
    pub fn packing(&self) -> Option<Packing> {
        self.local
            .as_ref()
            .map(|local| Packing::new(Arc::clone(local)))
    }

    /// Hands what this thread packed to the writer if its oldest record
    /// has waited long enough; a local handle's thread calls it every few
    /// milliseconds, also while idle.
    pub fn tick(&self) {
        if let Some(local) = &self.local {
            local.lock().unwrap_or_else(PoisonError::into_inner).tick();
        }
    }

    /// Hands what this thread packed to the writer now; waits up to
    /// `deadline` for room in the queue (call it off the async runtime,
    /// at shutdown).
    pub fn flush_within(&self, deadline: Duration) {
        if let Some(local) = &self.local {
            local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .flush_within(deadline);
        }
    }

    /// A cleared record for a new exchange: this thread's own on a local
    /// handle, else from the pool.
    pub fn take(&self) -> Box<Captured> {
        if let Some(local) = &self.local
            && let Some(captured) = local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take_free()
        {
            return captured;
        }
        self.pool.take()
    }

    /// Whether `--match` or the rate cap judge inbound calls: their
    /// downstream calls then wait for the verdict on the writer thread,
    /// which sees it only for inbound calls submitted on a shared handle.
    pub fn gated(&self) -> bool {
        self.shared.judge.gated()
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where a new exchange's record comes from.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Queues an exchange for storage (on a local handle: packs it), or
    /// drops and counts it.
    pub fn submit(&self, captured: Box<Captured>) {
        let message = match &self.local {
            Some(local) => {
                let mut local = local.lock().unwrap_or_else(PoisonError::into_inner);
                if captured.kept_bytes() <= LOCAL_RECORD_MAX {
                    local.submit(captured);
                    return;
                }
                // What the thread packed goes first, then this call.
                local.flush();
                Message::Whole(captured)
            }
            None => Message::Record(captured),
        };
        self.send(message);
    }
}

impl Recorder {
    /// Queues an exchange its recorder built whole (a database or cache
    /// call), or drops and counts it. It is stored with the sampling note;
    /// under `--match` or the rate cap, a downstream call with a parent
    /// follows its parent's verdict, as the proxy's do.
    pub fn submit_exchange(&self, exchange: reprise_model::Exchange) {
        if let Some(local) = &self.local
            && !self.shared.judge.gated()
        {
            // Packed on this thread, after the call's answer is passed on
            // when the thread runs a packing task.
            local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .submit_built(Box::new(exchange));
            return;
        }
        self.send(Message::Built(Box::new(exchange)));
    }

    fn send(&self, message: Message) {
        queue_one(&self.tx, &self.metrics, message);
    }
}

/// Queues one record for the writer thread, or drops and counts it.
pub(crate) fn queue_one(tx: &SyncSender<Message>, metrics: &Metrics, message: Message) {
    match tx.try_send(message) {
        Ok(()) => {
            metrics.queue_depth.inc();
        }
        Err(TrySendError::Full(_)) => {
            metrics.dropped_queue_full.inc();
        }
        Err(TrySendError::Disconnected(_)) => {
            metrics.dropped_closed.inc();
        }
    }
}

impl RecorderThread {
    /// Lets the writer store what is queued, close the sink and stop;
    /// exchanges submitted afterwards are counted as dropped. Blocks for
    /// at most `deadline`: a sink that stalls longer is abandoned with an
    /// error saying how much was lost. Call it off the async runtime.
    pub fn close(self, recorder: &Recorder, deadline: Duration) -> Result<(), RecorderError> {
        let until = Instant::now() + deadline;
        let stalled = |metrics: &Metrics| RecorderError::Stalled {
            deadline,
            queued: metrics.queue_depth.get(),
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
        match self.thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(RecorderError::Sink(error)),
            Err(_) => Err(RecorderError::Panicked),
        }
    }
}

/// Why closing the recorder lost exchanges or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecorderError {
    /// The sink did not finish writing in time; what was still queued is
    /// not recorded.
    #[error(
        "the sink did not finish writing within {deadline:?}; {queued} queued exchanges were not recorded"
    )]
    Stalled {
        /// How long the close waited.
        deadline: Duration,
        /// Exchanges still queued when it gave up.
        queued: i64,
    },
    /// The first failure of the sink (or of packing for it) that recording
    /// could not go on after, as the sink told it.
    #[error("{0}")]
    Sink(String),
    /// The writer thread panicked.
    #[error("the recorder thread panicked")]
    Panicked,
}
