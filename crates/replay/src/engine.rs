//! The replay engine: a reader thread feeding workers, each sending one
//! call at a time at its due time, and a writer thread for the results.
//! The workers run on one single-threaded tokio runtime per sending
//! thread (thread per core): a worker, its connections' tasks and its
//! timers stay on one thread, so a call never wakes another thread. It
//! produces a [`Report`] and live counters; what is printed is the
//! caller's business.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use reprise_model::redact::Redactor;
use reprise_model::{Exchange, Sink, StoreError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::call::CallBuilder;
use crate::client::{Client, Connector, Keep, Lanes};
use crate::config::{ReplayConfig, TrustChoice};
use crate::error::ReplayError;
use crate::feed::{Feed, Job, Opener, ReadReport, Reader};
use crate::report::{Progress, RecordingReport, Report};
use crate::results::Finished;
use crate::schedule::{Pacing, ReplaySchedule};
use crate::stats::{Outcome, Shards};

/// Calls due at once that a worker takes from the feed in one go.
const LOCAL_JOBS: usize = 8;

/// Results waiting for the writer thread.
const RESULTS_QUEUE: usize = 4096;

/// A replay under way.
pub struct Replay {
    shared: Arc<Shared>,
    reader: JoinHandle<ReadReport>,
    writer: Option<JoinHandle<Result<u64, StoreError>>>,
    senders: Vec<JoinHandle<Result<(), ReplayError>>>,
    control: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    live: Option<Arc<AtomicBool>>,
}

/// What the workers share.
struct Shared {
    config: ReplayConfig,
    feed: Feed,
    lanes: Arc<Lanes>,
    shards: Shards,
    start: Instant,
    start_wall: SystemTime,
    results: Option<mpsc::Sender<Exchange>>,
    redactor: Redactor,
    target: String,
}

/// Stops a replay from another thread (Ctrl-C): no new call leaves,
/// calls in flight finish.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
}

impl StopHandle {
    /// Stops the replay.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
}

