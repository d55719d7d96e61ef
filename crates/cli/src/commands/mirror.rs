//! `reprise mirror`: live shadowing. The recording proxy of `reprise
//! record` serves the primary (the `--upstream`) and records every call
//! to its tape, as it always does; a replay following that tape as it
//! grows sends a copy of each recorded call to the shadow. The shadow is
//! never on the primary's path: its copies leave from the tape, on the
//! replay's own threads, so a slow, failing or absent shadow cannot delay
//! or change an answer. With `--compare`, the shadow's answers are
//! compared with the primary's at the end, as `reprise diff` does.

use std::path::PathBuf;

use anyhow::Context;
use reprise_model::Sink;
use reprise_replay::{Pacing, Replay, ReplayConfig, Report, Target};

use crate::Outcome;
use crate::args::MirrorArgs;
use crate::commands::record::{duration, record_until_signal, size};
use crate::commands::replay::results_tape;

/// The shadow's replay settings: as fast as the tape grows, at most
/// `--shadow-timeout` a call, the header rewrites given.
fn shadow_config(args: &MirrorArgs) -> anyhow::Result<ReplayConfig> {
    let target = Target::parse(&args.shadow).context("--shadow")?;
    let mut config = ReplayConfig::new(target);
    // Copies leave as they are read: the recording already spaced them.
    config.pacing = Pacing::Max;
    for spec in &args.set_header {
        config.rewrites.set_header(spec)?;
    }
    for name in &args.drop_header {
        config.rewrites.drop_header(name)?;
    }
    config.timeout = duration("--shadow-timeout", &args.shadow_timeout)?;
    if config.timeout.is_zero() {
        anyhow::bail!("--shadow-timeout must be above 0");
    }
    config.max_body = size("--max-body", &args.record.max_body)?;
    Ok(config)
}

/// Runs the mirror until SIGINT or SIGTERM.
pub fn run(args: &MirrorArgs) -> anyhow::Result<Outcome> {
    let config = shadow_config(args)?;
    let rules = if args.compare {
        Some(super::diff::rules(&args.rules)?)
    } else {
        None
    };
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let shadow_out: Option<PathBuf> = match (&args.shadow_out, args.compare) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(temp.path().join("shadow.tape")),
        (None, false) => None,
    };
    let results: Option<Box<dyn Sink>> = match &shadow_out {
        Some(path) => Some(Box::new(results_tape(path)?)),
        None => None,
    };
    let tape = args.record.out.clone();
    let shadow = args.shadow.clone();
    let (stats, (replay, follow)) = record_until_signal(&args.record, "mirroring", move |_| {
        // The replay follows the tape the proxy has just opened.
        let follow = reprise_tape::Follow::default();
        let live = follow.stop.clone();
        let filter = reprise_model::select::ExchangeFilter::new();
        let opener: reprise_replay::Opener = Box::new(move || {
            crate::input::open_following(&tape, &filter, Some(follow.clone())).map_err(|e| {
                reprise_model::StoreError::failed(tape.display().to_string(), crate::one_line(&e))
            })
        });
        let replay = Replay::start(config, opener, results, Some(live.clone()))
            .with_context(|| format!("--shadow {shadow}"))?;
        Ok((replay, live))
    })?;
    // The tape is whole: the replay sends what is left of it, then ends.
    follow.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = replay.wait()?;
    print_shadow(&report);
    if stats.recorded == 0 {
        eprintln!("reprise: nothing was recorded, so nothing went to the shadow");
    }
    let (Some(rules), Some(shadow_out)) = (rules, shadow_out) else {
        return Ok(Outcome::Success);
    };
    println!();
    let noise = if args.rules.auto_noise {
        super::diff::Noise::Guess
    } else {
        super::diff::Noise::None
    };
    let max_memory = size("--max-memory", &args.rules.max_memory)?;
    let (diff, damage) =
        super::diff::diff_with(&args.record.out, &shadow_out, noise, &rules, max_memory)?;
    super::diff::finish(&diff, &damage, args.diff_json.as_deref(), &args.rules)
}

/// The shadow's side, on stderr with the recording's: calls sent,
/// answered, failed.
fn print_shadow(report: &Report) {
    eprintln!(
        "reprise: shadow: {} calls copied to {} in {:.2} s, {} answered, {} failed",
        report.calls, report.target, report.elapsed_s, report.ok, report.failed
    );
    for (kind, example) in &report.failure_examples {
        eprintln!("reprise: shadow: failed ({kind}): {example}");
    }
}
