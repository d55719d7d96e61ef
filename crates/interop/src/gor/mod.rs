//! GoReplay `.gor` files.
//!
//! A file is a sequence of payloads separated by `\n🐵🙈🙉\n`. Each payload
//! is a header line `TYPE ID TIMESTAMP_NS [LATENCY_NS]` and a raw HTTP/1.x
//! message: type 1 a request, 2 its response, 3 the response of a replay
//! (GoReplay's `--output-http-track-response`). Payloads are paired by id.
//!
//! The file is read in one pass, each byte searched once; memory is bounded
//! by the payload being read and the payloads waiting for their pair (at
//! most [`MAX_PENDING`] requests; older ones are written without a
//! response).
//!
//! A payload that cannot be read as GoReplay writes it is skipped and
//! listed with the reason: a damaged separator (the marks without their
//! own line, so two payloads run together), a message that is not valid
//! HTTP/1 (read by `reprise_net::h1`, as the proxy reads live traffic: an
//! invalid chunked body, a `+5` content-length), bytes after the end of
//! the message, a URL reprise could not call.

mod message;
mod payloads;

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;

use bytes::BytesMut;
use reprise_model::{Exchange, Request, Role, Sink};

use crate::error::ImportError;
use crate::{Format, ImportReport};
use message::CapturedRequest;
use payloads::{MARKS, MAX_PAYLOAD, Payload, Payloads};

/// Requests kept while waiting for their response.
const MAX_PENDING: usize = 4096;

/// Whether `text` starts like a GoReplay payload header line.
pub fn looks_like_gor(text: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', text).unwrap_or(text.len());
    parse_meta(&text[..line_end]).is_ok()
}

/// The header line of a payload.
struct Meta {
    kind: u8,
    id: Vec<u8>,
    timestamp_ns: u64,
    latency_ns: Option<u64>,
}

fn parse_meta(line: &[u8]) -> Result<Meta, String> {
    let text =
        std::str::from_utf8(line).map_err(|_| "payload header line is not text".to_string())?;
    let mut fields = text.trim_end_matches('\r').split(' ');
    let kind = match fields.next() {
        Some("1") => 1,
        Some("2") => 2,
        Some("3") => 3,
        other => {
            return Err(format!(
                "unknown payload type {:?} (expected 1, 2 or 3)",
                other.unwrap_or("")
            ));
        }
    };
    let id_text = fields
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("payload header line has no id")?;
    let id = reprise_model::id::parse_hex(id_text).unwrap_or_else(|| id_text.as_bytes().to_vec());
    let timestamp_ns = fields
        .next()
        .and_then(|t| t.parse().ok())
        .ok_or("payload header line has no timestamp")?;
    let latency_ns = fields.next().and_then(|t| t.parse().ok());
    Ok(Meta {
        kind,
        id,
        timestamp_ns,
        latency_ns,
    })
}

struct Pending {
    exchange: Exchange,
    order: u64,
}

