//! `reprise import FILE --out TAPE`.

use anyhow::Context;
use reprise_model::Sink;
use reprise_tape::{TapeWriter, WriterOptions};

use crate::Outcome;
use crate::args::ImportArgs;

/// Imports a HAR or GoReplay file into a tape.
pub fn run(args: &ImportArgs) -> anyhow::Result<Outcome> {
    // Read the input's format first: a bad input must not leave an empty tape behind.
    let input = crate::input::Input::open(&args.input)?;
    let mut writer = if args.append {
        let (writer, report) = TapeWriter::open(&args.out, WriterOptions::default())?;
        if let Some(cut) = report.cut {
            eprintln!(
                "reprise: tape {}: cut off a torn tail: {cut}",
                args.out.display()
            );
        }
        writer
    } else {
        TapeWriter::create(&args.out, WriterOptions::default())?
    };
    let imported = input.import(&mut writer);
    let closed = writer.close();
    let report = match imported {
        Ok(report) => report,
        Err(error) => {
            if !args.append {
                let _ = std::fs::remove_file(&args.out);
            }
            return Err(error);
        }
    };
    closed.with_context(|| format!("tape {}", args.out.display()))?;
    println!("{}", report.summary(&args.input, &args.out));
    for skipped in &report.skipped {
        // A reason may quote the input (a method, a URL): shown escaped.
        eprintln!(
            "reprise: {}: skipped {}",
            args.input.display(),
            reprise_model::terminal::escape(skipped)
        );
    }
    Ok(if report.skipped.is_empty() {
        Outcome::Success
    } else {
        Outcome::Damaged
    })
}