impl Replay {
    /// Resolves the target, opens nothing yet, and starts replaying what
    /// `opener` reads. Results go to `results` when given. `live` is the
    /// stop flag of a source that follows a growing tape: the replay sets
    /// it when it stops, so that the source ends.
    pub fn start(
        config: ReplayConfig,
        opener: Opener,
        results: Option<Box<dyn Sink>>,
        live: Option<Arc<AtomicBool>>,
    ) -> Result<Replay, ReplayError> {
        let concurrency = config.concurrency.max(1);
        let threads = config.threads.unwrap_or_else(cores).clamp(1, concurrency);
        let runtimes = (0..threads)
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReplayError::Start)?;
        let addrs = runtimes[0].block_on(resolve(&config))?;
        let tls = if config.target.tls {
            let trust = match &config.trust {
                TrustChoice::System => reprise_net::tls::Trust::System,
                TrustChoice::CaFile(path) => reprise_net::tls::Trust::CaFile(path),
                TrustChoice::Any => reprise_net::tls::Trust::Any,
            };
            Some((
                reprise_net::tls::client_config_for(trust)?,
                config.target.host.clone(),
            ))
        } else {
            None
        };
        let connector = Connector::new(addrs, tls)?;
        let lanes = Arc::new(Lanes::new(
            connector,
            config.h1_connections(),
            config.h2_connections(threads),
        ));
        let (results_tx, writer) = match results {
            Some(sink) => {
                let (tx, rx) = mpsc::channel(RESULTS_QUEUE);
                let settled = config.settled.clone();
                let writer = std::thread::Builder::new()
                    .name("reprise-results".into())
                    .spawn(move || write_results(rx, sink, settled))
                    .map_err(ReplayError::Start)?;
                (Some(tx), Some(writer))
            }
            None => (None, None),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            target: config.target.url(),
            feed: Feed::default(),
            lanes,
            shards: Shards::new(threads),
            start: Instant::now(),
            start_wall: SystemTime::now(),
            results: results_tx,
            redactor: config.redactor.clone(),
            config,
        });
        let reader = Reader {
            opener,
            filter: shared.config.filter.clone(),
            builder: CallBuilder::new(
                shared.config.target.clone(),
                shared.config.rewrites.clone(),
                shared.config.protocol,
            ),
            schedule: ReplaySchedule::new(shared.config.pacing),
            repeat: shared.config.repeat,
            limit: shared.config.limit,
            duration: shared.config.duration,
            live: live.is_some(),
            stop: stop.clone(),
            settled: shared.config.settled.clone(),
        };
        let feed_owner = shared.clone();
        let reader = std::thread::Builder::new()
            .name("reprise-reader".into())
            .spawn(move || {
                let _stop = StopOnPanic(&feed_owner.feed);
                reader.run(&feed_owner.feed)
            })
            .map_err(ReplayError::Start)?;
        // Worker w runs on thread w % threads and counts into shard
        // w % threads: each thread has its shard to itself.
        let mut senders = Vec::with_capacity(threads);
        for (thread, runtime) in runtimes.into_iter().enumerate() {
            let shared = shared.clone();
            let sender = std::thread::Builder::new()
                .name(format!("reprise-send-{thread}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let mut workers = tokio::task::JoinSet::new();
                        for worker in (thread..concurrency).step_by(threads) {
                            workers.spawn(work(shared.clone(), worker));
                        }
                        let mut failed = Ok(());
                        while let Some(joined) = workers.join_next().await {
                            if let Err(error) = joined
                                && error.is_panic()
                                && failed.is_ok()
                            {
                                // The other workers stop too: the run's
                                // report would be wrong anyway.
                                shared.feed.stop();
                                failed = Err(ReplayError::panicked(
                                    format!("sender {thread}"),
                                    &*error.into_panic(),
                                ));
                            }
                        }
                        failed
                    })
                })
                .map_err(ReplayError::Start)?;
            senders.push(sender);
        }
        let done = Arc::new(AtomicBool::new(false));
        let control = {
            let (shared, stop, done) = (shared.clone(), stop.clone(), done.clone());
            // A duration past what the clock can hold never ends the run.
            let deadline = shared
                .config
                .duration
                .and_then(|d| shared.start.into_std().checked_add(d));
            std::thread::Builder::new()
                .name("reprise-control".into())
                .spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
                        if late || stop.load(Ordering::Relaxed) {
                            shared.feed.stop();
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .map_err(ReplayError::Start)?
        };
        Ok(Replay {
            shared,
            reader,
            writer,
            senders,
            control,
            stop,
            done,
            live,
        })
    }

    /// A handle that stops this replay.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.stop.clone(),
        }
    }

    /// Counters so far, for a progress display.
    pub fn progress(&self) -> Progress {
        let merged = self.shared.shards.merged().stats;
        let finished: u64 = merged.outcomes.values().sum();
        let ok = merged.outcomes.get(&Outcome::Ok).copied().unwrap_or(0);
        let status_differs: u64 = merged
            .outcomes
            .iter()
            .filter(|(outcome, _)| outcome.differs())
            .map(|(_, n)| n)
            .sum();
        Progress {
            elapsed: self.shared.start.elapsed(),
            sent: self.shared.shards.sent_total(),
            ok,
            status_differs,
            failed: finished - ok - status_differs,
            p99_us: merged.scheduled.quantile(0.99),
        }
    }

    /// Whether every call has been sent and answered.
    pub fn is_finished(&self) -> bool {
        self.senders.iter().all(JoinHandle::is_finished)
    }

    /// Waits for the replay to end and reports on it. A thread of the
    /// replay that panicked is an error ([`ReplayError::ThreadFailed`]),
    /// never a report missing its part.
    pub fn wait(self) -> Result<Report, ReplayError> {
        let Replay {
            shared,
            reader,
            writer,
            senders,
            control,
            stop,
            done,
            live,
        } = self;
        // Every thread is joined whatever the others did, so that none is
        // left running; the first failure is the replay's error.
        let mut failed: Option<ReplayError> = None;
        for (thread, sender) in senders.into_iter().enumerate() {
            let joined = sender
                .join()
                .unwrap_or_else(|p| Err(ReplayError::panicked(format!("sender {thread}"), &*p)));
            if let Err(error) = joined {
                failed.get_or_insert(error);
            }
        }
        let elapsed = shared.start.elapsed();
        done.store(true, Ordering::SeqCst);
        if let Err(p) = control.join() {
            failed.get_or_insert(ReplayError::panicked("control", &*p));
        }
        stop.store(true, Ordering::SeqCst);
        if let Some(live) = &live {
            live.store(true, Ordering::SeqCst);
        }
        let read = match reader.join() {
            Ok(read) => read,
            Err(p) => {
                failed.get_or_insert(ReplayError::panicked("reader", &*p));
                ReadReport::default()
            }
        };
        let merged = shared.shards.merged();
        let target = shared.target.clone();
        // The workers are done: the last sender of results goes with them.
        drop(shared);
        let written = match writer.map(JoinHandle::join) {
            Some(Ok(written)) => Some(written),
            Some(Err(p)) => {
                failed.get_or_insert(ReplayError::panicked("results writer", &*p));
                None
            }
            None => None,
        };
        if let Some(error) = failed {
            return Err(error);
        }
        let written = written.transpose()?;
        if let Some(error) = read.error {
            return Err(error.into());
        }
        Ok(Report::new(
            target,
            elapsed,
            merged.stats,
            merged.endpoints,
            read,
            written,
        ))
    }
}

