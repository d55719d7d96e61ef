//! One recorded exchange against its replay: status, gRPC status,
//! headers, and the body by content type. Every pair ends as exactly one
//! of identical, regressed, or not compared (with the reason).

use std::borrow::Cow;
use std::collections::BTreeSet;

use reprise_model::redact::JsonPath;
use reprise_model::wire::{RawField, RawValue};
use reprise_model::{Direction, Exchange, Header, HeaderList, Request, Response, endpoint_key};
use serde::Serialize;
use serde_json::Value;

use crate::json::{ChangeKind, Difference, diff_with};

/// Response headers that differ between any two runs of the same code,
/// never compared unless asked for.
pub const IGNORED_HEADERS: [&str; 15] = [
    "date",
    "server",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "via",
    "age",
    "expires",
    "last-modified",
    "etag",
    "x-request-id",
    reprise_model::protocol::REPLAY_HEADER,
    "traceparent",
    "tracestate",
];

/// Request headers of a downstream call never compared unless asked for,
/// on top of [`IGNORED_HEADERS`]: what a client library or a proxy adds
/// on the way (the target's name is compared as the call's authority),
/// and gRPC's `grpc-timeout`, the time left before the caller's deadline,
/// different on every call.
pub const IGNORED_REQUEST_HEADERS: [&str; 9] = [
    "host",
    "grpc-timeout",
    "proxy-connection",
    "proxy-authorization",
    "baggage",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// What to compare.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Body paths never compared (`--ignore`).
    pub ignore: Vec<JsonPath>,
    /// Arrays compared as multisets (`--unordered`).
    pub unordered: Vec<JsonPath>,
    /// More paths for one endpoint each (`[[rule]]` in a rules file).
    pub endpoints: Vec<EndpointRules>,
    /// gRPC message types, to compare messages by field name.
    pub schema: Option<crate::schema::Schema>,
    /// Response headers never compared (lower case).
    pub ignored_headers: BTreeSet<String>,
    /// Request headers of downstream calls never compared (lower case):
    /// [`IGNORED_HEADERS`] and [`IGNORED_REQUEST_HEADERS`] unless asked.
    pub ignored_request_headers: BTreeSet<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ignore: Vec::new(),
            unordered: Vec::new(),
            endpoints: Vec::new(),
            schema: None,
            ignored_headers: IGNORED_HEADERS.iter().map(|h| h.to_string()).collect(),
            ignored_request_headers: IGNORED_HEADERS
                .iter()
                .chain(&IGNORED_REQUEST_HEADERS)
                .map(|h| h.to_string())
                .collect(),
        }
    }
}

impl Rules {
    /// `--ignore PATH`.
    pub fn ignore(&mut self, path: &str) -> Result<(), reprise_model::redact::PathError> {
        self.ignore.push(JsonPath::parse(path)?);
        Ok(())
    }

    /// `--unordered PATH`.
    pub fn unordered(&mut self, path: &str) -> Result<(), reprise_model::redact::PathError> {
        self.unordered.push(JsonPath::parse(path)?);
        Ok(())
    }

    /// `--ignore-header NAME`: in responses and in downstream requests.
    pub fn ignore_header(&mut self, name: &str) {
        let name = name.trim().to_ascii_lowercase();
        self.ignored_request_headers.insert(name.clone());
        self.ignored_headers.insert(name);
    }

    /// `--compare-header NAME`: compared even if ignored by default, in
    /// responses and in downstream requests.
    pub fn compare_header(&mut self, name: &str) {
        let name = name.trim().to_ascii_lowercase();
        self.ignored_request_headers.remove(&name);
        self.ignored_headers.remove(&name);
    }
}

/// Rules for one endpoint, on top of the global ones.
#[derive(Debug, Clone, Default)]
pub struct EndpointRules {
    /// `METHOD /path`, as reports name endpoints (`GET /users/{id}`); a
    /// downstream call's as `METHOD authority/path`
    /// (`POST payments.example/charge`), with or without the `↳` reports
    /// put before it.
    pub endpoint: String,
    /// Body paths not compared for this endpoint.
    pub ignore: Vec<JsonPath>,
    /// Arrays compared as multisets for this endpoint.
    pub unordered: Vec<JsonPath>,
}

