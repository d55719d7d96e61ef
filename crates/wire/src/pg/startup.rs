//! What a client sends first: a start-up packet without a type byte.

use super::error::PgError;
use super::frame::{MAX_STARTUP, be_i32, untyped_length_problem};

/// Protocol 3.0 as a StartupMessage's version field.
pub const PROTOCOL_3_0: u32 = 196_608;
const CANCEL_REQUEST: u32 = 80_877_102;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The client's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstPacket {
    /// Asks for TLS; the server answers one byte, 'S' or 'N'.
    SslRequest,
    /// Asks for GSSAPI encryption; the server answers 'G' or 'N'.
    GssEncRequest,
    /// Cancels the query running on another connection.
    CancelRequest {
        /// The backend's process id (from its BackendKeyData).
        pid: u32,
        /// The secret key: 4 bytes in protocol 3.0, up to 256 in 3.2.
        secret: Vec<u8>,
    },
    /// A StartupMessage.
    Startup {
        /// `major << 16 | minor`: 196608 is 3.0. Any 3.x is accepted: a
        /// server that knows an older minor answers with
        /// NegotiateProtocolVersion and carries on.
        version: u32,
        /// Parameters in the order sent (user, database, options...).
        parameters: Vec<(String, String)>,
    },
}

/// Reads the client's first packet from the start of `buf`: `None` while
/// more bytes are needed, else the packet and how many bytes it took.
/// Anything else (protocol 2.0, garbage, a TLS handshake without
/// SSLRequest) is [`PgError::NotV3`].
pub fn first_packet(buf: &[u8]) -> Result<Option<(FirstPacket, usize)>, PgError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be_i32(buf, 0);
    let Some(len) = usize::try_from(len)
        .ok()
        .filter(|n| (8..=MAX_STARTUP).contains(n))
    else {
        return Err(PgError::NotV3(untyped_length_problem(buf, len)));
    };
    let Some(body) = buf.get(4..len) else {
        return Ok(None);
    };
    Ok(Some((parse_first(body)?, len)))
}

/// Parses a start-up packet's body (after its length).
pub(crate) fn parse_first(body: &[u8]) -> Result<FirstPacket, PgError> {
    let code = be_i32(body, 0) as u32;
    let rest = body.get(4..).unwrap_or_default();
    match code {
        SSL_REQUEST if rest.is_empty() => Ok(FirstPacket::SslRequest),
        GSSENC_REQUEST if rest.is_empty() => Ok(FirstPacket::GssEncRequest),
        CANCEL_REQUEST if (8..=260).contains(&rest.len()) => Ok(FirstPacket::CancelRequest {
            pid: be_i32(rest, 0) as u32,
            secret: rest.get(4..).unwrap_or_default().to_vec(),
        }),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => Err(PgError::NotV3(format!(
            "request code {code} with a {}-byte body",
            body.len()
        ))),
        v if v >> 16 == 3 => Ok(FirstPacket::Startup {
            version: v,
            parameters: parameters(rest)?,
        }),
        v => Err(PgError::NotV3(format!(
            "protocol version {}.{} (only 3.x is spoken)",
            v >> 16,
            v & 0xffff
        ))),
    }
}

fn parameters(mut rest: &[u8]) -> Result<Vec<(String, String)>, PgError> {
    let mut out = Vec::new();
    loop {
        let name = next_cstr(&mut rest)?;
        if name.is_empty() {
            if rest.is_empty() {
                return Ok(out);
            }
            return Err(PgError::NotV3(
                "bytes after the parameters' terminator".to_owned(),
            ));
        }
        let value = next_cstr(&mut rest)?;
        out.push((name, value));
    }
}

fn next_cstr(rest: &mut &[u8]) -> Result<String, PgError> {
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| PgError::NotV3("a parameter without its NUL".to_owned()))?;
    let s = String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned();
    *rest = rest.get(end + 1..).unwrap_or_default();
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn packet(body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn ssl_gss_cancel_startup() {
        let ssl = packet(&SSL_REQUEST.to_be_bytes());
        assert_eq!(
            first_packet(&ssl).unwrap(),
            Some((FirstPacket::SslRequest, 8))
        );
        assert_eq!(first_packet(&ssl[..7]).unwrap(), None);
        let gss = packet(&GSSENC_REQUEST.to_be_bytes());
        assert_eq!(
            first_packet(&gss).unwrap().unwrap().0,
            FirstPacket::GssEncRequest
        );
        let mut cancel = CANCEL_REQUEST.to_be_bytes().to_vec();
        cancel.extend_from_slice(&[0, 0, 0, 42, 1, 2, 3, 4]);
        assert_eq!(
            first_packet(&packet(&cancel)).unwrap().unwrap().0,
            FirstPacket::CancelRequest {
                pid: 42,
                secret: vec![1, 2, 3, 4]
            }
        );
        let mut startup = Vec::new();
        super::super::encode::frontend::startup(&mut startup, &[("user", "u"), ("database", "d")]);
        let (first, used) = first_packet(&startup).unwrap().unwrap();
        assert_eq!(used, startup.len());
        assert_eq!(
            first,
            FirstPacket::Startup {
                version: PROTOCOL_3_0,
                parameters: vec![("user".into(), "u".into()), ("database".into(), "d".into())]
            }
        );
    }

    #[test]
    fn protocol_3_2_is_accepted_and_2_0_refused() {
        let mut body = (PROTOCOL_3_0 + 2).to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0u\0\0");
        assert!(matches!(
            first_packet(&packet(&body)).unwrap(),
            Some((
                FirstPacket::Startup {
                    version: 196_610,
                    ..
                },
                _
            ))
        ));
        let mut body = (2u32 << 16).to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0u\0\0");
        let err = first_packet(&packet(&body)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a PostgreSQL v3 start-up: protocol version 2.0 (only 3.x is spoken)"
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(
            first_packet(b"GET / HTTP/1.1\r\n")
                .unwrap_err()
                .to_string()
                .contains("HTTP")
        );
        assert!(first_packet(b"\0\0\0\x02xxxx").is_err());
        assert!(first_packet(&packet(b"\0\x03\0\0user\0u")).is_err());
    }
}