/// Imports a `.gor` file.
pub fn import(
    reader: impl BufRead,
    file: &str,
    sink: &mut dyn Sink,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::new(Format::Gor);
    let mut payloads = Payloads::new(reader);
    let mut requests: HashMap<Vec<u8>, Pending> = HashMap::new();
    let mut order: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    // Requests already written, kept for type-3 replayed responses.
    let mut answered: HashMap<Vec<u8>, Request> = HashMap::new();
    let mut answered_order: VecDeque<Vec<u8>> = VecDeque::new();
    let mut responses: HashMap<Vec<u8>, (Meta, BytesMut)> = HashMap::new();
    let mut index = 0u64;
    let mut write = |exchange: Exchange, report: &mut ImportReport| -> Result<(), ImportError> {
        sink.append(exchange).map_err(|source| ImportError::Sink {
            file: file.to_string(),
            source,
        })?;
        report.exchanges += 1;
        Ok(())
    };

    while let Some((offset, payload)) = payloads.next(file)? {
        index += 1;
        let place = format!("payload {index} at byte {offset}");
        let mut payload = match payload {
            Payload::Bytes(payload) if !payload.is_empty() => payload,
            Payload::Bytes(_) => {
                report.skipped.push(format!("{place}: empty payload"));
                continue;
            }
            Payload::TooLarge => {
                report
                    .skipped
                    .push(format!("{place}: larger than {} MiB", MAX_PAYLOAD >> 20));
                continue;
            }
        };
        if let Some(at) = damaged_separator(&payload) {
            report.skipped.push(format!(
                "{place}: a damaged separator at byte {} runs two payloads together \
                 (expected the marks on a line of their own); both skipped",
                offset + at as u64
            ));
            continue;
        }
        let line_end = memchr::memchr(b'\n', &payload).unwrap_or(payload.len());
        let meta = match parse_meta(&payload[..line_end]) {
            Ok(meta) => meta,
            Err(why) => {
                report.skipped.push(format!("{place}: {why}"));
                continue;
            }
        };
        let raw = payload.split_off((line_end + 1).min(payload.len()));
        match meta.kind {
            1 => {
                let exchange =
                    message::request(raw).and_then(|request| request_exchange(&meta, request));
                let mut exchange = match exchange {
                    Ok(exchange) => exchange,
                    Err(why) => {
                        report.skipped.push(format!("{place}: {why}"));
                        continue;
                    }
                };
                if let Some((response_meta, response_raw)) = responses.remove(&meta.id) {
                    attach_response(
                        &mut exchange,
                        &response_meta,
                        response_raw,
                        &place,
                        &mut report,
                    );
                    remember(&mut answered, &mut answered_order, &meta.id, &exchange);
                    write(exchange, &mut report)?;
                    continue;
                }
                requests.insert(
                    meta.id.clone(),
                    Pending {
                        exchange,
                        order: index,
                    },
                );
                order.push_back((index, meta.id));
                while requests.len() > MAX_PENDING {
                    let Some((at, id)) = order.pop_front() else {
                        break;
                    };
                    if let Some(pending) = requests.remove(&id).filter(|p| p.order == at) {
                        write(pending.exchange, &mut report)?;
                    }
                }
            }
            2 => match requests.remove(&meta.id) {
                Some(mut pending) => {
                    attach_response(&mut pending.exchange, &meta, raw, &place, &mut report);
                    remember(
                        &mut answered,
                        &mut answered_order,
                        &meta.id,
                        &pending.exchange,
                    );
                    write(pending.exchange, &mut report)?;
                }
                None => {
                    if responses.len() >= MAX_PENDING {
                        report.unpaired_responses += 1;
                    } else {
                        responses.insert(meta.id.clone(), (meta, raw));
                    }
                }
            },
            _ => {
                let request = answered.get(&meta.id).cloned().or_else(|| {
                    requests
                        .get(&meta.id)
                        .and_then(|p| p.exchange.request.clone())
                });
                let Some(request) = request else {
                    report.unpaired_responses += 1;
                    continue;
                };
                match replayed_exchange(&meta, request, raw) {
                    Ok(exchange) => write(exchange, &mut report)?,
                    Err(why) => report.skipped.push(format!("{place}: {why}")),
                }
            }
        }
    }
    let mut rest: Vec<Pending> = requests.into_values().collect();
    rest.sort_by_key(|p| p.order);
    for pending in rest {
        write(pending.exchange, &mut report)?;
    }
    report.unpaired_responses += responses.len() as u64;
    Ok(report)
}

fn remember(
    answered: &mut HashMap<Vec<u8>, Request>,
    order: &mut VecDeque<Vec<u8>>,
    id: &[u8],
    exchange: &Exchange,
) {
    if let Some(request) = &exchange.request {
        answered.insert(id.to_vec(), request.clone());
        order.push_back(id.to_vec());
        while answered.len() > MAX_PENDING {
            let Some(old) = order.pop_front() else { break };
            answered.remove(&old);
        }
    }
}

/// The exchange of a captured request. Its target (absolute form, or a
/// path with the `Host` field) is checked by the rules HAR's URLs are.
fn request_exchange(meta: &Meta, captured: CapturedRequest) -> Result<Exchange, String> {
    let host = captured
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .unwrap_or_default();
    let target = if captured.target.contains("://") {
        // A proxy request: the target names the server.
        crate::target::absolute(&captured.target)?
    } else {
        if !host.is_empty() {
            crate::target::check_authority(&host).map_err(|why| format!("Host field: {why}"))?;
        }
        crate::target::Target {
            scheme: "http".into(),
            authority: host,
            path: captured.target.clone(),
        }
    };
    let protocol = captured.protocol;
    Ok(Exchange {
        id: meta.id.clone(),
        recorded_at_ns: meta.timestamp_ns,
        protocol: protocol as i32,
        role: Role::Inbound as i32,
        source: Some(reprise_model::RecordSource {
            recorder: "import:gor".into(),
            ..Default::default()
        }),
        request: Some(message::model_request(
            captured,
            target.scheme,
            target.authority,
            target.path,
        )),
        ..Default::default()
    })
}

/// Where, if anywhere, the separator's marks appear in a payload without
/// their own line, followed by what starts a payload: the separator of
/// two payloads that ran together. (Marks inside a body, not followed by
/// a payload header line, are data.)
fn damaged_separator(payload: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(payload, MARKS).find(|&at| {
        let after = &payload[at + MARKS.len()..];
        let start = after
            .iter()
            .position(|b| !matches!(b, b' ' | b'\r' | b'\n'))
            .unwrap_or(after.len());
        looks_like_gor(&after[start..])
    })
}

fn duration(request_ns: u64, meta: &Meta) -> u64 {
    meta.latency_ns
        .unwrap_or_else(|| meta.timestamp_ns.saturating_sub(request_ns))
}

