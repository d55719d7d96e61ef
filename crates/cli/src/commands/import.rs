//! `reprise import FILE --out TAPE`.

use anyhow::Context;
use reprise_model::redact::Redactor;
use reprise_model::store::{SinkTally, StoreError};
use reprise_model::{Exchange, Sink};
use reprise_tape::WriterOptions;

use crate::Outcome;
use crate::args::ImportArgs;

/// Imports a HAR or GoReplay file into a tape.
pub fn run(args: &ImportArgs) -> anyhow::Result<Outcome> {
    let redactor = super::redactor(&args.redact)?;
    // Read the input's format first: a bad input must not leave an empty tape behind.
    let input = crate::input::Input::open(&args.input)?;
    let mut writer = crate::store::open_tape(
        &args.out,
        crate::store::TapeOpening {
            append: args.append,
            inline: false,
            zstd_level: WriterOptions::default().zstd_level,
            rotation: None,
        },
    )?;
    let imported = input.import(&mut Redacting {
        sink: &mut writer,
        redactor: &redactor,
    });
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

/// A sink that redacts each exchange before handing it on: an import
/// stores nothing the recorder would not.
pub(crate) struct Redacting<'a> {
    pub(crate) sink: &'a mut dyn Sink,
    pub(crate) redactor: &'a Redactor,
}

impl Sink for Redacting<'_> {
    fn append(&mut self, mut exchange: Exchange) -> Result<(), StoreError> {
        self.redactor.apply(&mut exchange);
        self.sink.append(exchange)
    }

    fn tick(&mut self) -> Result<(), StoreError> {
        self.sink.tick()
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.sink.sync()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.sink.close()
    }

    fn bytes_written(&self) -> Option<u64> {
        self.sink.bytes_written()
    }

    fn tally(&self) -> Option<SinkTally> {
        self.sink.tally()
    }
}
