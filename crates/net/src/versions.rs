//! What changes with the HTTP version a call is sent over, for every
//! client of an upstream (the recording proxy, replay, the mock's
//! `--fallthrough`): which calls need HTTP/2, and HTTP/2's split
//! `cookie` fields, which HTTP/1.1 does not allow.

use http::header::{self, HeaderMap, HeaderValue};

/// Whether a `content-type` is gRPC proper, which needs HTTP/2
/// (`application/grpc`, `application/grpc+proto`...), not gRPC-Web
/// (`application/grpc-web*`), which is made for HTTP/1.1.
pub fn needs_h2_content_type(content_type: &[u8]) -> bool {
    content_type.starts_with(b"application/grpc")
        && !content_type.starts_with(b"application/grpc-web")
}

/// Whether a call with `headers` is gRPC proper, which needs HTTP/2
/// (see [`needs_h2_content_type`]).
pub fn needs_h2(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| needs_h2_content_type(v.as_bytes()))
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 allows one,
/// joined with `"; "` (RFC 9113 §8.2.3). Call it before a request goes
/// out over HTTP/1.1.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for more in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(more.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_needs_h2_and_grpc_web_does_not() {
        let with = |kind: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            needs_h2(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/grpc-web+proto"));
        assert!(!with("application/grpc-web-text"));
        assert!(!with("application/json"));
    }

    #[test]
    fn cookies_are_joined_for_http1() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
    }
}
