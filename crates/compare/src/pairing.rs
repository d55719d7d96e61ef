//! Pairing a replay's results with the recording they replay, within a
//! memory budget, and comparing each pair into a [`DiffReport`].
//!
//! One part of the recording (its inbound exchanges, responses only) is
//! held in memory at a time; the inputs are cut into parts by recorded id
//! on disk first (see `spill`) when the recording would not fit in the
//! budget. With a baseline, every part is compared twice: once to count
//! the differences per endpoint and path, once to judge each pair.
//!
//! With downstream calls ([`Pairing::downstream`]), a part also holds the
//! calls recorded under its exchanges and the calls each side made for
//! them (requests only), cut by the id of the exchange they belong to, so
//! an exchange and its calls always fall in the same part; they are
//! weighed with the recording. Calls linked to no exchange are counted
//! as they stream by.
//!
//! The caller opens the inputs ([`OpenInput`]): a path may name a tape, a
//! HAR file or a pipe, and which of its exchanges count is the caller's
//! choice. Pairing itself opens no socket, and no file but its own parts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use reprise_model::{Exchange, Source, StoreError};
use reprise_tape::TapeError;

use crate::downstream::{DownstreamSummary, compare_calls, position};
use crate::noise::{NoiseModel, Thresholds, guess};
use crate::pair::{NotCompared, Rules, Verdict, compare};
use crate::report::{Comparison, DiffReport};
use crate::spill::{PartedInput, Spill, parts_for};

/// Memory for the recording's responses unless the caller says
/// (`--max-memory`).
pub const DEFAULT_MAX_MEMORY: usize = 256 << 20;

/// Which side of a comparison an input is on: which of its exchanges
/// take part, and by what key they pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A recording: its inbound exchanges, by their id.
    Recorded,
    /// A replay's results (the candidate's or the baseline's): inbound
    /// exchanges that replay one, by the id they replay.
    Replayed,
    /// Downstream calls, by the id of the recorded exchange they were made
    /// for (`parent_id`): the recording's own, or the calls a build made
    /// to a mock (`reprise mock --out`).
    Downstream,
}

/// Why an input could not be opened, as the opener says it.
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

/// Opens the inputs a comparison reads, each from its start, as many
/// times as pairing needs (the recording at least twice: once to weigh
/// it). What a path names (a tape, a HAR file) and which of its
/// exchanges count (a time window) are the opener's business.
pub trait OpenInput {
    /// The exchanges of `path`, an input on `side`, from the start.
    fn open(&self, path: &Path, side: Side) -> Result<Box<dyn Source>, OpenError>;
}

impl<F> OpenInput for F
where
    F: Fn(&Path, Side) -> Result<Box<dyn Source>, OpenError>,
{
    fn open(&self, path: &Path, side: Side) -> Result<Box<dyn Source>, OpenError> {
        self(path, side)
    }
}

/// How noise is told apart.
#[derive(Debug, Clone, Copy)]
pub enum Noise<'a> {
    /// It is not: every difference counts.
    None,
    /// From a baseline's results (the recording replayed against a second
    /// copy of the old build), with these thresholds.
    Baseline(&'a Path, Thresholds),
    /// Guessed from the values (`--auto-noise`).
    Guess,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// An input could not be opened (the opener's error, as it is).
    #[error(transparent)]
    Open(OpenError),
    /// An input could not be read on.
    #[error(transparent)]
    Read(#[from] StoreError),
    /// The calls a mock recorded hold no downstream call.
    #[error(
        "{}: holds no downstream call (expected the calls a mock recorded, `reprise mock --out`)",
        path.display()
    )]
    NoCalls {
        /// The input, as given.
        path: PathBuf,
    },
    /// A replay's results hold no replayed exchange.
    #[error(
        "{}: holds no replayed exchange (expected the results of `reprise replay --out`)",
        path.display()
    )]
    NoReplays {
        /// The input, as given.
        path: PathBuf,
    },
    /// The directory for the parts spilled to disk could not be made.
    #[error("cannot create a temporary directory")]
    Scratch(#[source] std::io::Error),
    /// A part could not be spilled to disk or read back.
    #[error(transparent)]
    Spill(#[from] TapeError),
}

/// A comparison's outcome: the report, and the damage its inputs showed
/// (one line each, each once).
#[derive(Debug)]
pub struct Paired {
    /// The pairs compared, gathered per endpoint.
    pub report: DiffReport,
    /// Damage skipped in the inputs.
    pub damage: Vec<String>,
}

/// A comparison of a replay's results with the recording they replay:
/// `Pairing::new(recorded, replayed, &rules).noise(...).run(&opener)`.
#[derive(Debug, Clone, Copy)]
pub struct Pairing<'a> {
    recorded: &'a Path,
    replayed: &'a [PathBuf],
    rules: &'a Rules,
    noise: Noise<'a>,
    max_memory: usize,
    scratch: Option<&'a Path>,
    calls: &'a [PathBuf],
    baseline_calls: &'a [PathBuf],
}

