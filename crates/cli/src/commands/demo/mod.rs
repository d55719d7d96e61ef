//! `reprise demo`: the main job on embedded defaults. It starts a sample
//! service, records traffic to it through the recording proxy, shows what
//! the tape holds, and replays it against a second copy of the service;
//! then it imports the sample HAR shipped in the binary. Nothing outside
//! the process is needed.

mod shop;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use reprise_inspect::{LsOptions, ShowOptions, StatsOptions};
use reprise_model::Sink;
use reprise_model::redact::Redactor;
use reprise_proxy::{ProxyConfig, Upstream};
use reprise_replay::{Opener, Replay, ReplayConfig, Target};
use reprise_tape::{TapeReader, TapeWriter, WriterOptions};

use crate::Outcome;
use crate::args::DemoArgs;

/// The sample recording (httpbin behind mitmproxy, see samples/README.md).
const SAMPLE_HAR: &[u8] = include_bytes!("../../../../../samples/httpbin.har");

/// Calls the demo sends through the proxy.
const CALLS: usize = 120;

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
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let tape = dir.join("shop.tape");
    remove_old(&tape)?;
    record(&tape, &mut out)?;

    writeln!(out, "\n== reprise stats {}", tape.display())?;
    let stats = reprise_inspect::stats(&mut TapeReader::open(&tape)?, &StatsOptions::default())?;
    reprise_inspect::render_text(&stats, &mut out)?;

    writeln!(out, "\n== reprise ls {} --limit 8", tape.display())?;
    let options = LsOptions {
        limit: Some(8),
        ..LsOptions::default()
    };
    reprise_inspect::ls(&mut TapeReader::open(&tape)?, &mut out, &options)?;

    let post = TapeReader::open(&tape)?
        .filter_map(Result::ok)
        .find(|e| e.request.as_ref().is_some_and(|r| r.method == "POST"));
    if let Some(post) = post {
        let id = post.id_hex();
        writeln!(
            out,
            "\n== reprise show {} {}   (credentials and the card number were redacted before storage)",
            tape.display(),
            &id
        )?;
        let options = ShowOptions {
            max_body_bytes: 2048,
            ..ShowOptions::default()
        };
        reprise_inspect::show(&mut TapeReader::open(&tape)?, &id, &mut out, &options)?;
    }

    let replayed = dir.join("replayed.tape");
    remove_old(&replayed)?;
    replay(&tape, &replayed, &mut out)?;
    compare(&tape, &replayed, &mut out)?;

    let har = dir.join("httpbin.har");
    let imported = dir.join("httpbin.tape");
    remove_old(&imported)?;
    crate::report_file::write_report(&har, |w| Ok(w.write_all(SAMPLE_HAR)?))?;
    writeln!(
        out,
        "\n== reprise import {} --out {}",
        har.display(),
        imported.display()
    )?;
    writeln!(
        out,
        "   (46 real calls to httpbin, recorded by mitmproxy: see samples/README.md)"
    )?;
    let mut writer = TapeWriter::create(&imported, WriterOptions::default())?;
    let report = reprise_interop::import_path(&har, &mut writer)?;
    writer.close()?;
    writeln!(out, "{}", report.summary(&har, &imported))?;

    if args.dir.is_none() {
        writeln!(
            out,
            "\n(demo files were in a temporary directory, now removed; keep them with --dir DIR)"
        )?;
    }
    out.flush()?;
    Ok(Outcome::Success)
}

fn remove_old(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("{}: cannot replace", path.display()))?;
    }
    Ok(())
}

