//! `reprise replay`: the replay engine with a progress display and a
//! report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use reprise_model::Sink;
use reprise_replay::{
    Opener, Pacing, ProtocolChoice, Replay, ReplayConfig, Report, Target, TrustChoice, micros,
};

use crate::Outcome;
use crate::args::{ProtocolArg, ReplayArgs};
use crate::commands::record::{duration, size};

/// How often a progress line is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The replay's settings from the command line.
pub(crate) fn config(args: &ReplayArgs) -> anyhow::Result<ReplayConfig> {
    let mut config = ReplayConfig::new(Target::parse(&args.target)?);
    config.pacing = match (args.speed, args.rate, args.max) {
        (_, _, true) => Pacing::Max,
        (_, Some(rate), _) if rate.is_finite() && rate > 0.0 => Pacing::Rate(rate),
        (_, Some(rate), _) => bail!("--rate {rate}: expected a number of calls per second above 0"),
        (Some(speed), _, _) if speed.is_finite() && speed > 0.0 => Pacing::Speed(speed),
        (Some(speed), _, _) => {
            bail!("--speed {speed}: expected a factor above 0, such as 2 or 0.5")
        }
        (None, None, false) => Pacing::Speed(1.0),
    };
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    config.concurrency = args.concurrency;
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    config.threads = args.threads;
    if args.connections == Some(0) {
        bail!("--connections must be at least 1");
    }
    config.connections = args.connections;
    config.protocol = match args.protocol {
        ProtocolArg::Recorded => ProtocolChoice::Recorded,
        ProtocolArg::H1 => ProtocolChoice::Http1,
        ProtocolArg::H2 => ProtocolChoice::Http2,
    };
    config.repeat = args.repeat;
    config.duration = args
        .duration
        .as_deref()
        .map(|d| duration("--duration", d))
        .transpose()?;
    if args.repeat && args.duration.is_none() && args.limit.is_none() && !args.dry_run {
        eprintln!("reprise: --loop without --duration or --limit replays until interrupted");
    }
    config.limit = args.limit;
    config.filter = crate::input::filter(&args.filter)?;
    for spec in &args.set_header {
        config.rewrites.set_header(spec)?;
    }
    for name in &args.drop_header {
        config.rewrites.drop_header(name)?;
    }
    for spec in &args.rewrite_path {
        config.rewrites.rewrite_path(spec)?;
    }
    config.rewrites.preserve_host = args.preserve_host;
    config.timeout = duration("--timeout", &args.timeout)?;
    if config.timeout.is_zero() {
        bail!("--timeout must be above 0");
    }
    config.trust = match (&args.ca, args.insecure) {
        (_, true) => TrustChoice::Any,
        (Some(ca), false) => TrustChoice::CaFile(ca.clone()),
        (None, false) => TrustChoice::System,
    };
    config.max_body = size("--max-body", &args.max_body)?;
    config.redactor = super::redactor(&args.redact)?;
    Ok(config)
}

/// Opens the recording for each pass; with `--follow`, also the flag
/// that ends following.
fn opener(
    path: PathBuf,
    args: &ReplayArgs,
    config: &ReplayConfig,
) -> anyhow::Result<(Opener, Option<Arc<AtomicBool>>)> {
    let follow = args.follow.then(reprise_tape::Follow::default);
    let live = follow.as_ref().map(|f| f.stop.clone());
    let filter = config.filter.clone();
    // Opened once here so that a missing or unreadable recording is an
    // error before anything starts; later passes of --loop reopen it.
    let mut first = Some(crate::input::open_following(
        &path,
        &filter,
        follow.clone(),
    )?);
    let opener: Opener = Box::new(move || match first.take() {
        Some(source) => Ok(source),
        None => crate::input::open_following(&path, &filter, follow.clone()).map_err(|e| {
            reprise_model::StoreError::failed(path.display().to_string(), crate::one_line(&e))
        }),
    });
    Ok((opener, live))
}

