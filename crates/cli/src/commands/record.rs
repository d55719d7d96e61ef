//! `reprise record`: the recording proxy until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use reprise_model::sample::Sampler;
use reprise_model::select::ExchangeFilter;
use reprise_proxy::{
    ConnectionLimits, EgressConfig, EgressRoute, EgressStats, ProxyConfig, RecorderStats, Upstream,
};

use crate::Outcome;
use crate::args::{ConnectionArgs, RecordArgs};

/// Reads `10s`, `500ms`, `2m`.
pub(crate) fn duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{flag} {text:?}: expected a duration such as 500ms, 10s or 2m"))
}

/// Reads a size flag (`64KiB`: see [`reprise_model::size`]).
pub(crate) fn size(flag: &str, text: &str) -> anyhow::Result<usize> {
    reprise_model::size::parse_size(text).map_err(|e| anyhow::anyhow!("{flag} {e}"))
}

fn address(flag: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.parse()
        .with_context(|| format!("{flag} {text:?}: expected IP:PORT, such as 127.0.0.1:8080"))
}

/// The proxy's settings from the command line.
pub(crate) fn config(args: &RecordArgs) -> anyhow::Result<ProxyConfig> {
    let upstream = Upstream::parse(&args.upstream)?;
    let mut config = ProxyConfig::new(address("--listen", &args.listen)?, upstream);
    config.service = args.service.clone();
    config.sampler = Sampler::new(args.sample).map_err(|e| anyhow::anyhow!("--sample: {e}"))?;
    let mut filter = ExchangeFilter::new();
    for term in &args.matches {
        filter = filter
            .add_match(term)
            .with_context(|| format!("--match {term:?}"))?;
    }
    config.filter = filter;
    if args.max_record_rate == Some(0) {
        bail!(
            "--max-record-rate 0 would record nothing; use --sample 0 to forward without recording"
        );
    }
    config.max_record_rate = args.max_record_rate;
    config.max_body = size("--max-body", &args.max_body)?;
    config.redactor = super::redactor(&args.redact)?;
    config.preserve_host = args.preserve_host;
    config.forwarded_headers = !args.no_forwarded_headers;
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => None,
    };
    config.upstream_ca = args.upstream_ca.clone();
    config.admin = args
        .admin
        .as_deref()
        .map(|a| address("--admin", a))
        .transpose()?;
    config.upstream_protocol = args.upstream_protocol.into();
    config.connect_timeout = duration("--connect-timeout", &args.connect_timeout)?;
    config.response_timeout = duration("--upstream-timeout", &args.upstream_timeout)?;
    let threads = args
        .threads
        .unwrap_or_else(reprise_proxy::default_serving_threads);
    config.limits = limits(&args.connections, threads)?;
    config.drain_timeout = duration("--drain-timeout", &args.drain_timeout)?;
    if args.queue == 0 {
        bail!("--queue must be at least 1");
    }
    config.queue_capacity = args.queue;
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    config.threads = args.threads;
    config.egress = egress(args)?;
    Ok(config)
}

/// `--egress`, `--egress-route`, `--egress-db`, `--link-window` and
/// `--fresh-trace`.
fn egress(args: &RecordArgs) -> anyhow::Result<EgressConfig> {
    let mut egress = EgressConfig {
        forward: args
            .egress
            .as_deref()
            .map(|a| address("--egress", a))
            .transpose()?,
        ..EgressConfig::default()
    };
    for spec in &args.egress_routes {
        egress.routes.push(EgressRoute::parse(spec)?);
    }
    for spec in &args.egress_dbs {
        egress.dbs.push(reprise_proxy::EgressDb::parse(spec)?);
    }
    egress.check()?;
    egress.link_window = duration("--link-window", &args.link_window)?;
    egress.fresh_trace = args.fresh_trace;
    egress.ca = args.egress_ca.clone();
    if let Some(ca) = &egress.ca {
        if !egress.enabled() {
            bail!(
                "--egress-ca is for https downstreams: it needs --egress, --egress-route or --egress-db"
            );
        }
        // Read at start by the proxy too; said here with the flag's name.
        std::fs::File::open(ca)
            .with_context(|| format!("--egress-ca {}: cannot read it", ca.display()))?;
    }
    let postgres = egress
        .dbs
        .iter()
        .any(|d| d.protocol == reprise_proxy::DbProtocol::Postgres);
    if args.ca_dir.is_some() && egress.forward.is_none() && !postgres {
        bail!(
            "--ca-dir is the CA of the --egress proxy's CONNECT tunnels and of PostgreSQL's TLS on --egress-db: it needs one of them"
        );
    }
    if egress.forward.is_some() || postgres {
        // Without a CA the start line says so.
        egress.leaves = super::ca::leaves(args.ca_dir.as_deref())?;
    }
    if egress.enabled() {
        egress.warn = Some(std::sync::Arc::new(|line: &str| eprintln!("{line}")));
    }
    if !egress.enabled() && args.fresh_trace {
        bail!(
            "--fresh-trace changes trace context for egress linking: it needs --egress, --egress-route or --egress-db"
        );
    }
    if !egress.enabled() && egress.link_window != reprise_proxy::DEFAULT_LINK_WINDOW {
        bail!(
            "--link-window is for egress linking: it needs --egress, --egress-route or --egress-db"
        );
    }
    Ok(egress)
}

