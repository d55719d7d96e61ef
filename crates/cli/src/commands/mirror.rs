//! `reprise mirror`: live shadowing. The recording proxy of `reprise
//! record` serves the primary (the `--upstream`) and records every call
//! to its tape, as it always does; a replay following that tape as it
//! grows sends a copy of each recorded call to the shadow. The shadow is
//! never on the primary's path: its copies leave from the tape, on the
//! replay's own threads, so a slow, failing or absent shadow cannot delay
//! or change an answer. With `--compare`, the shadow's answers are
//! compared with the primary's at the end, as `reprise diff` does.

use std::path::PathBuf;

use anyhow::{Context, bail};
use reprise_compare::Rules;
use reprise_model::Sink;
use reprise_model::select::ExchangeFilter;
use reprise_net::tls::{Trust, client_config_for};
use reprise_net::{Upstream, UpstreamProtocol, UpstreamVersions};
use reprise_replay::{Pacing, ProtocolChoice, Replay, ReplayConfig, Report, Target, TrustChoice};

use crate::Outcome;
use crate::args::{MirrorArgs, UpstreamProtocolArg};
use crate::commands::record::{duration, record_until_signal, size};
use crate::commands::replay::results_sink;

/// The shadow's replay settings: as fast as the tape grows, on one
/// thread (the shadow's copies take as little from the primary's
/// machine as they can), at most `--shadow-timeout` a call, the header
/// rewrites given, only calls recorded from `since_ns` on (an appended
/// tape's older calls are not sent again).
fn shadow_config(args: &MirrorArgs, since_ns: u64) -> anyhow::Result<ReplayConfig> {
    let target = Target::parse(&args.shadow).context("--shadow")?;
    let mut config = ReplayConfig::new(target);
    // Copies leave as they are read: the recording already spaced them.
    config.pacing = Pacing::Max;
    config.threads = Some(1);
    for spec in &args.set_header {
        config.rewrites.set_header(spec)?;
    }
    for name in &args.drop_header {
        config.rewrites.drop_header(name)?;
    }
    config.timeout = duration("--shadow-timeout", &args.shadow_timeout)?;
    if config.timeout.is_zero() {
        bail!("--shadow-timeout must be above 0");
    }
    config.max_body = size("--max-body", &args.record.max_body)?;
    // The shadow's answers are stored by the recording's rules.
    config.redactor = super::redactor(&args.record.redact)?;
    config.filter = ExchangeFilter::new().since(since_ns);
    config.trust = match (&args.shadow_ca, args.shadow_insecure) {
        (_, true) => TrustChoice::Any,
        (Some(ca), false) => TrustChoice::CaFile(ca.clone()),
        (None, false) => TrustChoice::System,
    };
    Ok(config)
}

/// What the shadow is asked at start to choose the protocol of its
/// copies (`--upstream-protocol`), or the choice itself.
enum ShadowAsking {
    Chosen(ProtocolChoice),
    /// `auto`: whether it speaks HTTP/2 decides; trusted as its copies
    /// are (`--shadow-ca`, `--shadow-insecure`).
    Ask {
        shadow: Upstream,
        ca: Option<PathBuf>,
        insecure: bool,
    },
}

fn shadow_asking(args: &MirrorArgs) -> anyhow::Result<ShadowAsking> {
    Ok(match args.record.upstream_protocol {
        UpstreamProtocolArg::H1 => ShadowAsking::Chosen(ProtocolChoice::Http1),
        UpstreamProtocolArg::H2 => ShadowAsking::Chosen(ProtocolChoice::Http2),
        UpstreamProtocolArg::Auto => ShadowAsking::Ask {
            shadow: Upstream::parse(&args.shadow).context("--shadow")?,
            ca: args.shadow_ca.clone(),
            insecure: args.shadow_insecure,
        },
    })
}

/// The shadow's copies go as `--upstream-protocol` says: with `auto`,
/// as recorded if the shadow speaks HTTP/2 (asked now: ALPN, or the h2c
/// preface), else over HTTP/1.1 but gRPC, as the proxy sends the
/// primary's. A shadow that cannot be asked gets HTTP/1.1 too.
fn shadow_protocol(asking: ShadowAsking) -> anyhow::Result<ProtocolChoice> {
    let (shadow, ca, insecure) = match asking {
        ShadowAsking::Chosen(choice) => return Ok(choice),
        ShadowAsking::Ask {
            shadow,
            ca,
            insecure,
        } => (shadow, ca, insecure),
    };
    let trust = match (&ca, insecure) {
        (_, true) => Trust::Any,
        (Some(ca), false) => Trust::CaFile(ca),
        (None, false) if shadow.scheme == http::uri::Scheme::HTTPS => Trust::System,
        (None, false) => Trust::Nobody,
    };
    let tls = client_config_for(trust).context("--shadow-ca")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let h2 = runtime.block_on(async {
        let versions =
            UpstreamVersions::new(&shadow, UpstreamProtocol::Auto, &tls, SHADOW_PROBE).await?;
        Ok::<_, reprise_net::VersionsError>(versions.over_h2(false, http::Version::HTTP_2).await)
    });
    Ok(match h2.context("--shadow")? {
        true => ProtocolChoice::Recorded,
        false => ProtocolChoice::Http1ExceptGrpc,
    })
}

