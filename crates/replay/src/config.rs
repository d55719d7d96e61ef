//! What a replay is asked to do: where to send, how fast, how much, and
//! what to change on the way.

use std::path::PathBuf;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use regex::Regex;
use reprise_model::redact::Redactor;
use reprise_model::select::ExchangeFilter;

use crate::error::ReplayError;
use crate::schedule::Pacing;

/// A replay's settings. [`ReplayConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Where every call goes; nothing recorded can change it.
    pub target: Target,
    /// When calls leave.
    pub pacing: Pacing,
    /// Calls in flight at most (default 32).
    pub concurrency: usize,
    /// Connections per protocol; `None`: one per concurrent call on
    /// HTTP/1.1; on HTTP/2 one per 100 concurrent calls and at least one
    /// per sending thread.
    pub connections: Option<usize>,
    /// Which protocol calls are sent in.
    pub protocol: ProtocolChoice,
    /// Start again from the beginning of the recording when it ends.
    pub repeat: bool,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Send at most this many calls.
    pub limit: Option<u64>,
    /// Which recorded exchanges are replayed.
    pub filter: ExchangeFilter,
    /// Changes made to each call before it is sent.
    pub rewrites: Rewrites,
    /// Longest a call may take, connecting included (default 30 s).
    pub timeout: Duration,
    /// Which certificates an https target may show.
    pub trust: TrustChoice,
    /// Response bytes kept per call in the results (default 1 MiB).
    pub max_body: usize,
    /// Threads sending calls (default: one per core).
    pub threads: Option<usize>,
    /// The rules the results are redacted by before they are stored (the
    /// `--out` tape, mirror's `--shadow-out`); default: [`Redactor::new`].
    pub redactor: Redactor,
    /// Told as each call starts and ends (`reprise test` scopes the mock's
    /// database calls, which carry no headers, by the call in flight).
    pub watcher: Option<CallWatcherHandle>,
    /// Told once each recorded exchange read is settled (a group member
    /// commits its offset then).
    pub settled: Option<SettledHandle>,
}

/// What is told when a recorded exchange is settled: its replay was sent
/// and its result handed to the results store (or, with none, its call
/// ended), or the reader left it out (filtered, not replayable). An
/// exchange read but not handed over (a limit, a stop) is never settled.
pub trait Settled: Send + Sync {
    /// The recorded exchange `recorded_id` is settled.
    fn settled(&self, recorded_id: &[u8]);
}

/// A [`Settled`] held by a [`ReplayConfig`].
#[derive(Clone)]
pub struct SettledHandle(pub std::sync::Arc<dyn Settled>);

impl std::fmt::Debug for SettledHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settled")
    }
}

/// What is told when each replayed call starts and ends.
pub trait CallWatcher: Send + Sync {
    /// The replay of the recorded exchange `recorded_id` is being sent.
    fn started(&self, recorded_id: &[u8]);
    /// It ended (answered, failed or timed out).
    fn ended(&self, recorded_id: &[u8]);
}

/// A [`CallWatcher`] held by a [`ReplayConfig`].
#[derive(Clone)]
pub struct CallWatcherHandle(pub std::sync::Arc<dyn CallWatcher>);

impl std::fmt::Debug for CallWatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallWatcher")
    }
}

impl ReplayConfig {
    /// The defaults for `target`: original timing, 32 calls in flight.
    pub fn new(target: Target) -> Self {
        ReplayConfig {
            target,
            pacing: Pacing::Speed(1.0),
            concurrency: 32,
            connections: None,
            protocol: ProtocolChoice::Recorded,
            repeat: false,
            duration: None,
            limit: None,
            filter: ExchangeFilter::new(),
            rewrites: Rewrites::default(),
            timeout: Duration::from_secs(30),
            trust: TrustChoice::System,
            max_body: 1 << 20,
            threads: None,
            redactor: Redactor::new(),
            watcher: None,
            settled: None,
        }
    }

    /// HTTP/1.1 connections: one per call in flight unless limited.
    pub(crate) fn h1_connections(&self) -> usize {
        self.connections
            .unwrap_or(self.concurrency)
            .clamp(1, self.concurrency.max(1))
    }

    /// HTTP/2 connections: unless set, one per 100 calls in flight, and
    /// at least one per sending thread (a connection is driven by the
    /// thread that opened it).
    pub(crate) fn h2_connections(&self, threads: usize) -> usize {
        self.connections
            .unwrap_or_else(|| self.concurrency.div_ceil(100).max(threads))
            .clamp(1, self.concurrency.max(1))
    }
}

/// Which protocol calls are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolChoice {
    /// The one each call was recorded in (gRPC and HTTP/2 as HTTP/2).
    #[default]
    Recorded,
    /// HTTP/1.1 for every call (gRPC calls are skipped: they need HTTP/2).
    Http1,
    /// HTTP/2 for every call.
    Http2,
    /// HTTP/1.1 for every call but gRPC, which needs HTTP/2: for a target
    /// that speaks HTTP/1.1 only (`reprise mirror`'s shadow, when it does
    /// not answer HTTP/2).
    Http1ExceptGrpc,
}

/// Which certificates an https target may show.
#[derive(Debug, Clone, Default)]
pub enum TrustChoice {
    /// Those chaining to the system's roots.
    #[default]
    System,
    /// Those chaining to the CA(s) in this PEM file.
    CaFile(PathBuf),
    /// Any (`--insecure`).
    Any,
}

/// The explicit destination of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether to speak TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `host[:port]` as the Host header and `:authority` carry it.
    pub authority: String,
}

