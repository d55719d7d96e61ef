//! `reprise diff`: a replay's results against the recording it replays,
//! with noise taken out when a baseline is given.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reprise_compare::{
    Comparison, DiffReport, EndpointRules, Judgement, NoiseModel, NotCompared, Rules, Thresholds,
    Verdict, compare,
};
use reprise_model::select::ExchangeFilter;
use reprise_model::{Exchange, Intact};

use crate::Outcome;
use crate::args::{CompareArgs, DiffArgs};
use crate::report_file::write_report;

/// A rules file (`--rules FILE`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    unordered: Vec<String>,
    #[serde(default)]
    ignore_headers: Vec<String>,
    #[serde(default)]
    compare_headers: Vec<String>,
    #[serde(default)]
    rule: Vec<EndpointRule>,
}

/// One `[[rule]]` table.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointRule {
    endpoint: String,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    unordered: Vec<String>,
}

fn read_rules(path: &Path, rules: &mut Rules) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--rules {}: cannot read", path.display()))?;
    let file: RulesFile = toml::from_str(&text).map_err(|e| {
        // toml draws the error under the line over several lines; the
        // first says what and where.
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        anyhow::anyhow!("--rules {}: {first}: {}", path.display(), e.message())
    })?;
    let at = |what: &str| format!("--rules {}: {what}", path.display());
    for p in &file.ignore {
        rules.ignore(p).with_context(|| at("ignore"))?;
    }
    for p in &file.unordered {
        rules.unordered(p).with_context(|| at("unordered"))?;
    }
    for name in &file.compare_headers {
        rules.compare_header(name);
    }
    for name in &file.ignore_headers {
        rules.ignore_header(name);
    }
    for rule in file.rule {
        let parse = |paths: &[String], what: &str| {
            paths
                .iter()
                .map(|p| reprise_model::redact::JsonPath::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| at(&format!("rule for {:?}: {what}", rule.endpoint)))
        };
        let endpoint = rule.endpoint.trim();
        if !endpoint.contains(' ') {
            bail!(
                "{}: endpoint {endpoint:?}: expected METHOD /path, such as \"POST /api/orders\"",
                at("rule")
            );
        }
        rules.endpoints.push(EndpointRules {
            ignore: parse(&rule.ignore, "ignore")?,
            unordered: parse(&rule.unordered, "unordered")?,
            endpoint: endpoint.to_string(),
        });
    }
    Ok(())
}

/// The comparison rules from the command line (and a rules file).
/// Refuses comparison options given without `--compare`.
pub(crate) fn only_with_compare(given: &CompareArgs) -> anyhow::Result<()> {
    if !given.ignore.is_empty()
        || !given.unordered.is_empty()
        || given.rules.is_some()
        || !given.ignore_header.is_empty()
        || !given.compare_header.is_empty()
        || given.junit.is_some()
        || given.report.is_some()
        || given.suggest_rules.is_some()
        || !given.proto.is_empty()
        || given.descriptor_set.is_some()
        || given.reflection.is_some()
        || given.auto_noise
        || given.min_compared.is_some()
    {
        anyhow::bail!(
            "--ignore, --unordered, --rules, --ignore-header, --compare-header, --auto-noise, --proto, --descriptor-set, --reflection, --junit, --report, --suggest-rules and --min-compared go with --compare"
        );
    }
    Ok(())
}

pub(crate) fn rules(args: &CompareArgs) -> anyhow::Result<Rules> {
    let mut rules = Rules::default();
    if let Some(path) = &args.rules {
        read_rules(path, &mut rules)?;
    }
    for path in &args.ignore {
        rules.ignore(path).context("--ignore")?;
    }
    if !args.proto.is_empty() {
        rules.schema = Some(reprise_compare::Schema::from_protos(&args.proto).context("--proto")?);
    }
    if let Some(path) = &args.descriptor_set {
        rules.schema =
            Some(reprise_compare::Schema::from_descriptor_set(path).context("--descriptor-set")?);
    }
    if let Some(url) = &args.reflection {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let bytes = runtime.block_on(crate::reflection::fetch_schema(url))?;
        rules.schema = Some(reprise_compare::Schema::from_encoded(&bytes, url)?);
    }
    for path in &args.unordered {
        rules.unordered(path).context("--unordered")?;
    }
    for name in &args.compare_header {
        rules.compare_header(name);
    }
    for name in &args.ignore_header {
        rules.ignore_header(name);
    }
    Ok(rules)
}

