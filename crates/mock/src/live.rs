//! Mocked gRPC streams answered as they go.
//!
//! A stream whose client waits for an answer before it sends more (a
//! chat-like bidi stream) cannot be mocked by its whole request sequence:
//! that sequence only ends once the answers have come. When a recorded
//! call in scope answered before its request stream ended, the mock sends
//! the recorded head at once and then follows the recording message by
//! message: it commits to the first recorded call (in recorded order, an
//! unused one first) whose request messages so far equal the ones
//! received, once that call has answers due, releases each recorded
//! answer after the request message it followed (at its recorded delay),
//! and ends with the recorded trailers. A request message that leaves the
//! committed call, a stream that ends early or goes on past the recorded
//! end, ends the answer with gRPC UNAVAILABLE and the miss in the
//! trailers, counted like any miss.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use reprise_model::grpc::PREFIX_LEN;
use reprise_model::key::CallKey;
use reprise_model::{Direction, Exchange};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::body::MockBody;
use crate::miss::{MissReason, MockMiss};
use crate::options::Exhausted;
use crate::respond::{MockServed, header_map};
use crate::scope::MockScope;
use crate::service::BoxError;
use crate::store::MockStore;

/// Whether a recorded gRPC call answered before its request stream ended.
pub(crate) fn interactive(exchange: &Exchange) -> bool {
    let last = exchange
        .messages
        .iter()
        .filter(|m| m.direction() == Direction::Request)
        .map(|m| m.offset_ns)
        .max();
    let Some(last) = last else {
        return false;
    };
    exchange
        .messages
        .iter()
        .any(|m| m.direction() == Direction::Response && m.offset_ns < last)
}

/// A recorded stream as the mock follows it.
struct Plan {
    /// Request messages framed as on the wire, with their offsets.
    requests: Vec<(u64, Bytes)>,
    /// Response messages: how many request messages came before each,
    /// its offset, and the message framed.
    responses: Vec<(usize, u64, Bytes)>,
    trailers: HeaderMap,
}

impl Plan {
    fn of(exchange: &Exchange) -> Plan {
        let mut requests = Vec::new();
        let mut responses = Vec::new();
        let mut messages: Vec<_> = exchange.messages.iter().collect();
        messages.sort_by_key(|m| (m.offset_ns, m.direction() == Direction::Response));
        for message in messages {
            let framed = Bytes::from(reprise_model::grpc::frame(message));
            match message.direction() {
                Direction::Request => requests.push((message.offset_ns, framed)),
                _ => responses.push((requests.len(), message.offset_ns, framed)),
            }
        }
        let trailers = exchange
            .response
            .as_ref()
            .map(|r| header_map(&r.trailers, false))
            .unwrap_or_default();
        Plan {
            requests,
            responses,
            trailers,
        }
    }

    /// Whether `received` are this stream's first request messages.
    fn follows(&self, received: &[Bytes]) -> bool {
        received.len() <= self.requests.len()
            && received
                .iter()
                .zip(&self.requests)
                .all(|(got, (_, recorded))| got == recorded)
    }
}

/// What the task answering a stream needs.
pub(crate) struct Stream {
    pub store: Arc<MockStore>,
    pub scope: Option<MockScope>,
    /// The call's key without its body.
    pub head: CallKey,
    /// `METHOD authority/path`, for explanations.
    pub call: String,
    /// From [`MockStore::live_candidates`].
    pub candidates: Vec<usize>,
    /// Which recorded calls those are.
    pub pool: crate::respond::Pool,
}

/// The answer to a stream: the recorded head now, the messages as they
/// are decided by a task that reads `body`.
pub(crate) fn answer<B>(stream: Stream, body: B) -> Response<MockBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (tx, rx) = mpsc::channel(16);
    let mut response = Response::new(MockBody::live(rx));
    let (first, _) = stream.store.recorded(stream.candidates[0]);
    if let Some(recorded) = first.response.as_ref() {
        *response.headers_mut() = header_map(&recorded.headers, true);
    }
    *response.status_mut() = StatusCode::OK;
    response.extensions_mut().insert(MockServed {
        recorded_id: first.id.clone(),
        pool: stream.pool,
    });
    tokio::spawn(follow(stream, body, tx));
    response
}

