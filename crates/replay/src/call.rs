//! A recorded exchange turned into a call ready to send: the request as
//! recorded, minus what belonged to the recorded connection, plus the
//! rewrites and the replay's correlation headers. Prepared once, on the
//! reader's thread; the workers only clone handles.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use reprise_model::grpc::frame;
use reprise_model::{Direction, Exchange, Protocol, Request};
use serde::Serialize;

use crate::config::{ProtocolChoice, Rewrites, Target};

/// The replay correlation header: the recorded exchange a call replays.
pub use reprise_model::protocol::REPLAY_HEADER;

/// The HTTP version a call is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// HTTP/1.1 on a keep-alive connection of its own.
    Http1,
    /// HTTP/2, multiplexed (h2c with prior knowledge, or ALPN h2 on TLS).
    Http2,
}

/// One call, ready to send.
#[derive(Debug)]
pub struct Call {
    /// The recorded exchange this call replays.
    pub recorded_id: Vec<u8>,
    /// When the recorded call started, ns since the epoch.
    pub recorded_at_ns: u64,
    /// Index of its endpoint in the replay's endpoint table.
    pub endpoint: usize,
    /// Version it is sent in.
    pub wire: Wire,
    /// A gRPC call (its status comes from the trailers).
    pub grpc: bool,
    /// Method.
    pub method: Method,
    /// Origin form for HTTP/1.1, absolute for HTTP/2.
    pub uri: Uri,
    /// Headers to send, Host included on HTTP/1.1.
    pub headers: HeaderMap,
    /// Body, when it is not a sequence of messages.
    pub body: Bytes,
    /// gRPC request messages with their prefix, and their recorded offset
    /// from the start of the call (ns).
    pub messages: Vec<(u64, Bytes)>,
    /// Request trailers.
    pub trailers: Option<HeaderMap>,
    /// The encoded HTTP/1.1 request head (empty for HTTP/2).
    pub h1_head: Bytes,
    /// The status the recording was answered with, when it holds one.
    pub recorded_status: Option<u16>,
    /// The gRPC status the recording was answered with, when it holds
    /// one.
    pub recorded_grpc: Option<i32>,
}

impl Call {
    /// Bytes the call holds, for bounding what a replay keeps in memory.
    pub fn weight(&self) -> usize {
        256 + self.h1_head.len()
            + self.body.len()
            + self.messages.iter().map(|(_, m)| m.len()).sum::<usize>()
    }
}

/// Why a recorded exchange is not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// A downstream call: mocks answer those, they are not replayed.
    Downstream,
    /// The exchange holds no request (an import without one).
    NoRequest,
    /// An upgraded connection (WebSocket, CONNECT): its frames were not
    /// recorded.
    Upgraded,
    /// The request body was cut at the size cap when recorded.
    TruncatedBody,
    /// A gRPC call with `--protocol h1`.
    GrpcNeedsHttp2,
    /// The recorded method is not a valid HTTP method.
    BadMethod,
    /// The path, after rewrites, is not a valid request target.
    BadPath,
}

impl Skip {
    /// What the report says.
    pub fn label(self) -> &'static str {
        match self {
            Skip::Downstream => "downstream calls (answered by mocks, not replayed)",
            Skip::NoRequest => "no request recorded",
            Skip::Upgraded => "upgraded connections (frames not recorded)",
            Skip::TruncatedBody => "request body cut at the size cap when recorded",
            Skip::GrpcNeedsHttp2 => "gRPC calls with --protocol h1 (gRPC needs HTTP/2)",
            Skip::BadMethod => "invalid method",
            Skip::BadPath => "invalid path after rewrites",
        }
    }
}

/// Turns recorded exchanges into calls for one target.
#[derive(Debug, Clone)]
pub struct CallBuilder {
    target: Target,
    rewrites: Rewrites,
    protocol: ProtocolChoice,
    /// This run's `tracestate` (`reprise=<run>`), the same on every call.
    tracestate: HeaderValue,
}

impl CallBuilder {
    /// A builder for calls to `target`.
    pub fn new(target: Target, rewrites: Rewrites, protocol: ProtocolChoice) -> Self {
        // A run: the random end of a fresh id, 8 bytes in hex.
        let run = reprise_model::display_id(&reprise_model::id::new_id_bytes()[8..]);
        let tracestate = HeaderValue::from_str(&reprise_model::trace::tracestate(&run))
            .unwrap_or_else(|_| HeaderValue::from_static("reprise=0"));
        CallBuilder {
            target,
            rewrites,
            protocol,
            tracestate,
        }
    }