impl<'a> Pairing<'a> {
    /// Compares `replayed` (a replay's results; several are merged, each
    /// recorded exchange compared once however often it was replayed)
    /// with `recorded` by `rules`, every difference counting, within
    /// [`DEFAULT_MAX_MEMORY`].
    pub fn new(recorded: &'a Path, replayed: &'a [PathBuf], rules: &'a Rules) -> Self {
        Pairing {
            recorded,
            replayed,
            rules,
            noise: Noise::None,
            max_memory: DEFAULT_MAX_MEMORY,
            scratch: None,
            calls: &[],
            baseline_calls: &[],
        }
    }

    /// Compares downstream calls too: `calls` hold the calls the new
    /// build made (`reprise mock --out`), `baseline_calls` those the
    /// baseline made (with [`Noise::Baseline`]). Each replayed exchange's
    /// calls are compared with its recorded ones (see
    /// [`compare_calls`](crate::compare_calls)); what differs is a
    /// difference of that exchange.
    pub fn downstream(mut self, calls: &'a [PathBuf], baseline_calls: &'a [PathBuf]) -> Self {
        self.calls = calls;
        self.baseline_calls = baseline_calls;
        self
    }

    /// Tells noise apart as `noise` says.
    pub fn noise(mut self, noise: Noise<'a>) -> Self {
        self.noise = noise;
        self
    }

    /// Holds at most about `bytes` of the recording in memory at a time.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Spills parts into a private directory made under `dir`, instead
    /// of under the system's temporary directory (`TMPDIR`).
    pub fn scratch_in(mut self, dir: &'a Path) -> Self {
        self.scratch = Some(dir);
        self
    }

