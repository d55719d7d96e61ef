//! A disk that fills up, for the full-disk tests of the tape, the tower
//! layers and `reprise record`: a 1 MiB tmpfs mounted inside a mount
//! namespace of the test's own (`unshare -m`), so the mount cannot
//! outlive the test. Needs root (CAP_SYS_ADMIN), as in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The variable that holds the tmpfs's directory in a test run again
/// inside the namespace ([`rerun_on_a_small_disk`]).
pub const DISK: &str = "REPRISE_TEST_FULL_DISK";

/// Runs the test `name` of the current test binary again, inside a mount
/// namespace with a 1 MiB tmpfs on the directory `$REPRISE_TEST_FULL_DISK`,
/// and asserts that it passed.
pub fn rerun_on_a_small_disk(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    assert_mounting_allowed(&disk);
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m,mode=0700 tmpfs "$1" && exec "$2" --exact "$3" --nocapture"#)
        .arg("sh")
        .arg(&disk)
        .arg(std::env::current_exe().unwrap())
        .arg(name)
        .env(DISK, &disk)
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 passed"), "{said}");
}

/// Fails at once, saying why, where this user may not mount a tmpfs in a
/// mount namespace of its own: otherwise the test would fail later with
/// the cause lost.
pub fn assert_mounting_allowed(disk: &Path) {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .args(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(disk)
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the full-disk tests mount a tmpfs in a mount namespace of their own, \
             which needs root (CAP_SYS_ADMIN); `unshare -m mount -t tmpfs` said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("the full-disk tests need util-linux's unshare: {e}"),
    }
}

/// Fills `disk` with a file named `filler` until it is full.
pub fn fill(disk: &Path) {
    let mut filler = std::fs::File::create(disk.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
}
