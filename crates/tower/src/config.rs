//! Switching by configuration: one build of a service records, mocks or
//! does nothing depending on [`Config::mode`], which
//! [`Config::from_env`] reads from `REPRISE_MODE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reprise_model::redact::{RedactionRules, Redactor, RuleKind};
use reprise_model::sample::Sampler;
use reprise_model::select::ExchangeFilter;
use reprise_model::{Role, Sink};
use reprise_record::{Metrics, Origin, Recorder, RecorderStats, RecorderThread, Rules};

use crate::downstream::{CaptureLayer, DownstreamLayer, Mode as Client, Outbound};
use crate::error::{Error, Setting};
use crate::mock::{Exhausted, MockOptions, MockReport, MockStore};
use crate::record::{Inbound, RecordLayer};

/// What the layers do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Nothing: calls pass through untouched.
    #[default]
    Off,
    /// Inbound calls and their downstream calls are recorded to the tape.
    Record,
    /// Downstream calls are answered from the tape.
    Mock,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::Record => "record",
            Mode::Mock => "mock",
        })
    }
}

/// A mode name that is none of `off`, `record` and `mock`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: use off, record or mock")]
pub struct ParseModeError(pub String);

impl std::str::FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(text: &str) -> Result<Self, ParseModeError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "off" => Ok(Mode::Off),
            "record" => Ok(Mode::Record),
            "mock" => Ok(Mode::Mock),
            _ => Err(ParseModeError(text.to_string())),
        }
    }
}

/// The layers' configuration: what [`Config::from_env`] reads, what
/// [`Builder`] makes. Its fields can be read and set one by one (start
/// from [`Config::default`]); values set that way are checked by
/// [`Reprise::start`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `REPRISE_MODE`: `off` (default), `record` or `mock`.
    pub mode: Mode,
    /// `REPRISE_TAPE`: the tape recorded to (appended to when it exists)
    /// or mocked from.
    pub tape: Option<PathBuf>,
    /// `REPRISE_SERVICE`: `source.service` of each exchange.
    pub service: String,
    /// `REPRISE_INSTANCE`: `source.instance` (default: the host name).
    pub instance: String,
    /// `REPRISE_SAMPLE`: the share of inbound calls recorded, 0.0–1.0,
    /// decided from the exchange id; a recorded call's downstream calls are
    /// recorded with it.
    pub sample: f64,
    /// `REPRISE_MATCH`: `;`-separated `FIELD=VALUE` terms, as `reprise
    /// record --match` (applied to inbound calls).
    pub matches: Vec<String>,
    /// `REPRISE_MAX_RECORD_RATE`: inbound exchanges recorded per second.
    pub max_record_rate: Option<u32>,
    /// `REPRISE_MAX_BODY`: bytes of each body kept (default 1 MiB).
    pub max_body: usize,
    /// `REPRISE_QUEUE`: exchanges waiting for the writer before drops.
    pub queue: usize,
    /// `REPRISE_REDACT_HEADERS`: comma-separated header names redacted
    /// besides the defaults.
    pub redact_headers: Vec<String>,
    /// `REPRISE_REDACT_JSON`: comma-separated JSON paths redacted in bodies.
    pub redact_json: Vec<String>,
    /// `REPRISE_REDACT_QUERY`: comma-separated query parameter names
    /// redacted besides the defaults.
    pub redact_query: Vec<String>,
    /// `REPRISE_REDACT_FORM`: comma-separated form field names (urlencoded
    /// and multipart) redacted besides the defaults.
    pub redact_form: Vec<String>,
    /// `REPRISE_NO_DEFAULT_REDACTION=1`: keep Authorization, Cookie, ...
    pub default_redaction: bool,
    /// Mock mode: `REPRISE_MOCK_EXHAUSTED` (`error`, `repeat-last`,
    /// `cycle`), `REPRISE_MOCK_GLOBAL=1`, `REPRISE_MOCK_IGNORE_AUTHORITY=1`,
    /// `REPRISE_MOCK_TIMING=0`, `REPRISE_MOCK_SHARED` (`;`-separated
    /// `FIELD=VALUE` terms, as `REPRISE_MATCH`, picking the recorded
    /// downstream calls that answer in any scope).
    pub mock: MockOptions,
    /// Read from the environment: errors name the variables.
    from_env: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Off,
            tape: None,
            service: "service".into(),
            instance: String::new(),
            sample: 1.0,
            matches: Vec::new(),
            max_record_rate: None,
            max_body: 1 << 20,
            queue: 8192,
            redact_headers: Vec::new(),
            redact_json: Vec::new(),
            redact_query: Vec::new(),
            redact_form: Vec::new(),
            default_redaction: true,
            mock: MockOptions::default(),
            from_env: false,
        }
    }
}

/// Names of one setting as a builder method, an environment variable and
/// a [`Config`] field.
#[derive(Clone, Copy)]
struct Name {
    method: &'static str,
    var: &'static str,
    field: &'static str,
}