    /// Pairs the replayed exchanges with the recorded ones they replay,
    /// reading the inputs through `inputs`, and compares each pair.
    ///
    /// Parts go to a directory of this run's own (0700, files 0600),
    /// removed when this returns.
    pub fn run(&self, inputs: &dyn OpenInput) -> Result<Paired, PairingError> {
        let mut damage = Vec::new();
        let downstream = !self.calls.is_empty();
        // The baseline's calls count only with the baseline, and only
        // when the candidate's do.
        let baseline_calls: &[PathBuf] = match self.noise {
            Noise::Baseline(..) if downstream => self.baseline_calls,
            _ => &[],
        };
        let mut weighed: Vec<&Path> = Vec::new();
        if downstream {
            weighed.push(self.recorded);
            weighed.extend(
                self.calls
                    .iter()
                    .chain(baseline_calls)
                    .map(PathBuf::as_path),
            );
        }
        let parts = parts_for(
            self.recorded,
            &weighed,
            inputs,
            self.max_memory,
            &mut damage,
        )?;
        let scratch = match self.scratch {
            Some(dir) => tempfile::tempdir_in(dir),
            None => tempfile::tempdir(),
        }
        .map_err(PairingError::Scratch)?;
        let spill = Spill::new(scratch.path(), parts, self.max_memory);
        let split = |path: &'a Path, side: Side, name: &str, damage: &mut Vec<String>| {
            PartedInput::split(path, side, inputs, &spill, name, damage)
        };
        let mut rec = split(self.recorded, Side::Recorded, "recorded", &mut damage)?;
        let mut cand = Vec::with_capacity(self.replayed.len());
        for (i, path) in self.replayed.iter().enumerate() {
            let name = format!("replayed-{i}");
            cand.push(split(path, Side::Replayed, &name, &mut damage)?);
        }
        let mut base = match self.noise {
            Noise::Baseline(path, _) => Some(split(path, Side::Replayed, "baseline", &mut damage)?),
            Noise::None | Noise::Guess => None,
        };
        let mut rec_calls = Vec::new();
        if downstream {
            rec_calls.push(split(
                self.recorded,
                Side::Downstream,
                "recorded-calls",
                &mut damage,
            )?);
        }
        let mut cand_calls = Vec::new();
        for (i, path) in self.calls.iter().enumerate() {
            let name = format!("calls-{i}");
            cand_calls.push(split(path, Side::Downstream, &name, &mut damage)?);
        }
        let mut base_calls = Vec::new();
        for (i, path) in baseline_calls.iter().enumerate() {
            let name = format!("baseline-calls-{i}");
            base_calls.push(split(path, Side::Downstream, &name, &mut damage)?);
        }
        let with_base_calls = !base_calls.is_empty();
        let rules = self.rules;
        let mut model = match (self.noise, base.as_mut()) {
            (Noise::Baseline(_, thresholds), Some(base)) => {
                let mut model = NoiseModel::new(thresholds);
                let mut ignored = DownstreamSummary::default();
                for part in 0..spill.parts() {
                    let map = rec.load(part, &mut damage)?;
                    let recorded = load_calls(&mut rec_calls, part, &mut damage, &mut 0)?;
                    let made = load_calls(&mut base_calls, part, &mut damage, &mut 0)?;
                    let calls = view(with_base_calls, &recorded, &made);
                    base.for_each(part, &mut damage, |(key, exchange)| {
                        if let Some(original) = map.get(&key) {
                            let verdict = judged(original, &exchange, rules, calls, &mut ignored);
                            model.baseline(original, &verdict);
                        }
                    })?;
                    drop(made);
                    let made = load_calls(&mut cand_calls, part, &mut damage, &mut 0)?;
                    let calls = view(downstream, &recorded, &made);
                    let mut seen: HashSet<Vec<u8>> = HashSet::new();
                    for input in &mut cand {
                        input.for_each(part, &mut damage, |(key, exchange)| {
                            if let Some(original) = map.get(&key)
                                && seen.insert(key)
                            {
                                let verdict =
                                    judged(original, &exchange, rules, calls, &mut ignored);
                                model.candidate(original, &verdict);
                            }
                        })?;
                    }
                    model.forget_calls();
                }
                base.must_hold_replays()?;
                must_hold_replays(&cand)?;
                model.decide();
                Some(model)
            }
            _ => None,
        };
        let guessing = matches!(self.noise, Noise::Guess);
        let mut comparison = Comparison::default();
        if guessing {
            comparison.noise_guessed();
        }
        let mut summary = DownstreamSummary::default();
        for part in 0..spill.parts() {
            let map = rec.load(part, &mut damage)?;
            let recorded = load_calls(
                &mut rec_calls,
                part,
                &mut damage,
                &mut summary.unlinked_recorded,
            )?;
            if let (Some(model), Some(base)) = (model.as_mut(), base.as_mut()) {
                let made = load_calls(&mut base_calls, part, &mut damage, &mut 0)?;
                let calls = view(with_base_calls, &recorded, &made);
                let mut ignored = DownstreamSummary::default();
                base.for_each(part, &mut damage, |(key, exchange)| {
                    if let Some(original) = map.get(&key) {
                        let verdict = judged(original, &exchange, rules, calls, &mut ignored);
                        model.remember(original, &verdict);
                    }
                })?;
            }
            let made = load_calls(&mut cand_calls, part, &mut damage, &mut summary.pool_served)?;
            let calls = view(downstream, &recorded, &made);
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            for input in &mut cand {
                input.for_each(part, &mut damage, |(key, exchange)| match map.get(&key) {
                    // Replayed twice (a group's at-least-once replays, or
                    // the same results given twice): compared once.
                    Some(_) if seen.contains(&key) => comparison.repeated(),
                    Some(original) => {
                        seen.insert(key);
                        let verdict = judged(original, &exchange, rules, calls, &mut summary);
                        match model.as_mut() {
                            Some(model) => {
                                let (verdict, noise) = model.judge(original, verdict);
                                comparison.add_judged(original, Some(&exchange), &verdict, &noise);
                            }
                            None if guessing => {
                                let (verdict, noise) = guess(verdict);
                                comparison.add_judged(original, Some(&exchange), &verdict, &noise);
                            }
                            None => comparison.add(original, Some(&exchange), &verdict),
                        }
                    }
                    None => comparison.add(
                        &exchange,
                        Some(&exchange),
                        &Verdict::NotCompared(NotCompared::MissingRecording),
                    ),
                })?;
            }
            for (id, original) in &map {
                if !seen.contains(id) {
                    comparison.add(
                        original,
                        None,
                        &Verdict::NotCompared(NotCompared::MissingReplay),
                    );
                }
            }
            for (id, calls) in &made {
                if !seen.contains(id) {
                    summary.outside_compared += calls.len() as u64;
                }
            }
            if let Some(model) = model.as_mut() {
                model.forget_calls();
            }
        }
        must_hold_replays(&cand)?;
        for calls in cand_calls.iter().chain(&base_calls) {
            calls.must_hold_calls()?;
        }
        if let Some(model) = &model {
            comparison.suppressed(model.suppressed());
        }
        if downstream {
            comparison.downstream(summary);
        }
        // An input read more than once reports its damage each time.
        let mut reported = HashSet::new();
        damage.retain(|line| reported.insert(line.clone()));
        Ok(Paired {
            report: comparison.finish(),
            damage,
        })
    }
}

