//! W3C Trace Context (`traceparent`) as reprise uses it: the link between a
//! replayed call, the recording it replays, and the downstream calls made
//! while serving it.

use crate::exchange::display_id;

/// The trace id derived from an exchange id: its first 16 bytes
/// (zero-padded; never all zero, which Trace Context forbids). `reprise
/// replay` gives each call the trace id of the recorded exchange it
/// replays, and the tower layers derive an inbound call's trace id the
/// same way when it came with none.
pub fn trace_id_from(id: &[u8]) -> [u8; 16] {
    let mut trace = [0u8; 16];
    let n = id.len().min(16);
    trace[..n].copy_from_slice(&id[..n]);
    if trace == [0; 16] {
        trace[15] = 1;
    }
    trace
}

/// A `traceparent` value (version 00, sampled) for `trace_id` and the span
/// named by the last 8 bytes of `span_of` (never all zero).
pub fn traceparent(trace_id: [u8; 16], span_of: &[u8]) -> String {
    let mut span = [0u8; 8];
    let tail = span_of.len().saturating_sub(8);
    for (slot, byte) in span.iter_mut().zip(&span_of[tail..]) {
        *slot = *byte;
    }
    if span == [0; 8] {
        span[7] = 1;
    }
    format!("00-{}-{}-01", display_id(&trace_id), display_id(&span))
}

/// The trace id a `traceparent` value carries, unless it is malformed or
/// all zero.
pub fn trace_id_of(value: &[u8]) -> Option<[u8; 16]> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    if trace.len() != 32 {
        return None;
    }
    let id: [u8; 16] = crate::id::parse_hex(trace)?.try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

/// The `tracestate` key under which `reprise replay` names its run.
pub const RUN_KEY: &str = "reprise";

/// A `tracestate` value naming replay run `run` (lowercase hex).
pub fn tracestate(run: &str) -> String {
    format!("{RUN_KEY}={run}")
}

/// The replay run a `tracestate` value names (its `reprise` entry), unless
/// it has none.
pub fn run_of(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(',').find_map(|entry| {
        let (key, run) = entry.trim().split_once('=')?;
        (key == RUN_KEY && !run.is_empty()).then_some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_found_among_other_vendors_entries() {
        assert_eq!(run_of(tracestate("00ab").as_bytes()), Some("00ab"));
        assert_eq!(
            run_of(b"congo=t61rcWkgMzE, reprise=77 ,rojo=00f067aa"),
            Some("77")
        );
        for none in [
            &b"congo=t61rcWkgMzE"[..],
            b"",
            b"reprise=",
            b"reprise",
            b"\xff",
        ] {
            assert_eq!(run_of(none), None);
        }
    }

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_refused() {
        let trace = [7u8; 16];
        let value = traceparent(trace, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(value, format!("00-{}-030405060708090a-01", "07".repeat(16)));
        assert_eq!(trace_id_of(value.as_bytes()), Some(trace));
        for bad in [
            &b"00-zz-01"[..],
            b"",
            b"00-00000000000000000000000000000000-0000000000000001-01",
            b"00-0102-0000000000000001-01",
            b"\xff",
        ] {
            assert_eq!(trace_id_of(bad), None);
        }
    }

    #[test]
    fn ids_of_any_length_give_a_valid_trace_id() {
        assert_eq!(trace_id_from(&[0xab; 20]), [0xab; 16]);
        assert_eq!(&trace_id_from(&[1, 2])[..3], &[1, 2, 0]);
        assert_ne!(trace_id_from(&[]), [0; 16]);
        assert!(traceparent([1; 16], &[]).ends_with("-0000000000000001-01"));
    }
}
