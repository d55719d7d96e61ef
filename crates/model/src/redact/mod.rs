//! Redaction before storage: the one implementation both capture paths
//! (the recording proxy and the tower layers) call before an exchange is
//! handed to a sink, and the mock calls on the calls it matches.
//!
//! By default the values of the credential headers ([`DEFAULT_HEADERS`])
//! and of the secret query parameters and form fields ([`DEFAULT_PARAMS`])
//! are replaced by [`MARKER`]; more headers, query parameters and form
//! fields by name, and JSON body fields by path (`$.card.number`,
//! `$..password`, `$.items[*].token`). JSON is found by its content, not
//! its content type; a compressed body is decoded first, and stored
//! decoded when something in it was redacted (`body_decoded`; its headers
//! stay as recorded). A body the rules apply to but that cannot be read
//! (malformed, cut at the size cap, an unknown coding, a decompression
//! bomb) is replaced by [`MARKER`]: a secret never reaches storage because
//! its body did not parse. A redacted exchange is flagged and lists what
//! was redacted (never the values).

mod form;
mod path;
mod rules;

use std::borrow::Cow;

use serde_json::Value;

use crate::coding;
use crate::exchange::HeaderList;
use crate::pb::{Exchange, Flags, Header, Request};

pub use form::ENCODED_MARKER;
pub use path::{JsonPath, PathError, PathSegment, render_path, render_pattern};
pub use rules::{RedactionRules, RuleError, RuleKind};

use form::Outcome;

/// What a redacted value becomes.
pub const MARKER: &str = "[redacted]";

/// Header names redacted unless the user opts out: credentials and
/// session or anti-forgery tokens.
pub const DEFAULT_HEADERS: [&str; 17] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-vault-token",
    "private-token",
    "ocp-apim-subscription-key",
    "x-functions-key",
    "dd-api-key",
];

/// Query parameter and form field names redacted unless the user opts
/// out: OAuth tokens and secrets, API keys, passwords and URL signatures.
/// Not `code`: an OAuth code is single-use and short-lived, and `code` is
/// far more often a country, an error or a product code.
pub const DEFAULT_PARAMS: [&str; 20] = [
    "access_token",
    "id_token",
    "refresh_token",
    "auth_token",
    "token",
    "api_key",
    "apikey",
    "key",
    "private_token",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
    "x-goog-signature",
    "x-goog-credential",
];

/// Header names whose values are URLs: their query is redacted by the
/// query rules (a redirect's `?access_token=`, a signed URL).
pub const URL_HEADERS: [&str; 3] = ["location", "content-location", "referer"];

/// What is known of a body besides its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyHead<'a> {
    /// Its `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// Its `Content-Encoding`, if any.
    pub content_encoding: Option<&'a str>,
    /// It was cut at the size cap.
    pub truncated: bool,
    /// It is already stored without its Content-Encoding.
    pub decoded: bool,
    /// Most decoded bytes a compressed body is inflated to and stored
    /// (the size cap, `--max-body`); `None`: [`coding::MAX_DECODED`]. A
    /// body that inflates past it is read as cut there.
    pub limit: Option<usize>,
}

/// What the body rules did to one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRedaction {
    /// The body to store instead: the redacted body, or [`MARKER`] when it
    /// could not be read.
    pub body: Vec<u8>,
    /// `body` is without the Content-Encoding the original had.
    pub decoded: bool,
    /// What was redacted: each JSON path that selected something,
    /// `form:NAME` for form fields, or `unparsed`.
    pub notes: Vec<String>,
    /// `body` is a prefix: the decoded body was cut at [`BodyHead::limit`].
    pub truncated: bool,
}

impl BodyRedaction {
    fn unparsed(encoded: bool) -> Self {
        BodyRedaction {
            body: MARKER.as_bytes().to_vec(),
            decoded: encoded,
            notes: vec!["unparsed".to_string()],
            truncated: false,
        }
    }
}

/// How a body is read by the rules.
enum BodyKind<'a> {
    Form,
    Multipart(Option<&'a str>),
    Json,
    Other,
}

