//! The files the sandbox writes: private (0600) and never through a
//! symlink.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::SandboxError;

/// Writes `contents` to `path`, which must not exist yet: created with mode
/// 0600 and `O_EXCL` (so a symlink planted at `path` is never followed).
pub(crate) fn write_new(path: &Path, contents: &[u8]) -> Result<(), SandboxError> {
    let file_error = |source| SandboxError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = create_new(path)?;
    file.write_all(contents).map_err(file_error)?;
    file.sync_all().map_err(file_error)
}

/// Creates `path` for writing, as [`write_new`] does.
pub(crate) fn create_new(path: &Path) -> Result<File, SandboxError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|source| SandboxError::File {
            path: path.to_path_buf(),
            source,
        })
}

/// Replaces `path`'s contents at once: writes a sibling file with
/// [`write_new`] and renames it over `path`, so a reader never sees a half
/// written file (libfaketime rereads its file at every clock call).
pub(crate) fn replace(path: &Path, contents: &[u8]) -> Result<(), SandboxError> {
    let mut next = path.as_os_str().to_owned();
    next.push(".next");
    let next = std::path::PathBuf::from(next);
    match std::fs::remove_file(&next) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SandboxError::File { path: next, source }),
    }
    write_new(&next, contents)?;
    std::fs::rename(&next, path).map_err(|source| SandboxError::File {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_never_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        write_new(&path, b"nameserver 127.0.0.1\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let target = dir.path().join("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = write_new(&link, b"x").unwrap_err();
        assert!(error.to_string().contains("link"), "{error}");
        assert!(!target.exists(), "the symlink was followed");

        replace(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