/// Starts a second copy of the shop (the build under test) and replays the
/// recording against it, writing the results to `results`.
fn replay(tape: &Path, results: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shop = runtime
        .block_on(shop::start())
        .context("cannot start the second sample service")?;
    let target = format!("http://{shop}");
    writeln!(
        out,
        "\n== a second copy of the shop (the build to test) listening on {target}"
    )?;
    writeln!(
        out,
        "== reprise replay {} --target {target} --out {}",
        tape.display(),
        results.display()
    )?;
    let config = ReplayConfig::new(Target::parse(&target)?);
    let path = tape.to_path_buf();
    let opener: Opener = Box::new(move || {
        TapeReader::open(&path)
            .map(|reader| Box::new(reader) as Box<dyn reprise_model::Source>)
            .map_err(|e| {
                reprise_model::StoreError::failed(path.display().to_string(), e.to_string())
            })
    });
    let sink = TapeWriter::create(results, WriterOptions::default())?;
    let report = Replay::start(config, opener, Some(Box::new(sink)), None)?.wait()?;
    report.render(out)?;
    Ok(())
}

/// Compares the replay with the recording: once as is, where the order
/// timestamps differ (noise: two runs of the same code), then with that
/// field ignored.
fn compare(tape: &Path, results: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let mut rules = reprise_compare::Rules::default();
    writeln!(
        out,
        "\n== reprise diff {} {}",
        tape.display(),
        results.display()
    )?;
    let (report, _) = super::diff::diff(tape, results, &rules)?;
    report.render(out)?;
    writeln!(
        out,
        "   (a timestamp differs between two runs of the same code: noise, not a regression; ignore it)"
    )?;
    writeln!(
        out,
        "\n== reprise diff {} {} --ignore '$.created_at_ms'",
        tape.display(),
        results.display()
    )?;
    rules.ignore("$.created_at_ms")?;
    let (report, _) = super::diff::diff(tape, results, &rules)?;
    report.render(out)?;
    Ok(())
}

/// Starts the shop and the recording proxy in front of it, sends the
/// demo's traffic through the proxy (HTTP/1.1 and h2c), stops the proxy.
fn record(tape: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shop = shop::start().await.context("cannot start the sample service")?;
        writeln!(out, "== a sample service (a JSON shop) listening on http://{shop}")?;
        let mut config = ProxyConfig::new(([127, 0, 0, 1], 0).into(), Upstream::parse(&format!("http://{shop}"))?);
        config.service = "shop".into();
        config.redactor = Redactor::new().json_path("$.card.number")?.json_path("$.card.cvc")?;
        let options = WriterOptions {
            inline: true,
            ..WriterOptions::default()
        };
        let writer = TapeWriter::create(tape, options)?;
        let proxy = reprise_proxy::start(config, Box::new(writer)).await?;
        let base = format!("http://{}", proxy.local_addr());
        writeln!(
            out,
            "== reprise record --listen {} --upstream http://{shop} --out {} --redact-json '$.card.number' --redact-json '$.card.cvc'",
            proxy.local_addr(),
            tape.display()
        )?;
        let http1: Client<HttpConnector, Full<Bytes>> = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let http2: Client<HttpConnector, Full<Bytes>> =
            Client::builder(hyper_util::rt::TokioExecutor::new()).http2_only(true).build_http();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for i in 0..CALLS {
            let (method, path, body) = shop::call(i);
            let mut request = http::Request::builder().method(method).uri(format!("{base}{path}"));
            request = request.header("authorization", "Bearer demo-secret-token");
            if body.is_some() {
                request = request.header("content-type", "application/json");
            }
            let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
            let client = if i % 2 == 0 { &http1 } else { &http2 };
            let response = client.request(request).await.context("calling the shop through the proxy")?;
            *statuses.entry(response.status().as_u16()).or_default() += 1;
            response.into_body().collect().await.context("reading a response through the proxy")?;
        }
        let mix: Vec<String> = statuses.iter().map(|(s, n)| format!("{n}× {s}")).collect();
        writeln!(out, "   sent {CALLS} calls through it, half HTTP/1.1, half HTTP/2 (h2c): {}", mix.join(", "))?;
        let stats = proxy.shutdown().await?;
        writeln!(out, "   stopped: {}; tape synced", super::record::summary(&stats, false))?;
        Ok(())
    })
}
