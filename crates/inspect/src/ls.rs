//! `reprise ls`: one line per exchange, written as it is read.

use std::io::Write;

use reprise_model::select::ExchangeFilter;
use reprise_model::terminal::escape;
use reprise_model::{Exchange, Source, time::format_ns};

use crate::InspectError;
use crate::format::{human_duration, human_size};

/// What to list and how.
#[derive(Debug, Clone, Default)]
pub struct LsOptions {
    /// Which exchanges.
    pub filter: ExchangeFilter,
    /// Stop after this many lines.
    pub limit: Option<u64>,
    /// One JSON object per line instead of columns.
    pub json: bool,
    /// Flush after every line (when following a live tape).
    pub flush_each: bool,
}

/// What `ls` saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LsSummary {
    /// Lines written.
    pub listed: u64,
    /// Damage the source reported and skipped, one message each.
    pub damage: Vec<String>,
}

const HEADER: &str = "ID                                TIME                      PROTO  METHOD    STATUS  DURATION   REQUEST  RESPONSE  TARGET";

/// Lists the exchanges of `source` that pass the filter.
pub fn ls(
    source: &mut dyn Source,
    out: &mut dyn Write,
    options: &LsOptions,
) -> Result<LsSummary, InspectError> {
    let mut summary = LsSummary::default();
    if !options.json {
        writeln!(out, "{HEADER}")?;
        if options.flush_each {
            out.flush()?;
        }
    }
    let mut intact = reprise_model::Intact::new(source);
    for item in intact.by_ref() {
        if options.limit.is_some_and(|limit| summary.listed >= limit) {
            break;
        }
        let exchange = item?;
        if !crate::db::matches(&options.filter, &exchange) {
            continue;
        }
        if options.json {
            reprise_model::terminal::write_json(&mut *out, &crate::json::summary(&exchange), false)
                .map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "{}", line(&exchange))?;
        }
        if options.flush_each {
            out.flush()?;
        }
        summary.listed += 1;
    }
    summary.damage = intact.into_damage();
    out.flush()?;
    Ok(summary)
}

/// The status column: the code, the transport error, or `-`.
fn status(exchange: &Exchange) -> String {
    if let Some(response) = &exchange.response {
        if let Some(grpc) = response.grpc.as_ref().filter(|g| g.code != 0) {
            return format!("{}/g{}", response.status, grpc.code);
        }
        return response.status.to_string();
    }
    match &exchange.error {
        Some(error) => format!("err:{}", crate::json::error_kind(error.kind())),
        None => "-".to_string(),
    }
}

/// One column-aligned line; the target comes last as it has no fixed width.
/// Recorded text in it is escaped: one exchange is always one line.
pub(crate) fn line(exchange: &Exchange) -> String {
    if let Some(head) = crate::db::head(exchange) {
        return db_line(exchange, &head);
    }
    let request = exchange.request.as_ref();
    let method = request.map_or("-".into(), |r| escape(&r.method));
    let method = if exchange.is_downstream() {
        format!("↳{method}")
    } else {
        method.to_string()
    };
    let target = request.map_or_else(
        || "-".to_string(),
        |r| format!("{}{}", escape(&r.authority), escape(&r.path)),
    );
    format!(
        "{:<32}  {:<24}  {:<5}  {:<8}  {:>6}  {:>8}  {:>8}  {:>8}  {}",
        exchange.id_hex(),
        format_ns(exchange.recorded_at_ns),
        exchange.protocol_label(),
        method,
        status(exchange),
        human_duration(exchange.duration_ns),
        human_size(request.map_or(0, |r| r.size())),
        human_size(exchange.response.as_ref().map_or(0, |r| r.size())),
        target,
    )
}

/// The line of a database or cache call: its verb or command as the
/// method, its command tag, error code or reply kind as the status, the
/// listener and statement or command as the target.
fn db_line(exchange: &Exchange, head: &crate::db::Head) -> String {
    let method = if exchange.is_downstream() {
        format!("↳{}", escape(&head.method))
    } else {
        escape(&head.method).into_owned()
    };
    format!(
        "{:<32}  {:<24}  {:<5}  {:<8}  {:>6}  {:>8}  {:>8}  {:>8}  {}",
        exchange.id_hex(),
        format_ns(exchange.recorded_at_ns),
        exchange.protocol_label(),
        method,
        escape(&head.status),
        human_duration(exchange.duration_ns),
        human_size(head.request_bytes),
        human_size(head.response_bytes),
        escape(&head.target()),
    )
}
