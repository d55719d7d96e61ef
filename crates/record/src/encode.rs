//! A captured record turned into what is stored: the exchange's encoded
//! bytes, redacted and with the sampling note, written straight from the
//! pooled record ([`Captured::encode`]) without building the
//! [`Exchange`] it describes ([`Captured::to_exchange`], which tests hold
//! equal).

use std::borrow::Cow;

use http::{StatusCode, Version};
use reprise_model::redact::{BodyHead, MARKER, Redactor};
use reprise_model::writer::MessageWriter;
use reprise_model::{
    ErrorKind, Exchange, Flags, GrpcStatus, Protocol, RecordSource, Role, StreamMessage,
    TransportError,
};

use crate::body::BodyCapture;
use crate::captured::{Captured, NO_ORIGIN};
use crate::grpc::grpc_status;
use crate::head::{Fields, get, text};
use crate::recording::{Identity, Origin};

/// `ip:port` as `SocketAddr`'s `Display` writes it, for IPv4 without the
/// formatting machinery: this runs for every exchange recorded, and
/// `to_string` cost more than a tenth of turning one into a record.
pub(crate) fn addr_text(addr: std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(v4) = addr else {
        return addr.to_string();
    };
    let mut out = String::with_capacity(21);
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
    out.push(':');
    out.push_str(digits.format(v4.port()));
    out
}

/// The protocol a call's version and content type say it is.
pub(crate) fn protocol(version: Option<Version>, grpc: bool) -> Protocol {
    match version {
        Some(Version::HTTP_2) if grpc => Protocol::Grpc,
        Some(Version::HTTP_2) => Protocol::Http2,
        Some(Version::HTTP_10) => Protocol::Http10,
        _ => Protocol::Http11,
    }
}

/// What a record says, read once. Both ways of storing it start from
/// here: as an [`Exchange`] ([`Captured::to_exchange`]), or encoded
/// straight into a record's bytes ([`Captured::encode`]), so the two
/// cannot disagree on what an exchange holds.
pub(crate) struct Parts<'a> {
    pub(crate) origin: &'a Origin,
    pub(crate) method: Cow<'a, str>,
    pub(crate) scheme: Cow<'a, str>,
    pub(crate) authority: Cow<'a, str>,
    pub(crate) path: Cow<'a, str>,
    pub(crate) server_addr: Cow<'a, str>,
    pub(crate) request_fields: Fields<'a>,
    pub(crate) response: Option<(StatusCode, Fields<'a>)>,
    pub(crate) request_trailers: Option<Fields<'a>>,
    pub(crate) response_trailers: Option<Fields<'a>>,
    /// A gRPC call's status, from the response's trailers (a
    /// trailers-only response carries it in the head).
    pub(crate) grpc_status: Option<GrpcStatus>,
    /// For a gRPC call (when asked for), both bodies' messages in time
    /// order, and whether the last message of the request, then of the
    /// response, was cut.
    pub(crate) messages: Option<(Vec<StreamMessage>, bool, bool)>,
    pub(crate) error: Option<TransportError>,
    /// The call's own flags, when it has any: (cancelled, upgraded).
    pub(crate) flags: Option<(bool, bool)>,
}

/// Where each body's redaction notes go, in the order
/// [`Redactor::apply`] lists them: request head, trailers and body, then
/// the response's.
pub(crate) const NOTE_PLACES: [&str; 8] = [
    "request.authority",
    "request.query",
    "request.header",
    "request.trailer",
    "request.body",
    "response.header",
    "response.trailer",
    "response.body",
];

