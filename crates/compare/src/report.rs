//! Pairs gathered per endpoint and field path, with counts, one example
//! each and latency recorded vs replayed. Memory grows with endpoints ×
//! field paths, not with the number of pairs.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use hdrhistogram::Histogram;
use reprise_model::{Exchange, endpoint_key};
use serde::Serialize;
use serde_json::Value;

use crate::json::{ChangeKind, Difference};
use crate::pair::{NotCompared, Verdict};

/// One example of a difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// The concrete path (`$.items[3].price`).
    pub path: String,
    /// The recorded value.
    pub recorded: Option<Value>,
    /// The replayed value.
    pub replayed: Option<Value>,
    /// The recorded exchange it comes from.
    pub recorded_id: String,
}

/// A field path that differed, with how often.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathCount {
    /// The path with positions as `[*]`.
    pub pattern: String,
    /// What changed.
    pub kind: ChangeKind,
    /// Pairs where it changed and that counts as a regression.
    pub regressed: u64,
    /// Pairs where it changed and the baseline says it is noise.
    pub noise: u64,
    /// The first one seen.
    pub example: Example,
}

/// Latency recorded vs replayed, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyPair {
    /// Recorded median.
    pub recorded_p50_us: u64,
    /// Recorded 99th percentile.
    pub recorded_p99_us: u64,
    /// Replayed median.
    pub replayed_p50_us: u64,
    /// Replayed 99th percentile.
    pub replayed_p99_us: u64,
}

/// One endpoint's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDiff {
    /// `METHOD /path/{id}`.
    pub endpoint: String,
    /// Pairs seen.
    pub pairs: u64,
    /// Pairs with no difference.
    pub identical: u64,
    /// Pairs with at least one regression.
    pub regressed: u64,
    /// Pairs whose every difference is noise.
    pub noise_only: u64,
    /// Pairs not compared.
    pub not_compared: u64,
    /// Field paths that differed, most often first.
    pub paths: Vec<PathCount>,
    /// Latency of the pairs compared.
    pub latency: LatencyPair,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    /// Pairs seen (including those not compared).
    pub pairs: u64,
    /// Pairs with no difference.
    pub identical: u64,
    /// Pairs with at least one regression.
    pub regressed: u64,
    /// Pairs whose every difference is noise (with a baseline).
    pub noise_only: u64,
    /// Pairs not compared, by reason.
    pub not_compared: BTreeMap<String, u64>,
    /// With a baseline: what the noise verdicts suppressed.
    pub suppressed: Option<crate::noise::Suppressed>,
    /// The noise was guessed (`--auto-noise`), not learned from a baseline.
    pub noise_guessed: bool,
    /// Per endpoint, most regressed first.
    pub endpoints: Vec<EndpointDiff>,
}

impl DiffReport {
    /// Whether anything regressed (the exit code's question).
    pub fn has_regressions(&self) -> bool {
        self.regressed > 0
    }

    /// The terminal report.
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let not_compared: u64 = self.not_compared.values().sum();
        writeln!(
            out,
            "diff: {} pairs: {} identical, {} regressed, {} noise only, {} not compared",
            self.pairs, self.identical, self.regressed, self.noise_only, not_compared
        )?;
        if self.noise_guessed {
            writeln!(
                out,
                "  noise GUESSED by --auto-noise (timestamps, UUIDs, generated ids): a guess, not a baseline's verdict; check the paths marked noise"
            )?;
        }
        if let Some(s) = &self.suppressed {
            writeln!(
                out,
                "  noise (from the baseline): {} differences also seen by the baseline on the same call, {} on paths whose count does not stand out from the baseline's",
                s.same_call, s.below_thresholds
            )?;
        }
        let width = self
            .endpoints
            .iter()
            .map(|e| e.endpoint.chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, 60);
        writeln!(
            out,
            "{:<w$} {:>7} {:>9} {:>9} {:>12}  {:>22}  {:>22}",
            "endpoint",
            "pairs",
            "identical",
            "regressed",
            "not compared",
            "p50 recorded→replayed",
            "p99 recorded→replayed",
            w = width + 2
        )?;
        for e in &self.endpoints {
            let l = &e.latency;
            writeln!(
                out,
                "  {:<w$} {:>7} {:>9} {:>9} {:>12}  {:>22}  {:>22}",
                e.endpoint,
                e.pairs,
                e.identical,
                e.regressed,
                e.not_compared,
                format!(
                    "{}→{}",
                    micros(l.recorded_p50_us),
                    micros(l.replayed_p50_us)
                ),
                format!(
                    "{}→{}",
                    micros(l.recorded_p99_us),
                    micros(l.replayed_p99_us)
                ),
                w = width
            )?;
        }
        for e in self.endpoints.iter().filter(|e| !e.paths.is_empty()) {
            writeln!(out, "{}: what differs", e.endpoint)?;
            for p in e.paths.iter().take(10) {
                let show =
                    |v: &Option<Value>| v.as_ref().map_or_else(|| "(absent)".to_string(), short);
                let noise = if self.noise_guessed {
                    "noise (guess)"
                } else {
                    "noise"
                };
                let count = match (p.regressed, p.noise) {
                    (r, 0) => format!("{r}× regressed"),
                    (0, n) => format!("{n}× {noise}"),
                    (r, n) => format!("{r}× regressed, {n}× {noise}"),
                };
                writeln!(
                    out,
                    "  {:<40} {:<12} {:>14}   e.g. {}: {} → {}  (recorded {})",
                    p.pattern,
                    p.kind.label(),
                    count,
                    p.example.path,
                    show(&p.example.recorded),
                    show(&p.example.replayed),
                    p.example.recorded_id
                )?;
            }
            if e.paths.len() > 10 {
                writeln!(out, "  ... {} more paths (see --json)", e.paths.len() - 10)?;
            }
        }
        if not_compared > 0 {
            writeln!(out, "not compared (never counted as identical):")?;
            for (reason, n) in &self.not_compared {
                writeln!(out, "  {n} {reason}")?;
            }
        }
        Ok(())
    }
}

