//! The namespaces: entering them, keeping a handle on them, and joining
//! them from other threads.
//!
//! `unshare(CLONE_NEWNET | CLONE_NEWNS)` moves only the calling thread;
//! threads and processes it starts inherit its namespaces. The sandbox
//! keeps a descriptor of each (`/proc/thread-self/ns/net`, `.../mnt`) so
//! any thread can join later with `setns`.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::SandboxError;

/// Which of the sandbox's namespaces a thread joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The network namespace only: sockets are opened inside, paths are the
    /// host's (for reprise's own listeners, clients and tools).
    Network,
    /// The network and the mount namespace: what the service sees (its
    /// process is started from such a thread).
    Service,
}

/// Descriptors of the sandbox's namespaces: each stays alive as long as a
/// descriptor, a thread or a process holds it.
#[derive(Debug)]
pub(crate) struct Namespaces {
    net: OwnedFd,
    mnt: OwnedFd,
}

/// The one call that needs rustix's deprecated safe `unshare`: the flags
/// never include `CLONE_FILES`, the only one that can split a thread's file
/// descriptor table from its siblings' (the reason rustix now prefers an
/// unsafe spelling, which this crate's `forbid(unsafe_code)` rules out).
#[allow(deprecated)]
pub(crate) fn unshare(flags: UnshareFlags) -> std::io::Result<()> {
    debug_assert!(!flags.contains(UnshareFlags::FILES));
    rustix::thread::unshare(flags).map_err(std::io::Error::from)
}

impl Namespaces {
    /// Moves the calling thread into a new network and mount namespace and
    /// returns handles on both. Meant for a thread of the sandbox's own.
    pub(crate) fn enter_new() -> Result<Namespaces, SandboxError> {
        unshare(UnshareFlags::NEWNET | UnshareFlags::NEWNS)
            .map_err(|source| SandboxError::NamespacesNotPermitted { source })?;
        Ok(Namespaces {
            net: open_ns("net")?,
            mnt: open_ns("mnt")?,
        })
    }

    /// Moves the calling thread into the namespaces `scope` names.
    pub(crate) fn join(&self, scope: Scope) -> Result<(), SandboxError> {
        let not_permitted = |source: rustix::io::Errno| SandboxError::NamespacesNotPermitted {
            source: source.into(),
        };
        if scope == Scope::Service {
            // setns into a mount namespace needs a thread that shares no
            // filesystem context (root, cwd) with its siblings.
            unshare(UnshareFlags::FS)
                .map_err(|source| SandboxError::NamespacesNotPermitted { source })?;
            rustix::thread::move_into_link_name_space(
                self.mnt.as_fd(),
                Some(LinkNameSpaceType::Mount),
            )
            .map_err(not_permitted)?;
        }
        rustix::thread::move_into_link_name_space(
            self.net.as_fd(),
            Some(LinkNameSpaceType::Network),
        )
        .map_err(not_permitted)
    }

    /// Runs `f` on a new thread that joined `scope`, and returns what it
    /// returned. The thread ends with `f`; the caller's thread never moves.
    pub(crate) fn run_inside<T, F>(&self, scope: Scope, f: F) -> Result<T, SandboxError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|threads| {
            let inside = std::thread::Builder::new()
                .name("reprise-sandbox".to_owned())
                .spawn_scoped(threads, || {
                    self.join(scope)?;
                    Ok(f())
                })
                .map_err(|e| SandboxError::setup("start a thread", e))?;
            inside.join().map_err(|_| SandboxError::ThreadLost)?
        })
    }
}

fn open_ns(kind: &str) -> Result<OwnedFd, SandboxError> {
    let path = format!("/proc/thread-self/ns/{kind}");
    rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| SandboxError::setup(format!("open {path}"), e.into()))
}

/// Enters a new user namespace mapping the current user to root in it, when
/// not root already. See [`crate::prepare_process`].
pub(crate) fn enter_user_namespace() -> Result<(), SandboxError> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    unshare(UnshareFlags::NEWUSER).map_err(|source| {
        // EINVAL: the process already has a second thread.
        if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
            SandboxError::NotSingleThreaded { source }
        } else {
            SandboxError::NamespacesNotPermitted { source }
        }
    })?;
    // An unprivileged process may map only its own ids, and only once it
    // gave up setgroups.
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))
}

fn write_proc(path: &str, contents: &str) -> Result<(), SandboxError> {
    std::fs::write(path, contents)
        .map_err(|e| SandboxError::setup(format!("write {contents:?} to {path}"), e))
}
