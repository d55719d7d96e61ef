//! Named values outside JSON: query parameters, urlencoded form fields and
//! multipart form fields, replaced in place (everything else byte for
//! byte as it was).

/// The marker in a query or an urlencoded form: `[redacted]`
/// percent-encoded, so that the target stays a valid URI.
pub const ENCODED_MARKER: &str = "%5Bredacted%5D";

/// What redacting one text did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome<'r> {
    /// Nothing to redact.
    Unchanged,
    /// The text to keep instead, and the rules that replaced something.
    Redacted(Vec<u8>, Vec<&'r str>),
    /// The rules apply but the text cannot be read.
    Unparsed,
}

/// The rule among `rules` (lower case) that names `name`, compared after
/// percent-decoding and without regard to case.
fn rule_for<'r>(rules: &'r [String], name: &[u8]) -> Option<&'r str> {
    // Most names are plain: compared as they are, without a copy.
    let decoded = if name.iter().any(|b| matches!(b, b'%' | b'+')) {
        std::borrow::Cow::Owned(percent_decode(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    };
    rules
        .iter()
        .find(|rule| rule.as_bytes().eq_ignore_ascii_case(&decoded))
        .map(String::as_str)
}

fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < text.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(text[i + 1]), hex(text[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `name=value&...` (a query or an urlencoded form) with the values of the
/// pairs `rules` name replaced by [`ENCODED_MARKER`].
pub(crate) fn redact_pairs<'r>(text: &[u8], rules: &'r [String]) -> Outcome<'r> {
    if rules.is_empty() || text.is_empty() {
        return Outcome::Unchanged;
    }
    // Copied only once a value is replaced: most queries and forms hold
    // no name the rules have, and then cost no allocation.
    let mut out: Vec<u8> = Vec::new();
    // How much of `text` is in `out`, as it is or redacted.
    let mut copied = 0;
    let mut notes: Vec<&'r str> = Vec::new();
    let mut start = 0;
    for pair in text.split(|b| *b == b'&') {
        let at = start;
        start += pair.len() + 1;
        let Some(eq) = pair.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        let Some(rule) = rule_for(rules, name) else {
            continue;
        };
        if value == ENCODED_MARKER.as_bytes() {
            continue;
        }
        if out.capacity() == 0 {
            out.reserve(text.len() + ENCODED_MARKER.len());
        }
        out.extend_from_slice(text.get(copied..at).unwrap_or_default());
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(ENCODED_MARKER.as_bytes());
        copied = at + pair.len();
        if !notes.contains(&rule) {
            notes.push(rule);
        }
    }
    if notes.is_empty() {
        return Outcome::Unchanged;
    }
    out.extend_from_slice(text.get(copied..).unwrap_or_default());
    Outcome::Redacted(out, notes)
}

/// The `boundary` parameter of a `multipart/*` content type.
pub(crate) fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `name` parameter of a part's `Content-Disposition` field.
fn part_name(head: &[u8]) -> Option<&[u8]> {
    head.split(|b| *b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        if !line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"content-disposition")
        {
            return None;
        }
        line[colon + 1..].split(|b| *b == b';').find_map(|param| {
            let eq = param.iter().position(|b| *b == b'=')?;
            param[..eq]
                .trim_ascii()
                .eq_ignore_ascii_case(b"name")
                .then(|| {
                    let value = param[eq + 1..].trim_ascii();
                    value
                        .strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .unwrap_or(value)
                })
        })
    })
}