impl DiffReport {
    /// JUnit XML for CI: one test case per endpoint; a failure lists the
    /// regressed field paths with an example each.
    pub fn render_junit(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let failures = self.endpoints.iter().filter(|e| e.regressed > 0).count();
        let skipped = self
            .endpoints
            .iter()
            .filter(|e| e.regressed == 0 && e.identical + e.noise_only == 0)
            .count();
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<testsuites name="reprise diff" tests="{n}" failures="{failures}" skipped="{skipped}">"#,
            n = self.endpoints.len()
        )?;
        writeln!(
            out,
            r#"  <testsuite name="reprise diff" tests="{n}" failures="{failures}" skipped="{skipped}">"#,
            n = self.endpoints.len()
        )?;
        for e in &self.endpoints {
            writeln!(
                out,
                r#"    <testcase classname="reprise.diff" name="{}">"#,
                xml(&e.endpoint)
            )?;
            if e.regressed > 0 {
                let paths: Vec<String> = e
                    .paths
                    .iter()
                    .filter(|p| p.regressed > 0)
                    .map(|p| {
                        let show = |v: &Option<Value>| {
                            v.as_ref().map_or_else(|| "(absent)".to_string(), short)
                        };
                        format!(
                            "{} {} in {} pairs, e.g. {}: {} -> {} (recorded {})",
                            p.pattern,
                            p.kind.label(),
                            p.regressed,
                            p.example.path,
                            show(&p.example.recorded),
                            show(&p.example.replayed),
                            p.example.recorded_id
                        )
                    })
                    .collect();
                writeln!(
                    out,
                    r#"      <failure type="regression" message="{}">{}</failure>"#,
                    xml(&format!("{} of {} pairs regressed", e.regressed, e.pairs)),
                    xml(&paths.join("\n"))
                )?;
            } else if e.identical + e.noise_only == 0 {
                writeln!(
                    out,
                    r#"      <skipped message="{}"/>"#,
                    xml(&format!("{} pairs not compared", e.not_compared))
                )?;
            }
            writeln!(out, "    </testcase>")?;
        }
        writeln!(out, "  </testsuite>")?;
        writeln!(out, "</testsuites>")
    }
}

/// Text for an XML attribute or element.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn micros(us: u64) -> String {
    reprise_model::time::human_duration(us.saturating_mul(1_000))
}

#[derive(Debug)]
struct PathAcc {
    regressed: u64,
    noise: u64,
    example: Example,
}

#[derive(Debug)]
struct EndpointAcc {
    pairs: u64,
    identical: u64,
    regressed: u64,
    noise_only: u64,
    not_compared: u64,
    paths: HashMap<(String, ChangeKind), PathAcc>,
    recorded: Histogram<u64>,
    replayed: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, 2).unwrap_or_else(|_| fallback());
    h.auto(true);
    h
}

#[allow(clippy::expect_used)]
fn fallback() -> Histogram<u64> {
    // Never reached: 1..2 with 2 significant digits is valid.
    Histogram::new(2).expect("2 significant digits is a valid histogram")
}

impl Default for EndpointAcc {
    fn default() -> Self {
        EndpointAcc {
            pairs: 0,
            identical: 0,
            regressed: 0,
            noise_only: 0,
            not_compared: 0,
            paths: HashMap::new(),
            recorded: histogram(),
            replayed: histogram(),
        }
    }
}

