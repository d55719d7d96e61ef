//! `reprise diff`: a replay's results against the recording it replays,
//! with noise taken out when a baseline is given.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reprise_compare::{
    DEFAULT_MAX_MEMORY, DiffReport, EndpointRules, Judgement, OpenError, Pairing, Rules, Side,
    Thresholds,
};
use reprise_model::Source;
use reprise_model::select::ExchangeFilter;

use crate::Outcome;
use crate::args::{CompareArgs, DiffArgs};
use crate::report_file::write_report;

/// A rules file (`--rules FILE`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    unordered: Vec<String>,
    #[serde(default)]
    ignore_headers: Vec<String>,
    #[serde(default)]
    compare_headers: Vec<String>,
    #[serde(default)]
    rule: Vec<EndpointRule>,
}

/// One `[[rule]]` table.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointRule {
    endpoint: String,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    unordered: Vec<String>,
}

fn read_rules(path: &Path, rules: &mut Rules) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--rules {}: cannot read", path.display()))?;
    let file: RulesFile = toml::from_str(&text).map_err(|e| {
        // toml draws the error under the line over several lines; the
        // first says what and where.
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        anyhow::anyhow!("--rules {}: {first}: {}", path.display(), e.message())
    })?;
    let at = |what: &str| format!("--rules {}: {what}", path.display());
    for p in &file.ignore {
        rules.ignore(p).with_context(|| at("ignore"))?;
    }
    for p in &file.unordered {
        rules.unordered(p).with_context(|| at("unordered"))?;
    }
    for name in &file.compare_headers {
        rules.compare_header(name);
    }
    for name in &file.ignore_headers {
        rules.ignore_header(name);
    }
    for rule in file.rule {
        let parse = |paths: &[String], what: &str| {
            paths
                .iter()
                .map(|p| reprise_model::redact::JsonPath::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| at(&format!("rule for {:?}: {what}", rule.endpoint)))
        };
        let endpoint = rule.endpoint.trim();
        if !endpoint.contains(' ') {
            bail!(
                "{}: endpoint {endpoint:?}: expected METHOD /path, such as \"POST /api/orders\"",
                at("rule")
            );
        }
        rules.endpoints.push(EndpointRules {
            ignore: parse(&rule.ignore, "ignore")?,
            unordered: parse(&rule.unordered, "unordered")?,
            endpoint: endpoint.to_string(),
        });
    }
    Ok(())
}

/// The comparison rules from the command line (and a rules file).
/// Refuses comparison options given without `--compare`.
pub(crate) fn only_with_compare(given: &CompareArgs) -> anyhow::Result<()> {
    if !given.ignore.is_empty()
        || !given.unordered.is_empty()
        || given.rules.is_some()
        || !given.ignore_header.is_empty()
        || !given.compare_header.is_empty()
        || given.junit.is_some()
        || given.report.is_some()
        || given.suggest_rules.is_some()
        || !given.proto.is_empty()
        || given.descriptor_set.is_some()
        || given.reflection.is_some()
        || given.auto_noise
        || given.min_compared.is_some()
    {
        anyhow::bail!(
            "--ignore, --unordered, --rules, --ignore-header, --compare-header, --auto-noise, --proto, --descriptor-set, --reflection, --junit, --report, --suggest-rules and --min-compared go with --compare"
        );
    }
    Ok(())
}

pub(crate) fn rules(args: &CompareArgs) -> anyhow::Result<Rules> {
    let mut rules = Rules::default();
    if let Some(path) = &args.rules {
        read_rules(path, &mut rules)?;
    }
    for path in &args.ignore {
        rules.ignore(path).context("--ignore")?;
    }
    if !args.proto.is_empty() {
        rules.schema = Some(reprise_compare::Schema::from_protos(&args.proto).context("--proto")?);
    }
    if let Some(path) = &args.descriptor_set {
        rules.schema =
            Some(reprise_compare::Schema::from_descriptor_set(path).context("--descriptor-set")?);
    }
    if let Some(url) = &args.reflection {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let bytes = runtime.block_on(crate::reflection::fetch_schema(url))?;
        rules.schema = Some(reprise_compare::Schema::from_encoded(&bytes, url)?);
    }
    for path in &args.unordered {
        rules.unordered(path).context("--unordered")?;
    }
    for name in &args.compare_header {
        rules.compare_header(name);
    }
    for name in &args.ignore_header {
        rules.ignore_header(name);
    }
    Ok(rules)
}

pub(crate) fn thresholds(args: &CompareArgs) -> anyhow::Result<Thresholds> {
    for (flag, value) in [
        ("--noise-relative", args.noise_relative),
        ("--noise-absolute", args.noise_absolute),
    ] {
        if !(0.0..1.0).contains(&value) {
            bail!("{flag} {value}: expected a fraction from 0 up to 1, such as 0.2");
        }
    }
    Ok(Thresholds {
        relative: args.noise_relative,
        absolute: args.noise_absolute,
    })
}

