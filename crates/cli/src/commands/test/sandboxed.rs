//! One build of the service tested in a sandbox of its own: the mock on
//! the recorded egress listeners inside, the service started inside, the
//! recording replayed to it from a thread inside, then the service
//! stopped and what the jail saw collected.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use reprise_intercept::LocalCa;
use reprise_mock::{MockReport, MockStore, RecordedListener};
use reprise_model::{Exchange, Role, StoreError};
use reprise_replay::{Opener, Replay, ReplayConfig, Report};
use reprise_sandbox::{Sandbox, SandboxError, SandboxOptions, ServiceOptions};

use super::Settings;
use super::interrupt::Interrupt;
use super::recorded_time::{SharedSink, at_ns, first_inbound_ns, replay_in_recorded_time};

/// Misses listed in the report (all are counted).
const MISSES_SHOWN: usize = 20;

/// What the run of every build shares.
pub(crate) struct Setup<'a> {
    /// The recording, whole.
    pub recording: &'a [Exchange],
    /// Where it was read from (the replay reads it again).
    pub recording_path: &'a Path,
    /// The service's port.
    pub port: u16,
    /// The recorded egress listeners: where the mock listens.
    pub listeners: Vec<(SocketAddr, RecordedListener)>,
    /// The names the DNS stub answers.
    pub dns_names: Vec<String>,
    /// The service's environment besides the caller's: proxy and CA.
    pub env: Vec<(String, String)>,
    /// The local CA the forward proxy's front mints certificates from.
    pub ca: Option<Arc<LocalCa>>,
    /// Run the service under libfaketime.
    pub faketime: bool,
    /// No progress display.
    pub quiet: bool,
    /// The options.
    pub settings: &'a Settings,
    /// SIGINT and SIGTERM.
    pub interrupt: &'a Interrupt,
}

/// One build of the service: the one under test or the baseline.
pub(crate) struct Build {
    /// How messages name it: `service` or `baseline`.
    pub name: &'static str,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Where the replayed exchanges go.
    pub replayed: PathBuf,
    /// Where the mock writes the downstream calls it got.
    pub downstream: PathBuf,
    /// Where all the service's output goes.
    pub log: PathBuf,
}

/// What the mock did in one run.
pub(crate) struct MockSummary {
    /// Calls served, missed, from the unlinked pool.
    pub report: MockReport,
    /// Calls written to the downstream tape.
    pub written: u64,
}

/// What the run of one build gave.
pub(crate) struct RunResult {
    /// How the build is named.
    pub name: &'static str,
    /// The replayed exchanges' tape.
    pub replayed: PathBuf,
    /// The downstream calls' tape.
    pub downstream: PathBuf,
    /// The replay's report.
    pub replay: Report,
    /// What the mock served and missed.
    pub mock: MockSummary,
    /// Every attempt to reach something the recording does not hold,
    /// one line each.
    pub escapes: Vec<String>,
}

impl RunResult {
    /// The replay's figures, the mock's, and the escape attempts.
    pub(crate) fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let name = self.name;
        let r = &self.replay;
        writeln!(
            out,
            "{name}: {} calls replayed in {:.2} s: {} ok, {} failed, {} status differs",
            r.calls, r.elapsed_s, r.ok, r.failed, r.status_differs
        )?;
        let mock = &self.mock.report;
        write!(
            out,
            "{name}: the mock answered {} downstream calls, missed {}",
            mock.served, mock.missed
        )?;
        if mock.unlinked > 0 {
            write!(out, " ({} from the unlinked pool)", mock.unlinked)?;
        }
        writeln!(out)?;
        for miss in mock.misses.iter().take(MISSES_SHOWN) {
            writeln!(out, "{name}:   {miss}")?;
        }
        if self.escapes.is_empty() {
            writeln!(out, "{name}: no escape attempts")?;
        }
        for escape in &self.escapes {
            writeln!(out, "{name}: escape attempt: {escape}")?;
        }
        Ok(())
    }

    /// The same as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "replayed": self.replayed,
            "downstream": self.downstream,
            "replay": self.replay,
            "mock": {
                "served": self.mock.report.served,
                "missed": self.mock.report.missed,
                "unlinked": self.mock.report.unlinked,
                "written": self.mock.written,
                "misses": self.mock.report.misses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "escapes": self.escapes,
        })
    }
}

