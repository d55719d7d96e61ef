//! Exchanges as JSON objects, for `--json` output and for the reports of
//! later stages. Byte fields are text when they are valid UTF-8, otherwise
//! base64 with an `_encoding: "base64"` marker next to them.

use base64::Engine;
use reprise_model::{Exchange, Header, display_id, time::format_ns_micros};
use serde_json::{Map, Value, json};

/// Puts `bytes` under `key`, as text or base64 (with `{key}_encoding`).
pub(crate) fn put_bytes(object: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            object.insert(key.to_string(), json!(text));
        }
        Err(_) => {
            object.insert(
                key.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
            object.insert(format!("{key}_encoding"), json!("base64"));
        }
    }
}

/// Headers as `[{"name": ..., "value": ...}]`, in order.
pub fn headers(list: &[Header]) -> Value {
    Value::Array(
        list.iter()
            .map(|h| {
                let mut object = Map::new();
                object.insert("name".into(), json!(h.name));
                put_bytes(&mut object, "value", &h.value);
                Value::Object(object)
            })
            .collect(),
    )
}

fn id_or_null(id: &[u8]) -> Value {
    if id.is_empty() {
        Value::Null
    } else {
        json!(display_id(id))
    }
}

/// The short facts of an exchange: what `ls --json` prints per line.
///
/// A database or cache call has no request: its `method`, `path` and
/// `authority` are what `ls` shows (the SQL verb or Redis command, the
/// statement or command, the listener), and `db_status` its status
/// column.
pub fn summary(exchange: &Exchange) -> Value {
    let request = exchange.request.as_ref();
    let response = exchange.response.as_ref();
    if let Some(head) = crate::db::head(exchange) {
        return json!({
            "id": display_id(&exchange.id),
            "parent_id": id_or_null(&exchange.parent_id),
            "recorded_at": format_ns_micros(exchange.recorded_at_ns),
            "recorded_at_ns": exchange.recorded_at_ns,
            "duration_ns": exchange.duration_ns,
            "protocol": exchange.protocol_label(),
            "role": role(exchange),
            "method": head.method,
            "scheme": null,
            "authority": head.authority,
            "path": head.path,
            "status": null,
            "grpc_status": null,
            "db_status": head.status,
            "error": exchange.error.as_ref().map(|e| json!({"kind": error_kind(e.kind()), "message": e.message})),
            "request_bytes": head.request_bytes,
            "response_bytes": head.response_bytes,
            "truncated": head.truncated,
            "redacted": exchange.flags.as_ref().is_some_and(|f| f.redacted),
        });
    }
    json!({
        "id": display_id(&exchange.id),
        "parent_id": id_or_null(&exchange.parent_id),
        "recorded_at": format_ns_micros(exchange.recorded_at_ns),
        "recorded_at_ns": exchange.recorded_at_ns,
        "duration_ns": exchange.duration_ns,
        "protocol": exchange.protocol_label(),
        "role": role(exchange),
        "method": request.map(|r| r.method.as_str()),
        "scheme": request.map(|r| r.scheme.as_str()),
        "authority": request.map(|r| r.authority.as_str()),
        "path": request.map(|r| r.path.as_str()),
        "status": response.map(|r| r.status),
        "grpc_status": response.and_then(|r| r.grpc.as_ref()).map(|g| g.code),
        "error": exchange.error.as_ref().map(|e| json!({"kind": error_kind(e.kind()), "message": e.message})),
        "request_bytes": request.map_or(0, |r| r.size()),
        "response_bytes": response.map_or(0, |r| r.size()),
        "truncated": request.is_some_and(|r| r.body_truncated) || response.is_some_and(|r| r.body_truncated),
        "redacted": exchange.flags.as_ref().is_some_and(|f| f.redacted),
    })
}

fn role(exchange: &Exchange) -> &'static str {
    if exchange.is_downstream() {
        "downstream"
    } else {
        "inbound"
    }
}

/// Lower-case name of a transport error kind.
pub fn error_kind(kind: reprise_model::ErrorKind) -> &'static str {
    use reprise_model::ErrorKind as K;
    match kind {
        K::Unspecified | K::Other => "other",
        K::Connect => "connect",
        K::Timeout => "timeout",
        K::Reset => "reset",
        K::Tls => "tls",
        K::Protocol => "protocol",
        K::Cancelled => "cancelled",
    }
}

