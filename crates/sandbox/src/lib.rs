//! The fail-closed jail behind `reprise test`.
//!
//! The service under test runs in a new network namespace and a private
//! mount namespace. Inside, `lo` is up with a default route over it, and an
//! nftables ruleset lets TCP through only to the allowed loopback ports
//! (the mock's listeners, the service's own port); every other TCP
//! connection, to any address, is redirected to a reporter that reads where
//! it was going and closes it. UDP is dropped and counted, except DNS to a
//! stub that resolves the recording's names to 127.0.0.1 and reports the
//! rest. The mount namespace covers the host's Unix socket folders with
//! empty tmpfs mounts. reprise's own sockets (the mock's listeners, the
//! replay's connections) are opened from threads that joined the network
//! namespace ([`Sandbox::spawn_thread`], [`Sandbox::listen_tcp`]), so no
//! virtual interface is needed.
//!
//! As root this needs nothing else. Otherwise the binary calls
//! [`prepare_process`] first thing in `main` (before any thread exists) to
//! enter an unprivileged user namespace. docs/sandbox.md tells the whole
//! design and its limits.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use reprise_sandbox::{Sandbox, SandboxOptions, ServiceOptions};
//!
//! # fn main() -> Result<(), reprise_sandbox::SandboxError> {
//! reprise_sandbox::prepare_process()?;
//! let sandbox = Sandbox::create(
//!     SandboxOptions::default().allow_port(8080).dns_name("payments.internal"),
//! )?;
//! let mut command = Command::new("python3");
//! command.args(["-m", "http.server", "8080"]);
//! let mut service = sandbox.spawn(command, ServiceOptions::default())?;
//! service.wait_for_port(8080, Duration::from_secs(10))?;
//! // ... replay against 127.0.0.1:8080 from sandbox.spawn_thread(...) ...
//! service.stop(Duration::from_secs(5))?;
//! for line in sandbox.escapes()?.messages() {
//!     eprintln!("{line}");
//! }
//! # Ok(())
//! # }
//! ```

mod dns;
mod error;
mod escapes;
mod faketime;
mod files;
mod firewall;
pub mod mounts;
mod namespace;
mod reporter;
mod sandbox;
mod service;

pub use error::SandboxError;
pub use escapes::{DnsEscape, Escapes, TcpEscape};
pub use faketime::{FakeClock, locate_library as locate_libfaketime};
pub use namespace::Scope;
pub use sandbox::{Sandbox, SandboxOptions};
pub use service::{Service, ServiceOptions};

/// How this process may build sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// It runs as root: namespaces are created directly.
    Root,
    /// It entered a user namespace of its own, where it is root.
    UserNamespace,
}

/// Makes the process able to create sandboxes: nothing as root; otherwise
/// enters a new user namespace mapping the current user and group to root
/// in it. Must run while the process has a single thread (first thing in
/// `main`, before any runtime starts), and only for `reprise test`: the
/// rest of the process then runs in that user namespace.
///
/// Fails with [`SandboxError::NamespacesNotPermitted`] when the kernel
/// allows no unprivileged user namespaces, and
/// [`SandboxError::NotSingleThreaded`] when called too late.
pub fn prepare_process() -> Result<Privilege, SandboxError> {
    if rustix::process::geteuid().is_root() {
        return Ok(Privilege::Root);
    }
    namespace::enter_user_namespace()?;
    Ok(Privilege::UserNamespace)
}

#[cfg(test)]
mod tests {
    /// The command shares the sandbox between its mock, replay and service
    /// threads.
    #[test]
    fn a_sandbox_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<crate::Sandbox>();
        fn movable<T: Send>() {}
        movable::<crate::Service>();
    }
}
