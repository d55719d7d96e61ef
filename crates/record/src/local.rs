//! A serving thread's own packing ([`Recorder::local`](crate::Recorder::local)):
//! the thread that served a call judges, encodes and packs it, and only
//! full packs cross the queue to the writer thread.
//!
//! A call's record is complete when its response body ends, which its
//! server learns by reading the last frame, before writing that frame to
//! the client. With a [`Packing`] task running on the thread, the record
//! waits in `pending` and the task packs it once the call's own task has
//! written its answer and yielded: the encoding runs after the call, not
//! on its latency.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use reprise_model::pack::{Packed, Packer};
use reprise_model::{Exchange, Role};

use crate::captured::Captured;
use crate::metrics::Metrics;
use crate::recorder::{Message, Shared};
use crate::writer::SCRATCH_KEEP;

/// A serving thread's own packing: its pack being filled, its encoding
/// buffer and its cleared records.
pub(crate) struct Local {
    packer: Box<dyn Packer>,
    scratch: Vec<u8>,
    #[allow(clippy::vec_box)] // records travel boxed; the box is reused
    free: Vec<Box<Captured>>,
    /// Records waiting for the thread's [`Packing`] task, while one runs.
    pending: VecDeque<Pending>,
    /// The packing task, while one runs: `None` packs each record when it
    /// is submitted.
    packing: Option<PackingState>,
    tx: SyncSender<Message>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
}

/// A record waiting for the packing task.
enum Pending {
    /// A call the proxy captured.
    Captured(Box<Captured>),
    /// An exchange its recorder built whole (a database or cache call).
    Built(Box<Exchange>),
}

/// Cleared records a thread keeps for its next calls, at most.
const LOCAL_FREE_MAX: usize = 256;

/// Records waiting for the packing task, at most: past it a call packs
/// its own (a thread so busy that its packing task lags does the work
/// inline rather than hold more records).
const PENDING_MAX: usize = 128;

/// The thread's packing task, as `Local` sees it.
struct PackingState {
    /// Wakes the task; `None` while it is awake.
    waker: Option<Waker>,
}

/// The biggest record a local handle's thread packs itself (see
/// [`Recorder::local`](crate::Recorder::local)).
pub const LOCAL_RECORD_MAX: usize = 64 << 10;

impl Local {
    /// A thread's packing with `packer` (another of the sink's), handing
    /// packs over on `tx`.
    pub(crate) fn new(
        packer: Box<dyn Packer>,
        tx: SyncSender<Message>,
        metrics: Arc<Metrics>,
        shared: Arc<Shared>,
    ) -> Local {
        Local {
            packer,
            scratch: Vec::new(),
            free: Vec::new(),
            pending: VecDeque::new(),
            packing: None,
            tx,
            metrics,
            shared,
        }
    }

    /// A record this thread cleared, if it kept one.
    pub(crate) fn take_free(&mut self) -> Option<Box<Captured>> {
        self.free.pop()
    }

    /// Takes `captured` for packing: at once, or, while a packing task
    /// runs and has room, when the task next runs.
    pub(crate) fn submit(&mut self, captured: Box<Captured>) {
        self.defer_or_pack(Pending::Captured(captured));
    }

    /// Takes `exchange`, built whole by its recorder, for packing as
    /// [`Local::submit`] takes a call's record. The caller keeps it when
    /// `--match` or the rate cap judge calls: it then follows its parent's
    /// verdict on the writer thread.
    pub(crate) fn submit_built(&mut self, exchange: Box<Exchange>) {
        self.defer_or_pack(Pending::Built(exchange));
    }

    fn defer_or_pack(&mut self, record: Pending) {
        match &mut self.packing {
            Some(state) if self.pending.len() < PENDING_MAX => {
                self.pending.push_back(record);
                if let Some(waker) = state.waker.take() {
                    waker.wake();
                }
            }
            _ => {
                self.pack_pending();
                self.pack_one(record);
            }
        }
    }

    /// Packs every record waiting for the packing task, in order.
    fn pack_pending(&mut self) {
        while let Some(record) = self.pending.pop_front() {
            self.pack_one(record);
        }
    }

    fn pack_one(&mut self, record: Pending) {
        match record {
            Pending::Captured(captured) => self.pack(captured),
            Pending::Built(exchange) => self.pack_built(*exchange),
        }
    }

