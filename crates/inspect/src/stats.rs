//! `reprise stats`: counts, rates and latency per endpoint, with memory
//! bounded by the number of endpoints (and seconds of recording), not by
//! the number of exchanges.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use reprise_model::latency::LatencyHistogram;
use reprise_model::select::ExchangeFilter;
use reprise_model::table::{Column, Table};
use reprise_model::{Exchange, Source, endpoint_key, time::format_ns};
use serde::Serialize;

use crate::InspectError;
use crate::format::{human_duration, human_size};

/// What to count.
#[derive(Debug, Clone)]
pub struct StatsOptions {
    /// Which exchanges.
    pub filter: ExchangeFilter,
    /// Distinct endpoints kept; the rest are counted under `(other)`.
    pub max_endpoints: usize,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            filter: ExchangeFilter::new(),
            max_endpoints: 1000,
        }
    }
}

/// Latency and status of one endpoint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndpointStats {
    /// `METHOD /path/{id}` (downstream calls: `↳METHOD authority/path`).
    pub endpoint: String,
    /// Exchanges.
    pub count: u64,
    /// Latency percentiles, ns (about 1% precision).
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Slowest, ns, exact.
    pub max_ns: u64,
    /// Exchanges by status class (`2xx`, `5xx`, `none`, `error`).
    pub statuses: BTreeMap<String, u64>,
}

/// The statistics of a recording.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// Exchanges counted.
    pub exchanges: u64,
    /// Of which inbound.
    pub inbound: u64,
    /// Of which downstream.
    pub downstream: u64,
    /// Earliest start, RFC 3339 (absent for an empty recording).
    pub first: Option<String>,
    /// Latest start.
    pub last: Option<String>,
    /// Seconds between first and last start.
    pub span_seconds: f64,
    /// Exchanges per second over the span, a span under one second
    /// counting as one (the window `peak_rate` is counted in), so a short
    /// burst is not extrapolated into a rate it never reached.
    pub mean_rate: f64,
    /// Most exchanges started within one wall-clock second.
    pub peak_rate: u64,
    /// Latency over all exchanges, as for an endpoint.
    pub overall: Option<EndpointStats>,
    /// Per endpoint, most frequent first (HTTP and gRPC calls).
    pub endpoints: Vec<EndpointStats>,
    /// Database and cache calls, most frequent first: per PostgreSQL
    /// statement template (`pg orders-db: select * from t where id = ?`,
    /// literals as `?`) and per Redis command (`redis cache: GET`).
    /// Statuses are `ok`, `failed` (the server answered with an error),
    /// `error` (a transport error) and `none`.
    pub db: Vec<EndpointStats>,
    /// Exchanges by status class.
    pub statuses: BTreeMap<String, u64>,
    /// Exchanges by protocol.
    pub protocols: BTreeMap<String, u64>,
    /// Request body bytes (full sizes, as recorded); for database calls
    /// the SQL and parameters, or the Redis arguments.
    pub request_bytes: u64,
    /// Response body bytes; for database calls the rows or the reply.
    pub response_bytes: u64,
    /// Exchanges with a body (rows, reply) cut at the size cap.
    pub truncated: u64,
    /// Exchanges with redacted values.
    pub redacted: u64,
    /// Transport errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Damage the source reported and skipped.
    pub damage: Vec<String>,
}

struct Endpoint {
    count: u64,
    latency: LatencyHistogram<u32>,
    max_ns: u64,
    statuses: BTreeMap<String, u64>,
}

impl Endpoint {
    fn new() -> Self {
        Endpoint {
            count: 0,
            // 1 µs to 1 hour with 2 significant digits (~13 KiB per
            // endpoint) to start with; a longer call grows it (any u64 of
            // µs fits), so no latency is cut to the bound.
            latency: LatencyHistogram::new(3_600_000_000, 2),
            max_ns: 0,
            statuses: BTreeMap::new(),
        }
    }

    fn add(&mut self, exchange: &Exchange, class: &str) {
        self.count += 1;
        self.latency.record(exchange.duration_ns / 1_000);
        self.max_ns = self.max_ns.max(exchange.duration_ns);
        *self.statuses.entry(class.to_string()).or_default() += 1;
    }