/// The calls a replay would send, in order, with their due offsets
/// (`None`: at once), given to `each` until it returns false; nothing is
/// sent (`--dry-run`).
pub fn plan(
    config: ReplayConfig,
    opener: Opener,
    live: Option<Arc<AtomicBool>>,
    mut each: impl FnMut(Option<Duration>, &crate::Call) -> bool,
) -> Result<RecordingReport, ReplayError> {
    let feed = Arc::new(Feed::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        opener,
        filter: config.filter.clone(),
        builder: CallBuilder::new(
            config.target.clone(),
            config.rewrites.clone(),
            config.protocol,
        ),
        schedule: ReplaySchedule::new(config.pacing),
        repeat: config.repeat,
        limit: config.limit,
        duration: config.duration,
        live: live.is_some(),
        stop,
        // A plan (a dry run) sends nothing: nothing is settled.
        settled: None,
    };
    let reader_feed = feed.clone();
    let reader = std::thread::Builder::new()
        .name("reprise-reader".into())
        .spawn(move || {
            let _stop = StopOnPanic(&reader_feed);
            reader.run(&reader_feed)
        })
        .map_err(ReplayError::Start)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReplayError::Start)?;
    runtime.block_on(async {
        while let Some(job) = feed.next().await {
            if !each(job.due, &job.call) {
                feed.stop();
                break;
            }
        }
    });
    if let Some(live) = &live {
        live.store(true, Ordering::SeqCst);
    }
    let read = reader
        .join()
        .map_err(|p| ReplayError::panicked("reader", &*p))?;
    if let Some(error) = read.error {
        return Err(error.into());
    }
    Ok(RecordingReport::of(read))
}

/// Stops the feed when the thread holding this unwinds: a reader that
/// panicked must not leave the workers waiting for calls that never come.
struct StopOnPanic<'a>(&'a Feed);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

async fn resolve(config: &ReplayConfig) -> Result<Vec<SocketAddr>, ReplayError> {
    let host = config.target.host.clone();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), config.target.port))
        .await
        .map_err(|source| ReplayError::Resolve {
            host: host.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ReplayError::Resolve {
            host,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        });
    }
    Ok(addrs)
}

