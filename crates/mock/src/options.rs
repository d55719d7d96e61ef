//! How a [`MockStore`](crate::MockStore) answers.

use reprise_model::redact::Redactor;
use reprise_model::select::ExchangeFilter;

use crate::error::MockError;

/// What to do when a call has used up every recorded response of its kind
/// in its scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Exhausted {
    /// A miss (the default): the code under test made a call more often
    /// than the recording did, which is a difference to see.
    #[default]
    Error,
    /// The last recorded response again.
    RepeatLast,
    /// The recorded responses again from the first.
    Cycle,
}

impl std::str::FromStr for Exhausted {
    type Err = MockError;
    fn from_str(text: &str) -> Result<Self, MockError> {
        match text {
            "error" => Ok(Exhausted::Error),
            "repeat-last" => Ok(Exhausted::RepeatLast),
            "cycle" => Ok(Exhausted::Cycle),
            other => Err(MockError::UnknownExhausted(other.to_string())),
        }
    }
}

/// How a [`MockStore`](crate::MockStore) answers.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// When identical calls outnumber the recorded ones.
    pub exhausted: Exhausted,
    /// Leave the authority out of the key (the downstream moved).
    pub ignore_authority: bool,
    /// Serve calls made outside any replayed inbound call (or whose scope
    /// has no recorded calls) from all recorded calls. Off by default:
    /// scoping by causality is what keeps concurrent replays apart.
    pub global: bool,
    /// Recorded downstream calls that answer any call with their key, in
    /// any scope and any number of times (auth tokens, handshakes,
    /// configuration fetches): the ones this filter accepts. Tried after
    /// the calls recorded under the replayed exchange, before `global`.
    pub shared: Option<ExchangeFilter>,
    /// Release streamed response messages at their recorded gaps.
    pub timing: bool,
    /// Bytes of a request body read for its key (the recorder's cap).
    pub max_body: usize,
    /// Answer from the recording's inbound calls instead of its
    /// downstream calls: a recording made in front of the service the
    /// mock stands in for (`reprise record`, a HAR, a GoReplay file).
    /// Those belong to no replayed call, so they are one pool, served as
    /// with `global`.
    pub inbound: bool,
    /// The recorder's redaction rules, applied to each call's target and
    /// body, and to each recorded call's, before they are matched: a
    /// recording whose `access_token` was redacted still matches a call
    /// that sends one (and calls that differ only in a redacted value are
    /// the same call).
    pub redactor: Redactor,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            exhausted: Exhausted::Error,
            ignore_authority: false,
            global: false,
            shared: None,
            timing: true,
            max_body: 1 << 20,
            inbound: false,
            redactor: Redactor::new(),
        }
    }
}