    fn finish(&self, endpoint: String) -> EndpointStats {
        // A bucket's top may pass the slowest call: never shown above it.
        let at = |q: f64| {
            self.latency
                .quantile(q)
                .saturating_mul(1_000)
                .min(self.max_ns)
        };
        EndpointStats {
            endpoint,
            count: self.count,
            p50_ns: at(0.5),
            p90_ns: at(0.9),
            p99_ns: at(0.99),
            max_ns: self.max_ns,
            statuses: self.statuses.clone(),
        }
    }
}

fn status_class(exchange: &Exchange, head: Option<&crate::db::Head>) -> String {
    if let Some(head) = head {
        return match (head.failed, &exchange.error, head.status.as_str()) {
            (true, _, _) => "failed",
            (false, Some(_), _) => "error",
            (false, None, "-") => "none",
            _ => "ok",
        }
        .to_string();
    }
    match (&exchange.response, &exchange.error) {
        (Some(response), _) if (100..600).contains(&response.status) => {
            format!("{}xx", response.status / 100)
        }
        (Some(response), _) => response.status.to_string(),
        (None, Some(_)) => "error".to_string(),
        (None, None) => "none".to_string(),
    }
}

/// Reads `source` once and returns its statistics.
pub fn stats(source: &mut dyn Source, options: &StatsOptions) -> Result<Stats, InspectError> {
    let mut endpoints: HashMap<String, Endpoint> = HashMap::new();
    let mut other = Endpoint::new();
    let mut db: HashMap<String, Endpoint> = HashMap::new();
    let mut db_other = Endpoint::new();
    let mut overall = Endpoint::new();
    let mut per_second: HashMap<u64, u64> = HashMap::new();
    let mut stats = Stats {
        exchanges: 0,
        inbound: 0,
        downstream: 0,
        first: None,
        last: None,
        span_seconds: 0.0,
        mean_rate: 0.0,
        peak_rate: 0,
        overall: None,
        endpoints: Vec::new(),
        db: Vec::new(),
        statuses: BTreeMap::new(),
        protocols: BTreeMap::new(),
        request_bytes: 0,
        response_bytes: 0,
        truncated: 0,
        redacted: 0,
        errors: BTreeMap::new(),
        damage: Vec::new(),
    };
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut intact = reprise_model::Intact::new(source);
    for item in intact.by_ref() {
        let exchange = item?;
        if !crate::db::matches(&options.filter, &exchange) {
            continue;
        }
        stats.exchanges += 1;
        if exchange.is_downstream() {
            stats.downstream += 1;
        } else {
            stats.inbound += 1;
        }
        first = first.min(exchange.recorded_at_ns);
        last = last.max(exchange.recorded_at_ns);
        *per_second
            .entry(exchange.recorded_at_ns / 1_000_000_000)
            .or_default() += 1;
        let head = crate::db::head(&exchange);
        let class = status_class(&exchange, head.as_ref());
        *stats.statuses.entry(class.clone()).or_default() += 1;
        *stats
            .protocols
            .entry(exchange.protocol_label().to_string())
            .or_default() += 1;
        let request = exchange.request.as_ref();
        let response = exchange.response.as_ref();
        stats.request_bytes += request.map_or(0, |r| r.size());
        stats.response_bytes += response.map_or(0, |r| r.size());
        if let Some(head) = &head {
            stats.request_bytes += head.request_bytes;
            stats.response_bytes += head.response_bytes;
        }
        if request.is_some_and(|r| r.body_truncated)
            || response.is_some_and(|r| r.body_truncated)
            || head.as_ref().is_some_and(|h| h.truncated)
        {
            stats.truncated += 1;
        }
        if exchange.flags.as_ref().is_some_and(|f| f.redacted) {
            stats.redacted += 1;
        }
        if let Some(error) = &exchange.error {
            *stats
                .errors
                .entry(crate::json::error_kind(error.kind()).to_string())
                .or_default() += 1;
        }
        overall.add(&exchange, &class);
        let (key, groups, rest) = match &head {
            Some(head) => (
                crate::db::stats_key(&exchange, head),
                &mut db,
                &mut db_other,
            ),
            None => (endpoint_key(&exchange), &mut endpoints, &mut other),
        };
        if let Some(endpoint) = groups.get_mut(&key) {
            endpoint.add(&exchange, &class);
        } else if groups.len() < options.max_endpoints {
            let mut endpoint = Endpoint::new();
            endpoint.add(&exchange, &class);
            groups.insert(key, endpoint);
        } else {
            rest.add(&exchange, &class);
        }
    }
    stats.damage = intact.into_damage();
    if stats.exchanges > 0 {
        stats.first = Some(format_ns(first));
        stats.last = Some(format_ns(last));
        stats.span_seconds = (last - first) as f64 / 1e9;
        stats.mean_rate = stats.exchanges as f64 / stats.span_seconds.max(1.0);
        stats.peak_rate = per_second.values().copied().max().unwrap_or(0);
        stats.overall = Some(overall.finish("(all)".to_string()));
    }
    stats.endpoints = ranked(endpoints, &other);
    stats.db = ranked(db, &db_other);
    Ok(stats)
}