/// A `multipart/form-data` body with the contents of the parts `rules`
/// name replaced by `[redacted]`. A body cut short keeps its parts up to
/// the cut (a named part cut in its content is redacted all the same); a
/// whole one whose part heads cannot be read (bare LF line breaks) is
/// unparsed.
pub(crate) fn redact_multipart<'r>(
    body: &[u8],
    boundary: &str,
    rules: &'r [String],
    cut: bool,
) -> Outcome<'r> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let Some(first) = find(body, &delimiter) else {
        return Outcome::Unparsed;
    };
    let mut out = Vec::with_capacity(body.len());
    let mut notes: Vec<&'r str> = Vec::new();
    let mut at = first + delimiter.len();
    out.extend_from_slice(&body[..at]);
    let closing = [b"\r\n", delimiter.as_slice()].concat();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") || rest.is_empty() {
            out.extend_from_slice(rest);
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            if !cut {
                // Not a head this reader knows (bare LF line breaks):
                // what the part holds cannot be told.
                return Outcome::Unparsed;
            }
            // Cut inside a part's head: no content yet.
            out.extend_from_slice(rest);
            break;
        };
        let content_start = head_end + 4;
        let next = find(&rest[content_start..], &closing).map(|n| content_start + n);
        let content_end = next.unwrap_or(rest.len());
        out.extend_from_slice(&rest[..content_start]);
        let content = &rest[content_start..content_end];
        let rule = part_name(&rest[..head_end]).and_then(|name| rule_for(rules, name));
        match rule {
            Some(rule) if content != super::MARKER.as_bytes() => {
                out.extend_from_slice(super::MARKER.as_bytes());
                if !notes.contains(&rule) {
                    notes.push(rule);
                }
            }
            _ => out.extend_from_slice(content),
        }
        let Some(next) = next else {
            break;
        };
        out.extend_from_slice(&closing);
        at += next + closing.len();
    }
    if notes.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Redacted(out, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn pairs_by_name_whatever_the_case_or_encoding() {
        let rules = rules(&["access_token", "password"]);
        let Outcome::Redacted(text, notes) = redact_pairs(
            b"a=1&Access_Token=abc&pass%77ord=x+y&b&access_token",
            &rules,
        ) else {
            panic!("expected a redaction");
        };
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "a=1&Access_Token=%5Bredacted%5D&pass%77ord=%5Bredacted%5D&b&access_token"
        );
        assert_eq!(notes, ["access_token", "password"]);
        // Already redacted: nothing more to say.
        assert_eq!(
            redact_pairs(b"access_token=%5Bredacted%5D", &rules),
            Outcome::Unchanged
        );
        assert_eq!(redact_pairs(b"a=1", &rules), Outcome::Unchanged);
        assert_eq!(redact_pairs(b"%zz=%", &rules), Outcome::Unchanged);
    }

    #[test]
    fn multipart_fields_by_name() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n--XyZ\r\ncontent-disposition: form-data; name=password\r\nContent-Type: text/plain\r\n\r\nhunter2\r\n--XyZ--\r\n";
        let password = rules(&["password"]);
        let Outcome::Redacted(text, notes) = redact_multipart(body, "XyZ", &password, false) else {
            panic!("expected a redaction");
        };
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n--XyZ\r\ncontent-disposition: form-data; name=password\r\nContent-Type: text/plain\r\n\r\n[redacted]\r\n--XyZ--\r\n"
        );
        assert_eq!(notes, ["password"]);
        // Cut in the secret's content: redacted all the same.
        let cut = &body[..body.len() - 14];
        let Outcome::Redacted(text, _) = redact_multipart(cut, "XyZ", &rules(&["password"]), true)
        else {
            panic!("expected a redaction");
        };
        assert!(!text.windows(4).any(|w| w == b"hunt"));
        assert_eq!(
            redact_multipart(b"no boundary here", "XyZ", &rules(&["password"]), false),
            Outcome::Unparsed
        );
        // Bare LF line breaks: the heads cannot be read, so neither can
        // what the parts hold (unless the body was cut in a head).
        let bare = b"--XyZ\ncontent-disposition: form-data; name=password\n\nhunter2\n--XyZ--\n";
        assert_eq!(
            redact_multipart(bare, "XyZ", &password, false),
            Outcome::Unparsed
        );
        assert_eq!(
            boundary("multipart/form-data; charset=x; boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let rules = rules(&["a", "password"]);
            let _ = redact_pairs(&body, &rules);
            let _ = redact_multipart(&body, "b", &rules, body.len() % 2 == 0);
        }
    }
}
