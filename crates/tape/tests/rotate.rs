//! A recording as a directory of tapes: rotated by size and age, the
//! oldest removed past --keep, read back in order, and followed across
//! rotations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reprise_model::{Exchange, Sink};
use reprise_tape::{Follow, ReaderOptions, RotatingTape, Rotation, TapeSeries, WriterOptions};

fn exchange(i: u64) -> Exchange {
    let mut exchange = reprise_model::synthetic::realistic(i as usize);
    exchange.id = i.to_be_bytes().to_vec();
    exchange.recorded_at_ns = 1_765_000_000_000_000_000 + i;
    exchange
}

fn ids(series: TapeSeries) -> Vec<u64> {
    series
        .map(|e| u64::from_be_bytes(e.unwrap().id.try_into().unwrap()))
        .collect()
}

#[test]
fn tapes_rotate_by_size_read_back_in_order_and_the_oldest_go() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("rec");
    let options = WriterOptions {
        // Small blocks: the size is reached as blocks are sealed.
        block_bytes: 16 << 10,
        ..WriterOptions::default()
    };
    let rotation = Rotation {
        size: Some(64 << 10),
        ..Rotation::default()
    };
    let mut tapes = RotatingTape::create(&at, options.clone(), rotation).unwrap();
    for i in 0..2000 {
        tapes.append(exchange(i)).unwrap();
    }
    tapes.close().unwrap();
    assert_eq!(tapes.tally().unwrap().written, 2000);
    let files = reprise_tape::tapes_in(&at).unwrap();
    assert!(files.len() > 3, "{files:?}");
    let mode = std::fs::metadata(&at).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    let read =
        ids(TapeSeries::open(&at, TapeSeries::every_tape(), ReaderOptions::default()).unwrap());
    assert_eq!(read, (0..2000).collect::<Vec<_>>());

    // Kept: the newest 2 tapes (a new run goes on numbering after them).
    let keep = Rotation {
        size: Some(64 << 10),
        keep: Some(2),
        ..Rotation::default()
    };
    let mut tapes = RotatingTape::create(&at, options, keep).unwrap();
    for i in 2000..4000 {
        tapes.append(exchange(i)).unwrap();
    }
    tapes.close().unwrap();
    let files = reprise_tape::tapes_in(&at).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let read =
        ids(TapeSeries::open(&at, TapeSeries::every_tape(), ReaderOptions::default()).unwrap());
    assert_eq!(read.last(), Some(&3999));
    assert!(read.windows(2).all(|w| w[0] + 1 == w[1]), "in order");
}

#[test]
fn keeping_none_and_a_file_in_the_way_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keep_none = Rotation {
        keep: Some(0),
        ..Rotation::default()
    };
    let error = RotatingTape::create(dir.path().join("r"), WriterOptions::default(), keep_none)
        .unwrap_err()
        .to_string();
    assert!(error.contains("keeping 0 tapes"), "{error}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let error = RotatingTape::create(&file, WriterOptions::default(), Rotation::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not a directory"), "{error}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let error = TapeSeries::open(&empty, TapeSeries::every_tape(), ReaderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds no tape"), "{error}");
}

#[test]
fn a_follower_moves_on_to_each_new_tape_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("live");
    // Every append starts a new tape.
    let rotation = Rotation {
        every: Some(Duration::ZERO),
        ..Rotation::default()
    };
    let options = WriterOptions {
        inline: true,
        ..WriterOptions::default()
    };
    let mut tapes = RotatingTape::create(&at, options, rotation).unwrap();
    let follow = Follow {
        poll: Duration::from_millis(10),
        ..Follow::default()
    };
    let stop = Arc::clone(&follow.stop);
    let mut series = TapeSeries::open(
        &at,
        TapeSeries::every_tape(),
        ReaderOptions {
            follow: Some(follow),
            ..ReaderOptions::default()
        },
    )
    .unwrap();
    for i in 0..5 {
        tapes.append(exchange(i)).unwrap();
        let read = series.next().unwrap().unwrap();
        assert_eq!(read.id, i.to_be_bytes().to_vec());
    }
    tapes.close().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(series.next().is_none());
    assert!(reprise_tape::tapes_in(&at).unwrap().len() >= 5);
}
