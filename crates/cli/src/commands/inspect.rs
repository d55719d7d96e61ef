//! `reprise ls`, `show` and `stats`.

use std::io::Write;

use reprise_inspect::{LsOptions, ShowOptions, StatsOptions};
use reprise_model::select::ExchangeFilter;

use crate::Outcome;
use crate::args::{LsArgs, ShowArgs, StatsArgs};

fn outcome(damage: &[String]) -> Outcome {
    crate::report_damage(damage);
    if damage.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    }
}

/// Lists exchanges.
pub fn ls(args: &LsArgs) -> anyhow::Result<Outcome> {
    let filter = crate::input::filter(&args.filter)?;
    let mut source = crate::input::open_with(&args.input, &filter, args.follow)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let options = LsOptions {
        filter,
        limit: args.limit,
        json: args.json,
        flush_each: args.follow,
    };
    let summary = reprise_inspect::ls(source.as_mut(), &mut out, &options)?;
    out.flush()?;
    Ok(outcome(&summary.damage))
}

/// Shows one exchange.
pub fn show(args: &ShowArgs) -> anyhow::Result<Outcome> {
    let mut source = crate::input::open(&args.input, &ExchangeFilter::new())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let options = ShowOptions {
        json: args.json,
        full: args.full,
        ..ShowOptions::default()
    };
    let summary = reprise_inspect::show(source.as_mut(), &args.id, &mut out, &options)?;
    out.flush()?;
    Ok(outcome(&summary.damage))
}

/// Summarises a recording.
pub fn stats(args: &StatsArgs) -> anyhow::Result<Outcome> {
    let filter = crate::input::filter(&args.filter)?;
    let mut source = crate::input::open(&args.input, &filter)?;
    let stats = reprise_inspect::stats(
        source.as_mut(),
        &StatsOptions {
            filter,
            ..StatsOptions::default()
        },
    )?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        reprise_model::terminal::write_json(&mut out, &stats, true)?;
        writeln!(out)?;
    } else {
        reprise_inspect::render_text(&stats, &mut out)?;
    }
    out.flush()?;
    Ok(outcome(&stats.damage))
}
