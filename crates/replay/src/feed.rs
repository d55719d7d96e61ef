//! The feed: calls in due order, from the reader thread to the workers.
//!
//! A reader thread reads the recording, builds each call once, puts the
//! calls in recorded start order (a recorder writes exchanges as they
//! finish), gives each its due time and hands them over in batches. The
//! workers take one call at a time. Handing over in batches keeps the
//! reader and the workers from waking each other for every call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Intact, Source, StoreError, endpoint_key};
use tokio::sync::Notify;

use crate::call::{Call, CallBuilder, Skip};
use crate::schedule::ReplaySchedule;

/// Calls the reader keeps ready ahead of the workers.
const AHEAD: usize = 1024;
/// Calls handed over at once.
const BATCH: usize = 64;
/// How late an exchange may appear in the recording after others that
/// started later, and still be put back in start order.
const REORDER_HORIZON_NS: u64 = 10_000_000_000;
/// Most calls held back for reordering.
const REORDER_MAX: usize = 10_000;
/// A recording whose calls fit in this many bytes is read once and kept
/// for `--loop`; a bigger one is read again for each pass.
const LOOP_CACHE_BYTES: usize = 256 << 20;

/// One call with its due time.
#[derive(Debug, Clone)]
pub struct Job {
    /// The call.
    pub call: Arc<Call>,
    /// Due offset from the start of the replay; `None`: at once.
    pub due: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<Job>,
    /// The reader is done (or was stopped): no more jobs will come.
    closed: bool,
    reader_waiting: bool,
}

/// The hand-over between the reader thread and the workers.
#[derive(Debug, Default)]
pub struct Feed {
    state: Mutex<State>,
    /// Workers wait here for jobs.
    jobs: Notify,
    /// The reader waits here for room.
    room: Condvar,
    /// Set by [`Feed::stop`].
    stopped: AtomicBool,
    /// Wakes workers sleeping until a due time when the replay stops.
    stop_signal: Notify,
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job, or `None` once the feed is closed and empty.
    pub async fn next(&self) -> Option<Job> {
        let mut one = VecDeque::with_capacity(1);
        self.take(&mut one, 1, 1).await;
        one.pop_front()
    }