/// The groups most frequent first, then `(other)` when some were not kept.
fn ranked(groups: HashMap<String, Endpoint>, other: &Endpoint) -> Vec<EndpointStats> {
    let mut list: Vec<EndpointStats> = groups.into_iter().map(|(key, e)| e.finish(key)).collect();
    list.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.endpoint.cmp(&b.endpoint))
    });
    if other.count > 0 {
        list.push(other.finish("(other)".to_string()));
    }
    list
}

fn classes(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_string();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Prints `stats` for a terminal.
pub fn render_text(stats: &Stats, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "exchanges   {} ({} inbound, {} downstream)",
        stats.exchanges, stats.inbound, stats.downstream
    )?;
    if let (Some(first), Some(last)) = (&stats.first, &stats.last) {
        writeln!(
            out,
            "time span   {first} .. {last} ({:.1} s)",
            stats.span_seconds
        )?;
        writeln!(
            out,
            "rate        mean {:.1}/s, peak {}/s",
            stats.mean_rate, stats.peak_rate
        )?;
    }
    writeln!(out, "status      {}", classes(&stats.statuses))?;
    writeln!(out, "protocols   {}", classes(&stats.protocols))?;
    writeln!(
        out,
        "bytes       requests {}, responses {}",
        human_size(stats.request_bytes),
        human_size(stats.response_bytes)
    )?;
    writeln!(
        out,
        "flags       truncated {}, redacted {}, transport errors {}",
        stats.truncated,
        stats.redacted,
        if stats.errors.is_empty() {
            "0".to_string()
        } else {
            classes(&stats.errors)
        }
    )?;
    // The row over all exchanges closes the first table shown.
    let overall = stats.overall.iter();
    if !stats.endpoints.is_empty() {
        writeln!(out)?;
        let rows = stats.endpoints.iter().chain(overall.clone());
        write!(out, "{}", table("endpoint", rows))?;
    }
    if !stats.db.is_empty() {
        writeln!(out)?;
        let all = overall.filter(|_| stats.endpoints.is_empty());
        write!(
            out,
            "{}",
            table("database and cache calls", stats.db.iter().chain(all))
        )?;
    }
    Ok(())
}

/// A table of groups. Their names are recorded text: the table shows them
/// escaped, one line each, long ones shortened (`--json` keeps them
/// whole).
fn table<'a>(title: &str, rows: impl Iterator<Item = &'a EndpointStats>) -> Table {
    let mut table = Table::new(vec![
        Column::left(title).max_width(60),
        Column::right("count").width(7).gap(2),
        Column::right("p50").width(8).gap(2),
        Column::right("p90").width(8).gap(2),
        Column::right("p99").width(8).gap(2),
        Column::right("max").width(8).gap(2),
        Column::left("statuses").gap(2),
    ]);
    for e in rows {
        table.row([
            e.endpoint.clone(),
            e.count.to_string(),
            human_duration(e.p50_ns),
            human_duration(e.p90_ns),
            human_duration(e.p99_ns),
            human_duration(e.max_ns),
            classes(&e.statuses),
        ]);
    }
    table
}
