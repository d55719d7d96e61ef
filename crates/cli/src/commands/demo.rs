//! `reprise demo`: the main job on embedded defaults. For now: import the
//! sample recording shipped in the binary, then show what is in it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use reprise_inspect::{LsOptions, ShowOptions, StatsOptions};
use reprise_model::Sink;
use reprise_tape::{TapeReader, TapeWriter, WriterOptions};

use crate::Outcome;
use crate::args::DemoArgs;

/// The sample recording (httpbin behind mitmproxy, see samples/README.md).
const SAMPLE_HAR: &[u8] = include_bytes!("../../../../samples/httpbin.har");

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<Outcome> {
    let temp;
    let dir: PathBuf = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let har = dir.join("httpbin.har");
    let tape = dir.join("httpbin.tape");
    std::fs::write(&har, SAMPLE_HAR).with_context(|| format!("{}: cannot write", har.display()))?;
    if tape.exists() {
        std::fs::remove_file(&tape)
            .with_context(|| format!("{}: cannot replace", tape.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());

    writeln!(
        out,
        "== reprise import {} --out {}",
        har.display(),
        tape.display()
    )?;
    writeln!(
        out,
        "   (46 real calls to httpbin, recorded by mitmproxy: see samples/README.md)"
    )?;
    let mut writer = TapeWriter::create(&tape, WriterOptions::default())?;
    let report = reprise_interop::import_path(&har, &mut writer)?;
    writer.close()?;
    writeln!(out, "{}", report.summary(&har, &tape))?;

    writeln!(out, "\n== reprise stats {}", tape.display())?;
    let stats = reprise_inspect::stats(&mut TapeReader::open(&tape)?, &StatsOptions::default())?;
    reprise_inspect::render_text(&stats, &mut out)?;

    writeln!(out, "\n== reprise ls {} --limit 8", tape.display())?;
    let options = LsOptions {
        limit: Some(8),
        ..LsOptions::default()
    };
    reprise_inspect::ls(&mut TapeReader::open(&tape)?, &mut out, &options)?;

    let post = TapeReader::open(&tape)?.filter_map(Result::ok).find(|e| {
        e.request
            .as_ref()
            .is_some_and(|r| r.method == "POST" && r.path == "/anything/orders")
    });
    if let Some(post) = post {
        let id = post.id_hex();
        writeln!(out, "\n== reprise show {} {}", tape.display(), &id[..16])?;
        let options = ShowOptions {
            max_body_bytes: 2048,
            ..ShowOptions::default()
        };
        reprise_inspect::show(&mut TapeReader::open(&tape)?, &id[..16], &mut out, &options)?;
    }
    if args.dir.is_none() {
        writeln!(
            out,
            "\n(demo files were in a temporary directory, now removed; keep them with --dir DIR)"
        )?;
    }
    out.flush()?;
    Ok(Outcome::Success)
}
