//! Noise cancellation from a baseline: the same recording replayed
//! against a second copy of the old build. A field that differs between
//! two copies of the same code is noise, not a regression.
//!
//! Two steps, as the product brief asks:
//!
//! 1. **Per call.** A candidate difference at a field path is explained
//!    when the baseline differs at the same path (its `[*]` pattern) for
//!    the same recorded exchange.
//! 2. **In aggregate** (Diffy's rule, per endpoint and path, on what step
//!    1 left): with `r` pairs where the candidate differs, `n` where the
//!    baseline does and `total` pairs of the endpoint, the path regressed
//!    only when `r > n`, `|r − n| / (r + n) > relative` and
//!    `|r − n| / total > absolute`; otherwise its differences are noise.

use std::collections::{HashMap, HashSet};

use reprise_model::{Exchange, endpoint_key};
use serde::Serialize;

use crate::json::Difference;
use crate::pair::Verdict;

/// When a path's differences count as a regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// `|r − n| / (r + n)` must be above this (default 0.2).
    pub relative: f64,
    /// `|r − n| / total` must be above this (default 0.0003, 0.03 %).
    pub absolute: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            relative: 0.2,
            absolute: 0.0003,
        }
    }
}

/// What the noise verdicts suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// Differences the baseline also showed on the same call.
    pub same_call: u64,
    /// Differences on paths below the aggregate thresholds.
    pub below_thresholds: u64,
}

type PathKey = (String, String);

/// What the baseline and the candidate showed, and the verdicts drawn.
#[derive(Debug, Default)]
pub struct NoiseModel {
    thresholds: Thresholds,
    /// Per recorded exchange: the patterns where the baseline differed.
    baseline: HashMap<Vec<u8>, HashSet<String>>,
    /// `n` per endpoint and pattern.
    noise: HashMap<PathKey, u64>,
    /// `r` per endpoint and pattern (differences step 1 left).
    candidate: HashMap<PathKey, u64>,
    /// Pairs per endpoint.
    totals: HashMap<String, u64>,
    regressions: HashSet<PathKey>,
    suppressed: Suppressed,
}

impl NoiseModel {
    /// An empty model.
    pub fn new(thresholds: Thresholds) -> Self {
        NoiseModel {
            thresholds,
            ..NoiseModel::default()
        }
    }

    /// First pass: the baseline's verdict on one recorded exchange.
    pub fn baseline(&mut self, recorded: &Exchange, verdict: &Verdict) {
        if let Verdict::Regressed(differences) = verdict {
            let endpoint = endpoint_key(recorded);
            let patterns = self.baseline.entry(recorded.id.clone()).or_default();
            for d in differences {
                if patterns.insert(d.pattern.clone()) {
                    *self
                        .noise
                        .entry((endpoint.clone(), d.pattern.clone()))
                        .or_default() += 1;
                }
            }
        }
    }

    /// Second pass: the candidate's verdict on one recorded exchange.
    pub fn candidate(&mut self, recorded: &Exchange, verdict: &Verdict) {
        let endpoint = endpoint_key(recorded);
        *self.totals.entry(endpoint.clone()).or_default() += 1;
        if let Verdict::Regressed(differences) = verdict {
            let explained = self.baseline.get(&recorded.id);
            let mut seen = HashSet::new();
            for d in differences {
                let same_call = explained.is_some_and(|p| p.contains(&d.pattern));
                if !same_call && seen.insert(d.pattern.as_str()) {
                    *self
                        .candidate
                        .entry((endpoint.clone(), d.pattern.clone()))
                        .or_default() += 1;
                }
            }
        }
    }

    /// Decides, per endpoint and path, what regressed.
    pub fn decide(&mut self) {
        let t = self.thresholds;
        self.regressions = self
            .candidate
            .iter()
            .filter(|(key, r)| {
                let r = **r as f64;
                let n = self.noise.get(*key).copied().unwrap_or(0) as f64;
                let total = self.totals.get(&key.0).copied().unwrap_or(1).max(1) as f64;
                r > n && (r - n) / (r + n) > t.relative && (r - n) / total > t.absolute
            })
            .map(|(key, _)| key.clone())
            .collect();
    }