/// `--max-connections` (its default sized for `threads` serving
/// threads), `--header-timeout` and `--idle-timeout`.
pub(crate) fn limits(args: &ConnectionArgs, threads: usize) -> anyhow::Result<ConnectionLimits> {
    let above_zero = |flag: &str, text: &str| {
        let value = duration(flag, text)?;
        if value.is_zero() {
            bail!("{flag} {text:?} would close every connection at once: give a duration above 0");
        }
        Ok(value)
    };
    let max_connections = match args.max_connections {
        Some(0) => bail!("--max-connections 0 would serve nobody: give at least 1"),
        Some(n) => n,
        None => ConnectionLimits::default_max_connections(threads),
    };
    Ok(ConnectionLimits {
        max_connections,
        header_timeout: above_zero("--header-timeout", &args.header_timeout)?,
        idle_timeout: above_zero("--idle-timeout", &args.idle_timeout)?,
    })
}

/// `--compression`: a zstd level, or `none`.
pub(crate) fn compression(text: &str) -> anyhow::Result<Option<i32>> {
    let level = text.trim();
    if level.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let levels = reprise_tape::zstd_levels();
    match level.parse::<i32>() {
        Ok(level) if levels.contains(&level) => Ok(Some(level)),
        _ => bail!(
            "--compression {text:?}: expected none or a zstd level from {} to {}",
            levels.start(),
            levels.end()
        ),
    }
}

/// `--rotate-size`, `--rotate-every` and `--keep`: a directory of tapes,
/// or (none given) one tape.
pub(crate) fn rotation(args: &RecordArgs) -> anyhow::Result<Option<reprise_tape::Rotation>> {
    let size = args
        .rotate_size
        .as_deref()
        .map(|text| size("--rotate-size", text).map(|n| n as u64))
        .transpose()?;
    let every = args
        .rotate_every
        .as_deref()
        .map(|text| duration("--rotate-every", text))
        .transpose()?;
    if size == Some(0) || every.is_some_and(|d| d.is_zero()) {
        bail!("--rotate-size and --rotate-every take a size or duration above 0");
    }
    if size.is_none() && every.is_none() {
        if args.keep.is_some() {
            bail!(
                "--keep goes with --rotate-size or --rotate-every (it keeps the newest tapes of a rotated recording)"
            );
        }
        return Ok(None);
    }
    if args.keep == Some(0) {
        bail!("--keep 0 would remove the tape being written: keep 1 or more");
    }
    Ok(Some(reprise_tape::Rotation {
        size,
        every,
        keep: args.keep,
    }))
}

/// One line saying what was recorded and what was not, into a tape
/// or (`kafka`) a topic.
pub(crate) fn summary(stats: &RecorderStats, kafka: bool) -> String {
    let mut line = format!("{} exchanges seen, {} recorded", stats.seen, stats.recorded);
    let mut part = |n: u64, what: &str| {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    };
    part(stats.sampled_out, "sampled out");
    part(stats.unmatched, "not matching --match");
    part(stats.dropped_queue_full, "dropped (queue full)");
    part(stats.dropped_rate_limit, "dropped (--max-record-rate)");
    let (refused, unwritten) = if kafka {
        (
            "dropped (the producer's queue was full: the broker was slow or unreachable)",
            "dropped (never acknowledged by the broker)",
        )
    } else {
        (
            "dropped (tape error)",
            "dropped (the tape could not be written)",
        )
    };
    part(stats.dropped_sink_error, refused);
    part(stats.dropped_write_failed, unwritten);
    part(stats.dropped_closed, "dropped (finished after the drain)");
    line
}

/// What became of the service's own calls, when egress is recorded.
pub(crate) fn egress_summary(stats: &EgressStats) -> String {
    let mut line = format!(
        "egress: {} calls, {} linked, {} ambiguous, {} unlinked",
        stats.total(),
        stats.linked,
        stats.ambiguous,
        stats.unlinked + stats.unknown_trace
    );
    if stats.unknown_trace > 0 {
        line.push_str(&format!(
            " ({} with an unknown trace id)",
            stats.unknown_trace
        ));
    }
    if stats.parent_sampled_out > 0 {
        line.push_str(&format!(
            ", {} skipped with their sampled-out inbound call",
            stats.parent_sampled_out
        ));
    }
    line
}

/// Runs the proxy until SIGINT or SIGTERM, then drains and syncs.
pub fn run(args: &RecordArgs) -> anyhow::Result<Outcome> {
    record_until_signal(args, "recording", |_| Ok(()))?;
    Ok(Outcome::Success)
}

