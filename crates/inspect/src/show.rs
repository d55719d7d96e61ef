//! `reprise show`: one exchange whole, its downstream calls nested under it.

use std::io::Write;

use reprise_model::terminal::{escape, escape_lines};
use reprise_model::{Exchange, Header, Source, display_id, time::format_ns_micros};

use crate::InspectError;
use crate::body::{indent, protobuf_message, show_stored_body};
use crate::db::show::Limits;
use crate::format::{human_duration, human_size};

/// How to show.
#[derive(Debug, Clone)]
pub struct ShowOptions {
    /// One JSON object instead of text.
    pub json: bool,
    /// Show bodies whole.
    pub full: bool,
    /// Where bodies are cut unless `full` (default 64 KiB); also the
    /// most bytes of one SQL value, parameter or Redis argument shown.
    pub max_body_bytes: usize,
    /// Rows of a SQL result, and elements of a Redis collection, shown
    /// unless `full` (default 20); the rest are counted.
    pub max_rows: usize,
}

impl Default for ShowOptions {
    fn default() -> Self {
        ShowOptions {
            json: false,
            full: false,
            max_body_bytes: 64 << 10,
            max_rows: 20,
        }
    }
}

/// What `show` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowSummary {
    /// The full id of the exchange shown.
    pub id: String,
    /// How many downstream calls were shown under it.
    pub downstream: usize,
    /// Damage the source reported and skipped.
    pub damage: Vec<String>,
}

/// Most candidates named in an "ambiguous prefix" error.
const MAX_CANDIDATES: usize = 5;

