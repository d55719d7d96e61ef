//! `reprise diff`: a replay's results against the recording it replays,
//! with noise taken out when a baseline is given.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use reprise_compare::{
    Comparison, DiffReport, EndpointRules, NoiseModel, NotCompared, Rules, Thresholds, Verdict,
    compare,
};
use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Intact};

use crate::Outcome;
use crate::args::{CompareArgs, DiffArgs};

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
        let bytes = runtime.block_on(reprise_net::reflection::fetch_schema(url))?;
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
    let (report, damage) = diff_with(&args.recorded, &args.replayed, noise, &rules)?;
    finish(&report, &damage, args.json.as_deref(), &args.compare)
}

/// Prints the report, writes the JSON and JUnit files asked for, and
/// says how the comparison ended.
pub(crate) fn finish(
    report: &DiffReport,
    damage: &[String],
    json: Option<&Path>,
    files: &CompareArgs,
) -> anyhow::Result<Outcome> {
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(path) = &files.junit {
        let mut xml = Vec::new();
        report.render_junit(&mut xml)?;
        std::fs::write(path, xml).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(path) = &files.suggest_rules {
        let mut toml = Vec::new();
        report.suggest_rules(&mut toml)?;
        std::fs::write(path, toml).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(path) = &files.report {
        let mut html = Vec::new();
        report.render_html(&mut html)?;
        std::fs::write(path, html).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    crate::report_damage(damage);
    Ok(if report.has_regressions() {
        Outcome::Regressed
    } else if !damage.is_empty() {
        Outcome::Damaged
    } else {
        Outcome::Success
    })
}

/// How noise is told apart.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Noise<'a> {
    /// It is not: every difference counts.
    None,
    /// From a baseline's results.
    Baseline(&'a Path, Thresholds),
    /// Guessed from the values (`--auto-noise`).
    Guess,
}

/// Compares without a baseline.
pub(crate) fn diff(
    recorded: &Path,
    replayed: &Path,
    rules: &Rules,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    diff_with(recorded, replayed, Noise::None, rules)
}

/// Reads every exchange of `path` that replays a recorded one, with the
/// recorded exchange it replays (or `None`), and hands both to `each`.
/// Returns how many replayed exchanges it saw.
fn replays(
    path: &Path,
    recorded: &HashMap<Vec<u8>, Exchange>,
    damage: &mut Vec<String>,
    mut each: impl FnMut(Option<&Exchange>, &Exchange),
) -> anyhow::Result<u64> {
    let mut source = crate::input::open(path, &ExchangeFilter::new())?;
    let mut intact = Intact::new(source.as_mut());
    let mut seen = 0;
    for exchange in intact.by_ref() {
        let exchange = exchange?;
        let Some(link) = &exchange.replay else {
            continue;
        };
        seen += 1;
        each(recorded.get(&link.recorded_id), &exchange);
    }
    damage.extend(intact.into_damage());
    if seen == 0 {
        bail!(
            "{}: holds no replayed exchange (expected the results of `reprise replay --out`)",
            path.display()
        );
    }
    Ok(seen)
}

/// What a recorded exchange needs to be compared and grouped: its
/// response, its response messages and its endpoint. The request's
/// headers, body and messages are dropped to keep the map small.
fn for_comparison(mut exchange: Exchange) -> Exchange {
    if let Some(request) = exchange.request.as_mut() {
        request.headers = Vec::new();
        request.trailers = Vec::new();
        request.body = Default::default();
    }
    exchange
        .messages
        .retain(|m| m.direction() != reprise_model::Direction::Request);
    exchange
}

/// Pairs the replayed exchanges with the recorded ones they replay.
///
/// The recording's inbound exchanges are held in memory, keyed by id;
/// the replays stream (the candidate twice with a baseline: once to count
/// its differences, once to judge them).
pub(crate) fn diff_with(
    recorded: &Path,
    replayed: &Path,
    noise: Noise<'_>,
    rules: &Rules,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    let mut damage = Vec::new();
    let mut by_id: HashMap<Vec<u8>, Exchange> = HashMap::new();
    {
        let mut source = crate::input::open(recorded, &ExchangeFilter::new())?;
        let mut intact = Intact::new(source.as_mut());
        for exchange in intact.by_ref() {
            let exchange = exchange?;
            if !exchange.is_downstream() {
                by_id.insert(exchange.id.clone(), for_comparison(exchange));
            }
        }
        damage.extend(intact.into_damage());
    }
    let mut model = match noise {
        Noise::Baseline(path, thresholds) => {
            let mut model = NoiseModel::new(thresholds);
            replays(path, &by_id, &mut damage, |original, exchange| {
                if let Some(original) = original {
                    model.baseline(original, &compare(original, exchange, rules));
                }
            })?;
            replays(replayed, &by_id, &mut damage, |original, exchange| {
                if let Some(original) = original {
                    model.candidate(original, &compare(original, exchange, rules));
                }
            })?;
            model.decide();
            Some(model)
        }
        Noise::None | Noise::Guess => None,
    };
    let guess = matches!(noise, Noise::Guess);
    let mut comparison = Comparison::default();
    if guess {
        comparison.noise_guessed();
    }
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    replays(
        replayed,
        &by_id,
        &mut damage,
        |original, exchange| match original {
            Some(original) => {
                seen.insert(original.id.clone());
                let verdict = compare(original, exchange, rules);
                match model.as_mut() {
                    Some(model) => {
                        let (verdict, noise) = model.judge(original, verdict);
                        comparison.add_judged(original, Some(exchange), &verdict, &noise);
                    }
                    None if guess => {
                        let (verdict, noise) = reprise_compare::guess(verdict);
                        comparison.add_judged(original, Some(exchange), &verdict, &noise);
                    }
                    None => comparison.add(original, Some(exchange), &verdict),
                }
            }
            None => comparison.add(
                exchange,
                Some(exchange),
                &Verdict::NotCompared(NotCompared::MissingRecording),
            ),
        },
    )?;
    for (id, original) in &by_id {
        if !seen.contains(id) {
            comparison.add(
                original,
                None,
                &Verdict::NotCompared(NotCompared::MissingReplay),
            );
        }
    }
    if let Some(model) = &model {
        comparison.suppressed(model.suppressed());
    }
    Ok((comparison.finish(), damage))
}
