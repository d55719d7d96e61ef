//! Proxy header rules (RFC 9110 §7.6): hop-by-hop fields stay on their
//! hop, the forwarding trail is added, Host points at the upstream.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Fields that describe one connection, never forwarded. (`Trailer`,
/// which RFC 2616 listed, is end to end in RFC 9110 §6.6.2: it declares
/// the trailers, and an HTTP/1.1 server sends only declared ones.)
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
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

/// Removes a `Content-Length` that no longer describes the body sent
/// (redaction changed it, it was cut at the size cap or stored decoded,
/// or it goes out as messages or with trailers): what is left is for the
/// sender to compute. The one rule replay and the mock share.
pub fn drop_stale_length(headers: &mut HeaderMap, body_len: usize, framed: bool) {
    let holds = !framed && {
        let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .is_some_and(|n| n == body_len),
            (None, _) => true,
            (Some(_), Some(_)) => false,
        }
    };
    if !holds {
        headers.remove(header::CONTENT_LENGTH);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Adds `Via` and `X-Forwarded-For` / `X-Forwarded-Proto`. `client_ip` is
/// made once per connection ([`client_ip`]): this runs for every call.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    version: http::Version,
    client_ip: HeaderValue,
    proto: &str,
) {
    let via = match version {
        http::Version::HTTP_2 => "2 reprise",
        http::Version::HTTP_10 => "1.0 reprise",
        _ => "1.1 reprise",
    };
    append(headers, header::VIA, HeaderValue::from_static(via));
    append(headers, X_FORWARDED_FOR, client_ip);
    if !headers.contains_key(X_FORWARDED_PROTO) {
        let value = match proto {
            "http" => Ok(HeaderValue::from_static("http")),
            "https" => Ok(HeaderValue::from_static("https")),
            other => HeaderValue::from_str(other),
        };
        if let Ok(value) = value {
            headers.insert(X_FORWARDED_PROTO, value);
        }
    }
}

/// A client's address as an `X-Forwarded-For` entry.
pub fn client_ip(peer: std::net::SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Appends to a comma-separated list field (a value that is not text is
/// replaced).
fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    let joined = match headers.get(&name).map(HeaderValue::to_str) {
        None | Some(Err(_)) => value,
        Some(Ok(existing)) => {
            match value
                .to_str()
                .ok()
                .and_then(|v| HeaderValue::from_str(&format!("{existing}, {v}")).ok())
            {
                Some(joined) => joined,
                None => return,
            }
        }
    };
    headers.insert(name, joined);
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
        let peer = "127.0.0.1:4000".parse().unwrap();
        add_forwarded(&mut h, http::Version::HTTP_11, client_ip(peer), "http");
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(h["via"], "1.1 reprise");
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
