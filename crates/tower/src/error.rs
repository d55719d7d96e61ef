//! Errors of setting the layers up and shutting them down.

use std::path::PathBuf;

/// A boxed error: the cause of a failure from a part whose error type is
/// its own (the recorder's writer thread, the mock store).
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why the layers could not be set up or shut down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value that cannot be used.
    #[error("{}", bad_setting(setting, value, expected))]
    BadSetting {
        /// Where the value came from: a builder method, an environment
        /// variable or a [`Config`](crate::Config) field.
        setting: Setting,
        /// The value as given.
        value: String,
        /// What would have been accepted, or why it cannot be used.
        expected: String,
    },
    /// Record and mock mode need a tape (or a sink or store given in code).
    #[error("{mode} mode needs {}, the tape to {verb}", tape_setting(*from_env))]
    NoTape {
        /// The mode asked for.
        mode: crate::Mode,
        /// "write" or "answer from".
        verb: &'static str,
        /// Whether the configuration came from the environment (the
        /// message then names `REPRISE_TAPE`, else `tape(path)`).
        from_env: bool,
    },
    /// `REPRISE_TAPE` names a Kafka topic where one cannot be used: this
    /// build has no `kafka` feature, or mock mode (which answers from a
    /// tape).
    #[error("{tape}: {why}")]
    KafkaTape {
        /// The address given.
        tape: String,
        /// Why it cannot be used.
        why: &'static str,
    },
    /// The Kafka topic could not be opened for recording.
    #[cfg(feature = "kafka")]
    #[error("cannot record: {source}")]
    Kafka {
        /// What the Kafka crate said (it names the address).
        #[source]
        source: reprise_kafka::KafkaError,
    },
    /// The tape could not be opened for recording.
    #[error("cannot record: {source}")]
    TapeOpen {
        /// What the tape crate said (it names the path and the I/O error).
        #[source]
        source: reprise_tape::TapeError,
    },
    /// The recorder's writer thread could not be started.
    #[error("cannot start the recorder thread: {source}")]
    RecorderStart {
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The recorder's writer thread did not finish cleanly: what was
    /// queued may not all be stored.
    #[error("the recorder did not finish: {source}")]
    RecorderClose {
        /// Why.
        #[source]
        source: reprise_record::RecorderError,
    },
    /// The tape to mock from could not be read.
    #[error("cannot mock from {}: {source}", path.display())]
    MockLoad {
        /// The tape.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: Cause,
    },
}

/// Where a setting's value came from, to name it in an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// A method of [`Builder`](crate::Builder), such as `sample`.
    Method(&'static str),
    /// An environment variable read by [`Config::from_env`](crate::Config::from_env),
    /// such as `REPRISE_SAMPLE`.
    Var(&'static str),
    /// A field of a [`Config`](crate::Config) given to
    /// [`Reprise::start`](crate::Reprise::start), such as `sample`.
    Field(&'static str),
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Method(name) => write!(f, "{name}()"),
            Setting::Var(name) => f.write_str(name),
            Setting::Field(name) => write!(f, "Config::{name}"),
        }
    }
}

fn bad_setting(setting: &Setting, value: &str, expected: &str) -> String {
    match setting {
        Setting::Method(name) => format!("{name}({value}): {expected}"),
        Setting::Var(name) => format!("{name}={value:?}: {expected}"),
        Setting::Field(name) => format!("Config::{name} = {value}: {expected}"),
    }
}

fn tape_setting(from_env: bool) -> &'static str {
    if from_env {
        "REPRISE_TAPE"
    } else {
        "tape(path)"
    }
}

impl Error {
    /// A bad value of `setting`.
    pub(crate) fn bad(setting: Setting, value: impl Into<String>, expected: impl ToString) -> Self {
        Error::BadSetting {
            setting,
            value: value.into(),
            expected: expected.to_string(),
        }
    }
}