impl Captured {
    /// The record's parts; a gRPC call's messages only `with_messages`
    /// (cutting them out of the bodies is the costly part).
    pub(crate) fn parts(&self, with_messages: bool) -> Parts<'_> {
        let origin = self.origin.as_deref().unwrap_or(&NO_ORIGIN);
        let heads = &self.heads[..];
        let mut at = 0;
        let method = text(get(heads, &mut at));
        let target_scheme = get(heads, &mut at);
        let target_authority = get(heads, &mut at);
        let path = text(get(heads, &mut at));
        let request_fields = Fields::at(heads, at);
        let authority = if !target_authority.is_empty() {
            text(target_authority)
        } else if let Some(host) = request_fields
            .get("host")
            .and_then(|host| std::str::from_utf8(host).ok())
        {
            Cow::Borrowed(host)
        } else {
            Cow::Borrowed(origin.authority.as_str())
        };
        let scheme = match (origin.role, target_scheme) {
            (Role::Downstream, scheme) if !scheme.is_empty() => text(scheme),
            _ => Cow::Borrowed(origin.scheme),
        };
        let server_addr = if origin.server_addr.is_empty() {
            authority.clone()
        } else {
            Cow::Borrowed(origin.server_addr.as_str())
        };
        let response = self
            .response
            .map(|(status, start)| (status, Fields::at(heads, start)));
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let response_trailers = response_body.trailer_fields();
        let grpc_status = response.filter(|_| self.grpc).and_then(|(_, headers)| {
            response_trailers
                .and_then(|trailers| grpc_status(&trailers))
                .or_else(|| grpc_status(&headers))
        });
        let messages = if with_messages { self.messages() } else { None };
        // A broken body: the first break is the exchange's error, unless
        // the call had already failed.
        let mut error = self.error.clone();
        for (side, body) in [("request", request_body), ("response", response_body)] {
            if let (None, Some(message)) = (&error, &body.error) {
                error = Some(TransportError {
                    kind: ErrorKind::Reset as i32,
                    message: format!("{side} body: {message}"),
                    after_response_head: response.is_some(),
                });
            }
        }
        // A body dropped unfinished because the call failed is told by the
        // error; `cancelled` is for calls abandoned by their client.
        let cancelled = (request_body.cancelled || response_body.cancelled) && error.is_none();
        Parts {
            origin,
            method,
            scheme,
            authority,
            path,
            server_addr,
            request_fields,
            response,
            request_trailers: request_body.trailer_fields(),
            response_trailers,
            grpc_status,
            messages,
            error,
            flags: (cancelled || self.upgraded).then_some((cancelled, self.upgraded)),
        }
    }

    /// The exchange this record describes, before redaction. The
    /// recorder stores [`Captured::encode`]'s bytes instead, which tests
    /// hold equal to this exchange's encoding; it is here for them and
    /// for callers that want the record as an [`Exchange`].
    pub fn to_exchange(&self) -> Exchange {
        let parts = self.parts(true);
        let origin = parts.origin;
        let Identity {
            id,
            parent_id,
            trace_id,
            peer,
            link,
        } = self.identity;
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let (request_cut, response_cut) = parts
            .messages
            .as_ref()
            .map_or((false, false), |(_, request, response)| {
                (*request, *response)
            });
        let mut request = reprise_model::Request {
            method: parts.method.into_owned(),
            scheme: parts.scheme.into_owned(),
            authority: parts.authority.into_owned(),
            path: parts.path.into_owned(),
            headers: parts.request_fields.to_headers(),
            body_size: request_body.size,
            body_truncated: request_body.truncated || request_cut,
            trailers: parts
                .request_trailers
                .map(Fields::to_headers)
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut response = parts
            .response
            .map(|(status, headers)| reprise_model::Response {
                status: u32::from(status.as_u16()),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                grpc: parts.grpc_status,
                headers: headers.to_headers(),
                body_size: response_body.size,
                body_truncated: response_body.truncated || response_cut,
                trailers: parts
                    .response_trailers
                    .map(Fields::to_headers)
                    .unwrap_or_default(),
                ..Default::default()
            });
        let messages = match parts.messages {
            Some((messages, _, _)) => messages,
            None => {
                request.body = request_body.bytes();
                if let Some(response) = response.as_mut() {
                    response.body = response_body.bytes();
                }
                Vec::new()
            }
        };
        Exchange {
            id: id.to_vec(),
            parent_id: parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            trace_id: trace_id.map(|t| t.to_vec()).unwrap_or_default(),
            recorded_at_ns: self.recorded_at_ns,
            duration_ns: self.duration_ns,
            source: Some(RecordSource {
                service: origin.service.clone(),
                instance: origin.instance.clone(),
                recorder: origin.recorder.into(),
                listener: origin.listener.clone(),
                client_addr: peer.map(addr_text).unwrap_or_default(),
                server_addr: parts.server_addr.into_owned(),
                route: origin.route.clone(),
                ..Default::default()
            }),
            protocol: protocol(self.version, self.grpc) as i32,
            role: origin.role as i32,
            request: Some(request),
            response,
            messages,
            error: parts.error,
            flags: parts.flags.map(|(cancelled, upgraded)| Flags {
                cancelled,
                upgraded,
                ..Default::default()
            }),
            link,
            ..Default::default()
        }
    }

    /// Appends the record of this exchange, redacted by `redactor` and
    /// noting `sample_rate` when below 1, to `out`: the bytes
    /// `reprise_model::encode` writes for [`Captured::to_exchange`]'s
    /// exchange after `prepare`, without building the exchange.
    pub fn encode(&self, redactor: &Redactor, sample_rate: f64, out: &mut Vec<u8>) {
        self.encode_parts(self.parts(true), redactor, sample_rate, out);
    }

    pub(crate) fn encode_parts(
        &self,
        parts: Parts<'_>,
        redactor: &Redactor,
        sample_rate: f64,
        out: &mut Vec<u8>,
    ) {
        let origin = parts.origin;
        let identity = &self.identity;
        let (request_body, response_body) = (&self.request_body, &self.response_body);
        let mut notes: [Vec<String>; 8] = Default::default();
        let [
            request_authority,
            request_query,
            request_head,
            request_trailer,
            request_body_notes,
            response_head,
            response_trailer,
            response_body_notes,
        ] = &mut notes;
        let (request_cut, response_cut) = parts
            .messages
            .as_ref()
            .map_or((false, false), |(_, request, response)| {
                (*request, *response)
            });
        let bodies = parts.messages.is_none();
        let mut w = MessageWriter::new(out);
        w.bytes(1, &identity.id);
        w.bytes(2, identity.parent_id.as_ref().map_or(&[][..], |p| &p[..]));
        w.bytes(3, identity.trace_id.as_ref().map_or(&[][..], |t| &t[..]));
        w.uint(4, self.recorded_at_ns);
        w.uint(5, self.duration_ns);
        w.message(6, |s| {
            s.string(1, &origin.service);
            s.string(2, &origin.instance);
            s.string(3, &origin.listener);
            s.string(4, origin.recorder);
            if let Some(peer) = identity.peer {
                s.string(5, &addr_text(peer));
            }
            s.string(6, &parts.server_addr);
            s.string(8, &origin.route);
        });
        w.uint(7, protocol(self.version, self.grpc) as u64);
        w.uint(8, origin.role as u64);
        w.large_message(9, |r| {
            r.string(1, &parts.method);
            r.string(2, &parts.scheme);
            match redactor.redact_authority(&parts.authority) {
                Some(host) => {
                    request_authority.push("userinfo".to_string());
                    r.string(3, host);
                }
                None => r.string(3, &parts.authority),
            }
            match redactor.redact_target(&parts.path) {
                Some((path, names)) => {
                    request_query.extend(names.iter().map(|n| n.to_string()));
                    r.string(4, &path);
                }
                None => r.string(4, &parts.path),
            }
            let seen = write_fields(r, 5, parts.request_fields, redactor, request_head);
            let (decoded, capped) = if bodies {
                write_body(
                    r,
                    6,
                    request_body,
                    seen,
                    redactor,
                    origin.max_body,
                    request_body_notes,
                )
            } else {
                (false, false)
            };
            if let Some(trailers) = parts.request_trailers {
                write_fields(r, 7, trailers, redactor, request_trailer);
            }
            r.uint(8, request_body.size);
            r.bool(9, request_body.truncated || request_cut || capped);
            r.bool(10, decoded);
        });
        if let Some((status, headers)) = parts.response {
            w.large_message(10, |r| {
                r.uint(1, u64::from(status.as_u16()));
                r.string(2, status.canonical_reason().unwrap_or(""));
                let seen = write_fields(r, 3, headers, redactor, response_head);
                let (decoded, capped) = if bodies {
                    write_body(
                        r,
                        4,
                        response_body,
                        seen,
                        redactor,
                        origin.max_body,
                        response_body_notes,
                    )
                } else {
                    (false, false)
                };
                if let Some(trailers) = parts.response_trailers {
                    write_fields(r, 5, trailers, redactor, response_trailer);
                }
                r.uint(6, response_body.size);
                r.bool(7, response_body.truncated || response_cut || capped);
                r.bool(8, decoded);
                if let Some(grpc) = &parts.grpc_status {
                    r.prost(9, grpc);
                }
            });
        }
        for message in parts.messages.iter().flat_map(|(messages, _, _)| messages) {
            w.prost(11, message);
        }
        if let Some(error) = &parts.error {
            w.prost(12, error);
        }
        let mut redactions: Vec<String> = Vec::new();
        // Walked by reference: moving the eight lists out of the array
        // cost about 200 instructions a record (callgrind).
        for (place, notes) in NOTE_PLACES.iter().zip(&notes) {
            for note in notes {
                let note = format!("{place}:{note}");
                if !redactions.contains(&note) {
                    redactions.push(note);
                }
            }
        }
        let (cancelled, upgraded) = parts.flags.unwrap_or_default();
        if parts.flags.is_some() || !redactions.is_empty() || sample_rate < 1.0 {
            w.message(13, |f| {
                f.bool(1, !redactions.is_empty());
                for note in &redactions {
                    f.each_string(2, note);
                }
                f.bool(3, upgraded);
                f.bool(4, cancelled);
                if sample_rate < 1.0 {
                    f.double(5, sample_rate);
                }
            });
        }
        if let Some(link) = &identity.link {
            w.prost(17, link);
        }
    }
}

