//! Answers: a recorded response as the caller gets it, and the answer to
//! a missed call.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use reprise_model::{Direction, Exchange, Header, Protocol};
use tokio::time::Instant;

use crate::body::MockBody;
use crate::miss::MockMiss;

/// Which recorded exchange answered a mocked call: in the response's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockServed {
    /// The recorded exchange's id.
    pub recorded_id: Vec<u8>,
    /// Which recorded calls it came from.
    pub pool: Pool,
}

/// Which recorded calls answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pool {
    /// The calls recorded under the exchange its scope replays.
    #[default]
    Scope,
    /// A shared recorded call ([`MockOptions::shared`](crate::MockOptions::shared)).
    Shared,
    /// The unlinked pool: calls recorded with no parent.
    Unlinked,
    /// All recorded calls ([`MockOptions::global`](crate::MockOptions::global)).
    Global,
}

impl Pool {
    /// How a log line says it: empty for the scope's own calls.
    pub fn label(self) -> &'static str {
        match self {
            Pool::Scope => "",
            Pool::Shared => " (shared)",
            Pool::Unlinked => " (from the unlinked pool)",
            Pool::Global => " (from all recorded calls)",
        }
    }
}

/// The recorded downstream call failed below HTTP; the mocked call fails
/// the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recorded failure ({kind}): {message}")]
pub struct RecordedFailure {
    /// `connect`, `timeout`, `reset`, ...
    pub kind: &'static str,
    /// What the recorder noted.
    pub message: String,
}

pub(crate) fn header_map(headers: &[Header], drop_length: bool) -> HeaderMap {
    let mut map = reprise_net::headers::recorded(headers);
    if drop_length {
        map.remove(http::header::CONTENT_LENGTH);
    }
    reprise_net::hop::strip_hop_by_hop(&mut map, false);
    map
}

/// The recorded response of `exchange`, as a response to hand the caller.
pub(crate) fn respond(
    exchange: &Exchange,
    pool: Pool,
    timing: bool,
) -> Result<Response<MockBody>, RecordedFailure> {
    let Some(recorded) = exchange.response.as_ref() else {
        let (kind, message) = exchange
            .error
            .as_ref()
            .map_or(("other", "no response was recorded".to_string()), |e| {
                (reprise_model::error_kind_label(e.kind()), e.message.clone())
            });
        return Err(RecordedFailure { kind, message });
    };
    if recorded.body_truncated {
        tracing::warn!(
            recorded = %exchange.id_hex(),
            "reprise mock: the recorded response body was cut at the size cap; serving what was kept"
        );
    }
    let now = Instant::now();
    let (data, end) = if exchange.protocol() == Protocol::Grpc {
        let messages: Vec<_> = exchange
            .messages
            .iter()
            .filter(|m| m.direction() == Direction::Response)
            .collect();
        let first = messages.first().map_or(0, |m| m.offset_ns);
        let at =
            |offset: u64| timing.then(|| now + Duration::from_nanos(offset.saturating_sub(first)));
        let data: Vec<(Option<Instant>, Bytes)> = messages
            .iter()
            .map(|m| (at(m.offset_ns), Bytes::from(reprise_model::grpc::frame(m))))
            .collect();
        let end = messages.last().and_then(|m| at(m.offset_ns));
        (data, end)
    } else {
        (vec![(None, recorded.body.clone())], None)
    };
    let trailers =
        (!recorded.trailers.is_empty()).then(|| (end, header_map(&recorded.trailers, false)));
    let mut response = Response::new(MockBody::new(data, trailers));
    *response.status_mut() = StatusCode::from_u16(u16::try_from(recorded.status).unwrap_or(0))
        .unwrap_or(StatusCode::BAD_GATEWAY);
    // A body stored decoded (redacted inside its compression, or imported
    // from a HAR) is served as it is stored: identity, its own length.
    let decoded = recorded.body_decoded;
    *response.headers_mut() = header_map(&recorded.headers, recorded.body_truncated || decoded);
    // A length that no longer holds (a redacted body) is hyper's to set.
    reprise_net::hop::drop_stale_length(
        response.headers_mut(),
        recorded.body.len(),
        exchange.protocol() == Protocol::Grpc || !recorded.trailers.is_empty(),
    );
    if decoded {
        response
            .headers_mut()
            .remove(http::header::CONTENT_ENCODING);
    }
    response.extensions_mut().insert(MockServed {
        recorded_id: exchange.id.clone(),
        pool,
    });
    Ok(response)
}

/// The answer to a missed call: 502 with `x-reprise-mock-miss`, or for
/// gRPC a trailers-only UNAVAILABLE; the miss in its extensions.
pub(crate) fn miss_response(miss: MockMiss, grpc: bool) -> Response<MockBody> {
    let text = miss.to_string();
    let mut response = if grpc {
        let mut response = Response::new(MockBody::new(Vec::new(), None));
        // UNAVAILABLE.
        reprise_net::grpc_error_fields(response.headers_mut(), 14, &text);
        response
    } else {
        let mut response =
            Response::new(MockBody::new(vec![(None, Bytes::from(text + "\n"))], None));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    response.headers_mut().insert(
        reprise_model::protocol::MOCK_MISS_HEADER,
        HeaderValue::from_static("1"),
    );
    response.extensions_mut().insert(miss);
    response
}

/// The mock's own answer, not a recorded one (a recorded failure below
/// HTTP, a request body that broke off or is too large): `status`, a line
/// of text, and the header `flag` set.
pub fn own_answer(
    status: StatusCode,
    flag: &'static str,
    text: String,
) -> Response<http_body_util::Full<Bytes>> {
    let mut response = Response::new(http_body_util::Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(flag, HeaderValue::from_static("1"));
    response
}
