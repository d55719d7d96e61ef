//! Typed messages, parsed from a frame's body, borrowing from it.
//!
//! Formats: PostgreSQL documentation, "Frontend/Backend Protocol",
//! "Message Formats". Strings are NUL-terminated and in the client
//! encoding (UTF-8 in practice); they are read lossily.

use std::borrow::Cow;

use super::error::{PgError, Side};

/// A cursor over a message body that fails with [`PgError::Malformed`].
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    side: Side,
    kind: u8,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(side: Side, kind: u8, bytes: &'a [u8]) -> Self {
        Reader { bytes, side, kind }
    }

    fn short(&self) -> PgError {
        PgError::malformed(self.side, self.kind, "body ends early")
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], PgError> {
        if n > self.bytes.len() {
            return Err(self.short());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, PgError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, PgError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, PgError> {
        let b = self.take(4)?;
        Ok(<[u8; 4]>::try_from(b).map_or(0, i32::from_be_bytes))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, PgError> {
        Ok(self.i32()? as u32)
    }

    /// A count (`Int16`) that must not be negative.
    pub(crate) fn count(&mut self) -> Result<usize, PgError> {
        usize::try_from(self.i16()?)
            .map_err(|_| PgError::malformed(self.side, self.kind, "negative count"))
    }

    pub(crate) fn cstr(&mut self) -> Result<Cow<'a, str>, PgError> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(PgError::malformed(
                self.side,
                self.kind,
                "string without its NUL",
            ))?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(String::from_utf8_lossy(s))
    }

    /// A length-prefixed value (`Int32` length, -1 = NULL).
    pub(crate) fn value(&mut self) -> Result<Option<&'a [u8]>, PgError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let n = usize::try_from(len)
            .map_err(|_| PgError::malformed(self.side, self.kind, "negative value length"))?;
        self.take(n).map(Some)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Refuses a count whose items cannot fit in what is left, before
    /// allocating for them (each item takes at least `min` bytes).
    pub(crate) fn check_count(&self, n: usize, min: usize) -> Result<(), PgError> {
        if n.saturating_mul(min) > self.bytes.len() {
            return Err(self.short());
        }
        Ok(())
    }
}

/// A message from the client (after the start-up).
#[derive(Debug, Clone, PartialEq)]
pub enum Frontend<'a> {
    /// 'Q': a simple query.
    Query(Cow<'a, str>),
    /// 'P': prepare `sql` as statement `name` (empty: the unnamed one).
    Parse {
        /// The statement's name.
        name: Cow<'a, str>,
        /// Its SQL.
        sql: Cow<'a, str>,
        /// Declared parameter types (0: left to the server).
        param_types: Vec<u32>,
    },
    /// 'B': bind parameters to a statement, making a portal.
    Bind {
        /// The portal's name.
        portal: Cow<'a, str>,
        /// The statement's name.
        statement: Cow<'a, str>,
        /// Parameter format codes (none: all text; one: for all).
        param_formats: Vec<i16>,
        /// Parameter values, `None` = NULL.
        params: Vec<Option<&'a [u8]>>,
        /// Result column format codes (none: all text; one: for all).
        result_formats: Vec<i16>,
    },
    /// 'D': describe a statement (`b'S'`) or portal (`b'P'`).
    Describe {
        /// `b'S'` or `b'P'`.
        target: u8,
        /// Its name.
        name: Cow<'a, str>,
    },
    /// 'E': run a portal, up to `max_rows` rows (0: all).
    Execute {
        /// The portal's name.
        portal: Cow<'a, str>,
        /// Row limit, 0 for none.
        max_rows: u32,
    },
    /// 'C': close a statement (`b'S'`) or portal (`b'P'`).
    Close {
        /// `b'S'` or `b'P'`.
        target: u8,
        /// Its name.
        name: Cow<'a, str>,
    },
    /// 'S': end of an extended-query batch.
    Sync,
    /// 'H': asks the server to send what it has, without ending the batch.
    Flush,
    /// 'X': the client is leaving.
    Terminate,
    /// 'F': a function call (fast-path interface).
    FunctionCall,
    /// 'd', 'c', 'f': COPY data, done, fail.
    Copy,
    /// 'p': a password, SASL or GSSAPI message. Its contents are not read
    /// here: they are secrets.
    Password,
}

