//! `reprise export INPUT --har FILE`.

use std::io::Write;

use anyhow::Context;

use crate::Outcome;
use crate::args::ExportArgs;

/// Exports a recording (or the part the filters select) to HAR 1.2.
pub fn run(args: &ExportArgs) -> anyhow::Result<Outcome> {
    let filter = crate::input::filter(&args.filter)?;
    let mut source = super::filtered(crate::input::open(&args.input, &filter)?, filter);
    let to_stdout = args.har.as_os_str() == "-";
    let out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.har)
            .with_context(|| format!("{}: cannot create", args.har.display()))?;
        Box::new(std::io::BufWriter::new(file))
    };
    let report = reprise_interop::export_har(
        source.as_mut(),
        out,
        &reprise_interop::ExportOptions::default(),
    )?;
    crate::report_damage(&report.damage);
    if !to_stdout {
        eprintln!(
            "exported {} exchanges to {}",
            report.exchanges,
            args.har.display()
        );
    }
    Ok(if report.damage.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}
