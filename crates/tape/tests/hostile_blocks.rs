//! Crafted blocks that claim one size and decompress to another. A block
//! may hold no more than its header declares (at most `MAX_BLOCK_PAYLOAD`),
//! and reading it costs memory for the record being decoded, not for what
//! the block claims: a few KiB that say "256 MiB" are refused for a few
//! KiB. Alone in its test binary: it measures the process's allocations.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::alloc::System;
use std::io::Write;
use std::path::Path;

use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use reprise_tape::format::{
    BlockHeader, Codec, FILE_HEADER_LEN, FORMAT_VERSION, FileHeader, MAX_BLOCK_PAYLOAD,
};
use reprise_tape::{DamageKind, TapeError, TapeReader};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A zstd frame of `zeros` zero bytes after `prefix`, with a window of
/// 2^`window_log` bytes and no content size: tiny on disk.
fn zstd_frame(prefix: &[u8], zeros: usize, window_log: u32) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.window_log(window_log).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(prefix).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    encoder.finish().unwrap()
}

/// A tape of zstd blocks, each `(declared raw length, record count, frame)`,
/// with valid checksums: only their contents lie.
fn crafted_tape(path: &Path, blocks: &[(u32, u32, Vec<u8>)]) {
    let mut file = FileHeader {
        format_version: FORMAT_VERSION,
        schema_version: 1,
        created_at_ns: 0,
    }
    .encode()
    .to_vec();
    for (seq, (raw_len, count, payload)) in blocks.iter().enumerate() {
        let header = BlockHeader {
            codec: Codec::Zstd,
            seq: seq as u64,
            offset: file.len() as u64,
            payload_len: payload.len() as u32,
            raw_len: *raw_len,
            count: *count,
            payload_crc: crc32c::crc32c(payload),
            schema_rev: 1,
            carries_unknown: false,
            min_ts: 0,
            max_ts: 0,
        };
        file.extend_from_slice(&header.encode());
        file.extend_from_slice(payload);
    }
    std::fs::write(path, file).unwrap();
}

/// Reads the whole tape: exchanges read, and the damage reports.
fn read(path: &Path) -> (usize, Vec<reprise_tape::Damage>) {
    let mut exchanges = 0;
    let mut damage = Vec::new();
    let mut reader = TapeReader::open(path).unwrap();
    while let Some(item) = reader.next_exchange() {
        match item {
            Ok(_) => exchanges += 1,
            Err(TapeError::Damaged { damage: d, .. }) => damage.push(d),
            Err(other) => panic!("{other}"),
        }
    }
    (exchanges, damage)
}

#[test]
fn blocks_that_lie_about_their_size_are_damage_and_cost_little_memory() {
    let dir = tempfile::tempdir().unwrap();

    // Four blocks of a few KiB each, each claiming the largest raw length
    // and decompressing to 32 MiB (one empty record, then zeros).
    let big = dir.path().join("big.tape");
    let frame = zstd_frame(&[], 32 << 20, 20);
    assert!(frame.len() < 64 << 10, "{}", frame.len());
    let blocks: Vec<_> = (0..4)
        .map(|_| (MAX_BLOCK_PAYLOAD, 1, frame.clone()))
        .collect();
    crafted_tape(&big, &blocks);
    let on_disk = std::fs::metadata(&big).unwrap().len();
    ALLOCATOR.reset_peak_memory();
    let (exchanges, damage) = read(&big);
    let peak = ALLOCATOR.get_peak_memory();
    assert_eq!(exchanges, 4);
    assert_eq!(damage.len(), 4, "{damage:?}");
    for d in &damage {
        assert_eq!(
            d.kind,
            DamageKind::BadPayload("bytes left after the last record".into())
        );
    }
    // The reader's own allocations: a few stream buffers, never a block's
    // claimed size (the zstd window is allocated by zstd, bounded by the
    // declared length too).
    assert!(
        peak < 8 << 20,
        "reading a {on_disk}-byte crafted tape allocated {peak} bytes at peak"
    );

    // A block that holds more than it declares: refused as soon as the
    // stream passes the declared length, with the reason.
    let more = dir.path().join("more.tape");
    crafted_tape(&more, &[(1, 1, zstd_frame(&[0], 16 << 20, 10))]);
    let (exchanges, damage) = read(&more);
    assert_eq!((exchanges, damage.len()), (1, 1));
    assert_eq!(
        damage[0].to_string(),
        format!(
            "block 0 at offset {FILE_HEADER_LEN} ({} bytes) does not decode: \
             decompresses to more than the 1 bytes its header declares; skipped",
            damage[0].len
        )
    );

    // A frame whose window is larger than the block's declared length
    // would make zstd allocate it: refused before it does.
    let window = dir.path().join("window.tape");
    crafted_tape(&window, &[(1024, 1, zstd_frame(&[0], 4 << 20, 24))]);
    let (exchanges, damage) = read(&window);
    assert_eq!((exchanges, damage.len()), (0, 1));
    assert!(
        matches!(&damage[0].kind, DamageKind::BadPayload(why) if why.starts_with("zstd: ")),
        "{:?}",
        damage[0].kind
    );
}