/// One worker: takes the next call, waits for its due time, sends it,
/// counts it.
async fn work(shared: Arc<Shared>, worker: usize) {
    let mut client = Client::new(shared.lanes.clone(), worker);
    let config = &shared.config;
    let speed = match config.pacing {
        Pacing::Speed(speed) => Some(speed),
        Pacing::Rate(_) => Some(1.0),
        Pacing::Max => None,
    };
    let keep = Keep {
        body: if shared.results.is_some() {
            config.max_body
        } else {
            0
        },
        messages: shared.results.is_some(),
    };
    let mut local = std::collections::VecDeque::with_capacity(LOCAL_JOBS);
    let expiry = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(expiry);
    loop {
        if local.is_empty() {
            shared
                .feed
                .take(&mut local, LOCAL_JOBS, config.concurrency)
                .await;
        }
        let Some(Job { call, due }) = local.pop_front() else {
            break;
        };
        if shared.feed.is_stopped() {
            break;
        }
        // Latency "from due" counts the time a call waited for a free
        // worker: that wait is the target's doing. A worker that took the
        // call early and slept until its due time sends it when the timer
        // fires (the timer's granularity is a millisecond); that lateness
        // is the replayer's own, so the call counts from its send.
        // Due offsets are capped at a century (`MAX_DUE`): this cannot
        // overflow the clock.
        let due_at = due.and_then(|due| shared.start.checked_add(due));
        if let (Some(due), Some(limit)) = (due, config.duration)
            && due >= limit
        {
            continue;
        }
        let late = match due_at {
            Some(at) if at > Instant::now() => {
                // A stop (Ctrl-C, --duration) ends the wait: a recording
                // with long gaps does not hold the replay open.
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.feed.until_stopped() => break,
                }
                false
            }
            Some(_) => true,
            None => false,
        };
        let sent = Instant::now();
        let scheduled = match due_at {
            Some(at) if late => at,
            _ => sent,
        };
        shared.shards.sent(worker);
        if let Some(watcher) = &config.watcher {
            watcher.0.started(&call.recorded_id);
        }
        // One timer per worker, moved for each call: cheaper than a new
        // timeout registered and dropped per call.
        let result = match sent.checked_add(config.timeout) {
            Some(deadline) => {
                expiry.as_mut().reset(deadline);
                tokio::select! {
                    biased;
                    result = client.send(&call, speed, keep, sent) => result,
                    () = expiry.as_mut() => Err(crate::client::Failure {
                        kind: reprise_model::ErrorKind::Timeout,
                        message: format!("no complete response within {:?}", config.timeout),
                        after_head: false,
                    }),
                }
            }
            None => client.send(&call, speed, keep, sent).await,
        };
        let ended = Instant::now();
        if let Some(watcher) = &config.watcher {
            watcher.0.ended(&call.recorded_id);
        }
        let (outcome, status) = match &result {
            Ok(answer) => {
                let status = answer.status.as_u16();
                let grpc = answer.grpc.as_ref().map(|g| g.code);
                (Outcome::of_answer(&call, status, grpc), Some(status))
            }
            Err(failure) => (Outcome::Failed(failure.kind), None),
        };
        let ok = outcome == Outcome::Ok;
        {
            let mut shard = shared.shards.of(worker);
            shard.count_endpoint(call.endpoint, &outcome, ended.duration_since(scheduled));
            if let Some(at) = due_at {
                crate::stats::record(&mut shard.stats.lag, sent.saturating_duration_since(at));
            }
            // One example per kind of failure: its text is made only for
            // the first, not for every failed call of a failing run.
            let example = (!ok && !shard.stats.examples.contains_key(&outcome))
                .then(|| example(&call, &result))
                .flatten();
            shard.stats.count(
                outcome,
                status,
                ended.duration_since(scheduled),
                ended.duration_since(sent),
                example.as_deref(),
            );
        }
        if let Some(results) = &shared.results {
            let wall = |at: Instant| {
                let since = at.duration_since(shared.start);
                crate::client::nanos(
                    (shared.start_wall + since)
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default(),
                )
            };
            let exchange = Finished {
                call: &call,
                result: &result,
                target: &shared.target,
                scheduled_at_ns: wall(due_at.unwrap_or(sent)),
                sent_at_ns: wall(sent),
                duration_ns: crate::client::nanos(ended.duration_since(sent)),
            }
            .into_exchange(&shared.redactor);
            if results.send(exchange).await.is_err() {
                // The writer failed; it reports why when the replay ends.
                shared.feed.stop();
            }
        } else if let Some(settled) = &config.settled {
            settled.0.settled(&call.recorded_id);
        }
    }
}