    /// Moves the next jobs into `local`: the next one, and with it up to
    /// `most - 1` more when they are all due at once (`--max`), so that a
    /// worker does not take the shared lock for every call. A worker takes
    /// no more than its share of the queue among `workers`: calls one
    /// worker holds wait for each other (a hanging target would time them
    /// out one after another) while other workers sit idle. A job with a
    /// due time always comes alone: the open-loop schedule needs every
    /// free worker to be able to take it. Leaves `local` empty once the
    /// feed is closed and empty.
    pub async fn take(&self, local: &mut VecDeque<Job>, most: usize, workers: usize) {
        loop {
            let notified = self.jobs.notified();
            {
                let mut state = self.lock();
                let share = state.jobs.len().div_ceil(workers.max(1)).min(most);
                if let Some(job) = state.jobs.pop_front() {
                    let at_once = job.due.is_none();
                    local.push_back(job);
                    while at_once
                        && local.len() < share
                        && state.jobs.front().is_some_and(|j| j.due.is_none())
                    {
                        local.extend(state.jobs.pop_front());
                    }
                    if state.reader_waiting && state.jobs.len() <= AHEAD / 2 {
                        state.reader_waiting = false;
                        self.room.notify_one();
                    }
                    return;
                }
                if state.closed {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Whether the replay was stopped: jobs a worker holds are dropped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Returns once the replay is stopped.
    pub async fn until_stopped(&self) {
        loop {
            let signal = self.stop_signal.notified();
            if self.is_stopped() {
                return;
            }
            signal.await;
        }
    }

    /// Hands `batch` over, waiting for room. False when the feed was
    /// closed from the other side (the replay is stopping).
    fn push(&self, batch: &mut Vec<Job>) -> bool {
        let mut state = self.lock();
        while state.jobs.len() >= AHEAD && !state.closed {
            state.reader_waiting = true;
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            return false;
        }
        state.jobs.extend(batch.drain(..));
        drop(state);
        self.jobs.notify_waiters();
        true
    }

    /// No more jobs will come; workers finish what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.jobs.notify_waiters();
        self.room.notify_all();
    }

    /// Stops the replay: queued jobs are dropped, the reader stops.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop_signal.notify_waiters();
        let mut state = self.lock();
        state.closed = true;
        state.jobs.clear();
        drop(state);
        self.jobs.notify_waiters();
        self.room.notify_all();
    }

    fn stopped(&self) -> bool {
        self.lock().closed
    }
}

/// Opens the recording, once per pass.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn Source>, StoreError> + Send>;

/// What the reader found, for the report.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// Exchanges that became calls.
    pub calls: u64,
    /// Exchanges left out by the filters.
    pub filtered: u64,
    /// Exchanges not replayable, by reason.
    pub skipped: HashMap<Skip, u64>,
    /// Damage skipped in the recording, one line each.
    pub damage: Vec<String>,
    /// The error that ended reading early, if any.
    pub error: Option<StoreError>,
    /// Endpoint names, by index.
    pub endpoints: Vec<String>,
}

/// What the reader needs.
pub struct Reader {
    /// Opens the recording.
    pub opener: Opener,
    /// Which exchanges to replay.
    pub filter: ExchangeFilter,
    /// Builds the calls.
    pub builder: CallBuilder,
    /// Due times.
    pub schedule: ReplaySchedule,
    /// Start again at the end.
    pub repeat: bool,
    /// Calls to hand over at most.
    pub limit: Option<u64>,
    /// Stop handing over calls due at or after this offset.
    pub duration: Option<Duration>,
    /// Following a live tape: calls are handed over one by one as they
    /// are read, and not put back in start order (a call is not held back
    /// waiting for later ones that may take long to come).
    pub live: bool,
    /// Set when the replay is stopped from outside.
    pub stop: Arc<AtomicBool>,
    /// Told of each exchange left out.
    pub settled: Option<crate::config::SettledHandle>,
}

impl Reader {
    /// Reads the recording into `feed` until it ends (or the limits say
    /// so), then closes the feed.
    pub fn run(mut self, feed: &Feed) -> ReadReport {
        let mut report = ReadReport::default();
        let mut endpoints: HashMap<String, usize> = HashMap::new();
        let mut handed = 0u64;
        let batch_size = if self.live { 1 } else { BATCH };
        let mut batch = Vec::with_capacity(batch_size);
        let mut cache: Option<Vec<Arc<Call>>> = self.repeat.then(Vec::new);
        let mut cache_bytes = 0usize;
        let mut cached_pass = false;
        'passes: loop {
            let mut pass_calls = 0u64;
            let mut reorder = Reorder {
                enabled: !self.live,
                ..Reorder::default()
            };
            // Either replay the kept calls, or read the recording.
            let mut emit = |call: Arc<Call>, this: &mut Self, batch: &mut Vec<Job>| -> bool {
                if this.limit.is_some_and(|l| handed >= l) || this.stop.load(Ordering::Relaxed) {
                    return false;
                }
                let due = this.schedule.next(call.recorded_at_ns);
                if let (Some(due), Some(limit)) = (due, this.duration)
                    && due >= limit
                {
                    return false;
                }
                handed += 1;
                pass_calls += 1;
                batch.push(Job { call, due });
                batch.len() < batch_size || feed.push(batch)
            };
            if cached_pass {
                let calls = cache.clone().unwrap_or_default();
                for call in calls {
                    if !emit(call, &mut self, &mut batch) {
                        break 'passes;
                    }
                }
            } else {
                let mut source = match (self.opener)() {
                    Ok(source) => source,
                    Err(error) => {
                        report.error = Some(error);
                        break 'passes;
                    }
                };
                let mut intact = Intact::new(source.as_mut());
                let mut ended = true;
                for item in intact.by_ref() {
                    let exchange = match item {
                        Ok(exchange) => exchange,
                        Err(error) => {
                            report.error = Some(error);
                            ended = false;
                            break;
                        }
                    };
                    let Some(call) = self.prepare(&exchange, &mut endpoints, &mut report) else {
                        continue;
                    };
                    for ready in reorder.push(call) {
                        keep(&mut cache, &mut cache_bytes, &ready);
                        if !emit(ready, &mut self, &mut batch) {
                            ended = false;
                            break;
                        }
                    }
                    if !ended || self.stop.load(Ordering::Relaxed) || feed.stopped() {
                        ended = false;
                        break;
                    }
                }
                report.damage.extend(intact.into_damage());
                if !ended {
                    break 'passes;
                }
                for ready in reorder.drain() {
                    keep(&mut cache, &mut cache_bytes, &ready);
                    if !emit(ready, &mut self, &mut batch) {
                        break 'passes;
                    }
                }
                cached_pass = cache.is_some();
            }
            if !self.repeat || pass_calls == 0 {
                break;
            }
            self.schedule.new_pass();
        }
        if !batch.is_empty() {
            feed.push(&mut batch);
        }
        feed.close();
        let mut names: Vec<(String, usize)> = endpoints.into_iter().collect();
        names.sort_by_key(|(_, i)| *i);
        report.endpoints = names.into_iter().map(|(name, _)| name).collect();
        report
    }