    /// Encodes and packs an exchange built whole, with the sampling note
    /// (as the writer thread stores one); one bigger than
    /// [`LOCAL_RECORD_MAX`] goes to the writer thread whole, after what
    /// the thread packed before it.
    fn pack_built(&mut self, mut exchange: Exchange) {
        let rate = self.shared.judge.rules.sample_rate;
        if rate < 1.0 {
            exchange.flags.get_or_insert_default().sample_rate = Some(rate);
        }
        if reprise_model::encoded_len(&exchange) > LOCAL_RECORD_MAX {
            // What was packed before it goes first (not what waits after
            // it: this may run inside `pack_pending`).
            if let Some(packed) = self.packer.flush() {
                self.hand_over(packed);
            }
            crate::recorder::queue_one(&self.tx, &self.metrics, Message::Built(Box::new(exchange)));
            return;
        }
        self.scratch.clear();
        reprise_model::encode(&exchange, &mut self.scratch);
        self.add_scratch(exchange.recorded_at_ns);
    }

    /// Adds the record in `scratch` to the pack, handing the pack over
    /// when full.
    fn add_scratch(&mut self, recorded_at_ns: u64) {
        match self.packer.add(&self.scratch, recorded_at_ns) {
            Ok(Some(packed)) => self.hand_over(packed),
            Ok(None) => {}
            Err(error) => {
                self.metrics.dropped_sink_error.inc();
                self.shared
                    .first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert_with(|| error.to_string());
            }
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    /// Hands what is packed over if its oldest record has waited long
    /// enough.
    pub(crate) fn tick(&mut self) {
        self.pack_pending();
        if self.packer.due(Instant::now()) {
            self.flush();
        }
    }

    /// Judges, encodes and packs `captured` on this thread.
    pub(crate) fn pack(&mut self, mut captured: Box<Captured>) {
        let shared = &*self.shared;
        let rules = &shared.judge.rules;
        let recorded_at_ns = captured.recorded_at_ns();
        self.scratch.clear();
        let keep = if shared.judge.gated() && captured.role() == Role::Inbound {
            // Read once: the rules judge the head, and a kept call is
            // encoded from the same reading.
            let head = captured.head();
            let keep = shared.judge.keeps(&head, &self.metrics);
            if keep {
                head.encode(&rules.redactor, rules.sample_rate, &mut self.scratch);
            }
            keep
        } else {
            captured.encode(&rules.redactor, rules.sample_rate, &mut self.scratch);
            true
        };
        if keep {
            self.add_scratch(recorded_at_ns);
        } else if self.scratch.capacity() > SCRATCH_KEEP {
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

    /// Hands what is packed over now, or drops and counts it.
    pub(crate) fn flush(&mut self) {
        self.pack_pending();
        if let Some(packed) = self.packer.flush() {
            self.hand_over(packed);
        }
    }

    /// Hands what is packed over, waiting up to `deadline` for room in
    /// the queue (at shutdown, when the thread has nothing else to do).
    pub(crate) fn flush_within(&mut self, deadline: Duration) {
        self.pack_pending();
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

/// The future a serving thread runs beside its calls to pack their
/// records after they are answered ([`Recorder::packing`](crate::Recorder::packing)).
/// It never completes; dropping it packs what waits and makes each call
/// pack its own again.
pub struct Packing {
    local: Arc<Mutex<Local>>,
    /// Woken with records to pack, it yields once first: the wake came
    /// from a call still being served, whose answer may be written by
    /// another task (an HTTP/2 connection's) queued behind this one.
    yielded: bool,
}

impl Packing {
    pub(crate) fn new(local: Arc<Mutex<Local>>) -> Packing {
        local.lock().unwrap_or_else(PoisonError::into_inner).packing =
            Some(PackingState { waker: None });
        Packing {
            local,
            yielded: false,
        }
    }
}

impl Future for Packing {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if !local.pending.is_empty() {
            if !self.yielded {
                drop(local);
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            local.pack_pending();
        }
        if let Some(state) = &mut local.packing {
            state.waker = Some(cx.waker().clone());
        }
        drop(local);
        self.yielded = false;
        Poll::Pending
    }
}

impl Drop for Packing {
    fn drop(&mut self) {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.packing = None;
        local.pack_pending();
    }
}

impl Drop for Local {
    /// The last handle of a thread is gone (its calls with it): what it
    /// packed goes to the writer.
    fn drop(&mut self) {
        self.flush();
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use std::task::{Context, Waker};

    /// `local`'s packing task, polled once: waiting for records.
    fn packing_started(local: &crate::Recorder) -> (Pin<Box<Packing>>, Context<'static>) {
        let mut packing = Box::pin(local.packing().unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(packing.as_mut().poll(&mut cx).is_pending());
        (packing, cx)
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
    fn with_a_packing_task_calls_are_packed_when_it_runs_in_their_order() {
        let (sink, metrics, recorder, thread) = recorder(false, None);
        let local = recorder.local();
        let (mut packing, mut cx) = packing_started(&local);
        call(&local, "/1");
        call(&local, "/2");
        let waiting = || local.local.as_ref().unwrap().lock().unwrap().pending.len();
        assert_eq!(waiting(), 2, "not packed on the calls' path");
        // Woken, the task yields once, then packs.
        assert!(packing.as_mut().poll(&mut cx).is_pending());
        assert_eq!(waiting(), 2);
        assert!(packing.as_mut().poll(&mut cx).is_pending());
        assert_eq!(waiting(), 0);
        // A big call still goes after what waited.
        call(&local, "/3");
        call_with(&local, "/big", LOCAL_RECORD_MAX + 1, None);
        assert_eq!(waiting(), 0);
        // Dropped, the task packs what waits, and calls pack their own.
        call(&local, "/4");
        drop(packing);
        assert_eq!(waiting(), 0);
        call(&local, "/5");
        assert_eq!(waiting(), 0);
        drop(local);
        closed_with(
            thread,
            &recorder,
            (&sink, &metrics),
            &["/1", "/2", "/3", "/big", "/4", "/5"],
            0,
        );
    }

    #[test]
    fn built_exchanges_are_packed_on_the_thread_in_order_with_the_calls() {
        let (sink, metrics, recorder, thread) = recorder(false, None);
        let local = recorder.local();
        let (mut packing, mut cx) = packing_started(&local);
        call(&local, "/1");
        local.submit_exchange(database_call(None, "SELECT 1"));
        let waiting = || local.local.as_ref().unwrap().lock().unwrap().pending.len();
        assert_eq!(waiting(), 2, "not packed on the calls' path");
        assert!(packing.as_mut().poll(&mut cx).is_pending());
        assert!(packing.as_mut().poll(&mut cx).is_pending());
        assert_eq!(waiting(), 0);
        assert_eq!(
            metrics.queue_depth.get(),
            0,
            "packed here: nothing crossed the queue yet"
        );
        // One too big for the thread goes whole, after what it packed.
        let mut big = database_call(None, "SELECT big");
        if let Some(db) = big.db.as_mut() {
            db.statements[0].params = vec![reprise_model::SqlValue {
                data: vec![b'x'; LOCAL_RECORD_MAX + 1],
                ..Default::default()
            }];
        }
        local.submit_exchange(database_call(None, "SELECT 2"));
        local.submit_exchange(big);
        call(&local, "/3");
        drop(packing);
        drop(local);
        closed_with(
            thread,
            &recorder,
            (&sink, &metrics),
            &["/1", "SELECT 1", "SELECT 2", "SELECT big", "/3"],
            0,
        );
    }

    #[test]
    fn built_exchanges_carry_the_sampling_note() {
        let sink = reprise_model::MemorySink::new();
        let rules = crate::rules::Rules {
            filter: reprise_model::select::ExchangeFilter::new(),
            max_rate: None,
            redactor: reprise_model::redact::Redactor::default(),
            sample_rate: 0.25,
        };
        let metrics = Arc::new(Metrics::new());
        let Ok((recorder, thread)) =
            crate::Recorder::start(Box::new(sink.clone()), rules, 100, Arc::clone(&metrics))
        else {
            panic!("no recorder thread");
        };
        let local = recorder.local();
        local.submit_exchange(database_call(None, "SELECT 1"));
        drop(local);
        assert_eq!(thread.close(&recorder, Duration::from_secs(5)), Ok(()));
        let stored = sink.exchanges();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].flags.as_ref().and_then(|f| f.sample_rate),
            Some(0.25)
        );
    }

    #[test]
    fn a_lagging_packing_task_holds_a_bounded_number_of_calls() {
        let (sink, metrics, recorder, thread) = recorder(false, None);
        let local = recorder.local();
        let packing = local.packing().unwrap();
        let paths: Vec<String> = (0..=PENDING_MAX).map(|i| format!("/{i}")).collect();
        for path in &paths {
            call(&local, path);
        }
        let waiting = local.local.as_ref().unwrap().lock().unwrap().pending.len();
        assert_eq!(
            waiting, 0,
            "past the bound, the call packed what waited and itself"
        );
        drop(packing);
        drop(local);
        let expected: Vec<&str> = paths.iter().map(String::as_str).collect();
        closed_with(thread, &recorder, (&sink, &metrics), &expected, 0);
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
}