/// Runs `reprise replay`.
pub(crate) fn run(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let grouped = crate::store::kafka_address(&args.source)?.is_some_and(|a| a.group.is_some());
    if grouped && (args.compare || args.dry_run) {
        bail!(
            "{}: --compare and --dry-run do not go with group=: each member replays a share; compare the members' results together with `reprise diff RECORDED RESULTS...`",
            args.source.display()
        );
    }
    let mut config = config(args)?;
    if args.dry_run {
        if args.repeat && config.limit.is_none() {
            config.repeat = false;
        }
        let (opener, live) = opener(args.source.clone(), args, &config)?;
        return dry_run(config, opener, live);
    }
    if args.compare {
        return replay_and_compare(args, config);
    }
    super::diff::only_with_compare(&args.rules)?;
    if let Some(address) = crate::store::kafka_address(&args.source)?
        && address.group.is_some()
    {
        return replay_group(args, config, &address);
    }
    let (opener, live) = opener(args.source.clone(), args, &config)?;
    let results: Option<Box<dyn Sink>> = match &args.out {
        Some(path) => Some(results_sink(path)?),
        None => None,
    };
    let signals = Signals::catch()?;
    let replay = Replay::start(config, opener, results, live)?;
    signals.stop(vec![replay.stop_handle()]);
    show_progress(&replay, args.quiet);
    let report = replay.wait()?;
    finish(args, &report)?;
    Ok(if report.recording.damage.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}

/// Settles a group member's exchanges as the replay settles them.
struct GroupAcks(reprise_kafka::Acks);

impl reprise_replay::Settled for GroupAcks {
    fn settled(&self, recorded_id: &[u8]) {
        self.0.settled(recorded_id);
    }
}

/// `reprise replay kafka://.../TOPIC?group=NAME`: one member of a group
/// of replayers, replaying the partitions the group gives it (and those
/// of a member that dies), committing each exchange once its result is
/// written; it ends when the group has replayed the whole topic (as it
/// was when the member joined), or follows it with `--follow`.
fn replay_group(
    args: &ReplayArgs,
    mut config: ReplayConfig,
    address: &reprise_kafka::KafkaAddress,
) -> anyhow::Result<Outcome> {
    if args.repeat {
        bail!("--loop does not go with group=: a group replays each exchange once");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let options = reprise_kafka::SourceOptions {
        follow: args.follow.then(|| Arc::clone(&stop)),
        stop: Some(Arc::clone(&stop)),
        ..reprise_kafka::SourceOptions::default()
    };
    let (source, acks) =
        reprise_kafka::GroupSource::join(address, crate::store::kafka_options(), options)?;
    config.settled = Some(reprise_replay::SettledHandle(Arc::new(GroupAcks(
        acks.clone(),
    ))));
    let results: Option<Box<dyn Sink>> = match &args.out {
        Some(path) => Some(results_sink(path)?),
        None => None,
    };
    let mut first: Option<Box<dyn reprise_model::Source>> = Some(Box::new(source));
    let name = address.to_string();
    let opener: Opener = Box::new(move || {
        first.take().ok_or_else(|| {
            reprise_model::StoreError::failed(name.clone(), "a group's share is read once")
        })
    });
    let signals = Signals::catch()?;
    // Calls are handed over as they come (the partitions interleave,
    // and a member waits for the others at the end).
    let replay = Replay::start(config, opener, results, Some(stop))?;
    signals.stop(vec![replay.stop_handle()]);
    show_progress(&replay, args.quiet);
    let report = replay.wait()?;
    acks.finish()?;
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    crate::report_damage(&report.recording.damage);
    let group = address.group.as_deref().unwrap_or_default();
    let duplicates = acks.duplicates();
    eprintln!(
        "reprise: group {group}: this member replayed {} calls{}",
        report.calls,
        if duplicates > 0 {
            format!(", skipped {duplicates} handed to it twice")
        } else {
            String::new()
        }
    );
    Ok(if report.recording.damage.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}

/// How a replay's results tape is opened: a new tape, compressed as
/// tapes are by default.
fn results() -> crate::store::TapeOpening {
    crate::store::TapeOpening {
        append: false,
        inline: false,
        zstd_level: reprise_tape::WriterOptions::default().zstd_level,
        rotation: None,
    }
}

/// Where what a replay sent and got back goes: a new tape, or a topic.
pub(crate) fn results_sink(path: &Path) -> anyhow::Result<Box<dyn Sink>> {
    crate::store::open_sink(path, results())
}

/// A new tape for what a replay sent and got back.
pub(crate) fn results_tape(path: &Path) -> anyhow::Result<reprise_tape::TapeWriter> {
    crate::store::open_tape(path, results())
}

/// `--compare`: replays to the target (and to the baseline target, at the
/// same time), then compares what came back with the recording.
fn replay_and_compare(args: &ReplayArgs, config: ReplayConfig) -> anyhow::Result<Outcome> {
    let rules = super::diff::rules(&args.rules)?;
    let thresholds = super::diff::thresholds(&args.rules)?;
    if args.rules.auto_noise && args.baseline_target.is_some() {
        bail!(
            "--auto-noise guesses noise without a baseline; with --baseline-target the baseline decides"
        );
    }
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let candidate_out = args
        .out
        .clone()
        .unwrap_or_else(|| temp.path().join("replayed.tape"));
    let baseline = match &args.baseline_target {
        Some(url) => {
            let mut baseline = config.clone();
            baseline.target = Target::parse(url).context("--baseline-target")?;
            Some((baseline, temp.path().join("baseline.tape")))
        }
        None => None,
    };
    let (opener_c, _) = opener(args.source.clone(), args, &config)?;
    let signals = Signals::catch()?;
    let candidate = Replay::start(config, opener_c, Some(results_sink(&candidate_out)?), None)?;
    let baseline = match baseline {
        Some((config, out)) => {
            let (opener_b, _) = opener(args.source.clone(), args, &config)?;
            let replay =
                Replay::start(config, opener_b, Some(Box::new(results_tape(&out)?)), None)?;
            Some((replay, out))
        }
        None => None,
    };
    let mut handles = vec![candidate.stop_handle()];
    if let Some((replay, _)) = &baseline {
        handles.push(replay.stop_handle());
    }
    signals.stop(handles);
    show_progress(&candidate, args.quiet);
    let report = candidate.wait()?;
    finish(args, &report)?;
    let replayed = reprise_compare::Judgement {
        damaged: !report.recording.damage.is_empty(),
        ..Default::default()
    };
    let baseline_out = match baseline {
        Some((replay, out)) => {
            let report = replay.wait()?;
            println!(
                "baseline: {} calls to {} in {:.2} s, {} ok, {} failed, {} status differs",
                report.calls,
                report.target,
                report.elapsed_s,
                report.ok,
                report.failed,
                report.status_differs
            );
            Some(out)
        }
        None => None,
    };
    println!();
    let noise = match (baseline_out.as_deref(), args.rules.auto_noise) {
        (Some(b), _) => super::diff::Noise::Baseline(b, thresholds),
        (None, true) => super::diff::Noise::Guess,
        (None, false) => super::diff::Noise::None,
    };
    let max_memory = size("--max-memory", &args.rules.max_memory)?;
    let (diff, damage) = super::diff::diff_with(
        &args.source,
        &reprise_model::select::ExchangeFilter::new(),
        &candidate_out,
        noise,
        &rules,
        max_memory,
    )?;
    let compared = super::diff::finish(&diff, &damage, args.diff_json.as_deref(), &args.rules)?;
    Ok(compared.and(replayed).finding().into())
}

/// Prints the report and writes its JSON; an error when nothing could
/// be replayed or nothing reached the target.
fn finish(args: &ReplayArgs, report: &Report) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    if let Some(path) = &args.json {
        write_json(path, report)?;
    }
    crate::report_damage(&report.recording.damage);
    if report.calls == 0 {
        let skipped: u64 = report.recording.skipped.values().sum();
        bail!(
            "{}: nothing to replay: no exchange in the recording can be replayed ({} filtered out, {} skipped)",
            args.source.display(),
            report.recording.filtered,
            skipped
        );
    }
    if report.nothing_reached() {
        let why = report
            .failure_examples
            .values()
            .next()
            .cloned()
            .unwrap_or_default();
        bail!(
            "no call reached {}: all {} failed ({why})",
            report.target,
            report.calls
        );
    }
    Ok(())
}

fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    crate::report_file::write_report(path, |w| {
        serde_json::to_writer_pretty(&mut *w, report)?;
        Ok(w.write_all(b"\n")?)
    })
}

/// Prints the calls that would be sent.
fn dry_run(
    config: ReplayConfig,
    opener: Opener,
    live: Option<Arc<AtomicBool>>,
) -> anyhow::Result<Outcome> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let target = config.target.url();
    let mut io_error = None;
    let mut planned = 0u64;
    let recording = reprise_replay::plan(config, opener, live, |due, call| {
        if io_error.is_some() {
            return false;
        }
        planned += 1;
        let due = due.map_or_else(
            || "now".to_string(),
            |d| format!("+{:.3}s", d.as_secs_f64()),
        );
        let url = match call.uri.scheme() {
            Some(_) => call.uri.to_string(),
            None => format!("{target}{}", call.uri),
        };
        let wire = match (call.wire, call.grpc) {
            (reprise_replay::Wire::Http2, true) => "grpc",
            (reprise_replay::Wire::Http2, false) => "h2",
            (reprise_replay::Wire::Http1, _) => "h1",
        };
        let body: usize =
            call.body.len() + call.messages.iter().map(|(_, m)| m.len()).sum::<usize>();
        let mut write = || -> std::io::Result<()> {
            writeln!(out, "{due:>10}  {} {url}  {wire}, {body} B", call.method)?;
            if let Some(authority) = call.uri.authority() {
                writeln!(out, "            :authority: {authority}")?;
            }
            for (name, value) in &call.headers {
                writeln!(
                    out,
                    "            {name}: {}",
                    reprise_model::terminal::escape(&String::from_utf8_lossy(value.as_bytes()))
                )?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            io_error = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    let skipped: u64 = recording.skipped.values().sum();
    writeln!(
        out,
        "dry run: {planned} calls would be sent to {target}; nothing was sent ({} filtered out, {skipped} skipped)",
        recording.filtered
    )?;
    for (reason, n) in &recording.skipped {
        writeln!(out, "  {n} {reason}")?;
    }
    crate::report_damage(&recording.damage);
    Ok(if recording.damage.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}

/// SIGINT and SIGTERM, caught from the moment this is made: made before
/// any call leaves, so that a signal that arrives with the first call
/// stops the replay (calls in flight finish, the report is printed)
/// instead of killing the process.
pub(crate) struct Signals {
    runtime: tokio::runtime::Runtime,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn catch() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal handler")?;
        let entered = runtime.enter();
        let terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        drop(entered);
        Ok(Signals {
            runtime,
            terminate,
            interrupt,
        })
    }

    /// The first signal stops every replay in `handles`.
    pub(crate) fn stop(self, handles: Vec<reprise_replay::StopHandle>) {
        let Signals {
            runtime,
            mut terminate,
            mut interrupt,
        } = self;
        let _ = std::thread::Builder::new()
            .name("reprise-signals".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                });
                for handle in handles {
                    handle.stop();
                }
            });
    }
}

/// A progress bar on a terminal, a line every few seconds otherwise, or
/// nothing with `--quiet`; returns when the replay has finished.
pub(crate) fn show_progress(replay: &Replay, quiet: bool) {
    let tick = Duration::from_millis(100);
    if quiet {
        while !replay.is_finished() {
            std::thread::sleep(tick);
        }
        return;
    }
    let line = |p: &reprise_replay::Progress, rate: f64| {
        format!(
            "sent {}  ok {}  failed {}  status differs {}  {:.0} calls/s  p99 {}",
            p.sent,
            p.ok,
            p.failed,
            p.status_differs,
            rate,
            micros(p.p99_us)
        )
    };
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last = replay.progress();
    let mut last_line = std::time::Instant::now();
    let mut window = (std::time::Instant::now(), last.sent);
    let mut rate = 0.0;
    while !replay.is_finished() {
        std::thread::sleep(tick);
        // The histograms are merged once a second, not every tick.
        if window.0.elapsed() < Duration::from_secs(1) {
            continue;
        }
        last = replay.progress();
        rate = (last.sent - window.1) as f64 / window.0.elapsed().as_secs_f64();
        window = (std::time::Instant::now(), last.sent);
        match &bar {
            Some(bar) => bar.set_message(line(&last, rate)),
            None if last_line.elapsed() >= PLAIN_PROGRESS_EVERY => {
                eprintln!(
                    "reprise: {:.0}s  {}",
                    last.elapsed.as_secs_f64(),
                    line(&last, rate)
                );
                last_line = std::time::Instant::now();
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let _ = (last, rate);
}
