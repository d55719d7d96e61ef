//! The inbound side of egress linking: every call forwarded to the
//! service carries a `traceparent` whose trace id is recorded with the
//! inbound exchange and registered in the [`LinkRegistry`], so that the
//! calls the service makes while serving it (which carry the same trace
//! id, when its HTTP clients propagate trace context) are linked to it.

use std::sync::Arc;

use http::HeaderMap;
use http::header::HeaderValue;
use reprise_model::display_id;
use reprise_model::trace::{trace_id_from, traceparent};
use reprise_record::LinkRegistry;

/// The `tracestate` key under which `--fresh-trace` keeps the caller's
/// trace id.
pub const CALLER_KEY: &str = "reprise-caller";

/// How inbound calls' trace context is handled when egress is recorded.
#[derive(Debug, Clone)]
pub struct InboundTracing {
    /// Where inbound exchanges are registered.
    pub links: Arc<LinkRegistry>,
    /// `--fresh-trace`: a trace of its own for every inbound exchange.
    pub fresh_trace: bool,
}

/// What becomes of one inbound call's trace context.
#[derive(Debug)]
pub struct InboundTrace {
    /// The trace id the call is forwarded with (and recorded under).
    pub trace_id: [u8; 16],
    /// A `traceparent` to put in place of the call's, and what becomes of
    /// its `tracestate` (`None`: removed); nothing when it is kept.
    replace: Option<(HeaderValue, Option<HeaderValue>)>,
}

impl InboundTracing {
    /// The trace context the inbound exchange `id` with request fields
    /// `headers` is forwarded with: a valid `traceparent` is kept (with
    /// its `tracestate`); a missing or malformed one is replaced by a new
    /// trace whose id is derived from the exchange id (as `reprise
    /// replay` derives it), and its `tracestate` dropped with it (W3C
    /// Trace Context §3.3). Under `--fresh-trace` a valid one is replaced
    /// too, the caller's trace id kept in `tracestate` as
    /// `reprise-caller=<32 hex>`.
    pub fn trace(&self, headers: &HeaderMap, id: &[u8; 16]) -> InboundTrace {
        let caller = headers
            .get("traceparent")
            .and_then(|v| valid_traceparent(v.as_bytes()));
        if let Some(trace_id) = caller
            && !self.fresh_trace
        {
            return InboundTrace {
                trace_id,
                replace: None,
            };
        }
        let trace_id = trace_id_from(id);
        let parent = HeaderValue::from_str(&traceparent(trace_id, id)).ok();
        let state = caller.and_then(|caller| {
            let mut state = format!("{CALLER_KEY}={}", display_id(&caller));
            // The caller's own entries follow ours (new entries go left).
            if let Some(theirs) = headers.get("tracestate").and_then(|v| v.to_str().ok())
                && !theirs.trim().is_empty()
            {
                state.push(',');
                state.push_str(theirs);
            }
            HeaderValue::from_str(&state).ok()
        });
        InboundTrace {
            trace_id,
            replace: parent.map(|p| (p, state)),
        }
    }
}

impl InboundTrace {
    /// Puts the call's trace context in `headers` (the forwarded ones).
    pub fn apply(self, headers: &mut HeaderMap) {
        if let Some((parent, state)) = self.replace {
            headers.insert("traceparent", parent);
            match state {
                Some(state) => {
                    headers.insert("tracestate", state);
                }
                None => {
                    headers.remove("tracestate");
                }
            }
        }
    }
}

/// The trace id of a valid W3C `traceparent` (version, 32-hex trace id,
/// 16-hex parent id, 2-hex flags; lowercase; neither id all zero; version
/// `ff` refused; version `00` has exactly four parts, later versions may
/// add more).
pub fn valid_traceparent(value: &[u8]) -> Option<[u8; 16]> {
    fn hex(part: &str, len: usize) -> Option<Vec<u8>> {
        let lower = part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (part.len() == len && lower)
            .then(|| reprise_model::id::parse_hex(part))
            .flatten()
    }
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('-');
    let version = hex(parts.next()?, 2)?;
    let trace = hex(parts.next()?, 32)?;
    let parent = hex(parts.next()?, 16)?;
    let flags = parts.next()?;
    hex(flags.get(..2)?, 2)?;
    let rest_ok = match version[0] {
        0xff => false,
        0 => flags.len() == 2 && parts.next().is_none(),
        _ => flags.len() == 2,
    };
    let trace: [u8; 16] = trace.try_into().ok()?;
    (rest_ok && trace != [0; 16] && parent != [0; 8]).then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn tracing(fresh_trace: bool) -> InboundTracing {
        InboundTracing {
            links: Arc::new(LinkRegistry::new(Duration::from_secs(30))),
            fresh_trace,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn traceparents_are_checked_as_w3c_says() {
        let trace = valid_traceparent(GOOD.as_bytes());
        assert_eq!(
            trace.map(|t| display_id(&t)),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string())
        );
        assert!(
            valid_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(valid_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_valid_traceparent_is_kept_with_its_tracestate() {
        let mut map = headers(&[("traceparent", GOOD), ("tracestate", "congo=t61")]);
        let trace = tracing(false).trace(&map, &[9; 16]);
        assert_eq!(Some(trace.trace_id), valid_traceparent(GOOD.as_bytes()));
        trace.apply(&mut map);
        assert_eq!(map["traceparent"], GOOD);
        assert_eq!(map["tracestate"], "congo=t61");
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_trace_from_the_exchange_id() {
        let id = [0x42; 16];
        for given in [
            headers(&[]),
            headers(&[("traceparent", "00-zz-01"), ("tracestate", "congo=t61")]),
        ] {
            let mut map = given;
            let trace = tracing(false).trace(&map, &id);
            assert_eq!(trace.trace_id, trace_id_from(&id));
            trace.apply(&mut map);
            assert_eq!(
                valid_traceparent(map["traceparent"].as_bytes()),
                Some(trace_id_from(&id))
            );
            assert!(!map.contains_key("tracestate"));
        }
    }

    #[test]
    fn a_fresh_trace_keeps_the_callers_trace_id_in_tracestate() {
        let mut map = headers(&[("traceparent", GOOD), ("tracestate", "congo=t61")]);
        let id = [0x42; 16];
        let trace = tracing(true).trace(&map, &id);
        assert_eq!(trace.trace_id, trace_id_from(&id));
        trace.apply(&mut map);
        assert_eq!(
            map["tracestate"],
            "reprise-caller=4bf92f3577b34da6a3ce929d0e0e4736,congo=t61"
        );
        assert_eq!(
            valid_traceparent(map["traceparent"].as_bytes()),
            Some(trace_id_from(&id))
        );
    }
}
