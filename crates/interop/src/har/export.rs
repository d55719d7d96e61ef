//! Exchanges out to a HAR 1.2 document, streamed entry by entry.

use std::io::Write;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use reprise_model::{Exchange, Header, Protocol, Source, Timings};
use serde_json::{Value, json};

use crate::error::ExportError;

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Indent the JSON (larger, easier to read).
    pub pretty: bool,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Entries written.
    pub exchanges: u64,
    /// Database and cache calls left out: HAR holds HTTP only.
    pub database_calls: u64,
    /// Damage the source reported and skipped, one line each.
    pub damage: Vec<String>,
}

/// Writes every exchange of `source` to `out` as one HAR 1.2 document.
/// Damage reports from the source are collected in the report; any other
/// source error stops the export.
pub fn export_har(
    source: &mut dyn Source,
    mut out: impl Write,
    options: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let mut report = ExportReport::default();
    let creator = json!({"name": "reprise", "version": env!("CARGO_PKG_VERSION")});
    write!(
        out,
        "{{\"log\":{{\"version\":\"1.2\",\"creator\":{creator},\"entries\":["
    )?;
    let mut intact = reprise_model::Intact::new(source);
    for item in intact.by_ref() {
        let exchange = item?;
        if exchange.db.is_some() {
            report.database_calls += 1;
            continue;
        }
        if report.exchanges > 0 {
            out.write_all(b",")?;
        }
        out.write_all(if options.pretty { b"\n" } else { b"" })?;
        let value = entry(&exchange);
        if options.pretty {
            serde_json::to_writer_pretty(&mut out, &value).map_err(std::io::Error::from)?;
        } else {
            serde_json::to_writer(&mut out, &value).map_err(std::io::Error::from)?;
        }
        report.exchanges += 1;
    }
    report.damage = intact.into_damage();
    out.write_all(b"]}}\n")?;
    out.flush()?;
    Ok(report)
}

fn text_or_base64(bytes: &[u8]) -> (String, Option<&'static str>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            Some("base64"),
        ),
    }
}

fn header_value(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

fn headers(list: &[Header]) -> Value {
    Value::Array(
        list.iter()
            .map(|h| json!({"name": h.name, "value": String::from_utf8_lossy(&h.value)}))
            .collect(),
    )
}

fn http_version(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http10 => "HTTP/1.0",
        Protocol::Http2 | Protocol::Grpc => "HTTP/2.0",
        Protocol::Http3 => "HTTP/3",
        // Database calls are not exported (`export_har` leaves them out).
        Protocol::Http11 | Protocol::Unspecified | Protocol::Postgres | Protocol::Redis => {
            "HTTP/1.1"
        }
    }
}

fn cookies(header: Option<String>, separator: char) -> Value {
    let Some(text) = header else {
        return json!([]);
    };
    Value::Array(
        text.split(separator)
            .filter_map(|pair| {
                let pair = pair.split(';').next()?.trim();
                let (name, value) = pair.split_once('=')?;
                Some(json!({"name": name.trim(), "value": value.trim()}))
            })
            .collect(),
    )
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

fn timings(timings: Option<&Timings>, duration_ns: u64) -> Value {
    let Some(t) = timings else {
        // Nothing measured by phase: the whole call was waiting.
        return json!({"send": 0.0, "wait": ms(duration_ns), "receive": 0.0});
    };
    let optional = |ns: Option<u64>| ns.map_or(-1.0, ms);
    let required = |ns: Option<u64>| ns.map_or(0.0, ms);
    json!({
        "blocked": optional(t.blocked_ns),
        "dns": optional(t.dns_ns),
        "connect": optional(t.connect_ns),
        "ssl": optional(t.tls_ns),
        "send": required(t.send_ns),
        "wait": required(t.wait_ns),
        "receive": required(t.receive_ns),
    })
}

fn started(ns: u64) -> String {
    let dt = DateTime::<Utc>::from_timestamp_nanos(i64::try_from(ns).unwrap_or(i64::MAX));
    dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// One HAR entry for an exchange.
pub(crate) fn entry(exchange: &Exchange) -> Value {
    let request = exchange.request.clone().unwrap_or_default();
    let scheme = if request.scheme.is_empty() {
        "http"
    } else {
        request.scheme.as_str()
    };
    let url = format!("{scheme}://{}{}", request.authority, request.path);
    let query: Vec<Value> = request
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect()
        })
        .unwrap_or_default();
    let mut har_request = json!({
        "method": request.method,
        "url": url,
        "httpVersion": http_version(exchange.protocol()),
        "cookies": cookies(header_value(&request.headers, "cookie"), ';'),
        "headers": headers(&request.headers),
        "queryString": query,
        "headersSize": -1,
        "bodySize": if request.body.is_empty() { 0 } else { request.body.len() as i64 },
    });
    if !request.body.is_empty() {
        let (text, encoding) = text_or_base64(&request.body);
        let mut post = json!({
            "mimeType": header_value(&request.headers, "content-type").unwrap_or_default(),
            "text": text,
        });
        if let Some(encoding) = encoding {
            post["encoding"] = json!(encoding);
        }
        har_request["postData"] = post;
    }

    let mut har_response = match &exchange.response {
        Some(response) => {
            let (text, encoding) = text_or_base64(&response.body);
            let mut content = json!({
                "size": response.size(),
                "mimeType": header_value(&response.headers, "content-type").unwrap_or_default(),
                "text": text,
            });
            if let Some(encoding) = encoding {
                content["encoding"] = json!(encoding);
            }
            json!({
                "status": response.status,
                "statusText": response.reason,
                "httpVersion": http_version(exchange.protocol()),
                "cookies": cookies(header_value(&response.headers, "set-cookie"), '\n'),
                "headers": headers(&response.headers),
                "content": content,
                "redirectURL": header_value(&response.headers, "location").unwrap_or_default(),
                "headersSize": -1,
                "bodySize": response.size(),
            })
        }
        None => json!({
            "status": 0, "statusText": "", "httpVersion": http_version(exchange.protocol()),
            "cookies": [], "headers": [], "content": {"size": 0, "mimeType": ""},
            "redirectURL": "", "headersSize": -1, "bodySize": -1,
        }),
    };
    if let Some(error) = &exchange.error {
        har_response["_error"] = json!(error.message);
    }

    let mut entry = json!({
        "startedDateTime": started(exchange.recorded_at_ns),
        "time": ms(exchange.duration_ns),
        "request": har_request,
        "response": har_response,
        "cache": {},
        "timings": timings(exchange.timings.as_ref(), exchange.duration_ns),
        "_reprise_id": exchange.id_hex(),
    });
    if !exchange.parent_id.is_empty() {
        entry["_reprise_parent_id"] = json!(reprise_model::display_id(&exchange.parent_id));
    }
    if let Some(source) = &exchange.source {
        if !source.server_addr.is_empty() {
            entry["serverIPAddress"] = json!(source.server_addr);
        }
        if !source.connection.is_empty() {
            entry["connection"] = json!(source.connection);
        }
    }
    if !exchange.comment.is_empty() {
        entry["comment"] = json!(exchange.comment);
    }
    entry
}