const MODE: Name = name("mode", "REPRISE_MODE", "mode");
const SAMPLE: Name = name("sample", "REPRISE_SAMPLE", "sample");
const MATCH: Name = name("matching", "REPRISE_MATCH", "matches");
const MAX_RECORD_RATE: Name = name(
    "max_record_rate",
    "REPRISE_MAX_RECORD_RATE",
    "max_record_rate",
);
const MAX_BODY: Name = name("max_body", "REPRISE_MAX_BODY", "max_body");
const QUEUE: Name = name("queue", "REPRISE_QUEUE", "queue");
const REDACT_HEADERS: Name = name("redact_header", "REPRISE_REDACT_HEADERS", "redact_headers");
const REDACT_JSON: Name = name("redact_json", "REPRISE_REDACT_JSON", "redact_json");
const REDACT_QUERY: Name = name("redact_query", "REPRISE_REDACT_QUERY", "redact_query");
const REDACT_FORM: Name = name("redact_form", "REPRISE_REDACT_FORM", "redact_form");
const NO_DEFAULT_REDACTION: Name = name(
    "default_redaction",
    "REPRISE_NO_DEFAULT_REDACTION",
    "default_redaction",
);
const MOCK_EXHAUSTED: Name = name("mock_exhausted", "REPRISE_MOCK_EXHAUSTED", "mock.exhausted");
const MOCK_SHARED: Name = name("mock_shared", "REPRISE_MOCK_SHARED", "mock.shared");
const MOCK_GLOBAL: Name = name("mock_global", "REPRISE_MOCK_GLOBAL", "mock.global");
const MOCK_IGNORE_AUTHORITY: Name = name(
    "mock_ignore_authority",
    "REPRISE_MOCK_IGNORE_AUTHORITY",
    "mock.ignore_authority",
);
const MOCK_TIMING: Name = name("mock_timing", "REPRISE_MOCK_TIMING", "mock.timing");

const fn name(method: &'static str, var: &'static str, field: &'static str) -> Name {
    Name { method, var, field }
}

/// Where the values being checked came from.
#[derive(Clone, Copy)]
enum Given {
    Builder,
    Env,
    Fields,
}

impl Given {
    fn setting(self, name: Name) -> Setting {
        match self {
            Given::Builder => Setting::Method(name.method),
            Given::Env => Setting::Var(name.var),
            Given::Fields => Setting::Field(name.field),
        }
    }

    fn bad(self, name: Name, value: impl Into<String>, expected: impl ToString) -> Error {
        Error::bad(self.setting(name), value, expected)
    }
}

fn parse<T: std::str::FromStr>(name: Name, value: &str, expected: &str) -> Result<T, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| Given::Env.bad(name, value, expected))
}

fn flag(name: Name, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Given::Env.bad(name, value, "use 1 or 0")),
    }
}

