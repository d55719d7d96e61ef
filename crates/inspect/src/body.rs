//! Bodies for people: decoded from their Content-Encoding, then shown as
//! JSON, text, protobuf fields or a hex dump, by content type and content.

use reprise_model::{Header, HeaderList};

use crate::format::hex_dump;
use reprise_model::coding::MAX_DECODED;
use reprise_model::grpc::{MessagePrefix, PREFIX_LEN, message_prefix};

/// A body as shown: notes about it (encoding, cut) and its text.
pub struct ShownBody {
    /// Remarks shown above the body, e.g. "gzip-decoded from 312 bytes".
    pub notes: Vec<String>,
    /// The body rendered for a terminal.
    pub text: String,
}

fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/grpc")
        || content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/protobuf")
        || content_type.starts_with("application/vnd.google.protobuf")
}

/// [`show_stored_body`] of a body not cut (the tests' shorthand).
#[cfg(test)]
pub fn show_body(body: &[u8], headers: &[Header], decoded: bool, max: usize) -> ShownBody {
    show_stored_body(body, headers, decoded, false, max)
}

/// Renders `body` sent with `headers`. `decoded` says the recorder already
/// removed the Content-Encoding; `truncated` that the body was cut at the
/// size cap (a compressed one shows what decodes before the cut instead
/// of "does not decode"); `max` cuts what is shown (0: no cut).
pub fn show_stored_body(
    body: &[u8],
    headers: &[Header],
    decoded: bool,
    truncated: bool,
    max: usize,
) -> ShownBody {
    let mut notes = Vec::new();
    let coding = headers
        .header_str("content-encoding")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut owned = None;
    if !decoded {
        match reprise_model::coding::decode(&coding, body, MAX_DECODED, truncated) {
            Ok(Some(plain)) => {
                notes.push(format!("{coding}-decoded from {} bytes", body.len()));
                owned = Some(plain);
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("{e}; shown as stored")),
        }
    }
    let body = owned.as_deref().unwrap_or(body);
    let shown = if max > 0 && body.len() > max {
        notes.push(format!(
            "showing the first {max} of {} bytes (--full shows all)",
            body.len()
        ));
        &body[..max]
    } else {
        body
    };
    let content_type = headers
        .header_str("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = if is_protobuf(&content_type) {
        protobuf(
            shown,
            content_type.starts_with("application/grpc"),
            &mut notes,
        )
    } else {
        plain(shown, &content_type)
    };
    ShownBody { notes, text }
}

fn plain(body: &[u8], content_type: &str) -> String {
    let jsonish = content_type.contains("json")
        || matches!(
            body.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        );
    if jsonish
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && let Ok(pretty) = serde_json::to_string_pretty(&value)
    {
        return pretty + "\n";
    }
    match std::str::from_utf8(body) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            let mut text = text.to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text
        }
        _ => hex_dump(body),
    }
}

/// Protobuf bodies as raw fields; gRPC bodies are first split into their
/// length-prefixed messages.
fn protobuf(body: &[u8], grpc: bool, notes: &mut Vec<String>) -> String {
    if !grpc {
        return protobuf_message(body);
    }
    let mut out = String::new();
    let mut rest = body;
    let mut index = 0;
    while let Some(MessagePrefix { compressed, len }) = message_prefix(rest) {
        let Some(message) = rest.get(PREFIX_LEN..PREFIX_LEN + len) else {
            notes.push(format!("message {index} is cut short"));
            out.push_str(&hex_dump(&rest[PREFIX_LEN..]));
            return out;
        };
        out.push_str(&format!(
            "message {index}{} ({len} bytes)\n",
            if compressed { ", compressed" } else { "" }
        ));
        if compressed {
            out.push_str(&hex_dump(message));
        } else {
            out.push_str(&indent(&protobuf_message(message)));
        }
        rest = &rest[PREFIX_LEN + len..];
        index += 1;
    }
    if !rest.is_empty() {
        out.push_str(&hex_dump(rest));
    }
    out
}

/// One protobuf message as raw fields, or hex when it is not one.
pub fn protobuf_message(bytes: &[u8]) -> String {
    match reprise_model::wire::decode_raw(bytes) {
        Ok(fields) if !fields.is_empty() => reprise_model::wire::render(&fields),
        Ok(_) => String::new(),
        Err(_) => hex_dump(bytes),
    }
}

/// Indents every line by two spaces.
pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn h(name: &str, value: &str) -> Header {
        Header::new(name, value)
    }

    #[test]
    fn json_is_pretty_and_gzip_is_decoded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":[1,2]}").unwrap();
        let body = gz.finish().unwrap();
        let shown = show_body(
            &body,
            &[
                h("Content-Encoding", "gzip"),
                h("content-type", "application/json"),
            ],
            false,
            0,
        );
        assert_eq!(shown.text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
        assert_eq!(
            shown.notes,
            vec![format!("gzip-decoded from {} bytes", body.len())]
        );
    }

    #[test]
    fn brotli_and_raw_deflate_are_decoded() {
        let text = b"{\"a\":1}";
        let mut br = Vec::new();
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        w.write_all(text).unwrap();
        drop(w);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(text).unwrap();
        let raw = raw.finish().unwrap();
        for (coding, body) in [("br", br), ("deflate", raw)] {
            let shown = show_body(
                &body,
                &[
                    h("Content-Encoding", coding),
                    h("content-type", "application/json"),
                ],
                false,
                0,
            );
            assert_eq!(shown.text, "{\n  \"a\": 1\n}\n", "{coding}");
            assert_eq!(
                shown.notes,
                vec![format!("{coding}-decoded from {} bytes", body.len())]
            );
        }
        // Cut at the size cap: what decodes before the cut.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'a'; 4096]).unwrap();
        let whole = gz.finish().unwrap();
        let cut = &whole[..whole.len() - 8];
        assert!(
            show_body(cut, &[h("Content-Encoding", "gzip")], false, 0).notes[0]
                .contains("does not decode")
        );
        let shown = show_stored_body(cut, &[h("Content-Encoding", "gzip")], false, true, 0);
        assert_eq!(
            shown.notes,
            vec![format!("gzip-decoded from {} bytes", cut.len())]
        );
        let shown = show_body(b"xx", &[h("Content-Encoding", "gzip")], false, 0);
        assert!(
            shown.notes[0].contains("does not decode"),
            "{:?}",
            shown.notes
        );
    }

    #[test]
    fn grpc_frames_are_split_and_decoded() {
        let body = [0u8, 0, 0, 0, 3, 0x08, 0x96, 0x01];
        let shown = show_body(&body, &[h("content-type", "application/grpc")], false, 0);
        assert_eq!(shown.text, "message 0 (3 bytes)\n  1: 150\n");
    }

    #[test]
    fn binary_is_hex_and_long_bodies_are_cut() {
        let shown = show_body(&[0u8, 159, 146, 150], &[], false, 0);
        assert!(shown.text.starts_with("00000000  00 9f 92 96"));
        let shown = show_body(b"abcdef", &[h("content-type", "text/plain")], false, 3);
        assert_eq!(shown.text, "abc\n");
        assert_eq!(
            shown.notes,
            vec!["showing the first 3 of 6 bytes (--full shows all)".to_string()]
        );
    }
}
