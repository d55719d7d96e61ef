//! `reprise test RECORDING --port PORT -- COMMAND ARGS...`: a build of a
//! service tested against a recording in a fail-closed sandbox.
//!
//! The service runs in network and mount namespaces of its own
//! (`reprise_sandbox`); the mock listens inside them at the addresses the
//! service's downstream calls went to at record time and answers them
//! from the recording, writing every call it got; the recording is
//! replayed to the service from a thread inside; then answers and
//! downstream calls are compared with the recording, and every attempt
//! to reach anything else is reported. `--baseline-cmd` runs the old
//! build the same way, as the baseline that tells noise from regressions.

mod egress;
mod interrupt;
mod mock_server;
mod recorded_time;
mod sandboxed;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reprise_compare::{DiffReport, Thresholds};
use reprise_intercept::LocalCa;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Intact, Source};
use reprise_replay::ReplayConfig;

use crate::Outcome;
use crate::args::{ReplayArgs, TestArgs};
use crate::commands::record::duration;
use crate::report_file::write_report;

use self::sandboxed::{Build, RunResult};

/// What `--out DIR` holds after a run.
pub(crate) mod files {
    /// The replayed exchanges (`reprise replay --out`).
    pub const REPLAYED: &str = "replayed.tape";
    /// Every downstream call the service made (`reprise mock --out`).
    pub const DOWNSTREAM: &str = "downstream.tape";
    /// The baseline's replayed exchanges (`--baseline-cmd`).
    pub const BASELINE_REPLAYED: &str = "baseline-replayed.tape";
    /// The baseline's downstream calls (`--baseline-cmd`).
    pub const BASELINE_DOWNSTREAM: &str = "baseline-downstream.tape";
    /// What the service printed (stdout and stderr, as they came).
    pub const SERVICE_LOG: &str = "service.log";
    /// What the baseline printed.
    pub const BASELINE_LOG: &str = "baseline.log";
    /// The report as text: what is printed.
    pub const REPORT_TEXT: &str = "report.txt";
    /// The report as JSON.
    pub const REPORT_JSON: &str = "report.json";
    /// Every file a run writes, replaced by the next run.
    pub const ALL: [&str; 8] = [
        REPLAYED,
        DOWNSTREAM,
        BASELINE_REPLAYED,
        BASELINE_DOWNSTREAM,
        SERVICE_LOG,
        BASELINE_LOG,
        REPORT_TEXT,
        REPORT_JSON,
    ];
}

/// Calls in flight at most, unless `--concurrency` says (as `replay`).
const DEFAULT_CONCURRENCY: usize = 32;

/// Everything checked from the command line before anything starts.
pub(crate) struct Settings {
    /// The replay's settings, the target 127.0.0.1:PORT inside.
    pub replay: ReplayConfig,
    /// The mock's options.
    pub mock: reprise_mock::MockOptions,
    /// Print a line per downstream call.
    pub mock_log: bool,
    /// How long the service may take to open its port.
    pub start_timeout: Duration,
    /// The baseline's noise thresholds.
    pub thresholds: Thresholds,
    /// Memory for the comparison.
    pub max_memory: usize,
}

impl Settings {
    fn from_args(args: &TestArgs) -> anyhow::Result<Settings> {
        if let Some(url) = &args.fallthrough {
            bail!(
                "--fallthrough {url}: reprise test never lets a call reach a real system; a call the recording cannot answer is a miss (run `reprise mock --fallthrough` outside the sandbox to explore)"
            );
        }
        if args.fallthrough_writes {
            bail!(
                "--fallthrough-writes: reprise test never lets a call reach a real system, writes least of all"
            );
        }
        if let Some(concurrency) = args.replay.concurrency.filter(|&n| args.faketime && n > 1) {
            bail!(
                "--faketime sets one clock for the whole service: it replays one call at a time, and --concurrency {concurrency} cannot be kept (leave --concurrency out, or give 1)"
            );
        }
        if args
            .command
            .first()
            .is_none_or(|program| program.is_empty())
        {
            bail!("no service command: give it after `--`, such as -- python3 shop.py");
        }
        if args.port == 0 {
            bail!("--port 0: give the port the service listens on");
        }
        if args.compare.auto_noise && args.baseline_cmd.is_some() {
            bail!(
                "--auto-noise guesses noise without a baseline; with --baseline-cmd the baseline decides"
            );
        }
        let start_timeout = duration("--start-timeout", &args.start_timeout)?;
        if start_timeout.is_zero() {
            bail!("--start-timeout must be above 0");
        }
        let replay = super::replay::config(&replay_args(args))?;
        Ok(Settings {
            replay,
            mock: mock_options(args)?,
            mock_log: args.mock.mock_log,
            start_timeout,
            thresholds: super::diff::thresholds(&args.compare)?,
            max_memory: super::record::size("--max-memory", &args.compare.max_memory)?,
        })
    }
}

