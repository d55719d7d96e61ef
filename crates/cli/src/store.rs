//! Where a command writes a recording: a tape file, or a Kafka topic
//! named `kafka://BROKER[,BROKER...]/TOPIC` wherever a tape path is
//! accepted; and the librdkafka settings every topic is reached with
//! (`--kafka-option KEY=VALUE`, `--kafka-config FILE`).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use reprise_kafka::{KafkaAddress, KafkaOptions, KafkaSink, SinkOptions};
use reprise_model::Sink;
use reprise_tape::{TapeWriter, WriterOptions};

static KAFKA_OPTIONS: OnceLock<KafkaOptions> = OnceLock::new();

/// Reads the settings of `--kafka-config FILE` then `--kafka-option
/// KEY=VALUE` (which win), once per run, before any topic is opened.
pub fn set_kafka_options(settings: &[String], file: Option<&Path>) -> anyhow::Result<()> {
    let mut options = KafkaOptions::new();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--kafka-config {}: cannot read", file.display()))?;
        options.add_properties(&text, &format!("--kafka-config {}", file.display()))?;
    }
    for setting in settings {
        options.add(setting)?;
    }
    // Set once, by `commands::run`; a second call (a test running
    // commands in one process) keeps the first.
    let _ = KAFKA_OPTIONS.set(options);
    Ok(())
}

/// The librdkafka settings of this run.
pub fn kafka_options() -> &'static KafkaOptions {
    KAFKA_OPTIONS.get_or_init(KafkaOptions::new)
}

/// The topic `path` names, when it is a `kafka://` address (an error
/// when it is one that does not parse); `None` for a file.
pub fn kafka_address(path: &Path) -> anyhow::Result<Option<KafkaAddress>> {
    let Some(text) = path.to_str() else {
        return Ok(None);
    };
    if !reprise_kafka::is_kafka(text) {
        return Ok(None);
    }
    Ok(Some(KafkaAddress::parse(text)?))
}

/// Whether `path` names a Kafka topic.
pub fn is_kafka(path: &Path) -> bool {
    path.to_str().is_some_and(reprise_kafka::is_kafka)
}

/// How a tape is opened for writing.
#[derive(Debug, Clone, Copy)]
pub struct TapeOpening {
    /// An existing tape is written on (`--append`); else a new one is
    /// made, and an existing file is an error.
    pub append: bool,
    /// Blocks are written on the caller's thread ([`WriterOptions::inline`]).
    pub inline: bool,
    /// The zstd level of its blocks, `None` for none.
    pub zstd_level: Option<i32>,
    /// A directory of tapes, rotated so (`--rotate-size`,
    /// `--rotate-every`, `--keep`), instead of one tape.
    pub rotation: Option<reprise_tape::Rotation>,
}

/// Opens where `path` says a recording goes: a topic (always appended
/// to; reached within a bound, and there, or an error now), or a tape.
pub fn open_sink(path: &Path, how: TapeOpening) -> anyhow::Result<Box<dyn Sink>> {
    open_sink_with(path, how, SinkOptions::default())
}

/// Like [`open_sink`], a topic written as `kafka` says (a copy waits
/// for room in the producer's queue; a recording never does).
pub fn open_sink_with(
    path: &Path,
    how: TapeOpening,
    kafka: SinkOptions,
) -> anyhow::Result<Box<dyn Sink>> {
    if let Some(address) = kafka_address(path)? {
        if how.rotation.is_some() {
            bail!(
                "{address}: --rotate-size, --rotate-every and --keep write a directory of tapes, not a topic (retention is the topic's own)"
            );
        }
        let sink = KafkaSink::open(&address, kafka_options(), &kafka)?;
        return Ok(Box::new(sink));
    }
    if let Some(rotation) = how.rotation {
        let options = WriterOptions {
            inline: how.inline,
            zstd_level: how.zstd_level,
            ..WriterOptions::default()
        };
        return Ok(Box::new(reprise_tape::RotatingTape::create(
            path, options, rotation,
        )?));
    }
    Ok(Box::new(open_tape(path, how)?))
}

/// Opens the tape at `path` as `how` says.
pub fn open_tape(path: &Path, how: TapeOpening) -> anyhow::Result<TapeWriter> {
    if is_kafka(path) {
        bail!(
            "{}: a Kafka topic cannot be written here: this output must be a tape file",
            path.display()
        );
    }
    let options = WriterOptions {
        inline: how.inline,
        zstd_level: how.zstd_level,
        ..WriterOptions::default()
    };
    if how.append {
        let (writer, report) = TapeWriter::open(path, options)?;
        if let Some(cut) = report.cut {
            eprintln!(
                "reprise: tape {}: cut off a torn tail: {cut}",
                path.display()
            );
        }
        Ok(writer)
    } else {
        Ok(TapeWriter::create(path, options)?)
    }
}

/// Where `reprise mock --out` writes: a new tape, or a topic.
pub fn mock_out(path: &Path) -> reprise_mock::OutStore {
    if is_kafka(path) {
        let at = path.to_path_buf();
        return reprise_mock::OutStore::new(path.display().to_string(), move || {
            let how = TapeOpening {
                append: false,
                inline: false,
                zstd_level: None,
                rotation: None,
            };
            open_sink(&at, how).map_err(|e| crate::one_line(&e))
        });
    }
    reprise_mock::OutStore::tape(path)
}

/// Removes what a command made at `path` and must not leave behind (a
/// new tape, when the command failed): never a topic or a directory.
pub fn remove_new(path: &Path) {
    if !is_kafka(path) && !path.is_dir() {
        let _ = std::fs::remove_file(path);
    }
}

/// How a command names its output in a message: "tape PATH" or "topic
/// kafka://...".
pub fn describe(path: &Path) -> String {
    if is_kafka(path) {
        format!("topic {}", path.display())
    } else if path.is_dir() {
        format!("tapes in {}", path.display())
    } else {
        format!("tape {}", path.display())
    }
}
