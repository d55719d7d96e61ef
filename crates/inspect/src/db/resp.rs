//! Redis commands and replies shown as `redis-cli` shows them, so a
//! reader sees what they would have seen typing the command.

use reprise_model::terminal::escape;
use reprise_model::{RespKind, RespValue};

/// Deepest nesting rendered; below it a value shows as `…`. Decoded
/// replies are bounded by prost's recursion limit already; this keeps the
/// output readable.
const MAX_DEPTH: usize = 32;

/// `bytes` as `redis-cli` quotes a bulk string: inside `"`, with `\n`,
/// `\r`, `\t`, `\a`, `\b`, `\\`, `\"` and every other byte outside
/// printable ASCII as `\xNN`. Binary-safe and terminal-safe at once.
pub fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// One command argument: bare when it is plain printable ASCII without
/// spaces or quotes, [`quoted`] otherwise (empty, binary, spaces).
pub fn argument(bytes: &[u8]) -> String {
    let plain = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\');
    if plain {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        quoted(bytes)
    }
}

/// The command's name, upper-case (`GET`, `HGETALL`), not escaped; `-`
/// when the command has no name.
pub fn command_name(args: &[Vec<u8>]) -> String {
    match args.first() {
        Some(name) if !name.is_empty() => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "-".to_string(),
    }
}

fn kind(value: &RespValue) -> RespKind {
    RespKind::try_from(value.kind).unwrap_or(RespKind::Unspecified)
}

fn text(value: &RespValue) -> String {
    escape(&String::from_utf8_lossy(&value.data)).into_owned()
}

/// What kind of reply `value` is, in a few characters for the status
/// column of `ls`: a simple string itself (`OK`, `PONG`, up to 12
/// characters), an error's code (`ERR`, `WRONGTYPE`), `int 5`, `nil`,
/// `bulk`, `array 3`, `map 2`...
pub fn status(value: &RespValue) -> String {
    let count = |name: &str| format!("{name} {}", value.items.len());
    match kind(value) {
        RespKind::SimpleString => {
            let text = text(value);
            if text.chars().count() <= 12 && !text.is_empty() {
                text
            } else {
                "string".to_string()
            }
        }
        RespKind::Error | RespKind::BlobError => {
            let first = value.data.split(|&b| b == b' ').next().unwrap_or_default();
            let code = escape(&String::from_utf8_lossy(first)).into_owned();
            if code.is_empty() || code.chars().count() > 16 {
                "error".to_string()
            } else {
                code
            }
        }
        RespKind::Integer => {
            let text = text(value);
            if text.len() <= 20 {
                format!("int {text}")
            } else {
                "int".to_string()
            }
        }
        RespKind::BulkString | RespKind::VerbatimString => "bulk".to_string(),
        RespKind::Null | RespKind::NullArray => "nil".to_string(),
        RespKind::Array => count("array"),
        RespKind::Set => count("set"),
        RespKind::Push => count("push"),
        RespKind::Map => format!("map {}", value.items.len() / 2),
        RespKind::Double => "double".to_string(),
        RespKind::Boolean => match value.data.as_slice() {
            b"t" => "true".to_string(),
            _ => "false".to_string(),
        },
        RespKind::BigNumber => "bignum".to_string(),
        RespKind::Unspecified => "-".to_string(),
    }
}

/// Whether the reply is an error (`-ERR ...` or a RESP3 blob error).
pub fn is_error(value: &RespValue) -> bool {
    matches!(kind(value), RespKind::Error | RespKind::BlobError)
}

/// `value` as `redis-cli` prints it on a terminal: `OK`, `(integer) 5`,
/// `(nil)`, `(error) ERR ...`, `"text"`, and collections numbered `1)`,
/// `2)` (a map `1# "key" => value`, a set `1~ value`), nested ones
/// indented under their number. At most `max_items` elements of each
/// collection are shown (0: all), then `… N more`, and `max_bytes` of
/// each string (0: all).
pub fn render(value: &RespValue, max_items: usize, max_bytes: usize) -> String {
    let mut out = String::new();
    let max = Max {
        items: max_items,
        bytes: max_bytes,
    };
    write_value(value, "", max, 0, &mut out);
    out.push('\n');
    out
}