fn essence(content_type: Option<&str>) -> String {
    content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a content type, past its leading white space, is a form's
/// (urlencoded or multipart), read without a lower-case copy: this runs
/// for every body recorded.
fn form_type(t: &[u8]) -> bool {
    let starts = |prefix: &str| {
        t.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    starts("application/x-www-form-urlencoded") || starts("multipart/")
}

/// Whether a body looks like JSON: its content type says so, or it starts
/// (after white space) as a JSON object or array does.
fn looks_json(essence: &str, body: &[u8]) -> bool {
    essence.contains("json") || sniffs_json(body)
}

/// Whether a body starts (after white space) as a JSON object or array.
fn sniffs_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// The redaction rules in force.
#[derive(Debug, Clone)]
pub struct Redactor {
    headers: Vec<String>,
    /// The names in `headers` by their length (the last: any longer): a
    /// field's name is compared only to the rules of its length and first
    /// letter, and most fields have a length or a first letter no rule of
    /// that length has.
    header_index: Vec<SameLength>,
    json: Vec<JsonPath>,
    query: Vec<String>,
    form: Vec<String>,
    /// Drop the `user:password@` of a request's authority.
    userinfo: bool,
}

impl Default for Redactor {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|h| h.to_string()).collect();
        let headers: Vec<String> = names(&DEFAULT_HEADERS);
        Redactor {
            header_index: index_by_length(&headers),
            headers,
            json: Vec::new(),
            query: names(&DEFAULT_PARAMS),
            form: names(&DEFAULT_PARAMS),
            userinfo: true,
        }
    }
}

/// Names of this many bytes or more share the last place of an index by
/// length.
const LONG_NAME: usize = 48;

/// The header rules of one length.
#[derive(Debug, Clone, Default)]
struct SameLength {
    /// A bit for each of their first bytes ([`first_bit`]).
    first: u32,
    names: Vec<String>,
}

/// A bit for a name's first byte, the same for either case of a letter
/// (other bytes may share a bit: they are then compared in full).
fn first_bit(byte: u8) -> u32 {
    1 << (byte & 31)
}

/// `names` by their length (see `Redactor::header_index`).
fn index_by_length(names: &[String]) -> Vec<SameLength> {
    let mut index = vec![SameLength::default(); LONG_NAME + 1];
    for name in names {
        if let (Some(same), Some(&first)) = (
            index.get_mut(name.len().min(LONG_NAME)),
            name.as_bytes().first(),
        ) {
            same.first |= first_bit(first);
            same.names.push(name.clone());
        }
    }
    index
}

fn add_name(list: &mut Vec<String>, name: &str) {
    let name = name.trim().to_ascii_lowercase();
    if !name.is_empty() && !list.contains(&name) {
        list.push(name);
    }
}

impl Redactor {
    /// The default rules ([`DEFAULT_HEADERS`], [`DEFAULT_PARAMS`] in
    /// queries and forms).
    pub fn new() -> Self {
        Self::default()
    }

    /// No rules at all (`--no-default-redaction`, before adding any).
    pub fn none() -> Self {
        Redactor {
            headers: Vec::new(),
            header_index: Vec::new(),
            json: Vec::new(),
            query: Vec::new(),
            form: Vec::new(),
            userinfo: false,
        }
    }

    /// Also redact the values of header (and trailer) `name`.
    pub fn header(mut self, name: &str) -> Self {
        add_name(&mut self.headers, name);
        self.header_index = index_by_length(&self.headers);
        self
    }

    /// Also redact the JSON body fields `path` selects.
    pub fn json_path(mut self, path: &str) -> Result<Self, PathError> {
        self.json.push(JsonPath::parse(path)?);
        Ok(self)
    }

    /// Also redact the values of query parameter `name`.
    pub fn query(mut self, name: &str) -> Self {
        add_name(&mut self.query, name);
        self
    }

    /// Also redact form field `name` (urlencoded and multipart bodies).
    pub fn form(mut self, name: &str) -> Self {
        add_name(&mut self.form, name);
        self
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.json.is_empty()
            && self.query.is_empty()
            && self.form.is_empty()
            && !self.userinfo
    }

