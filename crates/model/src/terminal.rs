//! Recorded text made safe for a terminal.
//!
//! Methods, paths, authorities, headers and bodies come from whoever sent
//! the traffic (or wrote the HAR file). Printed as they are, an ESC starts
//! a terminal escape sequence, a CR or LF forges a line of reprise's own
//! output, and a bidi override reorders what the reader sees. Every
//! printer of human-facing text passes recorded text through [`escape`]
//! (one line) or [`escape_lines`] (a body, whose line breaks are kept).
//! JSON output needs neither: serde escapes control characters itself.
//!
//! What is escaped, and how it shows:
//!
//! - `\t`, `\n`, `\r` as `\t`, `\n`, `\r`;
//! - other C0 controls and DEL as `\xNN` (ESC is `\x1b`, BEL `\x07`);
//! - C1 controls (U+0080–U+009F), the bidi controls (U+061C, U+200E,
//!   U+200F, U+202A–U+202E, U+2066–U+2069) and the line and paragraph
//!   separators (U+2028, U+2029) as `\u{NNNN}`.
//!
//! Everything else, a backslash included, is shown as it is.
//!
//! JSON written for a terminal goes through [`JsonFormatter`]: the same
//! characters are written as JSON's `\uNNNN` escapes, so the JSON holds
//! the recorded text whole and a terminal shows none of them raw.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` on one line with every control character shown escaped.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// Like [`escape`], but keeps `\n` (and a `\r` just before it) and `\t`:
/// for bodies and other multi-line text, whose lines stay lines.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_format_hazard(c)
}

/// Invisible characters that change how the text around them is shown.
fn is_format_hazard(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

fn escape_with(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let kept = match c {
            '\n' | '\t' => keep_lines,
            '\r' => keep_lines && chars.peek().is_some_and(|&(_, next)| next == '\n'),
            c => !needs_escape(c),
        };
        if kept {
            if let Some(out) = out.as_mut() {
                out.push(c);
            }
            continue;
        }
        let out = out.get_or_insert_with(|| {
            let mut out = String::with_capacity(text.len() + 8);
            out.push_str(&text[..at]);
            out
        });
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// A [`serde_json`] formatter that also writes C1 controls, bidi
/// controls and U+2028/U+2029 as `\uNNNN` (serde escapes C0 controls
/// itself): the same JSON value, safe on a terminal.
#[derive(Debug, Clone, Default)]
pub struct JsonFormatter<F = serde_json::ser::CompactFormatter>(pub F);

impl JsonFormatter<serde_json::ser::PrettyFormatter<'static>> {
    /// Indented output, as `serde_json::to_writer_pretty` writes.
    pub fn pretty() -> Self {
        JsonFormatter(serde_json::ser::PrettyFormatter::new())
    }
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for JsonFormatter<F> {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(needs_escape) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Writes `value` as JSON through [`JsonFormatter`] (`pretty`: indented).
pub fn write_json<W: std::io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
    pretty: bool,
) -> serde_json::Result<()> {
    if pretty {
        let mut serializer =
            serde_json::Serializer::with_formatter(writer, JsonFormatter::pretty());
        value.serialize(&mut serializer)
    } else {
        let mut serializer = serde_json::Serializer::with_formatter(
            writer,
            JsonFormatter::<serde_json::ser::CompactFormatter>::default(),
        );
        value.serialize(&mut serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("GET /a/b?c=d é ✓"), Cow::Borrowed(_)));
        assert!(matches!(escape_lines("a\nb\r\n\tc"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_shown_escaped() {
        assert_eq!(escape("a\x1b[31mb\x07"), "a\\x1b[31mb\\x07");
        assert_eq!(escape("x\r\ny\tz"), "x\\r\\ny\\tz");
        assert_eq!(escape("\0\x7f\u{85}\u{9b}"), "\\x00\\x7f\\u{0085}\\u{009b}");
        assert_eq!(escape("\\x1b"), "\\x1b", "a backslash is shown as it is");
    }

    #[test]
    fn bidi_overrides_and_separators_are_shown_escaped() {
        assert_eq!(escape("a\u{202e}cba"), "a\\u{202e}cba");
        assert_eq!(
            escape("\u{2066}\u{2069}\u{200f}\u{2028}"),
            "\\u{2066}\\u{2069}\\u{200f}\\u{2028}"
        );
    }

    #[test]
    fn lines_keep_their_breaks_but_not_a_lone_cr() {
        assert_eq!(
            escape_lines("one\r\ntwo\rover\x1b]0;t\x07\n"),
            "one\r\ntwo\\rover\\x1b]0;t\\x07\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_escapes_to_safe_lines(text in ".*", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            for text in [text, lossy] {
                let line = escape(&text);
                proptest::prop_assert!(!line.chars().any(needs_escape), "{:?}", line);
                // Escaping twice changes nothing more.
                proptest::prop_assert_eq!(escape(&line), line.clone());
                let lines = escape_lines(&text);
                proptest::prop_assert_eq!(lines.matches('\n').count(), text.matches('\n').count());
                proptest::prop_assert!(
                    !lines.chars().any(|c| needs_escape(c) && !matches!(c, '\n' | '\r' | '\t')),
                    "{:?}", lines
                );
            }
        }
    }

    #[test]
    fn json_for_a_terminal_is_the_same_json() {
        let value = serde_json::json!({"k\u{202e}": ["a\u{1b}\u{85}\u{2028}b", 1, {"x": null}]});
        for pretty in [false, true] {
            let mut out = Vec::new();
            write_json(&mut out, &value, pretty).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains(r"\u202e") && text.contains(r"a\u001b\u0085\u2028b"),
                "{text}"
            );
            assert!(
                !text.chars().any(|c| needs_escape(c) && c != '\n'),
                "{text}"
            );
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn nothing_escaped_holds_a_control() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        for shown in [escape(&all), escape_lines(&all)] {
            assert!(
                !shown
                    .chars()
                    .any(|c| needs_escape(c) && !matches!(c, '\n' | '\t' | '\r'))
            );
        }
        assert!(!escape(&all).contains(['\n', '\r', '\t']));
    }
}