/// How long the service has to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `build` in a sandbox of its own.
pub(crate) fn run(setup: &Setup<'_>, build: Build) -> anyhow::Result<RunResult> {
    let mut options = SandboxOptions::default().allow_port(setup.port);
    for (addr, _) in &setup.listeners {
        options = options.allow_port(addr.port());
    }
    for name in &setup.dns_names {
        options = options.dns_name(name.clone());
    }
    let sandbox = Sandbox::create(options)?;
    let listeners = setup
        .listeners
        .iter()
        .map(|(addr, recorded)| {
            let listener = sandbox.listen_tcp(*addr).with_context(|| {
                format!("cannot listen at {recorded} in the sandbox (a recorded egress listener)")
            })?;
            Ok((listener, recorded.clone()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = MockStore::new(
        setup
            .recording
            .iter()
            .filter(|e| e.role == Role::Downstream as i32)
            .cloned(),
        setup.settings.mock.clone(),
    );
    let mock = super::mock_server::start(
        store,
        listeners,
        setup.ca.clone(),
        build.downstream.clone(),
        setup.settings.mock_log,
    )?;
    let clock = if setup.faketime {
        // A second before the first exchange: libfaketime takes the time
        // of a file that changed as set, and lets one that did not run on
        // from where it was; so the first exchange's time is a change too.
        let start = first_inbound_ns(setup.recording).map_or_else(SystemTime::now, |ns| {
            at_ns(ns.saturating_sub(1_000_000_000))
        });
        Some(sandbox.fake_clock(start).context("--faketime")?)
    } else {
        None
    };
    let mut command = Command::new(&build.command[0]);
    command.args(&build.command[1..]);
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command.envs(setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(clock) = &clock {
        clock.apply(&mut command);
    }
    let mut service = sandbox
        .spawn(command, ServiceOptions::default().log(&build.log))
        .with_context(|| format!("the {}", build.name))?;
    setup.interrupt.service(Some(service.id()));
    if let Err(error) = service.wait_for_port(setup.port, setup.settings.start_timeout) {
        setup.interrupt.service(None);
        let _ = service.stop(STOP_GRACE);
        let _ = mock.stop();
        return Err(service_failed(build.name, error));
    }
    let results = SharedSink(Arc::new(Mutex::new(super::super::replay::results_tape(
        &build.replayed,
    )?)));
    let mut config = setup.settings.replay.clone();
    config.watcher = Some(mock.watcher());
    let recording_path = setup.recording_path.to_path_buf();
    // Under --faketime the calls go one by one, from memory.
    let inbound = match clock {
        Some(_) => setup
            .recording
            .iter()
            .filter(|e| e.role != Role::Downstream as i32)
            .cloned()
            .collect::<Vec<_>>(),
        None => Vec::new(),
    };
    let sink = results.clone();
    let interrupt = setup.interrupt.clone();
    let replayed = match clock {
        Some(clock) => sandbox
            .spawn_thread("reprise-test-replay", move || {
                replay_in_recorded_time(config, inbound, sink, &clock, &interrupt)
            })?
            .join(),
        None => {
            // Started inside: its threads, and so its connections, are
            // in the namespace; followed from here.
            let started = sandbox
                .spawn_thread("reprise-test-replay", move || {
                    let opener = opener(recording_path, &config);
                    Replay::start(config, opener, Some(Box::new(sink)), None)
                })?
                .join();
            match started {
                Ok(Ok(replay)) => {
                    setup.interrupt.watch(replay.stop_handle());
                    super::super::replay::show_progress(&replay, setup.quiet);
                    Ok(replay.wait().map_err(anyhow::Error::from))
                }
                Ok(Err(error)) => Ok(Err(error.into())),
                Err(panic) => Err(panic),
            }
        }
    };
    // A service that died under the replay is not a build that regressed:
    // it is the run that failed, with its last words.
    let died = service.try_status()?.filter(|_| !setup.interrupt.caught());
    let last_lines = service.last_lines();
    setup.interrupt.service(None);
    let stopped = service.stop(STOP_GRACE);
    let mock = mock.stop()?;
    let replay = match replayed {
        Ok(report) => report?,
        Err(_) => bail!("the replay stopped unexpectedly"),
    };
    if let Some(status) = died {
        show_last_lines(build.name, &last_lines);
        bail!("the {} exited during the replay ({status})", build.name);
    }
    stopped.with_context(|| format!("cannot stop the {}", build.name))?;
    results
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .finish()
        .with_context(|| build.replayed.display().to_string())?;
    let stdout = std::io::stdout();
    replay.render(&mut stdout.lock())?;
    crate::report_damage(&replay.recording.damage);
    if replay.calls == 0 {
        bail!(
            "{}: nothing to replay: no inbound exchange in the recording can be replayed",
            setup.recording_path.display()
        );
    }
    let escapes = sandbox.escapes()?.messages();
    Ok(RunResult {
        name: build.name,
        replayed: build.replayed,
        downstream: build.downstream,
        replay,
        mock,
        escapes,
    })
}

/// The variables a service takes a proxy from: the caller's are not
/// passed on (the sandbox sets its own when the recording used one).
const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "grpc_proxy",
    "GRPC_PROXY",
];

/// A service that exited before opening its port, or never opened it:
/// its last output lines on stderr, one each, and the error in one line.
fn service_failed(name: &str, error: SandboxError) -> anyhow::Error {
    let (what, lines) = match &error {
        SandboxError::ServiceExited {
            port,
            status,
            last_lines,
        } => (
            format!("the {name} exited before opening port {port} ({status})"),
            last_lines.as_slice(),
        ),
        SandboxError::PortNeverOpened {
            port,
            waited,
            last_lines,
        } => (
            format!(
                "the {name} did not open port {port} within {:.1} s (--start-timeout)",
                waited.as_secs_f64()
            ),
            last_lines.as_slice(),
        ),
        _ => return anyhow::Error::new(error).context(format!("the {name}")),
    };
    show_last_lines(name, lines);
    anyhow::anyhow!("{what}")
}

/// A service's last output lines on stderr, one each.
fn show_last_lines(name: &str, lines: &[String]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    if lines.is_empty() {
        let _ = writeln!(err, "reprise: the {name} printed nothing");
    } else {
        let _ = writeln!(err, "reprise: the {name}'s last output lines:");
        for line in lines {
            let _ = writeln!(err, "  | {}", reprise_model::terminal::escape(line));
        }
    }
}

/// The recording, read again for the replay (it reads exchanges as it
/// sends them).
fn opener(path: PathBuf, config: &ReplayConfig) -> Opener {
    let filter = config.filter.clone();
    Box::new(move || {
        crate::input::open(&path, &filter)
            .map_err(|e| StoreError::failed(path.display().to_string(), crate::one_line(&e)))
    })
}