/// What the report shows for a failed call, or one answered with another
/// status than recorded.
fn example(
    call: &crate::Call,
    result: &Result<crate::client::Answer, crate::client::Failure>,
) -> Option<String> {
    match result {
        Ok(answer) => match &answer.grpc {
            Some(grpc) if grpc.code != 0 => Some(grpc.message.clone()),
            _ => Some(format!(
                "{} for {} {}",
                answer.status.as_u16(),
                call.method,
                call.uri.path_and_query().map_or("/", |p| p.as_str())
            )),
        },
        Err(failure) => Some(failure.message.clone()),
    }
}

/// How long, at most, a written result waits before the exchange it
/// replays is settled (the sink synced first).
const SETTLE_EVERY: Duration = Duration::from_millis(200);

fn write_results(
    mut rx: mpsc::Receiver<Exchange>,
    mut sink: Box<dyn Sink>,
    settled: Option<crate::config::SettledHandle>,
) -> Result<u64, StoreError> {
    let mut written = 0;
    // Settled only once the sink says they are stored (synced): a
    // group's member commits their offsets then, and a result lost in a
    // crash is replayed again by the member that takes over.
    let mut unsettled: Vec<Vec<u8>> = Vec::new();
    let mut synced = Instant::now();
    let settle = |sink: &mut Box<dyn Sink>, unsettled: &mut Vec<Vec<u8>>| {
        if let Some(settled) = &settled
            && !unsettled.is_empty()
        {
            sink.sync()?;
            for id in unsettled.drain(..) {
                settled.0.settled(&id);
            }
        }
        Ok::<(), StoreError>(())
    };
    loop {
        let next = if settled.is_some() && !unsettled.is_empty() {
            let left = SETTLE_EVERY.saturating_sub(synced.elapsed());
            match rx.try_recv() {
                Ok(exchange) => Some(exchange),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if left.is_zero() => {
                    settle(&mut sink, &mut unsettled)?;
                    synced = Instant::now();
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::park_timeout(left.min(Duration::from_millis(5)));
                    continue;
                }
            }
        } else {
            rx.blocking_recv()
        };
        let Some(exchange) = next else { break };
        let recorded_id = exchange
            .replay
            .as_ref()
            .filter(|_| settled.is_some())
            .map(|replay| replay.recorded_id.clone());
        sink.append(exchange)?;
        if let Some(id) = recorded_id {
            if unsettled.is_empty() {
                synced = Instant::now();
            }
            unsettled.push(id);
        }
        written += 1;
    }
    sink.close()?;
    if let Some(settled) = &settled {
        for id in unsettled.drain(..) {
            settled.0.settled(&id);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    /// A recording whose reading panics at the first exchange.
    struct PanickingSource;

    impl Iterator for PanickingSource {
        type Item = Result<Exchange, StoreError>;

        fn next(&mut self) -> Option<Self::Item> {
            panic!("the source broke");
        }
    }

    fn panicking_opener() -> Opener {
        Box::new(|| Ok(Box::new(PanickingSource) as Box<dyn reprise_model::Source>))
    }

    fn config() -> ReplayConfig {
        // Nothing is ever sent: the reader panics before the first call.
        let target = Target::parse("http://127.0.0.1:9").unwrap_or_else(|e| panic!("{e}"));
        let mut config = ReplayConfig::new(target);
        config.pacing = Pacing::Max;
        config
    }

    #[test]
    fn a_reader_that_panics_fails_the_replay() {
        let replay = Replay::start(config(), panicking_opener(), None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        match replay.wait() {
            Err(ReplayError::ThreadFailed { thread, message }) => {
                assert_eq!(thread, "reader");
                assert_eq!(message, "the source broke");
            }
            other => panic!("expected a thread failure, got {other:?}"),
        }
    }

    #[test]
    fn a_reader_that_panics_fails_the_plan() {
        let error = plan(config(), panicking_opener(), None, |_, _| true)
            .err()
            .unwrap_or_else(|| panic!("the plan succeeded"));
        assert_eq!(
            error.to_string(),
            "a replay thread failed: reader panicked: the source broke"
        );
    }
}
