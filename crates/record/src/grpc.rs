//! gRPC read out of a captured call: whether it is one (its content
//! type), its status (trailers, or a trailers-only head) and its
//! messages, cut out of the bodies' kept frames.

use http::HeaderMap;
use reprise_model::grpc::{Deframer, percent_decode};
use reprise_model::{Direction, GrpcStatus, HeaderList, StreamMessage};

use crate::body::BodyCapture;
use crate::captured::Captured;

/// A gRPC call, by its content type.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| reprise_model::grpc::is_grpc_content_type(v.as_bytes()))
}

/// The gRPC status a block of fields carries.
pub(crate) fn grpc_status(fields: &impl HeaderList) -> Option<GrpcStatus> {
    let code = fields.header_str("grpc-status")?.trim().parse().ok()?;
    let message = fields
        .header("grpc-message")
        .map_or_else(String::new, percent_decode);
    Some(GrpcStatus {
        code,
        message,
        ..Default::default()
    })
}

/// Cuts a gRPC body's kept frames into messages (see [`Deframer`]).
pub(crate) fn grpc_messages(
    body: &BodyCapture,
    direction: Direction,
    end_ns: u64,
) -> (Vec<StreamMessage>, bool) {
    // The frames are already cut at the size cap: keep all they hold.
    let mut deframer = Deframer::new(direction, usize::MAX);
    for (offset_ns, frame) in body.frames() {
        deframer.push(offset_ns, frame);
    }
    deframer.finish(end_ns)
}

impl Captured {
    /// For a gRPC call, both bodies' messages in time order, and whether
    /// the last message of the request, then of the response, was cut.
    pub(crate) fn messages(&self) -> Option<(Vec<StreamMessage>, bool, bool)> {
        self.grpc.then(|| {
            let end = self.duration_ns;
            let (mut messages, request_cut) =
                grpc_messages(&self.request_body, Direction::Request, end);
            let (responses, response_cut) =
                grpc_messages(&self.response_body, Direction::Response, end);
            messages.extend(responses);
            messages.sort_by_key(|m| m.offset_ns);
            (messages, request_cut, response_cut)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::body_of;

    #[test]
    fn grpc_messages_across_frames() {
        // Two messages, cut across three frames at awkward places.
        let b = body_of(
            &[&[0, 0, 0], &[0, 2, b'h', b'i', 1, 0], &[0, 0, 1, b'!']],
            1 << 20,
        );
        let (messages, truncated) = grpc_messages(&b, Direction::Response, 99);
        assert!(!truncated);
        let got: Vec<(u64, &[u8], bool)> = messages
            .iter()
            .map(|m| (m.offset_ns, &m.data[..], m.compressed))
            .collect();
        assert_eq!(got, [(10, &b"hi"[..], false), (20, &b"!"[..], true)]);
    }

    #[test]
    fn grpc_message_past_the_end_is_kept_truncated() {
        let b = body_of(&[&[0, 0, 0, 3, 232, b'a', b'b', b'c']], 1 << 20);
        let (messages, truncated) = grpc_messages(&b, Direction::Request, 99);
        assert!(truncated);
        assert_eq!(
            (
                &messages[0].data[..],
                messages[0].size,
                messages[0].truncated,
                messages[0].offset_ns
            ),
            (&b"abc"[..], 1000, true, 99)
        );
    }
}
