//! `show` of a database or cache call: the statements with their SQL laid
//! out, parameters, result table, tag and error; the start-up; the Redis
//! command and its reply as `redis-cli` prints it. Lines the client sent
//! start with `>`, the server's with `<`, as for HTTP.

use reprise_model::table::{Column, Table};
use reprise_model::terminal::{escape, escape_lines};
use reprise_model::{DbCall, RedisCommand, SqlError, SqlStartup, SqlStatement, SqlValue};

use super::{cut, resp, sql};
use crate::format::human_size;

/// How much of a call to show.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Rows of a result, and elements of a Redis collection (0: all).
    pub rows: usize,
    /// Bytes of one value, parameter or argument (0: all).
    pub value_bytes: usize,
}

/// Widest a result column is shown; longer values are shortened in the
/// middle by the table.
const MAX_COLUMN: usize = 40;

/// Appends the text form of `call` to `out`.
pub(crate) fn render(call: &DbCall, limits: Limits, out: &mut String) {
    let mut facts = Vec::new();
    if call.write {
        facts.push("write".to_string());
    }
    if !call.not_mockable.is_empty() {
        facts.push(format!("not mockable ({})", escape(&call.not_mockable)));
    }
    if call.statements.iter().any(|s| s.rows_truncated) {
        facts.push("rows truncated".to_string());
    }
    if call.redis.as_ref().is_some_and(|r| r.reply_truncated) {
        facts.push("reply truncated".to_string());
    }
    if !call.transaction_status.is_empty() {
        facts.push(format!(
            "transaction {}",
            transaction(&call.transaction_status)
        ));
    }
    if call.resp_version != 0 {
        facts.push(format!("RESP{}", call.resp_version));
    }
    if !facts.is_empty() {
        out.push_str(&format!("  db        {}\n", facts.join(", ")));
    }
    if let Some(startup) = &call.startup {
        render_startup(startup, out);
    }
    for statement in &call.statements {
        render_statement(statement, limits, out);
    }
    for notice in &call.notices {
        render_error("<", notice, out);
    }
    if let Some(redis) = &call.redis {
        render_redis(redis, limits, out);
    }
}

/// `I`, `T`, `E` in words.
fn transaction(status: &str) -> String {
    match status {
        "I" => "idle".to_string(),
        "T" => "in a transaction block".to_string(),
        "E" => "in a failed transaction block".to_string(),
        other => escape(other).into_owned(),
    }
}

fn render_startup(startup: &SqlStartup, out: &mut String) {
    let major = startup.protocol_version >> 16;
    let minor = startup.protocol_version & 0xffff;
    out.push_str(&format!(
        "\n> startup, protocol {major}.{minor}{}\n",
        if startup.tls { ", TLS" } else { "" }
    ));
    for p in &startup.parameters {
        out.push_str(&format!(
            ">   {} = {}\n",
            escape(&p.name),
            escape(&String::from_utf8_lossy(&p.value))
        ));
    }
    let mut answer = Vec::new();
    if !startup.authentication.is_empty() {
        answer.push(format!(
            "authentication {}",
            escape(&startup.authentication)
        ));
    }
    if startup.backend_pid != 0 {
        answer.push(format!("backend pid {}", startup.backend_pid));
    }
    if !answer.is_empty() {
        out.push_str(&format!("< {}\n", answer.join(", ")));
    }
    for p in &startup.server_parameters {
        out.push_str(&format!(
            "<   {} = {}\n",
            escape(&p.name),
            escape(&String::from_utf8_lossy(&p.value))
        ));
    }
    if let Some(error) = &startup.error {
        render_error("<", error, out);
    }
}

fn render_statement(statement: &SqlStatement, limits: Limits, out: &mut String) {
    let mut how = Vec::new();
    if statement.extended {
        how.push("extended".to_string());
    }
    if !statement.statement_name.is_empty() {
        how.push(format!("statement {}", escape(&statement.statement_name)));
    }
    if !statement.portal.is_empty() {
        how.push(format!("portal {}", escape(&statement.portal)));
    }
    if statement.max_rows != 0 {
        how.push(format!("max rows {}", statement.max_rows));
    }
    if statement.copy {
        how.push("COPY data passed through, not kept".to_string());
    }
    if statement.described {
        how.push("described".to_string());
    }
    out.push('\n');
    if !how.is_empty() {
        out.push_str(&format!("> ({})\n", how.join(", ")));
    }
    if statement.empty || statement.sql.trim().is_empty() {
        out.push_str("> (empty query)\n");
    } else {
        let text = sql::pretty(&clip(&statement.sql, limits.value_bytes));
        for line in escape_lines(&text).lines() {
            out.push_str(&format!("> {line}\n"));
        }
    }
    for (i, param) in statement.params.iter().enumerate() {
        let oid = statement
            .param_types
            .get(i)
            .filter(|&&oid| oid != 0)
            .map(|oid| format!(" (type {oid})"))
            .unwrap_or_default();
        out.push_str(&format!(
            ">   ${} = {}{oid}\n",
            i + 1,
            parameter(param, limits.value_bytes)
        ));
    }
    if !statement.columns.is_empty() {
        out.push_str("<\n");
        out.push_str(&rows(statement, limits));
    }
    if !statement.command_tag.is_empty() {
        out.push_str(&format!("< {}\n", escape(&statement.command_tag)));
    }
    if statement.suspended {
        out.push_str("< (portal suspended at the row limit)\n");
    }
    if let Some(error) = &statement.error {
        render_error("<", error, out);
    }
}

