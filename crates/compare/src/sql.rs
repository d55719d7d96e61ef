//! The little of SQL the comparison of database calls needs: a statement
//! normalised so that what differs on every call without meaning anything
//! (sqlcommenter comments carry a new `traceparent` each time, layout,
//! keyword case) is gone, in two forms: with its literals (what a call
//! sent, compared) and with them replaced by `?` (the statement's
//! template, which pairs calls and names them in reports).
//!
//! A lexer of PostgreSQL's tokens just good enough to know where strings,
//! quoted identifiers, dollar quotes and comments start and end. It never
//! fails: text it does not understand passes through as it is.
//! (`reprise_wire::pg::normalize` does the same for the recorder and the
//! mock; the comparator depends on model and tape only, so it keeps its
//! own reading here.)

/// A statement's two normalised forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalized {
    /// Comments removed, whitespace collapsed to one space, keywords and
    /// unquoted identifiers lower-cased; literals as written.
    pub text: String,
    /// As `text`, each string or number literal replaced by `?`.
    pub template: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    Comment,
    /// A string literal (`'...'`, `E'...'`, `$tag$...$tag$`) or a number.
    Literal,
    /// A keyword or unquoted identifier.
    Word,
    /// Anything else, as written: quoted identifiers, `$1`, operators.
    Other,
}

/// The next token of `rest`: its kind and length in bytes (at least one
/// character, so the lexer always moves on).
fn token(rest: &str) -> (Kind, usize) {
    let mut chars = rest.char_indices();
    let Some((_, first)) = chars.next() else {
        return (Kind::Other, 0);
    };
    let next = rest.get(first.len_utf8()..).unwrap_or_default();
    let len = match first {
        c if c.is_whitespace() => {
            return (Kind::Space, span(rest, |c| c.is_whitespace()));
        }
        '-' if next.starts_with('-') => {
            return (Kind::Comment, rest.find('\n').unwrap_or(rest.len()));
        }
        '/' if next.starts_with('*') => return (Kind::Comment, block_comment(rest)),
        '\'' => return (Kind::Literal, quoted(rest, '\'', false)),
        '"' => quoted(rest, '"', false),
        'e' | 'E' if next.starts_with('\'') => {
            return (Kind::Literal, 1 + quoted(next, '\'', true));
        }
        '$' => match dollar_quote(rest) {
            Some(len) => return (Kind::Literal, len),
            // `$1`: a parameter, kept as written.
            None => 1 + span(next, |c| c.is_ascii_digit()),
        },
        c if c.is_ascii_digit() || (c == '.' && next.starts_with(|c: char| c.is_ascii_digit())) => {
            return (Kind::Literal, number(rest));
        }
        c if c.is_alphabetic() || c == '_' => {
            return (
                Kind::Word,
                span(rest, |c| c.is_alphanumeric() || c == '_' || c == '$'),
            );
        }
        c => c.len_utf8(),
    };
    (Kind::Other, len)
}

/// Bytes at the start of `s` whose characters all pass `keep`.
fn span(s: &str, keep: impl Fn(char) -> bool) -> usize {
    s.find(|c: char| !keep(c)).unwrap_or(s.len())
}

/// A `/* ... */` comment, nested as PostgreSQL nests them; unclosed: the
/// rest.
fn block_comment(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes.get(i), bytes.get(i + 1)) {
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
    s.len()
}

/// A quoted run starting at `s`'s first character `quote`, a doubled
/// quote inside it (and, with `backslash`, `\x`) escaped; unclosed: the
/// rest.
fn quoted(s: &str, quote: char, backslash: bool) -> usize {
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if backslash && c == '\\' {
            chars.next();
        } else if c == quote {
            if chars.peek().is_some_and(|(_, n)| *n == quote) {
                chars.next();
            } else {
                return i + c.len_utf8();
            }
        }
    }
    s.len()
}