impl Rules {
    /// The ignore and unordered paths in force for `recorded`'s endpoint.
    fn paths_for(&self, recorded: &Exchange) -> (Cow<'_, [JsonPath]>, Cow<'_, [JsonPath]>) {
        if self.endpoints.is_empty() {
            return (Cow::Borrowed(&self.ignore), Cow::Borrowed(&self.unordered));
        }
        self.paths_named(&endpoint_key(recorded))
    }

    /// The ignore and unordered paths in force for the endpoint named
    /// `endpoint` (a downstream call's with or without its `↳`; a
    /// database call's as its pattern, `pg orders-db update users ...`).
    pub(crate) fn paths_named(&self, endpoint: &str) -> (Cow<'_, [JsonPath]>, Cow<'_, [JsonPath]>) {
        if self.endpoints.is_empty() {
            return (Cow::Borrowed(&self.ignore), Cow::Borrowed(&self.unordered));
        }
        let mut ignore = self.ignore.clone();
        let mut unordered = self.unordered.clone();
        let downstream = endpoint.strip_prefix('↳');
        for rule in self
            .endpoints
            .iter()
            .filter(|r| r.endpoint == endpoint || Some(r.endpoint.as_str()) == downstream)
        {
            ignore.extend(rule.ignore.iter().cloned());
            unordered.extend(rule.unordered.iter().cloned());
        }
        (Cow::Owned(ignore), Cow::Owned(unordered))
    }
}

/// Why a pair was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotCompared {
    /// The replayed call failed below HTTP.
    ReplayFailed,
    /// The recorded call had failed below HTTP.
    RecordingFailed,
    /// The recording has no replay of this exchange.
    MissingReplay,
    /// The replay names an exchange the recording does not hold.
    MissingRecording,
}

impl NotCompared {
    /// The report's words.
    pub fn label(self) -> &'static str {
        match self {
            NotCompared::ReplayFailed => "replayed call failed (transport error)",
            NotCompared::RecordingFailed => "recorded call had failed (transport error)",
            NotCompared::MissingReplay => "recorded but not replayed",
            NotCompared::MissingRecording => "replayed but not in the recording",
        }
    }
}

/// How a pair ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing compared differs.
    Identical,
    /// These differ.
    Regressed(Vec<Difference>),
    /// Every difference was judged noise (with a baseline).
    NoiseOnly,
    /// Not compared, and why.
    NotCompared(NotCompared),
}

/// Compares `recorded` with `replayed`.
pub fn compare(recorded: &Exchange, replayed: &Exchange, rules: &Rules) -> Verdict {
    let (Some(a), Some(b)) = (&recorded.response, &replayed.response) else {
        return Verdict::NotCompared(if recorded.response.is_none() {
            NotCompared::RecordingFailed
        } else {
            NotCompared::ReplayFailed
        });
    };
    let mut differences = Vec::new();
    if a.status != b.status {
        differences.push(scalar(
            "status",
            Value::from(a.status),
            Value::from(b.status),
        ));
    }
    let code = |r: &Response| r.grpc.as_ref().map(|g| g.code);
    if code(a) != code(b) {
        differences.push(scalar(
            "grpc-status",
            code(a).map_or(Value::Null, Value::from),
            code(b).map_or(Value::Null, Value::from),
        ));
    }
    headers(a, b, rules, &mut differences);
    // With a schema that knows the method, messages are read by name;
    // otherwise by field number.
    let typed = rules.schema.as_ref().and_then(|schema| {
        recorded
            .request
            .as_ref()
            .and_then(|r| schema.response_type(r.path_only()))
    });
    let (ignore, unordered) = rules.paths_for(recorded);
    let x = messages(recorded, Direction::Response, typed.as_ref());
    let y = messages(replayed, Direction::Response, typed.as_ref());
    if x.is_empty() && y.is_empty() {
        body(a.into(), b.into(), &ignore, &unordered, &mut differences);
    } else {
        // gRPC: the response messages, each read by field number as
        // `protoc --decode_raw` does, compared like JSON documents:
        // `$.messages[0]["2"]` is field 2 of the first message.
        let wrap = |v: Vec<Value>| serde_json::json!({ "messages": v });
        differences.extend(diff_with(&wrap(x), &wrap(y), &ignore, &unordered));
    }
    if differences.is_empty() {
        Verdict::Identical
    } else {
        Verdict::Regressed(differences)
    }
}