fn list(value: &str, separator: char) -> Vec<String> {
    value
        .split(separator)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The share of calls recorded, checked.
fn sampler(from: Given, rate: f64) -> Result<Sampler, Error> {
    Sampler::new(rate).map_err(|_| {
        from.bad(
            SAMPLE,
            rate.to_string(),
            "expected a fraction between 0 and 1",
        )
    })
}

/// `filter` with one more `FIELD=VALUE` term of `name`.
fn add_term(
    from: Given,
    name: Name,
    filter: ExchangeFilter,
    term: &str,
) -> Result<ExchangeFilter, Error> {
    filter.add_match(term).map_err(|e| from.bad(name, term, e))
}

/// Every term of `terms` as one filter.
fn terms_filter(from: Given, name: Name, terms: &[String]) -> Result<ExchangeFilter, Error> {
    terms
        .iter()
        .try_fold(ExchangeFilter::new(), |filter, term| {
            add_term(from, name, filter, term)
        })
}

/// The redaction setting a rule of `kind` came from.
fn redaction_name(kind: RuleKind) -> Name {
    match kind {
        RuleKind::Header => REDACT_HEADERS,
        RuleKind::Json => REDACT_JSON,
        RuleKind::Query => REDACT_QUERY,
        RuleKind::Form => REDACT_FORM,
    }
}

impl Config {
    /// The configuration the `REPRISE_*` environment variables give.
    pub fn from_env() -> Result<Config, Error> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// The configuration the variables `var` looks up give.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let mut config = Config {
            from_env: true,
            ..Config::default()
        };
        if let Some(v) = var(MODE.var) {
            config.mode = v
                .parse()
                .map_err(|_| Given::Env.bad(MODE, &v, "use off, record or mock"))?;
        }
        config.tape = var("REPRISE_TAPE")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from);
        if let Some(v) = var("REPRISE_SERVICE") {
            config.service = v;
        }
        config.instance = var("REPRISE_INSTANCE")
            .or_else(|| var("HOSTNAME"))
            .unwrap_or_default();
        if let Some(v) = var(SAMPLE.var) {
            config.sample = parse(SAMPLE, &v, "expected a fraction between 0 and 1")?;
            sampler(Given::Env, config.sample)
                .map_err(|_| Given::Env.bad(SAMPLE, &v, "expected a fraction between 0 and 1"))?;
        }
        if let Some(v) = var(MATCH.var) {
            config.matches = list(&v, ';');
            terms_filter(Given::Env, MATCH, &config.matches)?;
        }
        if let Some(v) = var(MAX_RECORD_RATE.var) {
            config.max_record_rate = Some(parse(MAX_RECORD_RATE, &v, "expected calls per second")?);
        }
        if let Some(v) = var(MAX_BODY.var) {
            config.max_body = reprise_model::size::parse_size(&v).map_err(|_| {
                Given::Env.bad(MAX_BODY, &v, "expected a size such as 65536, 64KiB or 1MiB")
            })?;
        }
        if let Some(v) = var(QUEUE.var) {
            config.queue = parse(QUEUE, &v, "expected a number of exchanges")?;
        }
        if let Some(v) = var(REDACT_HEADERS.var) {
            config.redact_headers = list(&v, ',');
        }
        if let Some(v) = var(REDACT_JSON.var) {
            config.redact_json = list(&v, ',');
        }
        if let Some(v) = var(REDACT_QUERY.var) {
            config.redact_query = list(&v, ',');
        }
        if let Some(v) = var(REDACT_FORM.var) {
            config.redact_form = list(&v, ',');
        }
        if let Some(v) = var(NO_DEFAULT_REDACTION.var) {
            config.default_redaction = !flag(NO_DEFAULT_REDACTION, &v)?;
        }
        config.redactor(Given::Env)?;
        if let Some(v) = var(MOCK_EXHAUSTED.var) {
            config.mock.exhausted = v.trim().parse().map_err(|_| {
                Given::Env.bad(MOCK_EXHAUSTED, &v, "use error, repeat-last or cycle")
            })?;
        }
        if let Some(v) = var(MOCK_GLOBAL.var) {
            config.mock.global = flag(MOCK_GLOBAL, &v)?;
        }
        if let Some(v) = var(MOCK_IGNORE_AUTHORITY.var) {
            config.mock.ignore_authority = flag(MOCK_IGNORE_AUTHORITY, &v)?;
        }
        if let Some(v) = var(MOCK_TIMING.var) {
            config.mock.timing = flag(MOCK_TIMING, &v)?;
        }
        if let Some(v) = var(MOCK_SHARED.var) {
            let filter = terms_filter(Given::Env, MOCK_SHARED, &list(&v, ';'))?;
            config.mock.shared = (!filter.is_empty()).then_some(filter);
        }
        config.mock.max_body = config.max_body;
        Ok(config)
    }

    /// Where this configuration's values came from, for errors.
    fn from(&self) -> Given {
        if self.from_env {
            Given::Env
        } else {
            Given::Fields
        }
    }

    fn rules(&self) -> RedactionRules {
        RedactionRules {
            defaults: self.default_redaction,
            headers: self.redact_headers.clone(),
            json: self.redact_json.clone(),
            query: self.redact_query.clone(),
            form: self.redact_form.clone(),
        }
    }

    fn redactor(&self, from: Given) -> Result<Redactor, Error> {
        self.rules()
            .redactor()
            .map_err(|e| from.bad(redaction_name(e.kind), e.value, e.reason))
    }

    fn filter(&self, from: Given) -> Result<ExchangeFilter, Error> {
        terms_filter(from, MATCH, &self.matches)
    }
}

/// Builds [`Reprise`] in code, setting by setting, as tower-http's layers
/// are built: `Reprise::builder().mode(Mode::Record).tape("calls.tape")
/// .sample(0.1).build()`. Every setting of [`Config`] has a method; a value
/// that cannot be used is reported by [`build`](Builder::build) with the
/// method's name (`sample(1.5): expected a fraction between 0 and 1`).
#[derive(Debug, Default)]
#[must_use]
pub struct Builder {
    config: Config,
    /// The first bad value given.
    error: Option<Error>,
}

impl Builder {
    /// Keeps the first error.
    fn check(mut self, result: Result<(), Error>) -> Self {
        if let Err(error) = result
            && self.error.is_none()
        {
            self.error = Some(error);
        }
        self
    }

    /// What the layers do (default: [`Mode::Off`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// The tape recorded to (appended to when it exists) or mocked from.
    pub fn tape(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tape = Some(path.into());
        self
    }

