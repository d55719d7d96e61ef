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
use crate::error::TowerError;
use crate::mock::{MockOptions, MockReport, MockStore};
use crate::record::{Inbound, RecordLayer};

/// What the layers do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: calls pass through untouched.
    #[default]
    Off,
    /// Inbound calls and their downstream calls are recorded to the tape.
    Record,
    /// Downstream calls are answered from the tape.
    Mock,
}

impl std::str::FromStr for Mode {
    type Err = TowerError;
    fn from_str(text: &str) -> Result<Self, TowerError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "off" => Ok(Mode::Off),
            "record" => Ok(Mode::Record),
            "mock" => Ok(Mode::Mock),
            other => Err(TowerError::Config(format!(
                "REPRISE_MODE={other:?}: use off, record or mock"
            ))),
        }
    }
}

/// The layers' configuration.
#[derive(Debug, Clone)]
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
        }
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, TowerError> {
    value
        .trim()
        .parse()
        .map_err(|_| TowerError::Config(format!("{name}={value:?} is not a valid value")))
}

fn flag(name: &str, value: &str) -> Result<bool, TowerError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(TowerError::Config(format!("{name}={value:?}: use 1 or 0"))),
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

impl Config {
    /// The configuration the `REPRISE_*` environment variables give.
    pub fn from_env() -> Result<Config, TowerError> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// The configuration the variables `var` looks up give.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, TowerError> {
        let mut config = Config::default();
        if let Some(v) = var("REPRISE_MODE") {
            config.mode = v.parse()?;
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
        if let Some(v) = var("REPRISE_SAMPLE") {
            config.sample = parse("REPRISE_SAMPLE", &v)?;
        }
        if let Some(v) = var("REPRISE_MATCH") {
            config.matches = list(&v, ';');
        }
        if let Some(v) = var("REPRISE_MAX_RECORD_RATE") {
            config.max_record_rate = Some(parse("REPRISE_MAX_RECORD_RATE", &v)?);
        }
        if let Some(v) = var("REPRISE_MAX_BODY") {
            config.max_body = parse("REPRISE_MAX_BODY", &v)?;
        }
        if let Some(v) = var("REPRISE_QUEUE") {
            config.queue = parse("REPRISE_QUEUE", &v)?;
        }
        if let Some(v) = var("REPRISE_REDACT_HEADERS") {
            config.redact_headers = list(&v, ',');
        }
        if let Some(v) = var("REPRISE_REDACT_JSON") {
            config.redact_json = list(&v, ',');
        }
        if let Some(v) = var("REPRISE_REDACT_QUERY") {
            config.redact_query = list(&v, ',');
        }
        if let Some(v) = var("REPRISE_REDACT_FORM") {
            config.redact_form = list(&v, ',');
        }
        if let Some(v) = var("REPRISE_NO_DEFAULT_REDACTION") {
            config.default_redaction = !flag("REPRISE_NO_DEFAULT_REDACTION", &v)?;
        }
        if let Some(v) = var("REPRISE_MOCK_EXHAUSTED") {
            config.mock.exhausted = v.trim().parse()?;
        }
        if let Some(v) = var("REPRISE_MOCK_GLOBAL") {
            config.mock.global = flag("REPRISE_MOCK_GLOBAL", &v)?;
        }
        if let Some(v) = var("REPRISE_MOCK_IGNORE_AUTHORITY") {
            config.mock.ignore_authority = flag("REPRISE_MOCK_IGNORE_AUTHORITY", &v)?;
        }
        if let Some(v) = var("REPRISE_MOCK_TIMING") {
            config.mock.timing = flag("REPRISE_MOCK_TIMING", &v)?;
        }
        if let Some(v) = var("REPRISE_MOCK_SHARED") {
            let mut filter = ExchangeFilter::new();
            for term in list(&v, ';') {
                filter = filter
                    .add_match(&term)
                    .map_err(|e| TowerError::Config(format!("REPRISE_MOCK_SHARED: {e}")))?;
            }
            config.mock.shared = (!filter.is_empty()).then_some(filter);
        }
        config.mock.max_body = config.max_body;
        Ok(config)
    }

    fn redactor(&self) -> Result<Redactor, TowerError> {
        let rules = RedactionRules {
            defaults: self.default_redaction,
            headers: self.redact_headers.clone(),
            json: self.redact_json.clone(),
            query: self.redact_query.clone(),
            form: self.redact_form.clone(),
        };
        rules.redactor().map_err(|e| {
            let var = match e.kind {
                RuleKind::Header => "REPRISE_REDACT_HEADERS",
                RuleKind::Json => "REPRISE_REDACT_JSON",
                RuleKind::Query => "REPRISE_REDACT_QUERY",
                RuleKind::Form => "REPRISE_REDACT_FORM",
            };
            TowerError::Config(format!("{var}: {e}"))
        })
    }

