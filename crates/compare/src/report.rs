//! Pairs gathered per endpoint and field path, with counts, one example
//! each and latency recorded vs replayed. Memory grows with endpoints ×
//! field paths, not with the number of pairs.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use reprise_model::latency::LatencyHistogram;
use reprise_model::table::{Column, Table};
use reprise_model::terminal::escape;
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
    /// More about it (text: a unified diff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyPair {
    /// Recorded median.
    pub recorded_p50_us: u64,
    /// Recorded 99th percentile.
    pub recorded_p99_us: u64,
    /// Replayed median.
    pub replayed_p50_us: u64,
    /// Replayed 99th percentile.
    pub replayed_p99_us: u64,
    /// Recorded latency at the 5th, 10th, ... 100th percentiles (a CDF).
    pub recorded_cdf_us: Vec<u64>,
    /// Replayed latency at the same percentiles.
    pub replayed_cdf_us: Vec<u64>,
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

/// Regressed pairs with the same set of differences (path pattern and
/// kind), with a sample of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// The endpoint.
    pub endpoint: String,
    /// The differences every pair of the group shows: `$.total (changed)`.
    pub differences: Vec<String>,
    /// Pairs in the group.
    pub count: u64,
    /// Recorded exchange ids, a uniform sample of the group (reservoir
    /// sampling, not the first few).
    pub examples: Vec<String>,
}

/// Examples kept per group.
const GROUP_EXAMPLES: usize = 3;
/// Groups kept; later signatures are counted in `other_groups`.
const MAX_GROUPS: usize = 1000;

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
    /// Replays of a recorded exchange already compared (several result
    /// sources, a group's at-least-once replays): skipped, so that each
    /// recorded exchange counts once.
    #[serde(skip_serializing_if = "is_zero")]
    pub repeated: u64,
    /// Per endpoint, most regressed first.
    pub endpoints: Vec<EndpointDiff>,
    /// Regressed pairs grouped by their set of differences, largest first.
    pub groups: Vec<Group>,
    /// Regressed pairs past the number of groups kept.
    pub other_groups: u64,
    /// With downstream calls compared: what the comparison of the calls
    /// saw (their differences are the exchanges' own, among `endpoints`'
    /// paths as `downstream[...]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream: Option<crate::DownstreamSummary>,
}

impl DiffReport {
    /// Whether anything regressed (the exit code's question).
    pub fn has_regressions(&self) -> bool {
        self.regressed > 0
    }

    /// Pairs compared: seen, less those not compared.
    pub fn compared(&self) -> u64 {
        self.identical + self.regressed + self.noise_only
    }

    /// What this comparison found, for the exit code: `min_compared`
    /// pairs must have been compared; `damaged`: an input was damaged.
    pub fn judgement(&self, min_compared: u64, damaged: bool) -> crate::Judgement {
        crate::Judgement {
            regressed: self.regressed,
            missed: 0,
            damaged,
            compared: self.compared(),
            min_compared,
        }
    }

