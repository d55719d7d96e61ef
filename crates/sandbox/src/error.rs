//! What can go wrong building the jail or running the service in it.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// An error of the sandbox: each says what was being done and why it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The kernel refused a new namespace (not root, and unprivileged user
    /// namespaces are off or filtered).
    #[error(
        "reprise test needs root or unprivileged user namespaces \
         (kernel.unprivileged_userns_clone / user.max_user_namespaces): {source}"
    )]
    NamespacesNotPermitted {
        /// The kernel's answer to `unshare`/`setns`.
        source: io::Error,
    },
    /// `prepare_process` ran after a thread had started: a user namespace
    /// can only be entered by a single-threaded process.
    #[error(
        "the sandbox's user namespace must be entered before any thread starts \
         (call reprise_sandbox::prepare_process first in main): {source}"
    )]
    NotSingleThreaded {
        /// The kernel's answer to `unshare(CLONE_NEWUSER)`.
        source: io::Error,
    },
    /// A tool the jail is built with (`ip`, `nft`) is not installed.
    #[error("{tool} is needed to build the sandbox ({package}): {source}")]
    ToolMissing {
        /// The program's name.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
        /// The error starting it.
        source: io::Error,
    },
    /// A tool the jail is built with ran and failed.
    #[error("sandbox setup: `{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A folder to hide was given as a relative path.
    #[error("a folder the sandbox hides must be an absolute path, not {}", .0.display())]
    RelativeHiddenPath(PathBuf),
    /// A step of building the jail failed at the operating system.
    #[error("sandbox setup: {what}: {source}")]
    Setup {
        /// The step ("mount a tmpfs over /run", ...).
        what: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file of the sandbox could not be written.
    #[error("sandbox file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The sandbox's own thread is gone (it panicked or was stopped).
    #[error("the sandbox's thread stopped unexpectedly")]
    ThreadLost,
    /// The service command could not be started in the sandbox.
    #[error("cannot start the service `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The service exited before it opened its port.
    #[error(
        "the service exited before opening port {port} ({status}){}",
        tail_text(last_lines)
    )]
    ServiceExited {
        /// The port it was to open.
        port: u16,
        /// How it ended.
        status: ExitStatus,
        /// Its last output lines (stdout and stderr, in the order written).
        last_lines: Vec<String>,
    },
    /// The service ran but never accepted a connection on its port.
    #[error(
        "the service did not open port {port} within {}s{}",
        waited.as_secs_f64(),
        tail_text(last_lines)
    )]
    PortNeverOpened {
        /// The port waited for.
        port: u16,
        /// How long it was waited for.
        waited: Duration,
        /// Its last output lines.
        last_lines: Vec<String>,
    },
    /// A port was waited for or connected to that the firewall does not let
    /// through (it would reach the escape reporter instead).
    #[error(
        "port {0} is not among the sandbox's allowed ports: connections to it are reported as escapes"
    )]
    PortNotAllowed(u16),
    /// The service's process could not be signalled or waited for.
    #[error("the service process: {what}: {source}")]
    Process {
        /// What was being done.
        what: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// nft's counter of dropped UDP packets could not be read.
    #[error("cannot read the sandbox's UDP counter: {0}")]
    Counter(String),
    /// libfaketime is not installed where Debian puts it.
    #[error(
        "--faketime needs libfaketime (Debian package faketime): no libfaketime.so.1 under {searched}"
    )]
    FakeTimeMissing {
        /// The folders looked in.
        searched: String,
    },
}

impl SandboxError {
    pub(crate) fn setup(what: impl Into<String>, source: io::Error) -> SandboxError {
        SandboxError::Setup {
            what: what.into(),
            source,
        }
    }

    /// Whether this is the "namespaces are not permitted here" error.
    pub fn is_not_permitted(&self) -> bool {
        matches!(
            self,
            SandboxError::NamespacesNotPermitted { .. } | SandboxError::NotSingleThreaded { .. }
        )
    }
}

/// The service's last lines as they end an error message.
fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it printed nothing".to_owned();
    }
    let mut text = String::from("; its last output lines:");
    for line in lines {
        text.push_str("\n  | ");
        text.push_str(line);
    }
    text
}
