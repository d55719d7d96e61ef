//! What a downstream call is matched by when it is mocked: a canonical
//! key, so that two calls that mean the same thing compare equal and two
//! that differ say where.
//!
//! The key is method, authority (lower case; ignorable), path, the query as
//! a sorted multimap, and the body normalized by content type: JSON with
//! its object keys sorted and no insignificant space, form fields sorted,
//! gRPC as its sequence of request messages (each with its prefix), and
//! anything else as its bytes. The body is kept whole rather than hashed:
//! matching is exact, never a digest collision.

use serde_json::{Map, Value};

use crate::exchange::HeaderList;
use crate::pb::{Direction, Exchange, Protocol};

/// A call's matching key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    /// Upper-case method.
    pub method: String,
    /// Lower-case `host[:port]`; empty when authorities are ignored.
    pub authority: String,
    /// The path without its query.
    pub path: String,
    /// Query pairs, sorted (names and values as sent).
    pub query: Vec<(String, String)>,
    /// The normalized body.
    pub body: Vec<u8>,
}

/// One part of a [`CallKey`], to say which ones differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    /// The method.
    Method,
    /// The authority.
    Authority,
    /// The path.
    Path,
    /// The query.
    Query,
    /// The body.
    Body,
}

impl KeyField {
    /// Its name in explanations.
    pub fn name(self) -> &'static str {
        match self {
            KeyField::Method => "method",
            KeyField::Authority => "authority",
            KeyField::Path => "path",
            KeyField::Query => "query",
            KeyField::Body => "body",
        }
    }
}

/// The parts of a request a key is made from.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The method.
    pub method: &'a str,
    /// `host[:port]`.
    pub authority: &'a str,
    /// Path and query.
    pub path_and_query: &'a str,
    /// The `content-type` field, if any.
    pub content_type: Option<&'a str>,
    /// The body as sent; for gRPC, the length-prefixed messages.
    pub body: &'a [u8],
}

impl CallKey {
    /// The key of a request; `ignore_authority` leaves the authority out.
    pub fn new(parts: KeyParts<'_>, ignore_authority: bool) -> CallKey {
        let (path, query) = parts
            .path_and_query
            .split_once('?')
            .unwrap_or((parts.path_and_query, ""));
        CallKey {
            method: parts.method.to_ascii_uppercase(),
            authority: if ignore_authority {
                String::new()
            } else {
                parts.authority.to_ascii_lowercase()
            },
            path: if path.is_empty() { "/" } else { path }.to_string(),
            query: sorted_pairs(query),
            body: normalize_body(parts.content_type, parts.body),
        }
    }

    /// The key of a recorded exchange's request (gRPC request messages are
    /// framed back as they went on the wire).
    pub fn of_exchange(exchange: &Exchange, ignore_authority: bool) -> CallKey {
        let Some(request) = exchange.request.as_ref() else {
            return CallKey::new(
                KeyParts {
                    method: "",
                    authority: "",
                    path_and_query: "",
                    content_type: None,
                    body: &[],
                },
                ignore_authority,
            );
        };
        let framed;
        let body: &[u8] = if exchange.protocol() == Protocol::Grpc {
            framed = exchange
                .messages
                .iter()
                .filter(|m| m.direction() == Direction::Request)
                .flat_map(crate::grpc::frame)
                .collect::<Vec<u8>>();
            &framed
        } else {
            &request.body
        };
        CallKey::new(
            KeyParts {
                method: &request.method,
                authority: &request.authority,
                path_and_query: &request.path,
                content_type: request.headers.header_str("content-type"),
                body,
            },
            ignore_authority,
        )
    }

    /// The fields in which `self` and `other` differ, in key order.
    pub fn differences(&self, other: &CallKey) -> Vec<KeyField> {
        let mut out = Vec::new();
        if self.method != other.method {
            out.push(KeyField::Method);
        }
        if self.authority != other.authority {
            out.push(KeyField::Authority);
        }
        if self.path != other.path {
            out.push(KeyField::Path);
        }
        if self.query != other.query {
            out.push(KeyField::Query);
        }
        if self.body != other.body {
            out.push(KeyField::Body);
        }
        out
    }
}

fn sorted_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (name.to_string(), value.to_string())
        })
        .collect();
    pairs.sort();
    pairs
}