/// A dollar-quoted string (`$$...$$`, `$fn$...$fn$`), or `None` when `s`
/// does not start with a dollar quote's opening tag.
fn dollar_quote(s: &str) -> Option<usize> {
    let after = s.get(1..)?;
    let tag_len = span(after, |c| c.is_alphanumeric() || c == '_');
    let tag = s.get(..tag_len + 2)?;
    if !tag.ends_with('$') || after.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let body = s.get(tag.len()..)?;
    Some(
        body.find(tag)
            .map_or(s.len(), |end| tag.len() + end + tag.len()),
    )
}

/// A number: digits, a decimal point, an exponent.
fn number(s: &str) -> usize {
    let mut len = span(s, |c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
    // An exponent's sign: `1e-5`.
    while let Some(rest) = s.get(len..)
        && s.get(..len).is_some_and(|n| n.ends_with(['e', 'E']))
        && rest.starts_with(['+', '-'])
    {
        len += 1 + span(rest.get(1..).unwrap_or_default(), |c| c.is_ascii_digit());
    }
    len
}

/// Normalises `sql` (see [`Normalized`]).
pub(crate) fn normalize(sql: &str) -> Normalized {
    let mut text = String::with_capacity(sql.len());
    let mut template = String::with_capacity(sql.len());
    let mut space = false;
    let mut rest = sql;
    while !rest.is_empty() {
        let (kind, len) = token(rest);
        let len = len.max(rest.chars().next().map_or(1, char::len_utf8));
        let (word, tail) = rest.split_at_checked(len).unwrap_or((rest, ""));
        rest = tail;
        if matches!(kind, Kind::Space | Kind::Comment) {
            space = true;
            continue;
        }
        if space && !text.is_empty() {
            text.push(' ');
            template.push(' ');
        }
        space = false;
        match kind {
            Kind::Literal => {
                text.push_str(word);
                template.push('?');
            }
            Kind::Word => {
                let lower = word.to_lowercase();
                text.push_str(&lower);
                template.push_str(&lower);
            }
            _ => {
                text.push_str(word);
                template.push_str(word);
            }
        }
    }
    // A trailing `;` is the same statement.
    for s in [&mut text, &mut template] {
        while s.ends_with(';') || s.ends_with(' ') {
            s.pop();
        }
    }
    Normalized { text, template }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_space_and_case_go_literals_stay_in_the_text() {
        let n = normalize(
            "SELECT  *\n FROM Users -- who\n WHERE id = 42 AND name = 'O''Brien' /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/;",
        );
        assert_eq!(
            n.text,
            "select * from users where id = 42 and name = 'O''Brien'"
        );
        assert_eq!(n.template, "select * from users where id = ? and name = ?");
    }

    #[test]
    fn quoted_identifiers_parameters_and_dollar_quotes() {
        let n = normalize(
            r#"UPDATE "Users" SET bio = $$it's /* not */ a comment$$, n = $1 WHERE x = E'a\'b' AND y = 1.5e-3"#,
        );
        assert_eq!(
            n.template,
            r#"update "Users" set bio = ?, n = $1 where x = ? and y = ?"#
        );
        assert!(n.text.contains("$$it's /* not */ a comment$$"));
        assert_eq!(normalize("/* a /* nested */ one */ BEGIN").text, "begin");
    }

    /// Every string of up to four of the characters that start or end a
    /// token: no panic, and normalising twice changes nothing more.
    #[test]
    fn every_short_string_normalises_once_for_all() {
        let alphabet: Vec<char> = "'\"$aE1.-/*\\;\n é".chars().collect();
        let mut sql = String::new();
        let n = alphabet.len();
        for len in 0..=4u32 {
            for mut k in 0..n.pow(len) {
                sql.clear();
                for _ in 0..len {
                    sql.push(alphabet[k % n]);
                    k /= n;
                }
                let once = normalize(&sql);
                let twice = normalize(&once.text);
                assert_eq!(twice.text, once.text, "{sql:?}");
            }
        }
    }

    #[test]
    fn anything_at_all_normalises_without_panicking() {
        for sql in [
            "", "'", "\"", "$", "$a", "$a$", "/*", "--", "e'\\", "1e+", "é'ü", "$1$",
        ] {
            let _ = normalize(sql);
        }
    }
}
