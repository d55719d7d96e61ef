//! What decides which calls are stored: the `--match` filter, the rate
//! cap, redaction and the sampling note ([`Rules`]), and the verdict on an
//! inbound call ([`Judge`]).

use std::sync::{Mutex, PoisonError};

use reprise_model::redact::Redactor;
use reprise_model::sample::RateLimit;
use reprise_model::select::ExchangeFilter;

use crate::head::HeadView;
use crate::metrics::Metrics;

/// What the writer thread applies before storing.
pub struct Rules {
    /// `--match` conditions (the response status included).
    pub filter: ExchangeFilter,
    /// `--max-record-rate`.
    pub max_rate: Option<u32>,
    /// Redaction.
    pub redactor: Redactor,
    /// The sampling rate, noted on each exchange when below 1.
    pub sample_rate: f64,
}

/// The rules with the rate cap's state: judges inbound calls for every
/// handle of one recorder and its writer thread.
pub(crate) struct Judge {
    /// The rules.
    pub(crate) rules: Rules,
    /// `--max-record-rate`, over every thread's calls.
    limit: Option<Mutex<RateLimit>>,
}

impl Judge {
    /// A judge applying `rules`.
    pub(crate) fn new(rules: Rules) -> Judge {
        Judge {
            limit: rules.max_rate.map(|rate| Mutex::new(RateLimit::new(rate))),
            rules,
        }
    }

    /// Whether a downstream call waits for its inbound call's verdict:
    /// only when something can refuse an inbound call.
    pub(crate) fn gated(&self) -> bool {
        !self.rules.filter.is_empty() || self.limit.is_some()
    }

    /// Whether the inbound call `head` is kept, by `--match` then the rate
    /// cap; a refusal is counted.
    pub(crate) fn keeps(&self, head: &HeadView<'_>, metrics: &Metrics) -> bool {
        if !self.rules.filter.matches(head) {
            metrics.unmatched.inc();
            return false;
        }
        if let Some(limit) = &self.limit
            && !limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(reprise_model::time::now_ns())
        {
            metrics.dropped_rate_limit.inc();
            return false;
        }
        true
    }
}