/// Redacts `exchange` by `redactor` and notes `sample_rate` when below 1:
/// what [`Captured::encode`] does to the record, done to its exchange.
#[cfg(test)]
pub(crate) fn prepare(exchange: &mut Exchange, redactor: &Redactor, sample_rate: f64) {
    redactor.apply(exchange);
    if sample_rate < 1.0 {
        exchange
            .flags
            .get_or_insert_with(Flags::default)
            .sample_rate = Some(sample_rate);
    }
}

/// The fields of a head the body rules read, as recorded: found while
/// its fields are written, rather than looked up again for the body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BodyFields<'a> {
    /// The first `Content-Type`.
    content_type: Option<&'a [u8]>,
    /// The first `Content-Encoding`.
    content_encoding: Option<&'a [u8]>,
}

/// Writes a block of fields as `field`'s `Header` messages, redacting as
/// [`Redactor::apply`] does; each rule that replaced a value goes to `notes`.
/// Returns the fields a body's rules read.
pub(crate) fn write_fields<'a>(
    w: &mut MessageWriter<'_>,
    field: u32,
    fields: Fields<'a>,
    redactor: &Redactor,
    notes: &mut Vec<String>,
) -> BodyFields<'a> {
    let mut seen = BodyFields::default();
    for (name, value) in fields.iter() {
        // Written as they are: a name comes from an `http::HeaderName`, so
        // it is always visible ASCII, which `to_headers` keeps as it is too.
        match redactor.redact_field(name, value) {
            Some((value, rule)) => {
                notes.push(rule.to_string());
                w.pair(field, name, &value);
            }
            None => w.pair(field, name, value),
        }
        // Both names are 12 or 16 bytes long: most fields are passed over
        // on their length.
        let slot = match name.len() {
            12 if name.eq_ignore_ascii_case(b"content-type") => &mut seen.content_type,
            16 if name.eq_ignore_ascii_case(b"content-encoding") => &mut seen.content_encoding,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    seen
}

/// Writes a body's kept bytes as `field`, after the body rules (which see
/// the head's fields as redacted); what they redacted goes to `notes`.
/// A compressed body is inflated to at most `max_body` bytes. Whether the
/// body written is the original without its Content-Encoding, and whether
/// it was cut at `max_body` once decoded.
pub(crate) fn write_body(
    w: &mut MessageWriter<'_>,
    field: u32,
    body: &BodyCapture,
    head: BodyFields<'_>,
    redactor: &Redactor,
    max_body: usize,
    notes: &mut Vec<String>,
) -> (bool, bool) {
    // A field as `HeaderList::header_str` reads it, the marker when a
    // header rule redacts it.
    fn seen<'v>(redactor: &Redactor, name: &str, value: Option<&'v [u8]>) -> Option<&'v str> {
        match redactor.header_rule(name.as_bytes()) {
            Some(_) => value.map(|_| MARKER),
            None => value.and_then(|v| std::str::from_utf8(v).ok()),
        }
    }
    if body.kept == 0 {
        return (false, false);
    }
    let raw_type = match redactor.header_rule(b"content-type") {
        Some(_) => head.content_type.map(|_| MARKER.as_bytes()),
        None => head.content_type,
    };
    if redactor.may_redact_raw_body(raw_type) {
        let content_type = seen(redactor, "content-type", head.content_type);
        // Only the bodies the rules may change are copied whole.
        let whole = body.bytes();
        let head = BodyHead {
            content_type,
            content_encoding: seen(redactor, "content-encoding", head.content_encoding),
            truncated: body.truncated,
            decoded: false,
            limit: Some(max_body),
        };
        if let Some(done) = redactor.redact_body(&whole, head) {
            notes.extend(done.notes);
            w.bytes(field, &done.body);
            return (done.decoded, done.truncated);
        }
        w.bytes(field, &whole);
        return (false, false);
    }
    w.bytes_in_pieces(field, body.kept, body.frames().map(|(_, frame)| frame));
    (false, false)
}
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{HeaderMap, Uri};
    use reprise_model::Role;

    use super::*;
    use crate::body::SHARE_AT;
    use crate::grpc::is_grpc;
    use crate::head::{put, put_fields};

    #[test]
    fn addresses_read_as_display_writes_them() {
        for addr in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.40:443",
            "[::1]:9000",
            "[fe80::1%2]:1",
        ] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            assert_eq!(addr_text(addr), addr.to_string());
        }
    }

    // --- The record encoded directly is the exchange's encoding -----------

    fn map(fields: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            let name = http::HeaderName::from_bytes(name.as_bytes());
            let value = http::HeaderValue::from_bytes(value);
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }

    fn origin(role: Role) -> Arc<Origin> {
        Arc::new(Origin {
            service: "shop".into(),
            instance: "pod-1".into(),
            recorder: "proxy",
            role,
            listener: "127.0.0.1:8080".into(),
            route: String::new(),
            scheme: "http",
            authority: "fallback.example".into(),
            server_addr: String::new(),
            max_body: 1 << 20,
        })
    }

    /// A record as `Recording` fills one: the request head, then the rest.
    fn record(
        origin: Option<Arc<Origin>>,
        method: &str,
        uri: &str,
        version: Version,
        headers: &[(&str, &[u8])],
    ) -> Captured {
        let mut c = Captured {
            origin,
            version: Some(version),
            recorded_at_ns: 1_700_000_000_123_456_789,
            duration_ns: 5_000,
            ..Default::default()
        };
        c.identity.id = [7; 16];
        let uri: Uri = uri.parse().unwrap_or_default();
        let headers = map(headers);
        c.grpc = is_grpc(&headers);
        put(&mut c.heads, method.as_bytes());
        put(
            &mut c.heads,
            uri.scheme_str().unwrap_or_default().as_bytes(),
        );
        put(
            &mut c.heads,
            uri.authority().map_or("", |a| a.as_str()).as_bytes(),
        );
        put(
            &mut c.heads,
            uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes(),
        );
        put_fields(&mut c.heads, &headers);
        c
    }

    fn respond(c: &mut Captured, status: u16, headers: &[(&str, &[u8])]) {
        let start = c.heads.len();
        put_fields(&mut c.heads, &map(headers));
        c.response = Some((StatusCode::from_u16(status).unwrap_or_default(), start));
    }

    fn frames(body: &mut BodyCapture, frames: &[&[u8]], max: usize) {
        for (i, frame) in frames.iter().enumerate() {
            body.data(100 + i as u64 * 10, &Bytes::copy_from_slice(frame), max);
        }
    }

    /// Both ways of storing `c` give the same bytes, and the `--match`
    /// rules judge its head as they would judge its exchange.
    fn assert_same(c: &Captured, redactor: &Redactor, rate: f64) -> Exchange {
        let mut from_head = Vec::new();
        c.head().encode(redactor, rate, &mut from_head);
        let head = c.head();
        for term in [
            "",
            "method=POST",
            "path=/api/*",
            "status=2xx",
            "status=101",
            "header=content-type",
            "header=host:shop.*",
            "authority=inventory.*",
            "protocol=grpc",
        ] {
            let filter = reprise_model::select::ExchangeFilter::new();
            let filter = if term.is_empty() {
                filter
            } else {
                match filter.add_match(term) {
                    Ok(filter) => filter,
                    Err(error) => panic!("{term}: {error}"),
                }
            };
            assert_eq!(
                filter.matches(&head),
                filter.matches(&c.to_exchange()),
                "{term}"
            );
        }
        let mut direct = Vec::new();
        c.encode(redactor, rate, &mut direct);
        let mut exchange = c.to_exchange();
        prepare(&mut exchange, redactor, rate);
        let decoded = reprise_model::decode(&direct);
        assert_eq!(decoded.ok().as_ref(), Some(&exchange));
        assert_eq!(direct, reprise_model::codec::encode_to_vec(&exchange));
        assert_eq!(from_head, direct, "encoded from the head's parts");
        exchange
    }

    #[test]
    fn an_egress_call_keeps_its_link_and_route() {
        let mut origin = (*origin(Role::Downstream)).clone();
        origin.route = "payments".into();
        let mut c = record(
            Some(Arc::new(origin)),
            "POST",
            "http://pay.example:9000/charge",
            Version::HTTP_11,
            &[("traceparent", b"00-0102-03-01")],
        );
        c.identity.parent_id = Some([3; 16]);
        c.identity.trace_id = Some([4; 16]);
        c.identity.link = Some(reprise_model::Link {
            kind: reprise_model::LinkKind::Trace as i32,
            order: 2,
        });
        respond(&mut c, 200, &[]);
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(exchange.link.map(|l| l.order), Some(2));
        let source = exchange.source.unwrap_or_default();
        assert_eq!(source.route, "payments");
        let request = exchange.request.unwrap_or_default();
        assert_eq!(
            (request.scheme.as_str(), request.authority.as_str()),
            ("http", "pay.example:9000")
        );
        assert_eq!(request.path, "/charge");
    }

    #[test]
    fn a_plain_call_encodes_as_its_exchange() {
        let mut c = record(
            Some(origin(Role::Inbound)),
            "POST",
            "/api/orders?x=1",
            Version::HTTP_11,
            &[
                ("host", b"shop.example:8080"),
                ("authorization", b"Bearer secret"),
                ("cookie", b"a=1"),
                ("content-type", b"application/json"),
                ("x-bin", b"\xff\x01"),
            ],
        );
        c.identity.peer = "10.1.2.3:45678".parse().ok();
        let big = vec![b'z'; SHARE_AT + 10];
        frames(&mut c.request_body, &[b"{\"a\":", b"1}"], 1 << 20);
        respond(
            &mut c,
            201,
            &[("set-cookie", b"s=2"), ("content-type", b"text/plain")],
        );
        frames(&mut c.response_body, &[b"ok ", &big, b"!"], 1 << 20);
        let redactor = Redactor::default();
        let exchange = assert_same(&c, &redactor, 1.0);
        let flags = exchange.flags.unwrap_or_default();
        assert_eq!(
            flags.redactions,
            [
                "request.header:authorization",
                "request.header:cookie",
                "response.header:set-cookie"
            ]
        );
        assert_eq!(
            exchange.request.map(|r| r.authority),
            Some("shop.example:8080".into())
        );
        assert_same(&c, &Redactor::none(), 0.25);
        assert_same(&c, &Redactor::none(), 0.0);
        assert_same(&c, &Redactor::none().header("X-BIN"), 1.0);
    }

    #[test]
    fn json_rules_encode_as_they_apply() {
        let json = |content_type: &'static [u8]| {
            let mut c = record(
                Some(origin(Role::Inbound)),
                "POST",
                "/pay",
                Version::HTTP_11,
                &[
                    ("content-type", content_type),
                    ("authorization", b"[redacted]"),
                ],
            );
            frames(
                &mut c.request_body,
                &[b"{\"card\":{\"number\":", b"\"4111\"},\"password\":\"p\"}"],
                1 << 20,
            );
            respond(&mut c, 200, &[]);
            // Cut at the cap: not readable, so not stored.
            frames(&mut c.response_body, &[b"{\"password\":\"abcdef\"}"], 8);
            c
        };
        let rules = Redactor::default()
            .json_path("$.card.number")
            .and_then(|r| r.json_path("$..password"))
            .unwrap_or_default();
        let exchange = assert_same(&json(b"application/json"), &rules, 1.0);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            [
                "request.body:$.card.number",
                "request.body:$..password",
                "response.body:unparsed"
            ]
        );
        // The content type redacted: the rules see the marker, and leave
        // the body alone.
        assert_same(
            &json(b"application/json"),
            &rules.clone().header("content-type"),
            1.0,
        );
        assert_same(&json(b"text/plain"), &rules, 0.5);
        // Nothing the paths select: untouched; only the cut body is noted.
        let quiet = Redactor::none().json_path("$.nothing").unwrap_or_default();
        let exchange = assert_same(&json(b"application/json"), &quiet, 1.0);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            ["response.body:unparsed"]
        );
    }

    #[test]
    fn query_form_and_compressed_bodies_encode_as_they_apply() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"token\":\"t0ps3cret\",\"n\":1}")
            .unwrap_or_default();
        let gz = gz.finish().unwrap_or_default();
        let mut c = record(
            Some(origin(Role::Inbound)),
            "POST",
            "/cb?state=1&access_token=abc",
            Version::HTTP_11,
            &[
                ("content-type", b"application/x-www-form-urlencoded"),
                ("x-api-key", b"k"),
            ],
        );
        frames(
            &mut c.request_body,
            &[b"user=ann&pass", b"word=hunter2"],
            1 << 20,
        );
        respond(
            &mut c,
            200,
            &[
                ("content-type", b"text/plain"),
                ("content-encoding", b"gzip"),
            ],
        );
        frames(&mut c.response_body, &[&gz], 1 << 20);
        let rules = Redactor::default().json_path("$.token").unwrap_or_default();
        let exchange = assert_same(&c, &rules, 1.0);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            [
                "request.query:access_token",
                "request.header:x-api-key",
                "request.body:form:password",
                "response.body:$.token"
            ]
        );
        let request = exchange.request.unwrap_or_default();
        assert_eq!(request.path, "/cb?state=1&access_token=%5Bredacted%5D");
        let response = exchange.response.unwrap_or_default();
        assert!(response.body_decoded && !request.body_decoded);
        assert_eq!(&response.body[..], b"{\"token\":\"[redacted]\",\"n\":1}");
        // Without the JSON rule the response is stored as it came.
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(&exchange.response.unwrap_or_default().body[..], &gz[..]);
        assert_same(&c, &Redactor::none(), 1.0);
    }

    #[test]
    fn a_grpc_call_encodes_as_its_exchange() {
        let mut c = record(
            Some(origin(Role::Downstream)),
            "POST",
            "https://inventory.internal:443/shop.Stock/Watch",
            Version::HTTP_2,
            &[("content-type", b"application/grpc"), ("te", b"trailers")],
        );
        c.identity.parent_id = Some([1; 16]);
        c.identity.trace_id = Some([2; 16]);
        c.identity.peer = "[::1]:9000".parse().ok();
        frames(
            &mut c.request_body,
            &[&[0, 0, 0], &[0, 2, b'h', b'i']],
            1 << 20,
        );
        let mut trailers = HeaderMap::new();
        trailers.insert("authorization", http::HeaderValue::from_static("x"));
        c.request_body.trailers(&trailers);
        respond(&mut c, 200, &[("content-type", b"application/grpc")]);
        // The second message is cut by the cap.
        frames(
            &mut c.response_body,
            &[&[0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 9, 1, 2]],
            9,
        );
        c.response_body.trailers(&map(&[
            ("grpc-status", b"5"),
            ("grpc-message", b"not%20found"),
        ]));
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(exchange.messages.len(), 3);
        assert_eq!(
            exchange.response.and_then(|r| r.grpc).map(|g| g.code),
            Some(5)
        );
        // Trailers-only: the status is in the head.
        let mut c = record(
            None,
            "POST",
            "/shop.Stock/Get",
            Version::HTTP_2,
            &[("content-type", b"application/grpc+proto")],
        );
        respond(
            &mut c,
            200,
            &[("grpc-status", b"14"), ("grpc-message", b"down")],
        );
        assert_same(&c, &Redactor::default(), 1.0);
    }

    #[test]
    fn repeated_notes_large_bodies_and_grpc_web_encode_as_their_exchanges() {
        // The same rule twice (noted once), with a sampling note and JSON
        // rules on a body past 16 KiB held partly by handle.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "PUT",
            "/big",
            Version::HTTP_11,
            &[
                ("cookie", b"a=1"),
                ("cookie", b"b=2"),
                ("content-type", b"application/json"),
            ],
        );
        let filler = vec![b' '; 20 << 10];
        frames(
            &mut c.request_body,
            &[b"{\"password\":\"p\",", &filler, b"\"n\":1}"],
            1 << 20,
        );
        respond(&mut c, 200, &[("set-cookie", b"x"), ("set-cookie", b"y")]);
        let rules = Redactor::default()
            .json_path("$..password")
            .unwrap_or_default();
        let exchange = assert_same(&c, &rules, 0.125);
        assert_eq!(
            exchange.flags.unwrap_or_default().redactions,
            [
                "request.header:cookie",
                "request.body:$..password",
                "response.header:set-cookie"
            ]
        );
        assert_same(&c, &Redactor::default(), 0.5);
        // gRPC-web over HTTP/1.1: a gRPC call, its messages framed alike.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "POST",
            "/shop.Stock/Get",
            Version::HTTP_11,
            &[("content-type", b"application/grpc-web+proto")],
        );
        frames(&mut c.request_body, &[&[0, 0, 0, 0, 1, 7]], 1 << 20);
        respond(
            &mut c,
            200,
            &[("content-type", b"application/grpc-web+proto")],
        );
        frames(&mut c.response_body, &[&[0, 0, 0, 0, 0]], 1 << 20);
        let exchange = assert_same(&c, &Redactor::default(), 1.0);
        assert_eq!(exchange.messages.len(), 2);
    }

    #[test]
    fn failed_and_odd_calls_encode_as_their_exchanges() {
        // No response: the connection failed; the client gave up.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "GET",
            "/",
            Version::HTTP_10,
            &[("host", b"\xffbad")],
        );
        c.error = Some(TransportError {
            kind: ErrorKind::Connect as i32,
            message: "connection refused".into(),
            after_response_head: false,
        });
        c.request_body.cancelled();
        assert_same(&c, &Redactor::default(), 1.0);
        // Cancelled with no error: flagged.
        c.error = None;
        assert_same(&c, &Redactor::default(), 1.0);
        // Upgraded, and a body that broke after the head.
        let mut c = record(
            Some(origin(Role::Inbound)),
            "GET",
            "/ws",
            Version::HTTP_11,
            &[("upgrade", b"websocket")],
        );
        respond(&mut c, 101, &[("upgrade", b"websocket")]);
        c.upgraded = true;
        c.response_body.broke("reset by peer".into());
        c.response_body.cancelled();
        assert_same(&c, &Redactor::default(), 1.0);
        // A status with no reason, empty heads, empty bodies, no origin.
        let mut c = record(None, "GET", "/", Version::HTTP_11, &[]);
        respond(&mut c, 599, &[]);
        assert_same(&c, &Redactor::none(), 1.0);
        assert_same(&Captured::default(), &Redactor::default(), 1.0);
    }
}
