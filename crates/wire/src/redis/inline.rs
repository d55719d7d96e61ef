//! Inline commands (`PING\r\n`, `SET k "a b"\n`), as telnet and humans
//! send them: split the way Redis splits them (its `sdssplitargs`).

use super::error::RespError;

/// Splits an inline command line into arguments: words separated by
/// whitespace; `"double quotes"` with `\n \r \t \b \a \\ \" \xHH` escapes;
/// `'single quotes'` with `\'`. A closing quote must be followed by
/// whitespace or the end. An empty line gives no arguments.
pub fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let mut args = Vec::new();
    let mut rest = line;
    loop {
        rest = trim_start(rest);
        if rest.is_empty() {
            return Ok(args);
        }
        let (arg, after) = word(rest)?;
        args.push(arg);
        rest = after;
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let Some((&b, rest)) = s.split_first() {
        if !is_space(b) {
            break;
        }
        s = rest;
    }
    s
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// One argument from the start of `s`, and what follows it.
fn word(mut s: &[u8]) -> Result<(Vec<u8>, &[u8]), RespError> {
    let mut out = Vec::new();
    loop {
        let Some((&b, rest)) = s.split_first() else {
            return Ok((out, s));
        };
        match b {
            b'"' => s = double_quoted(rest, &mut out)?,
            b'\'' => s = single_quoted(rest, &mut out)?,
            b if is_space(b) || b == 0 => return Ok((out, rest)),
            b => {
                out.push(b);
                s = rest;
            }
        }
    }
}

/// Reads a double-quoted part after its opening quote.
fn double_quoted<'a>(mut s: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8], RespError> {
    loop {
        match s {
            [] => return Err(RespError::UnbalancedQuotes),
            [b'\\', b'x', h, l, rest @ ..] if hex(*h).is_some() && hex(*l).is_some() => {
                out.push(hex(*h).unwrap_or(0) * 16 + hex(*l).unwrap_or(0));
                s = rest;
            }
            [b'\\', c, rest @ ..] => {
                out.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => *other,
                });
                s = rest;
            }
            [b'"', rest @ ..] => return closing(rest),
            [c, rest @ ..] => {
                out.push(*c);
                s = rest;
            }
        }
    }
}

/// Reads a single-quoted part after its opening quote.
fn single_quoted<'a>(mut s: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8], RespError> {
    loop {
        match s {
            [] => return Err(RespError::UnbalancedQuotes),
            [b'\\', b'\'', rest @ ..] => {
                out.push(b'\'');
                s = rest;
            }
            [b'\'', rest @ ..] => return closing(rest),
            [c, rest @ ..] => {
                out.push(*c);
                s = rest;
            }
        }
    }
}

/// After a closing quote: whitespace or the end, nothing else.
fn closing(rest: &[u8]) -> Result<&[u8], RespError> {
    match rest.first() {
        None => Ok(rest),
        Some(&b) if is_space(b) => Ok(rest),
        Some(_) => Err(RespError::UnbalancedQuotes),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_inline(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect()
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(split("PING"), ["PING"]);
        assert_eq!(split("  set  k   v "), ["set", "k", "v"]);
        assert_eq!(split(r#"SET k "a b\n\x41""#), ["SET", "k", "a b\nA"]);
        assert_eq!(split(r"SET k 'it\'s'"), ["SET", "k", "it's"]);
        assert_eq!(split(r#"SET k """#), ["SET", "k", ""]);
        assert!(split("").is_empty());
        assert!(split(" \t ").is_empty());
    }

    #[test]
    fn unbalanced_quotes_are_refused() {
        assert_eq!(
            split_inline(b"SET k \"abc"),
            Err(RespError::UnbalancedQuotes)
        );
        assert_eq!(
            split_inline(b"SET k 'abc"),
            Err(RespError::UnbalancedQuotes)
        );
        assert_eq!(
            split_inline(b"SET k \"a\"b"),
            Err(RespError::UnbalancedQuotes)
        );
    }
}
