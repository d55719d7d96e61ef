//! The writer thread: owns the sink, stores what the queue brings
//! (records to judge and encode, or packs a serving thread made), holds
//! downstream calls for their inbound call's verdict, and counts what
//! became of each exchange.

use std::sync::PoisonError;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use reprise_model::drain::{Drain, Next};
use reprise_model::pack::{Packed, PackedError};
use reprise_model::select::CallHead;
use reprise_model::{Role, Sink, SinkTally, StoreError};

use crate::captured::Captured;
use crate::head::HeadView;
use crate::held::{ChildFate, ParentVerdicts};
use crate::metrics::Metrics;
use crate::pool::{GIVE_BATCH, Pool};
use crate::recorder::{Message, Shared};
use crate::rules::Rules;

/// A record encoded and held for its inbound call's verdict.
struct HeldRecord {
    bytes: Vec<u8>,
    recorded_at_ns: u64,
}

/// Applies redaction and the sampling note, and stores; counts what
/// became of each exchange handed to the sink, and says when recording
/// degrades (the sink failed) and resumes (it wrote again).
struct CountingSink<'a> {
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

impl CountingSink<'_> {
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
    fn hold(&mut self, captured: &Captured) -> HeldRecord {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.encode(captured, &mut scratch);
        let bytes = scratch.as_slice().to_vec();
        if scratch.capacity() <= SCRATCH_KEEP {
            self.scratch = scratch;
        }
        HeldRecord {
            bytes,
            recorded_at_ns: captured.recorded_at_ns(),
        }
    }

    /// Stores an exchange built whole.
    fn put_built(&mut self, exchange: &reprise_model::Exchange) {
        self.put_by(exchange.recorded_at_ns, |out| {
            reprise_model::encode(exchange, out);
        });
    }

    /// An exchange built whole, encoded, to be stored later.
    fn hold_built(&mut self, exchange: &reprise_model::Exchange) -> HeldRecord {
        let mut bytes = Vec::with_capacity(reprise_model::encoded_len(exchange));
        reprise_model::encode(exchange, &mut bytes);
        HeldRecord {
            bytes,
            recorded_at_ns: exchange.recorded_at_ns,
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

    fn put_held(&mut self, record: HeldRecord) {
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
pub(crate) const SCRATCH_KEEP: usize = 64 << 10;

pub(crate) fn write_loop(
    rx: Receiver<Message>,
    sink: Box<dyn Sink>,
    shared: &Shared,
    metrics: &Metrics,
    pool: &Pool,
) -> Result<(), String> {
    let mut cleared: Vec<Box<Captured>> = Vec::with_capacity(GIVE_BATCH);
    let gated = shared.judge.gated();
    let mut parents = ParentVerdicts::default();
    let mut store = CountingSink {
        sink,
        rules: &shared.judge.rules,
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
                    if shared.judge.keeps(&head, metrics) {
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
            Next::Item(Message::Built(mut exchange)) => {
                metrics.queue_depth.dec();
                if shared.judge.rules.sample_rate < 1.0 {
                    exchange.flags.get_or_insert_default().sample_rate =
                        Some(shared.judge.rules.sample_rate);
                }
                let parent = <[u8; 16]>::try_from(exchange.parent_id.as_slice()).ok();
                match parent.filter(|_| gated) {
                    None => store.put_built(&exchange),
                    Some(parent) => {
                        match parents.downstream(parent, || store.hold_built(&exchange)) {
                            ChildFate::StoreNow => store.put_built(&exchange),
                            ChildFate::DropWithParent => {
                                metrics.unmatched.inc();
                            }
                            ChildFate::WaitForParent => {}
                        }
                    }
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
                    for child in parents.expired(Instant::now()) {
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
            match parent.map(|p| parents.downstream(p, || store.hold(&captured))) {
                None | Some(ChildFate::StoreNow) => store.put(&captured),
                Some(ChildFate::DropWithParent) => {
                    metrics.unmatched.inc();
                }
                Some(ChildFate::WaitForParent) => {}
            }
        } else {
            // The rules read the call's head in place; its record is
            // encoded, from the same reading, only when it is kept.
            let head = captured.head();
            let keep = shared.judge.keeps(&head, metrics);
            if keep {
                store.put_head(head);
            }
            judged = Some((parents.inbound(identity.id, keep), keep));
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
            for child in parents.expired(Instant::now()) {
                store.put_held(child);
            }
        }
        store.tick();
    }
    for child in parents.rest() {
        store.put_held(child);
    }
    // What was queued after the close is not stored: counted as dropped.
    while let Next::Item(message) = drain.next(Some(Duration::ZERO)) {
        let records = match message {
            Message::Record(_) | Message::Whole(_) | Message::Built(_) => 1,
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
    use std::sync::Arc;
    use std::sync::mpsc;

    use super::*;
    use crate::metrics::HealthEvent;
    use crate::testing::*;

    fn sqls(sink: &reprise_model::MemorySink) -> Vec<String> {
        sink.exchanges()
            .iter()
            .filter_map(|e| Some(e.db.as_ref()?.statements.first()?.sql.clone()))
            .collect()
    }

    #[test]
    fn a_built_exchange_is_stored_as_it_is_and_follows_its_parents_verdict() {
        let (sink, metrics, recorder, thread) = recorder(true, None);
        let kept = call_with(&recorder, "/keep/1", 0, None);
        let refused = call_with(&recorder, "/other", 0, None);
        recorder.submit_exchange(database_call(Some(kept), "SELECT 1"));
        recorder.submit_exchange(database_call(Some(refused), "SELECT 2"));
        recorder.submit_exchange(database_call(None, "SET search_path TO app"));
        assert_eq!(thread.close(&recorder, Duration::from_secs(5)), Ok(()));
        assert_eq!(sqls(&sink), ["SELECT 1", "SET search_path TO app"]);
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.recorded, stats.unmatched, stats.dropped()),
            (3, 2, 0)
        );
        assert_eq!(metrics.queue_depth.get(), 0);
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
}
