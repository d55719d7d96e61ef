//! JSON paths (`$.card.number`, `$..password`, `$.items[*].token`): the
//! selectors redaction, `diff --ignore` and `--unordered` share.

use serde_json::Value;

use super::MARKER;

/// A JSON path that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid JSON path {path:?}: {reason} (expected e.g. $.card.number, $..password, $.items[*].token)"
)]
pub struct PathError {
    path: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `.name` or `["name"]`.
    Key(String),
    /// `[3]`.
    Index(usize),
    /// `[*]` or `.*`.
    Any,
    /// `..name`: `name` at any depth below.
    Descend(String),
}

/// A JSONPath-like selector of body fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `$.a.b`, `$.a[0]`, `$.a[*].b`, `$..b`, `$["a b"]`.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let bad = |reason| PathError {
            path: text.to_string(),
            reason,
        };
        let rest = text
            .trim()
            .strip_prefix('$')
            .ok_or_else(|| bad("it must start with $"))?;
        let mut steps = Vec::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '.' if chars.peek() == Some(&'.') => {
                    chars.next();
                    let name: String =
                        std::iter::from_fn(|| chars.next_if(|c| *c != '.' && *c != '[')).collect();
                    if name.is_empty() {
                        return Err(bad("`..` needs a field name"));
                    }
                    steps.push(Step::Descend(name));
                }
                '.' => {
                    let name: String =
                        std::iter::from_fn(|| chars.next_if(|c| *c != '.' && *c != '[')).collect();
                    match name.as_str() {
                        "" => return Err(bad("empty field name")),
                        "*" => steps.push(Step::Any),
                        _ => steps.push(Step::Key(name)),
                    }
                }
                '[' => {
                    let inner: String =
                        std::iter::from_fn(|| chars.next_if(|c| *c != ']')).collect();
                    if chars.next() != Some(']') {
                        return Err(bad("unclosed ["));
                    }
                    let inner = inner.trim();
                    if inner == "*" {
                        steps.push(Step::Any);
                    } else if let Ok(index) = inner.parse::<usize>() {
                        steps.push(Step::Index(index));
                    } else if let Some(key) = inner
                        .strip_prefix('"')
                        .and_then(|k| k.strip_suffix('"'))
                        .or_else(|| inner.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
                    {
                        steps.push(Step::Key(key.to_string()));
                    } else {
                        return Err(bad("[...] holds an index, * or a quoted name"));
                    }
                }
                _ => return Err(bad("unexpected character")),
            }
        }
        if steps.is_empty() {
            return Err(bad("it selects the whole body"));
        }
        Ok(JsonPath {
            text: text.trim().to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Replaces every value the path selects with [`MARKER`]; returns how
    /// many. Object keys compare without regard to case here (and only
    /// here: [`JsonPath::matches`] compares them as written).
    pub fn redact(&self, value: &mut Value) -> usize {
        redact_steps(value, &self.steps)
    }

    /// Whether the path selects the value at `at`, or one of the values
    /// that hold it (`$.a` covers `$.a.b[2]`).
    pub fn matches(&self, at: &[PathSegment]) -> bool {
        matches_steps(&self.steps, at, false)
    }

    /// Whether the path selects exactly the value at `at` (not a parent).
    pub fn selects(&self, at: &[PathSegment]) -> bool {
        matches_steps(&self.steps, at, true)
    }
}

/// One step of a concrete path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// The concrete path, as examples show it: `$.items[3].price`.
pub fn render_path(at: &[PathSegment]) -> String {
    render(at, false)
}

/// The path with array positions as `[*]`, as differences are counted:
/// `$.items[*].price`.
pub fn render_pattern(at: &[PathSegment]) -> String {
    render(at, true)
}

fn render(at: &[PathSegment], wildcard: bool) -> String {
    let mut out = String::from("$");
    for segment in at {
        match segment {
            PathSegment::Key(key) if is_plain_name(key) => {
                out.push('.');
                out.push_str(key);
            }
            PathSegment::Key(key) => {
                out.push_str("[\"");
                out.push_str(&key.replace('\\', "\\\\").replace('"', "\\\""));
                out.push_str("\"]");
            }
            PathSegment::Index(_) if wildcard => out.push_str("[*]"),
            PathSegment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// A name written after a dot: letters, digits, `_` and `-`, not first a digit.
fn is_plain_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn matches_steps(steps: &[Step], at: &[PathSegment], exact: bool) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return !exact || at.is_empty();
    };
    match step {
        Step::Key(key) => {
            matches!(at.first(), Some(PathSegment::Key(k)) if k == key)
                && matches_steps(rest, &at[1..], exact)
        }
        Step::Index(index) => {
            matches!(at.first(), Some(PathSegment::Index(i)) if i == index)
                && matches_steps(rest, &at[1..], exact)
        }
        Step::Any => !at.is_empty() && matches_steps(rest, &at[1..], exact),
        Step::Descend(key) => (0..at.len()).any(|j| {
            matches!(&at[j], PathSegment::Key(k) if k == key)
                && matches_steps(rest, &at[j + 1..], exact)
        }),
    }
}

fn redact_steps(value: &mut Value, steps: &[Step]) -> usize {
    let Some((step, rest)) = steps.split_first() else {
        *value = Value::String(MARKER.to_string());
        return 1;
    };
    match step {
        // Keys compare without regard to case here (`$..password` takes
        // `"Password"` too): redacting one field too many is the safe side.
        Step::Key(key) => match value {
            Value::Object(map) => map
                .iter_mut()
                .filter(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, v)| redact_steps(v, rest))
                .sum(),
            _ => 0,
        },
        Step::Index(index) => value.get_mut(*index).map_or(0, |v| redact_steps(v, rest)),
        Step::Any => match value {
            Value::Array(items) => items.iter_mut().map(|v| redact_steps(v, rest)).sum(),
            Value::Object(map) => map.values_mut().map(|v| redact_steps(v, rest)).sum(),
            _ => 0,
        },
        Step::Descend(key) => {
            let mut count = 0;
            match value {
                Value::Object(map) => {
                    for (name, child) in map.iter_mut() {
                        if name.eq_ignore_ascii_case(key) {
                            count += redact_steps(child, rest);
                            if rest.is_empty() {
                                // Replaced whole: nothing left below.
                                continue;
                            }
                        }
                        // Matches deeper down too (`$..user.password` in
                        // a user within a user).
                        count += redact_steps(child, steps);
                    }
                }
                Value::Array(items) => {
                    count += items
                        .iter_mut()
                        .map(|v| redact_steps(v, steps))
                        .sum::<usize>()
                }
                _ => {}
            }
            count
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for good in [
            "$.a",
            "$.a.b[0]",
            "$.items[*].price",
            "$..password",
            "$[\"a b\"].c",
            "$.*",
        ] {
            assert!(JsonPath::parse(good).is_ok(), "{good}");
        }
        for bad in ["a.b", "$", "$.", "$..", "$.a[", "$.a[x]", "$ a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        let mut v: Value =
            serde_json::from_str(r#"{"items":[{"p":1},{"p":2}],"q":[5,6]}"#).unwrap();
        assert_eq!(JsonPath::parse("$.items[*].p").unwrap().redact(&mut v), 2);
        assert_eq!(JsonPath::parse("$.q[1]").unwrap().redact(&mut v), 1);
        assert_eq!(
            v.to_string(),
            r#"{"items":[{"p":"[redacted]"},{"p":"[redacted]"}],"q":[5,"[redacted]"]}"#
        );
    }

    #[test]
    fn paths_match_concrete_positions_and_render_both_ways() {
        use PathSegment::{Index, Key};
        let at = [Key("items".into()), Index(3), Key("price".into())];
        assert_eq!(render_path(&at), "$.items[3].price");
        assert_eq!(render_pattern(&at), "$.items[*].price");
        for (path, hit) in [
            ("$.items[*].price", true),
            ("$.items[3].price", true),
            ("$.items[2].price", false),
            ("$.items", true),
            ("$..price", true),
            ("$..items", true),
            ("$.price", false),
            ("$.items[*].price.cents", false),
        ] {
            assert_eq!(JsonPath::parse(path).unwrap().matches(&at), hit, "{path}");
        }
        assert!(JsonPath::parse("$.items[*].price").unwrap().selects(&at));
        assert!(!JsonPath::parse("$.items").unwrap().selects(&at));
        let odd = [Key("a b".into()), Key("q\"x".into()), Key("7up".into())];
        assert_eq!(render_path(&odd), r#"$["a b"]["q\"x"]["7up"]"#);
    }

    #[test]
    fn descent_keeps_looking_below_a_match() {
        let mut value: Value = serde_json::from_str(
            r#"{"user":{"password":"a","invitedBy":{"user":{"password":"b"}}}}"#,
        )
        .unwrap();
        let path = JsonPath::parse("$..user.password").unwrap();
        assert_eq!(path.redact(&mut value), 2);
        // Keys compare without regard to case when redacting.
        let mut cased: Value = serde_json::from_str(r#"{"User":{"Password":"c"}}"#).unwrap();
        assert_eq!(path.redact(&mut cased), 1);
        assert_eq!(cased.to_string(), r#"{"User":{"Password":"[redacted]"}}"#);
        assert_eq!(
            value.to_string(),
            r#"{"user":{"password":"[redacted]","invitedBy":{"user":{"password":"[redacted]"}}}}"#
        );
    }
}
