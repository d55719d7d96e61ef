//! Proxy header rules (RFC 9110 §7.6): hop-by-hop fields stay on their
//! hop, the forwarding trail is added, Host points at the upstream.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Fields that describe one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop fields, including those the Connection field names.
/// `upgrade` is kept when the caller passes an upgrade through. `TE:
/// trailers` is kept: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names present, then a removal for each that must
    // go: most messages carry one such field (Connection) or none, and a
    // removal per rule (a parse, hash and probe each) cost more than the
    // rest of forwarding the head.
    let hop = |name: &HeaderName| {
        HOP_BY_HOP.contains(&name.as_str()) || (!keep_upgrade && *name == header::UPGRADE)
    };
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    if doomed.is_empty() {
        return;
    }
    doomed.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // `keep-alive` and the like are gone already; `close` is an
            // option, not a field.
            .filter(|token| {
                !token.eq_ignore_ascii_case("close")
                    && !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(token))
            })
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .filter(|name| !(keep_upgrade && *name == header::UPGRADE)),
    );
    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    for name in doomed {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Adds `Via` and `X-Forwarded-For` / `X-Forwarded-Proto`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    version: http::Version,
    client_ip: &str,
    proto: &str,
) {
    let via = match version {
        http::Version::HTTP_2 => "2 reprise",
        http::Version::HTTP_10 => "1.0 reprise",
        _ => "1.1 reprise",
    };
    append(headers, header::VIA, via);
    append(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        client_ip,
    );
    if !headers.contains_key("x-forwarded-proto")
        && let Ok(value) = HeaderValue::from_str(proto)
    {
        headers.insert(HeaderName::from_static("x-forwarded-proto"), value);
    }
}

/// Appends to a comma-separated list field.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let joined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {value}"),
        None => value.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn messages_without_hop_fields_pass_unchanged_and_upgrade_follows_the_flag() {
        let mut h = HeaderMap::new();
        h.insert("x-b", HeaderValue::from_static("2"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("3"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn forwarded_trail_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        add_forwarded(&mut h, http::Version::HTTP_11, "127.0.0.1", "http");
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(h["via"], "1.1 reprise");
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
