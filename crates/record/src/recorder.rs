//! The bypass: a bounded queue between the forward path and the sink.
//! `submit` never waits: when the queue is full the exchange is dropped
//! from the recording (never from the forward path) and counted. A writer
//! thread owns the sink.
//!
//! What the forward path captured becomes a record in one of two places.
//! On a handle made by [`Recorder::local`] (one per serving thread of the
//! proxy), the thread that served the call applies the selection rules to
//! its head, encodes it (straight from the pooled record, redacted on the
//! way) and packs it with the sink's [`Packer`] (a tape's compresses
//! whole blocks); only full packs cross to the writer thread, which
//! stores them as they are. On a shared handle (the tower layers, whose
//! downstream calls wait for their inbound call's verdict), the record
//! itself crosses, and the writer thread judges, encodes and stores it.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reprise_model::drain::{Drain, Next};
use reprise_model::pack::{Packed, PackedError, Packer};
use reprise_model::redact::Redactor;
use reprise_model::sample::RateLimit;
use reprise_model::select::CallHead;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Role, Sink, SinkTally, StoreError};

use crate::metrics::Metrics;
use crate::recording::{Captured, HeadView};

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
    /// A call too big to pack on a local handle's thread: judged alone
    /// (an inbound call by the rules; a downstream call not held for its
    /// inbound call's verdict), encoded and stored by the writer thread.
    Whole(Box<Captured>),
    /// Records a serving thread packed.
    Packed(Packed),
    /// Write what came before, close the sink, stop.
    Close,
}

/// The sending end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Message>,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
    /// The packing of the thread this handle is for ([`Recorder::local`]).
    local: Option<Arc<Mutex<Local>>>,
}

/// What every handle and the writer thread share.
struct Shared {
    rules: Rules,
    /// `--max-record-rate`, over every thread's calls.
    limit: Option<Mutex<RateLimit>>,
    /// Most records queued (a pack counts its records).
    capacity: usize,
    /// The sink's packer, which each local handle's is made from.
    packer: Mutex<Box<dyn Packer>>,
    /// The first failure met packing (a record too large for the sink),
    /// reported at close as the sink's own are.
    first_error: Mutex<Option<String>>,
}

impl Shared {
    /// Whether a downstream call waits for its inbound call's verdict:
    /// only when something can refuse an inbound call.
    fn gated(&self) -> bool {
        !self.rules.filter.is_empty() || self.limit.is_some()
    }

    /// Whether the inbound call `head` is kept, by `--match` then the rate
    /// cap; a refusal is counted.
    fn keeps(&self, head: &HeadView<'_>, metrics: &Metrics) -> bool {
        if !self.rules.filter.matches(head) {
            metrics.unmatched.inc();
            return false;
        }
        if let Some(limit) = &self.limit
            && !limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(reprise_model::time::now_ns())
        {
            metrics.dropped_rate_limit.inc();
            return false;
        }
        true
    }
}

/// A serving thread's own packing: its pack being filled, its encoding
/// buffer and its cleared records.
struct Local {
    packer: Box<dyn Packer>,
    scratch: Vec<u8>,
    #[allow(clippy::vec_box)] // records travel boxed; the box is reused
    free: Vec<Box<Captured>>,
    tx: SyncSender<Message>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
}

/// Cleared records a thread keeps for its next calls, at most.
const LOCAL_FREE_MAX: usize = 256;

/// The biggest record a local handle's thread packs itself (see
/// [`Recorder::local`]).
pub const LOCAL_RECORD_MAX: usize = 64 << 10;