/// How long the shadow may take to say whether it speaks HTTP/2.
const SHADOW_PROBE: std::time::Duration = std::time::Duration::from_secs(5);

/// How the shadow's answers are compared, when they are.
struct Comparing {
    rules: Rules,
    max_memory: usize,
    /// Where the shadow's answers go: `--shadow-out`, or a temporary tape.
    out: PathBuf,
}

/// Runs the mirror until SIGINT or SIGTERM.
pub fn run(args: &MirrorArgs) -> anyhow::Result<Outcome> {
    let since_ns = reprise_model::time::now_ns();
    let config = shadow_config(args, since_ns)?;
    // Everything the end needs is checked before anything starts.
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    if let Some(shadow_out) = &args.shadow_out
        && same_file(shadow_out, &args.record.out)
    {
        bail!("--shadow-out and --out are the same tape");
    }
    let comparing = if args.compare {
        Some(Comparing {
            rules: super::diff::rules(&args.rules)?,
            max_memory: size("--max-memory", &args.rules.max_memory)?,
            out: args
                .shadow_out
                .clone()
                .unwrap_or_else(|| temp.path().join("shadow.tape")),
        })
    } else {
        super::diff::only_with_compare(&args.rules)?;
        None
    };
    let shadow_out: Option<PathBuf> = comparing
        .as_ref()
        .map(|c| c.out.clone())
        .or_else(|| args.shadow_out.clone());
    let tape = args.record.out.clone();
    let shadow = args.shadow.clone();
    let results_path = shadow_out.clone();
    let asking = shadow_asking(args)?;
    let mut config = config;
    if crate::store::is_kafka(&tape) {
        // A topic holds more than this run records: the shadow sends
        // only the calls recorded from now on.
        let now = reprise_model::time::now_ns();
        let (since, _) = config.filter.window();
        if since.is_none_or(|since| since < now) {
            config.filter = config.filter.clone().since(now);
        }
    }
    let started = record_until_signal(&args.record, "mirroring", move |_| {
        config.protocol = shadow_protocol(asking)?;
        // The shadow's tape is made only once the proxy is up, so a
        // failed start leaves none behind.
        let results: Option<Box<dyn Sink>> = match &results_path {
            Some(path) => Some(results_sink(path)?),
            None => None,
        };
        // The replay follows the tape the proxy has just opened.
        let follow = reprise_tape::Follow::default();
        let live = follow.stop.clone();
        let filter = config.filter.clone();
        let opener: reprise_replay::Opener = Box::new(move || {
            crate::input::open_following(&tape, &filter, Some(follow.clone())).map_err(|e| {
                reprise_model::StoreError::failed(tape.display().to_string(), crate::one_line(&e))
            })
        });
        match Replay::start(config, opener, results, Some(live.clone())) {
            Ok(replay) => Ok((replay, live)),
            Err(error) => {
                if let Some(path) = &results_path {
                    crate::store::remove_new(path);
                }
                Err(anyhow::Error::new(error).context(format!("--shadow {shadow}")))
            }
        }
    });
    let (stats, (replay, follow)) = started?;
    // The tape is whole: the replay sends what is left of it, then ends;
    // a signal now stops it (calls in flight finish).
    let signals = super::replay::Signals::catch()?;
    signals.stop(vec![replay.stop_handle()]);
    follow.store(true, std::sync::atomic::Ordering::SeqCst);
    eprintln!("reprise: shadow: sending what is left of the tape (Ctrl-C stops)");
    let report = replay.wait()?;
    print_shadow(&report);
    let Some(comparing) = comparing else {
        return Ok(Outcome::Success);
    };
    if stats.recorded == 0 || report.calls == 0 {
        // Judged as a comparison of no pairs: below --min-compared (1 by
        // default), not a pass.
        eprintln!("reprise: nothing was copied to the shadow: nothing to compare");
        let judgement = reprise_compare::Judgement {
            min_compared: super::diff::min_compared(&args.rules),
            ..Default::default()
        };
        return Ok(judgement.finding().into());
    }
    println!();
    let noise = if args.rules.auto_noise {
        super::diff::Noise::Guess
    } else {
        super::diff::Noise::None
    };
    // Only what this run recorded: an appended tape's older calls were
    // never copied.
    let (diff, damage) = super::diff::diff_with(
        &args.record.out,
        &ExchangeFilter::new().since(since_ns),
        &comparing.out,
        noise,
        &comparing.rules,
        comparing.max_memory,
    )?;
    let judgement = super::diff::finish(&diff, &damage, args.diff_json.as_deref(), &args.rules)?;
    Ok(judgement.finding().into())
}

/// Whether two paths name one file: the same file when both exist, else
/// the same absolute path.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// The shadow's side, on stderr with the recording's: calls sent,
/// answered, failed, and answered with another status than the primary.
fn print_shadow(report: &Report) {
    eprintln!(
        "reprise: shadow: {} calls copied to {} in {:.2} s, {} answered, {} failed, {} status differs",
        report.calls,
        report.target,
        report.elapsed_s,
        report.ok + report.status_differs,
        report.failed,
        report.status_differs
    );
    for (kind, example) in &report.failure_examples {
        eprintln!(
            "reprise: shadow: failed ({kind}): {}",
            reprise_model::terminal::escape(example)
        );
    }
}
