//! What reprise reads from SQL text: a normalized template for matching,
//! whether a statement writes, the statements of a multi-statement query,
//! and the sqlcommenter `traceparent`.

use super::lex::{Kind, Token, tokens};

/// SQL with its literals taken out: statements that differ only in
/// literal values share a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Comments removed, whitespace collapsed to single spaces, keywords
    /// and unquoted identifiers lower-cased, each string or number literal
    /// replaced by `?`; quoted identifiers and `$n` parameters kept.
    pub template: String,
    /// The literals replaced, in order, as written (quotes included).
    pub literals: Vec<String>,
    /// As `template`, with the literals in place: the statement as sent,
    /// less what differs without meaning (comments, layout, keyword case).
    pub text: String,
}

/// Normalizes `sql` (see [`Normalized`]).
pub fn normalize(sql: &str) -> Normalized {
    let mut template = String::with_capacity(sql.len());
    let mut full = String::with_capacity(sql.len());
    let mut literals = Vec::new();
    let mut space = false;
    for t in tokens(sql) {
        let text = sql.get(t.start..t.end).unwrap_or_default();
        match t.kind {
            Kind::Space | Kind::Comment => {
                space = true;
                continue;
            }
            _ => {}
        }
        if space && !template.is_empty() {
            template.push(' ');
            full.push(' ');
        }
        space = false;
        match t.kind {
            Kind::String | Kind::Number => {
                literals.push(text.to_owned());
                template.push('?');
                full.push_str(text);
            }
            Kind::Word => {
                let lower = text.chars().flat_map(char::to_lowercase);
                template.extend(lower.clone());
                full.extend(lower);
            }
            _ => {
                template.push_str(text);
                full.push_str(text);
            }
        }
    }
    Normalized {
        template,
        literals,
        text: full,
    }
}

/// The words of `sql` outside literals and comments, as written (compared
/// without regard to case), with parentheses and semicolons as their own
/// entries.
fn words(sql: &str) -> Vec<&str> {
    tokens(sql)
        .into_iter()
        .filter_map(|t| {
            let text = sql.get(t.start..t.end).unwrap_or_default();
            match t.kind {
                Kind::Word | Kind::Semicolon => Some(text),
                Kind::Other if text == "(" || text == ")" => Some(text),
                _ => None,
            }
        })
        .collect()
}

const WRITE_VERBS: &[&str] = &[
    "insert", "update", "delete", "merge", "truncate", "create", "alter", "drop", "grant",
    "revoke", "comment", "call", "do", "reindex", "cluster", "vacuum", "refresh", "import",
    "security",
];

/// Whether the word `w` is one of `any` (lower-case), whatever its case.
fn is(w: &str, any: &[&str]) -> bool {
    any.iter().any(|a| w.eq_ignore_ascii_case(a))
}

/// Whether `sql` changes state: INSERT, UPDATE, DELETE, MERGE, TRUNCATE,
/// COPY ... FROM, DDL (CREATE, ALTER, DROP, GRANT, REVOKE, COMMENT...),
/// CALL, DO, a data-modifying CTE, `SELECT ... INTO`, `EXPLAIN ANALYZE` of a
/// write. SELECT (even FOR UPDATE), SHOW, SET, BEGIN, COMMIT, ROLLBACK and
/// plain EXPLAIN are not. Several statements: true when any writes.
pub fn is_write(sql: &str) -> bool {
    let words = words(sql);
    words.split(|w| *w == ";").any(statement_writes)
}

fn statement_writes(words: &[&str]) -> bool {
    let Some(first) = words.iter().find(|w| **w != "(") else {
        return false;
    };
    match first.to_ascii_lowercase().as_str() {
        v if WRITE_VERBS.contains(&v) => true,
        // COPY t FROM ...; not the FROM of `COPY (SELECT ... FROM t) TO`.
        "copy" => top_level(words).any(|w| is(w, &["from"])),
        "with" => words
            .iter()
            .any(|w| is(w, &["insert", "update", "delete", "merge"])),
        "select" => {
            // SELECT ... INTO new_table creates a table (not INTO inside a
            // subquery: PL/pgSQL does not reach here).
            words.iter().any(|w| is(w, &["into"]))
        }
        "explain" => {
            let analyze = words.iter().take(6).any(|w| is(w, &["analyze", "analyse"]));
            analyze
                && words
                    .get(1..)
                    .is_some_and(|rest| statement_writes(skip_explain_options(rest)))
        }
        _ => false,
    }
}

/// The words of a statement outside parentheses.
fn top_level<'a, 'b>(words: &'b [&'a str]) -> impl Iterator<Item = &'a str> + 'b {
    let mut depth = 0usize;
    words.iter().filter_map(move |w| {
        match *w {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            _ if depth == 0 => return Some(*w),
            _ => {}
        }
        None
    })
}

fn skip_explain_options<'a, 'b>(rest: &'b [&'a str]) -> &'b [&'a str] {
    if rest.first().is_some_and(|w| *w == "(") {
        let close = rest
            .iter()
            .position(|w| *w == ")")
            .map_or(rest.len(), |p| p + 1);
        return rest.get(close..).unwrap_or_default();
    }
    let skip = rest
        .iter()
        .take_while(|w| is(w, &["analyze", "analyse", "verbose"]))
        .count();
    rest.get(skip..).unwrap_or_default()
}