impl Local {
    /// Judges, encodes and packs `captured` on this thread.
    fn pack(&mut self, mut captured: Box<Captured>) {
        let shared = &*self.shared;
        let rules = &shared.rules;
        let recorded_at_ns = captured.recorded_at_ns();
        self.scratch.clear();
        let keep = if shared.gated() && captured.role() == Role::Inbound {
            // Read once: the rules judge the head, and a kept call is
            // encoded from the same reading.
            let head = captured.head();
            let keep = shared.keeps(&head, &self.metrics);
            if keep {
                head.encode(&rules.redactor, rules.sample_rate, &mut self.scratch);
            }
            keep
        } else {
            captured.encode(&rules.redactor, rules.sample_rate, &mut self.scratch);
            true
        };
        if keep {
            match self.packer.add(&self.scratch, recorded_at_ns) {
                Ok(Some(packed)) => self.hand_over(packed),
                Ok(None) => {}
                Err(error) => {
                    self.metrics.dropped_sink_error.inc();
                    shared
                        .first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(|| error.to_string());
                }
            }
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        captured.recycle();
        if self.free.len() < LOCAL_FREE_MAX {
            self.free.push(captured);
        }
    }

    /// Queues a pack for the writer thread, or drops and counts its
    /// records: the queue holds at most `capacity` records, but takes a
    /// pack of more when it is empty (else such packs would never pass).
    fn hand_over(&self, packed: Packed) {
        let count = packed.count;
        let queued = self.metrics.queue_depth.inc_by(i64::from(count));
        let capacity = i64::try_from(self.shared.capacity).unwrap_or(i64::MAX);
        if queued > 0 && queued.saturating_add(i64::from(count)) > capacity {
            self.metrics.queue_depth.dec_by(i64::from(count));
            self.metrics.dropped_queue_full.inc_by(u64::from(count));
            return;
        }
        match self.tx.try_send(Message::Packed(packed)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.dec_by(i64::from(count));
                self.metrics.dropped_queue_full.inc_by(u64::from(count));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec_by(i64::from(count));
                self.metrics.dropped_closed.inc_by(u64::from(count));
            }
        }
    }

    fn flush(&mut self) {
        if let Some(packed) = self.packer.flush() {
            self.hand_over(packed);
        }
    }

    /// Hands what is packed over, waiting up to `deadline` for room in
    /// the queue (at shutdown, when the thread has nothing else to do).
    fn flush_within(&mut self, deadline: Duration) {
        let Some(packed) = self.packer.flush() else {
            return;
        };
        let until = Instant::now() + deadline;
        let count = i64::from(packed.count);
        let capacity = i64::try_from(self.shared.capacity).unwrap_or(i64::MAX);
        while Instant::now() < until {
            let queued = self.metrics.queue_depth.get();
            if queued == 0 || queued + count <= capacity {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.hand_over(packed);
    }
}

impl Drop for Local {
    /// The last handle of a thread is gone (its calls with it): what it
    /// packed goes to the writer.
    fn drop(&mut self) {
        self.flush();
    }
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
            limit: rules.max_rate.map(|rate| Mutex::new(RateLimit::new(rate))),
            rules,
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
        let local = Local {
            packer,
            scratch: Vec::new(),
            free: Vec::new(),
            tx: self.tx.clone(),
            metrics: Arc::clone(&self.metrics),
            shared: Arc::clone(&self.shared),
        };
        Recorder {
            local: Some(Arc::new(Mutex::new(local))),
            ..self.clone()
        }
    }

    /// Hands what this thread packed to the writer if its oldest record
    /// has waited long enough; a local handle's thread calls it every few
    /// milliseconds, also while idle.
    pub fn tick(&self) {
        if let Some(local) = &self.local {
            let mut local = local.lock().unwrap_or_else(PoisonError::into_inner);
            if local.packer.due(Instant::now()) {
                local.flush();
            }
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
                .free
                .pop()
        {
            return captured;
        }
        self.pool.take()
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
                    local.pack(captured);
                    return;
                }
                // What the thread packed goes first, then this call.
                local.flush();
                Message::Whole(captured)
            }
            None => Message::Record(captured),
        };
        match self.tx.try_send(message) {
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

/// Downstream calls waiting for their inbound call's verdict (`--match`
/// and the rate cap decide about inbound calls): a recorded call's
/// downstream calls are stored with it, an unrecorded call's dropped with
/// it. A downstream call usually ends before its inbound call does, so it
/// waits here; one whose inbound call does not come within [`HOLD_FOR`]
/// (a long stream, or dropped from a full queue), or past [`HOLD_MAX`]
/// waiting, is stored anyway.
///
/// The verdicts on the last [`VERDICTS_MAX`] inbound calls (of the last
/// [`HOLD_FOR`] at most) are kept for downstream calls that end after
/// their inbound call (from a task that outlived it). One that ends after
/// its inbound call's verdict was forgotten (more than 1,000 inbound
/// calls a second for a minute) is taken for an orphan: it waits, and is
/// stored after [`HOLD_FOR`] even if its inbound call was refused.
/// Keeping every verdict of the last minute instead would cost memory in
/// proportion to the load.
struct Families<T> {
    waiting: HashMap<[u8; 16], (Instant, Vec<T>), Ids>,
    held: usize,
    verdicts: HashMap<[u8; 16], bool, Ids>,
    /// The ids in `verdicts`, oldest first, with when each was judged.
    judged: VecDeque<([u8; 16], Instant)>,
    last_sweep: Option<Instant>,
}

impl<T> Default for Families<T> {
    fn default() -> Self {
        Families {
            waiting: HashMap::default(),
            held: 0,
            verdicts: HashMap::default(),
            judged: VecDeque::new(),
            last_sweep: None,
        }
    }
}

/// Exchange ids hashed with foldhash: they are reprise's own UUIDv7s
/// (never a client's), so SipHash's defence buys nothing here, and it was
/// 7 % of the recorder's time per call with `--match`.
type Ids = foldhash::fast::RandomState;

/// Longest wait for an inbound call's verdict.
const HOLD_FOR: Duration = Duration::from_secs(60);

/// Most downstream calls waiting at once.
const HOLD_MAX: usize = 10_000;

/// Most verdicts kept (about 6 MiB with their index). Keeping every verdict of the last
/// [`HOLD_FOR`] grew the proxy to 216 MiB in 20 s of `--match` under load.
const VERDICTS_MAX: usize = 65_536;

/// What becomes of a downstream call's record.
#[derive(Debug, PartialEq, Eq)]
enum Child {
    /// Stored now.
    Keep,
    /// Dropped with its refused inbound call.
    Drop,
    /// Held until its inbound call is judged.
    Held,
}

impl<T> Families<T> {
    /// A downstream call of the inbound call `parent`; `hold` makes its
    /// record when it must wait.
    fn downstream(&mut self, parent: [u8; 16], hold: impl FnOnce() -> T) -> Child {
        if let Some(&keep) = self.verdicts.get(&parent) {
            return if keep { Child::Keep } else { Child::Drop };
        }
        if self.held >= HOLD_MAX {
            return Child::Keep;
        }
        self.held += 1;
        self.waiting
            .entry(parent)
            .or_insert_with(|| (Instant::now(), Vec::new()))
            .1
            .push(hold());
        Child::Held
    }

    /// The inbound call `id` was judged: its held downstream calls, to
    /// store with it or to drop with it.
    fn inbound(&mut self, id: [u8; 16], keep: bool) -> Vec<T> {
        let children = match self.waiting.remove(&id) {
            Some((_, children)) => {
                self.held -= children.len();
                children
            }
            None => Vec::new(),
        };
        if self.verdicts.insert(id, keep).is_none() {
            self.judged.push_back((id, Instant::now()));
            if self.judged.len() > VERDICTS_MAX {
                self.forget_oldest();
            }
        }
        children
    }

    /// Downstream calls that waited too long, to store; forgets old
    /// verdicts. Looks at most once a second.
    fn expired(&mut self, now: Instant) -> Vec<T> {
        if self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return Vec::new();
        }
        self.last_sweep = Some(now);
        while self
            .judged
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= HOLD_FOR)
        {
            self.forget_oldest();
        }
        let old: Vec<[u8; 16]> = self
            .waiting
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) >= HOLD_FOR)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in old {
            if let Some((_, children)) = self.waiting.remove(&id) {
                self.held -= children.len();
                out.extend(children);
            }
        }
        out
    }

    fn forget_oldest(&mut self) {
        if let Some((id, _)) = self.judged.pop_front() {
            self.verdicts.remove(&id);
        }
    }

    /// Everything still waiting (at close).
    fn rest(&mut self) -> Vec<T> {
        self.held = 0;
        self.waiting.drain().flat_map(|(_, (_, c))| c).collect()
    }
}