/// Parses a client message.
pub fn frontend(kind: u8, body: &[u8]) -> Result<Frontend<'_>, PgError> {
    let mut r = Reader::new(Side::Client, kind, body);
    let msg = match kind {
        b'Q' => Frontend::Query(r.cstr()?),
        b'P' => {
            let name = r.cstr()?;
            let sql = r.cstr()?;
            let n = r.count()?;
            r.check_count(n, 4)?;
            let param_types = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Frontend::Parse {
                name,
                sql,
                param_types,
            }
        }
        b'B' => {
            let portal = r.cstr()?;
            let statement = r.cstr()?;
            let param_formats = formats(&mut r)?;
            let n = r.count()?;
            r.check_count(n, 4)?;
            let params = (0..n).map(|_| r.value()).collect::<Result<_, _>>()?;
            let result_formats = formats(&mut r)?;
            Frontend::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            }
        }
        b'D' | b'C' => {
            let target = r.u8()?;
            if target != b'S' && target != b'P' {
                return Err(PgError::malformed(
                    Side::Client,
                    kind,
                    "target is neither 'S' nor 'P'",
                ));
            }
            let name = r.cstr()?;
            if kind == b'D' {
                Frontend::Describe { target, name }
            } else {
                Frontend::Close { target, name }
            }
        }
        b'E' => {
            let portal = r.cstr()?;
            let max_rows = r.u32()?;
            Frontend::Execute { portal, max_rows }
        }
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'X' => Frontend::Terminate,
        b'F' => Frontend::FunctionCall,
        b'd' | b'c' | b'f' => Frontend::Copy,
        b'p' => Frontend::Password,
        _ => {
            return Err(PgError::Unexpected {
                side: Side::Client,
                kind: char::from(kind),
                during: "(not a frontend message type)",
            });
        }
    };
    Ok(msg)
}