/// The limits of [`render`].
#[derive(Debug, Clone, Copy)]
struct Max {
    items: usize,
    bytes: usize,
}

/// A string quoted, its first `max` bytes only (0: all).
fn quoted_max(bytes: &[u8], max: usize) -> String {
    match bytes.get(..max) {
        Some(head) if max != 0 && head.len() < bytes.len() => {
            format!("{}…({} bytes)", quoted(head), bytes.len())
        }
        _ => quoted(bytes),
    }
}

fn write_value(value: &RespValue, prefix: &str, max: Max, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH {
        out.push('…');
        return;
    }
    match kind(value) {
        RespKind::SimpleString => out.push_str(&text(value)),
        RespKind::Error | RespKind::BlobError => {
            out.push_str("(error) ");
            out.push_str(&text(value));
        }
        RespKind::Integer => {
            out.push_str("(integer) ");
            out.push_str(&text(value));
        }
        RespKind::Double => {
            out.push_str("(double) ");
            out.push_str(&text(value));
        }
        RespKind::BigNumber => {
            out.push_str("(big number) ");
            out.push_str(&text(value));
        }
        RespKind::Boolean => out.push_str(if value.data.as_slice() == b"t" {
            "(true)"
        } else {
            "(false)"
        }),
        RespKind::BulkString => out.push_str(&quoted_max(&value.data, max.bytes)),
        // The 3-letter format and its `:` are the wire's, not the text's.
        RespKind::VerbatimString => {
            out.push_str(&quoted_max(
                value.data.get(4..).unwrap_or(&value.data),
                max.bytes,
            ));
        }
        RespKind::Null | RespKind::NullArray => out.push_str("(nil)"),
        RespKind::Array | RespKind::Push => collection(value, prefix, ")", max, depth, out),
        RespKind::Set => collection(value, prefix, "~", max, depth, out),
        RespKind::Map => map(value, prefix, max, depth, out),
        RespKind::Unspecified => out.push_str("(unknown reply)"),
    }
}

fn collection(
    value: &RespValue,
    prefix: &str,
    mark: &str,
    max: Max,
    depth: usize,
    out: &mut String,
) {
    let total = value.items.len();
    if total == 0 {
        out.push_str(if mark == "~" {
            "(empty set)"
        } else {
            "(empty array)"
        });
        return;
    }
    let shown = if max.items == 0 {
        total
    } else {
        total.min(max.items)
    };
    let width = shown.to_string().len();
    let inner = format!("{prefix}{}", " ".repeat(width + mark.len() + 1));
    for (i, item) in value.items.iter().take(shown).enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(prefix);
        }
        out.push_str(&format!("{:>width$}{mark} ", i + 1));
        write_value(item, &inner, max, depth + 1, out);
    }
    more(total - shown, prefix, out);
}

fn map(value: &RespValue, prefix: &str, max: Max, depth: usize, out: &mut String) {
    let pairs: Vec<&[RespValue]> = value.items.chunks(2).collect();
    let total = pairs.len();
    if total == 0 {
        out.push_str("(empty hash)");
        return;
    }
    let shown = if max.items == 0 {
        total
    } else {
        total.min(max.items)
    };
    let width = shown.to_string().len();
    let inner = format!("{prefix}{}", " ".repeat(width + 2));
    for (i, pair) in pairs.iter().take(shown).enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(prefix);
        }
        out.push_str(&format!("{:>width$}# ", i + 1));
        if let Some(key) = pair.first() {
            write_value(key, &inner, max, depth + 1, out);
        }
        out.push_str(" => ");
        match pair.get(1) {
            Some(v) => write_value(v, &inner, max, depth + 1, out),
            None => out.push_str("(missing)"),
        }
    }
    more(total - shown, prefix, out);
}

