//! Replayed calls as exchanges, for the results tape: what was sent, what
//! came back, and which recorded exchange it replays, so a comparison can
//! run offline later.

use http::HeaderMap;
use reprise_model::redact::Redactor;
use reprise_model::{
    Exchange, Header, Protocol, RecordSource, Replay, Request, Response, Role, StreamMessage,
    Timings, TransportError,
};

use crate::call::{Call, Wire};
use crate::client::{Answer, Failure};

/// One finished call, as the worker saw it.
pub struct Finished<'a> {
    /// The call.
    pub call: &'a Call,
    /// What came back.
    pub result: &'a Result<Answer, Failure>,
    /// Target URL.
    pub target: &'a str,
    /// Due, sent and ended times, ns since the epoch.
    pub scheduled_at_ns: u64,
    /// When it left.
    pub sent_at_ns: u64,
    /// From the send to the end.
    pub duration_ns: u64,
}

fn model_headers(map: &HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| Header::new(name.as_str(), value.as_bytes()))
        .collect()
}

impl Finished<'_> {
    /// The exchange, redacted by `redactor`.
    pub fn into_exchange(self, redactor: &Redactor) -> Exchange {
        let call = self.call;
        let protocol = match (call.wire, call.grpc) {
            (Wire::Http2, true) => Protocol::Grpc,
            (Wire::Http2, false) => Protocol::Http2,
            (Wire::Http1, _) => Protocol::Http11,
        };
        let mut messages: Vec<StreamMessage> = call
            .messages
            .iter()
            .map(|(offset_ns, framed)| StreamMessage {
                direction: reprise_model::Direction::Request as i32,
                offset_ns: *offset_ns,
                compressed: framed.first() == Some(&1),
                size: framed.len().saturating_sub(5) as u64,
                data: framed.slice(5.min(framed.len())..),
                truncated: false,
            })
            .collect();
        let request = Request {
            method: call.method.to_string(),
            scheme: call.uri.scheme_str().unwrap_or("http").to_string(),
            authority: call
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    call.headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                })
                .unwrap_or_default(),
            path: call
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            headers: model_headers(&call.headers),
            body: call.body.clone(),
            body_size: call.body.len() as u64,
            trailers: call
                .trailers
                .as_ref()
                .map(model_headers)
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut exchange = Exchange {
            id: reprise_model::id::new_id(),
            recorded_at_ns: self.sent_at_ns,
            duration_ns: self.duration_ns,
            source: Some(RecordSource {
                recorder: "replay".to_string(),
                server_addr: self.target.to_string(),
                ..Default::default()
            }),
            protocol: protocol as i32,
            role: Role::Inbound as i32,
            request: Some(request),
            replay: Some(Replay {
                recorded_id: call.recorded_id.clone(),
                scheduled_at_ns: self.scheduled_at_ns,
                sent_at_ns: self.sent_at_ns,
                target: self.target.to_string(),
            }),
            ..Default::default()
        };
        match self.result {
            Ok(answer) => {
                exchange.response = Some(Response {
                    status: u32::from(answer.status.as_u16()),
                    reason: answer.status.canonical_reason().unwrap_or("").to_string(),
                    headers: model_headers(&answer.headers),
                    body: answer.body.clone(),
                    body_size: answer.body_size,
                    body_truncated: (answer.body.len() as u64) < answer.body_size
                        && answer.messages.is_empty(),
                    trailers: answer
                        .trailers
                        .as_ref()
                        .map(model_headers)
                        .unwrap_or_default(),
                    grpc: answer.grpc.clone(),
                    ..Default::default()
                });
                messages.extend(answer.messages.iter().cloned());
                exchange.timings = Some(Timings {
                    wait_ns: Some(crate::client::nanos(answer.head_after)),
                    ..Default::default()
                });
            }
            Err(failure) => {
                exchange.error = Some(TransportError {
                    kind: failure.kind as i32,
                    message: failure.message.clone(),
                    after_response_head: failure.after_head,
                });
            }
        }
        messages.sort_by_key(|m| m.offset_ns);
        exchange.messages = messages;
        redactor.apply(&mut exchange);
        exchange
    }
}