    /// The call replaying `exchange`, or why there is none. `endpoint` is
    /// the index the caller gave its endpoint.
    pub fn build(&self, exchange: &Exchange, endpoint: usize) -> Result<Call, Skip> {
        if exchange.is_downstream() {
            return Err(Skip::Downstream);
        }
        let request = exchange.request.as_ref().ok_or(Skip::NoRequest)?;
        let upgraded = exchange.flags.as_ref().is_some_and(|f| f.upgraded);
        if upgraded || request.method.eq_ignore_ascii_case("CONNECT") {
            return Err(Skip::Upgraded);
        }
        // gRPC-Web is made for HTTP/1.1: only gRPC proper needs HTTP/2.
        let grpc = exchange.protocol() == Protocol::Grpc
            || request.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("content-type")
                    && reprise_net::versions::needs_h2_content_type(&h.value)
            });
        let wire = match (self.protocol, exchange.protocol()) {
            (ProtocolChoice::Http1, _) if grpc => return Err(Skip::GrpcNeedsHttp2),
            (ProtocolChoice::Http1, _) => Wire::Http1,
            (ProtocolChoice::Http2, _) => Wire::Http2,
            (ProtocolChoice::Http1ExceptGrpc, _) if grpc => Wire::Http2,
            (ProtocolChoice::Http1ExceptGrpc, _) => Wire::Http1,
            (ProtocolChoice::Recorded, Protocol::Http2 | Protocol::Grpc | Protocol::Http3) => {
                Wire::Http2
            }
            (ProtocolChoice::Recorded, _) if grpc => Wire::Http2,
            (ProtocolChoice::Recorded, _) => Wire::Http1,
        };
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| Skip::BadMethod)?;

        let mut messages = Vec::new();
        for message in &exchange.messages {
            if message.direction() == Direction::Request {
                if message.truncated {
                    return Err(Skip::TruncatedBody);
                }
                messages.push((message.offset_ns, Bytes::from(frame(message))));
            }
        }
        if request.body_truncated {
            return Err(Skip::TruncatedBody);
        }
        let body = if messages.is_empty() {
            request.body.clone()
        } else {
            Bytes::new()
        };

        let authority = match (&self.rewrites.preserve_host, request.authority.as_str()) {
            (true, recorded) if !recorded.is_empty() => recorded,
            _ => self.target.authority.as_str(),
        };
        let path = self.path(request);
        let uri = match wire {
            Wire::Http1 => Uri::try_from(path.as_str()).map_err(|_| Skip::BadPath)?,
            Wire::Http2 => Uri::builder()
                .scheme(self.target.scheme())
                .authority(authority)
                .path_and_query(path.as_str())
                .build()
                .map_err(|_| Skip::BadPath)?,
        };
        if !path.starts_with('/') && path != "*" {
            return Err(Skip::BadPath);
        }

        let trailers = reprise_net::headers::recorded(&request.trailers);
        let trailers = (!trailers.is_empty()).then_some(trailers);
        let headers = self.headers(
            exchange, request, wire, authority, &body, &messages, &trailers,
        );
        let h1_head = match wire {
            Wire::Http1 => {
                crate::h1::request_head(&method, &uri, &headers, body.len(), trailers.is_some())
            }
            Wire::Http2 => Bytes::new(),
        };
        Ok(Call {
            recorded_id: exchange.id.clone(),
            recorded_at_ns: exchange.recorded_at_ns,
            endpoint,
            wire,
            grpc,
            method,
            uri,
            headers,
            body,
            messages,
            trailers,
            h1_head,
            recorded_status: exchange
                .response
                .as_ref()
                .and_then(|r| u16::try_from(r.status).ok())
                .filter(|status| *status != 0),
            recorded_grpc: exchange
                .response
                .as_ref()
                .and_then(|r| r.grpc.as_ref())
                .map(|g| g.code),
        })
    }

    /// The recorded path and query (origin form, even when the recorder
    /// saw an absolute URL), after `--rewrite-path`.
    fn path(&self, request: &Request) -> String {
        let mut path = request.path.clone();
        if !path.starts_with('/')
            && let Ok(uri) = path.parse::<Uri>()
            && uri.scheme().is_some()
        {
            path = uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        }
        if path.is_empty() {
            path.push('/');
        }
        for (regex, replacement) in &self.rewrites.paths {
            path = regex.replace_all(&path, replacement.as_str()).into_owned();
        }
        path
    }

    #[allow(clippy::too_many_arguments)]
    fn headers(
        &self,
        exchange: &Exchange,
        request: &Request,
        wire: Wire,
        authority: &str,
        body: &Bytes,
        messages: &[(u64, Bytes)],
        trailers: &Option<HeaderMap>,
    ) -> HeaderMap {
        let mut headers = reprise_net::headers::recorded(&request.headers);
        reprise_net::hop::strip_hop_by_hop(&mut headers, false);
        headers.remove(header::HOST);
        // A length that no longer matches (redaction changed the body, or
        // it goes out chunked) is left for the client to compute.
        reprise_net::hop::drop_stale_length(
            &mut headers,
            body.len(),
            !messages.is_empty() || trailers.is_some(),
        );
        if request.body_decoded {
            headers.remove(header::CONTENT_ENCODING);
        }
        if let (Wire::Http1, Some(trailers)) = (wire, trailers) {
            // HTTP/1.1 sends only the trailers the Trailer field announces.
            let names: Vec<&str> = trailers.keys().map(HeaderName::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
                headers.insert(header::TRAILER, value);
            }
        }
        for name in &self.rewrites.drop_headers {
            headers.remove(name);
        }
        for (name, value) in &self.rewrites.set_headers {
            headers.insert(name.clone(), value.clone());
        }
        if wire == Wire::Http2 {
            // HTTP/2 forbids connection-specific fields; one set with
            // --set-header would fail every call.
            reprise_net::hop::strip_hop_by_hop(&mut headers, false);
        }
        if wire == Wire::Http1 {
            // A call recorded over HTTP/2 may have its cookie split.
            reprise_net::versions::join_cookies(&mut headers);
        }
        if wire == Wire::Http1
            && let Ok(host) = HeaderValue::from_str(authority)
        {
            headers.insert(header::HOST, host);
        }
        let id = exchange.id_hex();
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert(HeaderName::from_static(REPLAY_HEADER), value);
        }
        if let Ok(value) = HeaderValue::from_str(&traceparent(&exchange.id)) {
            headers.insert(HeaderName::from_static("traceparent"), value);
            // Which run this is: a mock apart from the service keeps the
            // calls of two replays of one exchange apart by it (W3C trace
            // propagation passes it on with the traceparent).
            headers.insert(
                HeaderName::from_static("tracestate"),
                self.tracestate.clone(),
            );
        }
        headers
    }
}