/// The messages of `exchange` going `direction`, each as a JSON value:
/// by field name with `typed`, else by field number.
fn messages(
    exchange: &Exchange,
    direction: Direction,
    typed: Option<&prost_reflect::MessageDescriptor>,
) -> Vec<Value> {
    exchange
        .messages
        .iter()
        .filter(|m| m.direction() == direction)
        .map(|m| {
            typed
                .filter(|_| !m.compressed)
                .and_then(|t| crate::schema::Schema::decode(t, &m.data))
                .unwrap_or_else(|| message_value(&m.data, m.compressed))
        })
        .collect()
}

/// Compares the request of a downstream call the new build made (`made`)
/// with the recorded call it is paired with: method, authority, path,
/// query parameters, the headers not ignored
/// ([`Rules::ignored_request_headers`]), and the body by content type as
/// [`compare`] reads a response's (JSON by field path with the `--ignore`
/// and `--unordered` paths and the rules of the call's endpoint; gRPC
/// messages by field). Paths are the ones a response's differences use
/// (`$.amount`, `header:idempotency-key`), plus `method`, `authority`,
/// `path` and `query:NAME`.
pub fn compare_request(recorded: &Exchange, made: &Exchange, rules: &Rules) -> Vec<Difference> {
    let none = Request::default();
    let a = recorded.request.as_ref().unwrap_or(&none);
    let b = made.request.as_ref().unwrap_or(&none);
    let mut differences = Vec::new();
    for (what, x, y) in [
        ("method", &a.method, &b.method),
        ("authority", &a.authority, &b.authority),
    ] {
        if !x.eq_ignore_ascii_case(y) {
            differences.push(scalar(
                what,
                Value::from(x.as_str()),
                Value::from(y.as_str()),
            ));
        }
    }
    if a.path_only() != b.path_only() {
        differences.push(scalar(
            "path",
            Value::from(a.path_only()),
            Value::from(b.path_only()),
        ));
    }
    query(a.query(), b.query(), &mut differences);
    let ignored = &rules.ignored_request_headers;
    fields(&a.headers, &b.headers, "header", ignored, &mut differences);
    fields(
        &a.trailers,
        &b.trailers,
        "trailer",
        ignored,
        &mut differences,
    );
    let typed = rules
        .schema
        .as_ref()
        .and_then(|schema| schema.request_type(a.path_only()));
    let (ignore, unordered) = rules.paths_for(recorded);
    let x = messages(recorded, Direction::Request, typed.as_ref());
    let y = messages(made, Direction::Request, typed.as_ref());
    if x.is_empty() && y.is_empty() {
        body(a.into(), b.into(), &ignore, &unordered, &mut differences);
    } else {
        let wrap = |v: Vec<Value>| serde_json::json!({ "messages": v });
        differences.extend(diff_with(&wrap(x), &wrap(y), &ignore, &unordered));
    }
    differences
}

/// Query parameters by name (case-sensitive, values in order, as sent:
/// not decoded).
fn query(a: Option<&str>, b: Option<&str>, out: &mut Vec<Difference>) {
    let params = |q: Option<&'_ str>| -> Vec<(String, String)> {
        q.unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (name, value) = p.split_once('=').unwrap_or((p, ""));
                (name.to_string(), value.to_string())
            })
            .collect()
    };
    let (x, y) = (params(a), params(b));
    if x == y {
        return;
    }
    let names: BTreeSet<&str> = x.iter().chain(&y).map(|(n, _)| n.as_str()).collect();
    for name in names {
        let values = |params: &[(String, String)]| -> Vec<String> {
            params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let (p, q) = (values(&x), values(&y));
        if p != q {
            out.push(listed(format!("query:{name}"), p, q));
        }
    }
}