/// A record encoded and held for its inbound call's verdict.
struct Encoded {
    bytes: Vec<u8>,
    recorded_at_ns: u64,
}

/// Applies redaction and the sampling note, and stores; counts what
/// became of each exchange handed to the sink, and says when recording
/// degrades (the sink failed) and resumes (it wrote again).
struct Store<'a> {
    sink: Box<dyn Sink>,
    rules: &'a Rules,
    metrics: &'a Metrics,
    /// The first failure that is not a sink's write it goes on after
    /// (those are counted as `write_failed`), reported at close.
    first_error: Option<String>,
    /// The sink's own count, for a sink that writes what it took later (a
    /// tape): what it said last.
    tally: SinkTally,
    /// Where records are encoded, reused.
    scratch: Vec<u8>,
}

impl Store<'_> {
    /// Encodes `captured` into `out`: redacted, with the sampling note.
    fn encode(&self, captured: &Captured, out: &mut Vec<u8>) {
        captured.encode(&self.rules.redactor, self.rules.sample_rate, out);
    }

    /// Stores `captured`, encoded straight from the record.
    fn put(&mut self, captured: &Captured) {
        let rules = self.rules;
        self.put_by(captured.recorded_at_ns(), |out| {
            captured.encode(&rules.redactor, rules.sample_rate, out);
        });
    }

    /// Stores a call judged on its head, encoded from the parts the
    /// judging read.
    fn put_head(&mut self, head: HeadView<'_>) {
        let rules = self.rules;
        self.put_by(head.recorded_at_ns(), |out| {
            head.encode(&rules.redactor, rules.sample_rate, out);
        });
    }

    /// Stores what `encode` writes, recorded at `recorded_at_ns`.
    fn put_by(&mut self, recorded_at_ns: u64, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode(&mut scratch);
        let stored = self.sink.append_encoded(&scratch, recorded_at_ns);
        if scratch.capacity() <= SCRATCH_KEEP {
            self.scratch = scratch;
        }
        self.stored(stored);
    }

    /// `captured` encoded, to be stored later (in a buffer of its size:
    /// one grown by doubling would hold up to twice that).
    fn hold(&mut self, captured: &Captured) -> Encoded {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.encode(captured, &mut scratch);
        let bytes = scratch.as_slice().to_vec();
        if scratch.capacity() <= SCRATCH_KEEP {
            self.scratch = scratch;
        }
        Encoded {
            bytes,
            recorded_at_ns: captured.recorded_at_ns(),
        }
    }

    /// Stores records a serving thread packed.
    fn put_packed(&mut self, packed: Packed) {
        let count = u64::from(packed.count);
        match self.sink.append_packed(packed) {
            Ok(()) => self.outcome(count, Ok(())),
            Err(PackedError { stored, error }) => {
                // Stored first, then the failure: the last attempt, which
                // says what health is.
                self.count(u64::from(stored), &Ok(()));
                self.outcome(count.saturating_sub(u64::from(stored)), Err(error));
            }
        }
    }

    /// Counts what became of `handed` exchanges just handed to the sink
    /// (0 for a call that hands none over: a tick, the close), given what
    /// the call returned; says when recording degrades or resumes.
    ///
    /// A sink with a [`SinkTally`] counts each exchange itself (taken now,
    /// written or lost later): the counters follow its tally. For any
    /// other, `Ok` means stored and `Err` not.
    ///
    /// Health follows the last attempt: a failure the call returned;
    /// else a write since the last call (resumed); else exchanges the sink
    /// lost without saying so in a result (a writer thread's full disk:
    /// only its tally knows).
    fn outcome(&mut self, handed: u64, result: Result<(), StoreError>) {
        let (written, lost) = self.count(handed, &result);
        match result {
            Err(error) => {
                let reason = error.to_string();
                if !error.is_unwritten() {
                    self.first_error.get_or_insert_with(|| reason.clone());
                }
                self.metrics.degrade(reason);
            }
            Ok(()) if written > 0 => self.metrics.resume(),
            Ok(()) if lost > 0 => self.metrics.degrade(format!(
                "the sink could not write {lost} exchange{}",
                if lost == 1 { "" } else { "s" }
            )),
            Ok(()) => {}
        }
    }

    /// Counts what became of `handed` exchanges (as `outcome` says):
    /// those written and those lost since the last call.
    fn count(&mut self, handed: u64, result: &Result<(), StoreError>) -> (u64, u64) {
        let counted = match self.sink.tally() {
            Some(now) => {
                let was = std::mem::replace(&mut self.tally, now);
                let written = now.written.saturating_sub(was.written);
                let lost = now.unwritten.saturating_sub(was.unwritten);
                self.metrics.recorded.inc_by(written);
                self.metrics.dropped_write_failed.inc_by(lost);
                self.metrics
                    .dropped_sink_error
                    .inc_by(now.refused.saturating_sub(was.refused));
                (written, lost)
            }
            None => match result {
                Ok(()) => {
                    self.metrics.recorded.inc_by(handed);
                    (handed, 0)
                }
                Err(error) if error.is_unwritten() => {
                    self.metrics.dropped_write_failed.inc_by(handed);
                    (0, handed)
                }
                Err(_) => {
                    self.metrics.dropped_sink_error.inc_by(handed);
                    (0, 0)
                }
            },
        };
        if counted.0 > 0 {
            self.sink_bytes();
        }
        counted
    }

    /// Closes the sink and counts what it still wrote or lost; the first
    /// failure it cannot go on after, if any.
    fn close(mut self) -> Option<String> {
        match self.sink.close() {
            // What was written or lost is counted (the sink's tally); the
            // recording is over, so it degrades or resumes no more.
            Ok(()) => {
                self.count(0, &Ok(()));
            }
            Err(error) if error.is_unwritten() => {
                self.count(0, &Ok(()));
            }
            closed => self.outcome(0, closed),
        }
        self.first_error
    }

    fn sink_bytes(&self) {
        if let Some(bytes) = self.sink.bytes_written() {
            self.metrics
                .sink_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    fn put_held(&mut self, record: Encoded) {
        let stored = self
            .sink
            .append_encoded(&record.bytes, record.recorded_at_ns);
        self.stored(stored);
    }

    /// Lets the sink do what is due by time (an inline tape seals an old
    /// block); a failure is the sink's, as a failed append is.
    fn tick(&mut self) {
        let ticked = self.sink.tick();
        self.outcome(0, ticked);
    }

    fn stored(&mut self, result: Result<(), StoreError>) {
        self.outcome(1, result);
    }
}

/// How often, at least, the writer thread looks at the time: an
/// exchange waits at most this long to be looked at (the forward path
/// never wakes this thread), and the sink is ticked.
const TICK: Duration = Duration::from_millis(20);

/// The encoding buffer kept between records at most (a bigger one, left
/// by a large body, is freed).
const SCRATCH_KEEP: usize = 64 << 10;

fn write_loop(
    rx: Receiver<Message>,
    sink: Box<dyn Sink>,
    shared: &Shared,
    metrics: &Metrics,
    pool: &Pool,
) -> Result<(), String> {
    let mut cleared: Vec<Box<Captured>> = Vec::with_capacity(GIVE_BATCH);
    let gated = shared.gated();
    let mut families = Families::default();
    let mut store = Store {
        sink,
        rules: &shared.rules,
        metrics,
        first_error: None,
        tally: SinkTally::default(),
        scratch: Vec::new(),
    };
    let mut drain = Drain::new(rx, TICK);
    loop {
        let mut captured = match drain.next(Some(TICK)) {
            Next::Item(Message::Record(captured)) => captured,
            Next::Item(Message::Whole(mut captured)) => {
                metrics.queue_depth.dec();
                if !gated || captured.role() == Role::Downstream {
                    store.put(&captured);
                } else {
                    let head = captured.head();
                    if shared.keeps(&head, metrics) {
                        store.put_head(head);
                    }
                }
                captured.recycle();
                cleared.push(captured);
                if cleared.len() >= GIVE_BATCH {
                    pool.give(&mut cleared);
                }
                store.tick();
                continue;
            }
            Next::Item(Message::Packed(packed)) => {
                metrics.queue_depth.dec_by(i64::from(packed.count));
                store.put_packed(packed);
                store.tick();
                continue;
            }
            Next::Item(Message::Close) | Next::Closed => break,
            Next::Timeout => {
                store.tick();
                if gated {
                    for child in families.expired(Instant::now()) {
                        store.put_held(child);
                    }
                }
                continue;
            }
        };
        metrics.queue_depth.dec();
        let identity = captured.identity();
        let mut judged = None;
        if !gated {
            store.put(&captured);
        } else if captured.role() == Role::Downstream {
            let parent = identity.parent_id;
            match parent.map(|p| families.downstream(p, || store.hold(&captured))) {
                None | Some(Child::Keep) => store.put(&captured),
                Some(Child::Drop) => {
                    metrics.unmatched.inc();
                }
                Some(Child::Held) => {}
            }
        } else {
            // The rules read the call's head in place; its record is
            // encoded, from the same reading, only when it is kept.
            let head = captured.head();
            let keep = shared.keeps(&head, metrics);
            if keep {
                store.put_head(head);
            }
            judged = Some((families.inbound(identity.id, keep), keep));
        }
        captured.recycle();
        cleared.push(captured);
        if cleared.len() >= GIVE_BATCH {
            pool.give(&mut cleared);
        }
        // Its downstream calls follow an inbound call.
        if let Some((children, keep)) = judged {
            for child in children {
                if keep {
                    store.put_held(child);
                } else {
                    metrics.unmatched.inc();
                }
            }
        }
        if gated {
            for child in families.expired(Instant::now()) {
                store.put_held(child);
            }
        }
        store.tick();
    }
    for child in families.rest() {
        store.put_held(child);
    }
    // What was queued after the close is not stored: counted as dropped.
    while let Next::Item(message) = drain.next(Some(Duration::ZERO)) {
        let records = match message {
            Message::Record(_) | Message::Whole(_) => 1,
            Message::Packed(packed) => packed.count,
            Message::Close => 0,
        };
        metrics.queue_depth.dec_by(i64::from(records));
        metrics.dropped_closed.inc_by(u64::from(records));
    }
    let first_error = store.close();
    let packing = shared
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match first_error.or(packing) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HealthEvent;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    #[test]
    fn downstream_calls_follow_their_inbound_calls_verdict() {
        let mut families: Families<u8> = Families::default();
        for (child, parent) in [(11, 1), (12, 1), (21, 2)] {
            assert_eq!(families.downstream(id(parent), || child), Child::Held);
        }
        assert_eq!(
            families.inbound(id(1), true),
            [11, 12],
            "a kept parent's children"
        );
        assert_eq!(
            families.inbound(id(2), false),
            [21],
            "a refused parent's children"
        );
        // A late child of a known parent follows the verdict at once.
        assert_eq!(families.downstream(id(1), || 13), Child::Keep);
        assert_eq!(families.downstream(id(2), || 22), Child::Drop);
        // An orphan waits, then is stored when its parent never comes.
        assert_eq!(families.downstream(id(3), || 31), Child::Held);
        let now = Instant::now();
        assert!(families.expired(now).is_empty());
        assert!(families.expired(now + Duration::from_millis(10)).is_empty());
        assert_eq!(
            families.expired(now + HOLD_FOR + Duration::from_secs(2)),
            [31]
        );
        assert_eq!(families.held, 0);
        assert!(families.rest().is_empty());
        // Past HOLD_MAX waiting, a child is stored at once.
        for n in 0..HOLD_MAX {
            let mut parent = [9; 16];
            parent[..8].copy_from_slice(&(n as u64).to_le_bytes());
            assert_eq!(families.downstream(parent, || 0), Child::Held);
        }
        assert_eq!(families.downstream(id(4), || 41), Child::Keep);
        assert_eq!(families.rest().len(), HOLD_MAX);
    }

    /// A call through `recorder` to `path`, answered 200 with `body_len`
    /// bytes, both bodies done; a downstream call of `parent` when given.
    fn call_with(
        recorder: &Recorder,
        path: &str,
        body_len: usize,
        parent: Option<[u8; 16]>,
    ) -> [u8; 16] {
        let origin = Arc::new(crate::recording::Origin {
            service: "shop".into(),
            instance: String::new(),
            recorder: "proxy",
            role: if parent.is_some() {
                Role::Downstream
            } else {
                Role::Inbound
            },
            listener: "127.0.0.1:8080".into(),
            scheme: "http",
            authority: "shop.example".into(),
            server_addr: String::new(),
            max_body: 1 << 20,
        });
        let uri: http::Uri = path.parse().unwrap_or_default();
        let headers = http::HeaderMap::new();
        let identity = crate::recording::Identity {
            id: reprise_model::id::new_id_bytes(),
            parent_id: parent,
            ..Default::default()
        };
        let recording = crate::recording::Recording::new(
            recorder.clone(),
            origin,
            identity,
            crate::recording::RequestHead {
                method: &http::Method::GET,
                uri: &uri,
                version: http::Version::HTTP_11,
                headers: &headers,
            },
        );
        recording.response_head(http::StatusCode::OK, &headers);
        let request = recording.lend_body(crate::recording::Side::Request);
        recording.body_done(crate::recording::Side::Request, request);
        let mut response = recording.lend_body(crate::recording::Side::Response);
        if body_len > 0 {
            response.data(0, &bytes::Bytes::from(vec![b'x'; body_len]), 1 << 20);
        }
        recording.body_done(crate::recording::Side::Response, response);
        identity.id
    }

    fn call(recorder: &Recorder, path: &str) {
        call_with(recorder, path, 0, None);
    }

    /// A recorder over a memory sink, with `--match path=/keep/*` when
    /// `matching` and the rate cap `max_rate`.
    fn recorder(
        matching: bool,
        max_rate: Option<u32>,
    ) -> (
        reprise_model::MemorySink,
        Arc<Metrics>,
        Recorder,
        RecorderThread,
    ) {
        let sink = reprise_model::MemorySink::new();
        let (metrics, recorder, thread) = recorder_over(Box::new(sink.clone()), matching, max_rate);
        (sink, metrics, recorder, thread)
    }

    /// A recorder over `sink`, with the rules [`recorder`] takes.
    fn recorder_over(
        sink: Box<dyn Sink>,
        matching: bool,
        max_rate: Option<u32>,
    ) -> (Arc<Metrics>, Recorder, RecorderThread) {
        let filter = if matching {
            ExchangeFilter::new()
                .add_match("path=/keep/*")
                .unwrap_or_else(|e| panic!("{e}"))
        } else {
            ExchangeFilter::new()
        };
        let rules = Rules {
            filter,
            max_rate,
            redactor: Redactor::default(),
            sample_rate: 1.0,
        };
        let metrics = Arc::new(Metrics::new());
        let started = Recorder::start(sink, rules, 100, Arc::clone(&metrics));
        let Ok((recorder, thread)) = started else {
            panic!("no recorder thread");
        };
        (metrics, recorder, thread)
    }

    /// Closes `thread`; `sink` then holds the calls to `paths`, in order,
    /// and the counters say so, with `unmatched` refused by `--match`.
    fn closed_with(
        thread: RecorderThread,
        recorder: &Recorder,
        (sink, metrics): (&reprise_model::MemorySink, &Metrics),
        want: &[&str],
        unmatched: u64,
    ) {
        assert_eq!(thread.close(recorder, Duration::from_secs(5)), Ok(()));
        assert_eq!(paths(sink), want);
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.recorded, stats.unmatched, stats.dropped()),
            (want.len() as u64, unmatched, 0)
        );
        assert_eq!(metrics.queue_depth.get(), 0);
    }

    fn paths(sink: &reprise_model::MemorySink) -> Vec<String> {
        sink.exchanges()
            .iter()
            .map(|e| {
                e.request
                    .as_ref()
                    .map(|r| r.path.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn a_local_handle_judges_and_packs_on_its_thread() {
        let (sink, metrics, recorder, thread) = recorder(true, None);
        let local = recorder.local();
        for path in ["/keep/1", "/other", "/keep/2"] {
            call(&local, path);
        }
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.unmatched, stats.recorded),
            (1, 0),
            "judged here, packed"
        );
        // The pack goes once its oldest record is old enough (20 ms for a
        // store with no packer of its own) and the thread ticks.
        let deadline = Instant::now() + Duration::from_secs(5);
        while metrics.snapshot().recorded < 2 && Instant::now() < deadline {
            local.tick();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(metrics.snapshot().recorded, 2);
        // The last clone of a handle hands over what it still holds.
        let other = recorder.local();
        call(&other, "/keep/3");
        drop(other);
        drop(local);
        closed_with(
            thread,
            &recorder,
            (&sink, &metrics),
            &["/keep/1", "/keep/2", "/keep/3"],
            1,
        );
    }

    #[test]
    fn a_big_call_goes_whole_after_what_its_thread_packed() {
        let (sink, metrics, recorder, thread) = recorder(true, None);
        let local = recorder.local();
        call(&local, "/keep/small-1");
        call_with(&local, "/keep/big", LOCAL_RECORD_MAX + 1, None);
        call_with(&local, "/other-big", LOCAL_RECORD_MAX + 1, None);
        call(&local, "/keep/small-2");
        local.flush_within(Duration::from_secs(1));
        drop(local);
        // In the thread's order; the big call judged by the writer thread.
        closed_with(
            thread,
            &recorder,
            (&sink, &metrics),
            &["/keep/small-1", "/keep/big", "/keep/small-2"],
            1,
        );
        let big = &sink.exchanges()[1];
        assert_eq!(
            big.response.as_ref().map(|r| r.body.len()),
            Some(LOCAL_RECORD_MAX + 1)
        );
    }

    #[test]
    fn a_downstream_call_on_a_local_handle_does_not_wait_for_a_verdict() {
        let (sink, metrics, recorder, thread) = recorder(true, None);
        let local = recorder.local();
        let refused = call_with(&local, "/other", 0, None);
        call_with(&local, "/child-of-other", 0, Some(refused));
        call_with(&local, "/big-child", LOCAL_RECORD_MAX + 1, Some(refused));
        local.flush_within(Duration::from_secs(1));
        drop(local);
        let closed_at = Instant::now();
        assert_eq!(thread.close(&recorder, Duration::from_secs(5)), Ok(()));
        assert!(closed_at.elapsed() < Duration::from_secs(2), "nothing held");
        // As documented: a local handle's verdicts stay on its thread.
        assert_eq!(paths(&sink), ["/child-of-other", "/big-child"]);
        assert_eq!(metrics.snapshot().unmatched, 1);
    }

    #[test]
    fn the_rate_cap_counts_every_threads_calls() {
        let (sink, metrics, recorder, thread) = recorder(false, Some(2));
        let (a, b) = (recorder.local(), recorder.local());
        for i in 0..3 {
            call(&a, &format!("/a/{i}"));
            call(&b, &format!("/b/{i}"));
        }
        drop((a, b));
        assert_eq!(thread.close(&recorder, Duration::from_secs(5)), Ok(()));
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.recorded, stats.dropped_rate_limit),
            (2, 4),
            "{stats:?}"
        );
        assert_eq!(sink.exchanges().len(), 2);
    }

    /// A sink whose first append says it has begun, then waits for a
    /// word to finish.
    struct Gated {
        entered: Option<mpsc::Sender<()>>,
        gate: Receiver<()>,
    }

    impl Sink for Gated {
        fn append(&mut self, _: reprise_model::Exchange) -> Result<(), StoreError> {
            if let Some(entered) = self.entered.take() {
                let _ = entered.send(());
                let _ = self.gate.recv_timeout(Duration::from_secs(10));
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn what_is_queued_after_the_close_is_counted_as_dropped() {
        let (entered, has_entered) = mpsc::channel();
        let (open, gate) = mpsc::channel();
        let sink = Gated {
            entered: Some(entered),
            gate,
        };
        let (metrics, recorder, thread) = recorder_over(Box::new(sink), false, None);
        // The first call holds the writer in the sink while the close,
        // then another call, are queued behind it, in that order.
        call(&recorder, "/first");
        has_entered
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the writer never stored the first call: {e}"));
        assert!(recorder.tx.try_send(Message::Close).is_ok());
        call(&recorder, "/late");
        let _ = open.send(());
        assert_eq!(thread.close(&recorder, Duration::from_secs(5)), Ok(()));
        let stats = metrics.snapshot();
        assert_eq!((stats.recorded, stats.dropped_closed), (1, 1), "{stats:?}");
        assert_eq!(metrics.queue_depth.get(), 0);
    }

    /// A sink like a tape writer with a thread of its own: every append is
    /// taken (`Ok`), and written or lost later, which only its tally
    /// says. `losing` says which.
    struct Threaded {
        losing: Arc<std::sync::atomic::AtomicBool>,
        tally: SinkTally,
    }

    impl Sink for Threaded {
        fn append(&mut self, _: reprise_model::Exchange) -> Result<(), StoreError> {
            if self.losing.load(std::sync::atomic::Ordering::SeqCst) {
                self.tally.unwritten += 1;
            } else {
                self.tally.written += 1;
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn tally(&self) -> Option<SinkTally> {
            Some(self.tally)
        }
    }

    /// Exchanges a writer thread loses degrade recording (said, and
    /// `/healthz` says why) though every append returned `Ok`; a write
    /// resumes it. The listener runs outside the health lock: it may ask
    /// for the health itself.
    #[test]
    fn losses_only_the_tally_knows_degrade_and_a_write_resumes() {
        let losing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sink = Threaded {
            losing: Arc::clone(&losing),
            tally: SinkTally::default(),
        };
        let (metrics, recorder, thread) = recorder_over(Box::new(sink), false, None);
        let (said, events) = mpsc::channel();
        let asked = Arc::clone(&metrics);
        metrics.on_health(move |event| {
            let _ = said.send((event.clone(), asked.degraded()));
        });
        let next = || {
            events
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("no health event: {e}"))
        };
        call(&recorder, "/lost");
        let (event, degraded) = next();
        assert!(
            matches!(&event, HealthEvent::Degraded { reason } if reason == "the sink could not write 1 exchange"),
            "{event:?}"
        );
        assert_eq!(
            degraded.as_deref(),
            Some("the sink could not write 1 exchange")
        );
        losing.store(false, std::sync::atomic::Ordering::SeqCst);
        call(&recorder, "/written");
        let (event, degraded) = next();
        assert!(
            matches!(event, HealthEvent::Resumed { dropped: 1 }),
            "{event:?}"
        );
        assert_eq!(degraded, None);
        assert_eq!(thread.close(&recorder, Duration::from_secs(5)), Ok(()));
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.recorded, stats.dropped_write_failed),
            (1, 1),
            "{stats:?}"
        );
    }

    #[test]
    fn verdicts_kept_are_bounded() {
        let mut families: Families<u8> = Families::default();
        for n in 0..VERDICTS_MAX as u32 + 10 {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            families.inbound(id, false);
        }
        assert_eq!(families.verdicts.len(), VERDICTS_MAX);
        assert_eq!(families.judged.len(), VERDICTS_MAX);
        // The oldest are forgotten: a late child of one waits.
        assert_eq!(families.downstream([0; 16], || 1), Child::Held);
        let mut last = [0; 16];
        last[..4].copy_from_slice(&(VERDICTS_MAX as u32 + 9).to_le_bytes());
        assert_eq!(families.downstream(last, || 2), Child::Drop);
        // All are forgotten once old.
        families.expired(Instant::now() + HOLD_FOR + Duration::from_secs(1));
        assert!(families.verdicts.is_empty() && families.judged.is_empty());
    }
}
