//! Filters over exchanges: the one implementation behind `ls`, `--match`
//! on `record` and `replay`, and the tower layers.

use globset::{Glob, GlobMatcher};

use crate::exchange::HeaderList;
use crate::pb::Exchange;

/// A filter option that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// A status spec that is neither `404`, `5xx` nor `200-299`.
    #[error("invalid status {0:?}: expected a code (404), a class (5xx) or a range (200-299)")]
    Status(String),
    /// A glob that does not compile.
    #[error("invalid glob {pattern:?}: {reason}")]
    Glob {
        /// The pattern as given.
        pattern: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A `--match` term without `=`, or with a field this filter does not know.
    #[error(
        "invalid match {0:?}: expected FIELD=VALUE with FIELD one of method, path, authority, status, header, protocol"
    )]
    Match(String),
    /// A time that could not be read.
    #[error(transparent)]
    Time(#[from] crate::time::TimeParseError),
}

/// One accepted HTTP status, or class or range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSpec {
    /// Exactly this code (0 matches exchanges with no response).
    Code(u32),
    /// `Nxx`: N00 to N99.
    Class(u32),
    /// An inclusive range.
    Range(u32, u32),
}

impl StatusSpec {
    /// Parses `404`, `5xx` or `200-299`.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let bad = || FilterError::Status(text.to_string());
        let t = text.trim().to_ascii_lowercase();
        if let Some(class) = t.strip_suffix("xx") {
            let digit: u32 = class.parse().map_err(|_| bad())?;
            return if (1..=9).contains(&digit) {
                Ok(StatusSpec::Class(digit))
            } else {
                Err(bad())
            };
        }
        if let Some((lo, hi)) = t.split_once('-') {
            let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
            let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
            return if lo <= hi && hi < 1000 {
                Ok(StatusSpec::Range(lo, hi))
            } else {
                Err(bad())
            };
        }
        let code: u32 = t.parse().map_err(|_| bad())?;
        if code < 1000 {
            Ok(StatusSpec::Code(code))
        } else {
            Err(bad())
        }
    }

    /// Whether `status` is accepted.
    pub fn matches(self, status: u32) -> bool {
        match self {
            StatusSpec::Code(code) => status == code,
            StatusSpec::Class(class) => status / 100 == class,
            StatusSpec::Range(lo, hi) => (lo..=hi).contains(&status),
        }
    }
}

/// What a filter reads of a call: an [`Exchange`], or a recorder's view of
/// a call it has not built an exchange for.
pub trait CallHead {
    /// When the call started, ns since the epoch.
    fn recorded_at_ns(&self) -> u64;
    /// The response's status, 0 when there is none.
    fn status(&self) -> u32;
    /// `h1`, `h1.0`, `h2`, `grpc`, `h3`.
    fn protocol_label(&self) -> &'static str;
    /// The request's head, when there is a request.
    fn request_head(&self) -> Option<RequestHead<'_>>;
}

/// A request's head, as a filter reads it.
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, with its query.
    pub path: &'a str,
    /// The authority.
    pub authority: &'a str,
    /// The fields.
    pub headers: &'a dyn HeaderList,
}

impl CallHead for Exchange {
    fn recorded_at_ns(&self) -> u64 {
        self.recorded_at_ns
    }

    fn status(&self) -> u32 {
        Exchange::status(self)
    }

    fn protocol_label(&self) -> &'static str {
        Exchange::protocol_label(self)
    }

    fn request_head(&self) -> Option<RequestHead<'_>> {
        self.request.as_ref().map(|r| RequestHead {
            method: &r.method,
            path: &r.path,
            authority: &r.authority,
            headers: &r.headers,
        })
    }
}

/// A conjunction of conditions on an exchange. The empty filter accepts all.
#[derive(Debug, Clone, Default)]
pub struct ExchangeFilter {
    methods: Vec<String>,
    paths: Vec<GlobMatcher>,
    authorities: Vec<GlobMatcher>,
    statuses: Vec<StatusSpec>,
    headers: Vec<(String, Option<GlobMatcher>)>,
    protocols: Vec<String>,
    since_ns: Option<u64>,
    until_ns: Option<u64>,
}