/// A difference between two lists of values of one field: changed, or
/// added or removed when one side has none.
fn listed(path: String, x: Vec<String>, y: Vec<String>) -> Difference {
    let as_value = |v: Vec<String>| match v.len() {
        0 => None,
        1 => v.into_iter().next().map(Value::String),
        _ => Some(Value::from(v)),
    };
    let kind = match (x.is_empty(), y.is_empty()) {
        (true, _) => ChangeKind::Added,
        (_, true) => ChangeKind::Removed,
        _ => ChangeKind::Changed,
    };
    Difference {
        pattern: path.clone(),
        path,
        kind,
        recorded: as_value(x),
        replayed: as_value(y),
        detail: None,
    }
}

fn scalar(path: &str, recorded: Value, replayed: Value) -> Difference {
    Difference {
        path: path.to_string(),
        pattern: path.to_string(),
        kind: ChangeKind::Changed,
        recorded: Some(recorded),
        replayed: Some(replayed),
        detail: None,
    }
}

fn headers(a: &Response, b: &Response, rules: &Rules, out: &mut Vec<Difference>) {
    let ignored = &rules.ignored_headers;
    fields(&a.headers, &b.headers, "header", ignored, out);
    // grpc-status is compared as the gRPC status; the rest of the
    // trailers (grpc-message among them) as fields.
    fields(&a.trailers, &b.trailers, "trailer", ignored, out);
}

/// Header or trailer fields, by name (values in order), minus the
/// ignored ones.
fn fields(
    a: &[reprise_model::Header],
    b: &[reprise_model::Header],
    kind_of: &str,
    ignored: &BTreeSet<String>,
    out: &mut Vec<Difference>,
) {
    let names: BTreeSet<String> = a
        .iter()
        .chain(b)
        .map(|h| h.name.to_ascii_lowercase())
        .filter(|n| !ignored.contains(n) && n != "grpc-status")
        .collect();
    for name in names {
        let values = |fields: &[reprise_model::Header]| -> Vec<String> {
            fields
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(&name))
                .map(|h| String::from_utf8_lossy(&h.value).into_owned())
                .collect()
        };
        let (x, y) = (values(a), values(b));
        if x != y {
            out.push(listed(format!("{kind_of}:{name}"), x, y));
        }
    }
}

/// A body as compared, with the head that says how to read it: a
/// response's, or a downstream call's request.
#[derive(Clone, Copy)]
struct Payload<'a> {
    headers: &'a [Header],
    body: &'a [u8],
    decoded: bool,
    truncated: bool,
    size: u64,
}

impl<'a> From<&'a Response> for Payload<'a> {
    fn from(r: &'a Response) -> Self {
        Payload {
            headers: &r.headers,
            body: &r.body,
            decoded: r.body_decoded,
            truncated: r.body_truncated,
            size: r.size(),
        }
    }
}

impl<'a> From<&'a Request> for Payload<'a> {
    fn from(r: &'a Request) -> Self {
        Payload {
            headers: &r.headers,
            body: &r.body,
            decoded: r.body_decoded,
            truncated: r.body_truncated,
            size: r.size(),
        }
    }
}

fn is_json(payload: Payload<'_>) -> bool {
    payload.headers.header_str("content-type").is_some_and(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t == "application/json" || t.ends_with("+json")
    })
}