/// The body in canonical form for its content type; bytes that do not
/// parse as what the type says are kept as they are.
fn normalize_body(content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = essence == "application/json" || essence.ends_with("+json");
    if json && let Ok(value) = serde_json::from_slice::<Value>(body) {
        return serde_json::to_vec(&sorted(value)).unwrap_or_else(|_| body.to_vec());
    }
    if essence == "application/x-www-form-urlencoded"
        && let Ok(text) = std::str::from_utf8(body)
    {
        let pairs = sorted_pairs(text);
        let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        return joined.join("&").into_bytes();
    }
    body.to_vec()
}

/// `value` with every object's keys in sorted order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, content_type: Option<&str>, body: &[u8]) -> CallKey {
        CallKey::new(
            KeyParts {
                method: "post",
                authority: "Inventory:8080",
                path_and_query: path,
                content_type,
                body,
            },
            false,
        )
    }

    #[test]
    fn json_key_order_and_space_do_not_matter() {
        let a = key(
            "/a",
            Some("application/json"),
            br#"{"b": 1, "a": {"y": 2, "x": [1, {"q": 1, "p": 2}]}}"#,
        );
        let b = key(
            "/a",
            Some("application/json; charset=utf-8"),
            br#"{"a":{"x":[1,{"p":2,"q":1}],"y":2},"b":1}"#,
        );
        assert_eq!(a, b);
        let c = key(
            "/a",
            Some("application/json"),
            br#"{"a":{"x":[{"p":2,"q":1},1],"y":2},"b":1}"#,
        );
        assert_eq!(a.differences(&c), [KeyField::Body], "array order matters");
    }

    #[test]
    fn query_is_a_sorted_multimap() {
        let a = key("/s?b=2&a=1&a=0", None, b"");
        let b = key("/s?a=0&b=2&a=1", None, b"");
        assert_eq!(a, b);
        assert_eq!(
            (a.method.as_str(), a.authority.as_str()),
            ("POST", "inventory:8080")
        );
        let c = key("/s?a=0&b=3&a=1", None, b"");
        assert_eq!(a.differences(&c), [KeyField::Query]);
    }

    #[test]
    fn form_fields_are_sorted_and_other_bodies_kept() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(key("/", form, b"b=2&a=1"), key("/", form, b"a=1&b=2"));
        assert_ne!(key("/", None, b"b=2&a=1"), key("/", None, b"a=1&b=2"));
        // Not JSON after all: compared as bytes, never an error.
        let broken = key("/", Some("application/json"), b"{oops");
        assert_eq!(broken.body, b"{oops");
    }

    proptest::proptest! {
        // Any request makes a key without panicking, the same request the
        // same key, and a normalized JSON body normalizes to itself.
        #[test]
        fn keys_are_total_and_stable(
            method in "[A-Za-z]{0,8}",
            path in ".{0,40}",
            content_type in proptest::option::of("(application/json|application/x-www-form-urlencoded|text/plain)(; charset=utf-8)?"),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
        ) {
            let parts = KeyParts {
                method: &method,
                authority: "Host:1",
                path_and_query: &path,
                content_type: content_type.as_deref(),
                body: &body,
            };
            let key = CallKey::new(parts, false);
            proptest::prop_assert_eq!(&key, &CallKey::new(parts, false));
            let again = CallKey::new(KeyParts { body: &key.body, ..parts }, false);
            proptest::prop_assert_eq!(again.body, key.body);
        }
    }

    #[test]
    fn recorded_grpc_messages_are_framed_back() {
        let exchange = Exchange {
            protocol: Protocol::Grpc as i32,
            request: Some(crate::pb::Request {
                method: "POST".into(),
                authority: "inventory".into(),
                path: "/shop.Inventory/Reserve".into(),
                ..Default::default()
            }),
            messages: vec![crate::pb::StreamMessage {
                direction: Direction::Request as i32,
                data: bytes::Bytes::from_static(b"\x08\x01"),
                size: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let live = key(
            "/shop.Inventory/Reserve",
            Some("application/grpc"),
            b"\0\0\0\0\x02\x08\x01",
        );
        let recorded = CallKey::of_exchange(&exchange, false);
        assert_eq!(recorded.differences(&live), [KeyField::Authority]);
        let mut ignoring = live.clone();
        ignoring.authority.clear();
        assert_eq!(CallKey::of_exchange(&exchange, true), ignoring);
    }
}