pub(crate) fn thresholds(args: &CompareArgs) -> anyhow::Result<Thresholds> {
    for (flag, value) in [
        ("--noise-relative", args.noise_relative),
        ("--noise-absolute", args.noise_absolute),
    ] {
        if !(0.0..1.0).contains(&value) {
            bail!("{flag} {value}: expected a fraction from 0 up to 1, such as 0.2");
        }
    }
    Ok(Thresholds {
        relative: args.noise_relative,
        absolute: args.noise_absolute,
    })
}

/// Runs `reprise diff`.
pub(crate) fn run(args: &DiffArgs) -> anyhow::Result<Outcome> {
    let rules = rules(&args.compare)?;
    let thresholds = thresholds(&args.compare)?;
    let noise = match (args.baseline.as_deref(), args.compare.auto_noise) {
        (Some(_), true) => {
            bail!(
                "--auto-noise guesses noise without a baseline; with --baseline the baseline decides"
            )
        }
        (Some(b), false) => Noise::Baseline(b, thresholds),
        (None, true) => Noise::Guess,
        (None, false) => Noise::None,
    };
    let max_memory = super::record::size("--max-memory", &args.compare.max_memory)?;
    let (report, damage) = diff_with(
        &args.recorded,
        &ExchangeFilter::new(),
        &args.replayed,
        noise,
        &rules,
        max_memory,
    )?;
    let judgement = finish(&report, &damage, args.json.as_deref(), &args.compare)?;
    Ok(judgement.finding().into())
}

/// Pairs a comparison must compare to pass: `--min-compared`, 1 unless
/// given.
pub(crate) fn min_compared(args: &CompareArgs) -> u64 {
    args.min_compared.unwrap_or(1)
}

/// Prints the report, writes the JSON and JUnit files asked for, reports
/// damage and a shortfall of pairs compared on stderr, and says what the
/// comparison found.
pub(crate) fn finish(
    report: &DiffReport,
    damage: &[String],
    json: Option<&Path>,
    files: &CompareArgs,
) -> anyhow::Result<Judgement> {
    let stdout = std::io::stdout();
    report.render(&mut stdout.lock())?;
    if let Some(path) = json {
        write_report(path, |w| {
            serde_json::to_writer_pretty(&mut *w, report)?;
            Ok(w.write_all(b"\n")?)
        })?;
    }
    if let Some(path) = &files.junit {
        write_report(path, |w| Ok(report.render_junit(w)?))?;
    }
    if let Some(path) = &files.suggest_rules {
        write_report(path, |w| Ok(report.suggest_rules(w)?))?;
    }
    if let Some(path) = &files.report {
        write_report(path, |w| Ok(report.render_html(w)?))?;
    }
    crate::report_damage(damage);
    let min_compared = min_compared(files);
    let judgement = report.judgement(min_compared, !damage.is_empty());
    if judgement.too_few() {
        let not_compared: u64 = report.not_compared.values().sum();
        eprintln!(
            "reprise: {} pairs compared, fewer than --min-compared {min_compared} ({not_compared} not compared): not a pass",
            judgement.compared
        );
    }
    Ok(judgement)
}

/// How noise is told apart.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Noise<'a> {
    /// It is not: every difference counts.
    None,
    /// From a baseline's results.
    Baseline(&'a Path, Thresholds),
    /// Guessed from the values (`--auto-noise`).
    Guess,
}

/// Memory for the recording's responses unless `--max-memory` says.
pub(crate) const DEFAULT_MAX_MEMORY: usize = 256 << 20;

/// Compares without a baseline.
pub(crate) fn diff(
    recorded: &Path,
    replayed: &Path,
    rules: &Rules,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    diff_with(
        recorded,
        &ExchangeFilter::new(),
        replayed,
        Noise::None,
        rules,
        DEFAULT_MAX_MEMORY,
    )
}

/// What a recorded exchange needs to be compared and grouped: its
/// response, its response messages and its endpoint. The request's
/// headers, body and messages are dropped to keep the map small.
fn for_comparison(mut exchange: Exchange) -> Exchange {
    if let Some(request) = exchange.request.as_mut() {
        request.headers = Vec::new();
        request.trailers = Vec::new();
        request.body = Default::default();
    }
    exchange
        .messages
        .retain(|m| m.direction() != reprise_model::Direction::Request);
    exchange
}

/// Which exchanges of an input take part, and by what key they pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A recording: its inbound exchanges, by their id.
    Recording,
    /// A replay's results: exchanges that replay one, by the id they replay.
    Replays,
}

impl Role {
    /// The exchange as it takes part, and its key; `None` when it does not.
    fn admit(self, exchange: Exchange) -> Option<(Vec<u8>, Exchange)> {
        match self {
            Role::Recording if !exchange.is_downstream() => {
                Some((exchange.id.clone(), for_comparison(exchange)))
            }
            Role::Recording => None,
            Role::Replays => {
                let key = exchange.replay.as_ref()?.recorded_id.clone();
                Some((key, exchange))
            }
        }
    }
}