    /// `source.service` of each exchange (default: `service`).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.config.service = name.into();
        self
    }

    /// `source.instance` of each exchange (default: empty).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.config.instance = name.into();
        self
    }

    /// The share of inbound calls recorded, from 0.0 to 1.0 (default 1.0).
    pub fn sample(mut self, rate: f64) -> Self {
        self.config.sample = rate;
        let checked = sampler(Given::Builder, rate).map(|_| ());
        self.check(checked)
    }

    /// Records only inbound calls matching the `FIELD=VALUE` term, as
    /// `reprise record --match`; each call adds a term.
    pub fn matching(mut self, term: impl Into<String>) -> Self {
        let term = term.into();
        let checked = add_term(Given::Builder, MATCH, ExchangeFilter::new(), &term).map(|_| ());
        self.config.matches.push(term);
        self.check(checked)
    }

    /// Inbound exchanges recorded per second, at most.
    pub fn max_record_rate(mut self, per_second: u32) -> Self {
        self.config.max_record_rate = Some(per_second);
        self
    }

    /// Bytes of each body kept, and read for a mock key (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.config.max_body = bytes;
        self.config.mock.max_body = bytes;
        self
    }

    /// Exchanges waiting for the writer before new ones are dropped
    /// (default 8192).
    pub fn queue(mut self, exchanges: usize) -> Self {
        self.config.queue = exchanges;
        self
    }

    /// Checks one redaction rule of `kind` on its own.
    fn redaction(self, kind: RuleKind, value: &str) -> Self {
        let mut rules = RedactionRules::default();
        let list = match kind {
            RuleKind::Header => &mut rules.headers,
            RuleKind::Json => &mut rules.json,
            RuleKind::Query => &mut rules.query,
            RuleKind::Form => &mut rules.form,
        };
        list.push(value.to_string());
        let checked = rules
            .redactor()
            .map(|_| ())
            .map_err(|e| Given::Builder.bad(redaction_name(e.kind), e.value, e.reason));
        self.check(checked)
    }

    /// Redacts one more header field, besides the default ones.
    pub fn redact_header(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.config.redact_headers.push(name.clone());
        self.redaction(RuleKind::Header, &name)
    }

    /// Redacts one JSON path in JSON bodies (`$.card.number`, `$..password`).
    pub fn redact_json(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.config.redact_json.push(path.clone());
        self.redaction(RuleKind::Json, &path)
    }

    /// Redacts one more query parameter, besides the default ones.
    pub fn redact_query(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.config.redact_query.push(name.clone());
        self.redaction(RuleKind::Query, &name)
    }

    /// Redacts one more form field (urlencoded and multipart), besides the
    /// default ones.
    pub fn redact_form(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.config.redact_form.push(name.clone());
        self.redaction(RuleKind::Form, &name)
    }

    /// Whether the default header fields, query parameters and form fields
    /// are redacted (default: yes).
    pub fn default_redaction(mut self, on: bool) -> Self {
        self.config.default_redaction = on;
        self
    }

    /// Mock mode: what answers a call that outnumbers its recordings.
    pub fn mock_exhausted(mut self, policy: Exhausted) -> Self {
        self.config.mock.exhausted = policy;
        self
    }

    /// Mock mode: recorded downstream calls matching the `FIELD=VALUE` term
    /// answer in any scope, any number of times (auth tokens, handshakes);
    /// each call adds a term.
    pub fn mock_shared(mut self, term: impl Into<String>) -> Self {
        let term = term.into();
        let shared = self.config.mock.shared.take().unwrap_or_default();
        match add_term(Given::Builder, MOCK_SHARED, shared, &term) {
            Ok(filter) => {
                self.config.mock.shared = Some(filter);
                self
            }
            Err(error) => self.check(Err(error)),
        }
    }

    /// Mock mode: a call with no replay scope is served from all recorded
    /// calls (default: no).
    pub fn mock_global(mut self, on: bool) -> Self {
        self.config.mock.global = on;
        self
    }

    /// Mock mode: the authority is left out of the key (default: no).
    pub fn mock_ignore_authority(mut self, on: bool) -> Self {
        self.config.mock.ignore_authority = on;
        self
    }

    /// Mock mode: streamed messages are released at their recorded gaps
    /// (default: yes).
    pub fn mock_timing(mut self, on: bool) -> Self {
        self.config.mock.timing = on;
        self
    }

    /// The configuration set, or the first bad value.
    pub fn config(self) -> Result<Config, Error> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.config),
        }
    }

    /// Sets the layers up as [`Reprise::start`] does.
    pub fn build(self) -> Result<Reprise, Error> {
        Reprise::start_from(self.config()?, Given::Builder)
    }

    /// Record mode into `sink`, as [`Reprise::record_to`] does.
    pub fn record_to(self, sink: Box<dyn Sink>) -> Result<Reprise, Error> {
        Reprise::record_from(self.config()?, sink, Given::Builder)
    }

    /// Mock mode from `store`, as [`Reprise::mock_from`] does.
    pub fn mock_from(self, store: MockStore) -> Result<Reprise, Error> {
        Reprise::mock_from(self.config()?, store)
    }
}

/// The layers of one service, set up from a [`Config`]: hand
/// [`inbound`](Reprise::inbound) to the server and
/// [`downstream`](Reprise::downstream) to each client; call
/// [`shutdown`](Reprise::shutdown) when the server has stopped, so the tape
/// is complete.
#[derive(Debug)]
pub struct Reprise {
    mode: Mode,
    config: Config,
    sampler: Sampler,
    metrics: Arc<Metrics>,
    recorder: Option<(Recorder, RecorderThread)>,
    inbound: Arc<Inbound>,
    mocks: Option<Arc<MockStore>>,
}

impl Reprise {
    /// Sets the layers up in code, setting by setting (see [`Builder`]).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The layers as the `REPRISE_*` environment variables say.
    pub fn from_env() -> Result<Reprise, Error> {
        Reprise::start(Config::from_env()?)
    }