    /// The terminal report.
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let not_compared: u64 = self.not_compared.values().sum();
        writeln!(
            out,
            "diff: {} pairs: {} identical, {} regressed, {} noise only, {} not compared",
            self.pairs, self.identical, self.regressed, self.noise_only, not_compared
        )?;
        if self.repeated > 0 {
            writeln!(
                out,
                "  {} replays of exchanges already compared (replayed twice) were skipped: each recorded exchange counts once",
                self.repeated
            )?;
        }
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
        if let Some(d) = &self.downstream {
            writeln!(
                out,
                "  downstream calls: {} recorded, {} made ({} answered by the mock, {} paired after a miss): {} changed, {} missing, {} new; {} mock misses",
                d.recorded,
                d.made,
                d.answered,
                d.paired_after_miss,
                d.changed,
                d.missing,
                d.extra,
                d.mock_misses
            )?;
            if d.pool_served + d.unlinked_recorded + d.outside_compared > 0 {
                writeln!(
                    out,
                    "  downstream pool: {} calls served by unlinked recorded calls ({} recorded, charged to no exchange); {} calls made for exchanges not compared",
                    d.pool_served, d.unlinked_recorded, d.outside_compared
                )?;
            }
            if d.session_calls > 0 {
                writeln!(
                    out,
                    "  database calls not compared: {} (transaction control and connection set-up, which follow the client's pool)",
                    d.session_calls
                )?;
            }
        }
        // Endpoints, paths and values are recorded text: shown escaped,
        // long endpoints shortened in the table (`--json` keeps them whole).
        let mut table = Table::new(vec![
            Column::left("endpoint").max_width(60),
            Column::right("pairs").width(7),
            Column::right("identical").width(9),
            Column::right("regressed").width(9),
            Column::right("not compared").width(12),
            Column::right("p50 recorded→replayed").width(22).gap(2),
            Column::right("p99 recorded→replayed").width(22).gap(2),
        ])
        .indent_rows(2);
        for e in &self.endpoints {
            let l = &e.latency;
            table.row([
                e.endpoint.clone(),
                e.pairs.to_string(),
                e.identical.to_string(),
                e.regressed.to_string(),
                e.not_compared.to_string(),
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
            ]);
        }
        write!(out, "{table}")?;
        let show = |v: &Option<Value>| {
            v.as_ref().map_or_else(
                || "(absent)".to_string(),
                |v| escape(&short(v)).into_owned(),
            )
        };
        let noise = if self.noise_guessed {
            "noise (guess)"
        } else {
            "noise"
        };
        let count = |p: &PathCount| match (p.regressed, p.noise) {
            (r, 0) => format!("{r}× regressed"),
            (0, n) => format!("{n}× {noise}"),
            (r, n) => format!("{r}× regressed, {n}× {noise}"),
        };
        for e in &self.endpoints {
            // Downstream calls' differences have a section of their own.
            let paths: Vec<&PathCount> = e
                .paths
                .iter()
                .filter(|p| !crate::is_downstream_pattern(&p.pattern))
                .collect();
            if paths.is_empty() {
                continue;
            }
            writeln!(out, "{}: what differs", escape(&e.endpoint))?;
            for p in paths.iter().take(10) {
                writeln!(
                    out,
                    "  {:<40} {:<12} {:>14}   e.g. {}: {} → {}  (recorded {})",
                    escape(&p.pattern),
                    p.kind.label(),
                    count(p),
                    escape(&p.example.path),
                    show(&p.example.recorded),
                    show(&p.example.replayed),
                    p.example.recorded_id
                )?;
            }
            if paths.len() > 10 {
                writeln!(out, "  ... {} more paths (see --json)", paths.len() - 10)?;
            }
        }
        for e in &self.endpoints {
            let calls: Vec<&PathCount> = e
                .paths
                .iter()
                .filter(|p| crate::is_downstream_pattern(&p.pattern))
                .collect();
            if calls.is_empty() {
                continue;
            }
            writeln!(out, "{}: downstream calls that differ", escape(&e.endpoint))?;
            for p in calls.iter().take(20) {
                let what = crate::describe(&p.example.path, p.kind)
                    .unwrap_or_else(|| p.example.path.clone());
                let values = match (p.kind, &p.example.recorded, &p.example.replayed) {
                    // A whole call: its name says it.
                    (ChangeKind::Added | ChangeKind::Removed, _, _)
                        if !p.pattern.contains("].request.") =>
                    {
                        String::new()
                    }
                    (_, recorded, replayed) => {
                        format!(" {} → {}", show(recorded), show(replayed))
                    }
                };
                writeln!(
                    out,
                    "  {}{}   {}  (recorded {})",
                    escape(&what),
                    values,
                    count(p),
                    p.example.recorded_id
                )?;
            }
            if calls.len() > 20 {
                writeln!(out, "  ... {} more (see --json)", calls.len() - 20)?;
            }
        }
        if !self.groups.is_empty() {
            writeln!(out, "regressions grouped by what differs:")?;
            for g in self.groups.iter().take(10) {
                writeln!(
                    out,
                    "  {:>6}× {}: {}   e.g. {}",
                    g.count,
                    escape(&g.endpoint),
                    escape(&g.differences.join(", ")),
                    g.examples.join(", ")
                )?;
            }
            if self.groups.len() > 10 || self.other_groups > 0 {
                writeln!(
                    out,
                    "  ... {} more groups (see --json)",
                    self.groups.len().saturating_sub(10) + usize::from(self.other_groups > 0)
                )?;
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

impl DiffReport {
    /// A rules file (the format of `--rules`) that ignores what was only
    /// ever noise: per endpoint, each JSON path that differed as noise and
    /// never as a regression; per downstream call (`POST
    /// payments.example/charge`), each such path of its request body. Header and trailer fields are listed for the
    /// top-level `ignore_headers`, commented out: they apply everywhere.
    /// Meant to be read by a person and committed, not applied blindly.
    pub fn suggest_rules(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "# Rules proposed by `reprise diff`: what differed only as noise ({}).",
            if self.noise_guessed {
                "guessed by --auto-noise"
            } else {
                "judged from the baseline"
            }
        )?;
        writeln!(
            out,
            "# Review each line before committing this file; use it with --rules."
        )?;
        let mut headers: Vec<&str> = Vec::new();
        // Rules in order: each endpoint's own, then each downstream call's
        // (`POST payments.example/charge`), gathered over the endpoints
        // whose exchanges made it: (path, noise, pairs, example).
        let mut rules: Vec<(&str, Vec<Suggested<'_>>)> = Vec::new();
        let mut calls: BTreeMap<&str, Vec<Suggested<'_>>> = BTreeMap::new();
        for e in &self.endpoints {
            let mut ignore = Vec::new();
            for p in e.paths.iter().filter(|p| p.regressed == 0 && p.noise > 0) {
                let (field, list) = match p
                    .pattern
                    .strip_prefix("downstream[")
                    .and_then(|rest| rest.split_once("].request."))
                {
                    Some((call, field)) => (
                        field.strip_prefix("body:").unwrap_or(field),
                        calls.entry(call).or_default(),
                    ),
                    None => (p.pattern.as_str(), &mut ignore),
                };
                if field.starts_with('$') {
                    if !list.iter().any(|(path, ..)| *path == field) {
                        list.push((field, p.noise, e.pairs, p.example.path.as_str()));
                    }
                } else if let Some(name) = field
                    .strip_prefix("header:")
                    .or_else(|| field.strip_prefix("trailer:"))
                    && !headers.contains(&name)
                {
                    headers.push(name);
                }
            }
            if !ignore.is_empty() {
                rules.push((e.endpoint.as_str(), ignore));
            }
        }
        rules.extend(calls.into_iter().filter(|(_, ignore)| !ignore.is_empty()));
        for (endpoint, ignore) in rules {
            writeln!(out, "\n[[rule]]")?;
            writeln!(out, "endpoint = {}", toml_string(endpoint))?;
            writeln!(out, "ignore = [")?;
            for (path, noise, pairs, example) in ignore {
                // The example is recorded text in a comment: escaped, so a
                // line break in it cannot start a rule of its own.
                writeln!(
                    out,
                    "  {},  # noise in {noise} of {pairs} pairs, e.g. {}",
                    toml_string(path),
                    escape(example)
                )?;
            }
            writeln!(out, "]")?;
        }
        if !headers.is_empty() {
            let list: Vec<String> = headers.iter().map(|h| toml_string(h)).collect();
            writeln!(
                out,
                "\n# Fields that were noise; ignoring them applies to every endpoint:"
            )?;
            writeln!(out, "# ignore_headers = [{}]", list.join(", "))?;
        }
        Ok(())
    }
}

/// A path to ignore in a suggested rule: the path, the pairs where it
/// was noise, the endpoint's pairs, an example.
type Suggested<'r> = (&'r str, u64, u64, &'r str);

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
    recorded: LatencyHistogram,
    replayed: LatencyHistogram,
}

/// Latency at every 5th percentile, for a CDF chart.
fn cdf(h: &LatencyHistogram) -> Vec<u64> {
    if h.is_empty() {
        return Vec::new();
    }
    (1..=20).map(|i| h.quantile(f64::from(i) / 20.0)).collect()
}

/// A latency histogram (µs) that starts small and grows as latencies come.
fn histogram() -> LatencyHistogram {
    LatencyHistogram::new(2, 2)
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

#[derive(Debug)]
struct GroupAcc {
    count: u64,
    examples: Vec<String>,
}

/// A small deterministic generator for reservoir sampling (xorshift64*):
/// the same comparison always picks the same examples.
#[derive(Debug)]
struct Sampler(u64);

impl Default for Sampler {
    fn default() -> Self {
        Sampler(0x9e37_79b9_7f4a_7c15)
    }
}

impl Sampler {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Gathers pairs as they are compared.
#[derive(Debug, Default)]
pub struct Comparison {
    groups: HashMap<(String, Vec<String>), GroupAcc>,
    other_groups: u64,
    sampler: Sampler,
    endpoints: HashMap<String, EndpointAcc>,
    not_compared: BTreeMap<NotCompared, u64>,
    suppressed: Option<crate::noise::Suppressed>,
    noise_guessed: bool,
    repeated: u64,
    downstream: Option<crate::DownstreamSummary>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Comparison {
    /// Counts a replay of an exchange already compared, skipped.
    pub fn repeated(&mut self) {
        self.repeated += 1;
    }

    /// Notes what comparing downstream calls saw, for the report.
    pub fn downstream(&mut self, summary: crate::DownstreamSummary) {
        self.downstream = Some(summary);
    }

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
                        detail: d.detail.clone(),
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
                let mut signature: Vec<String> = differences
                    .iter()
                    .map(|d| format!("{} ({})", d.pattern, d.kind.label()))
                    .collect();
                signature.sort();
                signature.dedup();
                let key = (endpoint_key(recorded), signature);
                let id = recorded.id_hex();
                let full = self.groups.len() >= MAX_GROUPS;
                match self.groups.get_mut(&key) {
                    Some(group) => {
                        group.count += 1;
                        if group.examples.len() < GROUP_EXAMPLES {
                            group.examples.push(id);
                        } else {
                            let j = self.sampler.below(group.count);
                            if let Some(slot) = usize::try_from(j)
                                .ok()
                                .and_then(|j| group.examples.get_mut(j))
                            {
                                *slot = id;
                            }
                        }
                    }
                    None if !full => {
                        self.groups.insert(
                            key,
                            GroupAcc {
                                count: 1,
                                examples: vec![id],
                            },
                        );
                    }
                    None => self.other_groups += 1,
                }
            }
            Verdict::NotCompared(reason) => {
                acc.not_compared += 1;
                *self.not_compared.entry(*reason).or_default() += 1;
            }
        }
        if let (Some(replayed), false) = (replayed, matches!(verdict, Verdict::NotCompared(_))) {
            acc.recorded.record(recorded.duration_ns / 1_000);
            acc.replayed.record(replayed.duration_ns / 1_000);
        }
    }

    /// Notes what a noise model suppressed, for the report.
    pub fn suppressed(&mut self, suppressed: crate::noise::Suppressed) {
        self.suppressed = Some(suppressed);
    }

    /// The report.
    pub fn finish(self) -> DiffReport {
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
                        recorded_p50_us: acc.recorded.quantile(0.5),
                        recorded_p99_us: acc.recorded.quantile(0.99),
                        replayed_p50_us: acc.replayed.quantile(0.5),
                        replayed_p99_us: acc.replayed.quantile(0.99),
                        recorded_cdf_us: cdf(&acc.recorded),
                        replayed_cdf_us: cdf(&acc.replayed),
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
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .map(|((endpoint, differences), g)| Group {
                endpoint,
                differences,
                count: g.count,
                examples: g.examples,
            })
            .collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.endpoint.cmp(&b.endpoint))
                .then(a.differences.cmp(&b.differences))
        });
        DiffReport {
            groups,
            other_groups: self.other_groups,
            pairs: endpoints.iter().map(|e| e.pairs).sum(),
            identical: endpoints.iter().map(|e| e.identical).sum(),
            regressed: endpoints.iter().map(|e| e.regressed).sum(),
            noise_only: endpoints.iter().map(|e| e.noise_only).sum(),
            suppressed: self.suppressed,
            noise_guessed: self.noise_guessed,
            repeated: self.repeated,
            downstream: self.downstream,
            not_compared: self
                .not_compared
                .into_iter()
                .map(|(reason, n)| (reason.label().to_string(), n))
                .collect(),
            endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{ChangeKind, Difference};

    fn pair(id: u32, path: &str) -> (Exchange, Verdict) {
        let exchange = Exchange {
            id: id.to_be_bytes().to_vec(),
            request: Some(reprise_model::Request {
                method: "GET".into(),
                path: "/x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let verdict = Verdict::Regressed(vec![Difference {
            path: path.into(),
            pattern: path.into(),
            kind: ChangeKind::Changed,
            recorded: None,
            replayed: None,
            detail: None,
        }]);
        (exchange, verdict)
    }

    #[test]
    fn regressions_group_by_their_differences_with_sampled_examples() {
        let mut c = Comparison::default();
        for i in 0..1000 {
            let (e, v) = pair(i, if i % 10 == 0 { "$.b" } else { "$.a" });
            c.add(&e, None, &v);
        }
        let report = c.finish();
        let counts: Vec<(u64, &str)> = report
            .groups
            .iter()
            .map(|g| (g.count, g.differences[0].as_str()))
            .collect();
        assert_eq!(counts, [(900, "$.a (changed)"), (100, "$.b (changed)")]);
        let examples = &report.groups[0].examples;
        assert_eq!(examples.len(), GROUP_EXAMPLES);
        // A uniform sample, not the first three seen.
        let first: Vec<String> = (1..4).map(|i: u32| display(i)).collect();
        assert_ne!(examples, &first);
    }

    #[test]
    fn suggested_rules_hold_recorded_text_in_their_strings_and_comments() {
        let (exchange, _) = pair(1, "$.a");
        let path = "$['x\n[[rule]]\nendpoint = \"GET /evil\"\nignore = [\"$\"]']";
        let noise = Difference {
            path: path.into(),
            pattern: path.into(),
            kind: ChangeKind::Changed,
            recorded: None,
            replayed: None,
            detail: None,
        };
        let mut c = Comparison::default();
        c.add_judged(&exchange, None, &Verdict::NoiseOnly, &[noise]);
        let mut out = Vec::new();
        c.finish().suggest_rules(&mut out).unwrap();
        let rules = String::from_utf8(out).unwrap();
        assert_eq!(rules.matches("[[rule]]\n").count(), 1, "{rules}");
        assert!(!rules.contains("\nendpoint = \"GET /evil"), "{rules}");
        assert!(rules.contains(r"e.g. $['x\n[[rule]]\nendpoint"), "{rules}");
    }

    #[test]
    fn the_endpoint_table_stays_aligned_with_a_100_character_endpoint() {
        let mut c = Comparison::default();
        for path in [format!("/{}", "a".repeat(95)), "/b".to_string()] {
            let (mut exchange, _) = pair(1, "$.a");
            if let Some(request) = exchange.request.as_mut() {
                request.path = path;
            }
            c.add(&exchange, Some(&exchange), &Verdict::Identical);
        }
        let report = c.finish();
        assert!(
            report
                .endpoints
                .iter()
                .any(|e| e.endpoint.chars().count() == 100),
            "the report keeps the name whole"
        );
        let mut out = Vec::new();
        report.render(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let table: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("endpoint "))
            .collect();
        assert_eq!(table.len(), 3, "{text}");
        assert!(table[1].contains('…'), "{text}");
        // Every line ends at the same column: the name was shortened to
        // 60 characters rather than pushing the figures right.
        let widths: Vec<usize> = table.iter().map(|line| line.chars().count()).collect();
        assert_eq!(widths, [2 + 60 + 8 + 10 + 10 + 13 + 24 + 24; 3], "{text}");
    }

    fn display(i: u32) -> String {
        reprise_model::display_id(&i.to_be_bytes())
    }
}