/// Runs the recording proxy `args` describe until SIGINT or SIGTERM, then
/// drains it and syncs its tape; says `doing` (`recording`) on stderr
/// once it listens. `started` runs then, on a thread of its own (it may
/// block, or start runtimes), with the proxy's address; what it gives
/// comes back with the recording's counts.
pub(crate) fn record_until_signal<T: Send + 'static>(
    args: &RecordArgs,
    doing: &str,
    started: impl FnOnce(SocketAddr) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<(RecorderStats, T)> {
    let config = config(args)?;
    let zstd_level = compression(&args.compression)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Signals are hooked before the listener opens, so a signal that
        // arrives as soon as the port answers is not lost.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot handle SIGTERM")?;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot handle SIGINT")?;
        // The recorder's thread writes a tape: no writer thread of its
        // own. A topic is reached (or refused) now, not at the first call.
        let writer = crate::store::open_sink(
            &args.out,
            crate::store::TapeOpening {
                append: args.append,
                inline: true,
                zstd_level,
                rotation: rotation(args)?,
            },
        )?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let upstream = args.upstream.clone();
        let drain = config.drain_timeout;
        let without_ca = config.egress.forward.is_some() && config.egress.leaves.is_none();
        let postgres_without_ca = config.egress.leaves.is_none()
            && config
                .egress
                .dbs
                .iter()
                .any(|d| d.protocol == reprise_proxy::DbProtocol::Postgres);
        let databases: Vec<(String, &'static str)> = config
            .egress
            .dbs
            .iter()
            .map(|d| {
                let scheme = match d.protocol {
                    reprise_proxy::DbProtocol::Postgres => "postgres",
                    reprise_proxy::DbProtocol::Redis => "redis",
                };
                (d.name.clone(), scheme)
            })
            .collect();
        let proxy = match reprise_proxy::start(config, writer).await {
            Ok(proxy) => proxy,
            Err(error) => {
                // Nothing was recorded: a new tape must not be left behind.
                if !args.append {
                    crate::store::remove_new(&args.out);
                }
                return Err(error.into());
            }
        };
        // Said at once, not at the end: the tape cannot be written (a full
        // disk), and again when it can.
        proxy
            .metrics()
            .on_health(|event| eprintln!("reprise: {event}"));
        let addr = proxy.local_addr();
        let (done, result) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("reprise-start".into())
            .spawn(move || {
                let _ = done.send(started(addr));
            });
        let outcome = match spawned {
            Ok(_) => result
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the {doing} proxy's start-up failed"))),
            Err(e) => Err(anyhow::anyhow!("cannot start a thread: {e}")),
        };
        let extra = match outcome {
            Ok(extra) => extra,
            Err(error) => {
                // The proxy goes, and a new tape with it.
                let _ = proxy.shutdown().await;
                if !args.append {
                    crate::store::remove_new(&args.out);
                }
                return Err(error);
            }
        };
        let mut line = format!(
            "reprise: {doing} {scheme}://{addr} -> {upstream} into {}",
            crate::store::describe(&args.out)
        );
        if let Some(admin) = proxy.admin_addr() {
            line.push_str(&format!(" (metrics: http://{admin}/metrics)"));
        }
        for (name, addr) in proxy.egress_addresses() {
            if name == "--egress" {
                line.push_str(&format!("; egress proxy http://{addr}"));
            } else if let Some((_, scheme)) = databases.iter().find(|(db, _)| db == name) {
                line.push_str(&format!("; egress db {name} {scheme}://{addr}"));
            } else {
                line.push_str(&format!("; egress route {name} http://{addr}"));
            }
        }
        let egress = !proxy.egress_addresses().is_empty();
        let metrics = std::sync::Arc::clone(proxy.metrics());
        eprintln!("{line}; stop with Ctrl-C");
        if postgres_without_ca {
            eprintln!(
                "reprise: no reprise CA: PostgreSQL clients that ask --egress-db for TLS are told it speaks none (run `reprise ca init`, or give --ca-dir)"
            );
        }
        if without_ca {
            eprintln!(
                "reprise: no reprise CA: the egress proxy refuses CONNECT tunnels carrying TLS (run `reprise ca init`, or give --ca-dir)"
            );
        }
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        eprintln!(
            "reprise: stopping: finishing in-flight calls (up to {})",
            humantime::format_duration(drain)
        );
        let stats = proxy
            .shutdown()
            .await
            .with_context(|| crate::store::describe(&args.out))?;
        let mut said = summary(&stats, crate::store::is_kafka(&args.out));
        if egress {
            said.push_str("; ");
            said.push_str(&egress_summary(&metrics.egress.snapshot()));
        }
        eprintln!(
            "reprise: {said}; {} synced",
            crate::store::describe(&args.out)
        );
        Ok((stats, extra))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("--max-body", "65536").unwrap(), 65536);
        assert_eq!(size("--max-body", "64KiB").unwrap(), 65536);
        assert_eq!(size("--max-body", "1M").unwrap(), 1 << 20);
        assert_eq!(size("--max-body", "2 GiB").unwrap(), 2 << 30);
        for bad in ["", "MiB", "1.5M", "1T", "-1", "99999999999999999999G"] {
            assert!(size("--max-body", bad).is_err(), "{bad}");
        }
        assert_eq!(
            duration("--drain-timeout", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(duration("--drain-timeout", "soon").is_err());
    }
}