/// An input cut into parts by key, so that one part of the recording at a
/// time is held in memory. With one part the input is read in place.
struct Parted {
    path: PathBuf,
    role: Role,
    /// The time window read of it (all, unless the caller narrows the
    /// recording's).
    window: ExchangeFilter,
    /// Files of length-prefixed encoded exchanges, one per part; empty
    /// when there is one part.
    parts: Vec<PathBuf>,
    /// Exchanges that took part.
    count: u64,
}

/// The part a key falls in (FNV-1a: stable, no dependency).
fn part_of(key: &[u8], parts: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % parts.max(1) as u64).unwrap_or(0)
}

impl Parted {
    /// Reads `path` once and writes its exchanges into `parts` files under
    /// `dir` (nothing when `parts` is 1).
    fn split(
        path: &Path,
        role: Role,
        window: &ExchangeFilter,
        parts: usize,
        dir: &Path,
        damage: &mut Vec<String>,
    ) -> anyhow::Result<Parted> {
        let mut parted = Parted {
            path: path.to_path_buf(),
            role,
            window: window.clone(),
            parts: Vec::new(),
            count: 0,
        };
        if parts <= 1 {
            // Read in place, and counted on the first reading.
            return Ok(parted);
        }
        let stem = format!("{:?}-{}", role, dir.read_dir().map_or(0, Iterator::count));
        let mut writers = Vec::with_capacity(parts);
        for i in 0..parts {
            let file = dir.join(format!("{stem}-{i}.part"));
            let handle = std::fs::File::create(&file)
                .with_context(|| format!("{}: cannot create", file.display()))?;
            writers.push(std::io::BufWriter::new(handle));
            parted.parts.push(file);
        }
        let mut source = crate::input::open(path, window)?;
        let mut intact = Intact::new(source.as_mut());
        for exchange in intact.by_ref() {
            let Some((key, exchange)) = role.admit(exchange?) else {
                continue;
            };
            parted.count += 1;
            let mut bytes = Vec::new();
            reprise_model::encode(&exchange, &mut bytes);
            let writer = &mut writers[part_of(&key, parts)];
            let len = u32::try_from(bytes.len()).context("an exchange over 4 GiB")?;
            writer.write_all(&len.to_le_bytes())?;
            writer.write_all(&bytes)?;
        }
        damage.extend(intact.into_damage());
        for mut writer in writers {
            writer.flush()?;
        }
        Ok(parted)
    }

    /// Hands each exchange of part `part` (with its key) to `each`.
    fn for_each(
        &mut self,
        part: usize,
        damage: &mut Vec<String>,
        mut each: impl FnMut((Vec<u8>, Exchange)),
    ) -> anyhow::Result<()> {
        if self.parts.is_empty() {
            let mut source = crate::input::open(&self.path, &self.window)?;
            let mut intact = Intact::new(source.as_mut());
            let mut count = 0;
            for exchange in intact.by_ref() {
                if let Some(admitted) = self.role.admit(exchange?) {
                    count += 1;
                    each(admitted);
                }
            }
            damage.extend(intact.into_damage());
            self.count = count;
            return Ok(());
        }
        let file = &self.parts[part];
        let handle = std::fs::File::open(file)
            .with_context(|| format!("{}: cannot read", file.display()))?;
        let mut reader = std::io::BufReader::new(handle);
        let mut len = [0u8; 4];
        let mut record = Vec::new();
        loop {
            match reader.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot read", file.display()));
                }
            }
            record.resize(u32::from_le_bytes(len) as usize, 0);
            reader
                .read_exact(&mut record)
                .with_context(|| format!("{}: cut short", file.display()))?;
            if let Some(admitted) = self.role.admit(reprise_model::decode(&record)?) {
                each(admitted);
            }
        }
        Ok(())
    }

    /// The recorded exchanges of part `part`, by id.
    fn load(
        &mut self,
        part: usize,
        damage: &mut Vec<String>,
    ) -> anyhow::Result<HashMap<Vec<u8>, Exchange>> {
        let mut map = HashMap::new();
        self.for_each(part, damage, |(key, exchange)| {
            map.insert(key, exchange);
        })?;
        Ok(map)
    }

    fn must_hold_replays(&self) -> anyhow::Result<()> {
        if self.count == 0 {
            bail!(
                "{}: holds no replayed exchange (expected the results of `reprise replay --out`)",
                self.path.display()
            );
        }
        Ok(())
    }
}

