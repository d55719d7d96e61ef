//! `reprise ca init|env`: the local CA of the egress proxy
//! (`reprise_intercept::ca` does the work).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use reprise_intercept::ca::{self, CaError};
use reprise_intercept::{Leaves, LocalCa};

use crate::Outcome;
use crate::args::{CaCommand, CaDirArgs};

/// Runs `reprise ca SUBCOMMAND`.
pub fn run(command: &CaCommand) -> anyhow::Result<Outcome> {
    match command {
        CaCommand::Init(args) => {
            let dir = ca::resolve_dir(args.dir.dir.as_deref())?;
            let files = ca::init(&dir, args.force)?;
            println!("created the reprise CA in {}", files.dir.display());
            println!("  certificate: {}", files.cert.display());
            println!("  key:         {} (mode 0600)", files.key.display());
            println!(
                "  bundle:      {} (system roots + the CA)",
                files.bundle.display()
            );
            println!(
                "make clients trust it: eval \"$(reprise ca env{})\"",
                dir_flag(&args.dir)
            );
            Ok(Outcome::Success)
        }
        CaCommand::Env(args) => {
            let dir = ca::resolve_dir(args.dir.as_deref())?;
            // The CA must load: lines pointing at a broken CA help nobody.
            let loaded = reprise_intercept::LocalCa::load(&dir)?;
            print!("{}", ca::env_script(loaded.files())?);
            Ok(Outcome::Success)
        }
    }
}

fn dir_flag(args: &CaDirArgs) -> String {
    match &args.dir {
        Some(dir) => format!(" --dir {}", dir.display()),
        None => String::new(),
    }
}

/// The leaves that answer CONNECT tunnels carrying TLS (`record --egress`,
/// `mock`): from the CA in `dir` (`--ca-dir`, which must load), else the
/// one `reprise ca` finds, if there is one (none initialised: `None`).
pub(crate) fn leaves(dir: Option<&Path>) -> anyhow::Result<Option<Arc<Leaves>>> {
    let ca = match dir {
        Some(dir) => LocalCa::load(dir).context("--ca-dir")?,
        None => match ca::resolve_dir(None).map(|dir| LocalCa::load(&dir)) {
            Ok(Ok(ca)) => ca,
            Err(CaError::NoDirectory) | Ok(Err(CaError::Missing { .. })) => return Ok(None),
            Err(e) | Ok(Err(e)) => return Err(e.into()),
        },
    };
    Ok(Some(Arc::new(Leaves::new(ca).context("the reprise CA")?)))
}