    fn filter(&self) -> Result<ExchangeFilter, TowerError> {
        self.matches
            .iter()
            .try_fold(ExchangeFilter::new(), |filter, term| {
                filter
                    .add_match(term)
                    .map_err(|e| TowerError::Config(format!("REPRISE_MATCH: {e}")))
            })
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
    /// The layers as the `REPRISE_*` environment variables say.
    pub fn from_env() -> Result<Reprise, TowerError> {
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
    pub fn start(config: Config) -> Result<Reprise, TowerError> {
        let tape = |verb: &str| {
            config.tape.clone().ok_or_else(|| {
                TowerError::Config(format!(
                    "REPRISE_MODE={} needs REPRISE_TAPE, the tape to {verb}",
                    if config.mode == Mode::Record {
                        "record"
                    } else {
                        "mock"
                    },
                ))
            })
        };
        // Every setting is checked in every mode: one that is wrong is
        // found when it is deployed, not when the mode is switched.
        Reprise::check(&config)?;
        match config.mode {
            Mode::Off => Reprise::build(config, None, None),
            Mode::Record => {
                // The recorder's thread writes it: no writer thread of its own.
                let options = reprise_tape::WriterOptions {
                    inline: true,
                    ..reprise_tape::WriterOptions::default()
                };
                let (writer, _) = reprise_tape::TapeWriter::open(tape("write")?, options)?;
                Reprise::record_to(config, Box::new(writer))
            }
            Mode::Mock => {
                let mut options = config.mock.clone();
                options.max_body = config.max_body;
                options.redactor = config.redactor()?;
                let store = MockStore::from_tape(tape("answer from")?, options)?;
                Reprise::build(config, None, Some(Arc::new(store)))
            }
        }
    }

    /// Record mode into `sink` (a tape, Kafka, memory) instead of
    /// `config.tape`; `config.mode` is not looked at.
    pub fn record_to(mut config: Config, sink: Box<dyn Sink>) -> Result<Reprise, TowerError> {
        config.mode = Mode::Record;
        Reprise::check(&config)?;
        let rules = Rules {
            filter: config.filter()?,
            max_rate: config.max_record_rate,
            redactor: config.redactor()?,
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
            .map_err(|e| TowerError::Recorder(format!("cannot start the recorder thread: {e}")))?;
        Reprise::build_with(config, Some(started), None, metrics)
    }

    /// Mock mode from `store` instead of `config.tape`.
    pub fn mock_from(mut config: Config, store: MockStore) -> Result<Reprise, TowerError> {
        config.mode = Mode::Mock;
        Reprise::build(config, None, Some(Arc::new(store)))
    }

    fn check(config: &Config) -> Result<(), TowerError> {
        Sampler::new(config.sample)
            .map_err(|e| TowerError::Config(format!("REPRISE_SAMPLE: {e}")))?;
        config.filter()?;
        config.redactor()?;
        Ok(())
    }

    fn build(
        config: Config,
        recorder: Option<(Recorder, RecorderThread)>,
        mocks: Option<Arc<MockStore>>,
    ) -> Result<Reprise, TowerError> {
        Reprise::build_with(config, recorder, mocks, Arc::new(Metrics::new()))
    }

    fn build_with(
        config: Config,
        recorder: Option<(Recorder, RecorderThread)>,
        mocks: Option<Arc<MockStore>>,
        metrics: Arc<Metrics>,
    ) -> Result<Reprise, TowerError> {
        let sampler = Sampler::new(config.sample)
            .map_err(|e| TowerError::Config(format!("REPRISE_SAMPLE: {e}")))?;
        let inbound = Arc::new(Inbound {
            recorder: recorder.as_ref().map(|(r, _)| r.clone()),
            scoped: config.mode != Mode::Off,
            origin: Arc::new(origin(&config, Role::Inbound, "")),
            sampler,
            metrics: Arc::clone(&metrics),
            mocks: mocks.clone(),
        });
        Ok(Reprise {
            mode: config.mode,
            config,
            sampler,
            metrics,
            recorder,
            inbound,
            mocks,
        })
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
    /// has stopped (calls finishing later are counted as dropped), outside
    /// an async context or in `spawn_blocking`.
    pub fn shutdown(self, deadline: Duration) -> Result<RecorderStats, TowerError> {
        if let Some((recorder, thread)) = self.recorder {
            thread
                .close(&recorder, deadline)
                .map_err(|e| TowerError::Recorder(e.to_string()))?;
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
        scheme: "http",
        authority: authority.to_string(),
        server_addr: String::new(),
        max_body: config.max_body,
    }
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
    fn environment_sets_every_field() -> Result<(), TowerError> {
        let config = Config::from_vars(vars(&[
            ("REPRISE_MODE", "Record"),
            ("REPRISE_TAPE", "/tmp/x.tape"),
            ("REPRISE_SERVICE", "shop"),
            ("REPRISE_SAMPLE", "0.25"),
            ("REPRISE_MATCH", "method=GET; path=/api/*"),
            ("REPRISE_MAX_BODY", "4096"),
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
        config.filter()?;
        config.redactor()?;
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
            ("REPRISE_MOCK_SHARED", "colour=red", "REPRISE_MOCK_SHARED: "),
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
        reprise.shutdown(std::time::Duration::from_secs(5))?;
        let mocks = Config::from_vars(vars(&[
            ("REPRISE_MODE", "mock"),
            ("REPRISE_TAPE", &made.to_string_lossy()),
        ]))
        .and_then(Reprise::start)?;
        assert_eq!(mocks.mock_report().map(|r| r.served), Some(0));
        Ok(())
    }
}