    fn prepare(
        &self,
        exchange: &Exchange,
        endpoints: &mut HashMap<String, usize>,
        report: &mut ReadReport,
    ) -> Option<Arc<Call>> {
        let left_out = || {
            if let Some(settled) = &self.settled {
                settled.0.settled(&exchange.id);
            }
        };
        if !self.filter.matches(exchange) {
            report.filtered += 1;
            left_out();
            return None;
        }
        let key = endpoint_key(exchange);
        let next = endpoints.len();
        let endpoint = *endpoints.entry(key).or_insert(next);
        match self.builder.build(exchange, endpoint) {
            Ok(call) => {
                report.calls += 1;
                Some(Arc::new(call))
            }
            Err(skip) => {
                *report.skipped.entry(skip).or_default() += 1;
                left_out();
                None
            }
        }
    }
}

/// Keeps `call` for the next `--loop` pass, until the kept calls pass
/// [`LOOP_CACHE_BYTES`]: then nothing is kept and each pass reads the
/// recording again.
fn keep(cache: &mut Option<Vec<Arc<Call>>>, bytes: &mut usize, call: &Arc<Call>) {
    if let Some(kept) = cache.as_mut() {
        *bytes += call.weight();
        if *bytes > LOOP_CACHE_BYTES {
            *cache = None;
        } else {
            kept.push(Arc::clone(call));
        }
    }
}

/// Puts calls back in recorded start order, within a horizon.
#[derive(Debug, Default)]
struct Reorder {
    enabled: bool,
    heap: BinaryHeap<Reverse<(u64, u64, ByStart)>>,
    seq: u64,
    newest_ns: u64,
}

#[derive(Debug)]
struct ByStart(Arc<Call>);

impl PartialEq for ByStart {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for ByStart {}
impl PartialOrd for ByStart {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByStart {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Reorder {
    /// Takes `call`; returns those now certain to come first.
    fn push(&mut self, call: Arc<Call>) -> Vec<Arc<Call>> {
        if !self.enabled {
            return vec![call];
        }
        self.newest_ns = self.newest_ns.max(call.recorded_at_ns);
        self.seq += 1;
        self.heap
            .push(Reverse((call.recorded_at_ns, self.seq, ByStart(call))));
        let mut ready = Vec::new();
        while let Some(Reverse((start, _, _))) = self.heap.peek() {
            if self.heap.len() > REORDER_MAX
                || start.saturating_add(REORDER_HORIZON_NS) <= self.newest_ns
            {
                if let Some(Reverse((_, _, call))) = self.heap.pop() {
                    ready.push(call.0);
                }
            } else {
                break;
            }
        }
        ready
    }

    fn drain(&mut self) -> Vec<Arc<Call>> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(Reverse((_, _, call))) = self.heap.pop() {
            out.push(call.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProtocolChoice, Rewrites, Target};

    fn job(due: Option<Duration>) -> Job {
        let builder = CallBuilder::new(
            Target::parse("http://127.0.0.1:9").unwrap_or_else(|e| panic!("{e}")),
            Rewrites::default(),
            ProtocolChoice::Recorded,
        );
        let exchange = Exchange {
            request: Some(reprise_model::Request {
                method: "GET".into(),
                path: "/".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = builder
            .build(&exchange, 0)
            .unwrap_or_else(|e| panic!("{e:?}"));
        Job {
            call: Arc::new(call),
            due,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f)
    }

    #[test]
    fn jobs_due_at_once_come_in_batches_and_timed_ones_alone() {
        let feed = Feed::default();
        let mut batch: Vec<Job> = (0..5).map(|_| job(None)).collect();
        batch.push(job(Some(Duration::from_millis(1))));
        batch.push(job(Some(Duration::from_millis(2))));
        assert!(feed.push(&mut batch));
        feed.close();
        let mut local = VecDeque::new();
        let mut sizes = Vec::new();
        loop {
            block_on(feed.take(&mut local, 3, 1));
            if local.is_empty() {
                break;
            }
            sizes.push(local.len());
            local.clear();
        }
        assert_eq!(sizes, [3, 2, 1, 1]);
    }

    #[test]
    fn a_worker_takes_no_more_than_its_share_of_the_queue() {
        // 12 calls due at once among 32 workers: one each, so that calls
        // to a hanging target time out together, not one after another
        // on the worker that took them all.
        let feed = Feed::default();
        let mut batch: Vec<Job> = (0..12).map(|_| job(None)).collect();
        assert!(feed.push(&mut batch));
        feed.close();
        let mut local = VecDeque::new();
        block_on(feed.take(&mut local, 8, 32));
        assert_eq!(local.len(), 1);
        // A deep queue still goes in batches: 11 left among 2 workers.
        local.clear();
        block_on(feed.take(&mut local, 8, 2));
        assert_eq!(local.len(), 6);
    }

    #[test]
    fn stop_drops_what_is_queued() {
        let feed = Feed::default();
        let mut batch: Vec<Job> = (0..4).map(|_| job(None)).collect();
        assert!(feed.push(&mut batch));
        feed.stop();
        assert!(feed.is_stopped());
        assert!(block_on(feed.next()).is_none());
        assert!(!feed.push(&mut vec![job(None)]));
    }
}