/// The statements of a simple query's text, split at top-level `;`, each
/// trimmed, empty ones (only spaces or comments) left out. A text with no
/// statement at all gives one empty string (the server answers it with
/// EmptyQueryResponse).
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut meaningful = false;
    let toks: Vec<Token> = tokens(sql);
    for t in &toks {
        match t.kind {
            Kind::Semicolon => {
                if meaningful {
                    out.push(
                        sql.get(start..t.start)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    );
                }
                start = t.end;
                meaningful = false;
            }
            Kind::Space | Kind::Comment => {}
            _ => meaningful = true,
        }
    }
    if meaningful {
        out.push(sql.get(start..).unwrap_or_default().trim().to_owned());
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// The W3C `traceparent` of an sqlcommenter comment in `sql`
/// (`/*traceparent='00-<32 hex>-<16 hex>-<2 hex>',...*/`). Values are
/// URL-encoded by the spec (then a `'` inside is `\'`); a value that does
/// not decode to a well-formed traceparent is ignored.
pub fn traceparent(sql: &str) -> Option<String> {
    if !sql.contains("/*") {
        // No block comment, no sqlcommenter: most queries, not lexed.
        return None;
    }
    tokens(sql)
        .into_iter()
        .rev()
        .filter(|t| t.kind == Kind::Comment)
        .filter_map(|t| sql.get(t.start..t.end))
        .filter_map(|c| c.strip_prefix("/*").and_then(|c| c.strip_suffix("*/")))
        .find_map(comment_traceparent)
}

fn comment_traceparent(body: &str) -> Option<String> {
    for pair in body.split(',') {
        let Some((key, value)) = pair.trim().split_once('=') else {
            continue;
        };
        if url_decode(key.trim())? != "traceparent" {
            continue;
        }
        let value = value
            .trim()
            .strip_prefix('\'')?
            .strip_suffix('\'')?
            .replace("\\'", "'");
        let value = url_decode(&value)?;
        return well_formed(&value).then_some(value);
    }
    None
}

fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn well_formed(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    matches!(parts.as_slice(), [v, t, p, f] if hex(v, 2) && *v != "ff" && hex(t, 32) && hex(p, 16) && hex(f, 2)
        && *t != "0".repeat(32) && *p != "0".repeat(16))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn normalize_takes_literals_out() {
        let a = normalize("SELECT  *\nFROM \"Users\" WHERE id = 5 AND name = 'x''y' /* c */ -- d");
        assert_eq!(
            a.template,
            "select * from \"Users\" where id = ? and name = ?"
        );
        assert_eq!(a.literals, vec!["5", "'x''y'"]);
        let b = normalize("select * from \"Users\" where id = 6 and name = 'z'");
        assert_eq!(a.template, b.template);
        let c = normalize("select $1::int, $q$ it's $q$, E'\\n' from t");
        assert_eq!(c.template, "select $1::int, ?, ? from t");
        assert_eq!(c.literals.len(), 2);
    }

    #[test]
    fn writes_and_reads() {
        for w in [
            "INSERT INTO t VALUES (1)",
            "update t set a = 1",
            "  delete from t",
            "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
            "truncate t",
            "copy t from stdin",
            "COPY t (a, b) FROM STDIN WITH (FORMAT csv)",
            "create table x (a int)",
            "ALTER TABLE x ADD b int",
            "drop table x",
            "grant select on t to u",
            "revoke all on t from u",
            "comment on table t is 'x'",
            "with x as (insert into t values (1) returning *) select * from x",
            "call p()",
            "(insert into t values (1))",
            "select 1; delete from t",
            "explain analyze delete from t",
            "select * into t2 from t",
        ] {
            assert!(is_write(w), "{w}");
        }
        for r in [
            "select * from t for update",
            "SHOW search_path",
            "set search_path = x",
            "begin",
            "commit",
            "rollback",
            "explain delete from t",
            "explain analyze select 1",
            "copy t to stdout",
            "COPY (SELECT a FROM t) TO STDOUT",
            "with x as (select 1) select * from x",
            "select 'insert into t'",
            "-- delete\nselect 1",
            "",
        ] {
            assert!(!is_write(r), "{r}");
        }
    }

    #[test]
    fn split_at_top_level_semicolons() {
        assert_eq!(
            split_statements("select ';'; select $$;$$ ;; -- x;\n select 3"),
            vec!["select ';'", "select $$;$$", "-- x;\n select 3"]
        );
        assert_eq!(split_statements("  "), vec![""]);
        assert_eq!(split_statements("select 1;"), vec!["select 1"]);
    }

    #[test]
    fn sqlcommenter_traceparent() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let enc = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".replace('-', "%2D");
        let sql = format!(
            "SELECT * FROM t /*action='%2Fparam*d',traceparent='{enc}',tracestate='congo%3Dt61rcWkgMzE'*/"
        );
        assert_eq!(traceparent(&sql).as_deref(), Some(tp));
        assert_eq!(
            traceparent(&format!("select 1 /*traceparent='{tp}'*/")).as_deref(),
            Some(tp)
        );
        assert_eq!(traceparent("select '/*traceparent=''00-x''*/'"), None);
        assert_eq!(traceparent("select 1 /*traceparent='00-zz-yy-01'*/"), None);
        assert_eq!(traceparent("select 1"), None);
    }
}
