//! The service process in the sandbox: started from a thread inside the
//! namespaces, its output kept (the last lines, for error messages), its
//! port waited for, and its process group stopped at the end.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::SandboxError;
use crate::namespace::Scope;
use crate::sandbox::Shared;

/// How a service is started.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// How many of its last output lines are kept for error messages.
    pub tail_lines: usize,
    /// A file that gets all of its output (created, mode 0600; must not
    /// exist).
    pub log: Option<PathBuf>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            tail_lines: 20,
            log: None,
        }
    }
}

impl ServiceOptions {
    /// Keeps `lines` output lines for error messages.
    pub fn tail_lines(mut self, lines: usize) -> Self {
        self.tail_lines = lines;
        self
    }

    /// Writes all output to `path` too.
    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }
}

/// The last lines a process printed (stdout and stderr share one pipe).
#[derive(Debug, Clone)]
struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
}

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.keep {
            lines.pop_front();
        }
        if self.keep > 0 {
            lines.push_back(line);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// A service running in the sandbox, in a process group of its own. Dropping
/// it kills the group.
#[derive(Debug)]
pub struct Service {
    child: Child,
    program: String,
    tail: Tail,
    /// A message when the output pipe reached its end of file.
    output_closed: mpsc::Receiver<()>,
    /// Reads the output pipe; not joined (see `Drop`).
    _pump: JoinHandle<()>,
    status: Option<ExitStatus>,
    sandbox: Arc<Shared>,
}

impl Service {
    pub(crate) fn spawn(
        sandbox: Arc<Shared>,
        mut command: Command,
        options: ServiceOptions,
    ) -> Result<Service, SandboxError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let log = match &options.log {
            Some(path) => Some(crate::files::create_new(path)?),
            None => None,
        };
        // stdout and stderr share one pipe, as on a terminal: the last
        // lines are in the order the service wrote them.
        let (output, writer) =
            std::io::pipe().map_err(|e| SandboxError::setup("create the service's pipe", e))?;
        let stderr = writer
            .try_clone()
            .map_err(|e| SandboxError::setup("create the service's pipe", e))?;
        command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(stderr)
            .process_group(0);
        // setns into the mount namespace moved the thread to its root;
        // the service starts where reprise was unless told otherwise.
        if command.get_current_dir().is_none()
            && let Ok(dir) = std::env::current_dir()
        {
            command.current_dir(dir);
        }
        // The command (holding the pipe's writing ends) is consumed here:
        // once the service exits, the pipe reaches its end.
        let mut child = sandbox
            .namespaces
            .run_inside(Scope::Service, move || command.spawn())?
            .map_err(|source| SandboxError::Spawn {
                program: program.clone(),
                source,
            })?;
        let tail = Tail {
            lines: Arc::default(),
            keep: options.tail_lines,
        };
        let (closed, output_closed) = mpsc::channel();
        let pump_tail = tail.clone();
        let pump = std::thread::Builder::new()
            .name("reprise-service-output".to_owned())
            .spawn(move || pump(output, &pump_tail, log, &closed));
        let pump = match pump {
            Ok(pump) => pump,
            Err(e) => {
                let _ = kill_group(&child, Signal::KILL);
                let _ = child.wait();
                return Err(SandboxError::setup("start a thread", e));
            }
        };
        Ok(Service {
            child,
            program,
            tail,
            output_closed,
            _pump: pump,
            status: None,
            sandbox,
        })
    }

    /// The service's process id (also its process group's).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The program it runs, as given.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Its last output lines so far.
    pub fn last_lines(&self) -> Vec<String> {
        self.tail.lines()
    }

    /// How it ended, if it has.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|source| SandboxError::Process {
                    what: "check whether it is running",
                    source,
                })?;
        }
        Ok(self.status)
    }

    /// Waits at most `timeout` for the service to exit; `None` if it still
    /// runs. Once it exited, [`Service::last_lines`] has all it printed.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, SandboxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                self.drain_output();
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until something accepts a TCP connection on 127.0.0.1:`port`
    /// inside the sandbox, for at most `timeout`. A service that exits first
    /// is [`SandboxError::ServiceExited`]; one that never opens the port is
    /// [`SandboxError::PortNeverOpened`]; both carry its last output lines.
    /// `port` must be one of the sandbox's allowed ports.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<(), SandboxError> {
        if !self.sandbox.allowed_ports.contains(&port) {
            return Err(SandboxError::PortNotAllowed(port));
        }
        // One thread inside the namespace probes until the end.
        let shared = Arc::clone(&self.sandbox);
        shared
            .namespaces
            .run_inside(Scope::Network, || self.poll_port(port, timeout))?
    }

    fn poll_port(&mut self, port: u16, timeout: Duration) -> Result<(), SandboxError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if let Some(status) = self.try_status()? {
                self.drain_output();
                return Err(SandboxError::ServiceExited {
                    port,
                    status,
                    last_lines: self.last_lines(),
                });
            }
            let attempt = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            if TcpStream::connect_timeout(&address, attempt).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SandboxError::PortNeverOpened {
                    port,
                    waited: started.elapsed(),
                    last_lines: self.last_lines(),
                });
            }
            // A refused connect returns at once: pace the polling.
            std::thread::sleep(Duration::from_millis(50).min(timeout / 10));
        }
    }

    /// Stops the service: SIGTERM to its process group, then SIGKILL after
    /// `grace`. Returns how it ended.
    pub fn stop(mut self, grace: Duration) -> Result<ExitStatus, SandboxError> {
        if let Some(status) = self.try_status()? {
            let _ = kill_group(&self.child, Signal::KILL); // what it left behind
            return Ok(status);
        }
        kill_group(&self.child, Signal::TERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status()? {
                let _ = kill_group(&self.child, Signal::KILL);
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(&self.child, Signal::KILL)?;
        let status = self.child.wait().map_err(|source| SandboxError::Process {
            what: "wait for it",
            source,
        })?;
        self.status = Some(status);
        Ok(status)
    }

    /// Gives the output pipe a moment to deliver what the process wrote
    /// before it exited (a grandchild holding it open is not waited for).
    fn drain_output(&self) {
        let _ = self.output_closed.recv_timeout(Duration::from_secs(1));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = kill_group(&self.child, Signal::KILL);
        if self.status.is_none() {
            let _ = self.child.wait();
        }
        // The pump ends when the group's last writer is gone; a writer that
        // escaped the group would keep it blocked, so it is not joined.
    }
}

fn kill_group(child: &Child, signal: Signal) -> Result<(), SandboxError> {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| SandboxError::Process {
            what: "find its process group",
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(SandboxError::Process {
            what: "signal its process group",
            source: e.into(),
        }),
    }
}

/// Copies the output pipe into the tail (and the log) line by line.
fn pump(
    output: std::io::PipeReader,
    tail: &Tail,
    mut log: Option<File>,
    closed: &mpsc::Sender<()>,
) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(log) = &mut log {
            // A full disk loses the log, not the service's run.
            let _ = log.write_all(&line);
        }
        let text = String::from_utf8_lossy(&line);
        tail.push(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    let _ = closed.send(());
}