/// `reprise replay`'s arguments for the replay `reprise test` makes, so
/// that its options are read (and refused) exactly as `replay` reads them.
fn replay_args(args: &TestArgs) -> ReplayArgs {
    let r = &args.replay;
    ReplayArgs {
        source: args.recording.clone(),
        target: format!("http://127.0.0.1:{}", args.port),
        out: None,
        speed: r.speed,
        rate: r.rate,
        max: r.max,
        concurrency: r.concurrency.unwrap_or(if args.faketime {
            1
        } else {
            DEFAULT_CONCURRENCY
        }),
        threads: r.threads,
        connections: r.connections,
        protocol: r.protocol,
        repeat: false,
        duration: None,
        limit: r.limit,
        filter: r.filter.clone(),
        set_header: r.set_header.clone(),
        drop_header: r.drop_header.clone(),
        rewrite_path: r.rewrite_path.clone(),
        preserve_host: r.preserve_host,
        insecure: false,
        ca: None,
        timeout: r.timeout.clone(),
        max_body: r.max_body.clone(),
        follow: false,
        dry_run: false,
        json: None,
        quiet: r.quiet,
        compare: false,
        baseline_target: None,
        diff_json: None,
        rules: Default::default(),
        redact: crate::args::RedactArgs {
            redact_header: args.redact.redact_header.clone(),
            redact_json: args.redact.redact_json.clone(),
            redact_query: args.redact.redact_query.clone(),
            redact_form: args.redact.redact_form.clone(),
            no_default_redaction: args.redact.no_default_redaction,
        },
    }
}

/// The mock's options from the `--mock-*` flags.
fn mock_options(args: &TestArgs) -> anyhow::Result<reprise_mock::MockOptions> {
    let m = &args.mock;
    let exhausted: reprise_mock::Exhausted = m
        .mock_exhausted
        .parse()
        .map_err(|e| anyhow::anyhow!("--mock-exhausted: {e}"))?;
    let shared = if m.mock_shared.is_empty() {
        None
    } else {
        let mut filter = ExchangeFilter::new();
        for term in &m.mock_shared {
            filter = filter
                .add_match(term)
                .with_context(|| format!("--mock-shared {term:?}"))?;
        }
        Some(filter)
    };
    Ok(reprise_mock::MockOptions {
        exhausted,
        ignore_authority: m.mock_ignore_authority,
        global: m.mock_global,
        shared,
        timing: !m.mock_no_timing,
        max_body: super::record::size("--mock-max-body", &m.mock_max_body)?,
        inbound: false,
        redactor: super::redactor(&args.redact)?,
    })
}

/// Runs `reprise test`.
pub(crate) fn run(args: &TestArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::from_args(args)?;
    // Before any thread exists (nothing before this point starts one): a
    // user namespace can only be entered by a single-threaded process.
    reprise_sandbox::prepare_process()?;
    // After: `--reflection` asks a server, on a runtime of its own.
    let rules = super::diff::rules(&args.compare)?;
    let interrupt = interrupt::Interrupt::catch()?;
    let recording = read_recording(&args.recording)?;
    let mut settings = settings;
    if args.replay.concurrency.is_none() && linked_by_time(&recording) {
        // A database call that carries no trace context is scoped by the
        // one replayed exchange in flight: one at a time, each is exact.
        eprintln!(
            "reprise: the recording's database calls were linked by the call in flight: replaying one call at a time (give --concurrency to change it)"
        );
        settings.replay.concurrency = 1;
    }
    let settings = settings;
    let listeners = egress::recorded_listeners(&recording)?;
    let ca = egress::local_ca(args.ca_dir.as_deref())?;
    let recorded: Vec<_> = listeners.iter().map(|(_, l)| l.clone()).collect();
    let setup = sandboxed::Setup {
        recording: &recording,
        recording_path: &args.recording,
        port: args.port,
        listeners,
        dns_names: egress::dns_names(&recording),
        env: egress::service_env(&recorded, ca.as_deref().map(LocalCa::files)),
        ca,
        faketime: args.faketime,
        quiet: args.replay.quiet,
        settings: &settings,
        interrupt: &interrupt,
    };
    if setup.listeners.is_empty() {
        eprintln!(
            "reprise: {}: no downstream calls recorded through `reprise record --egress`: every call the service makes is an escape",
            args.recording.display()
        );
    }
    let out = prepare_out(&args.out)?;
    let candidate = sandboxed::run(
        &setup,
        Build {
            name: "service",
            command: args.command.clone(),
            replayed: out.join(files::REPLAYED),
            downstream: out.join(files::DOWNSTREAM),
            log: out.join(files::SERVICE_LOG),
        },
    )?;
    let baseline = match &args.baseline_cmd {
        Some(_) if interrupt.caught() => None,
        Some(command) => Some(sandboxed::run(
            &setup,
            Build {
                name: "baseline",
                command: vec!["sh".into(), "-c".into(), command.clone()],
                replayed: out.join(files::BASELINE_REPLAYED),
                downstream: out.join(files::BASELINE_DOWNSTREAM),
                log: out.join(files::BASELINE_LOG),
            },
        )?),
        None => None,
    };
    let noise = match (&baseline, args.compare.auto_noise) {
        (Some(b), _) => super::diff::Noise::Baseline(&b.replayed, settings.thresholds),
        (None, true) => super::diff::Noise::Guess,
        (None, false) => super::diff::Noise::None,
    };
    let calls = [candidate.downstream.clone()];
    let baseline_calls: Vec<PathBuf> = baseline.iter().map(|b| b.downstream.clone()).collect();
    let (diff, damage) = super::diff::diff_all(
        &args.recording,
        &ExchangeFilter::new(),
        std::slice::from_ref(&candidate.replayed),
        noise,
        &rules,
        settings.max_memory,
        (&calls, &baseline_calls),
    )?;
    let mut judgement = super::diff::finish(&diff, &damage, None, &args.compare)?;
    judgement.missed += candidate.mock.report.missed;
    let finding: Outcome = judgement.finding().into();
    // An escape attempt fails the run as a regression does. The
    // recording was read whole before anything started (a damaged one is
    // refused, as `reprise mock` refuses it): damage now is in a tape this
    // run wrote and read back, an error rather than diff's 3.
    let outcome = match finding {
        Outcome::Success | Outcome::Damaged | Outcome::TooFewCompared
            if !candidate.escapes.is_empty() =>
        {
            Outcome::Regressed
        }
        _ if interrupt.caught() => Outcome::Error,
        Outcome::Damaged => {
            eprintln!(
                "reprise: a tape this run wrote under {} reads back damaged: not a pass",
                out.display()
            );
            Outcome::Error
        }
        other => other,
    };
    let report = TestReport {
        candidate: &candidate,
        baseline: baseline.as_ref(),
        diff: &diff,
        outcome,
    };
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    write_report(&out.join(files::REPORT_TEXT), |w| {
        diff.render(w)?;
        Ok(report.render(w)?)
    })?;
    write_report(&out.join(files::REPORT_JSON), |w| {
        serde_json::to_writer_pretty(&mut *w, &report.json())?;
        Ok(w.write_all(b"\n")?)
    })?;
    if interrupt.caught() {
        bail!(
            "interrupted: {} holds what was replayed before the signal",
            out.display()
        );
    }
    Ok(outcome)
}

