//! Raw HTTP/1.x messages (as GoReplay captures them) into model parts.

use reprise_model::{Header, Protocol};

/// Most headers a captured message may have.
const MAX_HEADERS: usize = 512;

/// A parsed request head and body.
pub struct ParsedRequest {
    pub method: String,
    pub target: String,
    pub protocol: Protocol,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    /// The body is shorter than its framing says (capture cut short).
    pub truncated: bool,
}

/// A parsed response head and body.
pub struct ParsedResponse {
    pub status: u32,
    pub reason: String,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    pub truncated: bool,
}

fn protocol(version: Option<u8>) -> Protocol {
    match version {
        Some(0) => Protocol::Http10,
        _ => Protocol::Http11,
    }
}

fn headers(parsed: &[httparse::Header<'_>]) -> Vec<Header> {
    parsed
        .iter()
        .map(|h| Header::new(h.name, h.value))
        .collect()
}

fn describe(error: httparse::Error) -> String {
    match error {
        httparse::Error::HeaderName => "invalid header name".into(),
        httparse::Error::HeaderValue => "invalid header value".into(),
        httparse::Error::NewLine => "invalid line ending".into(),
        httparse::Error::Status => "invalid status line".into(),
        httparse::Error::Token => "invalid token in the request line".into(),
        httparse::Error::TooManyHeaders => format!("more than {MAX_HEADERS} headers"),
        httparse::Error::Version => "invalid HTTP version".into(),
    }
}

/// Parses a request captured whole (head and body).
pub fn parse_request(raw: &[u8]) -> Result<ParsedRequest, String> {
    let mut storage = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let head_len = match request.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("HTTP request head is cut short".into()),
        Err(e) => return Err(format!("malformed HTTP request: {}", describe(e))),
    };
    let headers = headers(request.headers);
    let (body, truncated) = body(&raw[head_len..], &headers, true, 0)?;
    Ok(ParsedRequest {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        protocol: protocol(request.version),
        headers,
        body,
        truncated,
    })
}

/// Parses a response captured whole.
pub fn parse_response(raw: &[u8]) -> Result<ParsedResponse, String> {
    let mut storage = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("HTTP response head is cut short".into()),
        Err(e) => return Err(format!("malformed HTTP response: {}", describe(e))),
    };
    let headers = headers(response.headers);
    let status = u32::from(response.code.unwrap_or_default());
    let (body, truncated) = body(&raw[head_len..], &headers, false, status)?;
    Ok(ParsedResponse {
        status,
        reason: response.reason.unwrap_or_default().to_string(),
        headers,
        body,
        truncated,
    })
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// The body by its framing: chunked, Content-Length, or (responses) to
/// the end of the capture. Returns the body and whether it was cut short.
fn body(
    rest: &[u8],
    headers: &[Header],
    is_request: bool,
    status: u32,
) -> Result<(Vec<u8>, bool), String> {
    let chunked = header(headers, "transfer-encoding").is_some_and(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("chunked")
    });
    if chunked {
        return Ok(dechunk(rest));
    }
    if let Some(value) = header(headers, "content-length") {
        let text = String::from_utf8_lossy(value);
        let len: usize = text
            .trim()
            .parse()
            .map_err(|_| format!("invalid Content-Length {:?}", text.trim()))?;
        let take = len.min(rest.len());
        return Ok((rest[..take].to_vec(), take < len));
    }
    let bodiless = is_request || (100..200).contains(&status) || status == 204 || status == 304;
    if bodiless {
        // Trailing line breaks after a bodiless message are capture noise.
        return Ok((Vec::new(), false));
    }
    Ok((rest.to_vec(), false))
}

/// Decodes a chunked body; a capture cut inside it keeps what arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = memchr::memmem::find(rest, b"\r\n") else {
            return (body, true);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (body, true);
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (body, false);
        }
        if rest.len() < size {
            body.extend_from_slice(rest);
            return (body, true);
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_content_length() {
        let raw =
            b"POST /cart?x=1 HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
        let r = parse_request(raw).unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("POST", "/cart?x=1")
        );
        assert_eq!(
            r.headers
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>(),
            ["Host", "Content-Length", "X-A"]
        );
        assert_eq!(r.body, b"hello");
        assert!(!r.truncated);
    }

    #[test]
    fn chunked_and_cut_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.body, b"hello world");
        assert!(!r.truncated);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.body.as_slice(), r.truncated), (&b"abc"[..], true));
        let raw = b"HTTP/1.0 200 OK\r\n\r\nto the end";
        assert_eq!(parse_response(raw).unwrap().body, b"to the end");
    }

    #[test]
    fn broken_messages_are_errors() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a").err().unwrap(),
            "HTTP request head is cut short"
        );
        assert!(
            parse_request(b"G E T / HTTP/1.1\r\n\r\n")
                .err()
                .unwrap()
                .starts_with("malformed HTTP request")
        );
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        let bad_len = b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(
            parse_request(bad_len).err().unwrap(),
            "invalid Content-Length \"x\""
        );
    }
}
