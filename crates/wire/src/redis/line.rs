//! Reading one CRLF-terminated line out of chunks that split it anywhere.

use std::borrow::Cow;

use super::error::RespError;

/// A line being read: the part seen in earlier chunks, bounded.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    partial: Vec<u8>,
}

/// How a line may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// CRLF, as every reply and every multibulk header has.
    Crlf,
    /// LF with an optional CR before it, as Redis reads inline commands.
    LfOrCrlf,
}

impl LineReader {
    /// Takes bytes of `input` up to its line end. `Some(line)` (without
    /// the line end) when the line is complete; `None` when `input` ran
    /// out first (what was taken is kept for the next call).
    pub(crate) fn read<'i>(
        &mut self,
        input: &mut &'i [u8],
        limit: usize,
        ending: Ending,
    ) -> Result<Option<Cow<'i, [u8]>>, RespError> {
        let Some(lf) = input.iter().position(|&b| b == b'\n') else {
            if self.partial.len().saturating_add(input.len()) > limit {
                return Err(RespError::LineTooLong { limit });
            }
            self.partial.extend_from_slice(input);
            *input = &[];
            return Ok(None);
        };
        let (head, rest) = input.split_at(lf);
        *input = rest.get(1..).unwrap_or_default();
        if self.partial.len().saturating_add(head.len()) > limit.saturating_add(1) {
            return Err(RespError::LineTooLong { limit });
        }
        let mut line: Cow<'i, [u8]> = if self.partial.is_empty() {
            Cow::Borrowed(head)
        } else {
            let mut whole = std::mem::take(&mut self.partial);
            whole.extend_from_slice(head);
            Cow::Owned(whole)
        };
        match line.last() {
            Some(b'\r') => strip_last(&mut line),
            _ if ending == Ending::Crlf => return Err(RespError::BareLineFeed),
            _ => {}
        }
        if ending == Ending::Crlf && line.contains(&b'\r') {
            return Err(RespError::CarriageReturnInLine);
        }
        Ok(Some(line))
    }
}

fn strip_last(line: &mut Cow<'_, [u8]>) {
    match line {
        Cow::Borrowed(b) => *b = b.split_last().map(|(_, rest)| rest).unwrap_or_default(),
        Cow::Owned(v) => {
            v.pop();
        }
    }
}

/// A length or count: decimal digits, `-1` for null (`Some(-1)` when
/// `null_allowed`), nothing else.
pub(crate) fn parse_length(text: &[u8], null_allowed: bool) -> Result<i64, RespError> {
    let invalid = || RespError::InvalidLength(String::from_utf8_lossy(text).into_owned());
    if text == b"-1" {
        return if null_allowed { Ok(-1) } else { Err(invalid()) };
    }
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        let mut reader = LineReader::default();
        let mut a: &[u8] = b"+OK";
        assert_eq!(reader.read(&mut a, 64, Ending::Crlf).unwrap(), None);
        let mut b: &[u8] = b"\r";
        assert_eq!(reader.read(&mut b, 64, Ending::Crlf).unwrap(), None);
        let mut c: &[u8] = b"\nrest";
        let line = reader.read(&mut c, 64, Ending::Crlf).unwrap().unwrap();
        assert_eq!(&*line, b"+OK");
        assert_eq!(c, b"rest");
    }

    #[test]
    fn bare_lf_is_refused_for_resp_and_taken_for_inline() {
        let mut reader = LineReader::default();
        let mut a: &[u8] = b"PING\n";
        assert_eq!(
            reader.read(&mut a, 64, Ending::Crlf),
            Err(RespError::BareLineFeed)
        );
        let mut b: &[u8] = b"PING\n";
        let line = reader.read(&mut b, 64, Ending::LfOrCrlf).unwrap().unwrap();
        assert_eq!(&*line, b"PING");
    }

    #[test]
    fn a_cr_inside_a_resp_line_is_refused() {
        let mut reader = LineReader::default();
        let mut a: &[u8] = b"+OK\r'\r\n";
        assert_eq!(
            reader.read(&mut a, 64, Ending::Crlf),
            Err(RespError::CarriageReturnInLine)
        );
    }

    #[test]
    fn a_line_over_the_bound_is_an_error() {
        let mut reader = LineReader::default();
        let mut a: &[u8] = b"+aaaaaaaaaa";
        assert_eq!(
            reader.read(&mut a, 4, Ending::Crlf),
            Err(RespError::LineTooLong { limit: 4 })
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_length(b"12", false), Ok(12));
        assert_eq!(parse_length(b"-1", true), Ok(-1));
        assert!(parse_length(b"-1", false).is_err());
        assert!(parse_length(b"-2", true).is_err());
        assert!(parse_length(b"", true).is_err());
        assert!(parse_length(b"+3", true).is_err());
        assert!(parse_length(b"99999999999999999999", true).is_err());
    }
}