/// Parts to cut a recording into so that one part's responses fit in
/// `max_memory`. The recording is read once to weigh what comparing
/// holds of each exchange: a decoded exchange takes about three times its
/// encoded size in memory (headers as separate allocations, the map's
/// own entry), plus a fixed kilobyte.
fn parts_for(
    recorded: &Path,
    window: &ExchangeFilter,
    max_memory: usize,
    damage: &mut Vec<String>,
) -> anyhow::Result<usize> {
    let mut weight = 0u64;
    let mut source = crate::input::open(recorded, window)?;
    let mut intact = Intact::new(source.as_mut());
    for exchange in intact.by_ref() {
        if let Some((_, exchange)) = Role::Recording.admit(exchange?) {
            weight += reprise_model::encoded_len(&exchange) as u64 * 3 + 1024;
        }
    }
    damage.extend(intact.into_damage());
    let parts = weight.div_ceil(max_memory.max(1) as u64);
    Ok(usize::try_from(parts)
        .unwrap_or(MAX_PARTS)
        .clamp(1, MAX_PARTS))
}

/// Most parts a comparison is cut into.
const MAX_PARTS: usize = 1024;

/// Pairs the replayed exchanges with the recorded ones they replay.
///
/// One part of the recording (its inbound exchanges, responses only) is
/// held in memory at a time; the inputs are cut into parts by recorded id
/// on disk first when the recording would not fit in `max_memory`. With a
/// baseline, every part is compared twice: once to count the differences
/// per endpoint and path, once to judge each pair.
pub(crate) fn diff_with(
    recorded: &Path,
    window: &ExchangeFilter,
    replayed: &Path,
    noise: Noise<'_>,
    rules: &Rules,
    max_memory: usize,
) -> anyhow::Result<(DiffReport, Vec<String>)> {
    let mut damage = Vec::new();
    let parts = parts_for(recorded, window, max_memory, &mut damage)?;
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = scratch.path();
    let all = ExchangeFilter::new();
    let mut rec = Parted::split(recorded, Role::Recording, window, parts, dir, &mut damage)?;
    let mut cand = Parted::split(replayed, Role::Replays, &all, parts, dir, &mut damage)?;
    let mut base = match noise {
        Noise::Baseline(path, _) => Some(Parted::split(
            path,
            Role::Replays,
            &all,
            parts,
            dir,
            &mut damage,
        )?),
        Noise::None | Noise::Guess => None,
    };
    let mut model = match (noise, base.as_mut()) {
        (Noise::Baseline(_, thresholds), Some(base)) => {
            let mut model = NoiseModel::new(thresholds);
            for part in 0..parts {
                let map = rec.load(part, &mut damage)?;
                base.for_each(part, &mut damage, |(key, exchange)| {
                    if let Some(original) = map.get(&key) {
                        model.baseline(original, &compare(original, &exchange, rules));
                    }
                })?;
                cand.for_each(part, &mut damage, |(key, exchange)| {
                    if let Some(original) = map.get(&key) {
                        model.candidate(original, &compare(original, &exchange, rules));
                    }
                })?;
                model.forget_calls();
            }
            base.must_hold_replays()?;
            cand.must_hold_replays()?;
            model.decide();
            Some(model)
        }
        _ => None,
    };
    let guess = matches!(noise, Noise::Guess);
    let mut comparison = Comparison::default();
    if guess {
        comparison.noise_guessed();
    }
    for part in 0..parts {
        let map = rec.load(part, &mut damage)?;
        if let (Some(model), Some(base)) = (model.as_mut(), base.as_mut()) {
            base.for_each(part, &mut damage, |(key, exchange)| {
                if let Some(original) = map.get(&key) {
                    model.remember(original, &compare(original, &exchange, rules));
                }
            })?;
        }
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        cand.for_each(part, &mut damage, |(key, exchange)| match map.get(&key) {
            Some(original) => {
                seen.insert(key);
                let verdict = compare(original, &exchange, rules);
                match model.as_mut() {
                    Some(model) => {
                        let (verdict, noise) = model.judge(original, verdict);
                        comparison.add_judged(original, Some(&exchange), &verdict, &noise);
                    }
                    None if guess => {
                        let (verdict, noise) = reprise_compare::guess(verdict);
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
        for (id, original) in &map {
            if !seen.contains(id) {
                comparison.add(
                    original,
                    None,
                    &Verdict::NotCompared(NotCompared::MissingReplay),
                );
            }
        }
        if let Some(model) = model.as_mut() {
            model.forget_calls();
        }
    }
    cand.must_hold_replays()?;
    if let Some(model) = &model {
        comparison.suppressed(model.suppressed());
    }
    // An input read more than once reports its damage each time.
    let mut reported = HashSet::new();
    damage.retain(|line| reported.insert(line.clone()));
    Ok((comparison.finish(), damage))
}