/// The W3C `traceparent` of a replayed call: the trace id is the recorded
/// exchange id's first 16 bytes (zero-padded), the parent span id its
/// last 8 of those, so a mock can tell which recorded exchange a
/// downstream call belongs to from the trace alone.
pub fn traceparent(recorded_id: &[u8]) -> String {
    let trace = reprise_model::trace::trace_id_from(recorded_id);
    reprise_model::trace::traceparent(trace, &trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_model::{Header, StreamMessage};

    fn exchange(protocol: Protocol, path: &str) -> Exchange {
        Exchange {
            id: vec![0xab; 16],
            protocol: protocol as i32,
            request: Some(Request {
                method: "POST".into(),
                authority: "prod.example:443".into(),
                path: path.into(),
                headers: vec![
                    Header::new("Host", "prod.example:443"),
                    Header::new("Connection", "keep-alive, x-hop"),
                    Header::new("x-hop", "1"),
                    Header::new("Content-Length", "5"),
                    Header::new("x-keep", "a"),
                    Header::new("x-keep", "b"),
                    Header::new(":authority", "prod.example"),
                    Header::new(
                        "traceparent",
                        "00-11111111111111111111111111111111-2222222222222222-01",
                    ),
                ],
                body: Bytes::from_static(b"hello"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn builder() -> CallBuilder {
        CallBuilder::new(
            Target::parse("http://127.0.0.1:9").unwrap(),
            Rewrites::default(),
            ProtocolChoice::Recorded,
        )
    }

    #[test]
    fn answers_are_judged_against_the_recorded_status() {
        use crate::stats::Outcome;
        let answered = |status: u32, grpc: Option<i32>| {
            let mut recorded = exchange(Protocol::Http11, "/a");
            recorded.response = Some(reprise_model::Response {
                status,
                grpc: grpc.map(|code| reprise_model::GrpcStatus {
                    code,
                    ..Default::default()
                }),
                ..Default::default()
            });
            builder().build(&recorded, 0).unwrap()
        };
        // A 404 or 503 the recording had too is a faithful answer.
        assert_eq!(
            Outcome::of_answer(&answered(404, None), 404, None),
            Outcome::Ok
        );
        assert_eq!(
            Outcome::of_answer(&answered(503, None), 503, None),
            Outcome::Ok
        );
        assert_eq!(
            Outcome::of_answer(&answered(200, None), 503, None),
            Outcome::Status {
                got: 503,
                recorded: Some(200)
            }
        );
        // Nothing recorded: below 400 is as good as it gets.
        let unanswered = builder()
            .build(&exchange(Protocol::Http11, "/a"), 0)
            .unwrap();
        assert_eq!(Outcome::of_answer(&unanswered, 204, None), Outcome::Ok);
        assert_eq!(
            Outcome::of_answer(&unanswered, 404, None),
            Outcome::Status {
                got: 404,
                recorded: None
            }
        );
        // gRPC: the recorded status, NOT_FOUND included; none is OK.
        let not_found = answered(200, Some(5));
        assert_eq!(Outcome::of_answer(&not_found, 200, Some(5)), Outcome::Ok);
        assert_eq!(
            Outcome::of_answer(&not_found, 200, None),
            Outcome::Grpc {
                got: 0,
                recorded: Some(5)
            }
        );
        assert_eq!(
            Outcome::of_answer(&answered(200, Some(0)), 200, None),
            Outcome::Ok
        );
    }

    #[test]
    fn grpc_web_and_split_cookies_go_over_http1() {
        let mut recorded = exchange(Protocol::Http2, "/shop.Shop/Get");
        let request = recorded.request.as_mut().unwrap();
        request.headers.push(Header::new("cookie", "a=1"));
        request.headers.push(Header::new("cookie", "b=2"));
        request
            .headers
            .push(Header::new("content-type", "application/grpc-web+proto"));
        let call = CallBuilder::new(
            Target::parse("http://127.0.0.1:9").unwrap(),
            Rewrites::default(),
            ProtocolChoice::Http1,
        )
        .build(&recorded, 0)
        .unwrap();
        assert_eq!(call.wire, Wire::Http1);
        let cookies: Vec<_> = call.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
    }

    #[test]
    fn http1_call_keeps_the_request_and_targets_the_target() {
        let call = builder()
            .build(&exchange(Protocol::Http11, "/a?b=1"), 0)
            .unwrap();
        assert_eq!(call.wire, Wire::Http1);
        assert_eq!(call.uri, "/a?b=1");
        assert_eq!(call.headers["host"], "127.0.0.1:9");
        assert_eq!(call.headers["content-length"], "5");
        let keep: Vec<_> = call.headers.get_all("x-keep").iter().collect();
        assert_eq!(keep, ["a", "b"]);
        assert!(!call.headers.contains_key("x-hop"));
        assert!(!call.headers.contains_key("connection"));
        assert_eq!(call.headers[REPLAY_HEADER], "ab".repeat(16));
        assert_eq!(
            call.headers["traceparent"],
            format!("00-{}-{}-01", "ab".repeat(16), "ab".repeat(8))
        );
        assert_eq!(call.body, "hello");
    }

    #[test]
    fn every_call_of_a_run_names_the_run_and_runs_differ() {
        let (one, other) = (builder(), builder());
        let run = |builder: &CallBuilder, path: &str| {
            let call = builder.build(&exchange(Protocol::Http11, path), 0).unwrap();
            let state = call.headers["tracestate"].as_bytes().to_vec();
            reprise_model::trace::run_of(&state).unwrap().to_string()
        };
        let first = run(&one, "/a");
        assert_eq!(first.len(), 16, "{first}");
        assert_eq!(run(&one, "/b"), first);
        assert_ne!(run(&other, "/a"), first);
    }

    #[test]
    fn http2_call_has_an_absolute_uri_and_no_host() {
        let call = builder()
            .build(&exchange(Protocol::Http2, "/a"), 0)
            .unwrap();
        assert_eq!(call.wire, Wire::Http2);
        assert_eq!(call.uri, "http://127.0.0.1:9/a");
        assert!(!call.headers.contains_key("host"));
    }

    #[test]
    fn rewrites_and_preserved_host() {
        let mut rewrites = Rewrites::default();
        rewrites.rewrite_path("^/v1/=/v2/").unwrap();
        rewrites.set_header("x-env: staging").unwrap();
        rewrites.drop_header("x-keep").unwrap();
        rewrites.preserve_host = true;
        let b = CallBuilder::new(
            Target::parse("http://127.0.0.1:9").unwrap(),
            rewrites,
            ProtocolChoice::Recorded,
        );
        let call = b
            .build(&exchange(Protocol::Http11, "/v1/x/v1/"), 0)
            .unwrap();
        assert_eq!(call.uri, "/v2/x/v1/");
        assert_eq!(call.headers["host"], "prod.example:443");
        assert_eq!(call.headers["x-env"], "staging");
        assert!(!call.headers.contains_key("x-keep"));
    }

    #[test]
    fn changed_body_length_is_recomputed() {
        let mut ex = exchange(Protocol::Http11, "/");
        ex.request.as_mut().unwrap().body = Bytes::from_static(b"[redacted]");
        let call = builder().build(&ex, 0).unwrap();
        assert!(!call.headers.contains_key("content-length"));
    }

    #[test]
    fn grpc_messages_are_framed_and_skips_are_explained() {
        let mut ex = exchange(Protocol::Grpc, "/pkg.Svc/Method");
        ex.messages = vec![
            StreamMessage {
                direction: Direction::Request as i32,
                offset_ns: 7,
                data: Bytes::from_static(b"hi"),
                ..Default::default()
            },
            StreamMessage {
                direction: Direction::Response as i32,
                data: Bytes::from_static(b"ho"),
                ..Default::default()
            },
        ];
        let call = builder().build(&ex, 0).unwrap();
        assert!(call.grpc);
        assert_eq!(call.messages, [(7, Bytes::from_static(b"\0\0\0\0\x02hi"))]);
        assert!(call.body.is_empty());
        let h1 = CallBuilder::new(
            Target::parse("http://127.0.0.1:9").unwrap(),
            Rewrites::default(),
            ProtocolChoice::Http1,
        );
        assert_eq!(h1.build(&ex, 0).unwrap_err(), Skip::GrpcNeedsHttp2);
        ex.messages[0].truncated = true;
        assert_eq!(builder().build(&ex, 0).unwrap_err(), Skip::TruncatedBody);
        ex.parent_id = vec![1];
        assert_eq!(builder().build(&ex, 0).unwrap_err(), Skip::Downstream);
    }

    #[test]
    fn absolute_recorded_paths_become_origin_form() {
        let call = builder()
            .build(&exchange(Protocol::Http11, "http://prod.example/x?y"), 0)
            .unwrap();
        assert_eq!(call.uri, "/x?y");
    }

    #[test]
    fn http2_calls_never_carry_connection_fields_even_when_set() {
        let mut rewrites = Rewrites::default();
        rewrites.set_header("Connection: close").unwrap();
        rewrites.set_header("Keep-Alive: 5").unwrap();
        rewrites.set_header("x-set: 1").unwrap();
        let builder = |protocol| {
            CallBuilder::new(
                Target::parse("http://127.0.0.1:9").unwrap(),
                rewrites.clone(),
                protocol,
            )
        };
        let ex = exchange(Protocol::Http11, "/a");
        let h2 = builder(ProtocolChoice::Http2).build(&ex, 0).unwrap();
        assert!(!h2.headers.contains_key("connection"));
        assert!(!h2.headers.contains_key("keep-alive"));
        assert_eq!(h2.headers["x-set"], "1");
        assert!(h2.h1_head.is_empty());
        // HTTP/1.1 sends what the user set, in the encoded head too.
        let h1 = builder(ProtocolChoice::Http1).build(&ex, 0).unwrap();
        assert_eq!(h1.headers["connection"], "close");
        let head = String::from_utf8_lossy(&h1.h1_head).into_owned();
        assert!(head.starts_with("POST /a HTTP/1.1\r\n"), "{head:?}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head:?}");
        // The recorded length still holds: sent once, as recorded.
        assert_eq!(head.matches("content-length: 5\r\n").count(), 1, "{head:?}");
        assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    }

    #[test]
    fn http1_except_grpc_sends_http2_calls_over_http1_and_grpc_over_http2() {
        let builder = CallBuilder::new(
            Target::parse("http://127.0.0.1:9").unwrap(),
            Rewrites::default(),
            ProtocolChoice::Http1ExceptGrpc,
        );
        let h2 = builder.build(&exchange(Protocol::Http2, "/a"), 0).unwrap();
        let head = String::from_utf8_lossy(&h2.h1_head).into_owned();
        assert!(head.starts_with("POST /a HTTP/1.1\r\n"), "{head:?}");
        let grpc = builder.build(&exchange(Protocol::Grpc, "/b"), 0).unwrap();
        assert!(grpc.h1_head.is_empty());
    }
}
