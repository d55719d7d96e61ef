//! Protobuf messages read without a schema, by field number, as
//! `protoc --decode_raw` does: how reprise shows (and will compare) gRPC
//! payloads it has no descriptor for.

use prost::encoding::{WireType, decode_key, decode_varint};

/// How deep nested messages are followed before a value is left as bytes.
pub const MAX_DEPTH: usize = 32;

/// One field of a message read without a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RawField {
    /// The field number.
    pub number: u32,
    /// The value as the wire format gives it.
    pub value: RawValue,
}

/// A field value read without a schema.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A varint (int32/64, uint32/64, sint, bool, enum).
    Varint(u64),
    /// A 64-bit fixed value (fixed64, sfixed64, double).
    Fixed64(u64),
    /// A 32-bit fixed value (fixed32, sfixed32, float).
    Fixed32(u32),
    /// A length-delimited value that parses whole as a message.
    Message(Vec<RawField>),
    /// A length-delimited value that is valid UTF-8 text.
    Text(String),
    /// Any other length-delimited value.
    Bytes(Vec<u8>),
    /// A group (deprecated wire type), with its fields.
    Group(Vec<RawField>),
}

/// Bytes that are not a protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a protobuf message: {0}")]
pub struct WireError(String);

/// Reads `bytes` as a protobuf message without a schema.
pub fn decode_raw(bytes: &[u8]) -> Result<Vec<RawField>, WireError> {
    decode_at_depth(bytes, 0, None)
}

fn decode_at_depth(
    mut bytes: &[u8],
    depth: usize,
    group: Option<u32>,
) -> Result<Vec<RawField>, WireError> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (number, wire_type) = decode_key(&mut bytes).map_err(|e| WireError(e.to_string()))?;
        let value = match wire_type {
            WireType::Varint => {
                RawValue::Varint(decode_varint(&mut bytes).map_err(|e| WireError(e.to_string()))?)
            }
            WireType::SixtyFourBit => {
                let (head, rest) = bytes
                    .split_at_checked(8)
                    .ok_or_else(|| WireError("fixed64 cut short".into()))?;
                bytes = rest;
                let mut a = [0u8; 8];
                a.copy_from_slice(head);
                RawValue::Fixed64(u64::from_le_bytes(a))
            }
            WireType::ThirtyTwoBit => {
                let (head, rest) = bytes
                    .split_at_checked(4)
                    .ok_or_else(|| WireError("fixed32 cut short".into()))?;
                bytes = rest;
                RawValue::Fixed32(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut bytes).map_err(|e| WireError(e.to_string()))?;
                let len = usize::try_from(len).map_err(|_| WireError("length too large".into()))?;
                let (payload, rest) = bytes
                    .split_at_checked(len)
                    .ok_or_else(|| WireError("length runs past the end".into()))?;
                bytes = rest;
                classify(payload, depth)
            }
            WireType::StartGroup => {
                if depth >= MAX_DEPTH {
                    return Err(WireError("groups nested too deep".into()));
                }
                let (inner, rest) = split_group(bytes, number)?;
                bytes = rest;
                RawValue::Group(decode_at_depth(inner, depth + 1, Some(number))?)
            }
            WireType::EndGroup => {
                return if group == Some(number) {
                    Ok(fields)
                } else {
                    Err(WireError("unexpected end of group".into()))
                };
            }
        };
        fields.push(RawField { number, value });
    }
    match group {
        Some(_) => Err(WireError("group not closed".into())),
        None => Ok(fields),
    }
}

/// The bytes of a group up to (and including) its end tag, and the rest.
fn split_group(bytes: &[u8], number: u32) -> Result<(&[u8], &[u8]), WireError> {
    let mut probe = bytes;
    loop {
        if probe.is_empty() {
            return Err(WireError("group not closed".into()));
        }
        let before = probe;
        let (inner, wire_type) = decode_key(&mut probe).map_err(|e| WireError(e.to_string()))?;
        if wire_type == WireType::EndGroup && inner == number {
            let used = bytes.len() - probe.len();
            return Ok((&bytes[..used], probe));
        }
        prost::encoding::skip_field(
            wire_type,
            inner,
            &mut probe,
            prost::encoding::DecodeContext::default(),
        )
        .map_err(|e| WireError(e.to_string()))?;
        if probe.len() == before.len() {
            return Err(WireError("no progress in group".into()));
        }
    }
}

/// A length-delimited payload: a message if it parses whole as one (and
/// is not more plausibly text), else text, else bytes.
fn classify(payload: &[u8], depth: usize) -> RawValue {
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|t| t.chars().all(|c| !c.is_control() || c.is_whitespace()));
    if depth < MAX_DEPTH
        && !payload.is_empty()
        && let Ok(fields) = decode_at_depth(payload, depth + 1, None)
        && (text.is_none() || !fields.is_empty() && looks_structured(&fields))
    {
        return RawValue::Message(fields);
    }
    match text {
        Some(text) => RawValue::Text(text.to_string()),
        None => RawValue::Bytes(payload.to_vec()),
    }
}

/// Printable text can also parse as a message by accident; believe the
/// message reading only when its field numbers are small and sensible.
fn looks_structured(fields: &[RawField]) -> bool {
    fields.iter().all(|f| (1..=1000).contains(&f.number))
}

/// Renders fields as indented text, one field per line: `1: 150`,
/// `2: "text"`, `3 { ... }`.
pub fn render(fields: &[RawField]) -> String {
    let mut out = String::new();
    render_into(fields, 0, &mut out);
    out
}

fn render_into(fields: &[RawField], indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    for field in fields {
        match &field.value {
            RawValue::Varint(v) => out.push_str(&format!("{pad}{}: {v}\n", field.number)),
            RawValue::Fixed64(v) => out.push_str(&format!("{pad}{}: 0x{v:016x}\n", field.number)),
            RawValue::Fixed32(v) => out.push_str(&format!("{pad}{}: 0x{v:08x}\n", field.number)),
            RawValue::Text(t) => out.push_str(&format!("{pad}{}: {t:?}\n", field.number)),
            RawValue::Bytes(b) => {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                out.push_str(&format!("{pad}{}: 0x{hex}\n", field.number));
            }
            RawValue::Message(inner) | RawValue::Group(inner) => {
                out.push_str(&format!("{pad}{} {{\n", field.number));
                render_into(inner, indent + 1, out);
                out.push_str(&format!("{pad}}}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn decodes_nested_messages_like_decode_raw() {
        let header = crate::pb::Header {
            name: "content-type".into(),
            value: b"\x00\xff".to_vec(),
        };
        let request = crate::pb::Request {
            method: "GET".into(),
            headers: vec![header],
            body_size: 150,
            ..Default::default()
        };
        let fields = decode_raw(&request.encode_to_vec()).unwrap();
        assert_eq!(
            render(&fields),
            "1: \"GET\"\n5 {\n  1: \"content-type\"\n  2: 0x00ff\n}\n8: 150\n"
        );
    }

    #[test]
    fn fixed_and_garbage() {
        let bytes = [0x0d, 1, 0, 0, 0, 0x11, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            render(&decode_raw(&bytes).unwrap()),
            "1: 0x00000001\n2: 0x0000000000000002\n"
        );
        assert!(decode_raw(&[0x0a, 0x05, 1]).is_err());
        assert!(decode_raw(&[0xff; 12]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(fields) = decode_raw(&bytes) {
                let _ = render(&fields);
            }
        }
    }
}
