#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a message
//! The writer on a disk that fills up and frees again. The test runs
//! itself again in a mount namespace of its own (`unshare -m`) on a 1 MiB
//! tmpfs, which goes with the namespace.

mod common;

use std::path::Path;

use reprise_model::SinkTally;
use reprise_tape::{TapeError, TapeReader, TapeWriter, WriterOptions};
use reprise_testkit::full_disk::{DISK, fill, rerun_on_a_small_disk};

fn paths(tape: &Path) -> Vec<String> {
    TapeReader::open(tape)
        .unwrap()
        .map(|e| e.unwrap().request.unwrap().path)
        .collect()
}

#[test]
fn a_block_that_cannot_be_written_is_cut_off_counted_and_the_writer_goes_on() {
    let Ok(disk) = std::env::var(DISK) else {
        return rerun_on_a_small_disk(
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