fn glob(pattern: &str) -> Result<GlobMatcher, FilterError> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| FilterError::Glob {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl ExchangeFilter {
    /// Accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it has no condition (accepts everything).
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
            && self.paths.is_empty()
            && self.authorities.is_empty()
            && self.statuses.is_empty()
            && self.headers.is_empty()
            && self.protocols.is_empty()
            && self.since_ns.is_none()
            && self.until_ns.is_none()
    }

    /// Accept only these methods (case-insensitive); repeatable, and a value
    /// may list several: `GET,POST`.
    pub fn method(mut self, methods: &str) -> Self {
        self.methods
            .extend(split_list(methods).map(str::to_ascii_uppercase));
        self
    }

    /// Accept only paths (without query) matching this glob; `*` matches
    /// across `/` too. Several globs are alternatives.
    pub fn path(mut self, pattern: &str) -> Result<Self, FilterError> {
        self.paths.push(glob(pattern)?);
        Ok(self)
    }

    /// Accept only authorities (`host[:port]`) matching this glob.
    pub fn authority(mut self, pattern: &str) -> Result<Self, FilterError> {
        self.authorities.push(glob(pattern)?);
        Ok(self)
    }

    /// Accept only these statuses: `404`, `5xx`, `200-299`, or several
    /// joined by `,` or `|`.
    pub fn status(mut self, spec: &str) -> Result<Self, FilterError> {
        for part in split_list(spec) {
            self.statuses.push(StatusSpec::parse(part)?);
        }
        if self.statuses.is_empty() {
            return Err(FilterError::Status(spec.to_string()));
        }
        Ok(self)
    }

    /// Accept only requests carrying header `name`, and when given, with a
    /// value matching `value_glob`.
    pub fn header(mut self, name: &str, value_glob: Option<&str>) -> Result<Self, FilterError> {
        let matcher = value_glob.map(glob).transpose()?;
        self.headers.push((name.to_ascii_lowercase(), matcher));
        Ok(self)
    }

    /// Accept only exchanges that started at or after `ns`.
    pub fn since(mut self, ns: u64) -> Self {
        self.since_ns = Some(ns);
        self
    }

    /// Accept only exchanges that started before `ns`.
    pub fn until(mut self, ns: u64) -> Self {
        self.until_ns = Some(ns);
        self
    }

    /// The time window, for stores that can seek: (since, until).
    pub fn window(&self) -> (Option<u64>, Option<u64>) {
        (self.since_ns, self.until_ns)
    }

    /// Adds one `--match FIELD=VALUE` term: `method=GET,POST`,
    /// `path=/api/*`, `authority=*.internal`, `status=5xx`,
    /// `header=x-debug` or `header=x-tenant:acme*`, `protocol=grpc`.
    pub fn add_match(self, term: &str) -> Result<Self, FilterError> {
        let bad = || FilterError::Match(term.to_string());
        let (field, value) = term.split_once('=').ok_or_else(bad)?;
        match field.trim().to_ascii_lowercase().as_str() {
            "method" => Ok(self.method(value)),
            "path" => self.path(value),
            "authority" | "host" => self.authority(value),
            "status" => self.status(value),
            "header" => match value.split_once(':') {
                Some((name, glob)) => self.header(name.trim(), Some(glob.trim())),
                None => self.header(value.trim(), None),
            },
            "protocol" => {
                let mut filter = self;
                filter
                    .protocols
                    .extend(split_list(value).map(str::to_ascii_lowercase));
                Ok(filter)
            }
            _ => Err(bad()),
        }
    }

    /// Whether `call` (an [`Exchange`], or a view of one) passes every
    /// condition.
    pub fn matches(&self, call: &impl CallHead) -> bool {
        let t = call.recorded_at_ns();
        if self.since_ns.is_some_and(|s| t < s) || self.until_ns.is_some_and(|u| t >= u) {
            return false;
        }
        if !self.statuses.is_empty() && !self.statuses.iter().any(|s| s.matches(call.status())) {
            return false;
        }
        if !self.protocols.is_empty() && !self.protocols.iter().any(|p| p == call.protocol_label())
        {
            return false;
        }
        let needs_request = !self.methods.is_empty()
            || !self.paths.is_empty()
            || !self.authorities.is_empty()
            || !self.headers.is_empty();
        if !needs_request {
            return true;
        }
        let Some(req) = call.request_head() else {
            return false;
        };
        let path_only = req.path.split_once('?').map_or(req.path, |(p, _)| p);
        (self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| req.method.eq_ignore_ascii_case(m)))
            && (self.paths.is_empty() || self.paths.iter().any(|g| g.is_match(path_only)))
            && (self.authorities.is_empty()
                || self.authorities.iter().any(|g| g.is_match(req.authority)))
            && self
                .headers
                .iter()
                .all(|(name, value)| match (req.headers.header(name), value) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(v), Some(g)) => std::str::from_utf8(v).is_ok_and(|v| g.is_match(v)),
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{Header, Request, Response};

    fn ex(method: &str, path: &str, status: u32, at: u64) -> Exchange {
        Exchange {
            recorded_at_ns: at,
            request: Some(Request {
                method: method.into(),
                path: path.into(),
                authority: "api.local:8080".into(),
                headers: vec![Header::new("x-tenant", "acme-1")],
                ..Default::default()
            }),
            response: (status > 0).then(|| Response {
                status,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_specs() {
        assert_eq!(StatusSpec::parse("5xx"), Ok(StatusSpec::Class(5)));
        assert_eq!(StatusSpec::parse("404"), Ok(StatusSpec::Code(404)));
        assert_eq!(
            StatusSpec::parse("200-299"),
            Ok(StatusSpec::Range(200, 299))
        );
        for bad in ["", "xx", "0xx", "abc", "300-200", "1000"] {
            assert!(StatusSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_combine() -> Result<(), FilterError> {
        let f = ExchangeFilter::new()
            .method("get,post")
            .path("/api/*")?
            .status("2xx|404")?;
        assert!(f.matches(&ex("GET", "/api/users/1?x=2", 200, 0)));
        assert!(f.matches(&ex("post", "/api/x", 404, 0)));
        assert!(!f.matches(&ex("DELETE", "/api/x", 200, 0)));
        assert!(!f.matches(&ex("GET", "/other", 200, 0)));
        assert!(!f.matches(&ex("GET", "/api/x", 500, 0)));
        assert!(
            !f.matches(&ex("GET", "/api/x", 0, 0)),
            "no response is status 0"
        );
        Ok(())
    }

    #[test]
    fn time_window_is_half_open() {
        let f = ExchangeFilter::new().since(10).until(20);
        assert!(!f.matches(&ex("GET", "/", 200, 9)));
        assert!(f.matches(&ex("GET", "/", 200, 10)));
        assert!(!f.matches(&ex("GET", "/", 200, 20)));
    }

    #[test]
    fn match_terms() -> Result<(), FilterError> {
        let f = ExchangeFilter::new()
            .add_match("header=x-tenant:acme*")?
            .add_match("authority=api.*")?;
        assert!(f.matches(&ex("GET", "/", 200, 0)));
        let f = ExchangeFilter::new().add_match("header=x-missing")?;
        assert!(!f.matches(&ex("GET", "/", 200, 0)));
        assert_eq!(
            ExchangeFilter::new().add_match("colour=red").err(),
            Some(FilterError::Match("colour=red".into()))
        );
        assert!(ExchangeFilter::new().add_match("nonsense").is_err());
        assert!(ExchangeFilter::new().path("[").is_err());
        Ok(())
    }
}
