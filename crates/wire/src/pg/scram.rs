//! Keeping SCRAM from negotiating channel binding through the recorder.
//!
//! The recorder ends the client's TLS and opens its own to the server, so
//! `SCRAM-SHA-256-PLUS` (bound to the server's certificate) cannot succeed
//! end to end: the client would bind to the recorder's certificate. The
//! recorder therefore removes `-PLUS` mechanisms from the server's
//! AuthenticationSASL message.
//!
//! Which combinations then work, from PostgreSQL's `auth-scram.c` and
//! libpq's `fe-auth-scram.c`: a libpq client that has TLS to the recorder
//! and is not offered `-PLUS` picks SCRAM-SHA-256 with the gs2 flag `y`
//! ("I support channel binding but think you do not"), unless
//! `channel_binding=disable` makes it send `n`. A server whose own
//! connection is TLS refuses `y` ("SCRAM channel binding negotiation
//! error", SQLSTATE 28000) as a possible downgrade attack. So:
//!
//! | client → recorder | recorder → server | client's channel_binding | result |
//! |---|---|---|---|
//! | plain | plain or TLS | any but `require` | works (flag `n`) |
//! | TLS | plain | `prefer` / `disable` | works (no `-PLUS` offered; `y` accepted without TLS) |
//! | TLS | TLS | `disable` | works (flag `n`) |
//! | TLS | TLS | `prefer` (default) | refused: negotiation error |
//! | any | any | `require` | refused by the client (no `-PLUS`) |
//!
//! Not stripping would not help: a client choosing `-PLUS` binds to the
//! recorder's certificate and the server's check fails. The rows with TLS
//! to the recorder are checked against PostgreSQL and psql by
//! `tests/pg_channel_binding.rs`.

use super::frame::be_i32;

/// Rewrites an AuthenticationSASL message (a whole message: 'R', length,
/// code 10, mechanism names) without its `-PLUS` mechanisms; `None` when
/// `message` is anything else or offers none.
pub fn strip_channel_binding(message: &[u8]) -> Option<Vec<u8>> {
    if message.first() != Some(&b'R') || be_i32(message, 5) != 10 {
        return None;
    }
    let len = usize::try_from(be_i32(message, 1)).ok()?;
    if len + 1 != message.len() {
        return None;
    }
    let list = message.get(9..)?;
    let mechanisms: Vec<&[u8]> = list.split(|&b| b == 0).filter(|m| !m.is_empty()).collect();
    if !mechanisms.iter().any(|m| m.ends_with(b"-PLUS")) {
        return None;
    }
    let mut body = 10i32.to_be_bytes().to_vec();
    for m in mechanisms.iter().filter(|m| !m.ends_with(b"-PLUS")) {
        body.extend_from_slice(m);
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 5);
    super::encode::message(&mut out, b'R', |b| b.extend_from_slice(&body));
    Some(out)
}

/// A filter for the server's bytes during the start-up: it passes every
/// byte on, except that an AuthenticationSASL message loses its `-PLUS`
/// mechanisms. After the first ReadyForQuery (or anything it cannot
/// read) it passes bytes through untouched, without buffering.
#[derive(Debug, Default)]
pub struct ChannelBindingFilter {
    pending: Vec<u8>,
    transparent: bool,
}

/// Start-up messages are small; anything larger ends the filtering.
const MAX_FILTERED: usize = 64 * 1024;

impl ChannelBindingFilter {
    /// A filter for a new connection's server stream (typed messages: the
    /// SSL answer byte, if any, is not fed).
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes to send the client for `bytes` read from the server (may
    /// hold back the start of a message until it is complete).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.transparent {
            return bytes.to_vec();
        }
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut at = 0;
        while let Some(head) = self.pending.get(at..at + 5) {
            let len = usize::try_from(be_i32(head, 1)).unwrap_or(0);
            if !(4..=MAX_FILTERED).contains(&len) {
                self.transparent = true;
                break;
            }
            let Some(msg) = self.pending.get(at..at + 1 + len) else {
                break;
            };
            match strip_channel_binding(msg) {
                Some(stripped) => out.extend_from_slice(&stripped),
                None => out.extend_from_slice(msg),
            }
            at += 1 + len;
            if msg.first() == Some(&b'Z') {
                self.transparent = true;
                break;
            }
        }
        if self.transparent {
            out.extend_from_slice(self.pending.get(at..).unwrap_or_default());
            self.pending = Vec::new();
        } else {
            self.pending.drain(..at);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sasl(mechs: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::encode::message(&mut out, b'R', |b| {
            b.extend_from_slice(&10i32.to_be_bytes());
            for m in mechs {
                b.extend_from_slice(m.as_bytes());
                b.push(0);
            }
            b.push(0);
        });
        out
    }

    #[test]
    fn plus_is_removed() {
        let stripped =
            strip_channel_binding(&sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])).unwrap();
        assert_eq!(stripped, sasl(&["SCRAM-SHA-256"]));
        assert_eq!(strip_channel_binding(&sasl(&["SCRAM-SHA-256"])), None);
        assert_eq!(strip_channel_binding(b"R\0\0\0\x08\0\0\0\0"), None);
        assert_eq!(strip_channel_binding(b"R\0"), None);
    }

    #[test]
    fn filter_rewrites_across_chunks_then_passes_through() {
        let mut stream = sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        stream.extend_from_slice(b"Z\0\0\0\x05I");
        stream.extend_from_slice(b"anything after");
        let mut expected = sasl(&["SCRAM-SHA-256"]);
        expected.extend_from_slice(b"Z\0\0\0\x05Ianything after");
        let mut filter = ChannelBindingFilter::new();
        let out: Vec<u8> = stream.chunks(3).flat_map(|c| filter.feed(c)).collect();
        assert_eq!(out, expected);
    }
}