    /// Layers that record nothing and mock nothing.
    pub fn off() -> Reprise {
        let config = Config::default();
        let metrics = Arc::new(Metrics::new());
        Reprise {
            mode: Mode::Off,
            sampler: Sampler::all(),
            inbound: Arc::new(Inbound {
                recorder: None,
                scoped: false,
                origin: Arc::new(origin(&config, Role::Inbound, "")),
                sampler: Sampler::all(),
                metrics: Arc::clone(&metrics),
                mocks: None,
            }),
            config,
            metrics,
            recorder: None,
            mocks: None,
        }
    }

    /// Sets the layers up: in record mode opens the tape (appending) and
    /// starts the writer thread; in mock mode reads the tape's downstream
    /// calls.
    pub fn start(config: Config) -> Result<Reprise, Error> {
        let given = config.from();
        Reprise::start_from(config, given)
    }

    fn start_from(config: Config, given: Given) -> Result<Reprise, Error> {
        let tape = |verb: &'static str| {
            config.tape.clone().ok_or(Error::NoTape {
                mode: config.mode,
                verb,
                from_env: config.from_env,
            })
        };
        // Every setting is checked in every mode: one that is wrong is
        // found when it is deployed, not when the mode is switched.
        let sampler = Reprise::check(&config, given)?;
        match config.mode {
            Mode::Record => {
                let path = tape("write")?;
                if is_kafka(&path) {
                    let sink = kafka_sink(&path)?;
                    return Reprise::record_from(config, sink, given);
                }
                // The recorder's thread writes it: no writer thread of its own.
                let options = reprise_tape::WriterOptions {
                    inline: true,
                    ..reprise_tape::WriterOptions::default()
                };
                let (writer, _) = reprise_tape::TapeWriter::open(path, options)
                    .map_err(|source| Error::TapeOpen { source })?;
                Reprise::record_from(config, Box::new(writer), given)
            }
            Mode::Mock => {
                let path = tape("answer from")?;
                if is_kafka(&path) {
                    return Err(Error::KafkaTape {
                        tape: path.display().to_string(),
                        why: "mock mode answers from a tape: copy the topic to one first (`reprise copy`)",
                    });
                }
                let mut options = config.mock.clone();
                options.max_body = config.max_body;
                options.redactor = config.redactor(given)?;
                let store = MockStore::from_tape(&path, options).map_err(|e| Error::MockLoad {
                    path: path.clone(),
                    source: Box::new(e),
                })?;
                Ok(Reprise::build(
                    config,
                    sampler,
                    None,
                    Some(Arc::new(store)),
                    None,
                ))
            }
            _ => Ok(Reprise::build(config, sampler, None, None, None)),
        }
    }

    /// Record mode into `sink` (a tape, Kafka, memory) instead of
    /// `config.tape`; `config.mode` is not looked at.
    pub fn record_to(config: Config, sink: Box<dyn Sink>) -> Result<Reprise, Error> {
        let given = config.from();
        Reprise::record_from(config, sink, given)
    }

    fn record_from(
        mut config: Config,
        sink: Box<dyn Sink>,
        given: Given,
    ) -> Result<Reprise, Error> {
        config.mode = Mode::Record;
        let sampler = Reprise::check(&config, given)?;
        let rules = Rules {
            filter: config.filter(given)?,
            max_rate: config.max_record_rate,
            redactor: config.redactor(given)?,
            sample_rate: config.sample,
        };
        let metrics = Arc::new(Metrics::new());
        // Said at once: the recording cannot be written (a full disk), and
        // when it can again; `Metrics::degraded` says it meanwhile.
        metrics.on_health(|event| match event {
            reprise_record::HealthEvent::Degraded { .. } => tracing::warn!("reprise: {event}"),
            reprise_record::HealthEvent::Resumed { .. } => tracing::info!("reprise: {event}"),
        });
        let started = Recorder::start(sink, rules, config.queue, Arc::clone(&metrics))
            .map_err(|source| Error::RecorderStart { source })?;
        Ok(Reprise::build(
            config,
            sampler,
            Some(started),
            None,
            Some(metrics),
        ))
    }

    /// Mock mode from `store` instead of `config.tape`.
    pub fn mock_from(mut config: Config, store: MockStore) -> Result<Reprise, Error> {
        config.mode = Mode::Mock;
        let sampler = Reprise::check(&config, config.from())?;
        Ok(Reprise::build(
            config,
            sampler,
            None,
            Some(Arc::new(store)),
            None,
        ))
    }

    /// Checks every setting; gives the sampler.
    fn check(config: &Config, given: Given) -> Result<Sampler, Error> {
        let sampler = sampler(given, config.sample)?;
        config.filter(given)?;
        config.redactor(given)?;
        Ok(sampler)
    }

    fn build(
        config: Config,
        sampler: Sampler,
        recorder: Option<(Recorder, RecorderThread)>,
        mocks: Option<Arc<MockStore>>,
        metrics: Option<Arc<Metrics>>,
    ) -> Reprise {
        let metrics = metrics.unwrap_or_else(|| Arc::new(Metrics::new()));
        let inbound = Arc::new(Inbound {
            recorder: recorder.as_ref().map(|(r, _)| r.clone()),
            scoped: config.mode != Mode::Off,
            origin: Arc::new(origin(&config, Role::Inbound, "")),
            sampler,
            metrics: Arc::clone(&metrics),
            mocks: mocks.clone(),
        });
        Reprise {
            mode: config.mode,
            config,
            sampler,
            metrics,
            recorder,
            inbound,
            mocks,
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The server-side layer: records inbound calls (record mode) and
    /// scopes each one for its downstream calls (every mode).
    pub fn inbound(&self) -> RecordLayer {
        RecordLayer::new(Arc::clone(&self.inbound))
    }

    /// The client-side layer for calls to `authority` (`host:port`, the
    /// downstream's name as recorded and matched when a request's target
    /// names none, as with a tonic client): captures them (record mode),
    /// answers them from the tape (mock mode), or passes them through.
    pub fn downstream(&self, authority: &str) -> DownstreamLayer {
        if let Some(capture) = self.capture(authority) {
            return capture.into();
        }
        match &self.mocks {
            Some(store) => DownstreamLayer::new(Client::Mock {
                store: Arc::clone(store),
                authority: authority.to_string(),
            }),
            None => DownstreamLayer::new(Client::Off),
        }
    }

    /// In record mode, the capturing layer for calls to `authority`.
    pub fn capture(&self, authority: &str) -> Option<CaptureLayer> {
        let (recorder, _) = self.recorder.as_ref()?;
        Some(CaptureLayer::from_outbound(Outbound {
            recorder: recorder.clone(),
            origin: Arc::new(origin(&self.config, Role::Downstream, authority)),
            sampler: self.sampler,
            metrics: Arc::clone(&self.metrics),
        }))
    }

    /// The recorder's counters (also in Prometheus text with
    /// `metrics().render()`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// In mock mode, what has been served and missed.
    pub fn mock_report(&self) -> Option<MockReport> {
        self.mocks.as_ref().map(|m| m.report())
    }

    /// Stores what is queued, closes the tape and gives the final counts.
    /// Waits at most `deadline` for a stalled sink. Call it once the server
    /// has stopped (calls finishing later are counted as dropped). The
    /// writer thread is joined on tokio's blocking pool, so the runtime's
    /// workers are never held.
    pub async fn shutdown(self, deadline: Duration) -> Result<RecorderStats, Error> {
        tokio::task::spawn_blocking(move || self.shutdown_blocking(deadline))
            .await
            // The blocking task only fails by panicking (or with the
            // runtime shutting down under it): the close did not finish.
            .map_err(|_| Error::RecorderClose {
                source: reprise_record::RecorderError::Panicked,
            })?
    }

    /// [`shutdown`](Reprise::shutdown) for code outside any async runtime
    /// (a `main` without one, a benchmark): blocks the calling thread
    /// until the writer thread has finished.
    pub fn shutdown_blocking(self, deadline: Duration) -> Result<RecorderStats, Error> {
        if let Some((recorder, thread)) = self.recorder {
            thread
                .close(&recorder, deadline)
                .map_err(|source| Error::RecorderClose { source })?;
        }
        Ok(self.metrics.snapshot())
    }
}

fn origin(config: &Config, role: Role, authority: &str) -> Origin {
    Origin {
        service: config.service.clone(),
        instance: config.instance.clone(),
        recorder: "tower",
        role,
        listener: String::new(),
        route: String::new(),
        scheme: "http",
        authority: authority.to_string(),
        server_addr: String::new(),
        max_body: config.max_body,
    }
}

/// Whether `path` names a Kafka topic (`kafka://...`) rather than a tape.
fn is_kafka(path: &std::path::Path) -> bool {
    path.to_str().is_some_and(|p| {
        p.get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("kafka://"))
    })
}