fn more(left: usize, prefix: &str, out: &mut String) {
    if left > 0 {
        out.push('\n');
        out.push_str(prefix);
        out.push_str(&format!("… {left} more"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: RespKind, data: &[u8], items: Vec<RespValue>) -> RespValue {
        RespValue {
            kind: kind as i32,
            data: data.to_vec(),
            items,
            ..Default::default()
        }
    }

    fn bulk(data: &[u8]) -> RespValue {
        v(RespKind::BulkString, data, vec![])
    }

    #[test]
    fn scalars_as_redis_cli() {
        assert_eq!(
            render(&v(RespKind::SimpleString, b"OK", vec![]), 0, 0),
            "OK\n"
        );
        assert_eq!(
            render(&v(RespKind::Integer, b"5", vec![]), 0, 0),
            "(integer) 5\n"
        );
        assert_eq!(render(&v(RespKind::Null, b"", vec![]), 0, 0), "(nil)\n");
        assert_eq!(
            render(&v(RespKind::Error, b"ERR unknown command", vec![]), 0, 0),
            "(error) ERR unknown command\n"
        );
        assert_eq!(
            render(&bulk(b"a\"b\n\x1b\xff"), 0, 0),
            "\"a\\\"b\\n\\x1b\\xff\"\n"
        );
        assert_eq!(
            render(&v(RespKind::Boolean, b"t", vec![]), 0, 0),
            "(true)\n"
        );
        assert_eq!(
            render(&v(RespKind::VerbatimString, b"txt:hi", vec![]), 0, 0),
            "\"hi\"\n"
        );
        assert_eq!(
            render(&v(RespKind::VerbatimString, b"x", vec![]), 0, 0),
            "\"x\"\n"
        );
    }

    #[test]
    fn nested_arrays_are_numbered_and_indented() {
        let inner = v(RespKind::Array, b"", vec![bulk(b"a"), bulk(b"b")]);
        let items: Vec<RespValue> = (0..10)
            .map(|i| if i == 9 { inner.clone() } else { bulk(b"x") })
            .collect();
        let text = render(&v(RespKind::Array, b"", items), 0, 0);
        assert!(text.starts_with(" 1) \"x\"\n 2) \"x\"\n"), "{text}");
        assert!(text.ends_with("10) 1) \"a\"\n    2) \"b\"\n"), "{text}");
        let map = v(RespKind::Map, b"", vec![bulk(b"f"), bulk(b"v"), bulk(b"g")]);
        assert_eq!(
            render(&map, 0, 0),
            "1# \"f\" => \"v\"\n2# \"g\" => (missing)\n"
        );
        assert_eq!(
            render(&v(RespKind::Array, b"", vec![]), 0, 0),
            "(empty array)\n"
        );
    }

    #[test]
    fn long_collections_are_cut() {
        let items = vec![bulk(b"x"); 25];
        let text = render(&v(RespKind::Array, b"", items), 20, 0);
        assert!(text.ends_with("20) \"x\"\n… 5 more\n"), "{text}");
    }

    #[test]
    fn deep_nesting_stops() {
        let mut value = bulk(b"leaf");
        for _ in 0..100 {
            value = v(RespKind::Array, b"", vec![value]);
        }
        assert!(render(&value, 0, 0).contains('…'));
    }

    #[test]
    fn statuses() {
        assert_eq!(status(&v(RespKind::SimpleString, b"OK", vec![])), "OK");
        assert_eq!(
            status(&v(RespKind::Error, b"WRONGTYPE Operation", vec![])),
            "WRONGTYPE"
        );
        assert_eq!(status(&v(RespKind::Integer, b"42", vec![])), "int 42");
        assert_eq!(status(&v(RespKind::Null, b"", vec![])), "nil");
        assert_eq!(
            status(&v(RespKind::Map, b"", vec![bulk(b"a"), bulk(b"b")])),
            "map 1"
        );
        assert_eq!(
            status(&v(RespKind::SimpleString, b"\x1b[2J", vec![])),
            "\\x1b[2J"
        );
    }

    #[test]
    fn arguments() {
        assert_eq!(argument(b"user:42"), "user:42");
        assert_eq!(argument(b"two words"), "\"two words\"");
        assert_eq!(argument(b""), "\"\"");
        assert_eq!(argument(b"\x00\x01"), "\"\\x00\\x01\"");
    }
}
