#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a message
//! Following a tape being written, and skipping to a time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reprise_tape::{Follow, ReaderOptions, TapeReader, TapeWriter, WriterOptions};

/// A thread following the tape at `path` until it ends; `each` runs
/// after every exchange read. Gives what it read. Without `read_ahead`,
/// the walk (and its sleeps at the end) is on that thread.
fn follower(
    path: &std::path::Path,
    follow: Follow,
    read_ahead: bool,
    each: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<Vec<reprise_model::Exchange>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut reader = TapeReader::open_with(
            &path,
            ReaderOptions {
                follow: Some(follow),
                read_ahead,
                ..Default::default()
            },
        )
        .unwrap();
        let mut seen = Vec::new();
        while let Some(item) = reader.next_exchange() {
            seen.push(item.unwrap());
            each();
        }
        seen
    })
}

#[test]
fn follow_sees_records_as_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.tape");
    let mut writer = TapeWriter::create(&path, WriterOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let follow = Follow {
        poll: Duration::from_millis(5),
        stop: Arc::clone(&stop),
        ..Follow::default()
    };
    let (read_one, has_read) = std::sync::mpsc::channel();
    let reader = follower(&path, follow, true, move || {
        let _ = read_one.send(());
    });
    // Each batch is read while the writer is still open, before the next
    // is written.
    for batch in 0..5 {
        for i in batch * 10..batch * 10 + 10 {
            writer.write(&common::exchange(i, 100)).unwrap();
        }
        writer.sync().unwrap();
        for _ in 0..10 {
            has_read
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("batch {batch} not followed: {e}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let seen = reader.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "follower stops promptly"
    );
    assert_eq!(
        seen,
        (0..50)
            .map(|i| common::exchange(i, 100))
            .collect::<Vec<_>>()
    );
    writer.finish().unwrap();
}

/// A stop asked for right after the last block was written still lets
/// the follower read that block, even while it is asleep between polls
/// (`reprise mirror` stops its follower once its tape is closed, and the
/// shadow must get every call).
#[test]
fn a_stop_takes_effect_at_an_end_found_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.tape");
    let mut writer = TapeWriter::create(&path, WriterOptions::default()).unwrap();
    writer.write(&common::exchange(0, 100)).unwrap();
    writer.sync().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // A long poll: the follower sleeps through the last write and the stop.
    let follow = Follow {
        poll: Duration::from_millis(300),
        stop: Arc::clone(&stop),
        ..Follow::default()
    };
    let looks = Arc::clone(&follow.idle_looks);
    let (first, got_first) = std::sync::mpsc::channel();
    let reader = follower(&path, follow, false, move || {
        let _ = first.send(());
    });
    got_first.recv_timeout(Duration::from_secs(10)).unwrap();
    // The follower is at the end, asleep: the last block and the stop come
    // during its sleep.
    common::wait_for_a_look(&looks);
    writer.write(&common::exchange(1, 100)).unwrap();
    writer.finish().unwrap();
    stop.store(true, Ordering::SeqCst);
    let seen = reader.join().unwrap();
    assert_eq!(
        seen,
        (0..2).map(|i| common::exchange(i, 100)).collect::<Vec<_>>()
    );
}

#[test]
fn follow_waits_for_a_header_and_block_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.tape");
    let mut writer = TapeWriter::create(&source, WriterOptions::default()).unwrap();
    writer.write(&common::exchange(1, 1)).unwrap();
    writer.finish().unwrap();
    let bytes = std::fs::read(&source).unwrap();

    // The followed file grows in pieces: part of the header, then part of
    // the block, then the rest, the way a slow writer would leave it; the
    // follower looks at each piece before the next comes.
    let path = dir.path().join("live.tape");
    std::fs::write(&path, &bytes[..10]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let follow = Follow {
        poll: Duration::from_millis(5),
        stop: Arc::clone(&stop),
        ..Follow::default()
    };
    let reader_path = path.clone();
    let looks = Arc::clone(&follow.idle_looks);
    let reader = std::thread::spawn(move || {
        let reader = TapeReader::open_with(
            &reader_path,
            ReaderOptions {
                follow: Some(follow),
                read_ahead: false,
                ..Default::default()
            },
        )
        .unwrap();
        reader.map(|r| r.unwrap()).collect::<Vec<_>>()
    });
    let append = |range: std::ops::Range<usize>| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&bytes[range]).unwrap();
    };
    common::wait_for_a_look(&looks);
    append(10..60);
    common::wait_for_a_look(&looks);
    append(60..bytes.len());
    // A stop takes effect at an end found after it: the whole block is
    // read first.
    stop.store(true, Ordering::SeqCst);
    assert_eq!(reader.join().unwrap(), vec![common::exchange(1, 1)]);
}

#[test]
fn time_window_skips_blocks_by_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let mut writer = TapeWriter::create(
        &path,
        WriterOptions {
            block_bytes: 1024,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for i in 0..200 {
        writer.write(&common::exchange(i, 200)).unwrap();
    }
    writer.finish().unwrap();
    // exchange(i) is recorded at 1e9 + i * 1000.
    let since = 1_000_000_000 + 150 * 1000;
    let until = 1_000_000_000 + 160 * 1000;
    let mut reader = TapeReader::open_with(
        &path,
        ReaderOptions {
            since_ns: Some(since),
            until_ns: Some(until),
            ..Default::default()
        },
    )
    .unwrap();
    let got: Vec<_> = reader.by_ref().map(|r| r.unwrap()).collect();
    assert_eq!(
        got,
        (150..160)
            .map(|i| common::exchange(i, 200))
            .collect::<Vec<_>>()
    );
    let stats = reader.stats();
    assert!(
        stats.blocks_skipped > stats.blocks * 5,
        "most blocks skipped unread: {stats:?}"
    );
}
