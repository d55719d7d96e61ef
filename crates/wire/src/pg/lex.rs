//! A small SQL lexer: enough of PostgreSQL's lexical rules to tell
//! comments, string and number literals, quoted identifiers, dollar-quoted
//! strings and parameters apart. It never fails: an unterminated literal
//! or comment runs to the end of the text.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Space,
    /// `-- ...` or `/* ... */` (nested).
    Comment,
    /// `'...'`, `E'...'`, `B'...'`, `X'...'`, `U&'...'`, `$tag$...$tag$`.
    String,
    Number,
    /// `$1`.
    Param,
    /// `"..."` (or `U&"..."`).
    QuotedIdent,
    /// A keyword or identifier.
    Word,
    /// `;`.
    Semicolon,
    /// Any other character (operators, punctuation).
    Other,
}

/// A token: its kind and its byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Splits `sql` into tokens covering all of it.
pub(crate) fn tokens(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b.get(i).copied().unwrap_or(0);
        let next = b.get(i + 1).copied().unwrap_or(0);
        let kind = if c.is_ascii_whitespace() {
            i = skip_while(b, i, |c| c.is_ascii_whitespace());
            Kind::Space
        } else if c == b'-' && next == b'-' {
            i = b
                .iter()
                .skip(i)
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            Kind::Comment
        } else if c == b'/' && next == b'*' {
            i = block_comment_end(b, i);
            Kind::Comment
        } else if c == b'\'' {
            i = quoted_end(b, i + 1, b'\'', false);
            Kind::String
        } else if matches!(c, b'e' | b'E') && next == b'\'' {
            i = quoted_end(b, i + 2, b'\'', true);
            Kind::String
        } else if matches!(c, b'b' | b'B' | b'x' | b'X' | b'n' | b'N') && next == b'\'' {
            i = quoted_end(b, i + 2, b'\'', false);
            Kind::String
        } else if matches!(c, b'u' | b'U')
            && next == b'&'
            && matches!(b.get(i + 2), Some(b'\'' | b'"'))
        {
            let q = b.get(i + 2).copied().unwrap_or(b'\'');
            i = quoted_end(b, i + 3, q, false);
            if q == b'"' {
                Kind::QuotedIdent
            } else {
                Kind::String
            }
        } else if c == b'"' {
            i = quoted_end(b, i + 1, b'"', false);
            Kind::QuotedIdent
        } else if c == b'$' && next.is_ascii_digit() {
            i = skip_while(b, i + 1, |c| c.is_ascii_digit());
            Kind::Param
        } else if c == b'$' {
            match dollar_end(b, i) {
                Some(end) => {
                    i = end;
                    Kind::String
                }
                None => {
                    i += 1;
                    Kind::Other
                }
            }
        } else if c.is_ascii_digit() || (c == b'.' && next.is_ascii_digit()) {
            i = number_end(b, i);
            Kind::Number
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            i = skip_while(b, i, |c| {
                c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
            });
            Kind::Word
        } else if c == b';' {
            i += 1;
            Kind::Semicolon
        } else {
            i += 1;
            Kind::Other
        };
        // Never split a UTF-8 character (every branch above stops on ASCII
        // or at the end, but be sure).
        while i < b.len() && !sql.is_char_boundary(i) {
            i += 1;
        }
        out.push(Token {
            kind,
            start,
            end: i.min(b.len()),
        });
    }
    out
}

fn skip_while(b: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while b.get(i).is_some_and(|&c| f(c)) {
        i += 1;
    }
    i
}

fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        match (b.get(i), b.get(i + 1)) {
            (Some(b'/'), Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (Some(b'*'), Some(b'/')) => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// The end of a literal quoted with `q` whose body starts at `i`; a doubled
/// quote is an escaped one, and in `E'...'` so is a backslash's next byte.
fn quoted_end(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    while let Some(&c) = b.get(i) {
        if backslash && c == b'\\' {
            i += 2;
        } else if c == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `$tag$ ... $tag$` starting at `i`, or `None` when `$` does not open one.
fn dollar_end(b: &[u8], i: usize) -> Option<usize> {
    let tag_end = skip_while(b, i + 1, |c| {
        c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
    });
    if b.get(tag_end) != Some(&b'$') || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tag = b.get(i..=tag_end)?;
    let body = tag_end + 1;
    let found = b
        .get(body..)?
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| body + p + tag.len());
    Some(found)
}

fn number_end(b: &[u8], i: usize) -> usize {
    let mut j = skip_while(b, i, |c| c.is_ascii_digit() || c == b'_');
    if b.get(j) == Some(&b'.') {
        j = skip_while(b, j + 1, |c| c.is_ascii_digit() || c == b'_');
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let k = if matches!(b.get(j + 1), Some(b'+' | b'-')) {
            j + 2
        } else {
            j + 1
        };
        if b.get(k).is_some_and(u8::is_ascii_digit) {
            j = skip_while(b, k, |c| c.is_ascii_digit());
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        tokens(sql)
            .into_iter()
            .filter(|t| t.kind != Kind::Space)
            .map(|t| (t.kind, &sql[t.start..t.end]))
            .collect()
    }

    #[test]
    fn literals_comments_and_quotes() {
        assert_eq!(
            kinds(
                "select 'a''b', E'x\\'y', $f$ ; $f$, \"Q\"\"\", $2, 1.5e3 /* a /* b */ c */ -- end"
            ),
            vec![
                (Kind::Word, "select"),
                (Kind::String, "'a''b'"),
                (Kind::Other, ","),
                (Kind::String, "E'x\\'y'"),
                (Kind::Other, ","),
                (Kind::String, "$f$ ; $f$"),
                (Kind::Other, ","),
                (Kind::QuotedIdent, "\"Q\"\"\""),
                (Kind::Other, ","),
                (Kind::Param, "$2"),
                (Kind::Other, ","),
                (Kind::Number, "1.5e3"),
                (Kind::Comment, "/* a /* b */ c */"),
                (Kind::Comment, "-- end"),
            ]
        );
    }

    #[test]
    fn unterminated_runs_to_the_end() {
        assert_eq!(kinds("'abc"), vec![(Kind::String, "'abc")]);
        assert_eq!(kinds("/* x"), vec![(Kind::Comment, "/* x")]);
        assert_eq!(kinds("$a$ é"), vec![(Kind::String, "$a$ é")]);
    }
}