/// Finds the exchange whose id is `id` or starts with it (at least 6 hex
/// digits) in one pass over `source`, and writes it with its downstream
/// calls.
pub fn show(
    source: &mut dyn Source,
    id: &str,
    out: &mut dyn Write,
    options: &ShowOptions,
) -> Result<ShowSummary, InspectError> {
    let prefix = id.trim().to_ascii_lowercase();
    if prefix.len() < 6 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(InspectError::BadId(id.to_string()));
    }
    let mut found: Vec<Exchange> = Vec::new();
    let mut children: Vec<Exchange> = Vec::new();
    let mut intact = reprise_model::Intact::new(source);
    for item in intact.by_ref() {
        let exchange = item?;
        if exchange.id_hex().starts_with(&prefix) {
            if found.len() <= MAX_CANDIDATES && !found.iter().any(|f| f.id == exchange.id) {
                found.push(exchange);
            }
        } else if display_id(&exchange.parent_id).starts_with(&prefix) {
            // Downstream calls usually end, and are stored, before their parent.
            children.push(exchange);
        }
    }
    let damage = intact.into_damage();
    let exchange = match found.len() {
        0 => return Err(InspectError::NotFound(prefix)),
        1 => found.remove(0),
        _ => {
            let candidates = found
                .iter()
                .take(MAX_CANDIDATES)
                .map(Exchange::id_hex)
                .collect();
            return Err(InspectError::Ambiguous { prefix, candidates });
        }
    };
    children.retain(|c| c.parent_id == exchange.id);
    children.sort_by_key(|c| c.recorded_at_ns);
    let max = if options.full {
        0
    } else {
        options.max_body_bytes
    };
    let limits = Limits {
        rows: if options.full { 0 } else { options.max_rows },
        value_bytes: max,
    };
    if options.json {
        let mut value = crate::json::exchange(&exchange);
        value["downstream"] =
            serde_json::Value::Array(children.iter().map(crate::json::exchange).collect());
        reprise_model::terminal::write_json(&mut *out, &value, true)
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&exchange, limits).as_bytes())?;
        if !children.is_empty() {
            writeln!(out, "\ndownstream calls ({}):", children.len())?;
            for child in &children {
                writeln!(out)?;
                out.write_all(indent(&render(child, limits)).as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(ShowSummary {
        id: exchange.id_hex(),
        downstream: children.len(),
        damage,
    })
}

fn headers(prefix: &str, list: &[Header], out: &mut String) {
    for header in list {
        out.push_str(&format!(
            "{prefix} {}: {}\n",
            escape(&header.name),
            escape(&String::from_utf8_lossy(&header.value))
        ));
    }
}

fn body(
    body: &[u8],
    list: &[Header],
    decoded: bool,
    truncated: bool,
    size: u64,
    max: usize,
    out: &mut String,
) {
    if body.is_empty() {
        if size > 0 {
            out.push_str(&format!("(body of {} not recorded)\n", human_size(size)));
        }
        return;
    }
    let shown = show_stored_body(body, list, decoded, truncated, max);
    if truncated {
        out.push_str(&format!(
            "(recorded {} of {}: truncated at the size cap)\n",
            human_size(body.len() as u64),
            human_size(size)
        ));
    }
    for note in &shown.notes {
        out.push_str(&format!("({})\n", escape(note)));
    }
    out.push_str(&escape_lines(&shown.text));
}

/// The text form of one exchange.
fn render(exchange: &Exchange, limits: Limits) -> String {
    let max = limits.value_bytes;
    let mut out = String::new();
    let role = if exchange.is_downstream() {
        "downstream"
    } else {
        "inbound"
    };
    out.push_str(&format!(
        "exchange {}  ({role}, {})\n",
        exchange.id_hex(),
        exchange.protocol_label()
    ));
    if !exchange.parent_id.is_empty() {
        out.push_str(&format!(
            "  parent    {}\n",
            display_id(&exchange.parent_id)
        ));
    }
    if !exchange.trace_id.is_empty() {
        out.push_str(&format!("  trace     {}\n", display_id(&exchange.trace_id)));
    }
    if let Some((kind, order)) = exchange.link_kind() {
        let linked = !exchange.parent_id.is_empty();
        let order = if linked {
            format!(", call {} of its parent's", u64::from(order) + 1)
        } else {
            String::new()
        };
        out.push_str(&format!("  link      {}{order}\n", kind.label()));
    }
    out.push_str(&format!(
        "  recorded  {}   duration {}\n",
        format_ns_micros(exchange.recorded_at_ns),
        human_duration(exchange.duration_ns)
    ));
    if let Some(source) = &exchange.source {
        let parts: Vec<String> = [
            ("recorder", &source.recorder),
            ("service", &source.service),
            ("instance", &source.instance),
            ("listener", &source.listener),
            ("route", &source.route),
            ("client", &source.client_addr),
            ("server", &source.server_addr),
            ("connection", &source.connection),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect();
        if !parts.is_empty() {
            out.push_str(&format!("  source    {}\n", parts.join(" ")));
        }
    }
    if let Some(t) = &exchange.timings {
        let phases: Vec<String> = [
            ("blocked", t.blocked_ns),
            ("dns", t.dns_ns),
            ("connect", t.connect_ns),
            ("tls", t.tls_ns),
            ("send", t.send_ns),
            ("wait", t.wait_ns),
            ("receive", t.receive_ns),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|ns| format!("{k} {}", human_duration(ns.max(1)))))
        .collect();
        out.push_str(&format!("  timings   {}\n", phases.join(", ")));
    }
    if let Some(flags) = &exchange.flags {
        let mut set = Vec::new();
        if flags.redacted {
            set.push(format!(
                "redacted ({})",
                escape(&flags.redactions.join(", "))
            ));
        }
        if flags.upgraded {
            set.push("upgraded".to_string());
        }
        if flags.cancelled {
            set.push("cancelled".to_string());
        }
        if let Some(rate) = flags.sample_rate {
            set.push(format!("sampled at {rate}"));
        }
        if !set.is_empty() {
            out.push_str(&format!("  flags     {}\n", set.join(", ")));
        }
    }
    if let Some(replay) = &exchange.replay {
        out.push_str(&format!(
            "  replays   {} (target {})\n",
            display_id(&replay.recorded_id),
            escape(&replay.target)
        ));
    }
    if !exchange.comment.is_empty() {
        out.push_str(&format!("  comment   {}\n", escape(&exchange.comment)));
    }
    if let Some(db) = &exchange.db {
        crate::db::show::render(db, limits, &mut out);
    }
    if let Some(request) = &exchange.request {
        let scheme = if request.scheme.is_empty() {
            "http".into()
        } else {
            escape(&request.scheme)
        };
        out.push_str(&format!(
            "\n> {} {scheme}://{}{}\n",
            escape(&request.method),
            escape(&request.authority),
            escape(&request.path)
        ));
        headers(">", &request.headers, &mut out);
        out.push_str(">\n");
        body(
            &request.body,
            &request.headers,
            request.body_decoded,
            request.body_truncated,
            request.size(),
            max,
            &mut out,
        );
        headers("> trailer", &request.trailers, &mut out);
    }
    for message in &exchange.messages {
        let arrow = if message.direction() == reprise_model::Direction::Response {
            "<"
        } else {
            ">"
        };
        out.push_str(&format!(
            "\n{arrow} message at +{} ({}{})\n",
            human_duration(message.offset_ns.max(1)),
            human_size(message.size.max(message.data.len() as u64)),
            if message.compressed {
                ", compressed"
            } else {
                ""
            }
        ));
        out.push_str(&indent(&escape_lines(&protobuf_message(&message.data))));
    }
    if let Some(response) = &exchange.response {
        out.push_str(
            &format!("\n< {} {}\n", response.status, escape(&response.reason)).replace(" \n", "\n"),
        );
        headers("<", &response.headers, &mut out);
        out.push_str("<\n");
        body(
            &response.body,
            &response.headers,
            response.body_decoded,
            response.body_truncated,
            response.size(),
            max,
            &mut out,
        );
        headers("< trailer", &response.trailers, &mut out);
        if let Some(grpc) = &response.grpc {
            out.push_str(
                &format!("< grpc-status {} {}\n", grpc.code, escape(&grpc.message))
                    .replace(" \n", "\n"),
            );
        }
    }
    if let Some(error) = &exchange.error {
        out.push_str(&format!(
            "\n! transport error ({}): {}\n",
            crate::json::error_kind(error.kind()),
            escape(&error.message)
        ));
    }
    out
}
