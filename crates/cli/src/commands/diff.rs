//! `reprise diff`: a replay's results against the recording it replays.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use reprise_compare::{Comparison, DiffReport, NotCompared, Rules, Verdict, compare};
use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Intact};

use crate::Outcome;
use crate::args::DiffArgs;

/// The comparison rules from the command line.
fn rules(args: &DiffArgs) -> anyhow::Result<Rules> {
    let mut rules = Rules::default();
    for path in &args.ignore {
        rules.ignore(path).context("--ignore")?;
    }
    for name in &args.compare_header {
        rules.compare_header(name);
    }
    for name in &args.ignore_header {
        rules.ignore_header(name);
    }
    Ok(rules)
}

/// Runs `reprise diff`.
pub(crate) fn run(args: &DiffArgs) -> anyhow::Result<Outcome> {
    let rules = rules(args)?;
    let (report, damage) = diff(&args.recorded, &args.replayed, &rules)?;
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    crate::report_damage(&damage);
    Ok(if report.has_regressions() {
        Outcome::Regressed
    } else if !damage.is_empty() {
        Outcome::Damaged
    } else {
        Outcome::Success
    })
}

/// Pairs the replayed exchanges with the recorded ones they replay.
///
/// The recording's inbound exchanges are held in memory, keyed by id
/// (responses only matter for the comparison); the replay streams.
pub(crate) fn diff(
    recorded: &Path,
    replayed: &Path,
    rules: &Rules,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    let everything = ExchangeFilter::new();
    let mut damage = Vec::new();
    let mut by_id: HashMap<Vec<u8>, Exchange> = HashMap::new();
    {
        let mut source = crate::input::open(recorded, &everything)?;
        let mut intact = Intact::new(source.as_mut());
        for exchange in intact.by_ref() {
            let exchange = exchange?;
            if !exchange.is_downstream() {
                by_id.insert(exchange.id.clone(), exchange);
            }
        }
        damage.extend(intact.into_damage());
    }
    let mut comparison = Comparison::default();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut replays = 0u64;
    {
        let mut source = crate::input::open(replayed, &everything)?;
        let mut intact = Intact::new(source.as_mut());
        for exchange in intact.by_ref() {
            let exchange = exchange?;
            let Some(link) = &exchange.replay else {
                continue;
            };
            replays += 1;
            match by_id.get(&link.recorded_id) {
                Some(original) => {
                    seen.insert(link.recorded_id.clone());
                    let verdict = compare(original, &exchange, rules);
                    comparison.add(original, Some(&exchange), &verdict);
                }
                None => comparison.add(
                    &exchange,
                    Some(&exchange),
                    &Verdict::NotCompared(NotCompared::MissingRecording),
                ),
            }
        }
        damage.extend(intact.into_damage());
    }
    if replays == 0 {
        bail!(
            "{}: holds no replayed exchange (expected the results of `reprise replay --out`)",
            replayed.display()
        );
    }
    for (id, original) in &by_id {
        if !seen.contains(id) {
            comparison.add(
                original,
                None,
                &Verdict::NotCompared(NotCompared::MissingReplay),
            );
        }
    }
    Ok((comparison.finish(), damage))
}
