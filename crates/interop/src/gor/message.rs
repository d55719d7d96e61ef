//! A payload's HTTP/1 message into model parts. The head and the body's
//! framing are read by [`reprise_net::h1`], the one HTTP/1 parser of
//! reprise (the proxy and the replay read answers with it too), so an
//! imported message is framed exactly as a live one would be.

use bytes::{Buf, Bytes, BytesMut};
use reprise_model::{Header, Protocol, Request, Response};
use reprise_net::h1::{self, Framing, MessageHead, StartLine};

/// A request as captured.
pub(super) struct CapturedRequest {
    /// The method.
    pub method: String,
    /// The request target as written.
    pub target: String,
    pub protocol: Protocol,
    pub headers: Vec<Header>,
    pub body: Bytes,
    /// The capture ended before the body did.
    pub truncated: bool,
}

fn protocol(head: &MessageHead<'_>) -> Protocol {
    if head.minor_version == 0 {
        Protocol::Http10
    } else {
        Protocol::Http11
    }
}

fn headers(head: &MessageHead<'_>) -> Vec<Header> {
    head.fields
        .iter()
        .map(|h| Header::new(h.name, h.value))
        .collect()
}

/// The body after a head, and a check that nothing but line breaks
/// follows it: other bytes are a message GoReplay did not write this way
/// (two payloads run together, say), not capture noise.
fn body(raw: &mut BytesMut, framing: Framing, what: &str) -> Result<h1::CapturedBody, String> {
    let body = h1::take_captured_body(raw, framing)
        .map_err(|e| format!("invalid HTTP {what} body: {e}"))?;
    if !raw.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "{} bytes follow the end of the HTTP {what}",
            raw.len()
        ));
    }
    Ok(body)
}

/// Parses a request captured whole (head and body).
pub(super) fn request(mut raw: BytesMut) -> Result<CapturedRequest, String> {
    // The head's parts are copied out so the body can be taken off the
    // same buffer without copying it.
    let (method, target, protocol, headers, framing, len) = {
        let head = h1::parse_request_message(&raw)
            .map_err(|e| format!("malformed HTTP request: {e}"))?
            .ok_or("HTTP request head is cut short")?;
        let StartLine::Request { method, target } = head.start else {
            return Err("not an HTTP request".into());
        };
        let parts = (
            method.to_string(),
            target.to_string(),
            protocol(&head),
            headers(&head),
        );
        (parts.0, parts.1, parts.2, parts.3, head.framing, head.len)
    };
    raw.advance(len);
    let body = body(&mut raw, framing, "request")?;
    Ok(CapturedRequest {
        method,
        target,
        protocol,
        headers,
        body: body.data,
        truncated: body.cut,
    })
}

/// Parses a response captured whole.
pub(super) fn response(mut raw: BytesMut) -> Result<Response, String> {
    let (status, reason, headers, framing, len) = {
        let head = h1::parse_response_message(&raw, false)
            .map_err(|e| format!("malformed HTTP response: {e}"))?
            .ok_or("HTTP response head is cut short")?;
        let StartLine::Response { status, reason } = head.start else {
            return Err("not an HTTP response".into());
        };
        let reason = reason.to_string();
        (status, reason, headers(&head), head.framing, head.len)
    };
    raw.advance(len);
    let body = body(&mut raw, framing, "response")?;
    Ok(Response {
        status: u32::from(status),
        reason,
        headers,
        body_size: body.data.len() as u64,
        body: body.data,
        body_truncated: body.cut,
        ..Default::default()
    })
}

/// A request's model form once its scheme and authority are known.
pub(super) fn model_request(
    captured: CapturedRequest,
    scheme: String,
    authority: String,
    path: String,
) -> Request {
    Request {
        method: captured.method,
        scheme,
        authority,
        path,
        headers: captured.headers,
        body_size: captured.body.len() as u64,
        body: captured.body,
        body_truncated: captured.truncated,
        ..Default::default()
    }
}