/// Gathers pairs as they are compared.
#[derive(Debug, Default)]
pub struct Comparison {
    endpoints: HashMap<String, EndpointAcc>,
    not_compared: BTreeMap<NotCompared, u64>,
    suppressed: Option<crate::noise::Suppressed>,
    noise_guessed: bool,
}

impl Comparison {
    /// Marks the report's noise as guessed (`--auto-noise`).
    pub fn noise_guessed(&mut self) {
        self.noise_guessed = true;
    }

    /// Counts one pair: `recorded` (or the replay when the recording is
    /// missing) decides the endpoint.
    pub fn add(&mut self, recorded: &Exchange, replayed: Option<&Exchange>, verdict: &Verdict) {
        self.add_judged(recorded, replayed, verdict, &[]);
    }

    /// Like [`Comparison::add`], with the differences a [`NoiseModel`]
    /// took out as `noise`.
    ///
    /// [`NoiseModel`]: crate::NoiseModel
    pub fn add_judged(
        &mut self,
        recorded: &Exchange,
        replayed: Option<&Exchange>,
        verdict: &Verdict,
        noise: &[Difference],
    ) {
        let acc = self.endpoints.entry(endpoint_key(recorded)).or_default();
        acc.pairs += 1;
        let mut count = |d: &Difference, regression: bool| {
            let p = acc
                .paths
                .entry((d.pattern.clone(), d.kind))
                .or_insert_with(|| PathAcc {
                    regressed: 0,
                    noise: 0,
                    example: Example {
                        path: d.path.clone(),
                        recorded: d.recorded.clone(),
                        replayed: d.replayed.clone(),
                        recorded_id: recorded.id_hex(),
                    },
                });
            if regression {
                p.regressed += 1;
            } else {
                p.noise += 1;
            }
        };
        for d in noise {
            count(d, false);
        }
        match verdict {
            Verdict::Identical => acc.identical += 1,
            Verdict::NoiseOnly => acc.noise_only += 1,
            Verdict::Regressed(differences) => {
                for d in differences {
                    count(d, true);
                }
                acc.regressed += 1;
            }
            Verdict::NotCompared(reason) => {
                acc.not_compared += 1;
                *self.not_compared.entry(*reason).or_default() += 1;
            }
        }
        if let (Some(replayed), false) = (replayed, matches!(verdict, Verdict::NotCompared(_))) {
            let us = |ns: u64| (ns / 1_000).max(1);
            let _ = acc.recorded.record(us(recorded.duration_ns));
            let _ = acc.replayed.record(us(replayed.duration_ns));
        }
    }

    /// Notes what a noise model suppressed, for the report.
    pub fn suppressed(&mut self, suppressed: crate::noise::Suppressed) {
        self.suppressed = Some(suppressed);
    }

    /// The report.
    pub fn finish(self) -> DiffReport {
        let q = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        let mut endpoints: Vec<EndpointDiff> = self
            .endpoints
            .into_iter()
            .map(|(endpoint, acc)| {
                let mut paths: Vec<PathCount> = acc
                    .paths
                    .into_iter()
                    .map(|((pattern, kind), p)| PathCount {
                        pattern,
                        kind,
                        regressed: p.regressed,
                        noise: p.noise,
                        example: p.example,
                    })
                    .collect();
                paths.sort_by(|a, b| {
                    b.regressed
                        .cmp(&a.regressed)
                        .then(b.noise.cmp(&a.noise))
                        .then(a.pattern.cmp(&b.pattern))
                });
                EndpointDiff {
                    endpoint,
                    pairs: acc.pairs,
                    identical: acc.identical,
                    regressed: acc.regressed,
                    noise_only: acc.noise_only,
                    not_compared: acc.not_compared,
                    paths,
                    latency: LatencyPair {
                        recorded_p50_us: q(&acc.recorded, 0.5),
                        recorded_p99_us: q(&acc.recorded, 0.99),
                        replayed_p50_us: q(&acc.replayed, 0.5),
                        replayed_p99_us: q(&acc.replayed, 0.99),
                    },
                }
            })
            .collect();
        endpoints.sort_by(|a, b| {
            b.regressed
                .cmp(&a.regressed)
                .then(b.pairs.cmp(&a.pairs))
                .then(a.endpoint.cmp(&b.endpoint))
        });
        DiffReport {
            pairs: endpoints.iter().map(|e| e.pairs).sum(),
            identical: endpoints.iter().map(|e| e.identical).sum(),
            regressed: endpoints.iter().map(|e| e.regressed).sum(),
            noise_only: endpoints.iter().map(|e| e.noise_only).sum(),
            suppressed: self.suppressed,
            noise_guessed: self.noise_guessed,
            not_compared: self
                .not_compared
                .into_iter()
                .map(|(reason, n)| (reason.label().to_string(), n))
                .collect(),
            endpoints,
        }
    }
}