    /// Third pass: the candidate's verdict on one recorded exchange with
    /// noise taken out, and the differences taken out as noise.
    pub fn judge(&mut self, recorded: &Exchange, verdict: Verdict) -> (Verdict, Vec<Difference>) {
        let Verdict::Regressed(differences) = verdict else {
            return (verdict, Vec::new());
        };
        let endpoint = endpoint_key(recorded);
        let explained = self.baseline.get(&recorded.id);
        let mut regressions = Vec::new();
        let mut noise = Vec::new();
        for d in differences {
            if explained.is_some_and(|p| p.contains(&d.pattern)) {
                self.suppressed.same_call += 1;
                noise.push(d);
            } else if self
                .regressions
                .contains(&(endpoint.clone(), d.pattern.clone()))
            {
                regressions.push(d);
            } else {
                self.suppressed.below_thresholds += 1;
                noise.push(d);
            }
        }
        let verdict = if regressions.is_empty() {
            Verdict::NoiseOnly
        } else {
            Verdict::Regressed(regressions)
        };
        (verdict, noise)
    }

    /// What the noise verdicts suppressed so far.
    pub fn suppressed(&self) -> Suppressed {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::ChangeKind;
    use reprise_model::Request;

    fn exchange(id: u8) -> Exchange {
        Exchange {
            id: vec![id],
            request: Some(Request {
                method: "GET".into(),
                path: "/x".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn differs(patterns: &[&str]) -> Verdict {
        Verdict::Regressed(
            patterns
                .iter()
                .map(|p| Difference {
                    path: p.to_string(),
                    pattern: p.to_string(),
                    kind: ChangeKind::Changed,
                    recorded: None,
                    replayed: None,
                })
                .collect(),
        )
    }

    #[test]
    fn same_call_noise_and_aggregate_noise_are_not_regressions() {
        let mut model = NoiseModel::new(Thresholds::default());
        // 100 calls: the baseline differs at $.id on every one and at
        // $.ts on half; the candidate at $.id, $.ts on every one, and at
        // $.price on every one (a real change).
        let calls: Vec<Exchange> = (0..100).map(exchange).collect();
        for (i, call) in calls.iter().enumerate() {
            let patterns: &[&str] = if i % 2 == 0 {
                &["$.id", "$.ts"]
            } else {
                &["$.id"]
            };
            model.baseline(call, &differs(patterns));
        }
        let candidate = differs(&["$.id", "$.ts", "$.price"]);
        for call in &calls {
            model.candidate(call, &candidate);
        }
        model.decide();
        let mut regressed = 0;
        for call in &calls {
            let (verdict, noise) = model.judge(call, candidate.clone());
            if let Verdict::Regressed(d) = verdict {
                regressed += 1;
                assert_eq!(d.len(), 1);
                assert_eq!(d[0].pattern, "$.price");
            }
            assert!(noise.iter().all(|d| d.pattern != "$.price"));
        }
        assert_eq!(regressed, 100);
        // $.ts: 50 calls explained by the baseline on the same call; on
        // the other 50 r = 50 vs n = 50, not a regression.
        let s = model.suppressed();
        assert_eq!(s.same_call, 100 + 50);
        assert_eq!(s.below_thresholds, 50);
    }

    #[test]
    fn noise_only_when_everything_is_explained() {
        let mut model = NoiseModel::new(Thresholds::default());
        let call = exchange(1);
        model.baseline(&call, &differs(&["$.id"]));
        model.candidate(&call, &differs(&["$.id"]));
        model.decide();
        let (verdict, noise) = model.judge(&call, differs(&["$.id"]));
        assert_eq!(verdict, Verdict::NoiseOnly);
        assert_eq!(noise.len(), 1);
        assert_eq!(model.judge(&call, Verdict::Identical).0, Verdict::Identical);
    }
}
