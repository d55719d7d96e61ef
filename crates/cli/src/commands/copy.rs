//! `reprise copy SOURCE DEST`: a recording from wherever it is (a tape, a
//! HAR or .gor file, a Kafka topic) to a tape or a topic, streaming.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reprise_model::Sink;
use reprise_model::store::StoreError;

use super::import::Redacting;
use crate::Outcome;
use crate::args::CopyArgs;
use crate::input::InputKind;

/// Copies every exchange of `args.source` that the filters let through
/// to `args.dest`, redacted as asked.
pub fn run(args: &CopyArgs) -> anyhow::Result<Outcome> {
    let redactor = super::redactor(&args.redact)?;
    let filter = crate::input::filter(&args.filter)?;
    // The source is opened first: a bad source must not leave an empty
    // tape behind.
    let input = crate::input::Input::open(&args.source)?;
    let how = crate::store::TapeOpening {
        append: args.append,
        inline: false,
        zstd_level: reprise_tape::WriterOptions::default().zstd_level,
        rotation: None,
    };
    let kafka = reprise_kafka::SinkOptions {
        // A copy waits for the broker; it has no calls to keep moving.
        wait_when_full: true,
        // The queue drains at the broker's pace: up to 64 MiB.
        close_timeout: Duration::from_secs(120),
        ..reprise_kafka::SinkOptions::default()
    };
    let mut sink = crate::store::open_sink_with(&args.dest, how, kafka)?;
    let progress = Progress::new(args.quiet);
    let copied = copy(
        &input, &filter, args.limit, &mut *sink, &redactor, &progress,
    );
    let closed = sink.close();
    progress.done();
    let (copied, damage) = match copied {
        Ok(done) => done,
        Err(error) => {
            if !args.append {
                crate::store::remove_new(&args.dest);
            }
            return Err(error);
        }
    };
    closed.with_context(|| crate::store::describe(&args.dest))?;
    if let Some(tally) = sink.tally() {
        let lost = tally.unwritten + tally.refused;
        if lost > 0 {
            bail!(
                "{}: {lost} of {copied} exchanges could not be written",
                crate::store::describe(&args.dest)
            );
        }
    }
    let seconds = progress.started.elapsed().as_secs_f64();
    let bytes = sink.bytes_written().unwrap_or(0);
    println!(
        "copied {copied} exchanges from {} to {} in {seconds:.1} s{}",
        args.source.display(),
        crate::store::describe(&args.dest),
        if bytes > 0 && seconds > 0.0 {
            format!(" ({:.1} MB/s written)", bytes as f64 / seconds / 1e6)
        } else {
            String::new()
        }
    );
    crate::report_damage(&damage);
    Ok(if damage.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}

/// Streams the exchanges across; gives how many, and the damage skipped.
fn copy(
    input: &crate::input::Input,
    filter: &reprise_model::select::ExchangeFilter,
    limit: Option<u64>,
    sink: &mut dyn Sink,
    redactor: &reprise_model::redact::Redactor,
    progress: &Progress,
) -> anyhow::Result<(u64, Vec<String>)> {
    let mut redacting = Redacting { sink, redactor };
    if matches!(input.kind(), Some(InputKind::Importable(_)))
        && filter.is_empty()
        && limit.is_none()
    {
        // A HAR or .gor file goes through its importer straight into the
        // sink, without holding it in memory.
        let report = input.import(&mut Counting {
            sink: &mut redacting,
            progress,
        })?;
        let skipped = report
            .skipped
            .iter()
            .map(|s| format!("{}: skipped {s}", input.path().display()))
            .collect();
        return Ok((progress.count(), skipped));
    }
    let source = input.source(filter, None)?;
    let mut damage = Vec::new();
    for item in source {
        if limit.is_some_and(|limit| progress.count() >= limit) {
            break;
        }
        match item {
            Ok(exchange) if filter.matches(&exchange) => {
                redacting.append(exchange)?;
                progress.add();
            }
            Ok(_) => {}
            Err(error) if error.is_damage() => damage.push(error.to_string()),
            Err(error) => return Err(error.into()),
        }
    }
    Ok((progress.count(), damage))
}

/// A sink that counts what it hands on, for the progress line.
struct Counting<'a> {
    sink: &'a mut dyn Sink,
    progress: &'a Progress,
}

impl Sink for Counting<'_> {
    fn append(&mut self, exchange: reprise_model::Exchange) -> Result<(), StoreError> {
        self.sink.append(exchange)?;
        self.progress.add();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.sink.sync()
    }
}

/// Exchanges copied, shown on stderr while copying when it is a
/// terminal (and not `--quiet`).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    count: std::sync::atomic::AtomicU64,
    started: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            count: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn add(&self) {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if let Some(bar) = &self.bar
            && n.is_multiple_of(256)
        {
            let rate = n as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("copied {n} exchanges, {rate:.0}/s"));
        }
    }

    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