type Out = mpsc::Sender<(Option<Instant>, Frame<Bytes>)>;

/// Reads the request stream and answers it as the recording did.
async fn follow<B>(stream: Stream, body: B, out: Out)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Stream {
        store,
        scope,
        head,
        call,
        candidates,
        ..
    } = stream;
    let timing = store.options().timing;
    let max = store.options().max_body;
    let plans: Vec<Plan> = candidates
        .iter()
        .map(|&i| Plan::of(store.recorded(i).0))
        .collect();
    let start = Instant::now();
    let mut body = pin!(body);
    let mut pending = BytesMut::new();
    let mut received: Vec<Bytes> = Vec::new();
    let mut arrived: Vec<Instant> = Vec::new();
    let mut committed: Option<usize> = None;
    let mut emitted = 0;
    let mut last_due: Option<Instant> = None;
    let miss = |reason: MissReason, key: Option<&CallKey>| {
        if let Some(scope) = &scope {
            scope.note_miss(&call);
        }
        store.stream_miss(call.clone(), scope.as_ref(), reason, key, &candidates)
    };
    // Decided before the first request message too: a recorded server
    // may speak first.
    let mut ended = false;
    let mut first = true;
    loop {
        if !first {
            // The error is dropped at once: it need not be `Send`.
            let next = body.frame().await.map(|frame| frame.map_err(|_| ()));
            match next {
                None => ended = true,
                // The caller gave up on its own stream: nothing to answer.
                Some(Err(())) => return,
                Some(Ok(frame)) => {
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    pending.extend_from_slice(data);
                    let before = received.len();
                    while let Some(message) = next_message(&mut pending) {
                        received.push(message);
                        arrived.push(Instant::now());
                    }
                    if pending.len() > max {
                        let at = received.len() + 1;
                        let recorded = committed
                            .map(|c| store.recorded(candidates[c]).0.id_hex())
                            .unwrap_or_default();
                        let missed = miss(MissReason::Diverged { recorded, at }, None);
                        let _ = end_with_miss(&out, missed).await;
                        return;
                    }
                    if received.len() == before {
                        // Part of a message: nothing new to decide.
                        continue;
                    }
                }
            }
        }
        first = false;
        if committed.is_none() {
            // The first recorded stream that the messages so far follow; an
            // unused one first, a used one only when the policy repeats.
            let following: Vec<usize> = (0..plans.len())
                .filter(|&c| {
                    plans[c].follows(&received)
                        && (!ended || plans[c].requests.len() == received.len())
                })
                .collect();
            let unused = following
                .iter()
                .copied()
                .find(|&c| !store.is_used(scope.as_ref(), candidates[c]));
            let chosen = match (unused, store.options().exhausted) {
                (Some(c), _) => Some(c),
                (None, Exhausted::Error) => None,
                (None, _) => following.last().copied(),
            };
            match chosen {
                // Answers due (or nothing more to wait for): this is the one.
                Some(c)
                    if ended
                        || plans[c]
                            .responses
                            .iter()
                            .any(|(after, _, _)| *after <= received.len()) =>
                {
                    store.take(scope.as_ref(), candidates[c], &call);
                    committed = Some(c);
                }
                Some(_) => {}
                None => {
                    // Nothing recorded goes this way, or what does is used.
                    let reason = if following.is_empty() {
                        MissReason::NoMatch {
                            recorded: candidates.len(),
                        }
                    } else {
                        MissReason::Exhausted {
                            recorded: following.len(),
                        }
                    };
                    let mut key = head.clone();
                    key.body = received.concat();
                    let missed = miss(reason, Some(&key));
                    let _ = end_with_miss(&out, missed).await;
                    return;
                }
            }
        }
        let Some(c) = committed else { continue };
        let plan = &plans[c];
        if !plan.follows(&received) || (ended && received.len() < plan.requests.len()) {
            let at = received
                .iter()
                .zip(&plan.requests)
                .take_while(|(got, (_, recorded))| got == &recorded)
                .count()
                + 1;
            let recorded = store.recorded(candidates[c]).0.id_hex();
            let missed = miss(MissReason::Diverged { recorded, at }, None);
            let _ = end_with_miss(&out, missed).await;
            return;
        }
        // Each answer after the request message it followed, at its
        // recorded delay from that message.
        while let Some((after, offset, message)) = plan.responses.get(emitted) {
            if *after > received.len() {
                break;
            }
            let due = timing.then(|| {
                let (base, since) = match after.checked_sub(1) {
                    Some(n) => (arrived[n], plan.requests[n].0),
                    None => (start, 0),
                };
                let due = base + Duration::from_nanos(offset.saturating_sub(since));
                last_due.map_or(due, |last| due.max(last))
            });
            last_due = due.or(last_due);
            if out.send((due, Frame::data(message.clone()))).await.is_err() {
                return;
            }
            emitted += 1;
        }
        if ended {
            let _ = out
                .send((last_due, Frame::trailers(plan.trailers.clone())))
                .await;
            return;
        }
    }
}

