//! Reading the client's side of a connection: the start-up packets, then
//! typed messages. Shared by the recorder's [`Conversation`] and the
//! mock's [`Session`].
//!
//! [`Conversation`]: super::Conversation
//! [`Session`]: super::Session

use super::error::{PgError, Side};
use super::frame::{Frame, Framer, Mode, Times};
use super::messages::{Frontend, frontend};
use super::startup::{FirstPacket, parse_first};

/// One thing the client sent, owned (the framer's buffer is reused).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClientEvent {
    First(FirstPacket),
    /// A password, SASL or GSSAPI message; only a SASLInitialResponse's
    /// mechanism name is read from it (never the secret).
    Password {
        sasl_mechanism: Option<String>,
    },
    /// A simple query; `cut` when it was larger than the size cap and only
    /// its head is here.
    Query {
        sql: String,
        cut: bool,
    },
    /// Parse, Bind, Describe, Execute, Close, Sync or Flush.
    Extended(Extended),
    FunctionCall,
    Copy,
    Terminate,
}

/// An extended-query message, owned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Extended {
    Parse {
        name: String,
        sql: String,
        param_types: Vec<u32>,
        cut: bool,
    },
    Bind {
        portal: String,
        statement: String,
        param_formats: Vec<i16>,
        params: Vec<Option<Vec<u8>>>,
        result_formats: Vec<i16>,
        cut: bool,
    },
    Describe {
        target: u8,
        name: String,
    },
    Execute {
        portal: String,
        max_rows: u32,
    },
    Close {
        target: u8,
        name: String,
    },
    Sync,
    Flush,
}

/// The client's stream: framing plus which packet comes next.
#[derive(Debug)]
pub(crate) struct ClientReader {
    framer: Framer,
}

impl ClientReader {
    pub(crate) fn new(limit: usize) -> Self {
        ClientReader {
            framer: Framer::new(Side::Client, Mode::Untyped, limit),
        }
    }

    /// Feeds bytes, calling `on_event` for each message.
    pub(crate) fn feed<F>(
        &mut self,
        bytes: &[u8],
        at_ns: u64,
        mut on_event: F,
    ) -> Result<(), PgError>
    where
        F: FnMut(ClientEvent, Times) -> Result<(), PgError>,
    {
        self.framer.feed(bytes, at_ns, &mut |frame, times| {
            let event = event(frame)?;
            // After SSLRequest or GSSENCRequest (refused, or TLS ended by the
            // recorder) the client sends another start-up packet.
            let next = match &event {
                ClientEvent::First(FirstPacket::SslRequest | FirstPacket::GssEncRequest) => {
                    Mode::Untyped
                }
                _ => Mode::Typed,
            };
            on_event(event, times)?;
            Ok(next)
        })
    }
}

fn event(frame: Frame<'_>) -> Result<ClientEvent, PgError> {
    Ok(match frame {
        Frame::Untyped { body } => ClientEvent::First(parse_first(body)?),
        Frame::Byte(b) => {
            return Err(PgError::Unexpected {
                side: Side::Client,
                kind: char::from(b),
                during: "(a lone byte)",
            });
        }
        Frame::Typed { kind: b'p', body } => ClientEvent::Password {
            sasl_mechanism: sasl_mechanism(body),
        },
        Frame::Typed { kind, body } => typed(frontend(kind, body)?),
        Frame::Oversized { kind, head, .. } => oversized(kind, head)?,
    })
}

fn typed(msg: Frontend<'_>) -> ClientEvent {
    let ext = match msg {
        Frontend::Query(sql) => {
            return ClientEvent::Query {
                sql: sql.into_owned(),
                cut: false,
            };
        }
        Frontend::Parse {
            name,
            sql,
            param_types,
        } => Extended::Parse {
            name: name.into_owned(),
            sql: sql.into_owned(),
            param_types,
            cut: false,
        },
        Frontend::Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        } => Extended::Bind {
            portal: portal.into_owned(),
            statement: statement.into_owned(),
            param_formats,
            params: params.into_iter().map(|p| p.map(<[u8]>::to_vec)).collect(),
            result_formats,
            cut: false,
        },
        Frontend::Describe { target, name } => Extended::Describe {
            target,
            name: name.into_owned(),
        },
        Frontend::Execute { portal, max_rows } => Extended::Execute {
            portal: portal.into_owned(),
            max_rows,
        },
        Frontend::Close { target, name } => Extended::Close {
            target,
            name: name.into_owned(),
        },
        Frontend::Sync => Extended::Sync,
        Frontend::Flush => Extended::Flush,
        Frontend::Terminate => return ClientEvent::Terminate,
        Frontend::FunctionCall => return ClientEvent::FunctionCall,
        Frontend::Copy => return ClientEvent::Copy,
        Frontend::Password => {
            return ClientEvent::Password {
                sasl_mechanism: None,
            };
        }
    };
    ClientEvent::Extended(ext)
}

/// A message larger than the size cap: what its head tells.
fn oversized(kind: u8, head: &[u8]) -> Result<ClientEvent, PgError> {
    let mut parts = head.splitn(3, |&b| b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    Ok(match kind {
        b'Q' => ClientEvent::Query {
            sql: next(),
            cut: true,
        },
        b'P' => {
            let name = next();
            ClientEvent::Extended(Extended::Parse {
                name,
                sql: next(),
                param_types: Vec::new(),
                cut: true,
            })
        }
        b'B' => {
            let portal = next();
            let statement = next();
            ClientEvent::Extended(Extended::Bind {
                portal,
                statement,
                param_formats: Vec::new(),
                params: Vec::new(),
                result_formats: Vec::new(),
                cut: true,
            })
        }
        b'p' => ClientEvent::Password {
            sasl_mechanism: None,
        },
        b'd' | b'c' | b'f' => ClientEvent::Copy,
        b'F' => ClientEvent::FunctionCall,
        other => {
            return Err(PgError::Length {
                side: Side::Client,
                kind: char::from(other),
                len: i64::try_from(head.len()).unwrap_or(i64::MAX),
            });
        }
    })
}

/// The mechanism of a SASLInitialResponse (`name NUL, Int32 length,
/// data`). A cleartext or md5 password message is `password NUL` with
/// nothing after, so it never matches: no password is ever read here.
fn sasl_mechanism(body: &[u8]) -> Option<String> {
    let end = body.iter().position(|&b| b == 0)?;
    let name = body.get(..end)?;
    let rest = body.get(end + 1..)?;
    let len = i32::from_be_bytes(<[u8; 4]>::try_from(rest.get(..4)?).ok()?);
    let data_len = rest.len() - 4;
    let matches_len = (len == -1 && data_len == 0) || usize::try_from(len).ok() == Some(data_len);
    let plausible = !name.is_empty()
        && name.len() <= 32
        && name
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
    (matches_len && plausible).then(|| String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sasl_initial_response_names_only_the_mechanism() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        let data = b"n,,n=,r=abc";
        body.extend_from_slice(&(data.len() as i32).to_be_bytes());
        body.extend_from_slice(data);
        assert_eq!(sasl_mechanism(&body).as_deref(), Some("SCRAM-SHA-256"));
        assert_eq!(sasl_mechanism(b"SECRET\0"), None);
        assert_eq!(sasl_mechanism(b"md5abcdef0123\0"), None);
    }
}
