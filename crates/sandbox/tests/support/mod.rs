//! What the sandbox's tests share: running a script in a sandbox and
//! waiting on conditions.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, ExitStatus};
use std::time::Duration;

use reprise_sandbox::{Sandbox, Service, ServiceOptions};

/// Polls `condition` (every 20 ms) until it holds; fails the test, naming
/// `what`, after `seconds`.
pub fn eventually(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {seconds} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Python command running `script`.
pub fn python(script: &str) -> Command {
    let mut command = Command::new("python3");
    command.args(["-c", script]);
    command
}

/// Starts `command` in `sandbox`.
pub fn start(sandbox: &Sandbox, command: Command) -> Service {
    sandbox
        .spawn(command, ServiceOptions::default().tail_lines(200))
        .unwrap()
}

/// Runs `command` in `sandbox` to its end; returns how it ended and what
/// it printed.
pub fn run(sandbox: &Sandbox, command: Command) -> (ExitStatus, Vec<String>) {
    let mut service = start(sandbox, command);
    let status = service
        .wait(Duration::from_secs(30))
        .unwrap()
        .expect("the command ends within 30 s");
    (status, service.last_lines())
}
