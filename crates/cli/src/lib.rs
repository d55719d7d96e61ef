//! The `reprise` command line: clap arguments mapped to library calls.
//!
//! Exit codes (documented in docs/cli.md):
//! 0 success; 1 a comparison found regressions or a mock missed a call;
//! 2 usage or runtime error; 3 the input was damaged: everything intact
//! was processed and each skipped part was reported on stderr; 4 too
//! little was compared (`--min-compared`). Commands that judge take their
//! code from [`reprise_compare::Judgement`].

mod args;
mod commands;
mod input;
mod reflection;
mod report_file;
mod store;

use std::io::Write;

pub use args::Cli;

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// A comparison found regressions.
    Regressed,
    /// Usage or runtime error.
    Error,
    /// The input was damaged; the intact part was processed.
    Damaged,
    /// Fewer pairs were compared than `--min-compared`.
    TooFewCompared,
}

impl From<reprise_compare::Finding> for Outcome {
    fn from(finding: reprise_compare::Finding) -> Self {
        use reprise_compare::Finding;
        match finding {
            Finding::Passed => Outcome::Success,
            Finding::Regressed => Outcome::Regressed,
            Finding::Damaged => Outcome::Damaged,
            Finding::TooFewCompared => Outcome::TooFewCompared,
        }
    }
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Regressed => 1,
            Outcome::Error => 2,
            Outcome::Damaged => 3,
            Outcome::TooFewCompared => 4,
        }
    }
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match commands::run(cli) {
        // The reader of our output went away (`reprise ls | head`): that
        // is how pipelines end, not an error.
        Err(error) if is_broken_pipe(&error) => Ok(Outcome::Success),
        other => other,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, without repeating a cause that
/// its parent's message already contains.
pub fn one_line(error: &anyhow::Error) -> String {
    reprise_model::error::one_line(error.as_ref())
}

/// Prints damage reports to stderr, one line each.
pub(crate) fn report_damage(damage: &[String]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for line in damage {
        let _ = writeln!(err, "reprise: {}", reprise_model::terminal::escape(line));
    }
}
