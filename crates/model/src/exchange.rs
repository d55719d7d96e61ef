//! Helpers on the generated types: the words the rest of reprise uses.

use crate::pb::{Exchange, Header, LinkKind, Protocol, Request, Response};

/// Lowercase hex of an exchange id (or any id bytes).
pub fn display_id(id: &[u8]) -> String {
    let mut out = String::with_capacity(id.len() * 2);
    for byte in id {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lookup on an ordered, multi-valued header list.
pub trait HeaderList {
    /// The first value of `name` (compared case-insensitively).
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The first value of `name` as text, when it is valid UTF-8.
    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl HeaderList for [Header] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_ref())
    }
}

impl HeaderList for Vec<Header> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

impl Header {
    /// A header from a name and a value.
    pub fn new(name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        Header {
            name: name.into(),
            value: value.as_ref().to_vec(),
        }
    }
}

impl LinkKind {
    /// The kind's name in reports and JSON: `trace`, `scope`,
    /// `ambiguous`, `unlinked`, `in_flight` (`none` when unset).
    pub fn label(self) -> &'static str {
        match self {
            LinkKind::Unspecified => "none",
            LinkKind::Trace => "trace",
            LinkKind::Scope => "scope",
            LinkKind::Ambiguous => "ambiguous",
            LinkKind::Unlinked => "unlinked",
            LinkKind::InFlight => "in_flight",
        }
    }
}

impl Exchange {
    /// How this downstream call was tied to its parent, and its order
    /// among the parent's downstream calls; `None` when the recorder said
    /// nothing (an inbound exchange, a tape older than revision 2).
    pub fn link_kind(&self) -> Option<(LinkKind, u32)> {
        let link = self.link.as_ref()?;
        match LinkKind::try_from(link.kind).unwrap_or(LinkKind::Unspecified) {
            LinkKind::Unspecified => None,
            kind => Some((kind, link.order)),
        }
    }

    /// The hex form of this exchange's id.
    pub fn id_hex(&self) -> String {
        display_id(&self.id)
    }

    /// `METHOD path` without the query: the key per-endpoint reports group by.
    pub fn endpoint(&self) -> String {
        match &self.request {
            Some(req) => format!("{} {}", req.method, req.path_only()),
            None => "-".to_string(),
        }
    }

    /// HTTP status of the response, 0 when there is none.
    pub fn status(&self) -> u32 {
        self.response.as_ref().map_or(0, |r| r.status)
    }

    /// Whether this is a downstream call made while serving another exchange.
    pub fn is_downstream(&self) -> bool {
        !self.parent_id.is_empty() || self.role() == crate::pb::Role::Downstream
    }

    /// Short protocol label: `h1`, `h1.0`, `h2`, `grpc`, `h3`.
    pub fn protocol_label(&self) -> &'static str {
        protocol_label(self.protocol())
    }

    /// End of the call, ns since the epoch.
    pub fn ended_at_ns(&self) -> u64 {
        self.recorded_at_ns.saturating_add(self.duration_ns)
    }
}

/// Short label for a transport failure: `connect`, `timeout`, `reset`,
/// `tls`, `protocol`, `cancelled`, `other` (metrics and reports use it).
pub fn error_kind_label(kind: crate::pb::ErrorKind) -> &'static str {
    use crate::pb::ErrorKind;
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Reset => "reset",
        ErrorKind::Tls => "tls",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Other | ErrorKind::Unspecified => "other",
    }
}

/// Short label for a protocol.
pub fn protocol_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Unspecified => "-",
        Protocol::Http11 => "h1",
        Protocol::Http10 => "h1.0",
        Protocol::Http2 => "h2",
        Protocol::Grpc => "grpc",
        Protocol::Http3 => "h3",
        Protocol::Postgres => "pg",
        Protocol::Redis => "redis",
    }
}

impl Request {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(self.path.as_str(), |(p, _)| p)
    }

    /// The query string without the `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// Full body size: the recorded size, or the stored bytes when unknown.
    pub fn size(&self) -> u64 {
        self.body_size.max(self.body.len() as u64)
    }
}

impl Response {
    /// Full body size: the recorded size, or the stored bytes when unknown.
    pub fn size(&self) -> u64 {
        self.body_size.max(self.body.len() as u64)
    }
}

