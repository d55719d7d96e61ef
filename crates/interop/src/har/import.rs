//! HAR entries into exchanges.

use std::io::BufRead;

use base64::Engine;
use chrono::DateTime;
use reprise_model::{
    ErrorKind, Exchange, Header, Protocol, RecordSource, Request, Response, Role, Sink, Timings,
    TransportError,
};

use super::{Entry, Har, HarRequest, HarResponse, HarTimings, PostData};
use crate::error::ImportError;
use crate::{Format, ImportReport};

/// Imports a HAR document.
pub fn import(
    reader: impl BufRead,
    file: &str,
    sink: &mut dyn Sink,
) -> Result<ImportReport, ImportError> {
    let mut json = serde_json::Deserializer::from_reader(reader);
    let har: Har = serde_path_to_error::deserialize(&mut json).map_err(|e| har_error(file, e))?;
    json.end().map_err(|e| ImportError::Har {
        file: file.to_string(),
        path: "(end of document)".into(),
        message: e.to_string(),
    })?;
    let mut report = ImportReport::new(Format::Har);
    for (index, raw) in har.log.entries.iter().enumerate() {
        let place = format!("log.entries[{index}]");
        let mut entry_json = serde_json::Deserializer::from_str(raw.get());
        let entry: Entry = match serde_path_to_error::deserialize(&mut entry_json) {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().to_string();
                let at = if path == "." {
                    place
                } else {
                    format!("{place}.{path}")
                };
                report
                    .skipped
                    .push(format!("{at}: {}", without_position(e.inner())));
                continue;
            }
        };
        match exchange(&entry, index) {
            Ok(exchange) => {
                sink.append(exchange).map_err(|source| ImportError::Sink {
                    file: file.to_string(),
                    source,
                })?;
                report.exchanges += 1;
            }
            Err((field, why)) => report.skipped.push(format!("{place}.{field}: {why}")),
        }
    }
    Ok(report)
}

/// serde_json's message without its " at line L column C": inside an entry
/// the path says where, and the position would be relative to the entry.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix)
        .map(str::to_string)
        .unwrap_or(text)
}

fn har_error(file: &str, error: serde_path_to_error::Error<serde_json::Error>) -> ImportError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let (path, message) = if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        ("(document)".to_string(), format!("not valid JSON: {inner}"))
    } else {
        (
            if path == "." {
                "(document)".to_string()
            } else {
                path
            },
            inner.to_string(),
        )
    };
    ImportError::Har {
        file: file.to_string(),
        path,
        message,
    }
}

type EntryError = (&'static str, String);

fn exchange(entry: &Entry, index: usize) -> Result<Exchange, EntryError> {
    let recorded_at_ns = parse_started(&entry.started)?;
    let request = request(&entry.request)?;
    let (response, error) = response(&entry.response, &entry.error)?;
    let protocol = protocol(&entry.request.http_version, &request);
    let parent_id = parse_id(&entry.reprise_parent_id);
    let id = parse_id(&entry.reprise_id).unwrap_or_else(|| {
        let index_text = index.to_string();
        crate::ids::derived_id(
            recorded_at_ns,
            &[
                index_text.as_bytes(),
                request.method.as_bytes(),
                entry.request.url.as_bytes(),
                entry.started.as_bytes(),
            ],
        )
    });
    Ok(Exchange {
        id,
        role: if parent_id.is_some() {
            Role::Downstream
        } else {
            Role::Inbound
        } as i32,
        parent_id: parent_id.unwrap_or_default(),
        recorded_at_ns,
        duration_ns: ms_to_ns(entry.time).unwrap_or(0),
        protocol: protocol as i32,
        source: Some(RecordSource {
            recorder: "import:har".into(),
            server_addr: entry.server_ip.clone(),
            connection: entry.connection.clone(),
            ..Default::default()
        }),
        request: Some(request),
        response,
        error,
        timings: entry.timings.as_ref().map(timings),
        comment: entry.comment.clone(),
        ..Default::default()
    })
}

fn parse_id(text: &str) -> Option<Vec<u8>> {
    reprise_model::id::parse_hex(text)
}

fn parse_started(text: &str) -> Result<u64, EntryError> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .and_then(|ns| u64::try_from(ns).ok())
        .ok_or((
            "startedDateTime",
            format!("not an ISO 8601 date-time: {text:?}"),
        ))
}

/// Milliseconds (HAR) to ns; `None` for HAR's -1 (not measured).
fn ms_to_ns(ms: f64) -> Option<u64> {
    (ms.is_finite() && ms >= 0.0).then(|| (ms * 1_000_000.0).round() as u64)
}

fn headers(list: &[super::NameValue]) -> Vec<Header> {
    // HTTP/2 pseudo-headers are the request line, not headers.
    list.iter()
        .filter(|h| !h.name.starts_with(':'))
        .map(|h| Header::new(h.name.clone(), &h.value))
        .collect()
}