    /// `authority` without its `user:password@`, when the rules drop it
    /// and it has one (an absolute-form target's or an h2 `:authority`'s).
    pub fn redact_authority<'a>(&self, authority: &'a str) -> Option<&'a str> {
        // Bytes first: almost no authority has one, and this is cheaper
        // than `rsplit_once`'s searcher on a short text.
        if !self.userinfo || !authority.as_bytes().contains(&b'@') {
            return None;
        }
        authority.rsplit_once('@').map(|(_, host)| host)
    }

    /// What a header (or trailer) field's value becomes, and the rule
    /// that changed it: [`MARKER`] for a credential header, the query
    /// rules applied to a URL-valued one ([`URL_HEADERS`]). `None`: kept.
    #[inline]
    pub fn redact_field<'v>(&self, name: &[u8], value: &'v [u8]) -> Option<(Cow<'v, [u8]>, &str)> {
        if let Some(rule) = self.header_rule(name) {
            return (value != MARKER.as_bytes())
                .then_some((Cow::Borrowed(MARKER.as_bytes()), rule));
        }
        // The name first: it is short and settles almost every field,
        // where scanning every value for a `?` cost more than the rest of
        // the check (this runs for every field of every exchange recorded).
        if !matches!(name.len(), 7 | 8 | 16) {
            // No URL header has this length (see `URL_HEADERS`).
            return None;
        }
        let url = URL_HEADERS
            .iter()
            .find(|h| h.as_bytes().eq_ignore_ascii_case(name))?;
        self.redact_url_field(url, value)
    }

    /// A URL-valued field's value with the query rules applied, noted as
    /// `url` (the header's name): `None` when nothing was redacted.
    fn redact_url_field<'r, 'v>(
        &'r self,
        url: &'r str,
        value: &'v [u8],
    ) -> Option<(Cow<'v, [u8]>, &'r str)> {
        if self.query.is_empty() || !value.contains(&b'?') {
            return None;
        }
        let (redacted, _) = self.redact_target(std::str::from_utf8(value).ok()?)?;
        Some((Cow::Owned(redacted.into_bytes()), url))
    }

    /// Redacts `exchange` in place, flagging it when anything was replaced.
    pub fn apply(&self, exchange: &mut Exchange) {
        let mut notes = Vec::new();
        if let Some(request) = exchange.request.as_mut() {
            if let Some(host) = self.redact_authority(&request.authority) {
                request.authority = host.to_string();
                notes.push("request.authority:userinfo".to_string());
            }
            if let Some((path, names)) = self.redact_target(&request.path) {
                request.path = path;
                notes.extend(names.iter().map(|n| format!("request.query:{n}")));
            }
            self.redact_headers(&mut request.headers, "request.header", &mut notes);
            self.redact_headers(&mut request.trailers, "request.trailer", &mut notes);
            let head = BodyHead {
                content_type: request.headers.header_str("content-type"),
                content_encoding: request.headers.header_str("content-encoding"),
                truncated: request.body_truncated,
                decoded: request.body_decoded,
                limit: None,
            };
            if let Some(done) = self.redact_body(&request.body, head) {
                request.body = done.body.into();
                request.body_decoded |= done.decoded;
                request.body_truncated |= done.truncated;
                notes.extend(done.notes.iter().map(|n| format!("request.body:{n}")));
            }
        }
        if let Some(response) = exchange.response.as_mut() {
            self.redact_headers(&mut response.headers, "response.header", &mut notes);
            self.redact_headers(&mut response.trailers, "response.trailer", &mut notes);
            let head = BodyHead {
                content_type: response.headers.header_str("content-type"),
                content_encoding: response.headers.header_str("content-encoding"),
                truncated: response.body_truncated,
                decoded: response.body_decoded,
                limit: None,
            };
            if let Some(done) = self.redact_body(&response.body, head) {
                response.body = done.body.into();
                response.body_decoded |= done.decoded;
                response.body_truncated |= done.truncated;
                notes.extend(done.notes.iter().map(|n| format!("response.body:{n}")));
            }
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

    /// A request's target and body as the mock matches them: with the
    /// query and body rules applied (a recording whose `access_token` was
    /// redacted still matches a live call that sends one).
    pub fn redact_call<'b>(
        &self,
        path_and_query: &'b str,
        body: &'b [u8],
        head: BodyHead<'_>,
    ) -> (Cow<'b, str>, Cow<'b, [u8]>) {
        let path = match self.redact_target(path_and_query) {
            Some((path, _)) => Cow::Owned(path),
            None => Cow::Borrowed(path_and_query),
        };
        let body = match self.redact_body(body, head) {
            Some(done) => Cow::Owned(done.body),
            None => Cow::Borrowed(body),
        };
        (path, body)
    }

    /// A recorded request as the mock matches it (see [`Redactor::redact_call`]).
    pub fn redact_recorded_call(&self, request: &Request) -> Option<Request> {
        let head = BodyHead {
            content_type: request.headers.header_str("content-type"),
            content_encoding: request.headers.header_str("content-encoding"),
            truncated: request.body_truncated,
            decoded: request.body_decoded,
            limit: None,
        };
        let (path, body) = self.redact_call(&request.path, &request.body, head);
        if matches!((&path, &body), (Cow::Borrowed(_), Cow::Borrowed(_))) {
            return None;
        }
        let mut redacted = request.clone();
        redacted.path = path.into_owned();
        redacted.body = body.into_owned().into();
        Some(redacted)
    }

    fn redact_headers(&self, headers: &mut [Header], place: &str, notes: &mut Vec<String>) {
        for header in headers.iter_mut() {
            if let Some((value, rule)) = self.redact_field(header.name.as_bytes(), &header.value) {
                let (value, rule) = (value.into_owned(), rule.to_string());
                header.value = value;
                notes.push(format!("{place}:{rule}"));
            }
        }
    }

    /// The rule (a configured name, lower case) that redacts the values of
    /// header `name`, if one does.
    #[inline]
    pub fn header_rule(&self, name: &[u8]) -> Option<&str> {
        // Compared without lower-casing a copy of every name, and only to
        // the rules of its length: this runs for every field of every
        // exchange recorded.
        let same = self.header_index.get(name.len().min(LONG_NAME))?;
        if same.first & first_bit(*name.first()?) == 0 {
            return None;
        }
        same.names
            .iter()
            .find(|h| h.as_bytes().eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// `path_and_query` with the query rules applied, and the rules that
    /// replaced a value: `None` when nothing was.
    #[inline]
    pub fn redact_target(&self, path_and_query: &str) -> Option<(String, Vec<&str>)> {
        // Most targets have no query: told here, without a call.
        if !path_and_query.as_bytes().contains(&b'?') {
            return None;
        }
        self.redact_query(path_and_query)
    }

    fn redact_query(&self, path_and_query: &str) -> Option<(String, Vec<&str>)> {
        let (path, query) = path_and_query.split_once('?')?;
        match form::redact_pairs(query.as_bytes(), &self.query) {
            Outcome::Redacted(query, names) => {
                let query = String::from_utf8_lossy(&query);
                Some((format!("{path}?{query}"), names))
            }
            Outcome::Unchanged | Outcome::Unparsed => None,
        }
    }

    /// Whether the body rules may change a body of this content type (so
    /// that the recorder only copies the bodies they may change).
    pub fn may_redact_body(&self, content_type: Option<&str>) -> bool {
        if !self.json.is_empty() {
            return true;
        }
        !self.form.is_empty() && content_type.is_some_and(|t| form_type(t.trim_start().as_bytes()))
    }

    /// [`Redactor::may_redact_body`] for a content type as recorded, not
    /// yet read as text: the recorder asks this of every body, and most
    /// content types are told apart by their first letter without reading
    /// them as text.
    pub fn may_redact_raw_body(&self, content_type: Option<&[u8]>) -> bool {
        if !self.json.is_empty() {
            return true;
        }
        if self.form.is_empty() {
            return false;
        }
        let Some(raw) = content_type else {
            return false;
        };
        // Past the ASCII white space `str::trim_start` takes away, an ASCII
        // byte starts the type as text too: one that is no form's is told
        // without reading it as text. The rest (a form's, one starting
        // past ASCII, one that is not UTF-8) is read as text, as before.
        let start = raw
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
            .unwrap_or(raw.len());
        let t = raw.get(start..).unwrap_or_default();
        if t.first().is_some_and(u8::is_ascii) && !form_type(t) {
            return false;
        }
        self.may_redact_body(std::str::from_utf8(raw).ok())
    }

    /// What the body rules make of one body: `None` when they leave it as
    /// it is. A compressed body is decoded first (and the result says so);
    /// one the rules apply to but that cannot be read is replaced by
    /// [`MARKER`], noted `unparsed`.
    pub fn redact_body(&self, body: &[u8], head: BodyHead<'_>) -> Option<BodyRedaction> {
        if body.is_empty() || !self.may_redact_body(head.content_type) {
            return None;
        }
        let encoded = !head.decoded && coding::is_encoded(head.content_encoding);
        // Inflated no further than may be stored: a bomb costs the size
        // cap, and what is past it is read as cut.
        let mut capped = false;
        let plain: Cow<'_, [u8]> = if encoded {
            match coding::decode_capped(
                head.content_encoding.unwrap_or(""),
                body,
                head.limit.unwrap_or(coding::MAX_DECODED),
                head.truncated,
            ) {
                Ok(Some((plain, cut))) => {
                    capped = cut;
                    Cow::Owned(plain)
                }
                Ok(None) => Cow::Borrowed(body),
                // Unreadable: what it holds cannot be told.
                Err(_) => return Some(BodyRedaction::unparsed(true)),
            }
        } else {
            Cow::Borrowed(body)
        };
        let cut = head.truncated || capped;
        let essence = essence(head.content_type);
        // JSON is found by its content whatever the content type says (a
        // JSON body sent as a form, jQuery's default, is JSON all the same).
        let kind = if !self.json.is_empty() && sniffs_json(&plain) {
            BodyKind::Json
        } else if essence == "application/x-www-form-urlencoded" {
            BodyKind::Form
        } else if essence.starts_with("multipart/") {
            BodyKind::Multipart(head.content_type.and_then(form::boundary))
        } else if looks_json(&essence, &plain) {
            BodyKind::Json
        } else {
            BodyKind::Other
        };
        let outcome = match kind {
            BodyKind::Form if !self.form.is_empty() => form::redact_pairs(&plain, &self.form),
            BodyKind::Multipart(Some(boundary)) if !self.form.is_empty() => {
                form::redact_multipart(&plain, boundary, &self.form, cut)
            }
            BodyKind::Multipart(None) if !self.form.is_empty() => Outcome::Unparsed,
            BodyKind::Json if !self.json.is_empty() => self.redact_json(&plain),
            // A compressed body cut before its first decodable byte: what
            // it holds cannot be told.
            BodyKind::Other
                if encoded && !self.json.is_empty() && plain.trim_ascii().is_empty() =>
            {
                Outcome::Unparsed
            }
            _ => Outcome::Unchanged,
        };
        match outcome {
            Outcome::Unchanged => None,
            Outcome::Unparsed => Some(BodyRedaction::unparsed(encoded)),
            Outcome::Redacted(body, notes) => {
                let form = !matches!(kind, BodyKind::Json);
                Some(BodyRedaction {
                    body,
                    decoded: encoded,
                    truncated: capped,
                    notes: notes
                        .iter()
                        .map(|n| {
                            if form {
                                format!("form:{n}")
                            } else {
                                n.to_string()
                            }
                        })
                        .collect(),
                })
            }
        }
    }

    fn redact_json(&self, body: &[u8]) -> Outcome<'_> {
        let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
            return Outcome::Unparsed;
        };
        let mut notes = Vec::new();
        for path in &self.json {
            if path.redact(&mut value) > 0 {
                notes.push(path.as_str());
            }
        }
        if notes.is_empty() {
            return Outcome::Unchanged;
        }
        match serde_json::to_vec(&value) {
            Ok(body) => Outcome::Redacted(body, notes),
            Err(_) => Outcome::Unparsed,
        }
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
    fn header_rules_are_found_whatever_their_length_or_case() {
        let long = format!("x-{}", "a".repeat(60));
        let rules = Redactor::none().header(&long).header("X-Short");
        let upper = long.to_ascii_uppercase();
        assert_eq!(rules.header_rule(upper.as_bytes()), Some(long.as_str()));
        assert_eq!(rules.header_rule(b"X-SHORT"), Some("x-short"));
        assert_eq!(rules.header_rule(b"x-shor"), None);
        let longer = format!("x-{}", "a".repeat(61));
        assert_eq!(rules.header_rule(longer.as_bytes()), None);
        assert_eq!(rules.header_rule(b""), None);
        let defaults = Redactor::default();
        for name in DEFAULT_HEADERS {
            let upper = name.to_ascii_uppercase();
            assert_eq!(defaults.header_rule(upper.as_bytes()), Some(name));
        }
        assert_eq!(defaults.header_rule(b"content-type"), None);
        // Names that do not start with a letter are found all the same.
        let odd = Redactor::none().header("~x").header("1-Y");
        assert_eq!(odd.header_rule(b"~X"), Some("~x"));
        assert_eq!(odd.header_rule(b"1-y"), Some("1-y"));
        assert_eq!(odd.header_rule(b"^x"), None);
    }

    #[test]
    fn raw_content_types_are_judged_as_text_ones() {
        let rules = [
            Redactor::new(),
            Redactor::none(),
            Redactor::none().json_path("$.a").unwrap(),
        ];
        for redactor in &rules {
            for raw in [
                &b"application/json"[..],
                b"application/x-www-form-urlencoded",
                b" \t\x0bMultipart/form-data; boundary=b",
                b"\xc2\xa0multipart/form-data",
                b"\xe3\x80\x80APPLICATION/X-WWW-FORM-URLENCODED",
                b"\xff multipart/",
                b"text/plain",
                b"",
                b"  ",
                b"m",
                b"\x1cmultipart/",
                b"multipart/\xff",
                b"application/x-www-form-urlencoded\xc3",
            ] {
                assert_eq!(
                    redactor.may_redact_raw_body(Some(raw)),
                    redactor.may_redact_body(std::str::from_utf8(raw).ok()),
                    "{:?}",
                    String::from_utf8_lossy(raw)
                );
            }
            assert_eq!(
                redactor.may_redact_raw_body(None),
                redactor.may_redact_body(None)
            );
        }
    }

    #[test]
    fn url_headers_have_the_lengths_redact_field_passes() {
        // `redact_field` passes over names of any other length.
        for name in URL_HEADERS {
            assert!(matches!(name.len(), 7 | 8 | 16), "{name}");
        }
        let redactor = Redactor::new();
        for name in ["Location", "content-location", "REFERER"] {
            let redacted = redactor.redact_field(name.as_bytes(), b"/a?token=t&b=1");
            assert_eq!(
                redacted.map(|(v, _)| v.into_owned()),
                Some(b"/a?token=%5Bredacted%5D&b=1".to_vec()),
                "{name}"
            );
        }
        assert_eq!(redactor.redact_field(b"x-location", b"/a?token=t"), None);
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
        assert_eq!(&ex.request.as_ref().unwrap().body[..], MARKER.as_bytes());
        assert_eq!(ex.flags.unwrap().redactions, ["request.body:unparsed"]);
    }

    #[test]
    fn nothing_to_redact_leaves_no_flag() {
        let mut ex = exchange(r#"{"a":1}"#);
        Redactor::none().apply(&mut ex);
        assert!(ex.flags.is_none());
        assert_eq!(&ex.request.unwrap().body[..], br#"{"a":1}"#);
    }

    fn request(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
        Exchange {
            request: Some(Request {
                method: "POST".into(),
                path: path.into(),
                headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
                body: body.to_vec().into(),
                body_size: body.len() as u64,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn holds(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn json_is_found_by_its_content_not_its_type() {
        let redactor = Redactor::none().json_path("$.password").unwrap();
        let mut ex = request(
            "/login",
            &[("content-type", "text/plain")],
            br#"{"user":"ann","password":"hunter2"}"#,
        );
        redactor.apply(&mut ex);
        let stored = ex.request.as_ref().unwrap();
        assert_eq!(
            &stored.body[..],
            br#"{"user":"ann","password":"[redacted]"}"#
        );
        assert_eq!(ex.flags.unwrap().redactions, ["request.body:$.password"]);
    }

    #[test]
    fn compressed_json_is_decoded_redacted_and_flagged() {
        let redactor = Redactor::none().json_path("$..password").unwrap();
        let body = gzip(br#"{"user":"ann","password":"hunter2"}"#);
        let mut ex = request(
            "/login",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            &body,
        );
        redactor.apply(&mut ex);
        let stored = ex.request.as_ref().unwrap();
        assert_eq!(
            &stored.body[..],
            br#"{"user":"ann","password":"[redacted]"}"#
        );
        assert!(stored.body_decoded, "stored decoded, and flagged so");
        assert_eq!(
            stored.headers.header_str("content-encoding"),
            Some("gzip"),
            "headers stay as recorded"
        );
        // Nothing to redact: kept compressed, as it was.
        let mut clean = gzipped_request(br#"{"user":"ann"}"#);
        redactor.apply(&mut clean);
        assert!(!clean.request.as_ref().unwrap().body_decoded);
        assert!(clean.flags.is_none());
    }

    fn gzipped_request(plain: &[u8]) -> Exchange {
        request("/", &[("content-encoding", "gzip")], &gzip(plain))
    }

    #[test]
    fn unreadable_bodies_become_the_marker() {
        let redactor = Redactor::none().json_path("$.password").unwrap();
        // Cut at the size cap, compressed: the prefix is not JSON.
        let whole = gzip(br#"{"password":"hunter2","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#);
        let mut cut = request(
            "/",
            &[("content-encoding", "gzip")],
            &whole[..whole.len() / 2],
        );
        cut.request.as_mut().unwrap().body_truncated = true;
        redactor.apply(&mut cut);
        let stored = cut.request.as_ref().unwrap();
        assert_eq!(&stored.body[..], MARKER.as_bytes());
        assert!(stored.body_decoded);
        assert_eq!(cut.flags.unwrap().redactions, ["request.body:unparsed"]);
        // A coding nobody knows.
        let mut odd = request(
            "/",
            &[("content-encoding", "compress")],
            b"\x1f\x9dpassword",
        );
        redactor.apply(&mut odd);
        assert_eq!(&odd.request.unwrap().body[..], MARKER.as_bytes());
        // Text that is not JSON is left alone.
        let mut text = request("/", &[("content-type", "text/plain")], b"password: hunter2");
        redactor.apply(&mut text);
        assert!(text.flags.is_none());
    }

    #[test]
    fn userinfo_and_url_headers_are_redacted_by_default() {
        let mut ex = request(
            "/",
            &[("referer", "https://app.test/cb?code=1&access_token=RT")],
            b"",
        );
        {
            let request = ex.request.as_mut().unwrap();
            request.authority = "user:pw@api.test:8443".into();
        }
        ex.response = Some(Response {
            headers: vec![
                Header::new("Location", "https://s3.test/o?X-Amz-Signature=SIG&x=1"),
                Header::new("Content-Location", "/plain"),
            ],
            ..Default::default()
        });
        Redactor::new().apply(&mut ex);
        let stored = ex.request.as_ref().unwrap();
        assert_eq!(stored.authority, "api.test:8443");
        assert_eq!(
            stored.headers.header_str("referer"),
            Some("https://app.test/cb?code=1&access_token=%5Bredacted%5D")
        );
        let response = ex.response.as_ref().unwrap();
        assert_eq!(
            response.headers.header_str("location"),
            Some("https://s3.test/o?X-Amz-Signature=%5Bredacted%5D&x=1")
        );
        assert_eq!(
            response.headers.header_str("content-location"),
            Some("/plain")
        );
        assert_eq!(
            ex.flags.as_ref().unwrap().redactions,
            [
                "request.authority:userinfo",
                "request.header:referer",
                "response.header:location"
            ]
        );
        // Without the defaults, both stay.
        let mut ex = request("/", &[], b"");
        ex.request.as_mut().unwrap().authority = "user:pw@api.test".into();
        Redactor::none().apply(&mut ex);
        assert_eq!(ex.request.unwrap().authority, "user:pw@api.test");
    }

    #[test]
    fn vendor_keys_are_in_the_defaults() {
        let mut ex = request(
            "/maps?key=K1&private_token=K2&code=US",
            &[
                ("Ocp-Apim-Subscription-Key", "K3"),
                ("x-functions-key", "K4"),
                ("DD-API-KEY", "K5"),
            ],
            b"",
        );
        Redactor::new().apply(&mut ex);
        let stored = ex.request.unwrap();
        assert_eq!(
            stored.path,
            "/maps?key=%5Bredacted%5D&private_token=%5Bredacted%5D&code=US"
        );
        assert!(stored.headers.iter().all(|h| h.value == MARKER.as_bytes()));
    }

    #[test]
    fn default_query_and_form_rules() {
        let redactor = Redactor::new();
        let mut ex = request(
            "/cb?code=1&access_token=abc&state=x",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-api-key", "k"),
            ],
            b"user=ann&password=hunter2",
        );
        redactor.apply(&mut ex);
        let stored = ex.request.as_ref().unwrap();
        assert_eq!(
            stored.path,
            "/cb?code=1&access_token=%5Bredacted%5D&state=x"
        );
        assert_eq!(&stored.body[..], b"user=ann&password=%5Bredacted%5D");
        assert_eq!(
            ex.flags.unwrap().redactions,
            [
                "request.query:access_token",
                "request.header:x-api-key",
                "request.body:form:password"
            ]
        );
        // Opted out: kept; asked for by name: redacted.
        let mut ex = request("/?access_token=abc&session=s", &[], b"");
        Redactor::none().query("Session").apply(&mut ex);
        assert_eq!(
            ex.request.unwrap().path,
            "/?access_token=abc&session=%5Bredacted%5D"
        );
    }

    #[test]
    fn multipart_fields_are_redacted_by_name() {
        let body =
            b"--b1\r\nContent-Disposition: form-data; name=\"pin\"\r\n\r\n1234\r\n--b1--\r\n";
        let mut ex = request(
            "/",
            &[("content-type", "multipart/form-data; boundary=b1")],
            body,
        );
        Redactor::none().form("pin").apply(&mut ex);
        let stored = ex.request.unwrap();
        assert!(!holds(&stored.body, "1234"));
        assert!(holds(&stored.body, MARKER));
        // No boundary: the body cannot be read, so it is not kept.
        let mut ex = request("/", &[("content-type", "multipart/form-data")], body);
        Redactor::none().form("pin").apply(&mut ex);
        assert_eq!(&ex.request.unwrap().body[..], MARKER.as_bytes());
    }

    #[test]
    fn a_json_body_sent_as_a_form_is_read_as_json() {
        for content_type in [
            "application/x-www-form-urlencoded; charset=UTF-8",
            "multipart/form-data; boundary=b1",
        ] {
            let mut ex = request(
                "/",
                &[("content-type", content_type)],
                br#"{"user":"ann","password":"hunter2"}"#,
            );
            Redactor::new()
                .json_path("$..password")
                .unwrap()
                .apply(&mut ex);
            let stored = ex.request.unwrap();
            assert!(!holds(&stored.body, "hunter2"), "{content_type}");
            assert!(holds(&stored.body, "ann"), "{content_type}");
        }
    }

    #[test]
    fn a_bomb_inflates_no_further_than_the_limit() {
        // 8 MiB of zeros behind a form field: a few KiB compressed.
        let mut form = b"a=1&password=hunter2&pad=".to_vec();
        form.resize(8 << 20, b'0');
        let bomb = gzip(&form);
        assert!(bomb.len() < 64 << 10);
        let head = BodyHead {
            content_type: Some("application/x-www-form-urlencoded"),
            content_encoding: Some("gzip"),
            truncated: false,
            decoded: false,
            limit: Some(1024),
        };
        // Default rules: the prefix is read as cut, redacted, and stored
        // decoded no longer than the limit (plus the marker), flagged.
        let done = Redactor::new().redact_body(&bomb, head).unwrap();
        assert!(done.truncated && done.decoded);
        assert!(done.body.len() <= 1024 + ENCODED_MARKER.len());
        assert!(done.body.starts_with(b"a=1&password=%5Bredacted%5D&pad=00"));
        // JSON cut at the limit cannot be read: the marker.
        let mut json = br#"{"password":"hunter2","pad":""#.to_vec();
        json.resize(8 << 20, b'0');
        json.extend_from_slice(b"\"}");
        let head = BodyHead {
            content_type: Some("application/json"),
            ..head
        };
        let done = Redactor::none()
            .json_path("$.password")
            .unwrap()
            .redact_body(&gzip(&json), head)
            .unwrap();
        assert_eq!(done.body, MARKER.as_bytes());
    }

    #[test]
    fn a_redacted_recording_and_a_live_call_match() {
        let redactor = Redactor::new();
        let mut recorded = request("/items?access_token=abc&q=1", &[], b"");
        redactor.apply(&mut recorded);
        let recorded = recorded.request.unwrap();
        // Already redacted: the same again.
        assert_eq!(redactor.redact_recorded_call(&recorded), None);
        let (live, _) =
            redactor.redact_call("/items?access_token=other&q=1", b"", BodyHead::default());
        assert_eq!(live, recorded.path);
    }

    proptest::proptest! {
        // Any body under any content type and coding: an answer, never a
        // panic.
        #[test]
        fn body_redaction_is_total(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            content_type in proptest::option::of("(application/json|text/plain|application/x-www-form-urlencoded|multipart/form-data; boundary=b|multipart/form-data)"),
            content_encoding in proptest::option::of("(gzip|br|zstd|deflate|x)"),
            truncated: bool,
        ) {
            let redactor = Redactor::new().json_path("$..password").unwrap();
            let _ = redactor.redact_body(&body, BodyHead {
                content_type: content_type.as_deref(),
                content_encoding: content_encoding.as_deref(),
                truncated,
                decoded: false,
                limit: Some(64),
            });
        }

        // A JSON password, plain or gzip, whole or cut anywhere: never
        // stored.
        #[test]
        fn a_json_secret_is_never_kept(
            secret in "[A-Za-z0-9]{8,16}",
            pad in "[a-z ]{0,64}",
            cut in 0usize..200,
            zipped: bool,
        ) {
            let text = format!(r#"{{"pad":"{pad}","password":"{secret}","n":[1,2]}}"#);
            let whole = if zipped { gzip(text.as_bytes()) } else { text.clone().into_bytes() };
            let at = cut.min(whole.len());
            let body = &whole[..at];
            let redactor = Redactor::none().json_path("$..password").unwrap();
            let head = BodyHead {
                content_type: Some("text/plain"),
                content_encoding: zipped.then_some("gzip"),
                truncated: at < whole.len(),
                decoded: false,
                limit: None,
            };
            let stored = match redactor.redact_body(body, head) {
                Some(done) => done.body,
                None => body.to_vec(),
            };
            let plain = if zipped && stored != MARKER.as_bytes() && !stored.starts_with(b"{") {
                crate::coding::decode("gzip", &stored, 1 << 20, true)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            } else {
                stored.clone()
            };
            proptest::prop_assert!(!holds(&plain, &secret), "{:?}", String::from_utf8_lossy(&plain));
        }
    }
}
