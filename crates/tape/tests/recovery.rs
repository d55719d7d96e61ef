#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a message
//! Damage costs only the blocks it touches, is reported exactly, and never
//! panics.

mod common;

use proptest::prelude::*;
use reprise_model::Exchange;
use reprise_tape::format::BlockHeader;
use reprise_tape::{DamageKind, TapeError, TapeReader, TapeWriter, WriterOptions, block_index};

/// A tape of `n` exchanges in small blocks; returns its bytes, its blocks
/// and which exchanges each block holds.
fn tape(
    n: u64,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<u8>,
    Vec<BlockHeader>,
    Vec<Vec<Exchange>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tape");
    let options = WriterOptions {
        block_bytes: 1500,
        ..WriterOptions::default()
    };
    let mut writer = TapeWriter::create(&path, options).unwrap();
    let exchanges: Vec<Exchange> = (0..n)
        .map(|i| common::exchange(i, 150 + (i as usize * 37) % 200))
        .collect();
    for exchange in &exchanges {
        writer.write(exchange).unwrap();
    }
    writer.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (blocks, damage) = block_index(&path).unwrap();
    assert!(damage.is_empty());
    let mut per_block = Vec::new();
    let mut next = 0usize;
    for block in &blocks {
        per_block.push(exchanges[next..next + block.count as usize].to_vec());
        next += block.count as usize;
    }
    assert_eq!(next, exchanges.len());
    (dir, path, bytes, blocks, per_block)
}

#[test]
fn cut_at_every_byte_of_the_last_two_blocks() {
    let (dir, _, bytes, blocks, per_block) = tape(40);
    assert!(blocks.len() >= 4);
    let cut_path = dir.path().join("cut.tape");
    let start = blocks[blocks.len() - 2].offset as usize;
    for cut in start..=bytes.len() {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let (read, damage) = common::read_all(&cut_path);
        let intact: Vec<Exchange> = blocks
            .iter()
            .zip(&per_block)
            .filter(|(b, _)| b.end() as usize <= cut)
            .flat_map(|(_, e)| e.clone())
            .collect();
        assert_eq!(read, intact, "cut at {cut}");
        let torn = blocks
            .iter()
            .any(|b| (b.offset as usize) < cut && (b.end() as usize) > cut);
        if torn {
            assert_eq!(damage.len(), 1, "cut at {cut}: {damage:?}");
            assert_eq!(damage[0].kind, DamageKind::TornTail, "cut at {cut}");
            assert_eq!(damage[0].offset + damage[0].len, cut as u64);
            let block = blocks
                .iter()
                .find(|b| b.offset == damage[0].offset)
                .unwrap();
            assert_eq!(damage[0].first_block, block.seq);
        } else {
            assert!(damage.is_empty(), "cut at block boundary {cut}: {damage:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn flipped_bytes_cost_only_their_blocks(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6)) {
        let (dir, _, bytes, blocks, per_block) = tape(30);
        let body_start = reprise_tape::format::FILE_HEADER_LEN;
        let mut damaged = bytes.clone();
        let mut hit = vec![false; blocks.len()];
        for (index, mask) in &flips {
            let at = body_start + index.index(bytes.len() - body_start);
            damaged[at] ^= mask;
            for (i, b) in blocks.iter().enumerate() {
                if (b.offset as usize) <= at && at < b.end() as usize {
                    hit[i] = true;
                }
            }
        }
        let path = dir.path().join("flipped.tape");
        std::fs::write(&path, &damaged).unwrap();
        let (read, damage) = common::read_all(&path);
        let intact: Vec<Exchange> = per_block.iter().zip(&hit).filter(|(_, h)| !**h).flat_map(|(e, _)| e.clone()).collect();
        prop_assert_eq!(read, intact);
        // Every damaged block is named in a report, and nothing else is.
        for (i, block) in blocks.iter().enumerate() {
            let reported = damage.iter().any(|d| d.first_block <= block.seq && (block.seq <= d.last_block || d.to_end)
                && d.offset <= block.offset && block.end() <= d.offset + d.len);
            prop_assert_eq!(reported, hit[i], "block {} ({:?})", i, damage);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), keep_header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.tape");
        let mut content = Vec::new();
        if keep_header {
            let header = reprise_tape::format::FileHeader { format_version: 1, schema_version: 1, created_at_ns: 0 };
            content.extend_from_slice(&header.encode());
        }
        content.extend_from_slice(&bytes);
        std::fs::write(&path, &content).unwrap();
        if let Ok(reader) = TapeReader::open(&path) {
            for item in reader {
                let _ = item;
            }
        }
    }
}

#[test]
fn damage_report_names_block_and_offset() {
    let (dir, _, bytes, blocks, _) = tape(30);
    let mut damaged = bytes.clone();
    let victim = blocks[2];
    damaged[victim.offset as usize + 70] ^= 0xff; // inside the payload
    let path = dir.path().join("d.tape");
    std::fs::write(&path, &damaged).unwrap();
    let mut reader = TapeReader::open(&path).unwrap();
    let mut messages = Vec::new();
    let mut ok = 0;
    while let Some(item) = reader.next_exchange() {
        match item {
            Ok(_) => ok += 1,
            Err(e) => messages.push(e.to_string()),
        }
    }
    assert_eq!(ok, 30 - victim.count as usize);
    assert_eq!(
        messages,
        vec![format!(
            "tape {}: block 2 at offset {} ({} bytes) fails its checksum; skipped",
            path.display(),
            victim.offset,
            victim.end() - victim.offset
        )]
    );
}

#[test]
fn bad_header_resyncs_at_the_next_block() {
    let (dir, _, bytes, blocks, per_block) = tape(30);
    let mut damaged = bytes.clone();
    damaged[blocks[1].offset as usize] = b'X'; // magic of block 1
    damaged[blocks[2].offset as usize + 9] ^= 1; // seq of block 2
    let path = dir.path().join("d.tape");
    std::fs::write(&path, &damaged).unwrap();
    let (read, damage) = common::read_all(&path);
    let expected: Vec<Exchange> = per_block
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1 && *i != 2)
        .flat_map(|(_, e)| e.clone())
        .collect();
    assert_eq!(read, expected);
    assert_eq!(damage.len(), 1);
    assert_eq!((damage[0].first_block, damage[0].last_block), (1, 2));
    assert_eq!(damage[0].offset, blocks[1].offset);
    assert_eq!(damage[0].len, blocks[3].offset - blocks[1].offset);
    assert_eq!(damage[0].kind, DamageKind::BadHeader);
}

#[test]
fn damaged_file_header_still_reads_blocks() {
    let (dir, _, bytes, _, _) = tape(10);
    let mut damaged = bytes.clone();
    damaged[20] ^= 0xff;
    let path = dir.path().join("d.tape");
    std::fs::write(&path, &damaged).unwrap();
    let (read, damage) = common::read_all(&path);
    assert_eq!(read.len(), 10);
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].kind, DamageKind::BadFileHeader);
}

