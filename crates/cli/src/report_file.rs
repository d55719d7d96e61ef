//! Every file a command writes besides recordings (HTML, JSON and JUnit
//! reports, suggested rules, HAR exports) is written whole or not at all:
//! into a temporary file beside the target, created mode 0600, then
//! renamed over the target. A rerun replaces the report; a symlink at
//! the target is replaced by the report, never followed; a reader never
//! sees half a report.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

/// Writes `path` with what `write` writes, through a temporary file
/// renamed over it once complete; returns what `write` returns. On an
/// error the target is left as it was and the temporary file removed.
pub(crate) fn write_report<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    // tempfile creates it with O_EXCL and mode 0600.
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "{}: cannot create a file in {}",
                path.display(),
                dir.display()
            )
        })?;
    let mut out = BufWriter::new(temp.as_file());
    let value = write(&mut out)?;
    out.flush()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    drop(out);
    temp.as_file()
        .sync_all()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_whole_0600_replacing_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let target = dir.path().join("report.json");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_report(&target, |w| Ok(w.write_all(b"one")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.is_file(), "the link itself was replaced");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        write_report(&target, |w| Ok(w.write_all(b"two")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "two");
        // A failed write leaves the report as it was, and no litter.
        let failed: anyhow::Result<()> = write_report(&target, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("broken")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
