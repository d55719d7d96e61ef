//! SQL text for people: the verb `ls` shows, the statement on one line,
//! and `show`'s layout of one clause per line.
//!
//! A small formatter of our own rather than the `sqlformat` crate: that
//! one lays each column on a line of its own (long for a terminal), pulls
//! in a parser combinator library, and has panicked on unusual input in
//! the past; this one only has to re-space tokens, and never fails on any
//! text a client sent.

/// What a token of SQL text is, as far as layout cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space,
    /// `-- ...` up to the end of its line.
    LineComment,
    /// `/* ... */`, nesting as PostgreSQL nests them.
    BlockComment,
    /// `'...'`, `E'...'`, `$tag$...$tag$`, `"..."` (quoted identifier).
    Quoted,
    /// A keyword or an identifier.
    Word,
    Open,
    Close,
    Semicolon,
    /// Anything else: operators, commas, numbers, `$1`.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

/// Splits `sql` into tokens; every byte of it lands in exactly one, so
/// an unterminated quote or comment runs to the end rather than failing.
fn tokens(sql: &str) -> Vec<Token<'_>> {
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(sql.len(), |&(o, _)| o);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let start = i;
        let kind = if c.is_whitespace() {
            while at(i).is_some_and(char::is_whitespace) {
                i += 1;
            }
            Kind::Space
        } else if c == '-' && at(i + 1) == Some('-') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
            Kind::LineComment
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0usize;
            while let Some(c) = at(i) {
                if c == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c == '*' && at(i + 1) == Some('/') {
                    depth = depth.saturating_sub(1);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            Kind::BlockComment
        } else if c == '\'' || c == '"' {
            i = end_of_quote(&chars, i + 1, c, false);
            Kind::Quoted
        } else if (c == 'e' || c == 'E') && at(i + 1) == Some('\'') {
            i = end_of_quote(&chars, i + 2, '\'', true);
            Kind::Quoted
        } else if c == '$'
            && let Some(end) = dollar_quote(&chars, i)
        {
            i = end;
            Kind::Quoted
        } else if c.is_alphabetic() || c == '_' {
            while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                i += 1;
            }
            Kind::Word
        } else {
            i += 1;
            match c {
                '(' | '[' => Kind::Open,
                ')' | ']' => Kind::Close,
                ';' => Kind::Semicolon,
                _ => Kind::Other,
            }
        };
        out.push(Token {
            kind,
            text: sql.get(offset(start)..offset(i)).unwrap_or_default(),
        });
    }
    out
}

/// Index just past the quote closing one opened before `i` (a doubled
/// quote is one quote; in `E'...'` a backslash escapes the next char).
fn end_of_quote(chars: &[(usize, char)], mut i: usize, quote: char, backslash: bool) -> usize {
    while let Some(&(_, c)) = chars.get(i) {
        i += 1;
        if backslash && c == '\\' {
            i += 1;
        } else if c == quote {
            if chars.get(i).is_some_and(|&(_, n)| n == quote) {
                i += 1;
            } else {
                return i;
            }
        }
    }
    chars.len()
}

/// `$tag$ ... $tag$` starting at `i`: the index past its end, or `None`
/// when `$` does not open one (a `$1` parameter).
fn dollar_quote(chars: &[(usize, char)], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while let Some(&(_, c)) = chars.get(j) {
        if c == '$' {
            break;
        }
        if !(c.is_alphanumeric() || c == '_') || (j == i + 1 && c.is_ascii_digit()) {
            return None;
        }
        j += 1;
    }
    chars.get(j)?;
    let tag: Vec<char> = chars.get(i..=j)?.iter().map(|&(_, c)| c).collect();
    let mut k = j + 1;
    while k < chars.len() {
        let same = chars
            .get(k..k + tag.len())
            .is_some_and(|w| w.iter().map(|&(_, c)| c).eq(tag.iter().copied()));
        if same {
            return Some(k + tag.len());
        }
        k += 1;
    }
    Some(chars.len())
}