/// An error unless some replay took part: several result sources (a
/// group's members) may include one that replayed nothing.
fn must_hold_replays(inputs: &[PartedInput<'_>]) -> Result<(), PairingError> {
    if inputs.iter().any(PartedInput::holds_replays) {
        return Ok(());
    }
    match inputs.first() {
        Some(input) => input.must_hold_replays(),
        None => Ok(()),
    }
}

/// The downstream calls of one part, by the recorded exchange they were
/// made for, each scope's in the order they were made.
type Scopes = HashMap<Vec<u8>, Vec<Exchange>>;

/// The calls one side's verdicts compare: the recorded ones, and those
/// that side made.
#[derive(Clone, Copy)]
struct Calls<'s> {
    recorded: &'s Scopes,
    made: &'s Scopes,
}

/// What one side's verdicts compare: with `on`, the recorded calls and
/// the calls that side made; else the responses alone.
fn view<'s>(on: bool, recorded: &'s Scopes, made: &'s Scopes) -> Option<Calls<'s>> {
    on.then_some(Calls { recorded, made })
}

/// The calls of part `part` of `inputs`, by scope; calls linked to no
/// exchange are counted in `unlinked`, not held.
fn load_calls(
    inputs: &mut [PartedInput<'_>],
    part: usize,
    damage: &mut Vec<String>,
    unlinked: &mut u64,
) -> Result<Scopes, PairingError> {
    let mut scopes = Scopes::new();
    for input in inputs {
        input.for_each(part, damage, |(key, call)| {
            if key.is_empty() {
                *unlinked += 1;
            } else {
                scopes.entry(key).or_default().push(call);
            }
        })?;
    }
    for calls in scopes.values_mut() {
        calls.sort_by_key(position);
    }
    Ok(scopes)
}

/// The verdict on `replayed` against `original`: its response, and with
/// `calls` the downstream calls made for it, whose differences are the
/// exchange's. An exchange not compared (a failed replay) has its calls
/// counted as outside the comparison.
fn judged(
    original: &Exchange,
    replayed: &Exchange,
    rules: &Rules,
    calls: Option<Calls<'_>>,
    summary: &mut DownstreamSummary,
) -> Verdict {
    let verdict = compare(original, replayed, rules);
    let Some(calls) = calls else {
        return verdict;
    };
    let none: &[Exchange] = &[];
    let recorded = calls.recorded.get(&original.id).map_or(none, Vec::as_slice);
    let made = calls.made.get(&original.id).map_or(none, Vec::as_slice);
    if matches!(verdict, Verdict::NotCompared(_)) {
        summary.outside_compared += made.len() as u64;
        return verdict;
    }
    let differences = compare_calls(recorded, made, rules, summary);
    if differences.is_empty() {
        return verdict;
    }
    match verdict {
        Verdict::Regressed(mut found) => {
            found.extend(differences);
            Verdict::Regressed(found)
        }
        Verdict::Identical | Verdict::NoiseOnly | Verdict::NotCompared(_) => {
            Verdict::Regressed(differences)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use reprise_model::{Exchange, Header, Replay, Request, Response};

    use super::*;

    /// Inputs held in memory, by path, each with the damage lines its
    /// every reading reports.
    #[derive(Default)]
    struct Inputs(HashMap<PathBuf, (Vec<Exchange>, Vec<String>)>);

    impl Inputs {
        fn with(mut self, path: &str, exchanges: Vec<Exchange>) -> Self {
            self.0.insert(path.into(), (exchanges, Vec::new()));
            self
        }

        fn damaged(mut self, path: &str, line: &str) -> Self {
            if let Some((_, damage)) = self.0.get_mut(Path::new(path)) {
                damage.push(line.to_string());
            }
            self
        }
    }

    impl OpenInput for Inputs {
        fn open(&self, path: &Path, _: Side) -> Result<Box<dyn Source>, OpenError> {
            let (exchanges, damage) = self
                .0
                .get(path)
                .ok_or_else(|| format!("{}: no such input", path.display()))?;
            let damage = damage.clone().into_iter().map(|detail| {
                Err(StoreError::Damaged {
                    store: "memory".into(),
                    detail,
                })
            });
            Ok(Box::new(
                damage.chain(exchanges.clone().into_iter().map(Ok)),
            ))
        }
    }

    fn recorded(i: u32) -> Exchange {
        Exchange {
            id: i.to_be_bytes().to_vec(),
            request: Some(Request {
                method: "GET".into(),
                path: format!("/items/{}", i % 3),
                headers: vec![Header::new("x-request", "dropped before comparing")],
                ..Default::default()
            }),
            response: Some(Response {
                status: 200,
                headers: vec![Header::new("content-type", "application/json")],
                body: format!(r#"{{"id":{i},"price":{i},"at":1}}"#)
                    .into_bytes()
                    .into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The replay of recorded exchange `i`: its price changed on every
    /// fifth, its `at` on every other (with `at_noise`).
    fn replayed(i: u32, at_noise: bool) -> Exchange {
        let mut exchange = recorded(i);
        let price = if i.is_multiple_of(5) { i + 1 } else { i };
        let at = if at_noise && i.is_multiple_of(2) {
            2
        } else {
            1
        };
        if let Some(response) = exchange.response.as_mut() {
            response.body = format!(r#"{{"id":{i},"price":{price},"at":{at}}}"#)
                .into_bytes()
                .into();
        }
        exchange.id = (1_000_000 + i).to_be_bytes().to_vec();
        exchange.replay = Some(Replay {
            recorded_id: i.to_be_bytes().to_vec(),
            ..Default::default()
        });
        exchange
    }

    /// 300 recorded exchanges and a downstream call (never compared); 290
    /// of them replayed, with a replay of an exchange never recorded.
    fn inputs() -> Inputs {
        let mut recording: Vec<Exchange> = (0..300).map(recorded).collect();
        recording.push(Exchange {
            id: b"downstream".to_vec(),
            parent_id: 7u32.to_be_bytes().to_vec(),
            ..recorded(7)
        });
        let mut candidate: Vec<Exchange> = (0..290).map(|i| replayed(i, true)).collect();
        candidate.push(replayed(5_000, false));
        // A baseline: the same noise on `at`, none on the price.
        let baseline = (0..300)
            .map(|i| {
                let mut exchange = replayed(i, true);
                exchange.response = recorded(i).response.map(|mut r| {
                    if i.is_multiple_of(2) {
                        r.body = format!(r#"{{"id":{i},"price":{i},"at":2}}"#)
                            .into_bytes()
                            .into();
                    }
                    r
                });
                exchange
            })
            .collect();
        Inputs::default()
            .with("rec", recording)
            .with("cand", candidate)
            .with("base", baseline)
    }

    /// What a report says, less the examples (which parts sample apart).
    fn figures(report: &DiffReport) -> serde_json::Value {
        let mut json = serde_json::to_value(report).expect("a report serializes");
        if let Some(groups) = json.get_mut("groups").and_then(|g| g.as_array_mut()) {
            for group in groups {
                group["examples"] = serde_json::Value::Null;
            }
        }
        if let Some(endpoints) = json.get_mut("endpoints").and_then(|e| e.as_array_mut()) {
            for endpoint in endpoints {
                for path in endpoint["paths"].as_array_mut().into_iter().flatten() {
                    path["example"] = serde_json::Value::Null;
                }
            }
        }
        json
    }

    fn run(inputs: &Inputs, noise: Noise<'_>, max_memory: usize) -> Paired {
        let rules = Rules::default();
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let paired = Pairing::new(Path::new("rec"), &[PathBuf::from("cand")], &rules)
            .noise(noise)
            .max_memory(max_memory)
            .scratch_in(scratch.path())
            .run(inputs)
            .expect("the comparison runs");
        let left: Vec<_> = std::fs::read_dir(scratch.path())
            .expect("the scratch directory")
            .collect();
        assert!(left.is_empty(), "parts left behind: {left:?}");
        paired
    }

    #[test]
    fn parts_on_disk_give_the_figures_of_one_part_in_memory() {
        let inputs = inputs();
        let whole = run(&inputs, Noise::None, DEFAULT_MAX_MEMORY).report;
        assert_eq!(whole.pairs, 301);
        assert_eq!(
            whole.not_compared.get("recorded but not replayed"),
            Some(&10)
        );
        assert_eq!(
            whole.not_compared.get("replayed but not in the recording"),
            Some(&1)
        );
        // Odd and not a fifth: 145 odd, 29 of them fifths.
        assert_eq!(whole.identical, 116);
        assert_eq!(whole.regressed, 174);
        // About 300 bytes each, weighed thrice plus a kilobyte: 16 parts.
        let parted = run(&inputs, Noise::None, 20 << 10).report;
        assert_eq!(figures(&parted), figures(&whole));
        let most = run(&inputs, Noise::None, 1).report;
        assert_eq!(figures(&most), figures(&whole));
    }

    #[test]
    fn a_baseline_takes_out_the_same_noise_in_parts_and_whole() {
        let inputs = inputs();
        let thresholds = Thresholds {
            relative: 0.2,
            absolute: 0.01,
        };
        let noise = Noise::Baseline(Path::new("base"), thresholds);
        let whole = run(&inputs, noise, DEFAULT_MAX_MEMORY).report;
        // The fifths regress; the other even ones differ only as the
        // baseline does.
        assert_eq!(whole.regressed, 58);
        assert_eq!(whole.noise_only, 116);
        let parted = run(&inputs, noise, 20 << 10).report;
        assert_eq!(figures(&parted), figures(&whole));
        let guessed = run(&inputs, Noise::Guess, 20 << 10).report;
        assert!(guessed.noise_guessed);
        assert_eq!(
            figures(&guessed),
            figures(&run(&inputs, Noise::Guess, DEFAULT_MAX_MEMORY).report)
        );
    }

    #[test]
    fn results_split_among_sources_and_replayed_twice_count_each_exchange_once() {
        // A group of two replayers: each has its share, and both replayed
        // the exchanges 100..120 (taken over after a rebalance); one
        // replayed nothing at all.
        let share = |range: std::ops::Range<u32>| range.map(|i| replayed(i, true)).collect();
        let inputs = inputs()
            .with("a", share(0..120))
            .with("b", share(100..290))
            .with("idle", Vec::new());
        let rules = Rules::default();
        let sources = [
            PathBuf::from("a"),
            PathBuf::from("idle"),
            PathBuf::from("b"),
        ];
        let whole = run(&inputs, Noise::None, DEFAULT_MAX_MEMORY).report;
        for max_memory in [DEFAULT_MAX_MEMORY, 20 << 10] {
            let merged = Pairing::new(Path::new("rec"), &sources, &rules)
                .max_memory(max_memory)
                .run(&inputs)
                .expect("the comparison runs")
                .report;
            assert_eq!(merged.repeated, 20);
            assert_eq!(merged.pairs, whole.pairs - 1, "less the stray replay");
            assert_eq!(
                (merged.identical, merged.regressed),
                (whole.identical, whole.regressed)
            );
            assert_eq!(
                merged.not_compared.get("recorded but not replayed"),
                Some(&10)
            );
        }
        let Err(none) =
            Pairing::new(Path::new("rec"), &[PathBuf::from("idle")], &rules).run(&inputs)
        else {
            panic!("no replay at all is an error");
        };
        assert!(
            none.to_string().contains("holds no replayed exchange"),
            "{none}"
        );
    }

    #[test]
    fn damage_is_reported_once_however_often_an_input_is_read() {
        let inputs = inputs().damaged("rec", "block 3 fails its checksum");
        for max_memory in [DEFAULT_MAX_MEMORY, 20 << 10] {
            let paired = run(&inputs, Noise::None, max_memory);
            assert_eq!(paired.damage, ["memory: block 3 fails its checksum"]);
        }
    }

    #[test]
    fn results_without_a_replay_or_an_input_that_will_not_open_are_errors() {
        let rules = Rules::default();
        let inputs = inputs().with("not-replays", (0..3).map(recorded).collect());
        for max_memory in [DEFAULT_MAX_MEMORY, 1] {
            let error = Pairing::new(Path::new("rec"), &[PathBuf::from("not-replays")], &rules)
                .max_memory(max_memory)
                .run(&inputs)
                .expect_err("no replays");
            assert!(matches!(error, PairingError::NoReplays { .. }), "{error}");
            assert_eq!(
                error.to_string(),
                "not-replays: holds no replayed exchange (expected the results of `reprise replay --out`)"
            );
        }
        let error = Pairing::new(Path::new("rec"), &[PathBuf::from("gone")], &rules)
            .max_memory(1)
            .run(&inputs)
            .expect_err("no such input");
        assert_eq!(error.to_string(), "gone: no such input");
    }

    /// A downstream call under recorded exchange `parent` (empty: none)
    /// at position `order`: `METHOD authority/path` with a JSON body.
    fn call(id: Vec<u8>, parent: Option<u32>, order: u32, line: &str, body: &str) -> Exchange {
        let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
        let (authority, path) = target.split_once('/').unwrap_or((target, ""));
        Exchange {
            id,
            parent_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            role: reprise_model::Role::Downstream as i32,
            link: Some(reprise_model::Link {
                kind: reprise_model::LinkKind::Trace as i32,
                order,
            }),
            request: Some(Request {
                method: method.into(),
                authority: authority.into(),
                path: format!("/{path}"),
                headers: vec![Header::new("content-type", "application/json")],
                body: body.as_bytes().to_vec().into(),
                ..Default::default()
            }),
            response: Some(Response {
                status: 200,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn recorded_call_id(parent: u32, order: u32) -> Vec<u8> {
        format!("rec-{parent}-{order}").into_bytes()
    }

    /// What a mock records of a call a build made: answered by
    /// `answered_by` (a miss when empty).
    fn made(mut call: Exchange, answered_by: Vec<u8>, n: &mut u32) -> Exchange {
        *n += 1;
        call.id = format!("made-{n}").into_bytes();
        call.flags = Some(reprise_model::Flags {
            mock_miss: answered_by.is_empty(),
            ..Default::default()
        });
        call.replay = Some(Replay {
            recorded_id: answered_by,
            ..Default::default()
        });
        call
    }

    fn charge(i: u32, amount: u32, nonce: &str) -> String {
        format!(r#"{{"amount":{amount},"nonce":"n-{i}-{nonce}"}}"#)
    }

    /// 60 recorded exchanges, each with an inventory call and a charge
    /// (and 5 unlinked calls); all replayed identically. The new build
    /// charges another amount on every fifth (the mock misses those), adds
    /// a refund on every seventh, skips the inventory call on every
    /// eleventh, and sends a new nonce on every charge, as the baseline
    /// does.
    fn with_calls() -> Inputs {
        let mut recording: Vec<Exchange> = (0..60).map(recorded).collect();
        for i in 0..60 {
            let inventory = format!("GET inventory/items/{i}");
            recording.push(call(recorded_call_id(i, 0), Some(i), 0, &inventory, ""));
            let body = charge(i, i, "r");
            let line = "POST payments.example/charge";
            recording.push(call(recorded_call_id(i, 1), Some(i), 1, line, &body));
        }
        for u in 0..5 {
            let id = format!("pool-{u}").into_bytes();
            recording.push(call(id, None, u, "GET config/flags", ""));
        }
        let replays: Vec<Exchange> = (0..60)
            .map(|i| {
                let mut e = recorded(i);
                e.id = (1_000_000 + i).to_be_bytes().to_vec();
                e.replay = Some(Replay {
                    recorded_id: i.to_be_bytes().to_vec(),
                    ..Default::default()
                });
                e
            })
            .collect();
        let mut n = 0;
        let mut candidate = Vec::new();
        let mut baseline = Vec::new();
        for i in 0..60 {
            let inventory = format!("GET inventory/items/{i}");
            let line = "POST payments.example/charge";
            let mut order = 0;
            if i % 11 != 0 {
                let c = call(Vec::new(), Some(i), order, &inventory, "");
                candidate.push(made(c, recorded_call_id(i, 0), &mut n));
                order += 1;
            }
            let (amount, answered_by) = if i % 5 == 0 {
                (i + 1, Vec::new())
            } else {
                (i, recorded_call_id(i, 1))
            };
            let c = call(Vec::new(), Some(i), order, line, &charge(i, amount, "c"));
            candidate.push(made(c, answered_by, &mut n));
            if i % 7 == 0 {
                let c = call(
                    Vec::new(),
                    Some(i),
                    order + 1,
                    "POST payments.example/refund",
                    "{}",
                );
                candidate.push(made(c, Vec::new(), &mut n));
            }
            if i == 3 {
                let c = call(Vec::new(), Some(i), 9, "GET config/flags", "");
                candidate.push(made(c, b"pool-0".to_vec(), &mut n));
            }
            let c = call(Vec::new(), Some(i), 0, &inventory, "");
            baseline.push(made(c, recorded_call_id(i, 0), &mut n));
            let c = call(Vec::new(), Some(i), 1, line, &charge(i, i, "b"));
            baseline.push(made(c, recorded_call_id(i, 1), &mut n));
        }
        for u in 0..3 {
            let c = call(Vec::new(), None, u, "GET config/flags", "");
            candidate.push(made(c, format!("pool-{u}").into_bytes(), &mut n));
        }
        Inputs::default()
            .with("rec", recording)
            .with("cand", replays.clone())
            .with("base", replays)
            .with("calls", candidate)
            .with("base-calls", baseline)
    }

    fn run_calls(inputs: &Inputs, noise: Noise<'_>, max_memory: usize, rules: &Rules) -> Paired {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let calls = [PathBuf::from("calls")];
        let base_calls = [PathBuf::from("base-calls")];
        Pairing::new(Path::new("rec"), &[PathBuf::from("cand")], rules)
            .noise(noise)
            .downstream(&calls, &base_calls)
            .max_memory(max_memory)
            .scratch_in(scratch.path())
            .run(inputs)
            .expect("the comparison runs")
    }

    fn count(report: &DiffReport, pattern: &str) -> (u64, u64) {
        report
            .endpoints
            .iter()
            .flat_map(|e| &e.paths)
            .filter(|p| p.pattern == pattern)
            .fold((0, 0), |(r, n), p| (r + p.regressed, n + p.noise))
    }

    #[test]
    fn downstream_calls_are_differences_of_their_exchange_in_parts_and_whole() {
        let inputs = with_calls();
        let rules = Rules::default();
        let whole = run_calls(&inputs, Noise::None, DEFAULT_MAX_MEMORY, &rules).report;
        // Every charge carries a new nonce: every exchange regressed.
        assert_eq!((whole.pairs, whole.regressed), (60, 60));
        let charge = "downstream[POST payments.example/charge].request.body:";
        assert_eq!(count(&whole, &format!("{charge}$.amount")), (12, 0));
        assert_eq!(count(&whole, &format!("{charge}$.nonce")), (60, 0));
        assert_eq!(
            count(&whole, "downstream[POST payments.example/refund]"),
            (9, 0)
        );
        assert_eq!(
            count(&whole, "downstream[GET inventory/items/{id}]"),
            (6, 0)
        );
        let summary = whole.downstream.expect("a downstream summary");
        assert_eq!(
            summary,
            DownstreamSummary {
                recorded: 120,
                made: 124,
                answered: 102,
                paired_after_miss: 12,
                changed: 60,
                missing: 6,
                extra: 9,
                mock_misses: 21,
                pool_served: 4,
                unlinked_recorded: 5,
                session_calls: 0,
                outside_compared: 0,
            }
        );
        let mut text = Vec::new();
        whole.render(&mut text).expect("renders");
        let text = String::from_utf8(text).expect("text");
        for line in [
            "downstream calls: 120 recorded, 124 made (102 answered by the mock, 12 paired after a miss): 60 changed, 6 missing, 9 new; 21 mock misses",
            "downstream pool: 4 calls served by unlinked recorded calls (5 recorded, charged to no exchange)",
            "GET /items/{id}: downstream calls that differ",
            "  POST payments.example/charge: $.amount 0 → 1   12× regressed",
            "  call missing: GET inventory/items/0   6× regressed",
            "  new call: POST payments.example/refund   9× regressed",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        assert!(!text.contains(": what differs"), "{text}");
        for max_memory in [20 << 10, 1] {
            let parted = run_calls(&inputs, Noise::None, max_memory, &rules).report;
            assert_eq!(figures(&parted), figures(&whole), "{max_memory}");
        }
        // `--ignore $.nonce` applies to the calls' bodies: only the real
        // changes are left.
        let mut rules = Rules::default();
        rules.ignore("$.nonce").expect("a path");
        let ignored = run_calls(&inputs, Noise::None, DEFAULT_MAX_MEMORY, &rules).report;
        let changed = (0..60u32)
            .filter(|i| i % 5 == 0 || i % 7 == 0 || i % 11 == 0)
            .count() as u64;
        assert_eq!(ignored.regressed, changed);
        assert_eq!(count(&ignored, &format!("{charge}$.nonce")), (0, 0));
    }

    #[test]
    fn a_baseline_of_downstream_calls_cancels_their_noise() {
        let inputs = with_calls();
        let rules = Rules::default();
        let thresholds = Thresholds {
            relative: 0.2,
            absolute: 0.01,
        };
        let noise = Noise::Baseline(Path::new("base"), thresholds);
        let whole = run_calls(&inputs, noise, DEFAULT_MAX_MEMORY, &rules).report;
        let changed = (0..60u32)
            .filter(|i| i % 5 == 0 || i % 7 == 0 || i % 11 == 0)
            .count() as u64;
        assert_eq!((whole.regressed, whole.noise_only), (changed, 60 - changed));
        let charge = "downstream[POST payments.example/charge].request.body:";
        assert_eq!(count(&whole, &format!("{charge}$.nonce")), (0, 60));
        assert_eq!(count(&whole, &format!("{charge}$.amount")), (12, 0));
        let parted = run_calls(&inputs, noise, 20 << 10, &rules).report;
        assert_eq!(figures(&parted), figures(&whole));
        // Without the baseline's calls, the baseline says nothing of the
        // calls: every nonce counts.
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let calls = [PathBuf::from("calls")];
        let blind = Pairing::new(Path::new("rec"), &[PathBuf::from("cand")], &rules)
            .noise(noise)
            .downstream(&calls, &[])
            .scratch_in(scratch.path())
            .run(&inputs)
            .expect("the comparison runs")
            .report;
        assert_eq!(blind.regressed, 60);
    }

    #[test]
    fn calls_that_are_not_downstream_calls_are_an_error() {
        let inputs = with_calls();
        let rules = Rules::default();
        let calls = [PathBuf::from("cand")];
        for max_memory in [DEFAULT_MAX_MEMORY, 1] {
            let error = Pairing::new(Path::new("rec"), &[PathBuf::from("cand")], &rules)
                .downstream(&calls, &[])
                .max_memory(max_memory)
                .run(&inputs)
                .expect_err("replays are not calls");
            assert_eq!(
                error.to_string(),
                "cand: holds no downstream call (expected the calls a mock recorded, `reprise mock --out`)"
            );
        }
        // A mock that answered nothing wrote an empty tape: every
        // recorded call is missing.
        let inputs = with_calls().with("calls", Vec::new());
        let report = run_calls(&inputs, Noise::None, DEFAULT_MAX_MEMORY, &rules).report;
        assert_eq!(report.regressed, 60);
        assert_eq!(report.downstream.map(|d| d.missing), Some(120));
    }
}