/// A result as a table of its column names and (at most `limits.rows`)
/// rows, every line starting with `<`.
fn rows(statement: &SqlStatement, limits: Limits) -> String {
    let columns = statement
        .columns
        .iter()
        .map(|c| {
            Column::left(&cut(&escape(&c.name), MAX_COLUMN))
                .max_width(MAX_COLUMN)
                .gap(2)
        })
        .collect();
    let mut table = Table::new(columns);
    let total = statement.rows.len();
    let shown = if limits.rows == 0 {
        total
    } else {
        total.min(limits.rows)
    };
    for row in statement.rows.iter().take(shown) {
        table.row(row.values.iter().map(|v| cell(v, limits.value_bytes)));
    }
    let mut out: String = table
        .to_string()
        .lines()
        .map(|line| format!("< {line}\n"))
        .collect();
    if total > shown {
        out.push_str(&format!("< … {} more rows\n", total - shown));
    }
    if statement.rows_truncated {
        out.push_str(&format!(
            "< (rows cut at the size cap: {} recorded of {})\n",
            total,
            human_size(statement.rows_size)
        ));
    }
    out
}

/// A parameter: `'text'` (quotes doubled, controls escaped), `NULL`, or
/// `\x0102` for a binary value or text that is not UTF-8.
fn parameter(value: &SqlValue, max: usize) -> String {
    if value.null {
        return "NULL".to_string();
    }
    match (value.binary, std::str::from_utf8(&value.data)) {
        (false, Ok(text)) => {
            let text = clip(text, max);
            format!("'{}'", escape(&text.replace('\'', "''")))
        }
        _ => hex(&value.data, max),
    }
}

/// A result cell: the text as is (the table escapes it), `NULL`, or hex.
fn cell(value: &SqlValue, max: usize) -> String {
    if value.null {
        return "NULL".to_string();
    }
    match (value.binary, std::str::from_utf8(&value.data)) {
        (false, Ok(text)) => clip(text, max).into_owned(),
        _ => hex(&value.data, max),
    }
}

/// `\x` and the bytes in hex, as PostgreSQL writes a bytea.
fn hex(bytes: &[u8], max: usize) -> String {
    let shown = if max == 0 {
        bytes
    } else {
        bytes.get(..max.min(bytes.len())).unwrap_or(bytes)
    };
    let mut out = String::with_capacity(2 + shown.len() * 2);
    out.push_str("\\x");
    for b in shown {
        out.push_str(&format!("{b:02x}"));
    }
    if shown.len() < bytes.len() {
        out.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    out
}

/// `text` cut to about `max` bytes (0: whole) on a character boundary.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if max == 0 || text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} of {})",
        text.get(..end).unwrap_or_default(),
        human_size(end as u64),
        human_size(text.len() as u64)
    )
    .into()
}

/// An ErrorResponse or NoticeResponse: `< ERROR 42P01: message`, then
/// its detail, hint, position, where and constraint fields.
fn render_error(arrow: &str, error: &SqlError, out: &mut String) {
    out.push_str(&format!(
        "{arrow} {} {}: {}\n",
        escape(&error.severity),
        escape(&error.code),
        escape(&error.message)
    ));
    for field in &error.fields {
        let name = match char::from_u32(field.kind).unwrap_or('?') {
            'D' => "detail",
            'H' => "hint",
            'P' => "position",
            'W' => "where",
            's' => "schema",
            't' => "table",
            'c' => "column",
            'n' => "constraint",
            _ => continue,
        };
        out.push_str(&format!("{arrow}   {name:<10} {}\n", escape(&field.value)));
    }
}

fn render_redis(redis: &RedisCommand, limits: Limits, out: &mut String) {
    let mut command = vec![escape(&resp::command_name(&redis.args)).into_owned()];
    for arg in redis.args.iter().skip(1) {
        let shown = if limits.value_bytes != 0 && arg.len() > limits.value_bytes {
            let head = arg.get(..limits.value_bytes).unwrap_or(arg);
            format!("{}…({} bytes)", resp::quoted(head), arg.len())
        } else {
            resp::argument(arg)
        };
        command.push(shown);
    }
    out.push_str(&format!("\n> {}\n", command.join(" ")));
    match &redis.reply {
        Some(reply) => {
            for line in resp::render(reply, limits.rows, limits.value_bytes).lines() {
                out.push_str(&format!("< {line}\n"));
            }
        }
        None if redis.reply_truncated => out.push_str(&format!(
            "< (reply of {} cut at the size cap, not kept)\n",
            human_size(redis.reply_size)
        )),
        None => out.push_str("< (no reply)\n"),
    }
}