fn attach_response(
    exchange: &mut Exchange,
    meta: &Meta,
    raw: BytesMut,
    place: &str,
    report: &mut ImportReport,
) {
    match message::response(raw) {
        Ok(response) => {
            exchange.duration_ns = duration(exchange.recorded_at_ns, meta);
            exchange.response = Some(response);
        }
        Err(why) => report
            .skipped
            .push(format!("{place}: response dropped: {why}")),
    }
}

fn replayed_exchange(meta: &Meta, request: Request, raw: BytesMut) -> Result<Exchange, String> {
    let response = message::response(raw)?;
    let id = crate::ids::derived_id(meta.timestamp_ns, &[&meta.id, b"replayed"]);
    Ok(Exchange {
        id,
        recorded_at_ns: meta.timestamp_ns,
        duration_ns: meta.latency_ns.unwrap_or(0),
        protocol: reprise_model::Protocol::Http11 as i32,
        role: Role::Inbound as i32,
        source: Some(reprise_model::RecordSource {
            recorder: "import:gor".into(),
            ..Default::default()
        }),
        request: Some(request),
        response: Some(response),
        replay: Some(reprise_model::Replay {
            recorded_id: meta.id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use reprise_model::MemorySink;

    fn gor(payloads: &[&str]) -> Vec<u8> {
        payloads.join("\n🐵🙈🙉\n").into_bytes()
    }

    #[test]
    fn pairs_requests_responses_and_replays() {
        let file = gor(&[
            "1 aa01 1000000000\r\nGET /a HTTP/1.1\r\nHost: shop\r\n\r\n",
            "2 aa01 1005000000 4000000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "3 aa01 2000000000 3000000\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
            "2 bb02 3000000000\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            "1 bb02 2999000000\nPOST /b HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n\r\nabc",
            "1 cc03 4000000000\nGET /c HTTP/1.0\r\n\r\n",
        ]);
        let mut sink = MemorySink::new();
        let report = crate::import_bytes(&file, "t.gor", &mut sink).unwrap();
        assert_eq!(report.exchanges, 4);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let got = sink.exchanges();
        assert_eq!(got[0].id, vec![0xaa, 0x01]);
        assert_eq!(got[0].status(), 200);
        assert_eq!(got[0].duration_ns, 4_000_000);
        assert_eq!(got[0].request.as_ref().unwrap().authority, "shop");
        let replayed = &got[1];
        assert_eq!(replayed.status(), 500);
        assert_eq!(
            replayed.replay.as_ref().unwrap().recorded_id,
            vec![0xaa, 0x01]
        );
        assert_eq!(got[2].status(), 201, "response before its request");
        assert_eq!(got[2].duration_ns, 1_000_000);
        assert_eq!(&got[2].request.as_ref().unwrap().body[..], b"abc");
        assert_eq!(got[3].response, None, "request without response");
        assert_eq!(got[3].protocol(), reprise_model::Protocol::Http10);
    }

    #[test]
    fn a_byte_order_mark_and_blank_lines_before_the_first_payload_are_skipped() {
        let payloads = gor(&[
            "1 aa01 1000000000\nGET /a HTTP/1.1\r\nHost: shop\r\n\r\n",
            "2 aa01 1005000000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ]);
        for prefix in [&b"\xef\xbb\xbf"[..], b"\n\n", b"\xef\xbb\xbf\r\n \n"] {
            let file = [prefix, &payloads[..]].concat();
            let mut sink = MemorySink::new();
            let report = crate::import_bytes(&file, "t.gor", &mut sink).unwrap();
            assert!(
                report.skipped.is_empty(),
                "{prefix:?}: {:?}",
                report.skipped
            );
            assert_eq!(report.exchanges, 1, "{prefix:?}");
            assert_eq!(sink.exchanges()[0].status(), 200, "{prefix:?}");
        }
    }

    #[test]
    fn broken_payloads_are_skipped_and_named() {
        let file = gor(&[
            "1 aa01 1000000000\nGET /a HTTP/1.1\r\n\r\n",
            "1 bb02 1000000000\nG@T /a HTTP/1.1\r\n\r\n",
            "9 cc03 1000000000\nGET / HTTP/1.1\r\n\r\n",
            "1 dd04\nGET / HTTP/1.1\r\n\r\n",
            "1 ee05 1000000000\nGET / HTTP/1.1\r\nHost: x",
        ]);
        let mut sink = MemorySink::new();
        let report = crate::import_bytes(&file, "t.gor", &mut sink).unwrap();
        assert_eq!(report.exchanges, 1);
        assert_eq!(report.skipped.len(), 4);
        assert!(
            report.skipped[0].starts_with("payload 2 at byte "),
            "{}",
            report.skipped[0]
        );
        assert!(
            report.skipped[0]
                .ends_with("malformed HTTP request: invalid request head: invalid token")
        );
        assert!(report.skipped[1].ends_with("unknown payload type \"9\" (expected 1, 2 or 3)"));
        assert!(report.skipped[2].ends_with("payload header line has no timestamp"));
        assert!(report.skipped[3].ends_with("HTTP request head is cut short"));
    }
}