/// A path segment that is an id of some kind, folded to `{id}` in
/// endpoint keys. The rule (docs/cli.md, `reprise stats`):
///
/// - digits only: `42`;
/// - hex of 8 or more characters (and `-`, as in a UUID) with a digit:
///   `b33c9c1a`, `0193a1c2-e4f5-7a6b-8c9d-0e1f2a3b4c5d`;
/// - a token of letters, digits, `-` and `_` with at least one letter and
///   one digit (`B1`, `SKU-42`, `a1b2c3`, a ULID), unless it reads as a
///   name: each of its `-`/`_` parts lowercase letters with at most three
///   digits after them, at most twice (`v1`, `v2beta1`, `oauth2`,
///   `sha256`, `api-v2`); a token of 20 or more characters with 4 or more
///   digits is an id even so.
pub fn is_id_segment(segment: &str) -> bool {
    let digits = segment.chars().filter(char::is_ascii_digit).count();
    let letters = segment.chars().filter(char::is_ascii_alphabetic).count();
    let hex = segment.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let token = segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    !segment.is_empty()
        && (digits == segment.len()
            || (hex && segment.len() >= 8 && digits > 0)
            || (token
                && digits > 0
                && letters > 0
                && (!reads_as_name(segment) || (segment.len() >= 20 && digits >= 4))))
}

/// `v1`, `v2beta1`, `oauth2`, `api-v2`: every `-`/`_` part is lowercase
/// letters and at most three digits, once or twice.
fn reads_as_name(segment: &str) -> bool {
    segment.split(['-', '_']).all(|part| {
        let mut rest = part;
        for run in 0..2 {
            let letters = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_lowercase())
                    .len();
            if letters == 0 {
                return run > 0 && rest.is_empty();
            }
            rest = &rest[letters..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 3 {
                return false;
            }
            rest = &rest[digits..];
        }
        rest.is_empty()
    })
}

/// `METHOD /users/{id}/orders`: what per-endpoint figures group by.
pub fn endpoint_key(exchange: &Exchange) -> String {
    let Some(request) = &exchange.request else {
        return "(no request)".to_string();
    };
    let path: Vec<&str> = request
        .path_only()
        .split('/')
        .map(|segment| {
            if is_id_segment(segment) {
                "{id}"
            } else {
                segment
            }
        })
        .collect();
    let path = path.join("/");
    if exchange.is_downstream() {
        format!("↳{} {}{}", request.method, request.authority, path)
    } else {
        format!("{} {}", request.method, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_drops_query() {
        let ex = Exchange {
            request: Some(Request {
                method: "GET".into(),
                path: "/a/b?x=1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(ex.endpoint(), "GET /a/b");
        assert_eq!(ex.request.as_ref().and_then(|r| r.query()), Some("x=1"));
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let headers = [
            Header::new("Content-Type", "text/plain"),
            Header::new("x", "1"),
        ];
        assert_eq!(headers.header_str("content-type"), Some("text/plain"));
        assert_eq!(headers.header("missing"), None);
    }

    #[test]
    fn hex_ids() {
        assert_eq!(display_id(&[0x00, 0xab, 0x10]), "00ab10");
    }

    #[test]
    fn id_segments_are_templated() {
        for id in [
            "42",
            "0193a1c2-e4f5-7a6b-8c9d-0e1f2a3b4c5d",
            "b33c9c1a2bae6636d5389a1a",
            "b33c9c1a",
            "tok_1A2b3C4d5E6f7G8h9I0j",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "B1",
            "SKU-42",
            "a1b2c3",
            "order-17",
            "1a",
            "ab1234",
            "usr_9f8e7d6c5b4a3210fedc",
        ] {
            assert!(is_id_segment(id), "{id}");
        }
        for word in [
            "users",
            "v1",
            "v2",
            "v10",
            "v1beta1",
            "v2alpha",
            "oauth2",
            "sha256",
            "ipv6",
            "api-v2",
            "api",
            "",
            "deadbeef",
            "monitoring-stein",
            "image1.png",
            "1.2.3",
            "-",
            "_",
        ] {
            assert!(!is_id_segment(word), "{word}");
        }
    }
}
