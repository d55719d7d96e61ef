//! libfaketime for the service: the clock it sees is set from outside, per
//! exchange, by rewriting a file that libfaketime rereads at every call.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::SandboxError;
use crate::files;

/// Where Debian's `libfaketime` package puts the library, per architecture
/// (`/usr/lib/<triple>/faketime/`), and other common places.
const LIBRARY: &str = "faketime/libfaketime.so.1";

/// The service's clock, moved by [`FakeClock::set`].
#[derive(Debug)]
pub struct FakeClock {
    library: PathBuf,
    timestamp_file: PathBuf,
}

impl FakeClock {
    /// Finds libfaketime and writes the clock file `timestamp_file` (which
    /// must not exist yet; its folder should be private), set to `start`.
    pub fn create(timestamp_file: &Path, start: SystemTime) -> Result<FakeClock, SandboxError> {
        let library = locate_library()?;
        files::write_new(timestamp_file, timestamp(start).as_bytes())?;
        Ok(FakeClock {
            library,
            timestamp_file: timestamp_file.to_path_buf(),
        })
    }

    /// The library preloaded into the service.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The variables that put the service under this clock: the library
    /// preloaded, the file reread at every call (`FAKETIME_NO_CACHE`), and
    /// the time given in seconds since the epoch (`FAKETIME_FMT=%s`, so the
    /// service's time zone does not shift it). Monotonic clocks are faked
    /// too: libfaketime 0.9.10's `FAKETIME_DONT_FAKE_MONOTONIC` makes
    /// Python's `time.sleep` fail with EINVAL.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let mut preload = self.library.clone().into_os_string();
        if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            preload.push(" ");
            preload.push(existing);
        }
        vec![
            ("LD_PRELOAD".into(), preload),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.timestamp_file.clone().into_os_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_FMT".into(), "%s".into()),
        ]
    }

    /// Puts `command` under this clock.
    pub fn apply(&self, command: &mut Command) {
        command.envs(self.env());
    }

    /// Sets the service's clock to `at` (it runs on from there). Seen by
    /// the service's next clock call.
    pub fn set(&self, at: SystemTime) -> Result<(), SandboxError> {
        files::replace(&self.timestamp_file, timestamp(at).as_bytes())
    }
}

/// libfaketime's absolute form: `@` and the time (seconds since the epoch,
/// as `FAKETIME_FMT=%s` reads it).
fn timestamp(at: SystemTime) -> String {
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i128,
        Err(before) => -(before.duration().as_secs() as i128),
    };
    format!("@{seconds}\n")
}

/// The installed libfaketime, or the error naming where it was looked for.
pub fn locate_library() -> Result<PathBuf, SandboxError> {
    find_library(Path::new("/usr/lib"), Path::new("/usr/local/lib"))
}

/// libfaketime under `lib/<triple>/faketime/` (Debian's multiarch
/// folders), `lib/faketime/` or `local/faketime/`.
fn find_library(lib: &Path, local: &Path) -> Result<PathBuf, SandboxError> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join(LIBRARY))
        .collect();
    candidates.sort();
    candidates.extend([lib.join(LIBRARY), local.join(LIBRARY)]);
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| SandboxError::FakeTimeMissing {
            searched: format!(
                "{}/*/faketime, {}/faketime, {}/faketime",
                lib.display(),
                lib.display(),
                local.display()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_clock_file_holds_seconds_since_the_epoch() {
        let at = UNIX_EPOCH + Duration::from_secs(1_577_872_800);
        assert_eq!(timestamp(at), "@1577872800\n");
        assert_eq!(timestamp(UNIX_EPOCH - Duration::from_secs(5)), "@-5\n");
    }

    #[test]
    fn the_library_is_found_in_a_multiarch_folder_or_its_absence_named() {
        let root = tempfile::tempdir().unwrap();
        let (lib, local) = (root.path().join("lib"), root.path().join("local"));
        std::fs::create_dir_all(&lib).unwrap();
        let error = find_library(&lib, &local).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "--faketime needs libfaketime (Debian package faketime): no libfaketime.so.1 \
                 under {0}/*/faketime, {0}/faketime, {1}/faketime",
                lib.display(),
                local.display()
            )
        );
        let library = lib.join("aarch64-linux-gnu").join(LIBRARY);
        std::fs::create_dir_all(library.parent().unwrap()).unwrap();
        std::fs::write(&library, b"").unwrap();
        assert_eq!(find_library(&lib, &local).unwrap(), library);
    }
}