/// The topic `path` names, opened for recording with the librdkafka
/// settings of the properties file `REPRISE_KAFKA_CONFIG` names, if any.
#[cfg(feature = "kafka")]
fn kafka_sink(path: &std::path::Path) -> Result<Box<dyn Sink>, Error> {
    let failed = |source| Error::Kafka { source };
    let address =
        reprise_kafka::KafkaAddress::parse(&path.display().to_string()).map_err(failed)?;
    let mut settings = reprise_kafka::KafkaOptions::new();
    if let Some(file) = std::env::var_os("REPRISE_KAFKA_CONFIG") {
        let name = format!("REPRISE_KAFKA_CONFIG {}", file.to_string_lossy());
        let text = std::fs::read_to_string(&file).map_err(|e| Error::KafkaTape {
            tape: name.clone(),
            why: if e.kind() == std::io::ErrorKind::NotFound {
                "no such file"
            } else {
                "cannot be read"
            },
        })?;
        settings.add_properties(&text, &name).map_err(failed)?;
    }
    let sink =
        reprise_kafka::KafkaSink::open(&address, &settings, &Default::default()).map_err(failed)?;
    Ok(Box::new(sink))
}

/// Without the `kafka` feature, a topic is refused by name.
#[cfg(not(feature = "kafka"))]
fn kafka_sink(path: &std::path::Path) -> Result<Box<dyn Sink>, Error> {
    Err(Error::KafkaTape {
        tape: path.display().to_string(),
        why: "a Kafka topic: build reprise-tower with its `kafka` feature to record to one",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn environment_sets_every_field() -> Result<(), Error> {
        let config = Config::from_vars(vars(&[
            ("REPRISE_MODE", "Record"),
            ("REPRISE_TAPE", "/tmp/x.tape"),
            ("REPRISE_SERVICE", "shop"),
            ("REPRISE_SAMPLE", "0.25"),
            ("REPRISE_MATCH", "method=GET; path=/api/*"),
            ("REPRISE_MAX_BODY", "4KiB"),
            ("REPRISE_REDACT_HEADERS", "x-api-key, x-token"),
            ("REPRISE_REDACT_JSON", "$.card.number"),
            ("REPRISE_REDACT_QUERY", "session_id"),
            ("REPRISE_REDACT_FORM", "pin, otp"),
            ("REPRISE_MOCK_EXHAUSTED", "cycle"),
            ("REPRISE_MOCK_GLOBAL", "1"),
            ("REPRISE_MOCK_TIMING", "0"),
            ("REPRISE_MOCK_SHARED", "path=/oauth/*; method=POST"),
        ]))?;
        assert_eq!(config.mode, Mode::Record);
        assert_eq!(config.tape, Some(PathBuf::from("/tmp/x.tape")));
        assert_eq!((config.service.as_str(), config.sample), ("shop", 0.25));
        assert_eq!(config.matches, ["method=GET", "path=/api/*"]);
        assert_eq!((config.max_body, config.mock.max_body), (4096, 4096));
        assert_eq!(config.redact_headers, ["x-api-key", "x-token"]);
        assert_eq!(config.redact_query, ["session_id"]);
        assert_eq!(config.redact_form, ["pin", "otp"]);
        assert_eq!(config.mock.exhausted, crate::Exhausted::Cycle);
        assert!(config.mock.global && !config.mock.timing);
        let shared = config.mock.shared.as_ref().expect("a shared filter");
        let token = |method: &str, path: &str| reprise_model::Exchange {
            request: Some(reprise_model::Request {
                method: method.into(),
                path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(shared.matches(&token("POST", "/oauth/token")));
        assert!(!shared.matches(&token("GET", "/oauth/token")));
        assert!(!shared.matches(&token("POST", "/stock")));
        config.filter(Given::Env)?;
        config.redactor(Given::Env)?;
        Ok(())
    }

    #[test]
    fn builder_sets_what_the_environment_sets() -> Result<(), Error> {
        let built = Reprise::builder()
            .mode(Mode::Record)
            .tape("/tmp/x.tape")
            .service("shop")
            .instance("shop-1")
            .sample(0.25)
            .matching("method=GET")
            .matching("path=/api/*")
            .max_record_rate(50)
            .max_body(4096)
            .queue(16)
            .redact_header("x-api-key")
            .redact_json("$.card.number")
            .redact_query("session_id")
            .redact_form("pin")
            .default_redaction(false)
            .mock_exhausted(crate::Exhausted::Cycle)
            .mock_shared("path=/oauth/*")
            .mock_global(true)
            .mock_ignore_authority(true)
            .mock_timing(false)
            .config()?;
        let read = Config::from_vars(vars(&[
            ("REPRISE_MODE", "record"),
            ("REPRISE_TAPE", "/tmp/x.tape"),
            ("REPRISE_SERVICE", "shop"),
            ("REPRISE_INSTANCE", "shop-1"),
            ("REPRISE_SAMPLE", "0.25"),
            ("REPRISE_MATCH", "method=GET; path=/api/*"),
            ("REPRISE_MAX_RECORD_RATE", "50"),
            ("REPRISE_MAX_BODY", "4KiB"),
            ("REPRISE_QUEUE", "16"),
            ("REPRISE_REDACT_HEADERS", "x-api-key"),
            ("REPRISE_REDACT_JSON", "$.card.number"),
            ("REPRISE_REDACT_QUERY", "session_id"),
            ("REPRISE_REDACT_FORM", "pin"),
            ("REPRISE_NO_DEFAULT_REDACTION", "1"),
            ("REPRISE_MOCK_EXHAUSTED", "cycle"),
            ("REPRISE_MOCK_SHARED", "path=/oauth/*"),
            ("REPRISE_MOCK_GLOBAL", "1"),
            ("REPRISE_MOCK_IGNORE_AUTHORITY", "1"),
            ("REPRISE_MOCK_TIMING", "0"),
        ]))?;
        // Everything but where it came from is the same.
        let shown = |config: &Config| {
            let mut config = config.clone();
            config.from_env = false;
            format!("{config:?}")
        };
        assert_eq!(shown(&built), shown(&read));
        Ok(())
    }

    #[test]
    fn builder_errors_name_the_method() {
        let cases: Vec<(Builder, &str)> = vec![
            (
                Reprise::builder().sample(1.5),
                "sample(1.5): expected a fraction between 0 and 1",
            ),
            (Reprise::builder().sample(f64::NAN), "sample(NaN): "),
            (
                Reprise::builder().matching("colour=red"),
                "matching(colour=red): ",
            ),
            (
                Reprise::builder().redact_json("card.number"),
                "redact_json(card.number): ",
            ),
            (
                Reprise::builder().redact_header("bad header"),
                "redact_header(bad header): ",
            ),
            (Reprise::builder().redact_query(""), "redact_query(): "),
            (Reprise::builder().redact_form(""), "redact_form(): "),
            (
                Reprise::builder().mock_shared("colour=red"),
                "mock_shared(colour=red): ",
            ),
            (
                Reprise::builder().mode(Mode::Record),
                "record mode needs tape(path), the tape to write",
            ),
            (
                Reprise::builder().mode(Mode::Mock),
                "mock mode needs tape(path), the tape to answer from",
            ),
        ];
        for (builder, says) in cases {
            let error = builder.build().err();
            let text = error.as_ref().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.starts_with(says), "{says}: {text}");
            if says.contains('(') && !says.contains("mode needs") {
                assert!(
                    matches!(
                        error,
                        Some(Error::BadSetting {
                            setting: Setting::Method(_),
                            ..
                        })
                    ),
                    "{error:?}"
                );
            }
        }
        // The first bad value is the one reported.
        let error = Reprise::builder()
            .sample(2.0)
            .matching("colour=red")
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("sample(2): "), "{error}");
    }

    #[tokio::test]
    async fn shutdown_waits_without_blocking_the_runtime() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let tape = dir.path().join("async.tape");
        let reprise = Reprise::builder().mode(Mode::Record).tape(&tape).build()?;
        let stats = reprise.shutdown(Duration::from_secs(5)).await?;
        assert_eq!(stats.recorded, 0);
        // The tape is closed: it mocks without error.
        let mocks = Reprise::builder().mode(Mode::Mock).tape(&tape).build()?;
        assert_eq!(mocks.mock_report().map(|r| r.served), Some(0));
        Ok(())
    }

    #[test]
    fn bad_values_are_named() {
        for (name, value, says) in [
            ("REPRISE_MODE", "replay", "use off, record or mock"),
            ("REPRISE_SAMPLE", "lots", "REPRISE_SAMPLE=\"lots\""),
            ("REPRISE_MAX_BODY", "-1", "REPRISE_MAX_BODY"),
            ("REPRISE_MOCK_EXHAUSTED", "twice", "repeat-last"),
            ("REPRISE_MOCK_GLOBAL", "maybe", "use 1 or 0"),
            (
                "REPRISE_MOCK_SHARED",
                "colour=red",
                "REPRISE_MOCK_SHARED=\"colour=red\": ",
            ),
        ] {
            let error = Config::from_vars(vars(&[(name, value)]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(says), "{name}={value}: {error}");
        }
        for (name, value) in [
            ("REPRISE_MATCH", "colour=red"),
            ("REPRISE_REDACT_JSON", "card.number"),
        ] {
            let error = Config::from_vars(vars(&[(name, value)]))
                .and_then(Reprise::start)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.starts_with(name), "{name}={value}: {error}");
        }
        for mode in ["record", "mock"] {
            let error = Config::from_vars(vars(&[("REPRISE_MODE", mode)]))
                .and_then(Reprise::start)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("needs REPRISE_TAPE"), "{error}");
        }
        let error = Config::from_vars(vars(&[("REPRISE_SAMPLE", "1.5")]))
            .and_then(Reprise::start)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("REPRISE_SAMPLE"), "{error}");
    }

    fn start_error(mode: &str, tape: &std::path::Path) -> String {
        let tape = tape.to_string_lossy();
        Config::from_vars(vars(&[("REPRISE_MODE", mode), ("REPRISE_TAPE", &tape)]))
            .and_then(Reprise::start)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn tapes_that_cannot_be_used_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.tape");
        let error = start_error("mock", &missing);
        assert!(error.contains("missing.tape"), "{error}");
        let error = start_error("record", dir.path());
        assert!(error.contains("directory"), "{error}");
        let garbage = dir.path().join("garbage.tape");
        std::fs::write(&garbage, b"this is not a tape at all, just text")?;
        let error = start_error("mock", &garbage);
        assert!(error.contains("garbage.tape"), "{error}");
        // A recording made by a run of record mode mocks without error.
        let made = dir.path().join("made.tape");
        let reprise = Config::from_vars(vars(&[
            ("REPRISE_MODE", "record"),
            ("REPRISE_TAPE", &made.to_string_lossy()),
        ]))
        .and_then(Reprise::start)?;
        reprise.shutdown_blocking(std::time::Duration::from_secs(5))?;
        let mocks = Config::from_vars(vars(&[
            ("REPRISE_MODE", "mock"),
            ("REPRISE_TAPE", &made.to_string_lossy()),
        ]))
        .and_then(Reprise::start)?;
        assert_eq!(mocks.mock_report().map(|r| r.served), Some(0));
        Ok(())
    }
}
