//! A database call as JSON, every field the model holds: `show --json`
//! puts it under `db`. Bytes are text when they are UTF-8, otherwise
//! base64 with a `*_encoding: "base64"` marker, as elsewhere; a SQL value
//! is `null` for NULL, a string for UTF-8 text, or `{"base64": ...}`.

use base64::Engine;
use reprise_model::{
    DbCall, RedisCommand, RespKind, RespValue, SqlError, SqlStartup, SqlStatement, SqlValue,
};
use serde_json::{Map, Value, json};

use crate::json::{headers, put_bytes};

/// `call` as one JSON object.
pub(crate) fn db_call(call: &DbCall) -> Value {
    let mut object = Map::new();
    object.insert(
        "statements".into(),
        Value::Array(call.statements.iter().map(statement).collect()),
    );
    if let Some(redis) = &call.redis {
        object.insert("redis".into(), redis_command(redis));
    }
    object.insert("transaction_status".into(), json!(call.transaction_status));
    object.insert(
        "notices".into(),
        Value::Array(call.notices.iter().map(error).collect()),
    );
    object.insert("not_mockable".into(), json!(call.not_mockable));
    object.insert("write".into(), json!(call.write));
    if let Some(s) = &call.startup {
        object.insert("startup".into(), startup(s));
    }
    object.insert("resp_version".into(), json!(call.resp_version));
    Value::Object(object)
}

fn startup(s: &SqlStartup) -> Value {
    json!({
        "protocol_version": s.protocol_version,
        "parameters": headers(&s.parameters),
        "tls": s.tls,
        "authentication": s.authentication,
        "server_parameters": headers(&s.server_parameters),
        "backend_pid": s.backend_pid,
        "error": s.error.as_ref().map(error),
    })
}

fn statement(s: &SqlStatement) -> Value {
    json!({
        "sql": s.sql,
        "verb": super::sql::verb(&s.sql),
        "statement_name": s.statement_name,
        "portal": s.portal,
        "param_types": s.param_types,
        "params": s.params.iter().map(value).collect::<Vec<_>>(),
        "columns": s.columns.iter().map(|c| json!({
            "name": c.name, "table_oid": c.table_oid, "column_number": c.column_number,
            "type_oid": c.type_oid, "type_size": c.type_size, "type_modifier": c.type_modifier,
            "binary": c.binary,
        })).collect::<Vec<_>>(),
        "rows": s.rows.iter().map(|r| r.values.iter().map(value).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "command_tag": s.command_tag,
        "error": s.error.as_ref().map(error),
        "extended": s.extended,
        "max_rows": s.max_rows,
        "suspended": s.suspended,
        "rows_size": s.rows_size,
        "rows_truncated": s.rows_truncated,
        "empty": s.empty,
        "copy": s.copy,
        "described_param_types": s.described_param_types,
        "described": s.described,
    })
}

/// `null`, the text, or `{"base64": ...}`; binary-format values say so.
fn value(v: &SqlValue) -> Value {
    if v.null {
        return Value::Null;
    }
    match (v.binary, std::str::from_utf8(&v.data)) {
        (false, Ok(text)) => json!(text),
        (binary, _) => json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(&v.data),
            "binary": binary,
        }),
    }
}

fn error(e: &SqlError) -> Value {
    json!({
        "severity": e.severity,
        "code": e.code,
        "message": e.message,
        "fields": e.fields.iter().map(|f| json!({
            "kind": char::from_u32(f.kind).map(String::from).unwrap_or_default(),
            "value": f.value,
        })).collect::<Vec<_>>(),
    })
}

fn redis_command(r: &RedisCommand) -> Value {
    let args = r
        .args
        .iter()
        .map(|a| {
            let mut o = Map::new();
            put_bytes(&mut o, "value", a);
            Value::Object(o)
        })
        .collect::<Vec<_>>();
    json!({
        "command": super::resp::command_name(&r.args),
        "args": args,
        "reply": r.reply.as_ref().map(resp_value),
        "reply_size": r.reply_size,
        "reply_truncated": r.reply_truncated,
    })
}

fn resp_value(v: &RespValue) -> Value {
    let mut o = Map::new();
    o.insert("kind".into(), json!(kind_name(v.kind)));
    if !v.data.is_empty() {
        put_bytes(&mut o, "data", &v.data);
    }
    if !v.items.is_empty() {
        o.insert(
            "items".into(),
            Value::Array(v.items.iter().map(resp_value).collect()),
        );
    }
    if let Some(a) = &v.attributes {
        o.insert("attributes".into(), resp_value(a));
    }
    Value::Object(o)
}

fn kind_name(kind: i32) -> &'static str {
    match RespKind::try_from(kind).unwrap_or(RespKind::Unspecified) {
        RespKind::Unspecified => "unknown",
        RespKind::SimpleString => "simple_string",
        RespKind::Error => "error",
        RespKind::Integer => "integer",
        RespKind::BulkString => "bulk_string",
        RespKind::Null => "null",
        RespKind::Array => "array",
        RespKind::NullArray => "null_array",
        RespKind::Double => "double",
        RespKind::Boolean => "boolean",
        RespKind::BlobError => "blob_error",
        RespKind::VerbatimString => "verbatim_string",
        RespKind::BigNumber => "big_number",
        RespKind::Map => "map",
        RespKind::Set => "set",
        RespKind::Push => "push",
    }
}
