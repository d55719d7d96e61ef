//! Writing protocol messages: the backend messages the mock answers with,
//! and the frontend messages tests and tools speak to a server.

use reprise_model::{SqlColumn, SqlError, SqlValue};

/// Appends one typed message: `kind`, then the length, then what `body`
/// writes.
pub fn message(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(kind);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Appends a NUL-terminated string (a NUL inside is cut there: the
/// protocol cannot carry it).
pub fn cstr(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    out.extend_from_slice(bytes.get(..end).unwrap_or_default());
    out.push(0);
}

fn value(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(data) => {
            out.extend_from_slice(&(i32::try_from(data.len()).unwrap_or(i32::MAX)).to_be_bytes());
            out.extend_from_slice(data);
        }
    }
}

fn count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(i16::try_from(n).unwrap_or(i16::MAX)).to_be_bytes());
}

/// The backend's messages, as the mock sends them.
pub mod backend {
    use super::*;

    /// 'R' with `code` and its data (0 = AuthenticationOk).
    pub fn authentication(out: &mut Vec<u8>, code: i32, data: &[u8]) {
        message(out, b'R', |b| {
            b.extend_from_slice(&code.to_be_bytes());
            b.extend_from_slice(data);
        });
    }

    /// 'S'.
    pub fn parameter_status(out: &mut Vec<u8>, name: &str, value: &str) {
        message(out, b'S', |b| {
            cstr(b, name);
            cstr(b, value);
        });
    }

    /// 'K' with a 4-byte secret (protocol 3.0).
    pub fn backend_key_data(out: &mut Vec<u8>, pid: u32, secret: u32) {
        message(out, b'K', |b| {
            b.extend_from_slice(&pid.to_be_bytes());
            b.extend_from_slice(&secret.to_be_bytes());
        });
    }

    /// 'Z' with the transaction status (`b'I'`, `b'T'` or `b'E'`).
    pub fn ready_for_query(out: &mut Vec<u8>, status: u8) {
        message(out, b'Z', |b| b.push(status));
    }

    /// 'T' for recorded columns.
    pub fn row_description(out: &mut Vec<u8>, columns: &[SqlColumn]) {
        message(out, b'T', |b| {
            count(b, columns.len());
            for c in columns {
                cstr(b, &c.name);
                b.extend_from_slice(&c.table_oid.to_be_bytes());
                b.extend_from_slice(&(c.column_number as i16).to_be_bytes());
                b.extend_from_slice(&c.type_oid.to_be_bytes());
                b.extend_from_slice(&(c.type_size as i16).to_be_bytes());
                b.extend_from_slice(&c.type_modifier.to_be_bytes());
                b.extend_from_slice(&i16::from(c.binary).to_be_bytes());
            }
        });
    }

    /// 'D' for a recorded row.
    pub fn data_row(out: &mut Vec<u8>, values: &[SqlValue]) {
        message(out, b'D', |b| {
            count(b, values.len());
            for v in values {
                value(b, (!v.null).then_some(&v.data[..]));
            }
        });
    }

    /// 'C'.
    pub fn command_complete(out: &mut Vec<u8>, tag: &str) {
        message(out, b'C', |b| cstr(b, tag));
    }

    /// 'E' (or 'N' with `kind` = `b'N'`) with the recorded fields, or
    /// severity, code and message when no fields were kept.
    pub fn error(out: &mut Vec<u8>, kind: u8, e: &SqlError) {
        message(out, kind, |b| {
            if e.fields.is_empty() {
                for (code, v) in [
                    (b'S', &e.severity),
                    (b'V', &e.severity),
                    (b'C', &e.code),
                    (b'M', &e.message),
                ] {
                    b.push(code);
                    cstr(b, v);
                }
            } else {
                for f in &e.fields {
                    b.push(u8::try_from(f.kind).unwrap_or(b'M'));
                    cstr(b, &f.value);
                }
            }
            b.push(0);
        });
    }

    /// 't'.
    pub fn parameter_description(out: &mut Vec<u8>, types: &[u32]) {
        message(out, b't', |b| {
            count(b, types.len());
            for t in types {
                b.extend_from_slice(&t.to_be_bytes());
            }
        });
    }

    /// A message without a body: '1' ParseComplete, '2' BindComplete,
    /// '3' CloseComplete, 'n' NoData, 'I' EmptyQueryResponse, 's'
    /// PortalSuspended.
    pub fn empty(out: &mut Vec<u8>, kind: u8) {
        message(out, kind, |_| {});
    }
}

/// The frontend's messages, for tests and tools that play a client.
pub mod frontend {
    use super::*;

    /// A StartupMessage (no type byte) for protocol 3.0.
    pub fn startup(out: &mut Vec<u8>, parameters: &[(&str, &str)]) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&super::super::startup::PROTOCOL_3_0.to_be_bytes());
        for (k, v) in parameters {
            cstr(out, k);
            cstr(out, v);
        }
        out.push(0);
        let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
        if let Some(slot) = out.get_mut(at..at + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }

    /// 'Q'.
    pub fn query(out: &mut Vec<u8>, sql: &str) {
        message(out, b'Q', |b| cstr(b, sql));
    }

    /// 'P'.
    pub fn parse(out: &mut Vec<u8>, name: &str, sql: &str, param_types: &[u32]) {
        message(out, b'P', |b| {
            cstr(b, name);
            cstr(b, sql);
            count(b, param_types.len());
            for t in param_types {
                b.extend_from_slice(&t.to_be_bytes());
            }
        });
    }

    /// 'B'.
    pub fn bind(
        out: &mut Vec<u8>,
        portal: &str,
        statement: &str,
        param_formats: &[i16],
        params: &[Option<&[u8]>],
        result_formats: &[i16],
    ) {
        message(out, b'B', |b| {
            cstr(b, portal);
            cstr(b, statement);
            count(b, param_formats.len());
            for f in param_formats {
                b.extend_from_slice(&f.to_be_bytes());
            }
            count(b, params.len());
            for p in params {
                value(b, *p);
            }
            count(b, result_formats.len());
            for f in result_formats {
                b.extend_from_slice(&f.to_be_bytes());
            }
        });
    }

    /// 'D' (`target` `b'S'` or `b'P'`).
    pub fn describe(out: &mut Vec<u8>, target: u8, name: &str) {
        message(out, b'D', |b| {
            b.push(target);
            cstr(b, name);
        });
    }

    /// 'E'.
    pub fn execute(out: &mut Vec<u8>, portal: &str, max_rows: u32) {
        message(out, b'E', |b| {
            cstr(b, portal);
            b.extend_from_slice(&max_rows.to_be_bytes());
        });
    }

    /// 'C' (`target` `b'S'` or `b'P'`).
    pub fn close(out: &mut Vec<u8>, target: u8, name: &str) {
        message(out, b'C', |b| {
            b.push(target);
            cstr(b, name);
        });
    }

    /// 'S' Sync, 'H' Flush, 'X' Terminate.
    pub fn empty(out: &mut Vec<u8>, kind: u8) {
        message(out, kind, |_| {});
    }
}