fn request(har: &HarRequest) -> Result<Request, EntryError> {
    let crate::target::Target {
        scheme,
        authority,
        mut path,
    } = crate::target::absolute(&har.url).map_err(|why| ("request.url", why))?;
    // `queryString` is meant to be the URL's query parsed, but some tools
    // (HTTP snippet generators) list parameters there that the URL lacks:
    // those were sent too.
    let mut in_url: Vec<(String, String)> = path
        .split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut missing = form_urlencoded::Serializer::new(String::new());
    let mut any_missing = false;
    for pair in &har.query {
        match in_url
            .iter()
            .position(|(n, v)| *n == pair.name && *v == pair.value)
        {
            Some(at) => {
                in_url.swap_remove(at);
            }
            None => {
                missing.append_pair(&pair.name, &pair.value);
                any_missing = true;
            }
        }
    }
    if any_missing {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&missing.finish());
    }
    let mut headers = headers(&har.headers);
    let has_cookie_header = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("cookie"));
    if !has_cookie_header && !har.cookies.is_empty() {
        // Some tools list cookies only in `cookies`: they were sent as a header.
        let value: Vec<String> = har
            .cookies
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        headers.push(Header::new("cookie", value.join("; ")));
    }
    let body = match &har.post_data {
        Some(post) => post_body(post, &headers)?,
        None => Vec::new(),
    };
    let body_size = body.len() as u64;
    Ok(Request {
        method: har.method.clone(),
        scheme,
        authority,
        path,
        headers,
        body: body.into(),
        body_size,
        ..Default::default()
    })
}

fn post_body(post: &PostData, headers: &[Header]) -> Result<Vec<u8>, EntryError> {
    if let Some(text) = &post.text {
        if post.encoding.eq_ignore_ascii_case("base64") {
            return base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| ("request.postData.text", format!("invalid base64: {e}")));
        }
        return Ok(text.clone().into_bytes());
    }
    if post.params.is_empty() {
        return Ok(Vec::new());
    }
    let content_type = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .unwrap_or_else(|| post.mime_type.clone());
    // Only the parameters were recorded: rebuild the body they came from.
    if let Some(boundary) = multipart_boundary(&content_type) {
        let mut body = Vec::new();
        for param in &post.params {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut disposition =
                format!("Content-Disposition: form-data; name=\"{}\"", param.name);
            if let Some(file) = &param.file_name {
                disposition.push_str(&format!("; filename=\"{file}\""));
            }
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n");
            if let Some(kind) = &param.content_type {
                body.extend_from_slice(format!("Content-Type: {kind}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(param.value.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        return Ok(body);
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for param in &post.params {
        form.append_pair(&param.name, &param.value);
    }
    Ok(form.finish().into_bytes())
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return None;
    }
    // Some tools record `multipart/form-data` without its boundary; the
    // body still needs one.
    let Some(at) = lower.find("boundary=") else {
        return Some("reprise-har-boundary".to_string());
    };
    let value = content_type[at + "boundary=".len()..]
        .split(';')
        .next()?
        .trim()
        .trim_matches('"');
    (!value.is_empty()).then(|| value.to_string())
}

fn response(
    har: &HarResponse,
    entry_error: &str,
) -> Result<(Option<Response>, Option<TransportError>), EntryError> {
    let status = har.status;
    if !(status.is_finite() && (0.0..1000.0).contains(&status)) {
        return Err(("response.status", format!("not an HTTP status: {status}")));
    }
    if status < 1.0 {
        // Browsers record a failed request with status 0.
        let message = [entry_error, &har.error]
            .into_iter()
            .find(|m| !m.is_empty())
            .unwrap_or("no response");
        let error = TransportError {
            kind: ErrorKind::Other as i32,
            message: message.to_string(),
            ..Default::default()
        };
        return Ok((None, Some(error)));
    }
    let headers = headers(&har.headers);
    let encoded = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-encoding"));
    let (body, declared) = match &har.content {
        Some(content) => {
            let body = match &content.text {
                Some(text) if content.encoding.eq_ignore_ascii_case("base64") => {
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|e| ("response.content.text", format!("invalid base64: {e}")))?
                }
                Some(text) => text.clone().into_bytes(),
                None => Vec::new(),
            };
            let declared = content
                .size
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(0, |s| s as u64);
            (body, declared)
        }
        None => (Vec::new(), 0),
    };
    let body_size = declared.max(body.len() as u64);
    Ok((
        Some(Response {
            status: status as u32,
            reason: har.status_text.clone(),
            headers,
            // The recorder kept less than the body's size (or nothing).
            body_truncated: (body.len() as u64) < body_size,
            body_decoded: encoded && !body.is_empty(),
            body: body.into(),
            body_size,
            ..Default::default()
        }),
        None,
    ))
}

fn protocol(version: &str, request: &Request) -> Protocol {
    let v = version.trim().to_ascii_lowercase();
    let protocol = match v.as_str() {
        "http/1.0" => Protocol::Http10,
        "http/1.1" => Protocol::Http11,
        "h2" | "http/2" | "http/2.0" => Protocol::Http2,
        "h3" | "http/3" | "http/3.0" => Protocol::Http3,
        _ => Protocol::Unspecified,
    };
    let grpc = request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && reprise_model::grpc::is_grpc_content_type(&h.value)
    });
    if grpc && protocol == Protocol::Http2 {
        Protocol::Grpc
    } else {
        protocol
    }
}

fn timings(har: &HarTimings) -> Timings {
    let ns = |ms: Option<f64>| ms.and_then(ms_to_ns);
    Timings {
        blocked_ns: ns(har.blocked),
        dns_ns: ns(har.dns),
        connect_ns: ns(har.connect),
        tls_ns: ns(har.ssl),
        send_ns: ns(har.send),
        wait_ns: ns(har.wait),
        receive_ns: ns(har.receive),
    }
}
