//! Redaction before storage: the one implementation both capture paths
//! (the recording proxy and the tower layers) call before an exchange is
//! handed to a sink.
//!
//! By default the values of `Authorization`, `Proxy-Authorization`,
//! `Cookie` and `Set-Cookie` are replaced by [`MARKER`]; more headers by
//! name, and JSON body fields by path (`$.card.number`, `$..password`,
//! `$.items[*].token`). A redacted exchange is flagged and lists what was
//! redacted (never the values).

use serde_json::Value;

use crate::exchange::HeaderList;
use crate::pb::{Exchange, Flags, Header};

/// What a redacted value becomes.
pub const MARKER: &str = "[redacted]";

/// Header names redacted unless the user opts out.
pub const DEFAULT_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

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

/// What the JSON rules did to one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRedaction<'r> {
    /// The body to store instead: the redacted document, or nothing when
    /// the body could not be read. `None`: keep it.
    pub body: Option<Vec<u8>>,
    /// What was redacted: each path that selected something, or
    /// `unparsed`.
    pub notes: Vec<&'r str>,
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

    /// Replaces every value the path selects with [`MARKER`]; returns how many.
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
        Step::Key(key) => value
            .get_mut(key.as_str())
            .map_or(0, |v| redact_steps(v, rest)),
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
                        if name == key {
                            count += redact_steps(child, rest);
                        } else {
                            count += redact_steps(child, steps);
                        }
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

/// The redaction rules in force.
#[derive(Debug, Clone)]
pub struct Redactor {
    headers: Vec<String>,
    json: Vec<JsonPath>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            headers: DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect(),
            json: Vec::new(),
        }
    }
}

impl Redactor {
    /// The default rules (the credential headers).
    pub fn new() -> Self {
        Self::default()
    }

    /// No rules at all (`--no-default-redaction`, before adding any).
    pub fn none() -> Self {
        Redactor {
            headers: Vec::new(),
            json: Vec::new(),
        }
    }

    /// Also redact the values of header (and trailer) `name`.
    pub fn header(mut self, name: &str) -> Self {
        let name = name.trim().to_ascii_lowercase();
        if !self.headers.contains(&name) {
            self.headers.push(name);
        }
        self
    }

    /// Also redact the JSON body fields `path` selects.
    pub fn json_path(mut self, path: &str) -> Result<Self, PathError> {
        self.json.push(JsonPath::parse(path)?);
        Ok(self)
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.json.is_empty()
    }

    /// Redacts `exchange` in place, flagging it when anything was replaced.
    pub fn apply(&self, exchange: &mut Exchange) {
        let mut notes = Vec::new();
        if let Some(request) = exchange.request.as_mut() {
            self.redact_headers(&mut request.headers, "request.header", &mut notes);
            self.redact_headers(&mut request.trailers, "request.trailer", &mut notes);
            self.redact_body(
                &mut request.body,
                &request.headers,
                "request.body",
                &mut notes,
            );
        }
        if let Some(response) = exchange.response.as_mut() {
            self.redact_headers(&mut response.headers, "response.header", &mut notes);
            self.redact_headers(&mut response.trailers, "response.trailer", &mut notes);
            self.redact_body(
                &mut response.body,
                &response.headers,
                "response.body",
                &mut notes,
            );
        }
        if notes.is_empty() {
            return;
        }
        let flags = exchange.flags.get_or_insert_with(Flags::default);
        flags.redacted = true;
        for note in notes {
            if !flags.redactions.contains(&note) {
                flags.redactions.push(note);
            }
        }
    }

    fn redact_headers(&self, headers: &mut [Header], place: &str, notes: &mut Vec<String>) {
        for header in headers.iter_mut() {
            let Some(rule) = self.header_rule(header.name.as_bytes()) else {
                continue;
            };
            if header.value != MARKER.as_bytes() {
                header.value = MARKER.as_bytes().to_vec();
                notes.push(format!("{place}:{rule}"));
            }
        }
    }

    fn redact_body(
        &self,
        body: &mut bytes::Bytes,
        headers: &[Header],
        place: &str,
        notes: &mut Vec<String>,
    ) {
        let Some(done) = self.redact_json_body(
            body,
            headers.header_str("content-type"),
            headers.header_str("content-encoding"),
        ) else {
            return;
        };
        if let Some(replacement) = done.body {
            *body = replacement.into();
        }
        notes.extend(done.notes.iter().map(|note| format!("{place}:{note}")));
    }