/// Words shown upper-case wherever they stand outside quotes.
const KEYWORDS: &[&str] = &[
    "all",
    "alter",
    "and",
    "any",
    "as",
    "asc",
    "begin",
    "between",
    "by",
    "call",
    "case",
    "cast",
    "commit",
    "conflict",
    "copy",
    "create",
    "cross",
    "default",
    "delete",
    "desc",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "false",
    "fetch",
    "for",
    "from",
    "full",
    "group",
    "having",
    "ilike",
    "in",
    "index",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "key",
    "left",
    "like",
    "limit",
    "lock",
    "natural",
    "not",
    "nothing",
    "null",
    "nulls",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "partition",
    "primary",
    "references",
    "release",
    "returning",
    "right",
    "rollback",
    "savepoint",
    "select",
    "set",
    "share",
    "show",
    "table",
    "then",
    "to",
    "transaction",
    "true",
    "truncate",
    "union",
    "unique",
    "update",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

/// Clause keywords that start a line of their own.
const CLAUSES: &[&str] = &[
    "select",
    "from",
    "where",
    "group",
    "order",
    "having",
    "limit",
    "offset",
    "join",
    "values",
    "set",
    "returning",
    "union",
    "intersect",
    "except",
    "window",
];

/// Words that, before JOIN, belong to its line (`LEFT OUTER JOIN`).
const JOIN_PREFIXES: &[&str] = &[
    "left", "right", "inner", "full", "cross", "natural", "outer",
];

fn is_one_of(word: &str, list: &[&str]) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// The statement's verb, upper-case: `SELECT`, `UPDATE`, `BEGIN`... For
/// `WITH`, the verb of the statement the common table expressions serve
/// (a data-modifying `WITH ... INSERT` is an INSERT). Empty when the text
/// has no word (an empty query).
pub fn verb(sql: &str) -> String {
    let mut depth = 0usize;
    let mut first: Option<&str> = None;
    for t in tokens(sql) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Semicolon if first.is_some() => break,
            Kind::Word => match first {
                None => {
                    if !t.text.eq_ignore_ascii_case("with") {
                        return t.text.to_ascii_uppercase();
                    }
                    first = Some(t.text);
                }
                Some(_)
                    if depth == 0
                        && is_one_of(
                            t.text,
                            &["select", "insert", "update", "delete", "merge"],
                        ) =>
                {
                    return t.text.to_ascii_uppercase();
                }
                Some(_) => {}
            },
            _ => {}
        }
    }
    first.map(str::to_ascii_uppercase).unwrap_or_default()
}