/// Every exchange of the recording; damage is an error, since the mock
/// would miss the calls the damaged part held.
/// Whether any downstream call of `recording` was linked to its parent by
/// the call in flight (a database call without trace context).
fn linked_by_time(recording: &[Exchange]) -> bool {
    recording.iter().any(|e| {
        e.db.is_some()
            && matches!(
                e.link_kind().map(|(kind, _)| kind),
                Some(reprise_model::LinkKind::InFlight | reprise_model::LinkKind::Ambiguous)
            )
    })
}

fn read_recording(path: &Path) -> anyhow::Result<Vec<Exchange>> {
    let mut source: Box<dyn Source> = crate::input::open(path, &ExchangeFilter::new())?;
    let mut intact = Intact::new(source.as_mut());
    let exchanges = intact
        .by_ref()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if let Some(damage) = intact.damage().first() {
        bail!(
            "{}: damaged ({damage}); a test from a damaged recording would miss calls",
            path.display()
        );
    }
    Ok(exchanges)
}

/// Creates `--out DIR` (0700) when missing, and removes what an earlier
/// run wrote there (its tapes cannot be appended to).
fn prepare_out(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("--out {}: not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("--out {}: cannot create", dir.display()))?;
        }
        Err(e) => {
            return Err(e).with_context(|| format!("--out {}: cannot read", dir.display()));
        }
    }
    for name in files::ALL {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("--out {}: cannot replace {name}", dir.display()));
            }
        }
    }
    Ok(dir.to_path_buf())
}

/// What a run found besides the comparison: the replays, the mocks, the
/// escape attempts.
struct TestReport<'a> {
    candidate: &'a RunResult,
    baseline: Option<&'a RunResult>,
    diff: &'a DiffReport,
    /// How the run ends.
    outcome: Outcome,
}

impl TestReport<'_> {
    fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out)?;
        for run in std::iter::once(self.candidate).chain(self.baseline) {
            run.render(out)?;
        }
        let escapes = self.candidate.escapes.len();
        let verdict = match self.outcome {
            Outcome::Success => "passed",
            Outcome::Regressed if self.diff.regressed > 0 => "regressed",
            Outcome::Regressed => "failed",
            Outcome::TooFewCompared => "not a pass (too few pairs compared)",
            Outcome::Error | Outcome::Damaged => "not finished",
        };
        writeln!(
            out,
            "test {verdict}: {} exchanges regressed, {} downstream calls missed, {escapes} escape attempts",
            self.diff.regressed, self.candidate.mock.report.missed
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "service": self.candidate.json(),
            "baseline": self.baseline.map(RunResult::json),
            "diff": self.diff,
            "exit_code": self.outcome.code(),
        })
    }
}
