#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a message
//! The writer on a disk that fills up and frees again. The test runs
//! itself again in a mount namespace of its own (`unshare -m`) on a 1 MiB
//! tmpfs, which goes with the namespace.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use reprise_model::SinkTally;
use reprise_tape::{TapeError, TapeReader, TapeWriter, WriterOptions};

/// Where the tmpfs is, in the run inside the namespace.
const DISK: &str = "REPRISE_TEST_FULL_DISK";

/// Runs the test `name` of this binary again, inside a mount namespace
/// with a 1 MiB tmpfs on the directory `$REPRISE_TEST_FULL_DISK`.
fn in_a_namespace(name: &str) {
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
/// mount namespace of its own (the test needs root, or CAP_SYS_ADMIN, as
/// in CI).
fn assert_mounting_allowed(disk: &Path) {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .args(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(disk)
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the full-disk test mounts a tmpfs in a mount namespace of its own, \
             which needs root (CAP_SYS_ADMIN); `unshare -m mount -t tmpfs` said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("the full-disk test needs util-linux's unshare: {e}"),
    }
}

/// Fills the disk with a file of its own, until it is full.
fn fill(disk: &Path) {
    let mut filler = std::fs::File::create(disk.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while filler.write_all(&chunk).is_ok() {}
}

fn paths(tape: &Path) -> Vec<String> {
    TapeReader::open(tape)
        .unwrap()
        .map(|e| e.unwrap().request.unwrap().path)
        .collect()
}

#[test]
fn a_block_that_cannot_be_written_is_cut_off_counted_and_the_writer_goes_on() {
    let Ok(disk) = std::env::var(DISK) else {
        return in_a_namespace(
            "a_block_that_cannot_be_written_is_cut_off_counted_and_the_writer_goes_on",
        );
    };
    let disk = Path::new(&disk);
    let tape = disk.join("t.tape");
    // Its own writer thread; uncompressed 8 KiB records: every block needs
    // pages a full disk does not have.
    let options = WriterOptions {
        zstd_level: None,
        ..WriterOptions::default()
    };
    let mut writer = TapeWriter::create(&tape, options).unwrap();
    for i in 0..3 {
        writer.write(&common::exchange(i, 8192)).unwrap();
    }
    writer.sync().unwrap();
    let sealed_end = std::fs::metadata(&tape).unwrap().len();

    fill(disk);
    for i in 3..6 {
        writer.write(&common::exchange(i, 8192)).unwrap();
    }
    let error = writer.sync().unwrap_err();
    assert!(error.is_unwritten(), "{error}");
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );
    // Cut back: the tape ends at its last sealed block, and reads whole.
    assert_eq!(std::fs::metadata(&tape).unwrap().len(), sealed_end);
    assert_eq!(paths(&tape).len(), 3);
    assert_eq!(
        writer.tally(),
        SinkTally {
            written: 3,
            unwritten: 3,
            refused: 0
        }
    );

    std::fs::remove_file(disk.join("filler")).unwrap();
    for i in 6..8 {
        writer.write(&common::exchange(i, 8192)).unwrap();
    }
    let lost = writer.finish().unwrap_err();
    assert!(matches!(lost, TapeError::Lost { records: 3, .. }), "{lost}");
    assert_eq!(
        writer.tally(),
        SinkTally {
            written: 5,
            unwritten: 3,
            refused: 0
        }
    );
    let want: Vec<String> = [0, 1, 2, 6, 7]
        .iter()
        .map(|i| format!("/items/{i}?q=1"))
        .collect();
    assert_eq!(
        paths(&tape),
        want,
        "the next block after the last sealed one"
    );
}