#[test]
fn append_after_a_crash_cuts_the_torn_tail() {
    let (_dir, path, bytes, blocks, per_block) = tape(20);
    let last = *blocks.last().unwrap();
    let cut = last.offset as usize + 80;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let (mut writer, report) = TapeWriter::open(&path, WriterOptions::default()).unwrap();
    let cut_off = report.cut.expect("torn tail reported");
    assert_eq!(cut_off.kind, DamageKind::TornTail);
    assert_eq!((cut_off.offset, cut_off.len), (last.offset, 80));
    writer.write(&common::exchange(99, 10)).unwrap();
    writer.finish().unwrap();
    let (read, damage) = common::read_all(&path);
    assert!(damage.is_empty(), "{damage:?}");
    let mut expected: Vec<Exchange> = per_block[..per_block.len() - 1].concat();
    expected.push(common::exchange(99, 10));
    assert_eq!(read, expected);
}

#[test]
fn bad_files_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Option<&[u8]>, String)> = vec![
        (
            "missing.tape",
            None,
            "cannot open: No such file or directory (os error 2)".into(),
        ),
        (
            "empty.tape",
            Some(b""),
            "not a reprise tape (empty file)".into(),
        ),
        (
            "short.tape",
            Some(b"RPRSTA"),
            "not a reprise tape (file header is cut short)".into(),
        ),
        (
            "har.json",
            Some(b"{\"log\": {\"entries\": []}}   ...."),
            "not a reprise tape (wrong magic bytes)".into(),
        ),
    ];
    for (name, content, message) in cases {
        let path = dir.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        let err = TapeReader::open(&path).err().expect(name);
        assert_eq!(
            err.to_string(),
            format!("tape {}: {message}", path.display())
        );
    }
    let err = TapeReader::open(dir.path()).err().unwrap();
    assert!(matches!(err, TapeError::IsDirectory(_)));
    let newer = reprise_tape::format::FileHeader {
        format_version: 7,
        schema_version: 1,
        created_at_ns: 0,
    };
    let path = dir.path().join("newer.tape");
    std::fs::write(&path, newer.encode()).unwrap();
    assert_eq!(
        TapeReader::open(&path).err().unwrap().to_string(),
        format!(
            "tape {}: format version 7 is newer than this reprise reads (1)",
            path.display()
        )
    );
}
