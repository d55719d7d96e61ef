//! The private mount namespace: the host's Unix sockets hidden, and the
//! sandbox's own `resolv.conf` and `hosts`.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::SandboxError;

/// Folders an empty tmpfs is mounted over by default: where services put
/// their Unix sockets (`/run/postgresql/.s.PGSQL.5432`,
/// `/run/redis/redis-server.sock`, `/run/mysqld/mysqld.sock`,
/// `/run/docker.sock`, the D-Bus system bus...), and MySQL's data folder,
/// where some builds put theirs. A folder that does not exist or is a
/// symlink (Debian's `/var/run -> /run`) is skipped.
pub const DEFAULT_HIDDEN: &[&str] = &[
    "/run",
    "/var/run",
    "/var/lib/mysql",
    "/tmp/.X11-unix",
    "/tmp/.ICE-unix",
];

/// Folders whose Unix sockets (directly in them) get `/dev/null` mounted
/// over them: the folder itself stays usable (a service may keep files in
/// /tmp), the sockets answer "connection refused". `/tmp` is where
/// PostgreSQL's and MySQL's sockets are on some systems.
pub const SOCKET_FOLDERS: &[&str] = &["/tmp", "/var/tmp"];

/// Single socket files hidden the same way: the host's syslog.
pub const HIDDEN_SOCKETS: &[&str] = &["/dev/log"];

/// What was hidden, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hidden {
    /// Folders covered by an empty tmpfs.
    pub folders: Vec<PathBuf>,
    /// Socket files covered by `/dev/null`.
    pub sockets: Vec<PathBuf>,
}

/// Builds the mount namespace. Runs on the thread that entered it.
pub(crate) fn build(
    hide: &[PathBuf],
    resolv_conf: &Path,
    hosts: &Path,
) -> Result<Hidden, SandboxError> {
    // Nothing mounted here may reach the host's namespace.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| SandboxError::setup("make / private (mount --make-rprivate /)", e.into()))?;

    let mut hidden = Hidden::default();
    for folder in hide {
        if !is_real_dir(folder) {
            continue;
        }
        rustix::mount::mount(
            "reprise-sandbox",
            folder,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=0755,size=16m",
        )
        .map_err(|e| {
            SandboxError::setup(
                format!("mount an empty tmpfs over {}", folder.display()),
                e.into(),
            )
        })?;
        hidden.folders.push(folder.clone());
    }

    let mut sockets: Vec<PathBuf> = HIDDEN_SOCKETS.iter().map(PathBuf::from).collect();
    for folder in SOCKET_FOLDERS {
        if hidden.folders.iter().any(|h| h == Path::new(folder)) {
            continue;
        }
        // An unreadable folder has no socket we could list; skip it.
        let Ok(entries) = std::fs::read_dir(folder) else {
            continue;
        };
        sockets.extend(entries.flatten().map(|entry| entry.path()));
    }
    for socket in sockets {
        let is_socket = std::fs::symlink_metadata(&socket)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        match rustix::mount::mount_bind("/dev/null", &socket) {
            Ok(()) => hidden.sockets.push(socket),
            // Removed since it was listed: nothing left to hide.
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(SandboxError::setup(
                    format!("hide the socket {}", socket.display()),
                    e.into(),
                ));
            }
        }
    }

    place(resolv_conf, Path::new("/etc/resolv.conf"), &hidden.folders)?;
    place(hosts, Path::new("/etc/hosts"), &hidden.folders)?;
    Ok(hidden)
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_dir())
        .unwrap_or(false)
}

/// Makes `target` read as `ours`: a bind mount over it when it exists. A
/// `target` that is a symlink into a hidden folder (`/etc/resolv.conf ->
/// /run/systemd/resolve/stub-resolv.conf`) now dangles into the sandbox's
/// own tmpfs, so the file is copied there. A missing `target` is left
/// missing: the C library then asks 127.0.0.1 (the stub) anyway.
fn place(ours: &Path, target: &Path, hidden: &[PathBuf]) -> Result<(), SandboxError> {
    if std::fs::metadata(target).is_ok() {
        return rustix::mount::mount_bind(ours, target).map_err(|e| {
            SandboxError::setup(format!("bind the sandbox's {}", target.display()), e.into())
        });
    }
    let Ok(link) = std::fs::read_link(target) else {
        return Ok(());
    };
    let dangling = lexical(&target.parent().unwrap_or(Path::new("/")).join(link));
    // Only ever write into a tmpfs of the sandbox's own.
    if !hidden.iter().any(|h| dangling.starts_with(h)) {
        return Ok(());
    }
    let copy = |e: std::io::Error| {
        SandboxError::setup(format!("write the sandbox's {}", dangling.display()), e)
    };
    if let Some(parent) = dangling.parent() {
        std::fs::create_dir_all(parent).map_err(copy)?;
    }
    let contents = std::fs::read(ours).map_err(copy)?;
    crate::files::write_new(&dangling, &contents)
}

/// `path` with its `.` and `..` resolved by name (`/etc/../run/x` is
/// `/run/x`): what a relative symlink's target is, as long as no folder on
/// the way is a symlink itself.
fn lexical(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolv_conf_linked_into_a_hidden_folder_is_written_there() {
        let root = tempfile::tempdir().unwrap();
        let ours = root.path().join("ours");
        std::fs::write(&ours, "nameserver 127.0.0.1\n").unwrap();
        let run = root.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        // As systemd-resolved links it, relative, into what is now an
        // empty tmpfs.
        let target = etc.join("resolv.conf");
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &target).unwrap();

        place(&ours, &target, std::slice::from_ref(&run)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 127.0.0.1\n"
        );

        // A link into a folder the sandbox does not own is left alone.
        let elsewhere = etc.join("hosts");
        std::os::unix::fs::symlink("../var/hosts", &elsewhere).unwrap();
        place(&ours, &elsewhere, &[run]).unwrap();
        assert!(!root.path().join("var").exists());
    }
}