impl Target {
    /// Parses `http://host[:port]` or `https://host[:port]`. A path other
    /// than `/` is refused: `--rewrite-path` says how paths change.
    pub fn parse(url: &str) -> Result<Target, ReplayError> {
        let bad = |reason: &str| ReplayError::Target {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|_| bad("not a URL (expected http://HOST:PORT or https://HOST:PORT)"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => {
                return Err(bad(
                    "no scheme (expected http://HOST:PORT or https://HOST:PORT)",
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not allowed in the target"));
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(bad(
                "a target is a scheme, host and port only; use --rewrite-path to change paths",
            ));
        }
        let host = authority.host().trim_matches(['[', ']']).to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            tls,
            host,
            port,
            authority: authority.as_str().to_string(),
        })
    }

    /// `http://host:port` as given.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Changes made to each call before it is sent.
#[derive(Debug, Clone, Default)]
pub struct Rewrites {
    pub(crate) set_headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) drop_headers: Vec<HeaderName>,
    pub(crate) paths: Vec<(Regex, String)>,
    /// Send the recorded Host / `:authority` instead of the target's.
    /// Where the call goes does not change.
    pub preserve_host: bool,
}

impl Rewrites {
    /// `--set-header "NAME: VALUE"`: replaces every recorded value.
    pub fn set_header(&mut self, spec: &str) -> Result<(), ReplayError> {
        let bad = |reason: &str| ReplayError::Option {
            option: "--set-header",
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, value) = spec
            .split_once(':')
            .ok_or_else(|| bad("expected NAME: VALUE"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad("not a valid header name"))?;
        let value =
            HeaderValue::from_str(value.trim()).map_err(|_| bad("not a valid header value"))?;
        self.set_headers.push((name, value));
        Ok(())
    }

    /// `--drop-header NAME`: the header is not sent.
    pub fn drop_header(&mut self, name: &str) -> Result<(), ReplayError> {
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| ReplayError::Option {
                option: "--drop-header",
                value: name.to_string(),
                reason: "not a valid header name".to_string(),
            })?;
        self.drop_headers.push(name);
        Ok(())
    }

    /// `--rewrite-path REGEX=REPLACEMENT`: every match in the path and
    /// query is replaced (`$1` names a group), in the order given. The
    /// spec splits at its first `=` that no backslash escapes, so a
    /// pattern writes an `=` as `\=` (which the regex reads as `=`); the
    /// replacement may hold `=` as it is.
    pub fn rewrite_path(&mut self, spec: &str) -> Result<(), ReplayError> {
        let bad = |reason: String| ReplayError::Option {
            option: "--rewrite-path",
            value: spec.to_string(),
            reason,
        };
        let (pattern, replacement) = split_unescaped(spec, '=').ok_or_else(|| {
            bad("expected REGEX=REPLACEMENT (an = in REGEX is written \\=)".to_string())
        })?;
        let regex = Regex::new(pattern).map_err(|e| {
            // The regex crate draws the error under the pattern over
            // several lines; its last line says what is wrong.
            let text = e.to_string();
            let what = text.lines().last().unwrap_or_default();
            bad(format!(
                "not a regular expression: {}",
                what.trim().trim_start_matches("error: ")
            ))
        })?;
        self.paths.push((regex, replacement.to_string()));
        Ok(())
    }
}

/// `text` cut at its first `at` that is not escaped by a backslash (a
/// backslash escapes the character after it, a backslash included).
fn split_unescaped(text: &str, at: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == at => return Some((&text[..i], &text[i + c.len_utf8()..])),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 8080));
        assert_eq!(t.url(), "http://127.0.0.1:8080");
        let t = Target::parse("https://[::1]/").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "::1", 443));
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://x/api",
            "http://u:p@x",
            "http://x/?a=1",
            "",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewrites_parse() {
        let mut r = Rewrites::default();
        r.set_header("x-env: staging").unwrap();
        r.drop_header("cookie").unwrap();
        r.rewrite_path("^/v1/(.*)=/v2/$1").unwrap();
        assert_eq!(r.set_headers[0].1, "staging");
        assert!(r.set_header("novalue").is_err());
        assert!(r.set_header("bad name: x").is_err());
        assert!(r.drop_header("bad name").is_err());
        assert!(r.rewrite_path("(=x").is_err());
        assert!(r.rewrite_path("nothing").is_err());
        assert!(r.rewrite_path(r"only\=escaped").is_err());
    }

    #[test]
    fn a_rewrite_pattern_may_hold_an_escaped_equals_sign() {
        let mut r = Rewrites::default();
        r.rewrite_path(r"token\=\w+=token=[x]").unwrap();
        r.rewrite_path(r"\\=/").unwrap();
        let (regex, replacement) = &r.paths[0];
        assert_eq!(regex.as_str(), r"token\=\w+");
        assert_eq!(replacement, "token=[x]");
        assert_eq!(
            regex.replace_all("/a?token=abc&b=1", replacement.as_str()),
            "/a?token=[x]&b=1"
        );
        // An escaped backslash does not escape the = after it.
        assert_eq!(r.paths[1].0.as_str(), r"\\");
        assert_eq!(r.paths[1].1, "/");
        assert_eq!(split_unescaped("a=b=c", '='), Some(("a", "b=c")));
    }

    #[test]
    fn connection_counts() {
        let mut c = ReplayConfig::new(Target::parse("http://x").unwrap());
        c.concurrency = 250;
        assert_eq!((c.h1_connections(), c.h2_connections(2)), (250, 3));
        assert_eq!(c.h2_connections(4), 4);
        c.connections = Some(4);
        assert_eq!((c.h1_connections(), c.h2_connections(2)), (4, 4));
        c.concurrency = 1;
        assert_eq!(c.h2_connections(2), 1);
    }
}