/// The whole exchange, every field the model holds.
pub fn exchange(exchange: &Exchange) -> Value {
    let mut object = match summary(exchange) {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert("trace_id".into(), id_or_null(&exchange.trace_id));
    if let Some(source) = &exchange.source {
        object.insert(
            "source".into(),
            json!({
                "service": source.service, "instance": source.instance, "listener": source.listener,
                "recorder": source.recorder, "client_addr": source.client_addr, "server_addr": source.server_addr,
                "connection": source.connection, "route": source.route,
            }),
        );
    }
    if let Some((kind, order)) = exchange.link_kind() {
        object.insert(
            "link".into(),
            json!({ "kind": kind.label(), "order": order }),
        );
    }
    if let Some(request) = &exchange.request {
        let mut r = Map::new();
        r.insert("method".into(), json!(request.method));
        r.insert("scheme".into(), json!(request.scheme));
        r.insert("authority".into(), json!(request.authority));
        r.insert("path".into(), json!(request.path));
        r.insert("headers".into(), headers(&request.headers));
        put_bytes(&mut r, "body", &request.body);
        r.insert("body_size".into(), json!(request.size()));
        r.insert("body_truncated".into(), json!(request.body_truncated));
        r.insert("body_decoded".into(), json!(request.body_decoded));
        r.insert("trailers".into(), headers(&request.trailers));
        object.insert("request".into(), Value::Object(r));
    }
    if let Some(response) = &exchange.response {
        let mut r = Map::new();
        r.insert("status".into(), json!(response.status));
        r.insert("reason".into(), json!(response.reason));
        r.insert("headers".into(), headers(&response.headers));
        put_bytes(&mut r, "body", &response.body);
        r.insert("body_size".into(), json!(response.size()));
        r.insert("body_truncated".into(), json!(response.body_truncated));
        r.insert("body_decoded".into(), json!(response.body_decoded));
        r.insert("trailers".into(), headers(&response.trailers));
        if let Some(grpc) = &response.grpc {
            let mut g = Map::new();
            g.insert("code".into(), json!(grpc.code));
            g.insert("message".into(), json!(grpc.message));
            put_bytes(&mut g, "details", &grpc.details);
            r.insert("grpc".into(), Value::Object(g));
        }
        object.insert("response".into(), Value::Object(r));
    }
    if !exchange.messages.is_empty() {
        let messages = exchange
            .messages
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("direction".into(), json!(direction(m.direction())));
                o.insert("offset_ns".into(), json!(m.offset_ns));
                put_bytes(&mut o, "data", &m.data);
                o.insert("compressed".into(), json!(m.compressed));
                o.insert("size".into(), json!(m.size.max(m.data.len() as u64)));
                o.insert("truncated".into(), json!(m.truncated));
                Value::Object(o)
            })
            .collect();
        object.insert("messages".into(), Value::Array(messages));
    }
    if let Some(flags) = &exchange.flags {
        object.insert(
            "flags".into(),
            json!({"redacted": flags.redacted, "redactions": flags.redactions, "upgraded": flags.upgraded,
                   "cancelled": flags.cancelled, "sample_rate": flags.sample_rate}),
        );
    }
    if let Some(t) = &exchange.timings {
        object.insert(
            "timings".into(),
            json!({"blocked_ns": t.blocked_ns, "dns_ns": t.dns_ns, "connect_ns": t.connect_ns, "tls_ns": t.tls_ns,
                   "send_ns": t.send_ns, "wait_ns": t.wait_ns, "receive_ns": t.receive_ns}),
        );
    }
    if let Some(replay) = &exchange.replay {
        object.insert(
            "replay".into(),
            json!({"recorded_id": display_id(&replay.recorded_id), "scheduled_at_ns": replay.scheduled_at_ns,
                   "sent_at_ns": replay.sent_at_ns, "target": replay.target}),
        );
    }
    if !exchange.comment.is_empty() {
        object.insert("comment".into(), json!(exchange.comment));
    }
    if let Some(db) = &exchange.db {
        object.insert("db".into(), crate::db::json::db_call(db));
    }
    Value::Object(object)
}

/// Lower-case name of a message direction.
pub fn direction(direction: reprise_model::Direction) -> &'static str {
    match direction {
        reprise_model::Direction::Request => "request",
        reprise_model::Direction::Response => "response",
        reprise_model::Direction::Unspecified => "unknown",
    }
}