/// The next whole gRPC message (prefix included) at the front of
/// `pending`.
fn next_message(pending: &mut BytesMut) -> Option<Bytes> {
    let whole = PREFIX_LEN + reprise_model::grpc::message_prefix(pending)?.len;
    (pending.len() >= whole).then(|| pending.split_to(whole).freeze())
}

/// Ends an answer whose head has gone with UNAVAILABLE and the miss.
async fn end_with_miss(out: &Out, miss: MockMiss) -> Result<(), ()> {
    let mut trailers = HeaderMap::new();
    reprise_net::grpc_error_fields(&mut trailers, 14, &miss.to_string());
    trailers.insert(
        reprise_model::protocol::MOCK_MISS_HEADER,
        HeaderValue::from_static("1"),
    );
    out.send((None, Frame::trailers(trailers)))
        .await
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use reprise_model::key::{CallKey, KeyParts};
    use reprise_model::{
        Direction, Exchange, Header, Protocol, Request, Response, Role, StreamMessage,
    };
    use tokio::sync::mpsc;

    use super::{Stream, answer};
    use crate::body::MockBody;
    use crate::options::MockOptions;
    use crate::scope::MockScope;
    use crate::store::MockStore;

    fn message(direction: Direction, offset_ns: u64, text: &str) -> StreamMessage {
        StreamMessage {
            direction: direction as i32,
            offset_ns,
            data: Bytes::from(text.to_string()),
            ..Default::default()
        }
    }

    /// A recorded bidi call whose server spoke first: "welcome", then an
    /// answer to each of two requests.
    fn recorded() -> Exchange {
        Exchange {
            id: vec![7; 16],
            parent_id: vec![1; 16],
            role: Role::Downstream as i32,
            protocol: Protocol::Grpc as i32,
            request: Some(Request {
                method: "POST".into(),
                authority: "chat".into(),
                path: "/chat.Chat/Talk".into(),
                headers: vec![Header::new("content-type", "application/grpc")],
                ..Default::default()
            }),
            response: Some(Response {
                status: 200,
                headers: vec![Header::new("content-type", "application/grpc")],
                trailers: vec![Header::new("grpc-status", "0")],
                ..Default::default()
            }),
            messages: vec![
                message(Direction::Response, 1_000, "welcome"),
                message(Direction::Request, 2_000, "hi"),
                message(Direction::Response, 3_000, "hello"),
                message(Direction::Request, 4_000, "bye"),
                message(Direction::Response, 5_000, "goodbye"),
            ],
            ..Default::default()
        }
    }

    fn framed(text: &str) -> Bytes {
        Bytes::from(reprise_model::grpc::frame(&message(
            Direction::Request,
            0,
            text,
        )))
    }

    type Answer = MockBody;

    async fn next(response: &mut Answer) -> Option<Result<Frame<Bytes>, Infallible>> {
        tokio::time::timeout(std::time::Duration::from_secs(5), response.frame())
            .await
            .expect("a frame within 5 s")
    }

    /// The next frame, which must be the trailers.
    async fn trailers_of(response: &mut Answer) -> http::HeaderMap {
        let frame = next(response).await.unwrap().unwrap();
        frame.into_trailers().unwrap()
    }

    type Say = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

    /// A call to the recorded method in the recorded call's scope, answered
    /// by `answer` from a store with `options`: what the caller says, what
    /// comes back, and the store.
    fn converse(options: MockOptions) -> (Say, Answer, std::sync::Arc<MockStore>) {
        let store = std::sync::Arc::new(MockStore::new(vec![recorded()], options));
        let scope = MockScope::replaying(&[1; 16]);
        let head = CallKey::new(
            KeyParts {
                method: "POST",
                authority: "chat",
                path_and_query: "/chat.Chat/Talk",
                content_type: Some("application/grpc"),
                body: &[],
            },
            false,
        );
        let (candidates, pool) = store
            .live_candidates(Some(&scope), &head)
            .expect("interactive");
        let (say, said) = mpsc::channel(1);
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(said));
        let stream = Stream {
            store: std::sync::Arc::clone(&store),
            scope: Some(scope),
            head,
            call: "POST chat/chat.Chat/Talk".into(),
            candidates,
            pool,
        };
        (say, answer(stream, body).into_body(), store)
    }

    #[tokio::test]
    async fn a_server_that_spoke_first_speaks_before_any_request_message() {
        let (say, mut response, store) = converse(MockOptions {
            timing: false,
            ..MockOptions::default()
        });
        // Nothing said yet: the recorded welcome comes anyway.
        let frame = next(&mut response).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), framed("welcome")[..]);
        say.send(Ok(Frame::data(framed("hi")))).await.unwrap();
        let frame = next(&mut response).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), framed("hello")[..]);
        // The last message in two pieces, then the end.
        let bye = framed("bye");
        say.send(Ok(Frame::data(bye.slice(..3)))).await.unwrap();
        say.send(Ok(Frame::data(bye.slice(3..)))).await.unwrap();
        let frame = next(&mut response).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), framed("goodbye")[..]);
        drop(say);
        let trailers = trailers_of(&mut response).await;
        assert_eq!(trailers["grpc-status"], "0");
        assert!(next(&mut response).await.is_none());
        assert_eq!(store.report().served, 1);
    }

    #[tokio::test]
    async fn a_request_message_larger_than_the_body_cap_ends_the_stream_with_a_miss() {
        let (say, mut response, store) = converse(MockOptions {
            timing: false,
            max_body: 16,
            ..MockOptions::default()
        });
        let frame = next(&mut response).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), framed("welcome")[..]);
        // A prefix announcing 1 MiB, then more than the cap of it.
        let mut huge = vec![0, 0, 0x10, 0, 0];
        huge.extend_from_slice(&[b'x'; 32]);
        say.send(Ok(Frame::data(Bytes::from(huge)))).await.unwrap();
        let trailers = trailers_of(&mut response).await;
        assert_eq!(trailers["grpc-status"], "14");
        assert_eq!(trailers["x-reprise-mock-miss"], "1");
        let message = trailers["grpc-message"].to_str().unwrap();
        assert!(message.contains("request message 1 is not"), "{message}");
        assert!(next(&mut response).await.is_none());
        assert_eq!(store.report().missed, 1);
    }
}