/// `sql` on one line: comments kept, every run of whitespace (line breaks
/// included) one space, none at either end.
pub fn one_line(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().min(4096));
    for t in tokens(sql) {
        match t.kind {
            Kind::Space => {
                if !out.is_empty() {
                    out.push(' ');
                }
            }
            _ => out.push_str(t.text),
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// `sql` laid out for reading: one clause per line (SELECT, FROM, WHERE,
/// JOIN, GROUP BY, ORDER BY, VALUES, SET, RETURNING... outside
/// parentheses), keywords upper-case outside quotes and comments, other
/// whitespace collapsed, one statement per line group. Quoted text and
/// comments are kept as they are.
pub fn pretty(sql: &str) -> String {
    let list = tokens(sql);
    let mut out = String::with_capacity(sql.len() + 16);
    let mut depth = 0usize;
    let mut space = false;
    let mut after_join_prefix = false;
    let words: Vec<usize> = (0..list.len())
        .filter(|&i| list.get(i).is_some_and(|t| t.kind == Kind::Word))
        .collect();
    let next_word = |i: usize| {
        words
            .iter()
            .find(|&&w| w > i)
            .and_then(|&w| list.get(w))
            .map_or("", |t| t.text)
    };
    for (i, t) in list.iter().enumerate() {
        if t.kind == Kind::Space {
            space = true;
            continue;
        }
        let mut newline = false;
        if t.kind == Kind::Word && depth == 0 {
            let joins = is_one_of(t.text, JOIN_PREFIXES)
                && is_one_of(next_word(i), &["join", "outer"])
                && !after_join_prefix;
            let clause = is_one_of(t.text, CLAUSES) && !after_join_prefix;
            newline = joins || clause;
            after_join_prefix = is_one_of(t.text, JOIN_PREFIXES);
        } else if t.kind != Kind::LineComment && t.kind != Kind::BlockComment {
            after_join_prefix = false;
        }
        if newline && !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        } else if space && !out.is_empty() && !out.ends_with('\n') {
            out.push(' ');
        }
        space = false;
        match t.kind {
            Kind::Word if is_one_of(t.text, KEYWORDS) => out.push_str(&t.text.to_ascii_uppercase()),
            _ => out.push_str(t.text),
        }
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Semicolon if depth == 0 => out.push('\n'),
            Kind::LineComment => out.push('\n'),
            _ => {}
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verbs() {
        assert_eq!(verb("  select 1"), "SELECT");
        assert_eq!(verb("/* c */ update t set a = 1"), "UPDATE");
        assert_eq!(verb("-- x\nBEGIN"), "BEGIN");
        assert_eq!(
            verb("with x as (select 1) insert into t select * from x"),
            "INSERT"
        );
        assert_eq!(verb("with x as (select 1) select * from x"), "SELECT");
        assert_eq!(verb("(select 1) union (select 2)"), "SELECT");
        assert_eq!(verb(""), "");
        assert_eq!(verb(" ; "), "");
    }

    #[test]
    fn one_clause_per_line() {
        assert_eq!(
            pretty(
                "select id, name from users u left outer join orders o on o.uid = u.id where u.id = $1 and name <> 'from where' order by name limit 5"
            ),
            "SELECT id, name\nFROM users u\nLEFT OUTER JOIN orders o ON o.uid = u.id\nWHERE u.id = $1 AND name <> 'from where'\nORDER BY name\nLIMIT 5"
        );
        assert_eq!(
            pretty("update  accounts\n\tset balance = balance - 1 where id = 7 returning balance"),
            "UPDATE accounts\nSET balance = balance - 1\nWHERE id = 7\nRETURNING balance"
        );
        assert_eq!(
            pretty("insert into t (a, b) values ($1, 'x') on conflict (a) do nothing"),
            "INSERT INTO t (a, b)\nVALUES ($1, 'x') ON CONFLICT (a) DO NOTHING"
        );
        // Subqueries stay on their clause's line.
        assert_eq!(
            pretty("select * from t where id in (select id from u where x)"),
            "SELECT *\nFROM t\nWHERE id IN (SELECT id FROM u WHERE x)"
        );
    }

    #[test]
    fn quotes_and_comments_are_kept() {
        assert_eq!(
            pretty(
                "select \"From\", E'it\\'s from', $$ where $$, $tag$a$tag$ -- from x\nfrom t /* where */"
            ),
            "SELECT \"From\", E'it\\'s from', $$ where $$, $tag$a$tag$ -- from x\nFROM t /* where */"
        );
        assert_eq!(
            pretty("begin; select 1; commit"),
            "BEGIN;\nSELECT 1;\nCOMMIT"
        );
        assert_eq!(one_line("select\n  1,\n\t2  "), "select 1, 2");
        // Unterminated quotes and comments run to the end.
        assert_eq!(pretty("select 'abc"), "SELECT 'abc");
        assert_eq!(pretty("select /* abc"), "SELECT /* abc");
        assert_eq!(pretty("select $a$ x"), "SELECT $a$ x");
    }

    proptest! {
        /// Any text: no panic, and nothing but whitespace is lost or added.
        #[test]
        fn never_loses_text(sql in "\\PC{0,80}|[sS$'\"()/*\\-; \n\tEe]{0,40}") {
            let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            let kept = |s: &str| squeeze(&s.to_lowercase());
            prop_assert_eq!(kept(&pretty(&sql)), kept(&sql));
            prop_assert_eq!(squeeze(&one_line(&sql)), squeeze(&sql));
            let _ = verb(&sql);
        }
    }
}
