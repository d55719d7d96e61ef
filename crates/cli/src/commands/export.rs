//! `reprise export INPUT --har FILE`.

use crate::Outcome;
use crate::args::ExportArgs;

/// Exports a recording (or the part the filters select) to HAR 1.2.
pub fn run(args: &ExportArgs) -> anyhow::Result<Outcome> {
    let filter = crate::input::filter(&args.filter)?;
    let mut source = super::filtered(crate::input::open(&args.input, &filter)?, filter);
    let to_stdout = args.har.as_os_str() == "-";
    let options = reprise_interop::ExportOptions::default();
    let report = if to_stdout {
        reprise_interop::export_har(source.as_mut(), std::io::stdout().lock(), &options)?
    } else {
        crate::report_file::write_report(&args.har, |out| {
            Ok(reprise_interop::export_har(source.as_mut(), out, &options)?)
        })?
    };
    crate::report_damage(&report.damage);
    if report.database_calls > 0 {
        eprintln!(
            "left out {} database and cache calls: HAR holds HTTP only",
            report.database_calls
        );
    }
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