/// Runs `reprise diff`.
pub(crate) fn run(args: &DiffArgs) -> anyhow::Result<Outcome> {
    let rules = rules(&args.compare)?;
    let thresholds = thresholds(&args.compare)?;
    let noise = match (args.baseline.as_deref(), args.compare.auto_noise) {
        (Some(_), true) => {
            bail!(
                "--auto-noise guesses noise without a baseline; with --baseline the baseline decides"
            )
        }
        (Some(b), false) => Noise::Baseline(b, thresholds),
        (None, true) => Noise::Guess,
        (None, false) => Noise::None,
    };
    let max_memory = super::record::size("--max-memory", &args.compare.max_memory)?;
    if !args.baseline_downstream.is_empty() {
        if args.baseline.is_none() {
            bail!("--baseline-downstream goes with --baseline (the calls that baseline made)");
        }
        if args.downstream.is_empty() {
            bail!(
                "--baseline-downstream goes with --downstream (the calls the new build made, to compare)"
            );
        }
    }
    // Each names a file that must open as an input, said with its flag.
    for (flag, paths) in [
        ("--downstream", &args.downstream),
        ("--baseline-downstream", &args.baseline_downstream),
    ] {
        for path in paths {
            crate::input::Input::open(path).with_context(|| flag.to_string())?;
        }
    }
    let (report, damage) = diff_all(
        &args.recorded,
        &ExchangeFilter::new(),
        &args.replayed,
        noise,
        &rules,
        max_memory,
        (&args.downstream, &args.baseline_downstream),
    )?;
    let judgement = finish(&report, &damage, args.json.as_deref(), &args.compare)?;
    Ok(judgement.finding().into())
}

/// Pairs a comparison must compare to pass: `--min-compared`, 1 unless
/// given.
pub(crate) fn min_compared(args: &CompareArgs) -> u64 {
    args.min_compared.unwrap_or(1)
}

/// Prints the report, writes the JSON and JUnit files asked for, reports
/// damage and a shortfall of pairs compared on stderr, and says what the
/// comparison found.
pub(crate) fn finish(
    report: &DiffReport,
    damage: &[String],
    json: Option<&Path>,
    files: &CompareArgs,
) -> anyhow::Result<Judgement> {
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    if let Some(path) = json {
        write_report(path, |w| {
            serde_json::to_writer_pretty(&mut *w, report)?;
            Ok(w.write_all(b"\n")?)
        })?;
    }
    if let Some(path) = &files.junit {
        write_report(path, |w| Ok(report.render_junit(w)?))?;
    }
    if let Some(path) = &files.suggest_rules {
        write_report(path, |w| Ok(report.suggest_rules(w)?))?;
    }
    if let Some(path) = &files.report {
        write_report(path, |w| Ok(report.render_html(w)?))?;
    }
    crate::report_damage(damage);
    let min_compared = min_compared(files);
    let judgement = report.judgement(min_compared, !damage.is_empty());
    if judgement.too_few() {
        let not_compared: u64 = report.not_compared.values().sum();
        eprintln!(
            "reprise: {} pairs compared, fewer than --min-compared {min_compared} ({not_compared} not compared): not a pass",
            judgement.compared
        );
    }
    Ok(judgement)
}

/// How noise is told apart: the comparator's own.
pub(crate) use reprise_compare::Noise;

/// Compares without a baseline.
pub(crate) fn diff(
    recorded: &Path,
    replayed: &Path,
    rules: &Rules,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    diff_with(
        recorded,
        &ExchangeFilter::new(),
        replayed,
        Noise::None,
        rules,
        DEFAULT_MAX_MEMORY,
    )
}

/// Pairs the replayed exchanges with the recorded ones they replay and
/// compares each pair ([`Pairing`]), holding at most about `max_memory`
/// of the recording at a time. The inputs are what the command line
/// names (a tape, a HAR or GoReplay file, a pipe); of the recording,
/// only what `window` lets through.
pub(crate) fn diff_with(
    recorded: &Path,
    window: &ExchangeFilter,
    replayed: &Path,
    noise: Noise<'_>,
    rules: &Rules,
    max_memory: usize,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    diff_all(
        recorded,
        window,
        &[replayed.to_path_buf()],
        noise,
        rules,
        max_memory,
        (&[], &[]),
    )
}

/// [`diff_with`], and the downstream calls too: `calls.0` hold the calls
/// the new build made (`reprise mock --out`), `calls.1` those the
/// baseline made; none: the responses alone are compared.
pub(crate) fn diff_all(
    recorded: &Path,
    window: &ExchangeFilter,
    replayed: &[PathBuf],
    noise: Noise<'_>,
    rules: &Rules,
    max_memory: usize,
    calls: (&[PathBuf], &[PathBuf]),
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    let all = ExchangeFilter::new();
    let open = |path: &Path, side: Side| -> Result<Box<dyn Source>, OpenError> {
        // The window selects the recording's exchanges; the calls under
        // them follow them, whatever the window says of a call.
        let window = match side {
            Side::Recorded => window,
            Side::Replayed | Side::Downstream => &all,
        };
        Ok(crate::input::open(path, window)?)
    };
    let paired = Pairing::new(recorded, replayed, rules)
        .noise(noise)
        .max_memory(max_memory)
        .downstream(calls.0, calls.1)
        .run(&open)?;
    Ok((paired.report, paired.damage))
}
