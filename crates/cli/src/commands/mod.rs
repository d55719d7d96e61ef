//! One function per command.

mod ca;
mod copy;
mod demo;
mod diff;
mod export;
mod import;
mod inspect;
mod mirror;
mod mock;
mod record;
mod replay;
mod test;

use crate::Outcome;
use crate::args::{Cli, Command};

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    crate::store::set_kafka_options(&cli.kafka_option, cli.kafka_config.as_deref())?;
    match cli.command {
        Command::Ls(args) => inspect::ls(&args),
        Command::Show(args) => inspect::show(&args),
        Command::Stats(args) => inspect::stats(&args),
        Command::Import(args) => import::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Copy(args) => copy::run(&args),
        Command::Record(args) => record::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Mock(args) => mock::run(&args),
        Command::Mirror(args) => mirror::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Ca(command) => ca::run(&command),
    }
}

/// Wraps a source so only exchanges passing `filter` come out; damage
/// reports and errors pass through.
pub(crate) fn filtered(
    source: Box<dyn reprise_model::Source>,
    filter: reprise_model::select::ExchangeFilter,
) -> Box<dyn reprise_model::Source> {
    Box::new(source.filter(move |item| {
        item.as_ref()
            .map_or(true, |exchange| filter.matches(exchange))
    }))
}

/// The redaction rules the flags give (`record`, `mock`).
pub(crate) fn redactor(
    args: &crate::args::RedactArgs,
) -> anyhow::Result<reprise_model::redact::Redactor> {
    let rules = reprise_model::redact::RedactionRules {
        defaults: !args.no_default_redaction,
        headers: args.redact_header.clone(),
        json: args.redact_json.clone(),
        query: args.redact_query.clone(),
        form: args.redact_form.clone(),
    };
    rules
        .redactor()
        .map_err(|e| anyhow::anyhow!("--redact-{} {e}", e.kind.word()))
}