/// The body as the service meant it: Content-Encoding (gzip, deflate,
/// br, zstd, stacked) removed by the one decoder, unless the recorder
/// already stored it decoded. A body that does not decode (or inflates
/// past the bound) is compared as it is.
fn decoded(payload: Payload<'_>) -> Cow<'_, [u8]> {
    let raw = payload.body;
    if payload.decoded || raw.is_empty() {
        return Cow::Borrowed(raw);
    }
    let Some(encoding) = payload.headers.header_str("content-encoding") else {
        return Cow::Borrowed(raw);
    };
    match reprise_model::coding::decode(
        encoding,
        raw,
        reprise_model::coding::MAX_DECODED,
        payload.truncated,
    ) {
        Ok(Some(plain)) => Cow::Owned(plain),
        Ok(None) | Err(_) => Cow::Borrowed(raw),
    }
}

fn body(
    a: Payload<'_>,
    b: Payload<'_>,
    ignore: &[JsonPath],
    unordered: &[JsonPath],
    out: &mut Vec<Difference>,
) {
    if a.truncated || b.truncated {
        // A body cut at the size cap is compared by size only: its first
        // bytes would give differences that are not there.
        if a.size != b.size {
            out.push(scalar(
                "body:size",
                Value::from(a.size),
                Value::from(b.size),
            ));
        }
        return;
    }
    let (body_a, body_b) = (decoded(a), decoded(b));
    if body_a == body_b {
        return;
    }
    if is_json(a) || is_json(b) {
        match (
            serde_json::from_slice::<Value>(&body_a),
            serde_json::from_slice::<Value>(&body_b),
        ) {
            (Ok(x), Ok(y)) => {
                out.extend(diff_with(&x, &y, ignore, unordered));
                return;
            }
            (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
                out.push(scalar(
                    "body",
                    Value::from(describe(&body_a)),
                    Value::from(describe(&body_b)),
                ));
                return;
            }
            (Err(_), Err(_)) => {}
        }
    }
    match (std::str::from_utf8(&body_a), std::str::from_utf8(&body_b)) {
        (Ok(x), Ok(y)) => {
            let line = x
                .lines()
                .zip(y.lines())
                .position(|(p, q)| p != q)
                .unwrap_or_else(|| x.lines().count().min(y.lines().count()));
            let at = |text: &str| text.lines().nth(line).unwrap_or("").to_string();
            let path = format!("body:line {}", line + 1);
            out.push(Difference {
                path,
                pattern: "body:text".to_string(),
                kind: ChangeKind::Changed,
                recorded: Some(Value::from(at(x))),
                replayed: Some(Value::from(at(y))),
                detail: Some(unified(x, y)),
            });
        }
        _ => out.push(scalar(
            "body",
            Value::from(describe(&body_a)),
            Value::from(describe(&body_b)),
        )),
    }
}

/// A gRPC message as a JSON value keyed by field number (repeated fields
/// become arrays); a message that is compressed or not protobuf is its
/// length and digest.
fn message_value(data: &[u8], compressed: bool) -> Value {
    if compressed {
        return Value::from(format!("compressed: {}", describe(data)));
    }
    match reprise_model::wire::decode_raw(data) {
        Ok(fields) => fields_value(&fields),
        Err(_) => Value::from(describe(data)),
    }
}

fn fields_value(fields: &[RawField]) -> Value {
    let mut map = serde_json::Map::new();
    for field in fields {
        let value = match &field.value {
            RawValue::Varint(v) | RawValue::Fixed64(v) => Value::from(*v),
            RawValue::Fixed32(v) => Value::from(*v),
            RawValue::Message(inner) | RawValue::Group(inner) => fields_value(inner),
            RawValue::Text(text) => Value::from(text.as_str()),
            RawValue::Bytes(bytes) => Value::from(describe(bytes)),
        };
        match map.get_mut(&field.number.to_string()) {
            Some(Value::Array(items)) => items.push(value),
            Some(first) => {
                let first = first.take();
                map.insert(field.number.to_string(), Value::from(vec![first, value]));
            }
            None => {
                map.insert(field.number.to_string(), value);
            }
        }
    }
    Value::Object(map)
}

/// Most lines of a unified diff kept in a report.
const MAX_DIFF_LINES: usize = 200;

/// A unified diff of two texts (two lines of context), cut at
/// [`MAX_DIFF_LINES`].
fn unified(recorded: &str, replayed: &str) -> String {
    let diff = similar::TextDiff::from_lines(recorded, replayed);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header("recorded", "replayed")
        .to_string();
    let mut lines = text.lines();
    let mut out: Vec<&str> = lines.by_ref().take(MAX_DIFF_LINES).collect();
    if lines.next().is_some() {
        out.push("... (cut)");
    }
    out.join("\n")
}

/// A body summarised: its length and a digest.
fn describe(body: &[u8]) -> String {
    // FNV-1a: a stable digest that needs no dependency; it only has to
    // tell two bodies apart in a report.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{} bytes, fnv {hash:016x}", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_model::Header;

    fn response(status: u32, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(n, v)| Header::new(*n, v)).collect(),
            body: body.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn exchange(response: Response) -> Exchange {
        Exchange {
            response: Some(response),
            ..Default::default()
        }
    }

    #[test]
    fn json_bodies_by_path_headers_and_status() {
        let json = [("content-type", "application/json"), ("date", "x")];
        let a = exchange(response(200, &json, r#"{"a":1,"b":[1,2]}"#));
        let b = exchange(response(
            201,
            &[
                ("content-type", "application/json"),
                ("date", "y"),
                ("x-new", "1"),
            ],
            r#"{"a":1,"b":[1,3]}"#,
        ));
        let Verdict::Regressed(d) = compare(&a, &b, &Rules::default()) else {
            panic!("expected differences");
        };
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["status", "header:x-new", "$.b[1]"]);
        assert_eq!(compare(&a, &a, &Rules::default()), Verdict::Identical);
    }

    #[test]
    fn text_by_line_and_bytes_by_digest() {
        let a = exchange(response(200, &[], "one\ntwo\nthree"));
        let b = exchange(response(200, &[], "one\n2\nthree"));
        let Verdict::Regressed(d) = compare(&a, &b, &Rules::default()) else {
            panic!("expected differences");
        };
        assert_eq!(d[0].path, "body:line 2");
        assert_eq!(d[0].recorded, Some(Value::from("two")));
        let detail = d[0].detail.as_deref().unwrap();
        assert!(
            detail.contains("--- recorded") && detail.contains("-two\n+2"),
            "{detail}"
        );
        let mut x = response(200, &[], "");
        x.body = vec![0xff, 0x00].into();
        let mut y = x.clone();
        y.body = vec![0xff, 0x01].into();
        let Verdict::Regressed(d) = compare(&exchange(x), &exchange(y), &Rules::default()) else {
            panic!("expected differences");
        };
        assert_eq!(d[0].path, "body");
    }

    #[test]
    fn failures_are_not_compared_never_identical() {
        let a = exchange(response(200, &[], "x"));
        let failed = Exchange::default();
        assert_eq!(
            compare(&a, &failed, &Rules::default()),
            Verdict::NotCompared(NotCompared::ReplayFailed)
        );
        assert_eq!(
            compare(&failed, &a, &Rules::default()),
            Verdict::NotCompared(NotCompared::RecordingFailed)
        );
    }

    #[test]
    fn grpc_messages_by_field_number() {
        use reprise_model::{GrpcStatus, StreamMessage};
        // Field 1 (text) "HELLO", field 2 (varint) 7; then 8.
        let message = |n: u8| StreamMessage {
            direction: Direction::Response as i32,
            data: vec![0x0a, 5, b'H', b'E', b'L', b'L', b'O', 0x10, n].into(),
            ..Default::default()
        };
        let grpc = |n: u8| {
            let mut r = response(200, &[("content-type", "application/grpc")], "");
            r.grpc = Some(GrpcStatus::default());
            Exchange {
                response: Some(r),
                messages: vec![message(n)],
                ..Default::default()
            }
        };
        assert_eq!(
            compare(&grpc(7), &grpc(7), &Rules::default()),
            Verdict::Identical
        );
        let Verdict::Regressed(d) = compare(&grpc(7), &grpc(8), &Rules::default()) else {
            panic!("a changed field must be a regression");
        };
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, r#"$.messages[0]["2"]"#);
        assert_eq!(
            (d[0].recorded.clone(), d[0].replayed.clone()),
            (Some(Value::from(7)), Some(Value::from(8)))
        );
        let mut fewer = grpc(7);
        fewer.messages.clear();
        let Verdict::Regressed(d) = compare(&grpc(7), &fewer, &Rules::default()) else {
            panic!("a missing message must be a regression");
        };
        assert_eq!(d[0].path, "$.messages[0]");
    }

    #[test]
    fn compressed_bodies_are_compared_decoded() {
        use std::io::Write;
        let gzip = |text: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let headers = [
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ];
        let mut a = response(200, &headers, "");
        a.body = gzip(r#"{"price":10,"name":"tea"}"#).into();
        let mut b = response(200, &headers, "");
        b.body = gzip(r#"{"name":"tea","price":12}"#).into();
        let Verdict::Regressed(d) = compare(&exchange(a.clone()), &exchange(b), &Rules::default())
        else {
            panic!("expected a difference");
        };
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "$.price");
        // zstd on one side, stored decoded on the other (a HAR import):
        // the same JSON.
        let mut z = response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            "",
        );
        z.body = zstd::encode_all(&br#"{"price":10,"name":"tea"}"#[..], 1)
            .unwrap()
            .into();
        let mut plain = response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            r#"{"price":10,"name":"tea"}"#,
        );
        plain.body_decoded = true;
        assert_eq!(
            compare(&exchange(z), &exchange(plain), &Rules::default()),
            Verdict::Identical
        );
        // Garbage that claims gzip is compared as sent.
        let mut bad = response(200, &headers, "not gzip");
        let bad2 = bad.clone();
        assert_eq!(
            compare(&exchange(bad.clone()), &exchange(bad2), &Rules::default()),
            Verdict::Identical
        );
        bad.body = b"not gzip either".to_vec().into();
        assert!(matches!(
            compare(&exchange(a), &exchange(bad), &Rules::default()),
            Verdict::Regressed(_)
        ));
    }

    #[test]
    fn raw_deflate_and_stacked_bodies_are_compared_decoded() {
        use std::io::Write;
        let text = r#"{"price":10,"name":"tea"}"#;
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(text.as_bytes()).unwrap();
        let raw = raw.finish().unwrap();
        let mut a = response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "deflate"),
            ],
            "",
        );
        a.body = raw.into();
        let mut plain = response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "deflate"),
            ],
            text,
        );
        plain.body_decoded = true;
        assert_eq!(
            compare(&exchange(a), &exchange(plain.clone()), &Rules::default()),
            Verdict::Identical,
            "raw deflate (no zlib header) is decoded"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let mut br = Vec::new();
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        w.write_all(&gz.finish().unwrap()).unwrap();
        drop(w);
        let mut stacked = response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip, br"),
            ],
            "",
        );
        stacked.body = br.into();
        let mut plain_stacked = plain;
        plain_stacked.headers[1] = Header::new("content-encoding", "gzip, br");
        assert_eq!(
            compare(
                &exchange(stacked),
                &exchange(plain_stacked),
                &Rules::default()
            ),
            Verdict::Identical,
            "gzip then br comes off br first"
        );
    }

    #[test]
    fn trailers_are_compared_too() {
        let mut a = response(200, &[], "");
        a.trailers = vec![
            Header::new("grpc-status", "0"),
            Header::new("x-checksum", "1"),
        ];
        let mut b = a.clone();
        b.trailers = vec![
            Header::new("grpc-status", "0"),
            Header::new("x-checksum", "2"),
        ];
        let Verdict::Regressed(d) = compare(&exchange(a.clone()), &exchange(b), &Rules::default())
        else {
            panic!("a changed trailer is a difference");
        };
        assert_eq!(d[0].path, "trailer:x-checksum");
        assert_eq!(
            compare(&exchange(a.clone()), &exchange(a), &Rules::default()),
            Verdict::Identical
        );
    }
}