fn formats(r: &mut Reader<'_>) -> Result<Vec<i16>, PgError> {
    let n = r.count()?;
    r.check_count(n, 2)?;
    (0..n).map(|_| r.i16()).collect()
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column<'a> {
    /// Column name.
    pub name: Cow<'a, str>,
    /// Table OID (0: not a table column).
    pub table_oid: u32,
    /// Attribute number in the table (0: none).
    pub column_number: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// Type size (negative: variable).
    pub type_size: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// Format code (0 text, 1 binary; always 0 for a statement Describe).
    pub format: i16,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend<'a> {
    /// 'R': an authentication request or result: its code and data.
    Authentication {
        /// 0 ok, 3 cleartext, 5 md5, 7 GSS, 9 SSPI, 10 SASL, 11 SASL
        /// continue, 12 SASL final.
        code: i32,
        /// What follows the code (mechanisms, salt, SASL data).
        data: &'a [u8],
    },
    /// 'S': a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: Cow<'a, str>,
        /// Its value.
        value: Cow<'a, str>,
    },
    /// 'K': the backend's process id (and its cancel secret, not kept).
    BackendKeyData {
        /// Process id.
        pid: u32,
    },
    /// 'v': the server supports an older minor version or not all options.
    NegotiateProtocolVersion,
    /// 'Z': ready for a new query, with the transaction status.
    ReadyForQuery(u8),
    /// 'T': the columns of the rows to come.
    RowDescription(Vec<Column<'a>>),
    /// 'D': one row, `None` = NULL.
    DataRow(Vec<Option<&'a [u8]>>),
    /// 'C': a command's tag.
    CommandComplete(Cow<'a, str>),
    /// 'I': the query string was empty.
    EmptyQuery,
    /// 'E': an error's fields (type byte, value).
    Error(Vec<(u8, Cow<'a, str>)>),
    /// 'N': a notice's fields.
    Notice(Vec<(u8, Cow<'a, str>)>),
    /// '1'.
    ParseComplete,
    /// '2'.
    BindComplete,
    /// '3'.
    CloseComplete,
    /// 'n': the statement or portal returns no rows.
    NoData,
    /// 't': the statement's parameter types.
    ParameterDescription(Vec<u32>),
    /// 's': Execute stopped at its row limit.
    PortalSuspended,
    /// 'G', 'H', 'W': COPY from the client, to the client, both ways.
    CopyResponse(u8),
    /// 'd', 'c': COPY data or its end, from the server.
    CopyData,
    /// 'A': a NOTIFY delivered asynchronously.
    Notification,
    /// 'V': a function call's result.
    FunctionCallResponse,
}

/// Parses a server message.
pub fn backend(kind: u8, body: &[u8]) -> Result<Backend<'_>, PgError> {
    let mut r = Reader::new(Side::Server, kind, body);
    let msg = match kind {
        b'R' => {
            let code = r.i32()?;
            Backend::Authentication {
                code,
                data: r.rest(),
            }
        }
        b'S' => Backend::ParameterStatus {
            name: r.cstr()?,
            value: r.cstr()?,
        },
        b'K' => Backend::BackendKeyData { pid: r.u32()? },
        b'v' => Backend::NegotiateProtocolVersion,
        b'Z' => Backend::ReadyForQuery(r.u8()?),
        b'T' => {
            let n = r.count()?;
            r.check_count(n, 19)?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                columns.push(Column {
                    name: r.cstr()?,
                    table_oid: r.u32()?,
                    column_number: r.i16()?,
                    type_oid: r.u32()?,
                    type_size: r.i16()?,
                    type_modifier: r.i32()?,
                    format: r.i16()?,
                });
            }
            Backend::RowDescription(columns)
        }
        b'D' => {
            let n = r.count()?;
            r.check_count(n, 4)?;
            Backend::DataRow((0..n).map(|_| r.value()).collect::<Result<_, _>>()?)
        }
        b'C' => Backend::CommandComplete(r.cstr()?),
        b'I' => Backend::EmptyQuery,
        b'E' | b'N' => {
            let mut fields = Vec::new();
            loop {
                let code = r.u8()?;
                if code == 0 {
                    break;
                }
                fields.push((code, r.cstr()?));
            }
            if kind == b'E' {
                Backend::Error(fields)
            } else {
                Backend::Notice(fields)
            }
        }
        b'1' => Backend::ParseComplete,
        b'2' => Backend::BindComplete,
        b'3' => Backend::CloseComplete,
        b'n' => Backend::NoData,
        b't' => {
            let n = r.count()?;
            r.check_count(n, 4)?;
            Backend::ParameterDescription((0..n).map(|_| r.u32()).collect::<Result<_, _>>()?)
        }
        b's' => Backend::PortalSuspended,
        b'G' | b'H' | b'W' => Backend::CopyResponse(kind),
        b'd' | b'c' => Backend::CopyData,
        b'A' => Backend::Notification,
        b'V' => Backend::FunctionCallResponse,
        _ => {
            return Err(PgError::Unexpected {
                side: Side::Server,
                kind: char::from(kind),
                during: "(not a backend message type)",
            });
        }
    };
    Ok(msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bind_with_null_and_binary() {
        let body = b"p1\0s1\0\0\x01\0\x01\0\x02\xff\xff\xff\xff\0\0\0\x02\0\x07\0\0";
        let Frontend::Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        } = frontend(b'B', body).unwrap()
        else {
            panic!("not a bind")
        };
        assert_eq!((portal.as_ref(), statement.as_ref()), ("p1", "s1"));
        assert_eq!(param_formats, vec![1]);
        assert_eq!(params, vec![None, Some(&b"\0\x07"[..])]);
        assert!(result_formats.is_empty());
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        // 32767 columns announced, none present.
        let err = backend(b'T', b"\x7f\xff").unwrap_err();
        assert!(matches!(err, PgError::Malformed { kind: 'T', .. }));
        let err = frontend(b'B', b"\0\0\0\0\x7f\xff").unwrap_err();
        assert!(matches!(err, PgError::Malformed { kind: 'B', .. }));
    }

    #[test]
    fn error_fields() {
        let body = b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0";
        let Backend::Error(fields) = backend(b'E', body).unwrap() else {
            panic!()
        };
        assert_eq!(fields[2], (b'C', Cow::Borrowed("42P01")));
    }

    #[test]
    fn negative_value_length_is_malformed() {
        assert!(backend(b'D', b"\0\x01\xff\xff\xff\xfe").is_err());
        assert!(frontend(b'D', b"X\0").is_err());
    }
}