    /// The rule (a configured name, lower case) that redacts the values of
    /// header `name`, if one does.
    pub fn header_rule(&self, name: &[u8]) -> Option<&str> {
        // Compared without lower-casing a copy of every name: this runs for
        // every field of every exchange recorded.
        self.headers
            .iter()
            .find(|h| h.as_bytes().eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// Whether there are JSON body rules.
    pub fn has_json_rules(&self) -> bool {
        !self.json.is_empty()
    }

    /// What the JSON rules make of one body, given its `Content-Type` and
    /// `Content-Encoding` (as text, when valid): `None` when they leave it
    /// as it is. A JSON body they cannot be applied to (cut at the size
    /// cap, compressed, malformed) is not stored at all: a secret must
    /// never reach storage because its body did not parse.
    pub fn redact_json_body(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Option<BodyRedaction<'_>> {
        if self.json.is_empty() || body.is_empty() {
            return None;
        }
        let content_type = content_type.unwrap_or("").to_ascii_lowercase();
        let looks_json = content_type.contains("json")
            || (content_type.is_empty()
                && matches!(
                    body.iter().find(|b| !b.is_ascii_whitespace()),
                    Some(b'{' | b'[')
                ));
        if !looks_json {
            return None;
        }
        let encoded = content_encoding.is_some_and(|c| !c.trim().eq_ignore_ascii_case("identity"));
        let parsed = if encoded {
            None
        } else {
            serde_json::from_slice::<Value>(body).ok()
        };
        let Some(mut value) = parsed else {
            return Some(BodyRedaction {
                body: Some(Vec::new()),
                notes: vec!["unparsed"],
            });
        };
        let mut notes = Vec::new();
        for path in &self.json {
            if path.redact(&mut value) > 0 {
                notes.push(path.as_str());
            }
        }
        if notes.is_empty() {
            return None;
        }
        Some(BodyRedaction {
            body: serde_json::to_vec(&value).ok(),
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{Request, Response};

    fn exchange(body: &str) -> Exchange {
        Exchange {
            request: Some(Request {
                headers: vec![
                    Header::new("Authorization", "Bearer secret"),
                    Header::new("content-type", "application/json"),
                    Header::new("X-Api-Key", "k1"),
                ],
                body: body.as_bytes().to_vec().into(),
                ..Default::default()
            }),
            response: Some(Response {
                headers: vec![Header::new("Set-Cookie", "s=1")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn default_headers_and_json_paths() {
        let redactor = Redactor::new()
            .header("x-api-key")
            .json_path("$.card.number")
            .unwrap()
            .json_path("$..password")
            .unwrap();
        let mut ex = exchange(
            r#"{"card":{"number":"4111","exp":"12/30"},"users":[{"password":"a"},{"n":{"password":"b"}}]}"#,
        );
        redactor.apply(&mut ex);
        let request = ex.request.as_ref().unwrap();
        assert_eq!(request.headers.header_str("authorization"), Some(MARKER));
        assert_eq!(request.headers.header_str("x-api-key"), Some(MARKER));
        assert_eq!(
            request.headers.header_str("content-type"),
            Some("application/json")
        );
        assert_eq!(
            std::str::from_utf8(&request.body).unwrap(),
            r#"{"card":{"number":"[redacted]","exp":"12/30"},"users":[{"password":"[redacted]"},{"n":{"password":"[redacted]"}}]}"#
        );
        assert_eq!(
            ex.response
                .as_ref()
                .unwrap()
                .headers
                .header_str("set-cookie"),
            Some(MARKER)
        );
        let flags = ex.flags.unwrap();
        assert!(flags.redacted);
        assert_eq!(
            flags.redactions,
            [
                "request.header:authorization",
                "request.header:x-api-key",
                "request.body:$.card.number",
                "request.body:$..password",
                "response.header:set-cookie"
            ]
        );
    }

    #[test]
    fn unparsable_json_is_not_stored() {
        let redactor = Redactor::none().json_path("$.token").unwrap();
        let mut ex = exchange(r#"{"token":"abc", "cut here"#);
        redactor.apply(&mut ex);
        assert!(ex.request.as_ref().unwrap().body.is_empty());
        assert_eq!(ex.flags.unwrap().redactions, ["request.body:unparsed"]);
    }

    #[test]
    fn nothing_to_redact_leaves_no_flag() {
        let mut ex = exchange(r#"{"a":1}"#);
        Redactor::none().apply(&mut ex);
        assert!(ex.flags.is_none());
        assert_eq!(&ex.request.unwrap().body[..], br#"{"a":1}"#);
    }

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
}
