//! Redaction rules as users give them (`--redact-*` flags, `REPRISE_REDACT_*`
//! variables), checked once for both.

use super::Redactor;

/// Redaction rules as a user gives them (flags, environment variables),
/// before they are checked: [`RedactionRules::redactor`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionRules {
    /// Start from [`DEFAULT_HEADERS`](super::DEFAULT_HEADERS) and [`DEFAULT_PARAMS`](super::DEFAULT_PARAMS).
    pub defaults: bool,
    /// More header names.
    pub headers: Vec<String>,
    /// JSON paths.
    pub json: Vec<String>,
    /// More query parameter names.
    pub query: Vec<String>,
    /// More form field names.
    pub form: Vec<String>,
}

impl Default for RedactionRules {
    fn default() -> Self {
        RedactionRules {
            defaults: true,
            headers: Vec::new(),
            json: Vec::new(),
            query: Vec::new(),
            form: Vec::new(),
        }
    }
}

/// Which kind of rule a [`RuleError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// A header name.
    Header,
    /// A JSON path.
    Json,
    /// A query parameter name.
    Query,
    /// A form field name.
    Form,
}

impl RuleKind {
    /// The word that names the kind in flags and variables: `header`,
    /// `json`, `query`, `form` (`--redact-query`, `REPRISE_REDACT_QUERY`).
    pub fn word(self) -> &'static str {
        match self {
            RuleKind::Header => "header",
            RuleKind::Json => "json",
            RuleKind::Query => "query",
            RuleKind::Form => "form",
        }
    }
}

/// A redaction rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {reason}")]
pub struct RuleError {
    /// The kind of rule.
    pub kind: RuleKind,
    /// The rule as given.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl RedactionRules {
    /// The [`Redactor`] these rules make, or the first rule that is wrong.
    pub fn redactor(&self) -> Result<Redactor, RuleError> {
        let mut redactor = if self.defaults {
            Redactor::new()
        } else {
            Redactor::none()
        };
        let bad = |kind, value: &str, reason: &str| RuleError {
            kind,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        for name in &self.headers {
            // A header name is an RFC 9110 token.
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(bad(RuleKind::Header, name, "not a header name"));
            }
            redactor = redactor.header(name);
        }
        for path in &self.json {
            redactor = redactor
                .json_path(path)
                .map_err(|e| bad(RuleKind::Json, path, &e.to_string()))?;
        }
        for (kind, names) in [(RuleKind::Query, &self.query), (RuleKind::Form, &self.form)] {
            for name in names {
                if name.trim().is_empty() || name.contains(['&', '=']) {
                    return Err(bad(kind, name, "expected a name without & or ="));
                }
                redactor = match kind {
                    RuleKind::Query => redactor.query(name),
                    _ => redactor.form(name),
                };
            }
        }
        Ok(redactor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_checked() {
        let rules = |f: fn(&mut RedactionRules)| {
            let mut r = RedactionRules::default();
            f(&mut r);
            r.redactor()
        };
        assert!(rules(|r| r.query.push("sessionid".into())).is_ok());
        for (f, kind) in [
            (
                (|r: &mut RedactionRules| r.headers.push("x y".into())) as fn(&mut RedactionRules),
                RuleKind::Header,
            ),
            (|r| r.json.push("a.b".into()), RuleKind::Json),
            (|r| r.query.push(" ".into()), RuleKind::Query),
            (|r| r.form.push("a=b".into()), RuleKind::Form),
        ] {
            assert_eq!(rules(f).map(|_| ()).map_err(|e| e.kind), Err(kind));
        }
        let none = RedactionRules {
            defaults: false,
            ..Default::default()
        };
        assert!(none.redactor().is_ok_and(|r| r.is_empty()));
    }
}
