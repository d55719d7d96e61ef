//! What the database servers of [`crate::postgres`] and [`crate::redis`]
//! share: a free loopback port, a bounded wait for a condition, and
//! stopping a server process by its id.

use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// How long a server may take to start or to stop before the test fails:
/// generous, for a loaded 2-core CI machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now. Another process may take
/// it before the server binds it: the callers retry with a new port when
/// the server exits at start.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `ready` until it says yes, the deadline passes (panics) or
/// `child` exits (returns false: the caller reads the log and decides).
/// Polling at a short interval is the wait, never a fixed sleep.
pub(crate) fn wait_until_ready(child: &mut Child, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "the server (pid {}) did not become ready within {DEADLINE:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks `child` to stop with `signal`, waits (bounded) for it to exit,
/// then kills it. The process may run as another user (PostgreSQL runs as
/// `postgres` under root): signalling by pid works for root either way.
pub(crate) fn stop(child: &mut Child, signal: Signal) {
    if child.try_wait().unwrap().is_some() {
        return;
    }
    let _ = kill_process(Pid::from_child(child), signal);
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The end of the log at `path`, for a panic message that says why a
/// server did not start.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
